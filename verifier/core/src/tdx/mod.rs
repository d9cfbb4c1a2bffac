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
mod cache;
mod collateral;
mod endorsement;
pub mod import;
mod lookup;
pub mod names;
mod pck;
mod pck_chain;
mod quote_signature;
mod signer;
mod tcb;

use time::OffsetDateTime;

use crate::authenticated::Authenticated;
use crate::chain::ChainValidator;
use crate::claims::{BoundData, Measurement, NamedMeasurement, PlatformClaims, TeeKind};
use crate::collateral::Collateral;
use crate::error::VerifyError;
use crate::trust::TrustAnchors;

use abi::QeReport;
pub use abi::{Quote, TdReport};
pub(crate) use cache::TdxCache;
use endorsement::verify_endorsements;
pub use lookup::{pck_chain_offset, unverified_pck_lookup, PckCa};
use pck_chain::verify_pck_chain;
use quote_signature::{check_qe_report_signature, check_quote_and_binding};

pub use crate::claims::tdx::{TdAttributes, TdxClaims};

fn measurement(name: &str, bytes: &[u8]) -> NamedMeasurement {
    NamedMeasurement {
        name: name.to_string(),
        value: Measurement::new(bytes.to_vec()),
    }
}

/// A platform proven by a quote's own signatures: which FMSPC and which PCK
/// CA, read from a PCK certificate that chains to the pinned Intel root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthenticatedPlatform {
    /// The platform type, from the verified PCK certificate.
    pub fmspc: [u8; 6],
    /// The CA that issued it (which PCK CRL applies).
    pub ca: PckCa,
}

/// A quote whose signatures and PCK chain checked under the anchors given
/// at one instant: the parsed quote and its verified PCK chain, for
/// [`endorse`] to finish with collateral.
#[derive(Debug)]
pub(crate) struct SignedQuote<'a> {
    quote: Quote<'a>,
    pck: std::sync::Arc<pck_chain::VerifiedPck>,
}

impl SignedQuote<'_> {
    /// The platform the quote proves.
    pub(crate) fn platform(&self) -> AuthenticatedPlatform {
        AuthenticatedPlatform {
            fmspc: self.pck.extension.fmspc,
            ca: self.pck.ca,
        }
    }
}

/// Steps 1 and 2 without the CRLs: the quote parses, the PCK chain leads
/// to the pinned root, and the quote's signature and the QE report check.
/// The chain goes first: it is cached once verified, and a quote under
/// another root (a verifier with test roots beside the vendor's tries both)
/// is refused before any signature is computed. Every check still runs for
/// a quote that is accepted.
pub(crate) fn authenticate<'a>(
    evidence: &'a [u8],
    anchors: &TrustAnchors,
    chains: &ChainValidator,
    cache: &TdxCache,
    at: OffsetDateTime,
) -> Result<SignedQuote<'a>, VerifyError> {
    let quote = Quote::parse(evidence)?;
    let pck = verify_pck_chain(&quote, anchors.intel(), chains, &cache.pcks, at)?;
    check_quote_and_binding(&quote)?;
    check_qe_report_signature(&quote, &pck.leaf_public_key)?;
    Ok(SignedQuote { quote, pck })
}

/// Verifies a TDX quote with its collateral at `at`.
pub(crate) fn verify(
    evidence: &[u8],
    collateral: &Collateral,
    anchors: &TrustAnchors,
    chains: &ChainValidator,
    cache: &TdxCache,
    at: OffsetDateTime,
) -> Result<Authenticated, VerifyError> {
    let signed = authenticate(evidence, anchors, chains, cache, at)?;
    endorse(&signed, collateral, anchors, chains, cache, at)
}

/// Steps 2 (the CRLs), 3 and 4 for a quote [`authenticate`] accepted under
/// the same `anchors`, at the instant `at` it was accepted.
pub(crate) fn endorse(
    signed: &SignedQuote<'_>,
    collateral: &Collateral,
    anchors: &TrustAnchors,
    chains: &ChainValidator,
    cache: &TdxCache,
    at: OffsetDateTime,
) -> Result<Authenticated, VerifyError> {
    let SignedQuote { quote, pck } = signed;
    let endorsed = verify_endorsements(collateral, pck, anchors, chains, &cache.endorsements, at)?;
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
