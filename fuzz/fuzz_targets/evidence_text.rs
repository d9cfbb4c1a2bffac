#![no_main]
//! Hex / base64 / raw input decoding and TEE detection.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let bytes = attest_gate_core::decode_text_encoding(data);
    let _ = attest_gate_core::resolve_tee(&bytes, None);
});
