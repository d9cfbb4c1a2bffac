//! Appraisal: judging verified claims against a policy.
//!
//! Verification establishes authenticity; this decides acceptability. It
//! collects every failed check, so a rejection names all its reasons.
//! Debug mode and TCB status are judged here only ([`platform_reasons`]);
//! reference values reuse that check for their workloads' bounds.

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
    let mut reasons = platform_reasons(&claims, policy);
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

/// Debug mode and TCB status, judged against `policy`: the checks every
/// appraisal shares (this one, and reference values through
/// `Workload::appraisal_policy`). This is the only place either is judged,
/// so the two paths cannot drift apart. Every failure is returned, debug
/// first; the policy's expected values are not looked at here.
pub(crate) fn platform_reasons(
    claims: &VerifiedClaims,
    policy: &AppraisalPolicy,
) -> Vec<Rejection> {
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
    reasons
}

/// Constant-time comparison; an absent value never equals an expected one.
fn equal(actual: Option<&[u8]>, expected: &[u8]) -> bool {
    actual.is_some_and(|a| verify_slices_are_equal(a, expected).is_ok())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    const ALL_STATUSES: [TcbStatus; 7] = [
        TcbStatus::UpToDate,
        TcbStatus::SwHardeningNeeded,
        TcbStatus::ConfigurationNeeded,
        TcbStatus::ConfigurationAndSwHardeningNeeded,
        TcbStatus::OutOfDate,
        TcbStatus::OutOfDateConfigurationNeeded,
        TcbStatus::Revoked,
    ];

    fn codes(reasons: &[Rejection]) -> Vec<&'static str> {
        reasons.iter().map(Rejection::code).collect()
    }

    /// The shared check reports debug and TCB status, each on its own and
    /// both together (debug first), for every status and policy; `appraise`
    /// gives exactly those reasons when the policy expects no bound values.
    #[test]
    fn platform_reasons_lists_debug_and_tcb_status_together() {
        let statuses = ALL_STATUSES.map(Some).into_iter().chain([None]);
        for status in statuses {
            for debug in [false, true] {
                for allow_debug in [false, true] {
                    for accepted in [vec![], vec![TcbStatus::UpToDate], ALL_STATUSES.to_vec()] {
                        let policy = AppraisalPolicy {
                            allow_debug,
                            accepted_tcb_statuses: accepted.clone(),
                            ..AppraisalPolicy::default()
                        };
                        let claims = VerifiedClaims::for_test(&[1; 48], debug, status);
                        let mut want = Vec::new();
                        if debug && !allow_debug {
                            want.push("debug_enclave");
                        }
                        if status.is_some_and(|s| !accepted.contains(&s)) {
                            want.push("tcb_status_not_accepted");
                        }
                        let got = platform_reasons(&claims, &policy);
                        assert_eq!(codes(&got), want, "{status:?} {debug} {allow_debug}");
                        match appraise(claims, &policy) {
                            Ok(_) => assert!(want.is_empty()),
                            Err(reasons) => assert_eq!(reasons, got),
                        }
                    }
                }
            }
        }
        // Bound-value checks come after the platform's, and add to them.
        let policy = AppraisalPolicy {
            expected_nonce: Some(vec![7]),
            ..AppraisalPolicy::default()
        };
        let claims = VerifiedClaims::for_test(&[1; 48], true, Some(TcbStatus::OutOfDate));
        assert_eq!(
            codes(&appraise(claims, &policy).unwrap_err()),
            ["debug_enclave", "tcb_status_not_accepted", "nonce_mismatch"]
        );
    }

    /// Debug mode and TCB status are judged by [`platform_reasons`] alone:
    /// no other appraisal code builds either rejection or reads either claim
    /// (reference values reach them only through the shared function).
    #[test]
    fn debug_and_tcb_status_are_judged_by_one_function() {
        let non_test = |src: &'static str| src.split("#[cfg(test)]").next().unwrap_or(src);
        let here = non_test(include_str!("appraisal.rs"));
        for needle in ["Rejection::DebugEnclave", "Rejection::TcbStatusNotAccepted"] {
            assert_eq!(here.matches(needle).count(), 1, "{needle} in appraisal.rs");
        }
        for (file, src) in [
            ("reference.rs", include_str!("reference.rs")),
            ("binding.rs", include_str!("binding.rs")),
        ] {
            let src = non_test(src);
            for needle in [
                "Rejection::DebugEnclave",
                "Rejection::TcbStatusNotAccepted",
                "claims.debug",
                "claims.tcb_status",
            ] {
                assert!(!src.contains(needle), "{file} judges {needle} itself");
            }
            assert!(
                file != "reference.rs" || src.contains("platform_reasons(claims"),
                "reference values no longer use the shared check"
            );
        }
    }
}
