//! COSE_Sign1 envelope of a Nitro attestation document (RFC 9052 §4.2).
//!
//! Only the protected header is trusted: its algorithm must be ES384 and it
//! may carry no critical parameters. The unprotected header is ignored.

use coset::{
    iana, CborSerializable, CoseSign1, RegisteredLabelWithPrivate, TaggedCborSerializable,
};

use crate::error::VerifyError;

/// CBOR tag 18 (COSE_Sign1) as its one-byte head.
const COSE_SIGN1_TAG_BYTE: u8 = 0xd2;
/// ES384 signatures are r ‖ s, 48 bytes each.
pub(crate) const ES384_SIGNATURE_LEN: usize = 96;

/// A parsed envelope whose algorithm has been checked.
pub(crate) struct Envelope {
    sign1: CoseSign1,
}

impl Envelope {
    /// Parses tagged or untagged COSE_Sign1; no trailing bytes allowed.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, VerifyError> {
        let parsed = if bytes.first() == Some(&COSE_SIGN1_TAG_BYTE) {
            CoseSign1::from_tagged_slice(bytes)
        } else {
            CoseSign1::from_slice(bytes)
        };
        let sign1 = parsed.map_err(|e| VerifyError::malformed(format!("COSE_Sign1: {e}")))?;

        let header = &sign1.protected.header;
        match &header.alg {
            Some(RegisteredLabelWithPrivate::Assigned(iana::Algorithm::ES384)) => {}
            Some(other) => {
                return Err(VerifyError::UnsupportedAlgorithm {
                    found: format!("{other:?}"),
                    expected: "ES384",
                })
            }
            None => {
                return Err(VerifyError::UnsupportedAlgorithm {
                    found: "none in the protected header".into(),
                    expected: "ES384",
                })
            }
        }
        if !header.crit.is_empty() {
            return Err(VerifyError::malformed(
                "COSE protected header has critical parameters this verifier does not know",
            ));
        }
        if sign1.payload.is_none() {
            return Err(VerifyError::malformed("COSE_Sign1 payload is detached"));
        }
        if sign1.signature.len() != ES384_SIGNATURE_LEN {
            return Err(VerifyError::malformed(format!(
                "ES384 signature must be {ES384_SIGNATURE_LEN} bytes, found {}",
                sign1.signature.len()
            )));
        }
        Ok(Self { sign1 })
    }

    /// The signed payload (the CBOR attestation document).
    pub(crate) fn payload(&self) -> &[u8] {
        self.sign1.payload.as_deref().unwrap_or_default()
    }

    /// The raw r ‖ s signature.
    pub(crate) fn signature(&self) -> &[u8] {
        &self.sign1.signature
    }

    /// The Sig_structure the signature covers, with empty external AAD.
    pub(crate) fn signed_bytes(&self) -> Vec<u8> {
        self.sign1.tbs_data(&[])
    }
}
