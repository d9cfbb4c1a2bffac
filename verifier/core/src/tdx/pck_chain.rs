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

/// Sets the PEM key apart from the certificates' key (which hashes the
/// certificates themselves, each its own part).
const PEM_KEY_DOMAIN: &[u8] = b"PCK chain as PEM";

/// What is remembered of PCK chains: those that validated (in their
/// validity window), and those refused for ending at a root that is not
/// pinned. That refusal follows from the bytes and the anchors alone, at
/// any instant, so it is remembered for good: a verifier with test roots
/// beside the vendor's (`--dev`) tries the vendor's first, and would
/// otherwise decode and parse every test-rooted quote's chain only to
/// refuse it again. A refusal is found only by the exact PEM it was made
/// for; junk chains can push one another out, never a verified chain.
#[derive(Debug)]
pub(crate) struct PckCaches {
    pub(crate) verified: WindowCache<Arc<VerifiedPck>>,
    pub(crate) foreign: WindowCache<Arc<[u8]>>,
}

impl PckCaches {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            verified: WindowCache::new(capacity),
            foreign: WindowCache::new(capacity),
        }
    }

    pub(crate) fn clear(&self) {
        self.verified.clear();
        self.foreign.clear();
    }
}

/// The longest refused PEM remembered (a PCK chain of three certificates
/// is about 4 KB as PEM): the memory holds at most its capacity times this.
const MAX_REMEMBERED_PEM: usize = 8 * 1024;

/// A window that holds at every instant.
fn always() -> (OffsetDateTime, OffsetDateTime) {
    let midnight = time::Time::MIDNIGHT;
    (
        OffsetDateTime::new_utc(time::Date::MIN, midnight),
        OffsetDateTime::new_utc(time::Date::MAX, midnight),
    )
}

fn foreign_root() -> VerifyError {
    VerifyError::ChainUntrusted {
        reason: "the quote's PCK chain ends at a root that is not pinned".into(),
    }
}

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
    /// The chain this was verified from as the quote carried it (PEM) and
    /// decoded (DER, leaf first), to confirm a cache hit under either key.
    pem: Vec<u8>,
    der: Vec<Vec<u8>>,
}

/// Validates the quote's PCK chain to a pinned root, cached by its exact
/// bytes under two keys: the PEM as carried (a hit is neither decoded nor
/// parsed again: decoding is a function of those bytes), and the decoded
/// certificates. The PEM may be spelled many ways for one chain (line
/// lengths, line ends, padding; none of it signed), so a respelling is
/// found under the certificates' key and adds no entry: whoever holds one
/// genuine quote cannot push other platforms' chains out of the cache.
pub(crate) fn verify_pck_chain(
    quote: &Quote<'_>,
    anchors: &[Anchor],
    chains: &ChainValidator,
    caches: &PckCaches,
    at: OffsetDateTime,
) -> Result<Arc<VerifiedPck>, VerifyError> {
    let cache = &caches.verified;
    let anchor_ids = || anchors.iter().map(|a| &a.sha256);
    let pem = quote.pck_chain_pem;
    let pem_key = fingerprint(anchor_ids(), &[PEM_KEY_DOMAIN, pem]);
    if let Some(hit) = cache.get(&pem_key, at) {
        if hit.pem == pem {
            return Ok(hit);
        }
    }
    if let Some(refused) = caches.foreign.get(&pem_key, at) {
        if *refused == *pem {
            return Err(foreign_root());
        }
    }
    let certificates = quote.pck_chain()?;
    let parts: Vec<&[u8]> = certificates.iter().map(Vec::as_slice).collect();
    let der_key = fingerprint(anchor_ids(), &parts);
    if let Some(hit) = cache.get(&der_key, at) {
        if hit.der.iter().map(Vec::as_slice).eq(parts.iter().copied()) {
            return Ok(hit);
        }
    }
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
            // Only chains of a genuine chain's size (about 4 KB): junk
            // padded to the body limit would otherwise hold megabytes.
            if pem.len() <= MAX_REMEMBERED_PEM {
                let (from, until) = always();
                caches.foreign.put(pem_key, from, until, Arc::from(pem));
            }
            return Err(foreign_root());
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
        pem: pem.to_vec(),
        der: certificates.clone(),
    });
    if let (Some(from), Some(until)) = (not_before, not_after) {
        cache.put(der_key, from, until, Arc::clone(&pck));
        cache.put(pem_key, from, until, Arc::clone(&pck));
    }
    Ok(pck)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::trust::TrustAnchors;

    /// The valid forged quote, and the same quote with its PCK chain's
    /// first line break moved one character left: the same certificates,
    /// spelled otherwise (line lengths are not fixed), and nothing signed
    /// changed.
    fn quote_and_respelling() -> (Vec<u8>, Vec<u8>) {
        let case = &attest_gate_forge::cases::tdx_cases().unwrap()[0];
        let quote = case.evidence.clone();
        let at = super::super::pck_chain_offset(&quote).unwrap();
        let first_break = at
            + "-----BEGIN CERTIFICATE-----\n".len()
            + quote[at + 28..].iter().position(|b| *b == b'\n').unwrap();
        let mut respelled = quote.clone();
        respelled.swap(first_break - 1, first_break);
        (quote, respelled)
    }

    #[test]
    fn a_respelled_pem_is_found_under_its_certificates_and_adds_no_entry() {
        let (quote, respelled) = quote_and_respelling();
        assert_ne!(quote, respelled);
        let anchors =
            TrustAnchors::test_roots(vec![attest_gate_forge::intel::test_root().unwrap()]).unwrap();
        let (chains, caches) = (ChainValidator::default(), PckCaches::new(8));
        let at = attest_gate_forge::cases::tdx_cases().unwrap()[0].at();
        let verify = |bytes: &[u8]| {
            let quote = Quote::parse(bytes).unwrap();
            verify_pck_chain(&quote, anchors.intel(), &chains, &caches, at).unwrap()
        };
        let first = verify(&quote);
        let cache = &caches.verified;
        assert_eq!(cache.len(), 2, "the PEM key and the certificates' key");
        let again = verify(&respelled);
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(cache.len(), 2, "a respelling adds no entry");
        assert_eq!(
            Quote::parse(&respelled).unwrap().pck_chain().unwrap(),
            Quote::parse(&quote).unwrap().pck_chain().unwrap()
        );
    }

    /// A chain ending at a root that is not pinned is refused and
    /// remembered; the memory is consulted before any decoding, and refuses
    /// only the exact PEM it was made for (planted here under the test
    /// roots, where the chain itself would verify).
    #[test]
    fn a_remembered_foreign_root_refuses_only_its_exact_pem() {
        let (quote, _) = quote_and_respelling();
        let parsed = Quote::parse(&quote).unwrap();
        let pem = parsed.pck_chain_pem;
        let at = attest_gate_forge::cases::tdx_cases().unwrap()[0].at();
        let chains = ChainValidator::default();
        let vendor = TrustAnchors::vendor().unwrap();
        let test =
            TrustAnchors::test_roots(vec![attest_gate_forge::intel::test_root().unwrap()]).unwrap();
        let untrusted = |result: Result<Arc<VerifiedPck>, VerifyError>| {
            matches!(result, Err(VerifyError::ChainUntrusted { .. }))
        };

        let caches = PckCaches::new(8);
        assert!(untrusted(verify_pck_chain(
            &parsed,
            vendor.intel(),
            &chains,
            &caches,
            at
        )));
        assert_eq!(caches.foreign.len(), 1, "the refusal is remembered");
        assert!(untrusted(verify_pck_chain(
            &parsed,
            vendor.intel(),
            &chains,
            &caches,
            at
        )));
        assert_eq!(caches.verified.len(), 0);

        let key = fingerprint(
            test.intel().iter().map(|a| &a.sha256),
            &[PEM_KEY_DOMAIN, pem],
        );
        let (from, until) = always();
        let mut other = pem.to_vec();
        let middle = other.len() / 2;
        other[middle] ^= 1;
        let planted = PckCaches::new(8);
        planted
            .foreign
            .put(key, from, until, Arc::from(other.as_slice()));
        assert!(
            verify_pck_chain(&parsed, test.intel(), &chains, &planted, at).is_ok(),
            "another PEM under the same key is no hit"
        );
        let planted = PckCaches::new(8);
        planted.foreign.put(key, from, until, Arc::from(pem));
        assert!(
            untrusted(verify_pck_chain(
                &parsed,
                test.intel(),
                &chains,
                &planted,
                at
            )),
            "the exact PEM is refused from memory, before it is decoded"
        );
    }
}
