//! The binding an agent puts in its evidence and the verifier checks: one
//! documented, domain-separated hash of the verifier's nonce, the agent's key
//! (its RFC 7638 thumbprint) and the model it serves; version 2 also covers a
//! second key the agent holds for decryption only (attested secret release).
//!
//! ```text
//! v1 = SHA-512( "attest-gate/binding/v1" ‖ 0x00
//!               ‖ len(nonce) as u16 big-endian ‖ nonce
//!               ‖ JWK thumbprint (32 bytes) ‖ model SHA-384 (48 bytes) )
//! v2 = SHA-512( "attest-gate/binding/v2" ‖ 0x00
//!               ‖ len(nonce) as u16 big-endian ‖ nonce
//!               ‖ signing-key JWK thumbprint (32 bytes)
//!               ‖ encryption-key JWK thumbprint (32 bytes)
//!               ‖ model SHA-384 (48 bytes) )
//! ```
//!
//! The two domains differ, so no v1 binding reads as a v2 one or back.
//!
//! The 64 bytes are TDX / SNP `REPORT_DATA` and Nitro `user_data`. A Nitro
//! document's `nonce` and `public_key`, when present, must also equal the
//! nonce and the key (SEC1 point, or raw Ed25519 key).

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{Context, SHA512};

use crate::claims::{TeeKind, VerifiedClaims};
use crate::error::Rejection;
use crate::jwk::AgentKey;

/// Domain separation for version 1 of the binding.
pub const BINDING_DOMAIN: &[u8] = b"attest-gate/binding/v1\0";
/// Domain separation for version 2 (with an encryption key).
pub const BINDING_DOMAIN_V2: &[u8] = b"attest-gate/binding/v2\0";

/// The SHA-384 digest of the model an agent serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ModelDigest(pub [u8; 48]);

impl ModelDigest {
    /// Parses 96 hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        hex::decode(s).ok()?.try_into().ok().map(Self)
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// What the evidence must bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    nonce: Vec<u8>,
    key: AgentKey,
    encryption_key: Option<AgentKey>,
    model: ModelDigest,
}

/// Nonces are short; this bound keeps the length prefix meaningful.
pub const MAX_NONCE_LEN: usize = 256;

impl Binding {
    /// The binding of `nonce`, `key` and `model`; `None` if the nonce is empty or over 256 bytes.
    pub fn new(nonce: &[u8], key: AgentKey, model: ModelDigest) -> Option<Self> {
        (!nonce.is_empty() && nonce.len() <= MAX_NONCE_LEN).then(|| Self {
            nonce: nonce.to_vec(),
            key,
            encryption_key: None,
            model,
        })
    }

    /// Version 2: also binds `encryption_key`, the agent's decryption-only
    /// key. `None` for a bad nonce, or when the encryption key is the
    /// signing key (one key must never serve both).
    pub fn with_encryption_key(
        nonce: &[u8],
        key: AgentKey,
        encryption_key: AgentKey,
        model: ModelDigest,
    ) -> Option<Self> {
        if encryption_key.thumbprint() == key.thumbprint() {
            return None;
        }
        let mut binding = Self::new(nonce, key, model)?;
        binding.encryption_key = Some(encryption_key);
        Some(binding)
    }

    /// The encryption key it binds (version 2 only).
    pub fn encryption_key(&self) -> Option<&AgentKey> {
        self.encryption_key.as_ref()
    }

    /// The agent key it binds.
    pub fn key(&self) -> &AgentKey {
        &self.key
    }

    /// The model digest it binds.
    pub fn model(&self) -> &ModelDigest {
        &self.model
    }

    /// The 64 bytes to put in REPORT_DATA / `user_data`.
    pub fn report_data(&self) -> [u8; 64] {
        let mut ctx = Context::new(&SHA512);
        ctx.update(match self.encryption_key {
            None => BINDING_DOMAIN,
            Some(_) => BINDING_DOMAIN_V2,
        });
        ctx.update(&(self.nonce.len() as u16).to_be_bytes());
        ctx.update(&self.nonce);
        ctx.update(&self.key.thumbprint());
        if let Some(encryption_key) = &self.encryption_key {
            ctx.update(&encryption_key.thumbprint());
        }
        ctx.update(&self.model.0);
        let mut out = [0u8; 64];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    /// Checks that verified evidence carries this binding (constant-time
    /// comparisons). Every mismatch is `binding_mismatch`, naming the field.
    pub fn check(&self, claims: &VerifiedClaims) -> Result<(), Rejection> {
        let expected = self.report_data();
        let equal = |have: Option<&[u8]>, want: &[u8]| {
            have.is_some_and(|h| verify_slices_are_equal(h, want).is_ok())
        };
        let mismatch = |field: &'static str| Err(Rejection::BindingMismatch { field });
        match claims.tee {
            TeeKind::Nitro => {
                if !equal(claims.bound.user_data.as_deref(), &expected) {
                    return mismatch("user_data");
                }
                if claims.bound.nonce.is_some()
                    && !equal(claims.bound.nonce.as_deref(), &self.nonce)
                {
                    return mismatch("nonce");
                }
                let key = self.key.raw_public_key();
                if claims.bound.public_key.is_some()
                    && !equal(claims.bound.public_key.as_deref(), &key)
                {
                    return mismatch("public_key");
                }
                Ok(())
            }
            TeeKind::Tdx | TeeKind::Snp => {
                if equal(claims.bound.report_data.as_deref(), &expected) {
                    Ok(())
                } else {
                    mismatch("report_data")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2_VECTOR: &str = "5a6697245b5e7a89f935f47745684c190551fe563448d29dc48f386da9d331a4\
                             85776f0d9026d24fa932ce5e8e09282172939ef6576155317e3f1dd9c90fe245";

    fn key(b: u8) -> AgentKey {
        AgentKey::Ed25519 { x: [b; 32] }
    }

    /// A fixed vector, so that the agent and any third-party implementation
    /// can check theirs against it (also printed in docs/agent.md).
    #[test]
    fn binding_is_stable_and_covers_every_input() {
        let b = Binding::new(b"nonce", key(1), ModelDigest([2; 48])).unwrap();
        let base = b.report_data();
        // Computed independently (Python hashlib) from the definition above.
        assert_eq!(
            hex::encode(base),
            "36836cfcc7cacf0e7fe4c5beeb8555a510bd1ac8443bea2e5a9d54633f196192\
             ed2d3365de3d4fc22c45a0198e7a7234af3102768accd2f1e9727b4df75a2363"
        );
        for other in [
            Binding::new(b"nonc", key(1), ModelDigest([2; 48])),
            Binding::new(b"nonce", key(3), ModelDigest([2; 48])),
            Binding::new(b"nonce", key(1), ModelDigest([3; 48])),
        ] {
            assert_ne!(other.unwrap().report_data(), base);
        }
        assert!(Binding::new(b"", key(1), ModelDigest([2; 48])).is_none());
        assert!(Binding::new(&[0; 257], key(1), ModelDigest([2; 48])).is_none());
    }

    /// Version 2's fixed vector (also in docs/agent.md), and that it covers
    /// the encryption key, differs from v1, and refuses one key for both.
    #[test]
    fn binding_v2_is_stable_and_covers_the_encryption_key() {
        let b =
            Binding::with_encryption_key(b"nonce", key(1), key(4), ModelDigest([2; 48])).unwrap();
        let base = b.report_data();
        // Computed independently (Python hashlib) from the definition above.
        assert_eq!(hex::encode(base), V2_VECTOR);
        let v1 = Binding::new(b"nonce", key(1), ModelDigest([2; 48])).unwrap();
        assert_ne!(v1.report_data(), base);
        for other in [
            Binding::with_encryption_key(b"nonc", key(1), key(4), ModelDigest([2; 48])),
            Binding::with_encryption_key(b"nonce", key(3), key(4), ModelDigest([2; 48])),
            Binding::with_encryption_key(b"nonce", key(1), key(5), ModelDigest([2; 48])),
            Binding::with_encryption_key(b"nonce", key(1), key(4), ModelDigest([3; 48])),
            // Swapping the two keys is another binding.
            Binding::with_encryption_key(b"nonce", key(4), key(1), ModelDigest([2; 48])),
        ] {
            assert_ne!(other.unwrap().report_data(), base);
        }
        assert!(
            Binding::with_encryption_key(b"nonce", key(1), key(1), ModelDigest([2; 48])).is_none()
        );
        assert!(Binding::with_encryption_key(b"", key(1), key(4), ModelDigest([2; 48])).is_none());
    }
}
