#![no_main]
//! TDX quote (v4/v5) parsing, including the nested certification data.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = attest_gate_core::tdx::Quote::parse(data);
});
