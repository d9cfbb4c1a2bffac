//! Appraisal: judging verified claims against a policy.
//!
//! Verification establishes authenticity; this decides acceptability. It
//! collects every failed check, so a rejection names all its reasons.

use aws_lc_rs::constant_time::verify_slices_are_equal;

use crate::claims::{TcbStatus, VerifiedClaims};
use crate::error::Rejection;

/// What the CLI's default appraisal requires. `Default` is the strict policy:
/// debug denied, TCB status `UpToDate` only, no expected values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppraisalPolicy {
    /// Accept a debug-mode TEE.
    pub allow_debug: bool,
    /// TCB statuses accepted (TEEs without a TCB status are not judged on it).
    pub accepted_tcb_statuses: Vec<TcbStatus>,
    /// If set, the evidence's nonce (Nitro `nonce`) must equal this.
    pub expected_nonce: Option<Vec<u8>>,
    /// If set, the evidence's `REPORT_DATA` (TDX / SNP) must equal this.
    pub expected_report_data: Option<Vec<u8>>,
}

impl Default for AppraisalPolicy {
    fn default() -> Self {
        Self {
            allow_debug: false,
            accepted_tcb_statuses: vec![TcbStatus::UpToDate],
            expected_nonce: None,
            expected_report_data: None,
        }
    }
}

/// Claims that passed appraisal. Only [`appraise`] constructs one, so code
/// that takes an `Appraisal` cannot be handed unappraised claims.
#[derive(Debug, Clone)]
pub struct Appraisal {
    claims: VerifiedClaims,
}

impl Appraisal {
    /// The appraised claims.
    pub fn claims(&self) -> &VerifiedClaims {
        &self.claims
    }

    /// Gives the appraised claims back.
    pub fn into_claims(self) -> VerifiedClaims {
        self.claims
    }
}

/// Judges `claims` against `policy`; on failure returns every reason.
pub fn appraise(
    claims: VerifiedClaims,
    policy: &AppraisalPolicy,
) -> Result<Appraisal, Vec<Rejection>> {
    let mut reasons = Vec::new();
    if claims.debug && !policy.allow_debug {
        reasons.push(Rejection::DebugEnclave);
    }
    if let Some(status) = claims.tcb_status {
        if !policy.accepted_tcb_statuses.contains(&status) {
            reasons.push(Rejection::TcbStatusNotAccepted {
                status: status.to_string(),
            });
        }
    }
    if let Some(expected) = &policy.expected_nonce {
        if !equal(claims.bound.nonce.as_deref(), expected) {
            reasons.push(Rejection::NonceMismatch);
        }
    }
    if let Some(expected) = &policy.expected_report_data {
        if !equal(claims.bound.report_data.as_deref(), expected) {
            reasons.push(Rejection::ReportDataMismatch);
        }
    }
    if reasons.is_empty() {
        Ok(Appraisal { claims })
    } else {
        Err(reasons)
    }
}

/// Constant-time comparison; an absent value never equals an expected one.
fn equal(actual: Option<&[u8]>, expected: &[u8]) -> bool {
    actual.is_some_and(|a| verify_slices_are_equal(a, expected).is_ok())
}
