//! A credential's life after issuance: revocation (three modes, cascading
//! to delegated credentials), lifting a quarantine, introspection for
//! registered relying parties, the signed revocation list, reappraisal of
//! live sessions, and reading the audit log.

use std::sync::Arc;

use attest_gate_core::{Collateral, ModelDigest, TeeKind};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::{read, AuditAction, AuditCode, Service, Trail, MAX_FIELD_LEN};
use crate::api::{IntentRequest, RevokeRequest, RevokeScope};
use crate::credentials::JwtSvidClaims;
use crate::error::{ServiceCode, ServiceError};
use crate::revocation::{self, Kind, Mode, Revocation, RevocationListClaims, Standing, Subject};
use crate::secrets::{self, SecretHash};
use crate::store::{AuditQuery, AuditRecord, CredentialRecord, SessionEvidence};

/// Most credentials one revocation cascades to.
const MAX_CASCADE: usize = 10_000;
/// Most entries one page of the revocation list carries.
const MAX_LIST_PAGE: i64 = 100_000;
/// How far the revocation list's cursor trails the clock.
const CURSOR_OVERLAP_SECONDS: i64 = 120;
/// Longest a revocation reason may be.
const MAX_REASON: usize = 512;
/// Deepest delegation chain walked (the workload files cap depth far lower).
pub(super) const MAX_CHAIN: usize = attest_gate_core::MAX_DELEGATION_DEPTH as usize;

fn internal(e: impl std::fmt::Display + 'static) -> ServiceError {
    ServiceError::internal(e)
}

fn bad(message: impl Into<String>) -> ServiceError {
    ServiceError::new(ServiceCode::MalformedRequest, message)
}

/// A quarantine a new credential inherits.
#[derive(Debug, Clone)]
pub(super) struct Inherited {
    /// Why.
    pub(super) reason: String,
    /// The quarantine it comes from.
    pub(super) origin: String,
}

fn cascade_too_large() -> ServiceError {
    ServiceError::new(
        ServiceCode::CascadeTooLarge,
        format!("more than {MAX_CASCADE} credentials in one revocation; revoke the session or workload instead"),
    )
}

/// The target as stored: measurement values and model digests lower-case
/// hex of a length some TEE produces; keys RFC 7638 thumbprints. A target
/// that nothing can ever match is refused rather than silently recorded.
fn canonical_target(kind: Kind, target: &str) -> Result<String, ServiceError> {
    if target.is_empty() || target.len() > MAX_FIELD_LEN || target.chars().any(char::is_control) {
        return Err(bad(format!(
            "`target` must be 1 to {MAX_FIELD_LEN} characters"
        )));
    }
    let hex_of = |len_ok: &dyn Fn(usize) -> bool| {
        hex::decode(target)
            .ok()
            .filter(|bytes| len_ok(bytes.len()))
            .map(|_| target.to_ascii_lowercase())
    };
    match kind {
        Kind::Measurement => hex_of(&attest_gate_core::is_register_length)
            .filter(|hex| hex.bytes().any(|b| b != b'0'))
            .ok_or_else(|| {
                bad("a measurement `target` is the hex of a 16-, 32- or 48-byte register value, not all zero (unused registers are zero in every TEE)")
            }),
        Kind::Model => {
            hex_of(&|len| len == 48).ok_or_else(|| bad("a model `target` is a SHA-384 digest, hex"))
        }
        Kind::Key => {
            let thumbprint = target.len() == 43
                && URL_SAFE_NO_PAD
                    .decode(target)
                    .is_ok_and(|bytes| bytes.len() == 32);
            if thumbprint {
                Ok(target.to_string())
            } else {
                Err(bad(
                    "a key `target` is an RFC 7638 SHA-256 thumbprint, base64url",
                ))
            }
        }
        Kind::Jti | Kind::Session | Kind::Workload | Kind::Unknown => Ok(target.to_string()),
    }
}

/// What introspection was shown: the audit detail names a JWT-SVID.
#[derive(Debug, Clone, Copy)]
enum Introspected {
    AccessToken,
    JwtSvid,
}

impl Service {
    /// `POST /v1/admin/revoke`: records the revocation and, for a `jti`, one
    /// row per credential delegated from it (the cascade, recorded as such).
    pub async fn revoke(
        &self,
        req: &RevokeRequest,
        now: OffsetDateTime,
    ) -> Result<Value, ServiceError> {
        let kind = req.kind.parse::<Kind>().map_err(|e| bad(e.to_string()))?;
        let mode = req.mode.parse::<Mode>().map_err(|e| bad(e.to_string()))?;
        let whole_key = match req.scope {
            RevokeScope::Credential => false,
            RevokeScope::Key if matches!(kind, Kind::Jti | Kind::Session) => true,
            RevokeScope::Key => return Err(bad("`scope: key` applies to a jti or session only")),
        };
        let target = canonical_target(kind, req.target.trim())?;
        let target = target.as_str();
        if req.reason.len() > MAX_REASON || req.reason.chars().any(char::is_control) {
            return Err(bad(format!(
                "`reason` must be at most {MAX_REASON} characters"
            )));
        }
        let keys = if whole_key {
            self.keys_of(kind, target).await?
        } else {
            Vec::new()
        };
        let at = now.unix_timestamp();
        let mut rows = self
            .revocation_rows(kind, target, mode, &req.reason, at)
            .await?;
        for key in &keys {
            rows.extend(
                self.revocation_rows(Kind::Key, key, mode, &req.reason, at)
                    .await?,
            );
        }
        if rows.len() > MAX_CASCADE {
            return Err(cascade_too_large());
        }
        self.store_revocations(&rows, mode).await?;
        let id = rows.first().map(|r| r.id.clone()).unwrap_or_default();
        let cascaded = rows.len().saturating_sub(1);
        let mut trail = Trail::admin();
        if kind == Kind::Jti {
            trail.jti = Some(target.to_string());
        }
        if kind == Kind::Session {
            trail.session_id = Some(target.to_string());
        }
        let detail = format!(
            "{} {} {target} ({cascaded} cascaded): {}",
            mode.as_str(),
            kind.as_str(),
            req.reason
        );
        self.audit(now, AuditAction::AdminRevoke, AuditCode::Ok, trail, &detail)
            .await?;
        Ok(json!({"id": id, "kind": kind, "mode": mode, "cascaded": cascaded}))
    }

    /// Builds (with its cascade), stores and counts one revocation.
    async fn record_revocation(
        &self,
        kind: Kind,
        target: &str,
        mode: Mode,
        reason: &str,
        at: i64,
    ) -> Result<Vec<Revocation>, ServiceError> {
        let rows = self.revocation_rows(kind, target, mode, reason, at).await?;
        self.store_revocations(&rows, mode).await?;
        Ok(rows)
    }

    async fn store_revocations(&self, rows: &[Revocation], mode: Mode) -> Result<(), ServiceError> {
        self.store
            .insert_revocations(rows)
            .await
            .map_err(internal)?;
        self.revocations_changed(mode, rows.len() as u64);
        Ok(())
    }

    /// The agent keys behind a credential or a session.
    async fn keys_of(&self, kind: Kind, target: &str) -> Result<Vec<String>, ServiceError> {
        let keys = match kind {
            Kind::Jti => self
                .store
                .credential(target)
                .await
                .map_err(internal)?
                .map(|c| vec![c.jkt])
                .unwrap_or_default(),
            _ => self.store.session_keys(target).await.map_err(internal)?,
        };
        if keys.is_empty() {
            return Err(ServiceError::new(
                ServiceCode::NotFound,
                "no credential has this jti or session, so no key to revoke",
            ));
        }
        Ok(keys)
    }

    async fn revocation_rows(
        &self,
        kind: Kind,
        target: &str,
        mode: Mode,
        reason: &str,
        at: i64,
    ) -> Result<Vec<Revocation>, ServiceError> {
        let row = |kind, target: &str, cascade_from: Option<String>| -> Result<_, ServiceError> {
            Ok(Revocation {
                id: secrets::random_id().map_err(internal)?,
                kind,
                target: target.to_string(),
                mode,
                reason: reason.to_string(),
                cascade_from,
                revoked_at: at,
                updated_at: at,
                lifted: false,
            })
        };
        let mut rows = vec![row(kind, target, None)?];
        // A key or measurement revocation also names each credential it
        // covers by `jti` (with its delegation tree), so relying parties
        // matching the signed list by `jti` see it too.
        let mut queue = match kind {
            Kind::Jti => vec![target.to_string()],
            // Only credentials still alive: expired ones need no row, and
            // counting them would let a long-lived key outgrow MAX_CASCADE.
            Kind::Key => self
                .store
                .live_credentials_for_key(target, at)
                .await
                .map_err(internal)?,
            Kind::Measurement => self
                .store
                .credentials_with_register(target, at)
                .await
                .map_err(internal)?,
            // Every live credential of the session, by `jti`: a JWT-SVID
            // carries no session claim, so a relying party matching the
            // list finds it only by its own `jti`.
            Kind::Session => self
                .store
                .live_credentials_of_session(target, at)
                .await
                .map_err(internal)?,
            Kind::Workload | Kind::Model | Kind::Unknown => Vec::new(),
        };
        if kind != Kind::Jti {
            for jti in &queue {
                rows.push(row(Kind::Jti, jti, Some(target.to_string()))?);
            }
        }
        let mut seen: std::collections::HashSet<String> = queue.iter().cloned().collect();
        while let Some(parent) = queue.pop() {
            for child in self.store.children(&parent).await.map_err(internal)? {
                if rows.len() >= MAX_CASCADE {
                    return Err(cascade_too_large());
                }
                if seen.insert(child.clone()) {
                    rows.push(row(Kind::Jti, &child, Some(target.to_string()))?);
                    queue.push(child);
                }
            }
        }
        if rows.len() > MAX_CASCADE {
            return Err(cascade_too_large());
        }
        Ok(rows)
    }

    /// Quarantines a new session (attest) or credential (exchange) because
    /// its agent key (or workload, model, measurement) is quarantined:
    /// renewing or being delegated to must not shed the mark. The row names
    /// its origin, so lifting the origin lifts it too.
    /// `POST /v1/admin/lift`: ends a quarantine.
    pub async fn lift(&self, id: &str, now: OffsetDateTime) -> Result<Value, ServiceError> {
        let lifted = self
            .store
            .lift_quarantine(id, now.unix_timestamp())
            .await
            .map_err(internal)?;
        self.revocations_changed(Mode::Quarantine, 0);
        let code = if lifted {
            AuditCode::Ok
        } else {
            ServiceCode::NotFound.into()
        };
        self.audit(now, AuditAction::AdminLift, code, Trail::admin(), id)
            .await?;
        if lifted {
            Ok(json!({"lifted": true, "id": id}))
        } else {
            Err(ServiceError::new(
                ServiceCode::NotFound,
                "no quarantine in force has this ID (immediate and graceful revocations are final)",
            ))
        }
    }

    /// The `jti`s of `credential` and its ancestors, root last.
    pub(super) async fn lineage(
        &self,
        credential: &CredentialRecord,
    ) -> Result<Vec<String>, ServiceError> {
        let mut jtis = vec![credential.jti.clone()];
        let mut parent = credential.parent_jti.clone();
        while let Some(jti) = parent {
            if jtis.len() > MAX_CHAIN {
                break;
            }
            parent = self
                .store
                .credential(&jti)
                .await
                .map_err(internal)?
                .and_then(|c| c.parent_jti);
            jtis.push(jti);
        }
        Ok(jtis)
    }

    /// How an issued credential stands against the revocations in force,
    /// and whether anything may still be issued on it (a quarantine outranks
    /// graceful for its standing, never for issuance).
    pub(super) async fn standing_of(
        &self,
        credential: &CredentialRecord,
    ) -> Result<(Standing, Option<String>), ServiceError> {
        let revocations = self.revocations_in_force().await?;
        if revocations.is_empty() {
            return Ok((Standing::Clear, None));
        }
        let jtis = self.lineage(credential).await?;
        let measurements: Vec<String> = credential
            .measurements
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let subject = Subject {
            jtis: &jtis,
            sessions: std::slice::from_ref(&credential.session_id),
            workload: &credential.workload,
            model: &credential.model_digest,
            measurements: &measurements,
            keys: std::slice::from_ref(&credential.jkt),
            issued_at: credential.issued_at,
        };
        Ok((
            revocations.standing(&subject),
            revocations.issuance_blocked(&subject),
        ))
    }

    /// `POST /v1/admin/clients`: a relying party that may introspect; its
    /// secret is shown once and only its hash is kept.
    pub async fn add_client(
        &self,
        client_id: &str,
        now: OffsetDateTime,
    ) -> Result<Value, ServiceError> {
        let ok = !client_id.is_empty()
            && client_id.len() <= 64
            && client_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !ok {
            return Err(bad(
                "`client_id` must be 1 to 64 letters, digits, `.`, `_` or `-`",
            ));
        }
        let secret = URL_SAFE_NO_PAD.encode(secrets::random_bytes::<32>().map_err(internal)?);
        let hash = SecretHash::of(&secret).to_hex();
        // Only a conflict is `client_exists`; a failing database is ours.
        let inserted = self
            .store
            .add_client(client_id, &hash, now.unix_timestamp())
            .await
            .map_err(internal)?;
        if !inserted {
            return Err(ServiceError::new(
                ServiceCode::ClientExists,
                "a client with this ID exists",
            ));
        }
        self.audit(
            now,
            AuditAction::AdminAddClient,
            AuditCode::Ok,
            Trail::admin(),
            client_id,
        )
        .await?;
        Ok(json!({"client_id": client_id, "client_secret": secret}))
    }

    /// Whether `client_id` / `secret` are a registered relying party's
    /// (constant-time comparison of the secret's hash).
    pub async fn client_authenticates(
        &self,
        client_id: &str,
        secret: &str,
    ) -> Result<bool, ServiceError> {
        let stored = self
            .store
            .client_secret_hash(client_id)
            .await
            .map_err(internal)?;
        // An unknown client costs the same hash and comparison as a known
        // one, so timing does not tell which client IDs exist.
        let (known, hash) = match stored.and_then(|h| SecretHash::from_hex(&h)) {
            Some(h) => (true, h),
            None => (false, SecretHash::of("attest-gate/no-such-client")),
        };
        Ok(hash.matches(secret) && known)
    }

    /// `POST /v1/introspect` (RFC 7662) for an authenticated relying party.
    /// Inactive: not ours, bad signature, expired, unknown, or revoked
    /// immediately. Graceful and quarantined credentials are active and say
    /// so in `revocation`; every look at a quarantined one is audited.
    pub async fn introspect(
        &self,
        client: &str,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<Value, ServiceError> {
        let inactive = json!({"active": false});
        let trail = Trail {
            actor: Some(format!("rp:{client}")),
            ..Trail::default()
        };
        let Some(verified) = read(&self.tokens).verify_access(token) else {
            let svid = read(&self.tokens).verify_jwt_svid(token);
            if let Some(svid) = svid {
                return self.introspect_jwt_svid(&svid, trail, now).await;
            }
            self.audit(
                now,
                AuditAction::Introspect,
                ServiceCode::InvalidToken,
                trail,
                "",
            )
            .await?;
            return Ok(inactive);
        };
        let claims = verified.claims();
        let looked = self
            .introspected(
                &claims.jti,
                claims.exp,
                Introspected::AccessToken,
                trail,
                now,
            )
            .await?;
        let Some((credential, standing)) = looked else {
            return Ok(inactive);
        };
        let mut answer = json!({
            "active": true,
            "token_type": "DPoP",
            "scope": credential.scope,
            "client_id": credential.workload,
            "sub": credential.subject,
            "aud": credential.audience,
            "iat": credential.issued_at,
            "exp": credential.expires_at,
            "jti": credential.jti,
            "cnf": {"jkt": credential.jkt},
            "session": claims.session,
            "revocation": standing.label(),
        });
        if let (Some(map), Some(act)) = (answer.as_object_mut(), &claims.act) {
            map.insert("act".into(), json!(act));
        }
        Ok(answer)
    }

    /// Introspection of a JWT-SVID this service signed: inactive when
    /// expired, unknown or revoked (its own `jti`, its access token, or
    /// anything above them), else active with its revocation label.
    async fn introspect_jwt_svid(
        &self,
        svid: &JwtSvidClaims,
        trail: Trail,
        now: OffsetDateTime,
    ) -> Result<Value, ServiceError> {
        let looked = self
            .introspected(&svid.jti, svid.exp, Introspected::JwtSvid, trail, now)
            .await?;
        let Some((credential, standing)) = looked else {
            return Ok(json!({"active": false}));
        };
        Ok(json!({
            "active": true,
            "token_type": "jwt-svid",
            "client_id": credential.workload,
            "sub": credential.subject,
            "aud": svid.aud,
            "iss": svid.iss,
            "iat": credential.issued_at,
            "exp": credential.expires_at,
            "jti": credential.jti,
            "session": {"id": credential.session_id, "parent": credential.parent_jti},
            "revocation": standing.label(),
        }))
    }

    /// Introspection's look at a credential this service signed, by its
    /// `jti` and the expiry its signature carries: audited, and `None`
    /// (inactive) when it is expired, unknown or revoked immediately; else
    /// the credential and its standing (graceful and quarantined ones are
    /// active, and every look at a quarantined one is audited as such).
    async fn introspected(
        &self,
        jti: &str,
        exp: i64,
        kind: Introspected,
        mut trail: Trail,
        now: OffsetDateTime,
    ) -> Result<Option<(CredentialRecord, Standing)>, ServiceError> {
        // These texts are hashed into the audit chain: kept as they were.
        let (named, unknown) = match kind {
            Introspected::AccessToken => ("", "expired or unknown"),
            Introspected::JwtSvid => ("JWT-SVID ", "expired or unknown JWT-SVID"),
        };
        trail.jti = Some(jti.to_owned());
        let credential = self.store.credential(jti).await.map_err(internal)?;
        let Some(credential) = credential.filter(|_| exp > now.unix_timestamp()) else {
            let (action, code) = (AuditAction::Introspect, AuditCode::Inactive);
            self.audit(now, action, code, trail, unknown).await?;
            return Ok(None);
        };
        trail.subject = Some(credential.subject.clone());
        trail.session_id = Some(credential.session_id.clone());
        trail.workload = Some(credential.workload.clone());
        let (standing, _) = self.standing_of(&credential).await?;
        let (code, detail) = match &standing {
            Standing::Clear => (AuditCode::Ok, String::new()),
            Standing::Graceful { reason } => (AuditCode::Ok, format!("graceful: {reason}")),
            Standing::Quarantined { reason, .. } => (AuditCode::QuarantinedUse, reason.clone()),
            Standing::Revoked { reason } => (ServiceCode::Revoked.into(), reason.clone()),
        };
        let detail = format!("{named}{detail}");
        self.audit(now, AuditAction::Introspect, code, trail, &detail)
            .await?;
        let revoked = matches!(standing, Standing::Revoked { .. });
        Ok((!revoked).then_some((credential, standing)))
    }

    /// `GET /v1/revocations?since=T`: a JWS (`typ: revocation-list+jwt`)
    /// listing every revocation created or changed at or after `since`. Ask
    /// again with `since = cursor`; entries may repeat (same `id`, replace).
    pub async fn revocation_list(
        &self,
        since: i64,
        now: OffsetDateTime,
    ) -> Result<String, ServiceError> {
        let entries = self
            .store
            .revocations_since(since, MAX_LIST_PAGE)
            .await
            .map_err(internal)?;
        let full = entries.len() as i64 >= MAX_LIST_PAGE;
        // The cursor trails the clock by a margin longer than a revocation
        // takes to commit (and replicas' clock skew), so an entry stamped
        // just before this read but committed just after it is not skipped;
        // relying parties see some entries twice, which replacing by `id`
        // absorbs.
        let cursor = match entries.last() {
            Some(last) if full => last.updated_at,
            _ => since.max(now.unix_timestamp() - CURSOR_OVERLAP_SECONDS),
        };
        read(&self.tokens)
            .current
            .sign_revocation_list(&RevocationListClaims {
                iss: &self.config.issuer,
                iat: now.unix_timestamp(),
                since,
                cursor,
                more: full,
                entries: &entries,
            })
            .map_err(internal)
    }

    /// Re-runs verification (with the collateral sources as they are now)
    /// and reference values over the evidence of every live session; those
    /// that no longer pass are revoked in `mode`. `verifier reappraise` and
    /// `POST /v1/admin/reappraise`.
    pub async fn reappraise(
        self: &Arc<Self>,
        mode: Mode,
        now: OffsetDateTime,
    ) -> Result<Value, ServiceError> {
        let sessions = self
            .store
            .live_session_evidence(now.unix_timestamp())
            .await
            .map_err(internal)?;
        let revocations = self.revocations_in_force().await?;
        let mut revoked = Vec::new();
        let mut errors = Vec::new();
        for session in &sessions {
            let already = revocations.rows().iter().any(|r| {
                r.kind == Kind::Session
                    && r.target == session.session_id
                    && r.mode == Mode::Immediate
            });
            if already {
                continue;
            }
            let judged = self.judge_again(session, now).await;
            if let Err(e) = &judged {
                if !e.code().is_denial() || e.code().is_collateral_state() {
                    // The verifier's own trouble (collateral unavailable, a
                    // bad stored row) says nothing about the session.
                    tracing::warn!(session = %session.session_id, code = %e.code(), "reappraisal could not judge a session");
                    errors
                        .push(json!({"session_id": session.session_id, "code": e.code().as_str()}));
                    continue;
                }
            }
            if let Err(e) = judged {
                let reason = format!("reappraisal: {e}");
                self.record_revocation(
                    Kind::Session,
                    &session.session_id,
                    mode,
                    &reason,
                    now.unix_timestamp(),
                )
                .await?;
                let trail = Trail {
                    actor: Some("reappraisal".into()),
                    tee: Some(session.tee.clone()),
                    session_id: Some(session.session_id.clone()),
                    ..Trail::default()
                };
                self.audit(now, AuditAction::ReappraiseRevoke, e.code(), trail, &reason)
                    .await?;
                revoked.push(
                    json!({"session_id": session.session_id, "code": e.code().as_str(), "message": e.message()}),
                );
            }
        }
        let detail = format!(
            "{} sessions checked, {} revoked ({})",
            sessions.len(),
            revoked.len(),
            mode.as_str()
        );
        self.audit(
            now,
            AuditAction::Reappraise,
            AuditCode::Ok,
            Trail::default(),
            &detail,
        )
        .await?;
        Ok(
            json!({"checked": sessions.len(), "revoked": revoked, "not_judged": errors, "mode": mode}),
        )
    }

    /// Verification, reference values and policy again, over a session's
    /// stored evidence and intent: the decision attestation made. A row that
    /// cannot be read is the verifier's trouble (not judged), never a denial.
    async fn judge_again(
        self: &Arc<Self>,
        session: &SessionEvidence,
        now: OffsetDateTime,
    ) -> Result<(), ServiceError> {
        let unreadable = |what: &str| {
            ServiceError::new(
                ServiceCode::InternalError,
                format!("the session's stored {what} cannot be read"),
            )
        };
        let tee: TeeKind = session.tee.parse().map_err(|_| unreadable("TEE"))?;
        let evidence = STANDARD
            .decode(&session.evidence)
            .map_err(|_| unreadable("evidence"))?;
        let sent: serde_json::Map<String, Value> =
            serde_json::from_str(&session.collateral).map_err(|_| unreadable("collateral"))?;
        let mut items = Vec::with_capacity(sent.len());
        for (name, b64) in sent {
            let bytes = b64
                .as_str()
                .and_then(|b64| STANDARD.decode(b64).ok())
                .ok_or_else(|| unreadable("collateral"))?;
            items.push((name, bytes));
        }
        let model = ModelDigest::from_hex(&session.model_digest)
            .ok_or_else(|| unreadable("model digest"))?;
        if session.principal.is_empty() {
            return Err(unreadable("intent (recorded before intents were kept)"));
        }
        let (claims, collateral) = self
            .verify_with_collateral(tee, &evidence, Collateral::from_items(items), now)
            .await?;
        let intent = IntentRequest {
            task_id: session.task_id.clone(),
            scopes: session
                .scopes
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            audience: session.audience.clone(),
        };
        let decided = read(&self.appraiser)
            .decide(
                &claims,
                collateral,
                &model,
                &session.principal,
                &intent,
                now,
            )?
            .scopes;
        // Narrowing counts: a scope the session holds that the decision no
        // longer grants ends the session as a full denial would.
        let held = self
            .store
            .session_scopes(&session.session_id)
            .await
            .map_err(internal)?;
        if let Some(lost) = held.iter().find(|s| !decided.contains(s)) {
            return Err(ServiceError::new(
                ServiceCode::ScopeNotAllowed,
                format!("the session holds `{lost}`, which is no longer granted"),
            ));
        }
        Ok(())
    }

    /// `GET /v1/admin/audit`.
    pub async fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, ServiceError> {
        self.store.audit_records(query).await.map_err(internal)
    }

    /// `GET /metrics`.
    pub async fn metrics_text(&self, now: OffsetDateTime) -> String {
        let active = self
            .store
            .live_credentials(now.unix_timestamp())
            .await
            .unwrap_or(-1);
        self.metrics.render(active)
    }
}

/// The quarantine a renewed credential (session `target`, or a delegated
/// `jti`) inherits from the one its agent key stands under.
pub(super) fn inherited_quarantine(
    kind: Kind,
    target: &str,
    inherited: &Inherited,
    now: OffsetDateTime,
) -> Result<Revocation, ServiceError> {
    Ok(Revocation {
        id: secrets::random_id().map_err(internal)?,
        kind,
        target: target.to_string(),
        mode: Mode::Quarantine,
        reason: format!("inherited: {}", inherited.reason),
        cascade_from: Some(revocation::inherited_from(&inherited.origin)),
        revoked_at: now.unix_timestamp(),
        updated_at: now.unix_timestamp(),
        lifted: false,
    })
}
