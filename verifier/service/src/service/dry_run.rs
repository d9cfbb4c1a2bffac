//! `POST /v1/admin/policy/dry-run`: verifies recorded evidence as the
//! service would (without nonce or binding: the evidence is old), then
//! decides it under the policy in force and under a candidate, so a policy
//! change can be tried before it ships.

use std::sync::Arc;

use attest_gate_core::{Collateral, ModelDigest, TeeKind};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{read, AuditAction, AuditCode, Service, Trail};
use crate::api::{decode_b64, Decision, DryRunRequest};
use crate::decision::Appraiser;
use crate::error::{ServiceCode, ServiceError};

impl Service {
    /// Both decisions, `{"current": ..., "candidate": ...}`.
    pub async fn dry_run(
        self: &Arc<Self>,
        req: &DryRunRequest,
        now: OffsetDateTime,
    ) -> Result<serde_json::Value, ServiceError> {
        let bad = |m: &str| ServiceError::new(ServiceCode::MalformedRequest, m);
        let at = match &req.at {
            Some(t) => {
                OffsetDateTime::parse(t, &Rfc3339).map_err(|_| bad("`at` must be RFC 3339"))?
            }
            None => now,
        };
        let tee: TeeKind = req.tee.parse().map_err(|_| bad("unknown `tee`"))?;
        // Decoded as attestation decodes: the same four alphabets.
        let evidence = decode_b64("evidence", &req.evidence)?;
        let mut items = Vec::new();
        for (name, b64) in &req.collateral {
            items.push((name.clone(), decode_b64("collateral", b64)?));
        }
        let model = ModelDigest::from_hex(req.model_digest.trim())
            .ok_or_else(|| bad("`model_digest` must be 96 hex digits"))?;
        let current = read(&self.appraiser);
        let candidate = Appraiser::new(current.references.clone(), &req.policy)
            .map_err(|e| ServiceError::new(ServiceCode::PolicyInvalid, e.to_string()))?;
        let checked = self
            .verify_with_collateral(tee, &evidence, Collateral::from_items(items), at)
            .await;
        let decide = |appraiser: &Appraiser| {
            Decision::of(checked.clone().and_then(|(claims, collateral)| {
                appraiser
                    .decide(&claims, collateral, &model, &req.principal, &req.intent, at)
                    .map(|g| g.scopes)
            }))
        };
        let (now_decides, then_decides) = (decide(&current), decide(&candidate));
        let detail = format!(
            "candidate {}: current {}, candidate {}",
            candidate.policy_version, now_decides.decision, then_decides.decision
        );
        self.audit(
            now,
            AuditAction::AdminPolicyDryRun,
            AuditCode::Ok,
            Trail::admin(),
            &detail,
        )
        .await?;
        Ok(serde_json::json!({
            "current": now_decides,
            "candidate": then_decides,
            "candidate_policy_version": candidate.policy_version,
        }))
    }
}
