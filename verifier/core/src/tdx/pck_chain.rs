//! The PCK chain a quote carries: validated to a pinned Intel root, its SGX
//! extension read, and the facts later steps need (the leaf key, the issuing
//! CA for the root CA CRL, the root for the collateral) kept together. Apart
//! from the collateral checks because it depends only on the quote.

use std::sync::Arc;

use time::OffsetDateTime;

use crate::cache::{fingerprint, WindowCache};
use crate::chain::{parse, ChainValidator, ECDSA_ALGS};
use crate::claims::CertificateSummary;
use crate::error::VerifyError;
use crate::trust::Anchor;

use super::abi::Quote;
use super::lookup::PckCa;
use super::pck::PckExtension;

/// A PCK chain that validated, with what later steps need from it.
#[derive(Debug, Clone)]
pub(crate) struct VerifiedPck {
    pub(crate) chain: Vec<CertificateSummary>,
    pub(crate) leaf_public_key: Vec<u8>,
    pub(crate) extension: PckExtension,
    pub(crate) leaf_serial: Vec<u8>,
    /// The CA that issued the PCK (Platform or Processor CA).
    pub(crate) issuer_der: Vec<u8>,
    pub(crate) issuer_serial: Vec<u8>,
    /// The anchor the chain ended at.
    pub(crate) root_der: Vec<u8>,
    /// Which PCK CA that is (which PCK CRL applies).
    pub(crate) ca: PckCa,
    /// The exact chain this was verified from, as the quote carries it
    /// (PEM), to confirm a cache hit.
    inputs: Vec<u8>,
}

/// Validates the quote's PCK chain to a pinned root, cached by its exact
/// bytes as carried: a hit is a chain whose PEM equals, byte for byte, one
/// that decoded and validated before (decoding is a function of those
/// bytes), so it is neither decoded nor parsed again.
pub(crate) fn verify_pck_chain(
    quote: &Quote<'_>,
    anchors: &[Anchor],
    chains: &ChainValidator,
    cache: &WindowCache<Arc<VerifiedPck>>,
    at: OffsetDateTime,
) -> Result<Arc<VerifiedPck>, VerifyError> {
    let pem = quote.pck_chain_pem;
    let key = fingerprint(anchors.iter().map(|a| &a.sha256), &[pem]);
    if let Some(hit) = cache.get(&key, at) {
        if hit.inputs == pem {
            return Ok(hit);
        }
    }
    let certificates = quote.pck_chain()?;
    // The chain must be exactly PCK, its CA, and optionally the root, every
    // one of them used: nothing in the quote goes unchecked. A root that came
    // with the quote is trusted only if it is a pinned anchor.
    let (leaf, ca, root) = match certificates.as_slice() {
        [leaf, ca] => (leaf, ca, None),
        [leaf, ca, root] => (leaf, ca, Some(root)),
        _ => {
            return Err(VerifyError::malformed(
                "the PCK chain must be PCK, CA and (optionally) root",
            ))
        }
    };
    let ca_cert = parse(ca)?;
    if let Some(root) = root {
        parse(root)?;
        if !anchors.iter().any(|a| a.der.as_ref() == root.as_slice()) {
            return Err(VerifyError::ChainUntrusted {
                reason: "the quote's PCK chain ends at a root that is not pinned".into(),
            });
        }
    }
    let verified = chains.validate(anchors, leaf, &[ca.as_slice()], at, ECDSA_ALGS)?;
    let leaf_cert = parse(leaf)?;
    let extension = PckExtension::parse(&leaf_cert)?;
    // The CA must be the PCK's issuer (not a spare certificate beside a
    // PCK signed by the root itself): its serial goes to the root CA CRL.
    if ca_cert.subject().as_raw() != leaf_cert.issuer().as_raw() {
        return Err(VerifyError::ChainIncomplete);
    }
    let issuer_der = ca.clone();
    let issuer_serial = ca_cert.raw_serial().to_vec();
    let root_sha = verified
        .summaries
        .first()
        .map(|s| s.sha256)
        .ok_or(VerifyError::ChainIncomplete)?;
    let root_der = anchors
        .iter()
        .find(|a| a.sha256 == root_sha)
        .map(|a| a.der.as_ref().to_vec())
        .ok_or(VerifyError::ChainIncomplete)?;
    let not_before = verified.summaries.iter().map(|s| s.not_before).max();
    let not_after = verified.summaries.iter().map(|s| s.not_after).min();
    let pck = Arc::new(VerifiedPck {
        leaf_public_key: verified.leaf_public_key,
        chain: verified.summaries,
        extension,
        leaf_serial: leaf_cert.raw_serial().to_vec(),
        ca: PckCa::of_issuer(ca_cert.subject()),
        issuer_der,
        issuer_serial,
        root_der,
        inputs: pem.to_vec(),
    });
    if let (Some(from), Some(until)) = (not_before, not_after) {
        cache.put(key, from, until, Arc::clone(&pck));
    }
    Ok(pck)
}
