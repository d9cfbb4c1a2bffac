//! AMD's endorsement chain: VCEK/VLEK ← ASK/ASVK ← ARK, RSASSA-PSS/SHA-384.
//!
//! rustls-webpki cannot take these certificates (AMD encodes PSS parameters
//! with an explicit DEFAULT trailerField, which DER forbids), so each link is
//! checked here directly: the signature AlgorithmIdentifier must be byte-equal
//! to one of AMD's two encodings, the inner and outer identifiers must agree,
//! issuer and subject names must chain, and aws-lc-rs verifies RSA-PSS
//! (SHA-384, MGF1-SHA-384, salt 48) over the exact tbsCertificate bytes.

use aws_lc_rs::signature::{UnparsedPublicKey, RSA_PSS_2048_8192_SHA384};
use time::OffsetDateTime;
use x509_parser::prelude::X509Certificate;

use crate::crl::RevocationList;
use crate::error::VerifyError;

/// RSASSA-PSS, SHA-384, MGF1-SHA-384, salt 48, explicit trailerField 1 (ARK, ASK, older VCEKs).
const PSS_SHA384_WITH_TRAILER: &[u8] = &[
    0x30, 0x46, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a, 0x30, 0x39, 0xa0,
    0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00,
    0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08, 0x30,
    0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0xa2, 0x03,
    0x02, 0x01, 0x30, 0xa3, 0x03, 0x02, 0x01, 0x01,
];
/// The same without the trailerField (newer VCEKs, VLEKs, CRLs).
const PSS_SHA384: &[u8] = &[
    0x30, 0x41, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a, 0x30, 0x34, 0xa0,
    0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00,
    0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08, 0x30,
    0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0xa2, 0x03,
    0x02, 0x01, 0x30,
];

/// The bytes that follow `inner` inside `outer` (both slices of one buffer).
fn after<'a>(outer: &'a [u8], inner: &[u8]) -> &'a [u8] {
    let start = (inner.as_ptr() as usize).saturating_sub(outer.as_ptr() as usize);
    outer.get(start + inner.len()..).unwrap_or_default()
}

/// Checks that `signed_raw` (tbs bytes, a slice of `der`) is followed by one
/// of AMD's PSS identifiers, then verifies `signature` with `issuer_spki_key`.
fn verify_pss(
    der: &[u8],
    signed_raw: &[u8],
    inner_alg_matches_outer: bool,
    signature: &[u8],
    issuer_key: &[u8],
) -> Result<(), VerifyError> {
    let rest = after(der, signed_raw);
    if !(rest.starts_with(PSS_SHA384_WITH_TRAILER) || rest.starts_with(PSS_SHA384))
        || !inner_alg_matches_outer
    {
        return Err(VerifyError::UnsupportedAlgorithm {
            found: "a signature algorithm other than AMD's RSASSA-PSS".into(),
            expected: "RSASSA-PSS SHA-384 MGF1-SHA-384 salt 48",
        });
    }
    UnparsedPublicKey::new(&RSA_PSS_2048_8192_SHA384, issuer_key)
        .verify(signed_raw, signature)
        .map_err(|_| VerifyError::CertificateSignatureInvalid)
}

/// Verifies that `child` (DER `child_der`) is signed by `issuer`.
pub(crate) fn verify_link(
    child_der: &[u8],
    child: &X509Certificate<'_>,
    issuer: &X509Certificate<'_>,
) -> Result<(), VerifyError> {
    if child.issuer().as_raw() != issuer.subject().as_raw() {
        return Err(VerifyError::ChainIncomplete);
    }
    verify_pss(
        child_der,
        child.tbs_certificate.as_ref(),
        child.tbs_certificate.signature == child.signature_algorithm,
        &child.signature_value.data,
        &issuer.public_key().subject_public_key.data,
    )
}

/// Validity of one certificate at `at`.
pub(crate) fn check_validity(
    cert: &X509Certificate<'_>,
    at: OffsetDateTime,
) -> Result<(), VerifyError> {
    let not_before = cert.validity().not_before.to_datetime();
    let not_after = cert.validity().not_after.to_datetime();
    if at < not_before {
        return Err(VerifyError::CertificateNotYetValid { not_before, at });
    }
    if at > not_after {
        return Err(VerifyError::CertificateExpired { not_after, at });
    }
    Ok(())
}

/// An issuing AMD CA must be a CA allowed to sign certificates.
pub(crate) fn check_ca(cert: &X509Certificate<'_>) -> Result<(), VerifyError> {
    match cert.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => {}
        _ => {
            return Err(VerifyError::BasicConstraintsViolated {
                reason: "an AMD issuing certificate is not a CA",
            })
        }
    }
    match cert.key_usage() {
        Ok(Some(ku)) if ku.value.key_cert_sign() => Ok(()),
        _ => Err(VerifyError::KeyUsageInvalid {
            needed: "keyCertSign on an AMD issuing certificate",
        }),
    }
}

/// Checks an ARK-signed CRL (`crl_der`) at `at` and that none of `serials` is on it.
pub(crate) fn check_crl(
    crl_der: &[u8],
    ark: &X509Certificate<'_>,
    at: OffsetDateTime,
    serials: &[&[u8]],
) -> Result<(), VerifyError> {
    RevocationList::verify(crl_der, ark, at, |crl| {
        verify_pss(
            crl_der,
            crl.tbs_cert_list.as_ref(),
            crl.tbs_cert_list.signature == crl.signature_algorithm,
            &crl.signature_value.data,
            &ark.public_key().subject_public_key.data,
        )
        .is_ok()
    })?
    .check(serials)
}

/// The AMD extensions of a VCEK / VLEK (OID arc 1.3.6.1.4.1.3704.1).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct AmdExtensions {
    pub(crate) product_name: Option<String>,
    pub(crate) bootloader: Option<u8>,
    pub(crate) tee: Option<u8>,
    pub(crate) snp: Option<u8>,
    pub(crate) microcode: Option<u8>,
    pub(crate) fmc: Option<u8>,
    pub(crate) hw_id: Option<Vec<u8>>,
    pub(crate) csp_id: Option<String>,
}

impl AmdExtensions {
    pub(crate) fn parse(cert: &X509Certificate<'_>) -> Result<Self, VerifyError> {
        let mut out = Self::default();
        for ext in cert.extensions() {
            let oid = ext.oid.to_id_string();
            let Some(arc) = oid.strip_prefix("1.3.6.1.4.1.3704.1.") else {
                continue;
            };
            let v = ext.value;
            match arc {
                "2" => out.product_name = Some(ia5(v)?),
                "3.1" => out.bootloader = Some(der_u8(v)?),
                "3.2" => out.tee = Some(der_u8(v)?),
                "3.3" => out.snp = Some(der_u8(v)?),
                "3.8" => out.microcode = Some(der_u8(v)?),
                "3.9" => out.fmc = Some(der_u8(v)?),
                "4" => out.hw_id = Some(hw_id(v)),
                "5" => out.csp_id = Some(ia5(v)?),
                _ => {}
            }
        }
        Ok(out)
    }

    /// The certified value of a TCB component, by the name [`crate::claims::snp::Tcb::components`] uses.
    pub(crate) fn component(&self, name: &str) -> Option<u8> {
        match name {
            "bootloader" => self.bootloader,
            "tee" => self.tee,
            "snp" => self.snp,
            "microcode" => self.microcode,
            "fmc" => self.fmc,
            _ => None,
        }
    }
}

fn bad_extension(what: &str) -> VerifyError {
    VerifyError::malformed(format!("AMD certificate extension: {what}"))
}

/// A DER INTEGER 0..=255 (a leading zero byte is allowed for values ≥ 0x80).
fn der_u8(v: &[u8]) -> Result<u8, VerifyError> {
    match v {
        [0x02, 0x01, x] if *x < 0x80 => Ok(*x),
        [0x02, 0x02, 0x00, x] if *x >= 0x80 => Ok(*x),
        _ => Err(bad_extension("TCB component is not a DER INTEGER 0..=255")),
    }
}

/// A DER IA5String.
fn ia5(v: &[u8]) -> Result<String, VerifyError> {
    match v {
        [0x16, len, rest @ ..]
            if usize::from(*len) == rest.len() && *len < 0x80 && rest.is_ascii() =>
        {
            Ok(String::from_utf8_lossy(rest).into_owned())
        }
        _ => Err(bad_extension("not a short DER IA5String")),
    }
}

/// hwID: raw bytes (as AMD ships it), or wrapped in a DER OCTET STRING.
fn hw_id(v: &[u8]) -> Vec<u8> {
    match v {
        [0x04, len, rest @ ..]
            if usize::from(*len) == rest.len() && (rest.len() == 64 || rest.len() == 8) =>
        {
            rest.to_vec()
        }
        _ => v.to_vec(),
    }
}
