//! AWS Nitro Enclaves: verify an NSM attestation document to the pinned AWS root.
//!
//! Steps, in AWS's order ("Verifying the root of trust"): parse the COSE_Sign1
//! (ES384 only), parse the payload strictly, check that the bundle's root is a
//! pinned anchor (by SHA-256 fingerprint), validate `certificate` ← `cabundle`
//! at the given instant, then check the ES384 signature over the
//! Sig_structure with the leaf's key.

mod cose;
mod document;

use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P384_SHA384_FIXED};
use time::OffsetDateTime;

use crate::authenticated::Authenticated;
use crate::chain::{ChainValidator, ECDSA_ALGS};
use crate::claims::{BoundData, Measurement, NamedMeasurement, PlatformClaims, TeeKind};
use crate::error::VerifyError;
use crate::trust::{sha256, TrustAnchors};

use cose::Envelope;
use document::AttestationDocument;

/// Real documents are about 4.5 KiB; anything past this is not one.
pub const MAX_DOCUMENT_LEN: usize = 32 * 1024;

/// The document's own timestamp, *unauthenticated*: for choosing the instant
/// to verify recorded evidence at (`--at doc`), never as a verified claim.
pub fn unverified_timestamp(bytes: &[u8]) -> Result<OffsetDateTime, VerifyError> {
    let envelope = parse_envelope(bytes)?;
    Ok(AttestationDocument::parse(envelope.payload())?.timestamp)
}

/// The document's bound fields (`user_data`, `nonce`, `public_key`),
/// *unauthenticated*: for the agent to check that the NSM answered what it
/// asked before sending the document on (one parser for the format, the
/// verifier's), never as verified claims.
pub fn unverified_bound_data(bytes: &[u8]) -> Result<BoundData, VerifyError> {
    let envelope = parse_envelope(bytes)?;
    let doc = AttestationDocument::parse(envelope.payload())?;
    Ok(BoundData {
        user_data: doc.user_data,
        nonce: doc.nonce,
        public_key: doc.public_key,
        report_data: None,
    })
}

fn parse_envelope(bytes: &[u8]) -> Result<Envelope, VerifyError> {
    if bytes.len() > MAX_DOCUMENT_LEN {
        return Err(VerifyError::FieldOutOfRange {
            field: "attestation document",
            reason: format!("{} bytes, at most {MAX_DOCUMENT_LEN}", bytes.len()),
        });
    }
    Envelope::parse(bytes)
}

pub(crate) fn verify(
    bytes: &[u8],
    anchors: &TrustAnchors,
    chains: &ChainValidator,
    at: OffsetDateTime,
) -> Result<Authenticated, VerifyError> {
    let envelope = parse_envelope(bytes)?;
    let doc = AttestationDocument::parse(envelope.payload())?;

    // cabundle[0] is the root; it must be a pinned anchor, compared by
    // fingerprint, never trusted because the bundle says so.
    let (root, intermediates) = doc
        .cabundle
        .split_first()
        .ok_or_else(|| VerifyError::malformed("cabundle is empty"))?;
    let root_fingerprint = sha256(root);
    if !anchors.nitro().iter().any(|a| a.sha256 == root_fingerprint) {
        return Err(VerifyError::ChainUntrusted {
            reason: format!(
                "bundle root {} is not a pinned AWS Nitro root",
                hex::encode(root_fingerprint)
            ),
        });
    }
    let intermediates: Vec<&[u8]> = intermediates.iter().map(Vec::as_slice).collect();
    let chain = chains.validate(
        anchors.nitro(),
        &doc.certificate,
        &intermediates,
        at,
        ECDSA_ALGS,
    )?;

    UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, &chain.leaf_public_key)
        .verify(&envelope.signed_bytes(), envelope.signature())
        .map_err(|_| VerifyError::SignatureInvalid)?;

    Ok(claims(doc, chain.summaries))
}

fn claims(
    doc: AttestationDocument,
    chain: Vec<crate::claims::CertificateSummary>,
) -> Authenticated {
    // A debug-mode enclave reports all-zero PCR0, PCR1 and PCR2. An absent
    // register counts as zero, so a document without them is never "not debug".
    let debug = (0u8..=2).all(|i| {
        doc.pcrs
            .iter()
            .find(|(index, _)| *index == i)
            .is_none_or(|(_, v)| v.iter().all(|b| *b == 0))
    });
    let measurements = doc
        .pcrs
        .into_iter()
        .map(|(index, value)| NamedMeasurement {
            name: format!("pcr{index}"),
            value: Measurement::new(value),
        })
        .collect();
    Authenticated {
        tee: TeeKind::Nitro,
        measurements,
        bound: BoundData {
            user_data: doc.user_data,
            nonce: doc.nonce,
            public_key: doc.public_key,
            report_data: None,
        },
        debug,
        tcb_status: None,
        platform: PlatformClaims::Nitro {
            module_id: doc.module_id,
            digest: doc.digest,
            timestamp: doc.timestamp,
        },
        chain,
    }
}
