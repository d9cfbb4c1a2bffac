//! Reference values: the workloads an operator allows, one versioned TOML
//! file each (the repository's `measurements/` folder), and the appraisal of
//! verified claims against them. Parsing is pure; reading the folder is the
//! caller's job.
//!
//! A workload matches when its TEE is the evidence's and *every* register it
//! lists has one of its allowed values. A file that lists no primary register
//! (Nitro `pcr0`, TDX `mrtd`, SNP `measurement`) or an unknown register name
//! is refused at load time: a typo must never allow every image.

use std::collections::BTreeMap;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use serde::Deserialize;

use crate::binding::ModelDigest;
use crate::claims::{PlatformClaims, TcbStatus, TeeKind, VerifiedClaims};
use crate::error::Rejection;

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

    /// TCB and debug bounds.
    fn platform_acceptable(&self, claims: &VerifiedClaims) -> Result<(), Rejection> {
        if claims.debug && !self.allow_debug {
            return Err(Rejection::DebugEnclave);
        }
        if let Some(status) = claims.tcb_status {
            if !self.accepted_tcb_statuses.contains(&status) {
                return Err(Rejection::TcbStatusNotAccepted {
                    status: status.to_string(),
                });
            }
        }
        if let (Some(bounds), PlatformClaims::Snp(snp)) = (&self.snp, &claims.platform) {
            let t = &snp.reported_tcb;
            let below = [
                ("bootloader", t.bootloader, bounds.min_bootloader),
                ("tee", t.tee, bounds.min_tee),
                ("snp", t.snp, bounds.min_snp),
                ("microcode", t.microcode, bounds.min_microcode),
            ]
            .into_iter()
            .find(|(_, have, min)| have < min);
            if let Some((component, have, min)) = below {
                return Err(Rejection::TcbBelowMinimum {
                    component,
                    have: have.into(),
                    minimum: min.into(),
                });
            }
            if snp.vmpl > bounds.max_vmpl {
                return Err(Rejection::VmplAboveMaximum {
                    have: snp.vmpl,
                    maximum: bounds.max_vmpl,
                });
            }
        }
        Ok(())
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
    /// `tcb_below_minimum`).
    pub fn appraise(
        &self,
        claims: &VerifiedClaims,
        model: &ModelDigest,
    ) -> Result<&Workload, Rejection> {
        let mut matching = self
            .workloads
            .iter()
            .filter(|w| w.measurements_match(claims))
            .peekable();
        if matching.peek().is_none() {
            return Err(Rejection::MeasurementNotAllowed);
        }
        let workload = matching
            .find(|w| w.models.contains(model))
            .ok_or(Rejection::ModelNotAllowed)?;
        workload.platform_acceptable(claims)?;
        Ok(workload)
    }
}
