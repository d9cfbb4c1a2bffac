#![no_main]
//! The service's `POST /v1/attest` body: JSON decoding, field checks, base64,
//! the JWK (incl. the on-curve check) and the CSR parse — everything before
//! verification.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = attest_gate_verifier::check_request_body(data);
});
