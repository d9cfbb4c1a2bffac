//! `POST /v1/attest`: parse → CSR → nonce → collateral → verify evidence →
//! binding → appraisal (reference values, audience, policy) → revocations →
//! single use → credentials; every outcome audited and counted.

use std::sync::Arc;
use std::time::Instant;

use attest_gate_core::{Binding, Collateral, TeeKind, VerifiedClaims};
use time::OffsetDateTime;

use super::lifecycle::{inherited_quarantine, Inherited};
use super::{is_rate_limited, read, AuditAction, AuditCode, Service, Trail};
use crate::api::{parse, AttestRequest, AttestResponse, Parsed};
use crate::ca::{check_csr, CheckedCsr};
use crate::challenge::{self, NonceError};
use crate::collateral_source::{CollateralOrigin, Lookup, ResolveError};
use crate::credentials;
use crate::decision::{AttestationAsk, Grant};
use crate::error::{ServiceCode, ServiceError};
use crate::ratelimit::Endpoint;
use crate::revocation::{self, Kind, Mode, Subject};
use crate::store::{Committed, Consume, NewSession, Row, WriteSet};

fn nonce_denial(e: NonceError) -> ServiceError {
    ServiceError::from(e)
}

impl Service {
    /// `POST /v1/attest`: every check, then credentials; every outcome audited.
    pub async fn attest(
        self: &Arc<Self>,
        req: AttestRequest,
        now: OffsetDateTime,
    ) -> Result<AttestResponse, ServiceError> {
        let started = Instant::now();
        let mut trail = Trail::default();
        let result = match self.attest_inner(req, now, &mut trail).await {
            Ok((response, pending)) => self.commit_issued(response, pending, &trail, now).await,
            // A refusal by the rate limiter writes nothing (that is its point).
            Err(e) if is_rate_limited(&e) => Err(e),
            Err(e) => {
                let event = self.audit_event(
                    now,
                    AuditAction::Attest,
                    e.code(),
                    trail.clone(),
                    e.message(),
                );
                self.commit(WriteSet::audit(event)).await?;
                Err(e)
            }
        };
        self.metrics.attestation(
            trail.tee.as_deref().unwrap_or("unknown"),
            ServiceError::refusal(&result),
            started.elapsed(),
        );
        result
    }

    /// Commits the credential, its session, the consumed nonce and the
    /// audit record in one transaction (with other requests'); the response
    /// is handed out only once they are. A nonce another request consumed
    /// first voids the whole issuance, and only the refusal is recorded.
    async fn commit_issued(
        &self,
        response: AttestResponse,
        pending: Pending,
        trail: &Trail,
        now: OffsetDateTime,
    ) -> Result<AttestResponse, ServiceError> {
        let replayed = nonce_denial(NonceError::Replayed);
        let refusal = Trail {
            subject: None,
            jti: None,
            session_id: None,
            ..trail.clone()
        };
        let quarantined = pending
            .rows
            .iter()
            .filter(|row| matches!(row, Row::Revocation(_)))
            .count();
        let (id, until) = pending.nonce;
        let set = WriteSet {
            consume: Some(Consume {
                id,
                until,
                refusal: self.audit_event(
                    now,
                    AuditAction::Attest,
                    replayed.code(),
                    refusal,
                    replayed.message(),
                ),
            }),
            rows: pending.rows,
            audit: self.audit_event(
                now,
                AuditAction::Attest,
                AuditCode::Ok,
                trail.clone(),
                &response.scope,
            ),
        };
        match self.commit(set).await? {
            Committed::Written(_) => {
                if quarantined > 0 {
                    self.revocations_changed(Mode::Quarantine, quarantined as u64);
                }
                Ok(response)
            }
            Committed::Replayed(_) => Err(replayed),
        }
    }

    async fn attest_inner(
        self: &Arc<Self>,
        req: AttestRequest,
        now: OffsetDateTime,
        trail: &mut Trail,
    ) -> Result<(AttestResponse, Pending), ServiceError> {
        let parsed = parse(&req)?;
        trail.tee = Some(parsed.tee.to_string());
        trail.actor = Some(format!("agent:{}", parsed.key.jkt()));
        let csr = parsed
            .csr
            .as_deref()
            .map(|der| check_csr(der, &parsed.key))
            .transpose()
            .map_err(|e| ServiceError::from(&e))?;
        let nonce_expiry =
            challenge::check(&self.nonce_key, &parsed.nonce, now, self.config.nonce_ttl)
                .map_err(nonce_denial)?;
        trail.nonce_issued = Some(nonce_expiry - self.config.nonce_ttl);

        let (claims, collateral) = self
            .verify_with_collateral(parsed.tee, &parsed.evidence, parsed.collateral.clone(), now)
            .await?;
        trail.evidence_sha384 = Some(hex::encode(claims.evidence_sha384()));

        let binding = match &parsed.encryption_key {
            None => Binding::new(&parsed.nonce, parsed.key.clone(), parsed.model),
            Some(encryption) => Binding::with_encryption_key(
                &parsed.nonce,
                parsed.key.clone(),
                encryption.clone(),
                parsed.model,
            ),
        }
        .ok_or_else(|| nonce_denial(NonceError::Unknown))?;
        let grant = read(&self.appraiser).grant_attestation(
            &claims,
            &binding,
            &AttestationAsk {
                principal: &req.principal,
                intent: &req.intent,
                ttl_seconds: req.ttl_seconds,
                default_ttl: self.config.default_token_ttl,
                collateral,
            },
            now,
        )?;
        // Counted per key only once the evidence proved it holds the key
        // (the binding): anyone may know an agent's public key, and must not
        // be able to spend its allowance. The cost before this point is
        // bounded per client address.
        self.limit_key(Endpoint::Attest, grant.jkt())?;
        trail.workload = Some(grant.workload().name.clone());
        trail.workload_version = Some(grant.workload().version.clone());
        let quarantine = self
            .refuse_if_revoked(
                grant.jkt(),
                &grant.workload().name,
                &grant.provenance().model_digest,
                grant.registers(),
                now,
            )
            .await?;

        // `now` was read when the request arrived; the nonce must still be
        // current when it is consumed, or a slow request could outlive its
        // expiry and the pruning of consumed nonces.
        if self.now() >= nonce_expiry {
            return Err(nonce_denial(NonceError::Expired));
        }

        // Consumed in the transaction that records the credential: two
        // requests with one nonce (on any replica) cannot both commit.
        let nonce = (
            challenge::store_id(&parsed.nonce),
            challenge::remembered_until(nonce_expiry),
        );
        let (issued, mut rows) = self.issue(&parsed, &req, &grant, csr.as_ref(), trail)?;
        if let Some(inherited) = quarantine {
            // A quarantined agent that renews stays quarantined.
            rows.push(Row::Revocation(inherited_quarantine(
                Kind::Session,
                &issued.session_id,
                &inherited,
                now,
            )?));
        }
        Ok((issued, Pending { nonce, rows }))
    }

    /// Nothing new is issued for an agent key when a revocation in force
    /// (immediate or graceful) names the workload, model or a measurement it
    /// would be issued on, or an earlier credential or session of that key: a
    /// revoked agent cannot come back by attesting again, or by being
    /// delegated to, with the key it was revoked under. `Ok(Some(reason))`:
    /// a quarantine names it, which the new credential inherits.
    pub(super) async fn refuse_if_revoked(
        &self,
        jkt: &str,
        workload: &str,
        model: &str,
        measurements: &[String],
        now: OffsetDateTime,
    ) -> Result<Option<Inherited>, ServiceError> {
        let revocations = self.revocations_in_force().await?;
        if revocations.is_empty() {
            return Ok(None);
        }
        // Earlier credentials and sessions of this key matter only if a
        // revocation names one: only those are fetched, and only for a key
        // the revocations in force are known to name.
        let (jtis, sessions) = if revocations.may_name_credentials_of(jkt) {
            self.store
                .revoked_history_of_key(jkt)
                .await
                .map_err(ServiceError::internal)?
        } else {
            (Vec::new(), Vec::new())
        };
        let key = [jkt.to_string()];
        let subject = Subject {
            jtis: &jtis,
            sessions: &sessions,
            workload,
            model,
            measurements,
            keys: &key,
            issued_at: now.unix_timestamp(),
        };
        if let Some(reason) = revocations.issuance_blocked(&subject) {
            return Err(ServiceError::new(
                ServiceCode::Revoked,
                format!(
                    "a revocation in force names this agent key, workload, model or measurement: {reason}"
                ),
            ));
        }
        Ok(match revocations.standing(&subject) {
            revocation::Standing::Quarantined { reason, origin } => {
                Some(Inherited { reason, origin })
            }
            _ => None,
        })
    }

    /// Collateral from the service's sources (and what the request may add),
    /// evidence verification, and the SNP revocation requirement; and where
    /// the collateral came from. The verification slot is taken first, so
    /// fetching for a request counts against the same bound as verifying
    /// it; a slot not had within [`SLOT_WAIT`] is 503 `busy` (the request
    /// runs detached from its connection, so waiting longer would outlive
    /// it). For TDX the quote's signatures and PCK chain are checked before
    /// anything is fetched: only a genuine Intel platform can cause a fetch.
    pub(super) async fn verify_with_collateral(
        self: &Arc<Self>,
        tee: TeeKind,
        evidence: &[u8],
        sent: Collateral,
        now: OffsetDateTime,
    ) -> Result<(VerifiedClaims, CollateralOrigin), ServiceError> {
        let slot = take_slot(&self.verify_slots, SLOT_WAIT).await?;
        if tee == TeeKind::Tdx {
            let verified = self.verify_tdx(evidence, sent, now).await;
            drop(slot);
            return verified;
        }
        let resolved = if self.collateral.serves(tee) {
            let lookup = match tee {
                TeeKind::Snp => Lookup::snp(evidence, &sent).map_err(|e| ServiceError::from(&e))?,
                TeeKind::Nitro => Lookup::Nitro,
                // TDX went its own way above; never looked up here.
                TeeKind::Tdx => return Err(ServiceError::internal("TDX evidence off its path")),
            };
            self.collateral.resolve(&lookup, sent).await
        } else {
            self.collateral.agent_supplied(tee, sent)
        }
        .map_err(|e| collateral_unavailable(&e))?;
        let this = Arc::clone(self);
        let evidence = evidence.to_vec();
        let claims = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            this.verification
                .verify(tee, &evidence, &resolved.collateral, now)
        })
        .await
        .map_err(ServiceError::internal)??;
        Ok((claims, resolved.origin))
    }

    /// A TDX quote: authenticated by its own signatures and PCK chain, then
    /// finished with its collateral, on the request's own task, not the
    /// blocking pool. Warm, this is the quote's and QE report's two P-256
    /// signatures (~0.13 ms) and the cached collateral's checks, and the
    /// hand-off to a blocking thread and back cost more CPU than it spared
    /// the worker (two context switches per round trip;
    /// docs/benchmarks.md). A cold PCK chain (~1 ms, once per chain) runs
    /// here too, under the caller's verification slot.
    async fn verify_tdx(
        &self,
        evidence: &[u8],
        sent: Collateral,
        now: OffsetDateTime,
    ) -> Result<(VerifiedClaims, CollateralOrigin), ServiceError> {
        let (quote, resolved) = if self.collateral.serves(TeeKind::Tdx) {
            // The platform as the quote's own signatures prove it: a forged
            // quote is refused here, before any fetch.
            let quote = self.verification.authenticate_tdx_quote(evidence, now)?;
            let platform = quote.platform();
            let lookup = Lookup::Tdx {
                fmspc: platform.fmspc,
                ca: platform.ca,
            };
            let resolved = self.collateral.resolve(&lookup, sent).await;
            (quote, resolved.map_err(|e| collateral_unavailable(&e))?)
        } else {
            let resolved = self.collateral.agent_supplied(TeeKind::Tdx, sent);
            let resolved = resolved.map_err(|e| collateral_unavailable(&e))?;
            let quote = self.verification.authenticate_tdx_quote(evidence, now)?;
            (quote, resolved)
        };
        // The quote as authenticated: its signatures are not checked again.
        let claims = quote
            .verify(&resolved.collateral)
            .map_err(|e| ServiceError::from(&e))?;
        Ok((claims, resolved.origin))
    }
}

/// The longest an attestation waits for a verification slot.
const SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A verification slot, or 503 `busy` when none frees up within `wait`.
async fn take_slot(
    slots: &Arc<tokio::sync::Semaphore>,
    wait: std::time::Duration,
) -> Result<tokio::sync::OwnedSemaphorePermit, ServiceError> {
    tokio::time::timeout(wait, Arc::clone(slots).acquire_owned())
        .await
        .map_err(|_| {
            ServiceError::new(
                ServiceCode::Busy,
                "every verification slot stayed busy; try again later",
            )
        })?
        .map_err(ServiceError::internal)
}

/// 503 for collateral the service cannot settle on, with the source's
/// `Retry-After` when it gave one.
fn collateral_unavailable(e: &ResolveError) -> ServiceError {
    tracing::error!(error = %e, "no collateral to verify with");
    let (message, retry_after) = match e {
        ResolveError::Unavailable(source) => (
            "the verifier could not get current collateral from its own sources; see its log"
                .to_string(),
            source.retry_after,
        ),
        ResolveError::NoSource(_) => (e.to_string(), None),
    };
    let error = ServiceError::new(ServiceCode::CollateralUnavailable, message);
    match retry_after {
        Some(wait) => error.with_retry_after(wait.as_secs().max(1)),
        None => error,
    }
}

/// What an issuance writes, committed with its audit record.
struct Pending {
    /// The nonce's ID and expiry.
    nonce: (String, i64),
    rows: Vec<Row>,
}

impl Service {
    /// Signs what `grant` says (the token, the SVID if a CSR came) and lays
    /// out its rows: the credential, the session's evidence and key.
    /// Nothing is handed out until they are committed.
    fn issue(
        &self,
        parsed: &Parsed,
        req: &AttestRequest,
        grant: &Grant,
        csr: Option<&CheckedCsr>,
        trail: &mut Trail,
    ) -> Result<(AttestResponse, Vec<Row>), ServiceError> {
        let access_token = read(&self.tokens)
            .current
            .sign_access(grant, &self.config.issuer)
            .map_err(ServiceError::internal)?;
        let svid = csr
            .map(|csr| read(&self.ca).issue(csr, grant))
            .transpose()
            .map_err(ServiceError::internal)?;
        // The decoded bytes: reappraisal reads exactly what was verified,
        // whichever base64 the agent sent.
        let mut rows = vec![
            Row::Credential(credentials::record(grant)),
            Row::Session(NewSession {
                session_id: grant.session().id.clone(),
                tee: parsed.tee.to_string(),
                evidence: parsed.evidence.clone(),
                // Found here, on the request's task, not in the writer
                // that every request's rows queue for.
                shared_tail_at: match parsed.tee {
                    TeeKind::Tdx => attest_gate_core::tdx::pck_chain_offset(&parsed.evidence),
                    TeeKind::Nitro | TeeKind::Snp => None,
                },
                collateral: parsed
                    .collateral
                    .iter()
                    .map(|(name, bytes)| (name.to_string(), bytes.to_vec()))
                    .collect(),
                model_digest: parsed.model.to_hex(),
                expires_at: grant.expires_at().unix_timestamp(),
                principal: req.principal.clone(),
                task_id: req.intent.task_id.clone(),
                scopes: req.intent.scopes.join(" "),
                audience: req.intent.audience.clone(),
            }),
        ];
        if let Some(encryption) = &parsed.encryption_key {
            rows.push(Row::SessionKey(
                grant.session().id.clone(),
                encryption.to_jwk().to_string(),
                grant.expires_at().unix_timestamp(),
            ));
        }
        trail.subject = Some(grant.subject());
        trail.jti = Some(grant.jti().to_string());
        trail.session_id = Some(grant.session().id.clone());
        let response = AttestResponse {
            access_token,
            token_type: "DPoP".into(),
            expires_in: (grant.expires_at() - grant.issued_at()).whole_seconds(),
            scope: grant.scopes().join(" "),
            spiffe_id: grant.subject(),
            session_id: grant.session().id.clone(),
            svid,
            test_root: grant.test_root(),
        };
        Ok((response, rows))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[tokio::test]
    async fn no_slot_within_the_wait_is_busy_and_a_freed_one_is_taken() {
        let slots = Arc::new(tokio::sync::Semaphore::new(1));
        let held = take_slot(&slots, SLOT_WAIT).await.unwrap();
        let wait = std::time::Duration::from_millis(20);
        let refused = take_slot(&slots, wait).await.unwrap_err();
        assert_eq!(refused.code(), ErrorCode::Service(ServiceCode::Busy));
        assert_eq!(refused.code().status().as_u16(), 503);
        drop(held);
        assert!(take_slot(&slots, wait).await.is_ok());
        slots.close();
        let closed = take_slot(&slots, wait).await.unwrap_err();
        assert_eq!(
            closed.code(),
            ErrorCode::Service(ServiceCode::InternalError)
        );
    }
}
