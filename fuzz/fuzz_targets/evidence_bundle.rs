#![no_main]
//! Evidence bundle JSON parsing.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = attest_gate_core::EvidenceBundle::from_json(data) {
        let _ = bundle.to_json();
    }
});
