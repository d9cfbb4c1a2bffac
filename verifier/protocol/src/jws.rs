//! Compact JWS (RFC 7515) splitting, shared by the proof, token and
//! revocation-list parsers so that all three decode the same way: exactly
//! three base64url parts without padding, a JSON-object header, no `crit`.

use aws_lc_rs::signature::{UnparsedPublicKey, VerificationAlgorithm};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

/// A split, decoded, not yet verified compact JWS.
pub struct Compact<'a> {
    /// The protected header.
    pub header: Map<String, Value>,
    /// The decoded payload bytes.
    pub payload: Vec<u8>,
    /// `base64url(header) "." base64url(payload)`: what the signature covers.
    pub signing_input: &'a str,
    /// The decoded signature.
    pub signature: Vec<u8>,
}

/// Splits `compact` (at most `max_len` bytes). The error is a short,
/// fixed description: the input is attacker-chosen and never echoed.
pub fn split(compact: &str, max_len: usize) -> Result<Compact<'_>, &'static str> {
    if compact.len() > max_len {
        return Err("too large");
    }
    let mut parts = compact.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a compact JWS (three dot-separated parts)");
    };
    let signing_input = compact
        .get(..header_b64.len() + 1 + payload_b64.len())
        .ok_or("not a compact JWS")?;
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| "not base64url");
    let header: Map<String, Value> =
        serde_json::from_slice(&decode(header_b64)?).map_err(|_| "header is not a JSON object")?;
    if header.contains_key("crit") {
        // RFC 7515 §4.1.11: no extension is understood here, so none may be critical.
        return Err("header has `crit`");
    }
    Ok(Compact {
        header,
        payload: decode(payload_b64)?,
        signing_input,
        signature: decode(signature_b64)?,
    })
}

impl Compact<'_> {
    /// A string member of the header.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header.get(name).and_then(Value::as_str)
    }

    /// Whether the signature verifies under `public_key` (SEC1 point or raw
    /// Ed25519 key) with `algorithm`.
    pub fn verifies(
        &self,
        algorithm: &'static dyn VerificationAlgorithm,
        public_key: &[u8],
    ) -> bool {
        UnparsedPublicKey::new(algorithm, public_key)
            .verify(self.signing_input.as_bytes(), &self.signature)
            .is_ok()
    }
}

/// Constant-time equality of two strings' bytes (length may leak).
pub fn ct_eq(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}
