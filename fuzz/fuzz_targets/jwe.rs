#![no_main]
//! Opening a compact JWE (what the agent does with a released secret):
//! splitting, header JSON, `epk`, lengths, key agreement, unwrap and GCM.
//! Nothing may panic, and nothing made up opens.
use std::sync::OnceLock;

use attest_gate_protocol::jwe;
use aws_lc_rs::agreement::{PrivateKey, ECDH_P256};
use libfuzzer_sys::fuzz_target;

fn key() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| PrivateKey::generate(&ECDH_P256).expect("a P-256 key"))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        assert!(jwe::decrypt(key(), text).is_err());
    }
});
