//! Appraisal after verification: the reference values (workload files) and
//! the Cedar policy, loaded and swapped as one `Appraiser`, and the one
//! function that turns verified claims and an intent into granted scopes —
//! shared by `POST /v1/attest`, the policy dry-run endpoint and `verifier
//! policy test`, so a tested policy decides exactly as the service will.

use std::path::Path;

use attest_gate_core::{ModelDigest, ReferenceValues, VerifiedClaims, Workload};
use aws_lc_rs::digest::{digest, SHA256};
use time::OffsetDateTime;

use crate::api::{ApiError, IntentRequest};
use crate::policy::{Policy, PolicyQuery, DEFAULT_POLICY};
use crate::service::StartError;

/// Reference values and policy, reloaded together.
#[derive(Debug)]
pub struct Appraiser {
    /// The workload files.
    pub references: ReferenceValues,
    /// The policy.
    pub policy: Policy,
    /// SHA-256 of the policy text (16 hex digits), for the audit log.
    pub policy_version: String,
}

/// What appraisal granted.
#[derive(Debug, Clone)]
pub struct Granted<'a> {
    /// The workload the claims matched.
    pub workload: &'a Workload,
    /// requested ∩ the workload's grant ∩ what policy permits; never empty.
    pub scopes: Vec<String>,
}

/// Reads every `*.toml` in `dir`, in name order.
pub fn load_references(dir: &Path) -> Result<ReferenceValues, StartError> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| StartError::Config(format!("measurements {}: {e}", dir.display())))?;
    for entry in entries {
        let path = entry
            .map_err(|e| StartError::Config(format!("measurements {}: {e}", dir.display())))?
            .path();
        if path.extension().is_some_and(|x| x == "toml") {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| StartError::Config(format!("{}: {e}", path.display())))?;
            files.push((path.display().to_string(), text));
        }
    }
    files.sort();
    ReferenceValues::from_files(files.iter().map(|(f, t)| (f.as_str(), t.as_str())))
        .map_err(|e| StartError::Config(e.to_string()))
}

/// Reads the policy file's text, or the built-in default's.
pub fn read_policy(file: Option<&Path>) -> Result<String, StartError> {
    match file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| StartError::Config(format!("policy {}: {e}", path.display()))),
        None => Ok(DEFAULT_POLICY.to_string()),
    }
}

impl Appraiser {
    /// From reference values and a policy's text.
    pub fn new(references: ReferenceValues, policy_text: &str) -> Result<Self, StartError> {
        let policy = Policy::parse(policy_text).map_err(|e| StartError::Config(e.to_string()))?;
        let policy_version = hex::encode(digest(&SHA256, policy_text.as_bytes()))
            .chars()
            .take(16)
            .collect();
        Ok(Self {
            references,
            policy,
            policy_version,
        })
    }

    /// From the measurements folder and the policy file (or the default).
    pub fn load(measurements: &Path, policy_file: Option<&Path>) -> Result<Self, StartError> {
        Self::new(load_references(measurements)?, &read_policy(policy_file)?)
    }

    /// Reference values, then the audience, then requested ∩ grant ∩ policy.
    pub fn decide(
        &self,
        claims: &VerifiedClaims,
        model: &ModelDigest,
        principal: &str,
        intent: &IntentRequest,
        now: OffsetDateTime,
    ) -> Result<Granted<'_>, ApiError> {
        let workload = self
            .references
            .appraise(claims, model)
            .map_err(|r| ApiError::denied(r.code(), r.to_string()))?;
        if !workload.grant.audiences.contains(&intent.audience) {
            return Err(ApiError::denied(
                "audience_not_allowed",
                format!(
                    "workload {} may not get tokens for this audience",
                    workload.name
                ),
            ));
        }
        let allowed: Vec<String> = intent
            .scopes
            .iter()
            .filter(|s| workload.grant.scopes.contains(s))
            .cloned()
            .collect();
        let scopes = self
            .policy
            .permitted_scopes(&PolicyQuery {
                workload,
                claims,
                model,
                act_for: principal,
                task_id: &intent.task_id,
                audience: &intent.audience,
                scopes: &allowed,
                now,
            })
            .map_err(ApiError::internal)?;
        if scopes.is_empty() {
            return Err(ApiError::denied(
                "scope_not_allowed",
                "no requested scope is allowed by the workload's grant and the policy",
            ));
        }
        Ok(Granted { workload, scopes })
    }
}
