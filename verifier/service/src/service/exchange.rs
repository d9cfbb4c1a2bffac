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
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

use super::{read, Service, Trail};
use crate::api::{ExchangeRequest, ExchangeResponse};
use crate::challenge;
use crate::credentials::spiffe_id;
use crate::error::{ServiceCode, ServiceError};
use crate::policy::{DelegationQuery, PolicyQuery, PolicySubject};
use crate::revocation::{Kind, Standing};
use crate::secrets;
use crate::store::CredentialRecord;

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// Where the endpoint lives under the issuer (the proof's `htu`).
pub const EXCHANGE_PATH: &str = "/v1/token/exchange";
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
        let result = self.exchange_inner(req, proof, now, &mut trail).await;
        let (code, detail) = match &result {
            Ok(r) => ("ok".to_string(), r.scope.clone()),
            Err(e) => (e.code().as_str().to_string(), e.message().to_string()),
        };
        if code != "ok" {
            self.metrics.rejection(&code);
        }
        self.audit(now, "exchange", &code, trail, &detail).await;
        result
    }

    async fn exchange_inner(
        &self,
        req: &ExchangeRequest,
        proof: Option<&str>,
        now: OffsetDateTime,
        trail: &mut Trail,
    ) -> Result<ExchangeResponse, ServiceError> {
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

        let parent_claims = read(&self.tokens)
            .verify(&req.subject_token, "at+jwt")
            .ok_or_else(|| {
                ServiceError::new(
                    ServiceCode::InvalidToken,
                    "the subject token is not a valid token of this verifier",
                )
            })?;
        let parent_jkt = parent_claims
            .pointer("/cnf/jkt")
            .and_then(Value::as_str)
            .unwrap_or_default();
        trail.actor = Some(format!("agent:{parent_jkt}"));
        self.check_proof(proof, &req.subject_token, parent_jkt, now)
            .await?;

        let jti = parent_claims
            .get("jti")
            .and_then(Value::as_str)
            .unwrap_or_default();
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
        if let Standing::Quarantined { reason, .. } = standing {
            tracing::warn!(jti, %reason, "a quarantined credential delegates");
        }
        // The sub-agent's key must not be one revoked before (by itself or
        // in a session); a child of a quarantined parent is marked through
        // its lineage already.
        let measurements: Vec<String> = parent
            .measurements
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let inherited = self
            .refuse_if_revoked(
                &child_key.jkt(),
                &parent.workload,
                &parent.model_digest,
                &measurements,
                now,
            )
            .await?;

        let appraiser = read(&self.appraiser);
        let workload = appraiser
            .references
            .workloads()
            .iter()
            .find(|w| w.name == parent.workload)
            .ok_or_else(|| {
                ServiceError::new(
                    ServiceCode::WorkloadUnknown,
                    "the subject token's workload is no longer allowed",
                )
            })?;
        trail.workload_version = Some(workload.version.clone());
        if !workload.grant.may_delegate {
            return Err(ServiceError::new(
                ServiceCode::DelegationNotAllowed,
                format!("workload {} may not delegate", workload.name),
            ));
        }
        let depth = parent.depth.saturating_add(1);
        if depth > i32::from(workload.grant.max_delegation_depth) {
            return Err(ServiceError::new(
                ServiceCode::DelegationTooDeep,
                format!(
                    "workload {} allows {} delegation hops",
                    workload.name, workload.grant.max_delegation_depth
                ),
            ));
        }
        let held: Vec<&str> = parent.scope.split_whitespace().collect();
        if let Some(wider) = scopes.iter().find(|s| !held.contains(&s.as_str())) {
            return Err(ServiceError::new(
                ServiceCode::ScopeWidening,
                format!("`{wider}` is not among the subject token's scopes"),
            ));
        }
        // The same policy decides the child as decided the parent, with the
        // child's audience, purpose and key: a `forbid` conditioned on any
        // of them cannot be escaped by delegating.
        let provenance = |name: &str| parent_claims.pointer(&format!("/provenance/{name}"));
        let tee = provenance("tee")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let tcb_status = provenance("tcb_status").and_then(Value::as_str);
        // Tokens that predate the `debug` claim count as debug: fail closed.
        let debug = provenance("debug").and_then(Value::as_bool).unwrap_or(true);
        let act_for = parent_claims
            .get("act_for")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let child_jkt = child_key.jkt();
        let scopes = appraiser.grant(&PolicyQuery {
            subject: PolicySubject {
                workload,
                tee,
                model: &parent.model_digest,
                tcb_status,
                debug,
                test_root: parent.test_root,
            },
            delegation: Some(DelegationQuery {
                actor: &child_jkt,
                depth: i64::from(depth),
                parent_jti: &parent.jti,
            }),
            act_for,
            task_id: &req.purpose,
            audience: &req.audience,
            scopes: &scopes,
            now,
        })?;

        let parent_expiry = OffsetDateTime::from_unix_timestamp(parent.expires_at)
            .map_err(ServiceError::internal)?;
        let expires_at = match req.ttl_seconds {
            Some(ttl) => (now + Duration::seconds(i64::from(ttl))).min(parent_expiry),
            None => parent_expiry,
        };
        let issued = self
            .issue_delegated(
                req,
                &parent,
                &parent_claims,
                workload,
                &child_key,
                scopes,
                depth,
                now,
                expires_at,
                trail,
            )
            .await?;
        if let (Some(inherited), Some(jti)) = (inherited, trail.jti.as_deref()) {
            // A sub-agent key that is quarantined stays so in its new token.
            self.inherit_quarantine(Kind::Jti, jti, &inherited, now)
                .await?;
        }
        Ok(issued)
    }

    /// The proof must be by the subject token's key, for this request, with
    /// a current server nonce, used once.
    async fn check_proof(
        &self,
        proof: Option<&str>,
        token: &str,
        jkt: &str,
        now: OffsetDateTime,
    ) -> Result<(), ServiceError> {
        let proof = proof.ok_or_else(|| {
            ServiceError::new(
                ServiceCode::InvalidDpopProof,
                "a `DPoP` proof header is required",
            )
        })?;
        let htu = format!("{}{EXCHANGE_PATH}", self.config.issuer);
        let nonce_ok = |n: &str| {
            URL_SAFE_NO_PAD
                .decode(n)
                .is_ok_and(|bytes| challenge::check(&self.dpop_nonce_key, &bytes, now).is_ok())
        };
        let mut expect = ProofExpectations::new("POST", &htu);
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
        let first = self
            .store
            .consume_nonce(&id, verified.iat.saturating_add(IAT_WINDOW))
            .await
            .map_err(ServiceError::internal)?;
        if !first {
            return Err(ServiceError::new(
                ServiceCode::InvalidDpopProof,
                "the DPoP proof was already used",
            ));
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn issue_delegated(
        &self,
        req: &ExchangeRequest,
        parent: &CredentialRecord,
        parent_claims: &Value,
        workload: &attest_gate_core::Workload,
        child_key: &AgentKey,
        scopes: Vec<String>,
        depth: i32,
        now: OffsetDateTime,
        expires_at: OffsetDateTime,
        trail: &mut Trail,
    ) -> Result<ExchangeResponse, ServiceError> {
        let jkt = child_key.jkt();
        let sub = spiffe_id(workload, &jkt);
        let jti = secrets::random_id().map_err(ServiceError::internal)?;
        let mut chain = parent_claims
            .pointer("/session/chain")
            .cloned()
            .and_then(|c| serde_json::from_value::<Vec<String>>(c).ok())
            .unwrap_or_default();
        chain.push(sub.clone());
        // RFC 8693 §4.1: `act` names the current actor, nesting the prior ones.
        let mut act = json!({"sub": parent.subject});
        if let (Some(map), Some(prior)) = (act.as_object_mut(), parent_claims.get("act")) {
            map.insert("act".into(), prior.clone());
        }
        let mut claims = parent_claims.clone();
        if let Some(map) = claims.as_object_mut() {
            for (name, value) in [
                ("sub", json!(sub)),
                ("aud", json!(req.audience)),
                ("iat", json!(now.unix_timestamp())),
                ("nbf", json!(now.unix_timestamp())),
                ("exp", json!(expires_at.unix_timestamp())),
                ("jti", json!(jti)),
                ("scope", json!(scopes.join(" "))),
                ("cnf", json!({"jkt": jkt})),
                ("act", act),
                (
                    "intent",
                    json!({"task_id": req.purpose, "requested_scopes": scopes, "audience": req.audience}),
                ),
                (
                    "session",
                    json!({"id": parent.session_id, "parent": parent.jti, "chain": chain}),
                ),
            ] {
                map.insert(name.to_string(), value);
            }
        }
        let access_token = read(&self.tokens)
            .current
            .sign_jwt("at+jwt", &claims)
            .map_err(ServiceError::internal)?;
        self.store
            .record_credential(&CredentialRecord {
                jti: jti.clone(),
                subject: sub.clone(),
                session_id: parent.session_id.clone(),
                parent_jti: Some(parent.jti.clone()),
                workload: parent.workload.clone(),
                jkt,
                scope: scopes.join(" "),
                audience: req.audience.clone(),
                issued_at: now.unix_timestamp(),
                expires_at: expires_at.unix_timestamp(),
                test_root: parent.test_root,
                model_digest: parent.model_digest.clone(),
                measurements: parent.measurements.clone(),
                depth,
            })
            .await
            .map_err(ServiceError::internal)?;
        trail.subject = Some(sub.clone());
        trail.jti = Some(jti);
        Ok(ExchangeResponse {
            access_token,
            issued_token_type: ACCESS_TOKEN_TYPE.into(),
            token_type: "DPoP".into(),
            expires_in: (expires_at - now).whole_seconds(),
            scope: scopes.join(" "),
            spiffe_id: sub,
        })
    }
}
