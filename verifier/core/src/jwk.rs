//! The agent's ephemeral public key as a JWK (RFC 7517): P-256, P-384 or
//! Ed25519, and its RFC 7638 thumbprint, which the evidence binds and the
//! credentials carry (`cnf.jkt`, RFC 9449).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;

/// A public key an agent may present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentKey {
    /// ECDSA P-256: affine x and y, 32 bytes each.
    P256 {
        /// x coordinate.
        x: [u8; 32],
        /// y coordinate.
        y: [u8; 32],
    },
    /// ECDSA P-384: affine x and y, 48 bytes each.
    P384 {
        /// x coordinate.
        x: [u8; 48],
        /// y coordinate.
        y: [u8; 48],
    },
    /// Ed25519: the 32-byte public key.
    Ed25519 {
        /// The public key.
        x: [u8; 32],
    },
}

/// Why a JWK was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unusable agent key: {0}")]
pub struct JwkError(String);

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    crv: String,
    x: String,
    y: Option<String>,
    d: Option<serde::de::IgnoredAny>,
}

fn coordinate<const N: usize>(field: &str, b64: &str) -> Result<[u8; N], JwkError> {
    URL_SAFE_NO_PAD
        .decode(b64)
        .ok()
        .and_then(|v| <[u8; N]>::try_from(v).ok())
        .ok_or_else(|| JwkError(format!("`{field}` is not {N} base64url bytes")))
}

impl AgentKey {
    /// Parses a public JWK. Private keys (`d`) are refused: an agent must
    /// never send one, and accepting it would normalise the mistake.
    pub fn from_jwk(json: &serde_json::Value) -> Result<Self, JwkError> {
        let raw: RawJwk = serde_json::from_value(json.clone())
            .map_err(|e| JwkError(format!("not a JWK: {e}")))?;
        if raw.d.is_some() {
            return Err(JwkError("a private key (`d`) was sent".into()));
        }
        let y = |n| {
            raw.y
                .as_deref()
                .ok_or_else(|| JwkError(format!("`y` missing for {n}")))
        };
        let key = match (raw.kty.as_str(), raw.crv.as_str()) {
            ("EC", "P-256") => Self::P256 {
                x: coordinate("x", &raw.x)?,
                y: coordinate("y", y("P-256")?)?,
            },
            ("EC", "P-384") => Self::P384 {
                x: coordinate("x", &raw.x)?,
                y: coordinate("y", y("P-384")?)?,
            },
            ("OKP", "Ed25519") if raw.y.is_none() => Self::Ed25519 {
                x: coordinate("x", &raw.x)?,
            },
            // The values are attacker-chosen and unbounded: not echoed.
            _ => {
                return Err(JwkError(
                    "unsupported kty / crv (EC P-256, EC P-384 or OKP Ed25519 required)".into(),
                ))
            }
        };
        key.check_on_curve()?;
        Ok(key)
    }

    /// A point not on its curve (or a malformed Ed25519 key) is refused here,
    /// not when it is first used.
    fn check_on_curve(&self) -> Result<(), JwkError> {
        use aws_lc_rs::signature::{
            ParsedPublicKey, VerificationAlgorithm, ECDSA_P256_SHA256_FIXED,
            ECDSA_P384_SHA384_FIXED, ED25519,
        };
        let algorithm: &'static dyn VerificationAlgorithm = match self {
            Self::P256 { .. } => &ECDSA_P256_SHA256_FIXED,
            Self::P384 { .. } => &ECDSA_P384_SHA384_FIXED,
            Self::Ed25519 { .. } => &ED25519,
        };
        ParsedPublicKey::new(algorithm, self.raw_public_key())
            .map(|_| ())
            .map_err(|_| JwkError("the public key is not a valid point of its curve".into()))
    }

    /// The JWK members RFC 7638 hashes, in its required (lexicographic) order.
    fn canonical(&self) -> String {
        let b = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        match self {
            Self::P256 { x, y } => {
                format!(
                    r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                    b(x),
                    b(y)
                )
            }
            Self::P384 { x, y } => {
                format!(
                    r#"{{"crv":"P-384","kty":"EC","x":"{}","y":"{}"}}"#,
                    b(x),
                    b(y)
                )
            }
            Self::Ed25519 { x } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b(x)),
        }
    }

    /// The public JWK, canonical members only.
    pub fn to_jwk(&self) -> serde_json::Value {
        serde_json::from_str(&self.canonical()).unwrap_or_default()
    }

    /// RFC 7638 thumbprint: SHA-256 of the canonical JWK.
    pub fn thumbprint(&self) -> [u8; 32] {
        crate::trust::sha256(self.canonical().as_bytes())
    }

    /// The thumbprint, base64url (the `jkt` of RFC 9449).
    pub fn jkt(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.thumbprint())
    }

    /// The key as the bytes a Nitro `public_key` field carries: the SEC1
    /// uncompressed point for EC keys, the raw key for Ed25519.
    pub fn raw_public_key(&self) -> Vec<u8> {
        match self {
            Self::P256 { x, y } => [&[0x04][..], x, y].concat(),
            Self::P384 { x, y } => [&[0x04][..], x, y].concat(),
            Self::Ed25519 { x } => x.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// RFC 8037 appendix A.3: the thumbprint of its Ed25519 example key.
    #[test]
    fn ed25519_thumbprint_matches_rfc_8037() {
        let key = AgentKey::from_jwk(&json!({
            "kty": "OKP", "crv": "Ed25519",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        }))
        .unwrap();
        assert_eq!(key.jkt(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }

    #[test]
    fn member_order_and_extra_members_do_not_change_the_thumbprint() {
        use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let point = pair.public_key().as_ref();
        let x = URL_SAFE_NO_PAD.encode(&point[1..33]);
        let y = URL_SAFE_NO_PAD.encode(&point[33..65]);
        let a = AgentKey::from_jwk(&json!({"kty": "EC", "crv": "P-256", "x": x, "y": y})).unwrap();
        let b =
            AgentKey::from_jwk(&json!({"y": y, "use": "sig", "x": x, "crv": "P-256", "kty": "EC"}))
                .unwrap();
        assert_eq!(a.thumbprint(), b.thumbprint());
        assert_eq!(AgentKey::from_jwk(&a.to_jwk()).unwrap(), a);
    }

    #[test]
    fn refuses_private_keys_wrong_sizes_and_other_curves() {
        let x = URL_SAFE_NO_PAD.encode([1u8; 32]);
        for bad in [
            json!({"kty": "OKP", "crv": "Ed25519", "x": x, "d": x}),
            json!({"kty": "EC", "crv": "P-384", "x": x, "y": x}),
            json!({"kty": "EC", "crv": "P-256", "x": x}),
            // Right sizes, but (1, 1) is not a point of P-256.
            json!({"kty": "EC", "crv": "P-256", "x": x, "y": x}),
            json!({"kty": "EC", "crv": "secp256k1", "x": x, "y": x}),
            json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"}),
            json!("not an object"),
        ] {
            assert!(AgentKey::from_jwk(&bad).is_err(), "{bad}");
        }
    }
}
