//! Certificate revocation lists: parse one, check that its issuer signed it
//! and that it is current, then answer "is this serial revoked?".
//!
//! The signature algorithm differs per vendor (RSA-PSS for AMD, ECDSA for
//! Intel), so the caller supplies the signature check.

use time::OffsetDateTime;
use x509_parser::prelude::{CertificateRevocationList, FromDer, X509Certificate};

use crate::error::VerifyError;

/// A CRL whose signature and window have been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RevocationList {
    revoked: Vec<Vec<u8>>,
    /// Start of the window in which the list is current.
    pub(crate) this_update: OffsetDateTime,
    /// End of that window.
    pub(crate) next_update: OffsetDateTime,
}

impl RevocationList {
    /// Parses `crl_der` (DER, or PEM `X509 CRL`), checks that `issuer` issued
    /// and signed it (`signed_by_issuer` is given the parsed CRL), and that it
    /// is current at `at`.
    pub(crate) fn verify(
        crl: &[u8],
        issuer: &X509Certificate<'_>,
        at: OffsetDateTime,
        signed_by_issuer: impl FnOnce(&CertificateRevocationList<'_>) -> bool,
    ) -> Result<Self, VerifyError> {
        let invalid = |reason: &str| VerifyError::CrlInvalid {
            reason: reason.into(),
        };
        let der = der_or_pem(crl).ok_or_else(|| invalid("neither DER nor PEM"))?;
        let parsed = match CertificateRevocationList::from_der(&der) {
            Ok(([], parsed)) => parsed,
            _ => return Err(invalid("not a DER certificate revocation list")),
        };
        if !outer_structure_is_strict(&der) {
            return Err(invalid(
                "its unsigned outer structure is not RFC 5280's (tags, or a signatureAlgorithm other than the tbsCertList's)",
            ));
        }
        if parsed.issuer().as_raw() != issuer.subject().as_raw() {
            return Err(invalid("not issued by the expected CA"));
        }
        if !signed_by_issuer(&parsed) {
            return Err(invalid("signature does not verify with the issuer's key"));
        }
        let this_update = parsed.last_update().to_datetime();
        let next_update = match parsed.next_update() {
            Some(next) => next.to_datetime(),
            None => return Err(invalid("no nextUpdate")),
        };
        if at < this_update {
            return Err(invalid("issued after the verification instant"));
        }
        if at >= next_update {
            return Err(invalid("past its nextUpdate (stale)"));
        }
        Ok(Self {
            revoked: parsed
                .iter_revoked_certificates()
                .map(|r| r.raw_serial().to_vec())
                .collect(),
            this_update,
            next_update,
        })
    }

    /// `certificate_revoked` if any of `serials` is listed.
    pub(crate) fn check(&self, serials: &[&[u8]]) -> Result<(), VerifyError> {
        match serials
            .iter()
            .find(|s| self.revoked.iter().any(|r| r.as_slice() == **s))
        {
            Some(serial) => Err(VerifyError::CertificateRevoked {
                serial: hex::encode(serial),
            }),
            None => Ok(()),
        }
    }
}

/// Whether the CRL's unsigned outer structure is what RFC 5280 §5.1 says:
/// `SEQUENCE { tbsCertList SEQUENCE, signatureAlgorithm SEQUENCE,
/// signatureValue BIT STRING }` with nothing after, and a
/// `signatureAlgorithm` byte for byte the `tbsCertList.signature` (§5.1.1.2:
/// it MUST be). None of it is signed, and the DER parser we use accepts
/// other tags there, so nothing else would notice it edited.
fn outer_structure_is_strict(der: &[u8]) -> bool {
    const SEQUENCE: u8 = 0x30;
    const BIT_STRING: u8 = 0x03;
    use x509_parser::der_parser::asn1_rs::{Any, FromDer as _};
    /// One TLV: its content and its whole encoding; the bytes after it.
    fn tlv(input: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
        let (rest, any) = Any::from_der(input).ok()?;
        let whole = input.get(..input.len() - rest.len())?;
        Some((any.data, whole, rest))
    }
    let Some((list, whole, [])) = tlv(der) else {
        return false;
    };
    let Some((tbs, tbs_whole, after_tbs)) = tlv(list) else {
        return false;
    };
    let Some((_, outer, after_algorithm)) = tlv(after_tbs) else {
        return false;
    };
    let Some((_, signature, [])) = tlv(after_algorithm) else {
        return false;
    };
    let tags = [whole, tbs_whole, outer, signature].map(|t| t.first().copied());
    if tags
        != [
            Some(SEQUENCE),
            Some(SEQUENCE),
            Some(SEQUENCE),
            Some(BIT_STRING),
        ]
    {
        return false;
    }
    // tbsCertList: an optional version (INTEGER), then the signature field.
    let Some((_, first, after_first)) = tlv(tbs) else {
        return false;
    };
    let inner = if first.first() == Some(&0x02) {
        match tlv(after_first) {
            Some((_, inner, _)) => inner,
            None => return false,
        }
    } else {
        first
    };
    inner == outer
}

/// The DER of a CRL given as DER or as PEM.
fn der_or_pem(bytes: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    if bytes.starts_with(b"-----BEGIN") {
        let pem = pem::parse(bytes).ok()?;
        (pem.tag() == "X509 CRL").then(|| pem.into_contents().into())
    } else {
        Some(bytes.into())
    }
}
