//! Evidence that verifies *now* (or at any instant the caller names), under
//! the same fixed test roots as `testdata/`: what end-to-end tests of the
//! running service and enclave-agent's simulation mode submit.
//!
//! Only what has a validity window moves with the instant (Nitro's
//! intermediates, leaf and timestamp; Intel's CRLs, TCB info and QE identity);
//! roots and long-lived CAs stay byte-identical, so `--dev` trusts them.

use time::{Duration, OffsetDateTime};

use crate::nitro::{self, DocSpec, ForgeError};
use crate::snp::{self as snp_forge, ChainSpec as SnpChain, ReportSpec};
use crate::tdx::{Collateral, TdxSpec};

/// A Nitro attestation document with `doc`'s contents, timestamped `at` and
/// signed under a test chain current at `at`.
pub fn nitro(doc: &DocSpec, at: OffsetDateTime) -> Result<Vec<u8>, ForgeError> {
    let mut doc = doc.clone();
    let millis = at.unix_timestamp_nanos() / 1_000_000;
    doc.timestamp_ms = u64::try_from(millis).unwrap_or_default();
    let chain = nitro::chain_spec_at(at).issue()?;
    doc.sign(&chain, &nitro::bundle(&chain))
}

/// An SEV-SNP report signed by the test VCEK, with its VCEK and ASK/ARK chain.
/// Nothing in it expires for years, so no instant is needed.
pub fn snp(report: &ReportSpec) -> Result<(Vec<u8>, Collateral), ForgeError> {
    Ok((
        report.sign(&snp_forge::vcek_key()),
        SnpChain::default().collateral()?,
    ))
}

/// The SEV-SNP chain with a CRL of AMD's shape, current at `at` (issued a
/// day before, next update 29 days after), revoking nothing: what a KDS
/// serves for the forged chips.
pub fn snp_chain_with_crl(at: OffsetDateTime) -> Result<Collateral, ForgeError> {
    Ok(SnpChain {
        crl_revokes_ask: Some(false),
        crl_window: (at - Duration::days(1), at + Duration::days(29)),
        ..SnpChain::default()
    }
    .collateral()?)
}

/// A TDX quote and its collateral, the collateral current at `at` (issued a
/// day before, next update 29 days after).
pub fn tdx(spec: &TdxSpec, at: OffsetDateTime) -> Result<(Vec<u8>, Collateral), ForgeError> {
    let window = (at - Duration::days(1), at + Duration::days(29));
    let mut spec = spec.clone();
    spec.platform.pck_crl_window = window;
    spec.platform.root_crl_window = window;
    spec.tcb_info.window = window;
    spec.qe_identity.window = window;
    Ok(spec.forge()?)
}
