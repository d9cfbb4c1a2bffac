#![no_main]
//! TDX quote (v4/v5) parsing, including the nested certification data, then
//! verification under the project's test root with the forged collateral
//! (so forged seeds reach the signature, QE and TCB checks), in one call
//! and in the service's two steps (authenticate, then finish with the
//! collateral), which must reach the same verdict.
use attest_gate_core::{Collateral, TeeKind, TrustAnchors, Verifier};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const ROOT: &[u8] = include_bytes!("../../testdata/roots/tdx-test-root.pem");

fn verifier_and_collateral() -> &'static (Verifier, Collateral) {
    static STATE: OnceLock<(Verifier, Collateral)> = OnceLock::new();
    STATE.get_or_init(|| {
        let root = pem::parse(ROOT).expect("the test root").into_contents();
        let folder = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/tdx/valid/collateral");
        let items = std::fs::read_dir(folder)
            .expect("the forged TDX collateral")
            .map(|entry| {
                let path = entry.expect("a collateral file").path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&path).expect("a collateral file"))
            });
        (
            Verifier::new(TrustAnchors::test_roots(vec![root]).expect("a test root")),
            Collateral::from_items(items),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    if attest_gate_core::tdx::Quote::parse(data).is_ok() {
        let (verifier, collateral) = verifier_and_collateral();
        let at = time::macros::datetime!(2025-01-01 00:00 UTC);
        let verdict = |r: Result<attest_gate_core::VerifiedClaims, attest_gate_core::VerifyError>| {
            r.map(|claims| *claims.evidence_sha384()).map_err(|e| e.code())
        };
        let one = verdict(verifier.verify(TeeKind::Tdx, data, collateral, at));
        let two = verdict(
            verifier
                .authenticate_tdx_quote(data, at)
                .and_then(|quote| quote.verify(collateral)),
        );
        assert_eq!(one, two, "one call and two steps disagree");
    }
});
