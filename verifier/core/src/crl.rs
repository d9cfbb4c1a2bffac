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

/// The DER of a CRL given as DER or as PEM.
fn der_or_pem(bytes: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    if bytes.starts_with(b"-----BEGIN") {
        let pem = pem::parse(bytes).ok()?;
        (pem.tag() == "X509 CRL").then(|| pem.into_contents().into())
    } else {
        Some(bytes.into())
    }
}
