//! Reference values: the workloads an operator allows, one versioned TOML
//! file each (the repository's `measurements/` folder), and the appraisal of
//! verified claims against them. Parsing is pure; reading the folder is the
//! caller's job.
//!
//! A workload matches when its TEE is the evidence's and *every* register it
//! lists has one of its allowed values. A file that lists no primary register
//! (Nitro `pcr0`, TDX `mrtd`, SNP `measurement`) or an unknown register name
//! is refused at load time: a typo must never allow every image.
//!
//! Debug mode and TCB status are judged by the shared appraisal
//! (`appraisal::platform_reasons`, under the policy a workload implies);
//! this module adds only the register, model and SNP bounds, and a
//! rejection lists every reason the matched workload fails.

use std::collections::BTreeMap;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use serde::Deserialize;

use crate::appraisal::{platform_reasons, AppraisalPolicy};
use crate::binding::ModelDigest;
use crate::claims::{PlatformClaims, TcbStatus, TeeKind, VerifiedClaims};
use crate::error::Rejection;

/// The deepest delegation chain a workload may allow: revocation walks a
/// credential's ancestors this far, so a deeper chain could outrun it.
pub const MAX_DELEGATION_DEPTH: u8 = 16;

/// The schema version this build reads.
pub const SCHEMA_VERSION: u32 = 1;

/// What an attested workload may be granted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// SPIFFE trust domain, e.g. `attest-gate.example`.
    pub trust_domain: String,
    /// Workload path segment of the SPIFFE ID.
    pub workload: String,
    /// Scopes this workload may ever receive.
    pub scopes: Vec<String>,
    /// Audiences it may ask tokens for.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Longest credential lifetime, seconds.
    pub max_ttl_seconds: u32,
    /// Whether it may obtain narrower credentials for sub-agents.
    #[serde(default)]
    pub may_delegate: bool,
    /// How deep a delegation chain under it may go.
    #[serde(default)]
    pub max_delegation_depth: u8,
    /// Whether a delegated token of this workload may have secrets
    /// released (to the session's encryption key); off by default, so a
    /// sub-agent cannot read what only the attested agent was meant to.
    #[serde(default)]
    pub secrets_may_delegate: bool,
}

/// SEV-SNP bounds beyond measurements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpBounds {
    /// Lowest acceptable REPORTED_TCB components (each compared on its own).
    #[serde(default)]
    pub min_bootloader: u8,
    /// As above: PSP OS (TEE) SPL.
    #[serde(default)]
    pub min_tee: u8,
    /// As above: SNP firmware SPL.
    #[serde(default)]
    pub min_snp: u8,
    /// As above: microcode SPL.
    #[serde(default)]
    pub min_microcode: u8,
    /// Highest acceptable VMPL (0 = most privileged only).
    #[serde(default)]
    pub max_vmpl: u32,
}

/// One allowed workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// Its name (unique across files).
    pub name: String,
    /// Its version string.
    pub version: String,
    /// The TEE it runs in.
    pub tee: TeeKind,
    /// Register name → allowed values (any one of them).
    pub measurements: BTreeMap<String, Vec<Vec<u8>>>,
    /// Model digests it may serve.
    pub models: Vec<ModelDigest>,
    /// TCB statuses accepted (TDX); default `UpToDate` only.
    pub accepted_tcb_statuses: Vec<TcbStatus>,
    /// SNP bounds (SNP only).
    pub snp: Option<SnpBounds>,
    /// Whether a debug-mode TEE is acceptable (only for test workloads).
    pub allow_debug: bool,
    /// What it may be granted.
    pub grant: Grant,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    schema: u32,
    workload: WorkloadToml,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkloadToml {
    name: String,
    version: String,
    tee: String,
    measurements: BTreeMap<String, OneOrMany>,
    models: Vec<String>,
    #[serde(default)]
    accepted_tcb_statuses: Vec<String>,
    snp: Option<SnpBounds>,
    #[serde(default)]
    allow_debug: bool,
    grant: Grant,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// A reference-value file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("reference values {file}: {reason}")]
pub struct ReferenceError {
    /// The file.
    pub file: String,
    /// What is wrong.
    pub reason: String,
}

/// The SPIFFE ID rules (SPIFFE-ID spec §2.1, §2.2) for the parts of
/// `spiffe://<trust_domain>/<workload>/<instance>` a file names: a trust
/// domain of lower-case letters, digits, `.`, `-`, `_`; a path segment of
/// letters, digits, `.`, `-`, `_`, neither `.` nor `..`.
fn check_spiffe(grant: &Grant) -> Result<(), String> {
    let td = &grant.trust_domain;
    let td_ok = !td.is_empty()
        && td.len() <= 255
        && td
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-_".contains(c));
    if !td_ok {
        return Err(format!(
            "grant.trust_domain {td:?} is not a SPIFFE trust domain (a-z, 0-9, '.', '-', '_')"
        ));
    }
    let seg = &grant.workload;
    let seg_ok = !seg.is_empty()
        && seg.len() <= 255
        && seg != "."
        && seg != ".."
        && seg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c));
    if !seg_ok {
        return Err(format!(
            "grant.workload {seg:?} is not one SPIFFE path segment (A-Z, a-z, 0-9, '.', '-', '_')"
        ));
    }
    Ok(())
}

/// Register names a workload may constrain, per TEE; the first is required.
fn registers(tee: TeeKind) -> Vec<String> {
    match tee {
        TeeKind::Nitro => (0..32).map(|i| format!("pcr{i}")).collect(),
        TeeKind::Tdx => [
            "mrtd",
            "rtmr0",
            "rtmr1",
            "rtmr2",
            "rtmr3",
            "mrconfigid",
            "mrowner",
            "mrownerconfig",
            "mrseam",
            "mrsignerseam",
            "mrservicetd",
        ]
        .map(String::from)
        .to_vec(),
        TeeKind::Snp => ["measurement", "host_data", "family_id", "image_id"]
            .map(String::from)
            .to_vec(),
    }
}

/// Every register a workload may constrain, with its verified value, in the
/// TEE's order: what a measurement revocation is matched against, so that a
/// register no workload pins can still be revoked.
pub fn verified_registers(claims: &VerifiedClaims) -> Vec<(String, &[u8])> {
    registers(claims.tee)
        .into_iter()
        .filter_map(|name| Workload::register(claims, &name).map(|value| (name, value)))
        .collect()
}

/// Whether `len` bytes is the length of some register of some TEE (16:
/// SNP family / image ID; 32: SNP host data; 48: PCRs, MRTD, RTMRs, SNP
/// measurement).
pub fn is_register_length(len: usize) -> bool {
    matches!(len, 16 | 32 | 48)
}

impl Workload {
    /// Parses one TOML file (`file` names it in errors).
    pub fn from_toml(file: &str, text: &str) -> Result<Self, ReferenceError> {
        let err = |reason: String| ReferenceError {
            file: file.to_string(),
            reason,
        };
        let parsed: File = toml::from_str(text).map_err(|e| err(e.message().to_string()))?;
        if parsed.schema != SCHEMA_VERSION {
            return Err(err(format!(
                "schema {} (this build reads {SCHEMA_VERSION})",
                parsed.schema
            )));
        }
        let w = parsed.workload;
        let tee: TeeKind = w.tee.parse().map_err(|e| err(format!("tee: {e}")))?;
        if w.grant.max_delegation_depth > MAX_DELEGATION_DEPTH {
            return Err(err(format!(
                "grant.max_delegation_depth is at most {MAX_DELEGATION_DEPTH}"
            )));
        }
        let known = registers(tee);
        let mut measurements = BTreeMap::new();
        for (name, values) in w.measurements {
            if !known.contains(&name) {
                return Err(err(format!("unknown {tee} register {name:?}")));
            }
            let values = match values {
                OneOrMany::One(v) => vec![v],
                OneOrMany::Many(v) => v,
            };
            if values.is_empty() {
                return Err(err(format!("{name} allows no value")));
            }
            let decoded = values
                .iter()
                .map(|v| hex::decode(v).map_err(|_| err(format!("{name}: {v:?} is not hex"))))
                .collect::<Result<Vec<_>, _>>()?;
            measurements.insert(name, decoded);
        }
        let primary = known.first().cloned().unwrap_or_default();
        if !measurements.contains_key(&primary) {
            return Err(err(format!("{primary} is required for {tee}")));
        }
        if w.models.is_empty() {
            return Err(err("no model digest is allowed".into()));
        }
        let models = w
            .models
            .iter()
            .map(|m| {
                ModelDigest::from_hex(m)
                    .ok_or_else(|| err(format!("model {m:?} is not a SHA-384 hex digest")))
            })
            .collect::<Result<_, _>>()?;
        let accepted_tcb_statuses = if w.accepted_tcb_statuses.is_empty() {
            vec![TcbStatus::UpToDate]
        } else {
            w.accepted_tcb_statuses
                .iter()
                .map(|s| match s.parse() {
                    Ok(TcbStatus::Revoked) => Err(err("Revoked is never acceptable".into())),
                    Ok(status) => Ok(status),
                    Err(e) => Err(err(format!("{s:?}: {e}"))),
                })
                .collect::<Result<_, _>>()?
        };
        if w.snp.is_some() && tee != TeeKind::Snp {
            return Err(err("[workload.snp] bounds on a non-SNP workload".into()));
        }
        if w.grant.max_ttl_seconds == 0 {
            return Err(err("grant.max_ttl_seconds must be positive".into()));
        }
        check_spiffe(&w.grant).map_err(err)?;
        if w.grant.audiences.is_empty() {
            // An empty list must never mean "any relying party".
            return Err(err("grant.audiences must name at least one audience".into()));
        }
        Ok(Self {
            name: w.name,
            version: w.version,
            tee,
            measurements,
            models,
            accepted_tcb_statuses,
            snp: w.snp.or((tee == TeeKind::Snp).then(SnpBounds::default)),
            allow_debug: w.allow_debug,
            grant: w.grant,
        })
    }

    /// The value of `register` in verified claims.
    fn register<'a>(claims: &'a VerifiedClaims, register: &str) -> Option<&'a [u8]> {
        if let Some(m) = claims.measurement(register) {
            return Some(m.as_bytes());
        }
        match (&claims.platform, register) {
            (PlatformClaims::Snp(snp), "host_data") => Some(&snp.host_data),
            (PlatformClaims::Snp(snp), "family_id") => Some(&snp.family_id),
            (PlatformClaims::Snp(snp), "image_id") => Some(&snp.image_id),
            _ => None,
        }
    }

    /// Whether every listed register has one of its allowed values.
    fn measurements_match(&self, claims: &VerifiedClaims) -> bool {
        claims.tee == self.tee
            && self.measurements.iter().all(|(name, allowed)| {
                Self::register(claims, name).is_some_and(|have| {
                    allowed
                        .iter()
                        .any(|want| verify_slices_are_equal(have, want).is_ok())
                })
            })
    }

    /// The shared appraisal policy this workload implies: its debug and TCB
    /// status bounds, no expected nonce or report data (binding is checked
    /// elsewhere).
    pub(crate) fn appraisal_policy(&self) -> AppraisalPolicy {
        AppraisalPolicy {
            allow_debug: self.allow_debug,
            accepted_tcb_statuses: self.accepted_tcb_statuses.clone(),
            expected_nonce: None,
            expected_report_data: None,
        }
    }

    /// Every platform bound the claims fail: debug and TCB status (judged by
    /// the shared [`platform_reasons`]), then each SNP REPORTED_TCB component
    /// below its minimum, then a VMPL above the maximum.
    fn platform_reasons(&self, claims: &VerifiedClaims) -> Vec<Rejection> {
        let mut reasons = platform_reasons(claims, &self.appraisal_policy());
        if let (Some(bounds), PlatformClaims::Snp(snp)) = (&self.snp, &claims.platform) {
            let t = &snp.reported_tcb;
            reasons.extend(
                [
                    ("bootloader", t.bootloader, bounds.min_bootloader),
                    ("tee", t.tee, bounds.min_tee),
                    ("snp", t.snp, bounds.min_snp),
                    ("microcode", t.microcode, bounds.min_microcode),
                ]
                .into_iter()
                .filter(|(_, have, min)| have < min)
                .map(|(component, have, min)| Rejection::TcbBelowMinimum {
                    component,
                    have: have.into(),
                    minimum: min.into(),
                }),
            );
            if snp.vmpl > bounds.max_vmpl {
                reasons.push(Rejection::VmplAboveMaximum {
                    have: snp.vmpl,
                    maximum: bounds.max_vmpl,
                });
            }
        }
        reasons
    }
}

/// Every allowed workload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReferenceValues {
    workloads: Vec<Workload>,
}

impl ReferenceValues {
    /// Parses (file name, TOML text) pairs; names must be unique.
    pub fn from_files<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, ReferenceError> {
        let mut workloads: Vec<Workload> = Vec::new();
        for (file, text) in files {
            let w = Workload::from_toml(file, text)?;
            if workloads.iter().any(|o| o.name == w.name) {
                return Err(ReferenceError {
                    file: file.to_string(),
                    reason: format!("workload name {:?} is used twice", w.name),
                });
            }
            workloads.push(w);
        }
        Ok(Self { workloads })
    }

    /// Every workload, in file order.
    pub fn workloads(&self) -> &[Workload] {
        &self.workloads
    }

    /// The workload verified claims prove to be, serving `model`:
    /// `measurement_not_allowed` if no workload's registers match,
    /// `model_not_allowed` if none of those serves this model, then its
    /// debug and TCB bounds (`debug_enclave`, `tcb_status_not_accepted`,
    /// `tcb_below_minimum`, `vmpl_above_maximum`). On rejection, the first
    /// of the reasons [`ReferenceValues::appraise_all`] gives.
    pub fn appraise(
        &self,
        claims: &VerifiedClaims,
        model: &ModelDigest,
    ) -> Result<&Workload, Rejection> {
        self.appraise_all(claims, model).map_err(|reasons| {
            reasons
                .into_iter()
                .next()
                .unwrap_or(Rejection::MeasurementNotAllowed)
        })
    }

    /// As [`ReferenceValues::appraise`], but a rejection lists every reason
    /// (never empty), most relevant first. If no workload's registers match,
    /// that is the only reason. Otherwise the workload judged is the first
    /// whose registers match and that serves `model`, else the first whose
    /// registers match (then `model_not_allowed` leads); every platform bound
    /// it fails follows, in the order listed for `appraise`.
    pub fn appraise_all(
        &self,
        claims: &VerifiedClaims,
        model: &ModelDigest,
    ) -> Result<&Workload, Vec<Rejection>> {
        let matching: Vec<&Workload> = self
            .workloads
            .iter()
            .filter(|w| w.measurements_match(claims))
            .collect();
        let serving = matching.iter().find(|w| w.models.contains(model));
        let (workload, mut reasons) = match (serving, matching.first()) {
            (Some(w), _) => (*w, Vec::new()),
            (None, Some(w)) => (*w, vec![Rejection::ModelNotAllowed]),
            (None, None) => return Err(vec![Rejection::MeasurementNotAllowed]),
        };
        reasons.extend(workload.platform_reasons(claims));
        if reasons.is_empty() {
            Ok(workload)
        } else {
            Err(reasons)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::appraisal::appraise;

    const MRTD: [u8; 48] = [0xd3; 48];
    const MODEL: [u8; 48] = [0xcb; 48];

    fn workload(accepted: &str, allow_debug: bool) -> ReferenceValues {
        let text = format!(
            r#"schema = 1
[workload]
name = "w"
version = "1"
tee = "tdx"
models = ["{model}"]
accepted_tcb_statuses = {accepted}
allow_debug = {allow_debug}
[workload.measurements]
mrtd = "{mrtd}"
[workload.grant]
trust_domain = "attest-gate.test"
workload = "w"
scopes = ["s"]
audiences = ["https://rp.attest-gate.test"]
max_ttl_seconds = 600
"#,
            model = hex::encode(MODEL),
            mrtd = hex::encode(MRTD),
        );
        ReferenceValues::from_files([("w.toml", text.as_str())]).unwrap()
    }

    fn codes(
        values: &ReferenceValues,
        claims: &VerifiedClaims,
        model: [u8; 48],
    ) -> Vec<&'static str> {
        match values.appraise_all(claims, &ModelDigest(model)) {
            Ok(_) => Vec::new(),
            Err(reasons) => reasons.iter().map(Rejection::code).collect(),
        }
    }

    /// A matched workload's rejection names every bound the claims fail;
    /// `appraise` keeps giving the first of them.
    #[test]
    fn a_workload_rejection_lists_debug_and_tcb_status_together() {
        let values = workload(r#"["UpToDate"]"#, false);
        let claims = VerifiedClaims::for_test(&MRTD, true, Some(TcbStatus::OutOfDate));
        assert_eq!(
            codes(&values, &claims, MODEL),
            ["debug_enclave", "tcb_status_not_accepted"]
        );
        assert_eq!(
            values
                .appraise(&claims, &ModelDigest(MODEL))
                .unwrap_err()
                .code(),
            "debug_enclave"
        );
        // Another model: that leads, the platform's reasons follow.
        assert_eq!(
            codes(&values, &claims, [0; 48]),
            [
                "model_not_allowed",
                "debug_enclave",
                "tcb_status_not_accepted"
            ]
        );
        // Unmatched registers say only that.
        let other = VerifiedClaims::for_test(&[0; 48], true, Some(TcbStatus::OutOfDate));
        assert_eq!(codes(&values, &other, MODEL), ["measurement_not_allowed"]);
        // Allowed by the workload: accepted.
        let lenient = workload(r#"["UpToDate", "OutOfDate"]"#, true);
        assert!(lenient.appraise(&claims, &ModelDigest(MODEL)).is_ok());
    }

    /// A workload's debug and TCB-status verdicts are exactly those of the
    /// shared appraisal under the policy the workload implies.
    #[test]
    fn workload_bounds_are_the_shared_appraisal() {
        for accepted in [r#"["UpToDate"]"#, r#"["UpToDate", "SWHardeningNeeded"]"#] {
            for allow_debug in [false, true] {
                let values = workload(accepted, allow_debug);
                let w = values.workloads().first().unwrap();
                for debug in [false, true] {
                    for status in [
                        None,
                        Some(TcbStatus::UpToDate),
                        Some(TcbStatus::SwHardeningNeeded),
                        Some(TcbStatus::OutOfDate),
                    ] {
                        let claims = VerifiedClaims::for_test(&MRTD, debug, status);
                        let shared = platform_reasons(&claims, &w.appraisal_policy());
                        assert_eq!(w.platform_reasons(&claims), shared);
                        let general = appraise(claims.clone(), &w.appraisal_policy())
                            .err()
                            .unwrap_or_default();
                        assert_eq!(general, shared);
                        match values.appraise_all(&claims, &ModelDigest(MODEL)) {
                            Ok(_) => assert!(shared.is_empty()),
                            Err(reasons) => assert_eq!(reasons, shared),
                        }
                    }
                }
            }
        }
    }
}
