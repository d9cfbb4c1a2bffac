//! Intel TDX quotes (DCAP v4 / v5), verified as Intel's DCAP Quote
//! Verification Library does:
//!
//! 1. the quote parses ([`abi`]), its signature checks under the attestation
//!    key, the QE report binds that key and is signed by the PCK key;
//! 2. the PCK chain (from the quote) leads to the pinned Intel SGX Root CA,
//!    and neither the PCK nor its CA is on the PCK / root CA CRL;
//! 3. TCB info and QE identity are signed by Intel's TCB signing key (chained
//!    to the same root), current, and for this platform's FMSPC and PCE-ID;
//! 4. the QE matches its identity, and the platform, TDX module and QE TCB
//!    levels converge into one status ([`tcb`]).
//!
//! Verified PCK chains and verified collateral sets are cached by the hash
//! of their exact bytes, inside their validity windows, so the warm path is
//! two P-256 verifications plus parsing.

mod abi;
mod collateral;
pub mod import;
mod pck;
mod tcb;

use std::sync::Arc;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_FIXED};
use time::OffsetDateTime;

use crate::cache::WindowCache;
use crate::chain::{parse, ChainValidator, ECDSA_ALGS};
use crate::claims::{
    BoundData, CertificateSummary, Measurement, NamedMeasurement, PlatformClaims, TcbStatus,
    TeeKind,
};
use crate::collateral::Collateral;
use crate::crl::RevocationList;
use crate::error::VerifyError;
use crate::trust::{Anchor, TrustAnchors};
use crate::verifier::Authenticated;

use abi::QeReport;
pub use abi::{Quote, TdReport};
use collateral::{Document, QeIdentity, TcbInfo};
use pck::PckExtension;

/// The collateral file names (those of Intel PCS responses).
pub mod names {
    /// PCS TCB info response.
    pub const TCB_INFO: &str = "tcb_info.json";
    /// Its issuer chain (TCB signing certificate, root).
    pub const TCB_INFO_ISSUER_CHAIN: &str = "tcb_info_issuer_chain.pem";
    /// PCS QE identity response.
    pub const QE_IDENTITY: &str = "qe_identity.json";
    /// Its issuer chain.
    pub const QE_IDENTITY_ISSUER_CHAIN: &str = "qe_identity_issuer_chain.pem";
    /// The PCK CRL (DER or PEM).
    pub const PCK_CRL: &str = "pck_crl.der";
    /// Its issuer chain (informational: the CA that issued the PCK is used).
    pub const PCK_CRL_ISSUER_CHAIN: &str = "pck_crl_issuer_chain.pem";
    /// The root CA CRL (DER or PEM).
    pub const ROOT_CA_CRL: &str = "root_ca_crl.der";
    /// Every name, in a stable order.
    pub const ALL: [&str; 7] = [
        TCB_INFO,
        TCB_INFO_ISSUER_CHAIN,
        QE_IDENTITY,
        QE_IDENTITY_ISSUER_CHAIN,
        PCK_CRL,
        PCK_CRL_ISSUER_CHAIN,
        ROOT_CA_CRL,
    ];
}

/// TD attributes, decoded (Intel TDX module ABI, TDATTRIBUTES).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TdAttributes {
    /// The raw 64-bit value.
    pub raw: u64,
    /// Bit 0: the TD is debuggable (its memory and state are not private).
    pub debug: bool,
    /// Bit 28: EPT violations are not converted to #VE (required by most policies).
    pub sept_ve_disable: bool,
    /// Bit 30: protection keys for supervisor pages.
    pub pks: bool,
    /// Bit 31: key locker.
    pub key_locker: bool,
    /// Bit 63: perfmon.
    pub perfmon: bool,
}

impl TdAttributes {
    fn decode(bytes: [u8; 8]) -> Self {
        let raw = u64::from_le_bytes(bytes);
        let bit = |n: u32| raw & (1 << n) != 0;
        Self {
            raw,
            debug: bit(0),
            sept_ve_disable: bit(28),
            pks: bit(30),
            key_locker: bit(31),
            perfmon: bit(63),
        }
    }
}

/// TDX-specific claims of verified evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxClaims {
    /// Quote format version (4 or 5).
    pub quote_version: u16,
    /// TD attributes.
    pub td_attributes: TdAttributes,
    /// XFAM, raw.
    pub xfam: [u8; 8],
    /// TEE_TCB_SVN.
    pub tee_tcb_svn: [u8; 16],
    /// SEAMATTRIBUTES.
    pub seam_attributes: [u8; 8],
    /// FMSPC from the PCK certificate.
    pub fmspc: [u8; 6],
    /// PCE-ID from the PCK certificate.
    pub pce_id: [u8; 2],
    /// The converged TCB status.
    pub tcb_status: TcbStatus,
    /// Intel security advisories of the matched levels.
    pub advisory_ids: Vec<String>,
    /// The platform level's status (before convergence).
    pub platform_tcb_status: TcbStatus,
    /// The TDX module identity's status, when TEE_TCB_SVN selects one.
    pub tdx_module_tcb_status: Option<TcbStatus>,
    /// The QE's TCB status.
    pub qe_tcb_status: TcbStatus,
    /// The matched platform level's TCB date.
    pub tcb_date: OffsetDateTime,
    /// Intel's TCB evaluation data number of the TCB info.
    pub tcb_evaluation_data_number: u32,
    /// When the collateral set became valid (latest issue date / thisUpdate).
    pub collateral_valid_from: OffsetDateTime,
    /// When it must be refreshed (earliest nextUpdate).
    pub collateral_valid_until: OffsetDateTime,
}

/// A PCK chain that validated, with what later steps need from it.
#[derive(Debug, Clone)]
struct VerifiedPck {
    chain: Vec<CertificateSummary>,
    leaf_public_key: Vec<u8>,
    extension: PckExtension,
    leaf_serial: Vec<u8>,
    /// The CA that issued the PCK (Platform or Processor CA).
    issuer_der: Vec<u8>,
    issuer_serial: Vec<u8>,
    /// The anchor the chain ended at.
    root_der: Vec<u8>,
    /// The exact chain this was verified from, to confirm a cache hit.
    inputs: Vec<Vec<u8>>,
}

/// A collateral set whose signatures, chains and CRLs have all checked.
#[derive(Debug)]
struct Endorsements {
    tcb_info: TcbInfo,
    qe_identity: QeIdentity,
    pck_crl: RevocationList,
    root_crl: RevocationList,
    /// The TCB signing certificates (of TCB info, of QE identity): their
    /// validity bounds the window too.
    signers: [Signer; 2],
    /// The exact bytes this set was verified from, to confirm a cache hit.
    inputs: Vec<Vec<u8>>,
}

impl Endorsements {
    /// The window in which every part is current (documents' nextUpdate
    /// exclusive; a signer's notAfter is inclusive, so one second is added).
    fn window(&self) -> (OffsetDateTime, OffsetDateTime) {
        let [a, b] = &self.signers;
        let from = [
            self.tcb_info.window.issued,
            self.qe_identity.window.issued,
            self.pck_crl.this_update,
            self.root_crl.this_update,
            a.not_before,
            b.not_before,
        ];
        let until = [
            self.tcb_info.window.next_update,
            self.qe_identity.window.next_update,
            self.pck_crl.next_update,
            self.root_crl.next_update,
            a.not_after + time::Duration::seconds(1),
            b.not_after + time::Duration::seconds(1),
        ];
        (
            from.into_iter().max().unwrap_or(OffsetDateTime::UNIX_EPOCH),
            until
                .into_iter()
                .min()
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        )
    }
}

/// Caches of verified PCK chains and verified collateral sets.
#[derive(Debug)]
pub(crate) struct TdxCache {
    pcks: WindowCache<Arc<VerifiedPck>>,
    endorsements: WindowCache<Arc<Endorsements>>,
}

impl Default for TdxCache {
    fn default() -> Self {
        Self {
            pcks: WindowCache::new(256),
            endorsements: WindowCache::new(64),
        }
    }
}

impl TdxCache {
    pub(crate) fn clear(&self) {
        self.pcks.clear();
        self.endorsements.clear();
    }
}

/// A cheap cache key for large inputs: the anchors, and each part's length,
/// head and tail (where signatures sit). Two different sets may share it,
/// so a hit counts only if the stored parts equal the given ones byte for byte.
fn fingerprint(anchors: &[Anchor], parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&SHA256);
    for anchor in anchors {
        ctx.update(&anchor.sha256);
    }
    for part in parts {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part.get(..64).unwrap_or(part));
        ctx.update(part.get(part.len().saturating_sub(64)..).unwrap_or(part));
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Validates the quote's PCK chain to a pinned root (cached by its exact bytes).
fn verify_pck_chain(
    quote: &Quote<'_>,
    anchors: &[Anchor],
    chains: &ChainValidator,
    cache: &TdxCache,
    at: OffsetDateTime,
) -> Result<Arc<VerifiedPck>, VerifyError> {
    let parts: Vec<&[u8]> = quote.pck_chain.iter().map(Vec::as_slice).collect();
    let key = fingerprint(anchors, &parts);
    if let Some(hit) = cache.pcks.get(&key, at) {
        if hit
            .inputs
            .iter()
            .map(Vec::as_slice)
            .eq(parts.iter().copied())
        {
            return Ok(hit);
        }
    }
    // The chain must be exactly PCK, its CA, and optionally the root, every
    // one of them used: nothing in the quote goes unchecked. A root that came
    // with the quote is trusted only if it is a pinned anchor.
    let (leaf, ca, root) = match quote.pck_chain.as_slice() {
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
        issuer_der,
        issuer_serial,
        root_der,
        inputs: quote.pck_chain.clone(),
    });
    if let (Some(from), Some(until)) = (not_before, not_after) {
        cache.pcks.put(key, from, until, Arc::clone(&pck));
    }
    Ok(pck)
}

/// The first item present under any of `names`.
fn item<'a>(collateral: &'a Collateral, names: &[&str]) -> Option<&'a [u8]> {
    names.iter().find_map(|n| collateral.get(n))
}

/// Every certificate (DER) in PEM bytes.
fn pem_certificates(bytes: &[u8]) -> Vec<Vec<u8>> {
    pem::parse_many(bytes)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(pem::Pem::into_contents)
        .collect()
}

/// Largest issuer-chain file accepted (a TCB signing certificate and the root).
const MAX_ISSUER_CHAIN: usize = 16 * 1024;

/// The TCB signing certificate that signed a document, for the root CA CRL
/// check and the cache window.
#[derive(Debug, Clone)]
struct Signer {
    serial: Vec<u8>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

/// A certificate's first common name, if any.
fn common_name(der: &[u8]) -> Option<String> {
    let cert = parse(der).ok()?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    Some(cn)
}

/// Verifies a signed document under Intel's TCB signing certificate, as
/// Intel's QVL does: the signer must be issued *directly* by the root the PCK
/// chain ended at, and be named a TCB signing certificate (`SGX TCB Signing`
/// in its CN), so no other certificate under the root (a PCK, a CA) can vouch
/// for TCB levels. The signer comes from the issuer-chain file (exactly the
/// signer, optionally followed by that root), else from the compiled-in ones.
fn verify_signed<T>(
    doc: Document,
    issuer_chain: Option<&[u8]>,
    root: &Anchor,
    anchors: &TrustAnchors,
    chains: &ChainValidator,
    at: OffsetDateTime,
    verify: impl Fn(&[u8]) -> Result<T, VerifyError>,
) -> Result<(T, Signer), VerifyError> {
    let untrusted = |reason: String| VerifyError::ChainUntrusted { reason };
    let candidates: Vec<Vec<u8>> = match issuer_chain {
        Some(pem) if pem.len() > MAX_ISSUER_CHAIN => {
            return Err(VerifyError::malformed(format!(
                "{} issuer chain is larger than 16 KiB",
                doc.name()
            )))
        }
        Some(pem) => match pem_certificates(pem).as_slice() {
            [signer] => vec![signer.clone()],
            [signer, copy] if copy.as_slice() == root.der.as_ref() => vec![signer.clone()],
            [_, _] => {
                return Err(untrusted(format!(
                    "the {} issuer chain ends at another root than the PCK chain",
                    doc.name()
                )))
            }
            _ => {
                return Err(untrusted(format!(
                    "the {} issuer chain is not [TCB signer, optional root]",
                    doc.name()
                )))
            }
        },
        None => anchors.intel_tcb_signing().map(<[u8]>::to_vec).collect(),
    };
    let mut last_err = VerifyError::CollateralMissing {
        what:
            "the TCB signing certificate (tcb_info_issuer_chain.pem / qe_identity_issuer_chain.pem)",
    };
    for der in &candidates {
        let chain = match chains.validate(std::slice::from_ref(root), der, &[], at, ECDSA_ALGS) {
            Ok(chain) => chain,
            Err(e) => {
                last_err = e;
                continue;
            }
        };
        if !common_name(der).is_some_and(|cn| cn.contains("SGX TCB Signing")) {
            last_err = untrusted(format!(
                "{} is signed by a certificate that is not a TCB signing certificate",
                doc.name()
            ));
            continue;
        }
        match verify(&chain.leaf_public_key) {
            Ok(value) => {
                let signer = Signer {
                    serial: parse(der)?.raw_serial().to_vec(),
                    not_before: chain
                        .summaries
                        .iter()
                        .map(|s| s.not_before)
                        .max()
                        .unwrap_or(at),
                    not_after: chain
                        .summaries
                        .iter()
                        .map(|s| s.not_after)
                        .min()
                        .unwrap_or(at),
                };
                return Ok((value, signer));
            }
            Err(e @ VerifyError::CollateralSignatureInvalid { .. }) => last_err = e,
            Err(e) => return Err(e),
        }
    }
    Err(last_err)
}

/// Verifies the collateral set (cached by its exact bytes and the PCK's issuer).
fn verify_endorsements(
    collateral: &Collateral,
    pck: &VerifiedPck,
    anchors: &TrustAnchors,
    chains: &ChainValidator,
    cache: &TdxCache,
    at: OffsetDateTime,
) -> Result<Arc<Endorsements>, VerifyError> {
    let missing = |what| VerifyError::CollateralMissing { what };
    let tcb_info =
        item(collateral, &[names::TCB_INFO]).ok_or(missing("TCB info (tcb_info.json)"))?;
    let qe_identity =
        item(collateral, &[names::QE_IDENTITY]).ok_or(missing("QE identity (qe_identity.json)"))?;
    let pck_crl = item(collateral, &[names::PCK_CRL, "pck_crl.pem"])
        .ok_or(missing("the PCK CRL (pck_crl.der)"))?;
    let root_crl = item(collateral, &[names::ROOT_CA_CRL, "root_ca_crl.pem"])
        .ok_or(missing("the root CA CRL (root_ca_crl.der)"))?;
    let tcb_chain = item(collateral, &[names::TCB_INFO_ISSUER_CHAIN]);
    let qe_chain = item(collateral, &[names::QE_IDENTITY_ISSUER_CHAIN]);

    // Absent and empty issuer chains differ (absent selects the compiled-in
    // signers), so their presence is part of what the verdict depends on.
    let present = [u8::from(tcb_chain.is_some()), u8::from(qe_chain.is_some())];
    let parts = [
        &present[..],
        tcb_info,
        tcb_chain.unwrap_or_default(),
        qe_identity,
        qe_chain.unwrap_or_default(),
        pck_crl,
        root_crl,
        &pck.issuer_der,
        &pck.root_der,
    ];
    let key = fingerprint(anchors.intel(), &parts);
    if let Some(hit) = cache.endorsements.get(&key, at) {
        if hit.inputs.iter().map(Vec::as_slice).eq(parts) {
            return Ok(hit);
        }
    }

    // TCB info, QE identity and CRLs must come from the root the PCK chain
    // ended at, never from another anchor.
    let root_anchor = anchors
        .intel()
        .iter()
        .find(|a| a.der.as_ref() == pck.root_der.as_slice())
        .ok_or(VerifyError::ChainIncomplete)?;
    let (tcb_info, tcb_signer) = verify_signed(
        Document::TcbInfo,
        tcb_chain,
        root_anchor,
        anchors,
        chains,
        at,
        |k| TcbInfo::verify(tcb_info, k),
    )?;
    tcb_info.window.check(Document::TcbInfo, at)?;
    let (qe_identity, qe_signer) = verify_signed(
        Document::QeIdentity,
        qe_chain,
        root_anchor,
        anchors,
        chains,
        at,
        |k| QeIdentity::verify(qe_identity, k),
    )?;
    qe_identity.window.check(Document::QeIdentity, at)?;

    let issuer = parse(&pck.issuer_der)?;
    let pck_crl = RevocationList::verify(pck_crl, &issuer, at, |crl| {
        ecdsa_p256_signed(crl, &issuer.public_key().subject_public_key.data)
    })?;
    let root = parse(&pck.root_der)?;
    let root_crl = RevocationList::verify(root_crl, &root, at, |crl| {
        ecdsa_p256_signed(crl, &root.public_key().subject_public_key.data)
    })?;
    // A revoked TCB signer vouches for nothing.
    root_crl.check(&[&tcb_signer.serial, &qe_signer.serial])?;

    let endorsements = Arc::new(Endorsements {
        tcb_info,
        qe_identity,
        pck_crl,
        root_crl,
        signers: [tcb_signer, qe_signer],
        inputs: parts.iter().map(|p| p.to_vec()).collect(),
    });
    let (from, until) = endorsements.window();
    // The cache window is inclusive; the documents' nextUpdate is not.
    cache.endorsements.put(
        key,
        from,
        until - time::Duration::nanoseconds(1),
        Arc::clone(&endorsements),
    );
    Ok(endorsements)
}

/// ecdsa-with-SHA256 (1.2.840.10045.4.3.2), as Intel signs its CRLs.
const ECDSA_WITH_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];

fn ecdsa_p256_signed(
    crl: &x509_parser::prelude::CertificateRevocationList<'_>,
    issuer_key: &[u8],
) -> bool {
    crl.signature_algorithm.algorithm.as_bytes() == ECDSA_WITH_SHA256
        && crl.tbs_cert_list.signature == crl.signature_algorithm
        && UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, issuer_key)
            .verify(crl.tbs_cert_list.as_ref(), &crl.signature_value.data)
            .is_ok()
}

/// Checks the quote signature and the QE binding (no collateral needed).
fn check_quote_and_binding(quote: &Quote<'_>) -> Result<(), VerifyError> {
    // Header and TD report, signed by the attestation key (raw x ‖ y).
    let mut att_key = Vec::with_capacity(65);
    att_key.push(0x04);
    att_key.extend_from_slice(quote.attestation_key);
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &att_key)
        .verify(quote.signed, quote.quote_signature)
        .map_err(|_| VerifyError::SignatureInvalid)?;

    // The QE report binds the attestation key: REPORT_DATA[0..32] =
    // SHA-256(attestation key ‖ QE authentication data), the rest zero.
    let mut bound = quote.attestation_key.to_vec();
    bound.extend_from_slice(quote.qe_auth_data);
    let expected = digest(&SHA256, &bound);
    let report_data = quote.qe_report.get(320..384).unwrap_or_default();
    let (hash, rest) = report_data.split_at(report_data.len().min(32));
    if verify_slices_are_equal(hash, expected.as_ref()).is_err() || rest.iter().any(|b| *b != 0) {
        return Err(VerifyError::QeBindingInvalid);
    }
    Ok(())
}

/// The QE report is signed by the PCK leaf's P-256 key.
fn check_qe_report_signature(quote: &Quote<'_>, pck_key: &[u8]) -> Result<(), VerifyError> {
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, pck_key)
        .verify(quote.qe_report, quote.qe_report_signature)
        .map_err(|_| VerifyError::QeReportSignatureInvalid)
}

fn measurement(name: &str, bytes: &[u8]) -> NamedMeasurement {
    NamedMeasurement {
        name: name.to_string(),
        value: Measurement::new(bytes.to_vec()),
    }
}

/// Verifies a TDX quote with its collateral at `at`.
/// Which Intel PCK CA issued a PCK certificate (the `ca` of PCS's PCK CRL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PckCa {
    /// Intel SGX PCK Platform CA (multi-package platforms).
    Platform,
    /// Intel SGX PCK Processor CA.
    Processor,
}

impl PckCa {
    /// `platform` or `processor`, as PCS's `pckcrl?ca=` names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Platform => "platform",
            Self::Processor => "processor",
        }
    }
}

/// The FMSPC and issuing CA named by the PCK certificate a quote carries,
/// *unverified*: only for finding the platform's collateral. Verification
/// later checks the PCK chain and that the TCB info is for this very FMSPC.
pub fn unverified_pck_lookup(evidence: &[u8]) -> Result<([u8; 6], PckCa), VerifyError> {
    let quote = Quote::parse(evidence)?;
    let leaf = quote
        .pck_chain
        .first()
        .ok_or_else(|| VerifyError::malformed("the quote carries no PCK certificate"))?;
    let cert = parse(leaf)?;
    let processor = cert
        .issuer()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .any(|cn| cn.contains("Processor"));
    let ca = if processor {
        PckCa::Processor
    } else {
        PckCa::Platform
    };
    Ok((PckExtension::parse(&cert)?.fmspc, ca))
}

pub(crate) fn verify(
    evidence: &[u8],
    collateral: &Collateral,
    anchors: &TrustAnchors,
    chains: &ChainValidator,
    cache: &TdxCache,
    at: OffsetDateTime,
) -> Result<Authenticated, VerifyError> {
    let quote = Quote::parse(evidence)?;
    check_quote_and_binding(&quote)?;
    let pck = verify_pck_chain(&quote, anchors.intel(), chains, cache, at)?;
    check_qe_report_signature(&quote, &pck.leaf_public_key)?;

    let endorsed = verify_endorsements(collateral, &pck, anchors, chains, cache, at)?;
    endorsed.root_crl.check(&[&pck.issuer_serial])?;
    endorsed.pck_crl.check(&[&pck.leaf_serial])?;

    let info = &endorsed.tcb_info;
    if info.fmspc != pck.extension.fmspc {
        return Err(VerifyError::CollateralMismatch {
            reason: format!(
                "TCB info is for FMSPC {}, the PCK certificate says {}",
                hex::encode(info.fmspc),
                hex::encode(pck.extension.fmspc)
            ),
        });
    }
    if info.pce_id != pck.extension.pce_id {
        return Err(VerifyError::CollateralMismatch {
            reason: "TCB info is for another PCE-ID".into(),
        });
    }
    let qe_report = QeReport::parse(quote.qe_report)?;
    let report = &quote.td_report;
    let verdict = tcb::evaluate(
        info,
        &endorsed.qe_identity,
        &pck.extension,
        report,
        &qe_report,
    )?;

    let mut measurements = vec![
        measurement("mrtd", &report.mr_td),
        measurement("rtmr0", &report.rtmr[0]),
        measurement("rtmr1", &report.rtmr[1]),
        measurement("rtmr2", &report.rtmr[2]),
        measurement("rtmr3", &report.rtmr[3]),
        measurement("mrconfigid", &report.mr_config_id),
        measurement("mrowner", &report.mr_owner),
        measurement("mrownerconfig", &report.mr_owner_config),
        measurement("mrseam", &report.mr_seam),
        measurement("mrsignerseam", &report.mr_signer_seam),
    ];
    if let Some(service_td) = &report.mr_service_td {
        measurements.push(measurement("mrservicetd", service_td));
    }
    let td_attributes = TdAttributes::decode(report.td_attributes);
    let (valid_from, valid_until) = endorsed.window();
    Ok(Authenticated {
        tee: TeeKind::Tdx,
        measurements,
        bound: BoundData {
            report_data: Some(report.report_data.to_vec()),
            ..BoundData::default()
        },
        debug: td_attributes.debug,
        tcb_status: Some(verdict.status),
        platform: PlatformClaims::Tdx(Box::new(TdxClaims {
            quote_version: quote.version,
            td_attributes,
            xfam: report.xfam,
            tee_tcb_svn: report.tee_tcb_svn,
            seam_attributes: report.seam_attributes,
            fmspc: pck.extension.fmspc,
            pce_id: pck.extension.pce_id,
            tcb_status: verdict.status,
            advisory_ids: verdict.advisory_ids,
            platform_tcb_status: verdict.platform_status,
            tdx_module_tcb_status: verdict.module_status,
            qe_tcb_status: verdict.qe_status,
            tcb_date: verdict.tcb_date,
            tcb_evaluation_data_number: info.evaluation_data_number,
            collateral_valid_from: valid_from,
            collateral_valid_until: valid_until,
        })),
        chain: pck.chain.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The three signatures a quote carries within itself (no collateral).
    fn check_embedded_signatures(quote: &Quote<'_>) -> Result<(), VerifyError> {
        check_quote_and_binding(quote)?;
        let leaf = parse(
            quote
                .pck_chain
                .first()
                .ok_or(VerifyError::ChainIncomplete)?,
        )?;
        check_qe_report_signature(quote, &leaf.public_key().subject_public_key.data)
    }

    /// Every recorded TDX quote parses, carries the manifest's MRTD and
    /// version, and its embedded signatures and QE binding check out; any
    /// edit to a signed byte, the QE report or the auth data is caught.
    #[test]
    fn recorded_quotes_parse_and_their_embedded_signatures_verify() {
        let Some(dir) = attest_gate_tests::fixtures_dir() else {
            return;
        };
        let mut n = 0;
        for sample in attest_gate_tests::samples(&dir, "tdx") {
            let id = sample["id"].as_str().unwrap();
            let bytes = std::fs::read(dir.join(format!("tdx/{id}.dat"))).unwrap();
            if id == "go-tdx-guest/tdx_prod_quote_SPR_E4" {
                // go-tdx-guest appended the text "extra bytes(only for testing
                // purpose)" after the signature data: only zero padding is
                // tolerated, so this one is malformed (its expected verdict is
                // a rejection anyway).
                assert_eq!(
                    Quote::parse(&bytes).unwrap_err().code(),
                    "malformed_evidence"
                );
                n += 1;
                continue;
            }
            let quote = Quote::parse(&bytes).unwrap_or_else(|e| panic!("{id}: {e}"));
            assert_eq!(
                u64::from(quote.version),
                sample["version"].as_u64().unwrap(),
                "{id}"
            );
            assert_eq!(
                hex::encode(quote.td_report.mr_td),
                sample["mrtd"].as_str().unwrap(),
                "{id}"
            );
            check_embedded_signatures(&quote).unwrap_or_else(|e| panic!("{id}: {e}"));

            let code = |mutate: &dyn Fn(&mut Vec<u8>)| {
                let mut b = bytes.clone();
                mutate(&mut b);
                Quote::parse(&b)
                    .and_then(|q| check_embedded_signatures(&q))
                    .unwrap_err()
                    .code()
            };
            // RTMR0 sits at 48 (+6 in v5) + 328 within the signed body.
            let rtmr0 = 48 + if quote.version == 5 { 6 } else { 0 } + 328;
            assert_eq!(
                code(&|b| b[rtmr0] ^= 1),
                "signature_invalid",
                "{id}: tampered RTMR"
            );
            let qe_report = quote.signed.len() + 4 + 128 + 6;
            assert_eq!(
                code(&|b| b[qe_report + 16] ^= 1),
                "qe_report_signature_invalid",
                "{id}: QE report edited"
            );
            // The QE authentication data is covered by no signature, only by the binding hash.
            let auth_data = qe_report + 384 + 64 + 2;
            assert_eq!(
                code(&|b| b[auth_data] ^= 1),
                "qe_binding_invalid",
                "{id}: QE auth data edited"
            );
            // A different attestation key no longer verifies the quote.
            assert_eq!(
                code(&|b| b[quote.signed.len() + 4 + 64] ^= 1),
                "signature_invalid",
                "{id}: attestation key swapped"
            );
            assert_eq!(
                code(&|b| b.truncate(b.len() / 2)),
                "malformed_evidence",
                "{id}: truncated"
            );
            n += 1;
        }
        assert_eq!(n, 14);
    }
}
