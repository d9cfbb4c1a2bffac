#![no_main]
//! SEV-SNP report (and extended report certificate table) parsing and
//! verification. The input is `[report length, u16 LE][report][VCEK DER]`;
//! it is verified under AMD's roots and under the project's test ARKs (with
//! the forge's ASK/ARK chain), so forged seeds reach the checks after the
//! chain.
use attest_gate_core::{Collateral, TeeKind, TrustAnchors, Verifier};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const TEST_ARKS: &[u8] = include_bytes!("../../testdata/roots/snp-test-ark.pem");
const TEST_CHAIN: &[u8] = include_bytes!("../../testdata/snp/valid/collateral/cert_chain.pem");

fn verifiers() -> &'static (Verifier, Verifier) {
    static VERIFIERS: OnceLock<(Verifier, Verifier)> = OnceLock::new();
    VERIFIERS.get_or_init(|| {
        let arks = pem::parse_many(TEST_ARKS)
            .expect("the test ARKs")
            .into_iter()
            .map(pem::Pem::into_contents)
            .collect();
        (
            Verifier::new(TrustAnchors::vendor().expect("vendor roots")),
            Verifier::new(TrustAnchors::test_roots(arks).expect("test ARKs")),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((length, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let split = usize::from(u16::from_le_bytes(*length)).min(rest.len());
    let (report, vcek) = rest.split_at(split);
    let (vendor, test) = verifiers();
    let vcek = ("vcek.der".to_string(), vcek.to_vec());
    let recorded = time::OffsetDateTime::from_unix_timestamp(1_750_000_000).unwrap();
    let _ = vendor.verify(
        TeeKind::Snp,
        report,
        &Collateral::from_items([vcek.clone()]),
        recorded,
    );
    let chain = ("cert_chain.pem".to_string(), TEST_CHAIN.to_vec());
    let forged = time::macros::datetime!(2025-01-01 00:00 UTC);
    let _ = test.verify(
        TeeKind::Snp,
        report,
        &Collateral::from_items([vcek, chain]),
        forged,
    );
});
