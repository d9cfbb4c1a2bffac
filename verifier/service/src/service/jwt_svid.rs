//! `POST /v1/jwt-svid`: an attested agent's JWT-SVID (SPIFFE JWT-SVID), for
//! relying parties that take a bearer JWT (a cloud's OIDC federation, an
//! API gateway). Authenticated exactly as a secret release: the agent's
//! DPoP-bound access token (`Authorization: DPoP <token>`) and one proof by
//! its key (method, URL, `ath`, server nonce, single use). Checks, in
//! order: the token's signature and expiry; the proof; the per-key limit;
//! the credential's record and standing; then the decision module's
//! [`Appraiser::grant_jwt_svid`](crate::decision::Appraiser::grant_jwt_svid)
//! (audiences, revocation, quarantine, delegation, the workload's audiences
//! and Cedar). The JWT-SVID is a credential: recorded with the token as its
//! parent (so revoking the token, session, key or anything above revokes it,
//! and the revocation list names it), audited and counted, in one commit
//! with the proof's single use.

use time::OffsetDateTime;

use super::exchange::{proof_replayed, spend};
use super::{is_rate_limited, read, AuditAction, AuditCode, Service, Trail};
use crate::api::{JwtSvidRequest, JwtSvidResponse};
use crate::credentials;
use crate::decision::JwtSvidAsk;
use crate::error::ServiceError;
use crate::ratelimit::Endpoint;
use crate::store::{Committed, Row, WriteSet};

/// Where the endpoint lives under the issuer (the proof's `htu`).
pub(crate) const JWT_SVID_PATH: &str = "/v1/jwt-svid";
/// The audit action.
const ACTION: AuditAction = AuditAction::JwtSvid;

impl Service {
    /// `POST /v1/jwt-svid`, audited whatever it decides (but a refusal by
    /// the rate limiter).
    pub async fn jwt_svid(
        &self,
        req: &JwtSvidRequest,
        token: Option<&str>,
        proof: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<JwtSvidResponse, ServiceError> {
        let mut trail = Trail::default();
        let mut proof_use = None;
        let result = self
            .jwt_svid_inner(req, token, proof, now, &mut trail, &mut proof_use)
            .await;
        let replayed = proof_replayed();
        let refusal_if_replayed = self.audit_event(
            now,
            ACTION,
            replayed.code(),
            Trail {
                subject: None,
                ..trail.clone()
            },
            replayed.message(),
        );
        let result = match result {
            Ok((response, row, detail)) => {
                let event = self.audit_event(now, ACTION, AuditCode::Ok, trail, &detail);
                // The proof is spent with the credential it bought.
                let committed = self
                    .commit(WriteSet {
                        consume: spend(proof_use, refusal_if_replayed),
                        rows: vec![row],
                        audit: event,
                    })
                    .await?;
                match committed {
                    Committed::Written(_) => Ok(response),
                    Committed::Replayed(_) => Err(replayed),
                }
            }
            Err(e) if is_rate_limited(&e) => {
                if let Some((id, until)) = proof_use {
                    self.consume_proof(&id, until).await?;
                }
                Err(e)
            }
            Err(e) => {
                let event = self.audit_event(now, ACTION, e.code(), trail, e.message());
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
        self.metrics.jwt_svid(ServiceError::refusal(&result));
        result
    }

    async fn jwt_svid_inner(
        &self,
        req: &JwtSvidRequest,
        token: Option<&str>,
        proof: Option<&str>,
        now: OffsetDateTime,
        trail: &mut Trail,
        proof_use: &mut Option<(String, i64)>,
    ) -> Result<(JwtSvidResponse, Row, String), ServiceError> {
        const WHAT: &str = "a JWT-SVID";
        let presented = self.presented(WHAT, token, proof, ("POST", JWT_SVID_PATH), now, trail)?;
        *proof_use = Some(presented.proof);
        let verified = presented.token;
        let claims = verified.claims();
        // Per key only after a proof by that key: a relying party holding a
        // copy of the token cannot spend the agent's allowance.
        self.limit_key(Endpoint::JwtSvid, &claims.cnf.jkt)?;
        let credential = self.live_credential(WHAT, &verified, now, trail).await?;
        let (standing, blocked) = self.standing_of(&credential).await?;
        let registers: Vec<String> = credential
            .measurements
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let grant = read(&self.appraiser).grant_jwt_svid(
            &verified,
            &JwtSvidAsk {
                audiences: &req.audience,
                standing: &standing,
                blocked: blocked.as_deref(),
                registers: &registers,
            },
            now,
        )?;
        let signed = read(&self.tokens)
            .current
            .sign_jwt_svid(&grant, &self.config.issuer)
            .map_err(ServiceError::internal)?;
        // The audit record names the new credential and its parent token.
        trail.jti = Some(grant.jti().to_string());
        let detail = format!(
            "parent {}; aud {}",
            grant.parent_jti(),
            grant.audiences().join(" ")
        );
        let response = JwtSvidResponse {
            token: signed,
            spiffe_id: grant.subject().to_string(),
            expires_in: (grant.expires_at() - now).whole_seconds(),
            jti: grant.jti().to_string(),
        };
        Ok((
            response,
            Row::Credential(credentials::jwt_svid_record(&grant)),
            detail,
        ))
    }
}
