#![no_main]
//! SEV-SNP report (and extended report certificate table) parsing and
//! verification, with the fuzz input split into report and VCEK bytes.
use attest_gate_core::{Collateral, TeeKind, TrustAnchors, Verifier};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static VERIFIER: OnceLock<Verifier> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let v = VERIFIER.get_or_init(|| Verifier::new(TrustAnchors::vendor().unwrap()));
    let at = time::OffsetDateTime::from_unix_timestamp(1_750_000_000).unwrap();
    let split = data.len().min(0x4a0 + 512);
    let (report, vcek) = data.split_at(split);
    let collateral = Collateral::from_items([("vcek.der".to_string(), vcek.to_vec())]);
    let _ = v.verify(TeeKind::Snp, report, &collateral, at);
});
