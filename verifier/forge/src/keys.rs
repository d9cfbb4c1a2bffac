//! Deterministic test keys: the same label always yields the same key, and
//! signatures are deterministic (RFC 6979), so regenerated test data is
//! byte-identical and can be checked in and compared.

use p384::ecdsa::signature::Signer;
use sha2::{Digest, Sha256, Sha384};

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// One label-derived ECDSA key type per curve: the scalar is
/// HASH(prefix ‖ label ‖ counter) for the first counter giving a valid scalar.
macro_rules! label_key {
    (
        $(#[$doc:meta])*
        $name:ident, $curve:ident, $hash:ty, $ctor:ident, $prefix:literal,
        $curve_name:literal, $rcgen_alg:path
    ) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name {
            signing: $curve::ecdsa::SigningKey,
            /// Uncompressed SEC1 point.
            public: Vec<u8>,
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "TestKey({}, public {})", $curve_name, hex_prefix(&self.public))
            }
        }

        impl $name {
            /// The key for `label` (see the type's derivation above).
            pub fn $ctor(label: &str) -> Self {
                let mut counter = 0u32;
                loop {
                    let mut h = <$hash>::new();
                    h.update($prefix.as_bytes());
                    h.update(label.as_bytes());
                    h.update(counter.to_be_bytes());
                    if let Ok(signing) = $curve::ecdsa::SigningKey::from_slice(&h.finalize()) {
                        let public = signing
                            .verifying_key()
                            .to_encoded_point(false)
                            .as_bytes()
                            .to_vec();
                        return Self { signing, public };
                    }
                    counter += 1;
                }
            }

            /// The public key as a DER SubjectPublicKeyInfo.
            pub fn spki_der(&self) -> Vec<u8> {
                use $curve::pkcs8::EncodePublicKey;
                self.signing
                    .verifying_key()
                    .to_public_key_der()
                    .map(|d| d.as_bytes().to_vec())
                    .unwrap_or_default()
            }

            /// The uncompressed public point (`04 ‖ x ‖ y`).
            pub fn public_point(&self) -> &[u8] {
                &self.public
            }

            /// ECDSA with the curve's hash, fixed-length r ‖ s (COSE's and DCAP's encoding).
            pub fn sign_fixed(&self, msg: &[u8]) -> Vec<u8> {
                let sig: $curve::ecdsa::Signature = self.signing.sign(msg);
                sig.to_bytes().to_vec()
            }

            /// The private key as PKCS#8 DER, for a faster signer (the
            /// simulator's per-nonce signatures, [`crate::template`]).
            pub fn pkcs8_der(&self) -> Vec<u8> {
                use $curve::pkcs8::EncodePrivateKey;
                self.signing
                    .to_pkcs8_der()
                    .map(|d| d.as_bytes().to_vec())
                    .unwrap_or_default()
            }

            /// ECDSA with the curve's hash, ASN.1 DER (X.509's encoding).
            pub fn sign_der(&self, msg: &[u8]) -> Vec<u8> {
                let sig: $curve::ecdsa::Signature = self.signing.sign(msg);
                sig.to_der().as_bytes().to_vec()
            }
        }

        impl rcgen::PublicKeyData for $name {
            fn der_bytes(&self) -> &[u8] {
                &self.public
            }

            fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
                &$rcgen_alg
            }
        }

        impl rcgen::SigningKey for $name {
            fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
                Ok(self.sign_der(msg))
            }
        }
    };
}

label_key!(
    /// A P-384 key derived from a label. For tests and simulation only.
    TestKey, p384, Sha384, p384, "attest-gate test key\0", "P-384", rcgen::PKCS_ECDSA_P384_SHA384
);

label_key!(
    /// A P-256 key derived from a label (Intel's curve: DCAP attestation keys,
    /// PCK and TCB-signing keys). For tests and simulation only.
    TestKeyP256, p256, Sha256, new, "attest-gate test p256 key\0", "P-256", rcgen::PKCS_ECDSA_P256_SHA256
);

impl TestKeyP256 {
    /// The raw public key `x ‖ y` (64 bytes), as DCAP quotes carry it.
    pub fn public_raw(&self) -> [u8; 64] {
        let mut raw = [0u8; 64];
        for (o, b) in raw.iter_mut().zip(self.public.iter().skip(1)) {
            *o = *b;
        }
        raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_signatures_are_deterministic() {
        let a = TestKey::p384("x");
        let b = TestKey::p384("x");
        assert_eq!(a.public_point(), b.public_point());
        assert_ne!(a.public_point(), TestKey::p384("y").public_point());
        assert_eq!(a.sign_fixed(b"m"), b.sign_fixed(b"m"));
        assert_eq!(a.sign_fixed(b"m").len(), 96);
    }

    #[test]
    fn p256_keys_sign_deterministically_and_verify() {
        use p256::ecdsa::signature::Verifier;
        let a = TestKeyP256::new("x");
        let b = TestKeyP256::new("x");
        assert_eq!(a.public_point(), b.public_point());
        assert_ne!(a.public_point(), TestKeyP256::new("y").public_point());
        assert_eq!(a.sign_fixed(b"m"), b.sign_fixed(b"m"));
        assert_eq!(a.sign_fixed(b"m").len(), 64);
        assert_eq!(&a.public_point()[1..], &a.public_raw()[..]);
        let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(a.public_point()).unwrap();
        let fixed = p256::ecdsa::Signature::from_slice(&a.sign_fixed(b"m")).unwrap();
        vk.verify(b"m", &fixed).unwrap();
        let der = p256::ecdsa::Signature::from_der(&a.sign_der(b"m")).unwrap();
        vk.verify(b"m", &der).unwrap();
    }
}
