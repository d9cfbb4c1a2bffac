#![no_main]
//! COSE_Sign1 + attestation document parsing and verification: under the
//! vendor root at the recorded AWS sample's instant, and under the project's
//! test root at the forge's instant, so forged seeds reach every check
//! after the chain too.
use attest_gate_core::{Collateral, TeeKind, TrustAnchors, Verifier};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const TEST_ROOT: &[u8] = include_bytes!("../../testdata/roots/nitro-test-root.pem");

fn verifiers() -> &'static (Verifier, Verifier) {
    static VERIFIERS: OnceLock<(Verifier, Verifier)> = OnceLock::new();
    VERIFIERS.get_or_init(|| {
        let root = pem::parse(TEST_ROOT).expect("the test root").into_contents();
        (
            Verifier::new(TrustAnchors::vendor().expect("vendor roots")),
            Verifier::new(TrustAnchors::test_roots(vec![root]).expect("a test root")),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let (vendor, test) = verifiers();
    let recorded = time::OffsetDateTime::from_unix_timestamp(1_665_651_482).unwrap();
    let forged = time::macros::datetime!(2025-01-01 00:00 UTC);
    let _ = vendor.verify(TeeKind::Nitro, data, &Collateral::empty(), recorded);
    let _ = test.verify(TeeKind::Nitro, data, &Collateral::empty(), forged);
    let _ = attest_gate_core::nitro::unverified_timestamp(data);
});
