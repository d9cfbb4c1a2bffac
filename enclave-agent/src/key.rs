//! The agent's ephemeral key: P-256, generated in memory for each run, never
//! written anywhere. Its PKCS#8 bytes exist only while the key is built, in a
//! buffer zeroized right after; aws-lc holds the key itself and cleanses it
//! when freed. The public half is the JWK the evidence binds and the
//! credentials are bound to. The CSR is signed through rcgen's `SigningKey`
//! trait implemented here, so no other library gets a copy of the key.
//!
//! With the SPIFFE Workload API on (`run --workload-api-socket`), and only
//! then, the PKCS#8 bytes are kept (zeroized when the key is dropped): the
//! Workload API must hand the X.509-SVID's private key to the workloads in
//! this TEE, and the SVID certifies this key (the verifier issues SVIDs for
//! the attested key only). See docs/agent.md, "The SPIFFE Workload API".
//!
//! A second P-256 key, for decryption only (ECDH), is made beside it: the
//! evidence binds both (binding v2), and the verifier releases secrets only
//! as JWEs to it. It is never used to sign, and the signing key never
//! decrypts.

use attest_gate_core::AgentKey;
use attest_gate_protocol::jwe::{self, JweError, Opened};
use aws_lc_rs::agreement::{PrivateKey, ECDH_P256};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use zeroize::Zeroizing;

/// The key could not be made or used.
#[derive(Debug, thiserror::Error)]
#[error("ephemeral key: {0}")]
pub struct KeyError(String);

/// An in-memory P-256 key pair.
pub struct EphemeralKey {
    /// Signs JWS (DPoP proofs): fixed-length r‖s.
    pair: EcdsaKeyPair,
    /// The same key, signing X.509 structures (CSRs): DER signatures.
    x509: EcdsaKeyPair,
    public: AgentKey,
    /// Decrypts released secrets (ECDH P-256); never signs.
    decryption: PrivateKey,
    decryption_public: AgentKey,
    /// The signing key's PKCS#8 document, kept only by
    /// [`EphemeralKey::generate_exportable`].
    pkcs8: Option<Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for EphemeralKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EphemeralKey({})", self.public.jkt())
    }
}

impl EphemeralKey {
    /// A fresh key from the system CSPRNG.
    pub fn generate() -> Result<Self, KeyError> {
        Self::make(false)
    }

    /// A fresh key whose PKCS#8 document is kept in memory for
    /// [`EphemeralKey::svid_key_pkcs8`] (the SPIFFE Workload API).
    pub fn generate_exportable() -> Result<Self, KeyError> {
        Self::make(true)
    }

    /// The signing key as unencrypted PKCS#8 DER, if it was made
    /// exportable: the X.509-SVID's private key for the Workload API. Never
    /// log it.
    pub fn svid_key_pkcs8(&self) -> Option<&[u8]> {
        self.pkcs8.as_deref().map(Vec::as_slice)
    }

    fn make(keep_pkcs8: bool) -> Result<Self, KeyError> {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| KeyError("the random generator failed".into()))?;
        let pkcs8 = Zeroizing::new(doc.as_ref().to_vec());
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
            .map_err(|e| KeyError(e.to_string()))?;
        let x509 = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8)
            .map_err(|e| KeyError(e.to_string()))?;
        let pkcs8 = keep_pkcs8.then_some(pkcs8);
        let point = pair.public_key().as_ref();
        let coordinate = |range: std::ops::Range<usize>| -> Result<[u8; 32], KeyError> {
            point
                .get(range)
                .and_then(|c| c.try_into().ok())
                .ok_or_else(|| KeyError("unexpected public key encoding".into()))
        };
        let public = AgentKey::P256 {
            x: coordinate(1..33)?,
            y: coordinate(33..65)?,
        };
        let decryption = PrivateKey::generate(&ECDH_P256)
            .map_err(|_| KeyError("the random generator failed".into()))?;
        let decryption_public =
            jwe::public_key(&decryption).map_err(|e| KeyError(e.to_string()))?;
        Ok(Self {
            pair,
            x509,
            public,
            decryption,
            decryption_public,
            pkcs8,
        })
    }

    /// The decryption-only key's public half (the `encryption_key` the
    /// evidence binds).
    pub fn encryption_public(&self) -> &AgentKey {
        &self.decryption_public
    }

    /// Opens a JWE the verifier encrypted to the decryption key.
    pub fn open(&self, compact: &str) -> Result<Opened, JweError> {
        jwe::decrypt(&self.decryption, compact)
    }

    /// The public key (JWK, thumbprint, SEC1 point).
    pub fn public(&self) -> &AgentKey {
        &self.public
    }

    /// ES256 signature (fixed r‖s), e.g. for a DPoP proof.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.pair
            .sign(&SystemRandom::new(), message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| KeyError("signing failed".into()))
    }

    /// A PKCS#10 request (PEM) for this key, for an X.509-SVID. The subject is
    /// empty: the verifier names the workload from its appraisal.
    pub fn csr_pem(&self) -> Result<String, KeyError> {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .serialize_request(&CsrSigner(self))
            .and_then(|csr| csr.pem())
            .map_err(|e| KeyError(e.to_string()))
    }
}

/// The key as rcgen sees it: public point, algorithm, and DER signatures by
/// aws-lc (the private key is never handed over).
struct CsrSigner<'a>(&'a EphemeralKey);

impl rcgen::PublicKeyData for CsrSigner<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.0.x509.public_key().as_ref()
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for CsrSigner<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.0
            .x509
            .sign(&SystemRandom::new(), msg)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| rcgen::Error::RemoteKeyError)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};

    #[test]
    fn each_key_is_new_and_signs_under_its_public_half() {
        let a = EphemeralKey::generate().unwrap();
        let b = EphemeralKey::generate().unwrap();
        assert_ne!(a.public().jkt(), b.public().jkt());
        let signature = a.sign(b"message").unwrap();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, a.public().raw_public_key())
            .verify(b"message", &signature)
            .unwrap();
        assert!(format!("{a:?}").contains(&a.public().jkt()));
        assert!(!format!("{a:?}").contains("pkcs8"));
    }

    #[test]
    fn only_an_exportable_key_gives_its_pkcs8_and_it_is_the_same_key() {
        assert!(EphemeralKey::generate().unwrap().svid_key_pkcs8().is_none());
        let key = EphemeralKey::generate_exportable().unwrap();
        let pkcs8 = key.svid_key_pkcs8().unwrap();
        let again = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8).unwrap();
        assert_eq!(
            again.public_key().as_ref(),
            key.public().raw_public_key().as_slice()
        );
        assert!(!format!("{key:?}").contains("pkcs8"));
    }

    #[test]
    fn the_csr_is_for_this_key() {
        let key = EphemeralKey::generate().unwrap();
        let pem = key.csr_pem().unwrap();
        let der = pem::parse(&pem).unwrap();
        let csr = rcgen::CertificateSigningRequestParams::from_der(&der.contents().to_vec().into())
            .unwrap();
        use rcgen::PublicKeyData;
        assert_eq!(csr.public_key.der_bytes(), key.public().raw_public_key());
    }
}
