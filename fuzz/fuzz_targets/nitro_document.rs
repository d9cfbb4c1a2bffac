#![no_main]
//! COSE_Sign1 + attestation document parsing and verification, vendor roots.
use attest_gate_core::{Collateral, TeeKind, TrustAnchors, Verifier};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static VERIFIER: OnceLock<Verifier> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let v = VERIFIER.get_or_init(|| Verifier::new(TrustAnchors::vendor().unwrap()));
    let at = time::OffsetDateTime::from_unix_timestamp(1_665_651_482).unwrap();
    let _ = v.verify(TeeKind::Nitro, data, &Collateral::empty(), at);
    let _ = attest_gate_core::nitro::unverified_timestamp(data);
});
