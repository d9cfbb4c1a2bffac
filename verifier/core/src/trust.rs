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

/// AMD ARKs (RSA-4096, self-signed) and their SHA-256 fingerprints, per product.
const AMD_ARKS: [(&[u8], [u8; 32]); 3] = [
    (
        include_bytes!("../roots/amd_ark_milan.der"),
        hex32("69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd"),
    ),
    (
        include_bytes!("../roots/amd_ark_genoa.der"),
        hex32("4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1"),
    ),
    (
        include_bytes!("../roots/amd_ark_turin.der"),
        hex32("1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a"),
    ),
];
/// AMD ASKs and ASVKs, used when collateral does not carry them. They are
/// not anchors: each is still verified against its pinned ARK.
const AMD_INTERMEDIATES: [&[u8]; 6] = [
    include_bytes!("../roots/amd_ask_milan.der"),
    include_bytes!("../roots/amd_ask_genoa.der"),
    include_bytes!("../roots/amd_ask_turin.der"),
    include_bytes!("../roots/amd_asvk_milan.der"),
    include_bytes!("../roots/amd_asvk_genoa.der"),
    include_bytes!("../roots/amd_asvk_turin.der"),
];

/// Intel SGX Root CA (P-256, valid 2018-05-21 .. 2049-12-31): the root of
/// PCK certificates, CRLs, TCB info and QE identity for TDX.
const INTEL_SGX_ROOT_CA_DER: &[u8] = include_bytes!("../roots/intel_sgx_root_ca.der");
/// Its SHA-256 fingerprint.
const INTEL_SGX_ROOT_CA_SHA256: [u8; 32] =
    hex32("44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3");
/// Intel's TCB signing certificates (2018-2025 and its 2025-2032 renewal),
/// used when collateral comes without its issuer chain. Not anchors: each is
/// still verified against the pinned root.
const INTEL_TCB_SIGNING: [&[u8]; 2] = [
    include_bytes!("../roots/intel_tcb_signing_2018-2025.der"),
    include_bytes!("../roots/intel_tcb_signing_2025-2032.der"),
];

/// A 64-digit hex string as 32 bytes, at compile time (a bad literal fails the build).
#[allow(clippy::panic, clippy::indexing_slicing)]
const fn hex32(s: &str) -> [u8; 32] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("not lower-case hex"),
        }
    }
    let b = s.as_bytes();
    assert!(b.len() == 64);
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = nibble(b[2 * i]) << 4 | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

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
    amd_arks: Vec<Anchor>,
    /// (raw subject name, DER) of each compiled-in ASK / ASVK.
    amd_intermediates: Vec<(Vec<u8>, Vec<u8>)>,
    intel: Vec<Anchor>,
    /// DER of the compiled-in Intel TCB signing certificates.
    intel_tcb_signing: Vec<Vec<u8>>,
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
        let mut amd_arks = Vec::new();
        for (der, pinned) in AMD_ARKS {
            let ark = Anchor::from_der(der.to_vec())?;
            if ark.sha256 != pinned {
                return Err(TrustError::FingerprintMismatch(TeeKind::Snp));
            }
            amd_arks.push(ark);
        }
        let intel = Anchor::from_der(INTEL_SGX_ROOT_CA_DER.to_vec())?;
        if intel.sha256 != INTEL_SGX_ROOT_CA_SHA256 {
            return Err(TrustError::FingerprintMismatch(TeeKind::Tdx));
        }
        Ok(Self {
            kind: TrustKind::VendorRoot,
            intel: vec![intel],
            intel_tcb_signing: INTEL_TCB_SIGNING.iter().map(|d| d.to_vec()).collect(),
            nitro: vec![nitro],
            amd_arks,
            amd_intermediates: AMD_INTERMEDIATES
                .iter()
                .map(|der| {
                    crate::chain::parse(der)
                        .map(|c| (c.subject().as_raw().to_vec(), der.to_vec()))
                        .map_err(|e| TrustError::NotACertificate(e.to_string()))
                })
                .collect::<Result<_, _>>()?,
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
            amd_arks: anchors.clone(),
            intel: anchors.clone(),
            intel_tcb_signing: Vec::new(),
            nitro: anchors,
            amd_intermediates: Vec::new(),
        })
    }

    /// Whether these are vendor or test roots.
    pub fn kind(&self) -> TrustKind {
        self.kind
    }

    pub(crate) fn nitro(&self) -> &[Anchor] {
        &self.nitro
    }

    /// AMD root keys (ARKs), or the test roots.
    pub(crate) fn amd_arks(&self) -> &[Anchor] {
        &self.amd_arks
    }

    /// The Intel SGX Root CA, or the test roots.
    pub(crate) fn intel(&self) -> &[Anchor] {
        &self.intel
    }

    /// The compiled-in Intel TCB signing certificates (vendor trust only).
    pub(crate) fn intel_tcb_signing(&self) -> impl Iterator<Item = &[u8]> {
        self.intel_tcb_signing.iter().map(Vec::as_slice)
    }

    /// The compiled-in ASK / ASVK whose subject is `issuer` (vendor trust only).
    pub(crate) fn amd_intermediate_named(&self, issuer: &[u8]) -> Option<&[u8]> {
        self.amd_intermediates
            .iter()
            .find(|(subject, _)| subject == issuer)
            .map(|(_, der)| der.as_slice())
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
        assert_eq!(anchors.amd_arks().len(), 3);
        assert_eq!(anchors.intel()[0].sha256, INTEL_SGX_ROOT_CA_SHA256);
        assert_eq!(anchors.intel_tcb_signing().count(), 2);
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
