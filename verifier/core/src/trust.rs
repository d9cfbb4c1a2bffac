//! Trust anchors: the compiled-in vendor roots, or explicitly configured test roots.
//!
//! Vendor roots are pinned twice: their DER is compiled in, and its SHA-256
//! fingerprint is checked against a constant before use. Test roots enter only
//! through [`TrustAnchors::test_roots`], and everything verified under them is
//! marked [`TrustKind::TestRoot`].

use aws_lc_rs::digest;
use rustls_pki_types::CertificateDer;
use webpki::anchor_from_trusted_cert;

use crate::claims::{TeeKind, TrustKind};

/// AWS Nitro Enclaves Root G1 (P-384, valid 2019-10-28 .. 2049-10-28).
const AWS_NITRO_ROOT_G1_DER: &[u8] = include_bytes!("../roots/aws_nitro_enclaves_root_g1.der");
/// Its published SHA-256 fingerprint.
pub(crate) const AWS_NITRO_ROOT_G1_SHA256: [u8; 32] = [
    0x64, 0x1a, 0x03, 0x21, 0xa3, 0xe2, 0x44, 0xef, 0xe4, 0x56, 0x46, 0x31, 0x95, 0xd6, 0x06, 0x31,
    0x7e, 0xd7, 0xcd, 0xcc, 0x3c, 0x17, 0x56, 0xe0, 0x98, 0x93, 0xf3, 0xc6, 0x8f, 0x79, 0xbb, 0x5b,
];

/// One trusted root certificate, parsed once.
#[derive(Debug, Clone)]
pub(crate) struct Anchor {
    pub(crate) der: CertificateDer<'static>,
    pub(crate) sha256: [u8; 32],
    pub(crate) anchor: rustls_pki_types::TrustAnchor<'static>,
}

impl Anchor {
    fn from_der(der: Vec<u8>) -> Result<Self, TrustError> {
        let der = CertificateDer::from(der);
        let anchor = anchor_from_trusted_cert(&der)
            .map_err(|e| TrustError::NotACertificate(e.to_string()))?
            .to_owned();
        let sha256 = sha256(der.as_ref());
        Ok(Self {
            der,
            sha256,
            anchor,
        })
    }
}

/// The set of roots a [`crate::Verifier`] accepts, per TEE.
#[derive(Debug, Clone)]
pub struct TrustAnchors {
    kind: TrustKind,
    nitro: Vec<Anchor>,
}

/// A root certificate could not be used as a trust anchor.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    /// The bytes are not a usable X.509 certificate.
    #[error("not a usable root certificate: {0}")]
    NotACertificate(String),
    /// A compiled-in root does not match its pinned fingerprint (a build defect).
    #[error("compiled-in root for {0} does not match its pinned fingerprint")]
    FingerprintMismatch(TeeKind),
    /// No test roots were given.
    #[error("at least one test root is required")]
    Empty,
}

impl TrustAnchors {
    /// The production vendor roots compiled into this binary.
    pub fn vendor() -> Result<Self, TrustError> {
        let nitro = Anchor::from_der(AWS_NITRO_ROOT_G1_DER.to_vec())?;
        if nitro.sha256 != AWS_NITRO_ROOT_G1_SHA256 {
            return Err(TrustError::FingerprintMismatch(TeeKind::Nitro));
        }
        Ok(Self {
            kind: TrustKind::VendorRoot,
            nitro: vec![nitro],
        })
    }

    /// Test roots that *replace* the vendor roots. Dangerous: evidence forged
    /// under these roots verifies. Callers must log this loudly, and every
    /// result carries [`TrustKind::TestRoot`].
    pub fn test_roots(roots_der: Vec<Vec<u8>>) -> Result<Self, TrustError> {
        if roots_der.is_empty() {
            return Err(TrustError::Empty);
        }
        let anchors = roots_der
            .into_iter()
            .map(Anchor::from_der)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            kind: TrustKind::TestRoot,
            nitro: anchors,
        })
    }

    /// Whether these are vendor or test roots.
    pub fn kind(&self) -> TrustKind {
        self.kind
    }

    pub(crate) fn nitro(&self) -> &[Anchor] {
        &self.nitro
    }
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_nitro_root_matches_pinned_fingerprint() {
        let anchors = TrustAnchors::vendor().unwrap();
        assert_eq!(anchors.kind(), TrustKind::VendorRoot);
        assert_eq!(anchors.nitro()[0].sha256, AWS_NITRO_ROOT_G1_SHA256);
    }

    #[test]
    fn test_roots_refuse_empty_and_garbage() {
        assert_eq!(
            TrustAnchors::test_roots(vec![]).unwrap_err(),
            TrustError::Empty
        );
        assert!(matches!(
            TrustAnchors::test_roots(vec![vec![1, 2, 3]]).unwrap_err(),
            TrustError::NotACertificate(_)
        ));
    }
}
