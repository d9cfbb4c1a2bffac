//! X.509 path validation to a pinned anchor, with a cache of verified issuers.
//!
//! `rustls-webpki` builds and checks the path (signatures link by link,
//! validity at the given instant, basic constraints, path length). On top of
//! it this module enforces key usage, which webpki leaves to the caller:
//! issuers must carry `keyCertSign`, the leaf `digitalSignature`.
//!
//! Warm path: once an issuer chain (everything above the leaf) has verified,
//! it is cached by the hash of the anchors and the exact intermediate bytes,
//! bounded in size and valid only inside the chain's own validity window. A
//! later leaf under the same issuers then costs one signature check: webpki
//! validates it with the cached issuing certificate as its only anchor. Any
//! failure on the warm path falls back to the full (cold) validation, whose
//! verdict is authoritative.

use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, TrustAnchor, UnixTime};
use time::OffsetDateTime;
use webpki::{EndEntityCert, KeyUsage};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::cache::WindowCache;
use crate::claims::CertificateSummary;
use crate::error::VerifyError;
use crate::trust::{sha256, Anchor};

/// How many verified issuer chains to remember.
const CACHE_CAPACITY: usize = 256;

/// Signature algorithms accepted inside vendor certificate chains.
pub(crate) static ECDSA_ALGS: &[&dyn SignatureVerificationAlgorithm] = &[
    webpki::aws_lc_rs::ECDSA_P384_SHA384,
    webpki::aws_lc_rs::ECDSA_P256_SHA256,
    webpki::aws_lc_rs::ECDSA_P384_SHA256,
    webpki::aws_lc_rs::ECDSA_P256_SHA384,
];

/// A chain that validated: summaries root first, leaf last, and the leaf's
/// parsed public key bytes (the subjectPublicKey BIT STRING contents).
#[derive(Debug, Clone)]
pub(crate) struct VerifiedChain {
    pub(crate) summaries: Vec<CertificateSummary>,
    pub(crate) leaf_public_key: Vec<u8>,
}

#[derive(Debug, Clone)]
struct CachedIssuers {
    /// The certificate that issued the leaf, usable as a one-element anchor set.
    issuer: TrustAnchor<'static>,
    /// Summaries of the issuer chain, root first.
    summaries: Vec<CertificateSummary>,
}

/// Validates chains and remembers verified issuer chains.
#[derive(Debug)]
pub(crate) struct ChainValidator {
    cache: WindowCache<CachedIssuers>,
}

impl Default for ChainValidator {
    fn default() -> Self {
        Self {
            cache: WindowCache::new(CACHE_CAPACITY),
        }
    }
}

impl ChainValidator {
    /// Validates `leaf` up to one of `anchors` through `intermediates`, at `at`.
    pub(crate) fn validate(
        &self,
        anchors: &[Anchor],
        leaf: &[u8],
        intermediates: &[&[u8]],
        at: OffsetDateTime,
        algs: &[&dyn SignatureVerificationAlgorithm],
    ) -> Result<VerifiedChain, VerifyError> {
        let key = cache_key(anchors, intermediates, algs);
        if let Some(cached) = self.cache.get(&key, at) {
            if let Ok(chain) = validate_leaf_under(&cached, leaf, at, algs) {
                return Ok(chain);
            }
        }
        let (chain, issuers, window) = validate_cold(anchors, leaf, intermediates, at, algs)?;
        self.cache.put(key, window.0, window.1, issuers);
        Ok(chain)
    }

    /// Forgets every cached issuer chain (benchmarks measure the cold path with it).
    pub(crate) fn clear(&self) {
        self.cache.clear();
    }
}

/// Everything a cached verdict depends on: anchors, exact intermediates, and
/// the signature algorithms that were allowed.
fn cache_key(
    anchors: &[Anchor],
    intermediates: &[&[u8]],
    algs: &[&dyn SignatureVerificationAlgorithm],
) -> [u8; 32] {
    let mut material = Vec::new();
    for alg in algs {
        material.extend_from_slice(alg.signature_alg_id().as_ref());
        material.extend_from_slice(alg.public_key_alg_id().as_ref());
    }
    for anchor in anchors {
        material.extend_from_slice(&anchor.sha256);
    }
    for der in intermediates {
        material.extend_from_slice(&(der.len() as u64).to_be_bytes());
        material.extend_from_slice(der);
    }
    sha256(&material)
}

/// Warm path: the leaf against its cached issuer only.
fn validate_leaf_under(
    cached: &CachedIssuers,
    leaf: &[u8],
    at: OffsetDateTime,
    algs: &[&dyn SignatureVerificationAlgorithm],
) -> Result<VerifiedChain, VerifyError> {
    let leaf_der = CertificateDer::from(leaf);
    let end_entity = EndEntityCert::try_from(&leaf_der).map_err(map_webpki)?;
    end_entity
        .verify_for_usage(
            algs,
            std::slice::from_ref(&cached.issuer),
            &[],
            unix_time(at)?,
            KeyUsage::required_if_present(EKU_POLICY_OID),
            None,
            None,
        )
        .map_err(map_webpki)?;
    let leaf_parsed = parse(leaf)?;
    check_leaf_key_usage(&leaf_parsed)?;
    let mut summaries = cached.summaries.clone();
    summaries.push(summarize(leaf, &leaf_parsed));
    Ok(VerifiedChain {
        summaries,
        leaf_public_key: leaf_parsed.public_key().subject_public_key.data.to_vec(),
    })
}

/// Cold path: full path building and validation by webpki, then key usage.
fn validate_cold(
    anchors: &[Anchor],
    leaf: &[u8],
    intermediates: &[&[u8]],
    at: OffsetDateTime,
    algs: &[&dyn SignatureVerificationAlgorithm],
) -> Result<
    (
        VerifiedChain,
        CachedIssuers,
        (OffsetDateTime, OffsetDateTime),
    ),
    VerifyError,
> {
    let trust: Vec<TrustAnchor<'static>> = anchors.iter().map(|a| a.anchor.clone()).collect();
    let inter: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|d| CertificateDer::from(*d))
        .collect();
    let leaf_der = CertificateDer::from(leaf);
    let end_entity = EndEntityCert::try_from(&leaf_der).map_err(map_webpki)?;
    let path = end_entity
        .verify_for_usage(
            algs,
            &trust,
            &inter,
            unix_time(at)?,
            KeyUsage::required_if_present(EKU_POLICY_OID),
            None,
            None,
        )
        .map_err(map_webpki)?;

    // Issuers, leaf-side first, as DER.
    let issuers_der: Vec<CertificateDer<'_>> =
        path.intermediate_certificates().map(|c| c.der()).collect();
    let anchor_spki = path.anchor().subject_public_key_info.as_ref();
    let anchor = anchors
        .iter()
        .find(|a| a.anchor.subject_public_key_info.as_ref() == anchor_spki)
        .ok_or_else(|| VerifyError::ChainUntrusted {
            reason: "path ended at an unknown anchor".into(),
        })?;

    // Root first.
    let mut summaries = Vec::with_capacity(issuers_der.len() + 2);
    let root = parse(anchor.der.as_ref())?;
    summaries.push(summarize(anchor.der.as_ref(), &root));
    let mut not_before = root.validity().not_before.to_datetime();
    let mut not_after = root.validity().not_after.to_datetime();
    for der in issuers_der.iter().rev() {
        let cert = parse(der.as_ref())?;
        check_issuer_key_usage(&cert)?;
        not_before = not_before.max(cert.validity().not_before.to_datetime());
        not_after = not_after.min(cert.validity().not_after.to_datetime());
        summaries.push(summarize(der.as_ref(), &cert));
    }

    let leaf_parsed = parse(leaf)?;
    check_leaf_key_usage(&leaf_parsed)?;

    let issuing_der = issuers_der
        .first()
        .map(|d| d.as_ref().to_vec())
        .unwrap_or_else(|| anchor.der.as_ref().to_vec());
    let issuing_der = CertificateDer::from(issuing_der);
    let issuer = webpki::anchor_from_trusted_cert(&issuing_der)
        .map_err(map_webpki)?
        .to_owned();
    let cached = CachedIssuers {
        issuer,
        summaries: summaries.clone(),
    };

    summaries.push(summarize(leaf, &leaf_parsed));
    Ok((
        VerifiedChain {
            summaries,
            leaf_public_key: leaf_parsed.public_key().subject_public_key.data.to_vec(),
        },
        cached,
        (not_before, not_after),
    ))
}

/// webpki needs an extended-key-usage policy. Vendor attestation chains carry
/// no EKU, so "id-kp-serverAuth if present" accepts them and still rejects a
/// certificate whose EKU restricts it to some other purpose.
const EKU_POLICY_OID: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];

pub(crate) fn parse(der: &[u8]) -> Result<X509Certificate<'_>, VerifyError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(VerifyError::malformed("trailing bytes after certificate")),
        Err(e) => Err(VerifyError::malformed(format!("certificate: {e}"))),
    }
}

fn check_issuer_key_usage(cert: &X509Certificate<'_>) -> Result<(), VerifyError> {
    match cert.key_usage() {
        Ok(Some(ku)) if ku.value.key_cert_sign() => Ok(()),
        Ok(_) => Err(VerifyError::KeyUsageInvalid {
            needed: "keyCertSign on an issuing certificate",
        }),
        Err(_) => Err(VerifyError::malformed("duplicate key usage extension")),
    }
}

fn check_leaf_key_usage(cert: &X509Certificate<'_>) -> Result<(), VerifyError> {
    match cert.key_usage() {
        Ok(Some(ku)) if ku.value.digital_signature() => Ok(()),
        Ok(_) => Err(VerifyError::KeyUsageInvalid {
            needed: "digitalSignature on the signing certificate",
        }),
        Err(_) => Err(VerifyError::malformed("duplicate key usage extension")),
    }
}

pub(crate) fn summarize(der: &[u8], cert: &X509Certificate<'_>) -> CertificateSummary {
    CertificateSummary {
        subject: cert.subject().to_string(),
        serial: cert.raw_serial().to_vec(),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        sha256: sha256(der),
    }
}

pub(crate) fn unix_time(at: OffsetDateTime) -> Result<UnixTime, VerifyError> {
    let secs = u64::try_from(at.unix_timestamp()).map_err(|_| VerifyError::FieldOutOfRange {
        field: "verification instant",
        reason: "before 1970".into(),
    })?;
    Ok(UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        secs,
    )))
}

fn to_datetime(t: UnixTime) -> OffsetDateTime {
    i64::try_from(t.as_secs())
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn map_webpki(e: webpki::Error) -> VerifyError {
    use webpki::Error as W;
    match e {
        W::UnknownIssuer => VerifyError::ChainIncomplete,
        W::InvalidSignatureForPublicKey
        | W::UnsupportedSignatureAlgorithmForPublicKeyContext(_)
        | W::SignatureAlgorithmMismatch => VerifyError::CertificateSignatureInvalid,
        W::CertExpired { time, not_after } => VerifyError::CertificateExpired {
            not_after: to_datetime(not_after),
            at: to_datetime(time),
        },
        W::CertNotValidYet { time, not_before } => VerifyError::CertificateNotYetValid {
            not_before: to_datetime(not_before),
            at: to_datetime(time),
        },
        W::EndEntityUsedAsCa => VerifyError::BasicConstraintsViolated {
            reason: "an issuing certificate is not a CA",
        },
        W::CaUsedAsEndEntity => VerifyError::BasicConstraintsViolated {
            reason: "the signing certificate is a CA",
        },
        W::PathLenConstraintViolated => VerifyError::BasicConstraintsViolated {
            reason: "path length constraint exceeded",
        },
        W::BadDer | W::BadDerTime | W::TrailingData(_) => {
            VerifyError::malformed(format!("certificate DER: {e}"))
        }
        other => VerifyError::CertificateInvalid {
            reason: other.to_string(),
        },
    }
}
