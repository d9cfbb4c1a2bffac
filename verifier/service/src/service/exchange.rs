//! `POST /v1/token/exchange` (RFC 8693): an agent holding a DPoP-bound token
//! obtains a narrower one for a sub-agent's key. Checks, in order: the
//! request's shape; the DPoP proof (RFC 9449: `htm`, `htu`, `iat`, `ath`, a
//! server nonce, the token's `cnf.jkt`) and its single use; the subject
//! token's signature and expiry; its credential and revocation standing;
//! the workload's delegation rights and depth; scope only shrinking, an
//! allowed audience, expiry within the parent's. The new token's `act`
//! nests the chain, `session.parent` names the parent, `session.chain`
//! lists every hop.

use attest_gate_core::AgentKey;
use attest_gate_relying_party::dpop::{self, DpopError, ProofExpectations};
use aws_lc_rs::digest::{digest, SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use time::OffsetDateTime;

use super::lifecycle::{inherited_quarantine, Inherited};
use super::{is_rate_limited, read, AuditAction, AuditCode, Service, Trail};
use crate::api::{ExchangeRequest, ExchangeResponse};
use crate::challenge;
use crate::credentials;
use crate::decision::DelegationAsk;
use crate::error::{ServiceCode, ServiceError};
use crate::ratelimit::Endpoint;
use crate::revocation::{Kind, Mode, Standing};
use crate::store::{AuditEvent, Committed, Consume, Row, WriteSet};

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// Where the endpoint lives under the issuer (the proof's `htu`).
pub(crate) const EXCHANGE_PATH: &str = "/v1/token/exchange";
/// How far a proof's `iat` may be from the verifier's clock.
const IAT_WINDOW: i64 = 60;

impl Service {
    /// A fresh DPoP server nonce (`DPoP-Nonce`), valid for the nonce TTL.
    pub fn dpop_nonce(&self, now: OffsetDateTime) -> Option<String> {
        challenge::issue(&self.dpop_nonce_key, now, self.config.nonce_ttl)
            .ok()
            .map(|c| c.encoded())
    }

    /// The exchange, audited whatever it decides.
    pub async fn exchange(
        &self,
        req: &ExchangeRequest,
        proof: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<ExchangeResponse, ServiceError> {
        let mut trail = Trail::default();
        let mut proof_use = None;
        let result = self
            .exchange_inner(req, proof, now, &mut trail, &mut proof_use)
            .await;
        let replayed = proof_replayed();
        let refusal_if_replayed = self.audit_event(
            now,
            AuditAction::Exchange,
            replayed.code(),
            // Nothing was issued: no subject, no new `jti`.
            Trail {
                subject: None,
                jti: None,
                ..trail.clone()
            },
            replayed.message(),
        );
        let result = match result {
            Ok((response, rows)) => {
                let quarantined = rows
                    .iter()
                    .filter(|row| matches!(row, Row::Revocation(_)))
                    .count() as u64;
                let event = self.audit_event(
                    now,
                    AuditAction::Exchange,
                    AuditCode::Ok,
                    trail,
                    &response.scope,
                );
                // The proof is consumed with the credential it bought: a
                // proof used twice (here or on another replica) buys one.
                let committed = self
                    .commit(WriteSet {
                        consume: spend(proof_use, refusal_if_replayed),
                        rows,
                        audit: event,
                    })
                    .await?;
                match committed {
                    Committed::Written(_) => {
                        if quarantined > 0 {
                            self.revocations_changed(Mode::Quarantine, quarantined);
                        }
                        Ok(response)
                    }
                    Committed::Replayed(_) => Err(replayed),
                }
            }
            // A refusal by the rate limiter is not audited (a flood must not
            // cost audit records); a proof it saw is still spent.
            Err(e) if is_rate_limited(&e) => {
                if let Some((id, until)) = proof_use {
                    self.consume_proof(&id, until).await?;
                }
                Err(e)
            }
            // Refused: the proof is spent all the same, so replaying it
            // changes nothing.
            Err(e) => {
                let event =
                    self.audit_event(now, AuditAction::Exchange, e.code(), trail, e.message());
                let committed = self
                    .commit(WriteSet {
                        consume: spend(proof_use, refusal_if_replayed),
                        ..WriteSet::audit(event)
                    })
                    .await?;
                match committed {
                    Committed::Written(_) => Err(e),
                    Committed::Replayed(_) => Err(replayed),
                }
            }
        };
        if let Err(e) = &result {
            self.metrics.rejection(e.code());
        }
        result
    }

    async fn exchange_inner(
        &self,
        req: &ExchangeRequest,
        proof: Option<&str>,
        now: OffsetDateTime,
        trail: &mut Trail,
        proof_use: &mut Option<(String, i64)>,
    ) -> Result<(ExchangeResponse, Vec<Row>), ServiceError> {
        if req.grant_type != GRANT_TYPE || req.subject_token_type != ACCESS_TOKEN_TYPE {
            return Err(ServiceError::new(
                ServiceCode::UnsupportedGrantType,
                format!("`grant_type` must be {GRANT_TYPE} and `subject_token_type` {ACCESS_TOKEN_TYPE}"),
            ));
        }
        let child_key = AgentKey::from_jwk(&req.actor_key)
            .map_err(|e| ServiceError::new(ServiceCode::InvalidPublicKey, e.to_string()))?;
        let scopes: Vec<String> = req.scope.split_whitespace().map(str::to_string).collect();
        if scopes.is_empty()
            || scopes.len() > 32
            || req.purpose.is_empty()
            || req.purpose.len() > 256
        {
            return Err(ServiceError::new(
                ServiceCode::MalformedRequest,
                "`scope` must name 1 to 32 scopes and `purpose` be 1 to 256 characters",
            ));
        }

        let parent_token = read(&self.tokens)
            .verify_access(&req.subject_token)
            .ok_or_else(|| {
                ServiceError::new(
                    ServiceCode::InvalidToken,
                    "the subject token is not a valid token of this verifier",
                )
            })?;
        let parent_claims = parent_token.claims();
        trail.actor = Some(format!("agent:{}", parent_claims.cnf.jkt));
        *proof_use = Some(self.check_proof(
            proof,
            ("POST", EXCHANGE_PATH),
            &req.subject_token,
            &parent_claims.cnf.jkt,
            now,
        )?);
        // Per key only after a proof by that key: a relying party holding a
        // copy of the token cannot spend the agent's allowance.
        self.limit_key(Endpoint::Exchange, &parent_claims.cnf.jkt)?;

        let jti = parent_claims.jti.as_str();
        trail.jti = Some(jti.to_string());
        let parent = self
            .store
            .credential(jti)
            .await
            .map_err(ServiceError::internal)?
            .filter(|c| c.expires_at > now.unix_timestamp())
            .ok_or_else(|| {
                ServiceError::new(
                    ServiceCode::InvalidToken,
                    "the subject token has expired or is unknown",
                )
            })?;
        trail.session_id = Some(parent.session_id.clone());
        trail.workload = Some(parent.workload.clone());
        let (standing, blocked) = self.standing_of(&parent).await?;
        if blocked.is_some() {
            return Err(ServiceError::new(
                ServiceCode::ParentRevoked,
                "the subject token is revoked: it cannot delegate",
            ));
        }
        // A quarantined parent's children are quarantined in their own
        // right, so relying parties (which see only a token's own jti and
        // parent) mark grandchildren too, as introspection does.
        let parent_quarantine = match standing {
            Standing::Quarantined { reason, origin } => {
                tracing::warn!(jti, %reason, "a quarantined credential delegates");
                Some(Inherited { reason, origin })
            }
            _ => None,
        };
        // The sub-agent's key must not be one revoked before (by itself or
        // in a session); if it is quarantined, its new token inherits that.
        // A child of a quarantined parent is marked through its lineage.
        let registers: Vec<String> = parent
            .measurements
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let inherited = self
            .refuse_if_revoked(
                &child_key.jkt(),
                &parent.workload,
                &parent.model_digest,
                &registers,
                now,
            )
            .await?;

        let grant = read(&self.appraiser).grant_delegation(
            &parent_token,
            &registers,
            &DelegationAsk {
                actor: &child_key,
                scopes: &scopes,
                audience: &req.audience,
                purpose: &req.purpose,
                ttl_seconds: req.ttl_seconds,
            },
            now,
        )?;
        trail.workload_version = Some(grant.workload().version.clone());
        let access_token = read(&self.tokens)
            .current
            .sign_access(&grant, &self.config.issuer)
            .map_err(ServiceError::internal)?;
        trail.subject = Some(grant.subject());
        trail.jti = Some(grant.jti().to_string());
        let mut rows = vec![Row::Credential(credentials::record(&grant))];
        for inherited in [inherited, parent_quarantine].into_iter().flatten() {
            rows.push(Row::Revocation(inherited_quarantine(
                Kind::Jti,
                grant.jti(),
                &inherited,
                now,
            )?));
        }
        let response = ExchangeResponse {
            access_token,
            issued_token_type: ACCESS_TOKEN_TYPE.into(),
            token_type: "DPoP".into(),
            expires_in: (grant.expires_at() - now).whole_seconds(),
            scope: grant.scopes().join(" "),
            spiffe_id: grant.subject(),
        };
        Ok((response, rows))
    }

    /// The proof must be by the token's key, for this request (`htm`, and
    /// `htu` = the issuer and `path`), with a current server nonce; returns
    /// the ID and expiry under which its single use is recorded (by the
    /// caller, with its decision or through [`Self::consume_proof`]).
    pub(super) fn check_proof(
        &self,
        proof: Option<&str>,
        (htm, path): (&str, &str),
        token: &str,
        jkt: &str,
        now: OffsetDateTime,
    ) -> Result<(String, i64), ServiceError> {
        let proof = proof.ok_or_else(|| {
            ServiceError::new(
                ServiceCode::InvalidDpopProof,
                "a `DPoP` proof header is required",
            )
        })?;
        let htu = format!("{}{path}", self.config.issuer);
        let nonce_ok = |n: &str| {
            URL_SAFE_NO_PAD.decode(n).is_ok_and(|bytes| {
                challenge::check(&self.dpop_nonce_key, &bytes, now, self.config.nonce_ttl).is_ok()
            })
        };
        let mut expect = ProofExpectations::new(htm, &htu);
        expect.access_token = Some(token);
        expect.jkt = Some(jkt);
        expect.nonce = Some(&nonce_ok);
        expect.iat_window_seconds = IAT_WINDOW;
        let verified =
            dpop::verify_proof(proof, &expect, now.unix_timestamp()).map_err(|e| match e {
                DpopError::UseNonce => ServiceError::new(
                    ServiceCode::UseDpopNonce,
                    "use the `DPoP-Nonce` this response carries",
                ),
                other => ServiceError::new(ServiceCode::InvalidDpopProof, other.to_string()),
            })?;
        let id = format!(
            "dpop:{}",
            hex::encode(digest(&SHA256, verified.jti.as_bytes()))
        );
        Ok((id, verified.iat.saturating_add(IAT_WINDOW)))
    }

    /// Spends a proof's `jti` now, on its own (where no decision's rows go
    /// with it); a second use is `invalid_dpop_proof`.
    pub(super) async fn consume_proof(&self, id: &str, until: i64) -> Result<(), ServiceError> {
        let first = self
            .store
            .consume_nonce(id, until)
            .await
            .map_err(ServiceError::internal)?;
        if first {
            Ok(())
        } else {
            Err(proof_replayed())
        }
    }
}

/// A proof's single use, with the refusal recorded if it was spent before.
pub(super) fn spend(proof: Option<(String, i64)>, refusal: AuditEvent) -> Option<Consume> {
    proof.map(|(id, until)| Consume { id, until, refusal })
}

/// A DPoP proof presented a second time.
pub(super) fn proof_replayed() -> ServiceError {
    ServiceError::new(
        ServiceCode::InvalidDpopProof,
        "the DPoP proof was already used",
    )
}
