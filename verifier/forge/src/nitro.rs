//! Forged AWS Nitro attestation documents under a project-made test root,
//! shaped like the real thing (root → regional → zonal → instance → enclave
//! leaf), with every knob a negative test needs.

use ciborium::value::Value;
use coset::{iana, CborSerializable, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable};
use sha2::{Digest, Sha384};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use crate::pki::{CertSpec, Chain, ChainSpec, PkiError};

/// The instant every forged Nitro document is made at and verifies at.
pub const FORGE_INSTANT: OffsetDateTime = datetime!(2025-01-01 00:00:00 UTC);
/// The test root's key label.
pub const TEST_ROOT_KEY: &str = "nitro-test-root";
/// Common name shared by the real AWS root and the test root (to prove that
/// names are never what makes a root trusted).
pub const ROOT_COMMON_NAME: &str = "aws.nitro-enclaves";

/// The chain the NSM's certificates mirror; the leaf lives three hours.
pub fn chain_spec() -> ChainSpec {
    chain_spec_at(FORGE_INSTANT)
}

/// The standard chain with its intermediates and leaf current at `at`; the
/// root (and so `test_root()`) is the same whatever `at` is.
pub fn chain_spec_at(at: OffsetDateTime) -> ChainSpec {
    let long = (
        datetime!(2020-01-01 00:00:00 UTC),
        datetime!(2050-01-01 00:00:00 UTC),
    );
    ChainSpec {
        organization: "Amazon (Attest Gate test)".into(),
        root: CertSpec::ca(ROOT_COMMON_NAME, TEST_ROOT_KEY, None, long),
        intermediates: vec![
            CertSpec::ca(
                "test.us-east-1.aws.nitro-enclaves",
                "nitro-regional",
                Some(2),
                (at - Duration::days(5), at + Duration::days(15)),
            ),
            CertSpec::ca(
                "test.zonal.us-east-1.aws.nitro-enclaves",
                "nitro-zonal",
                Some(1),
                (at - Duration::days(1), at + Duration::days(4)),
            ),
            CertSpec::ca(
                "i-0test.us-east-1.aws.nitro-enclaves",
                "nitro-instance",
                Some(0),
                (at - Duration::hours(2), at + Duration::hours(22)),
            ),
        ],
        leaf: CertSpec::leaf(
            "i-0test-enc0test.us-east-1.aws",
            "nitro-enclave-leaf",
            (at - Duration::minutes(1), at + Duration::hours(3)),
        ),
        leaf_signed_by: None,
    }
}

/// The test root certificate (DER).
pub fn test_root() -> Result<Vec<u8>, PkiError> {
    Ok(chain_spec().issue()?.root)
}

/// The document's contents and envelope choices.
#[derive(Debug, Clone)]
pub struct DocSpec {
    /// `module_id`.
    pub module_id: String,
    /// `digest` (AWS: always `SHA384`).
    pub digest: String,
    /// `timestamp`, milliseconds since the epoch.
    pub timestamp_ms: u64,
    /// `pcrs`, index → value (indices as CBOR integers, unchecked).
    pub pcrs: Vec<(i64, Vec<u8>)>,
    /// `public_key`.
    pub public_key: Option<Vec<u8>>,
    /// `user_data`.
    pub user_data: Option<Vec<u8>>,
    /// `nonce`.
    pub nonce: Option<Vec<u8>>,
    /// Algorithm in the protected header (`None`: absent).
    pub protected_algorithm: Option<iana::Algorithm>,
    /// Algorithm in the unprotected header (a verifier must ignore it).
    pub unprotected_algorithm: Option<iana::Algorithm>,
    /// Emit CBOR tag 18.
    pub tagged: bool,
}

/// A deterministic 48-byte measurement for `label`.
pub fn measurement(label: &str) -> Vec<u8> {
    Sha384::digest(label.as_bytes()).to_vec()
}

impl Default for DocSpec {
    /// A production-like (non-debug) document: PCR0–2 and 8 set, others zero.
    fn default() -> Self {
        let pcrs = (0..16)
            .map(|i| {
                let value = match i {
                    0 => measurement("attest-gate test enclave image"),
                    1 => measurement("attest-gate test kernel"),
                    2 => measurement("attest-gate test application"),
                    8 => measurement("attest-gate test signing certificate"),
                    _ => vec![0; 48],
                };
                (i, value)
            })
            .collect();
        Self {
            module_id: "i-0test-enc0test".into(),
            digest: "SHA384".into(),
            timestamp_ms: u64::try_from(FORGE_INSTANT.unix_timestamp()).unwrap_or_default() * 1000,
            pcrs,
            public_key: None,
            user_data: None,
            nonce: Some(measurement("attest-gate test nonce")),
            protected_algorithm: Some(iana::Algorithm::ES384),
            unprotected_algorithm: None,
            tagged: false,
        }
    }
}

impl DocSpec {
    /// A debug-mode document: PCR0, PCR1 and PCR2 all zero.
    pub fn debug() -> Self {
        let mut spec = Self::default();
        for (index, value) in &mut spec.pcrs {
            if *index <= 2 {
                *value = vec![0; 48];
            }
        }
        spec
    }

    fn payload(&self, chain: &Chain, cabundle: &[Vec<u8>]) -> Result<Vec<u8>, ForgeError> {
        let opt = |v: &Option<Vec<u8>>| v.clone().map_or(Value::Null, Value::Bytes);
        let map = Value::Map(vec![
            (text("module_id"), Value::Text(self.module_id.clone())),
            (text("digest"), Value::Text(self.digest.clone())),
            (text("timestamp"), Value::Integer(self.timestamp_ms.into())),
            (
                text("pcrs"),
                Value::Map(
                    self.pcrs
                        .iter()
                        .map(|(i, v)| (Value::Integer((*i).into()), Value::Bytes(v.clone())))
                        .collect(),
                ),
            ),
            (text("certificate"), Value::Bytes(chain.leaf.clone())),
            (
                text("cabundle"),
                Value::Array(cabundle.iter().cloned().map(Value::Bytes).collect()),
            ),
            (text("public_key"), opt(&self.public_key)),
            (text("user_data"), opt(&self.user_data)),
            (text("nonce"), opt(&self.nonce)),
        ]);
        let mut out = Vec::new();
        ciborium::ser::into_writer(&map, &mut out).map_err(|e| ForgeError::Cbor(e.to_string()))?;
        Ok(out)
    }

    /// Signs the document with `chain`'s leaf key, carrying `cabundle`.
    pub fn sign(&self, chain: &Chain, cabundle: &[Vec<u8>]) -> Result<Vec<u8>, ForgeError> {
        self.sign_with(chain, cabundle, |tbs| chain.leaf_key.sign_fixed(tbs))
    }

    /// Signs the document with `sign` (ES384, `r ‖ s`) in place of the
    /// chain's leaf key: the simulator's faster signer of the same key.
    pub fn sign_with(
        &self,
        chain: &Chain,
        cabundle: &[Vec<u8>],
        sign: impl FnOnce(&[u8]) -> Vec<u8>,
    ) -> Result<Vec<u8>, ForgeError> {
        let mut protected = HeaderBuilder::new();
        if let Some(alg) = self.protected_algorithm {
            protected = protected.algorithm(alg);
        }
        let mut unprotected = HeaderBuilder::new();
        if let Some(alg) = self.unprotected_algorithm {
            unprotected = unprotected.algorithm(alg);
        }
        let sign1 = CoseSign1Builder::new()
            .protected(protected.build())
            .unprotected(unprotected.build())
            .payload(self.payload(chain, cabundle)?)
            .create_signature(&[], sign)
            .build();
        let bytes = if self.tagged {
            sign1.to_tagged_vec()
        } else {
            sign1.to_vec()
        };
        bytes.map_err(|e| ForgeError::Cbor(e.to_string()))
    }

    /// Signs under the standard test chain with the full bundle.
    pub fn forge(&self) -> Result<Vec<u8>, ForgeError> {
        let chain = chain_spec().issue()?;
        self.sign(&chain, &bundle(&chain))
    }
}

/// The `cabundle` AWS sends: root first, then intermediates.
pub fn bundle(chain: &Chain) -> Vec<Vec<u8>> {
    std::iter::once(chain.root.clone())
        .chain(chain.intermediates.iter().cloned())
        .collect()
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

/// Forging failed (a generator defect, not an input problem).
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    /// Certificate generation failed.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// AMD test PKI generation failed.
    #[error(transparent)]
    Amd(#[from] crate::amd::AmdPkiError),
    /// Intel test PKI or TDX collateral generation failed.
    #[error(transparent)]
    Intel(#[from] crate::intel::IntelPkiError),
    /// CBOR encoding failed.
    #[error("CBOR encoding failed: {0}")]
    Cbor(String),
    /// A test key could not be loaded into the fast signer.
    #[error("test key unusable: {0}")]
    Key(String),
}
