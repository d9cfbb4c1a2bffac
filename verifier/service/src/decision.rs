//! Appraisal after verification: the reference values (workload files) and
//! the Cedar policy, loaded and swapped as one `Appraiser`, and the one
//! function that turns verified claims and an intent into granted scopes —
//! shared by `POST /v1/attest`, the policy dry-run endpoint and `verifier
//! policy test`, so a tested policy decides exactly as the service will.

use std::path::Path;

use attest_gate_core::{
    Collateral, ModelDigest, PlatformClaims, ReferenceValues, TeeKind, TrustAnchors, TrustKind,
    VerifiedClaims, Verifier, VerifyError, Workload,
};
use aws_lc_rs::digest::{digest, SHA256};
use time::OffsetDateTime;

use crate::api::IntentRequest;
use crate::error::{ServiceCode, ServiceError};
use crate::policy::{Policy, PolicyQuery, PolicySubject, DEFAULT_POLICY};
use crate::service::{test_anchors, StartError};

/// Evidence verification with exactly the trust the configuration names:
/// the pinned vendor roots, and with `--dev` the project's test roots for
/// evidence that no vendor root anchors (and only then). Used by the service
/// and by `verifier policy test`, so both accept the same evidence.
#[derive(Debug)]
pub struct Verification {
    vendor: Verifier,
    test: Option<Verifier>,
}

impl Verification {
    /// Vendor roots; also the test roots when `dev`.
    pub fn new(dev: bool) -> Result<Self, StartError> {
        Ok(Self {
            vendor: Verifier::new(TrustAnchors::vendor()?),
            test: if dev {
                Some(Verifier::new(test_anchors()?))
            } else {
                None
            },
        })
    }

    /// Verifies, then requires what the service requires of verified
    /// evidence: SEV-SNP under the vendor roots must have had its
    /// revocation checked (AMD's CRL is optional collateral to the core).
    pub fn verify(
        &self,
        tee: TeeKind,
        evidence: &[u8],
        collateral: &Collateral,
        at: OffsetDateTime,
    ) -> Result<VerifiedClaims, ServiceError> {
        let claims = match (
            self.vendor.verify(tee, evidence, collateral, at),
            &self.test,
        ) {
            (Err(VerifyError::ChainUntrusted { .. }), Some(test)) => {
                test.verify(tee, evidence, collateral, at)
            }
            (other, _) => other,
        }
        .map_err(|e| ServiceError::from(&e))?;
        if let PlatformClaims::Snp(snp) = &claims.platform {
            if claims.trust == TrustKind::VendorRoot && !snp.revocation_checked {
                return Err(ServiceError::new(
                    ServiceCode::RevocationNotChecked,
                    "SEV-SNP evidence needs AMD's CRL for its ARK (crl.der) as collateral",
                ));
            }
        }
        Ok(claims)
    }
}

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

    /// Attestation: reference values, then [`Appraiser::grant`].
    pub fn decide(
        &self,
        claims: &VerifiedClaims,
        model: &ModelDigest,
        principal: &str,
        intent: &IntentRequest,
        now: OffsetDateTime,
    ) -> Result<Granted<'_>, ServiceError> {
        let workload = self
            .references
            .appraise(claims, model)
            .map_err(|r| ServiceError::from(&r))?;
        let model_hex = model.to_hex();
        let tcb_status = claims.tcb_status.map(|s| s.to_string());
        let scopes = self.grant(&PolicyQuery {
            subject: PolicySubject::attested(workload, claims, &model_hex, tcb_status.as_deref()),
            delegation: None,
            act_for: principal,
            task_id: &intent.task_id,
            audience: &intent.audience,
            scopes: &intent.scopes,
            now,
        })?;
        Ok(Granted { workload, scopes })
    }

    /// The one grant rule, for attestation and delegation alike: the
    /// audience must be one the workload names, and the scopes granted are
    /// `query.scopes` ∩ the workload's grant ∩ what Cedar permits for this
    /// subject, principal, task, audience and (for an exchange) actor;
    /// never empty.
    pub fn grant(&self, query: &PolicyQuery<'_>) -> Result<Vec<String>, ServiceError> {
        let workload = query.subject.workload;
        if !workload.grant.audiences.iter().any(|a| a == query.audience) {
            return Err(ServiceError::new(
                ServiceCode::AudienceNotAllowed,
                format!(
                    "workload {} may not get tokens for this audience",
                    workload.name
                ),
            ));
        }
        let allowed: Vec<String> = query
            .scopes
            .iter()
            .filter(|s| workload.grant.scopes.contains(s))
            .cloned()
            .collect();
        let scopes = self
            .policy
            .permitted_scopes(&PolicyQuery {
                scopes: &allowed,
                ..*query
            })
            .map_err(ServiceError::internal)?;
        if scopes.is_empty() {
            return Err(ServiceError::new(
                ServiceCode::ScopeNotAllowed,
                "no requested scope is allowed by the workload's grant and the policy",
            ));
        }
        Ok(scopes)
    }
}
