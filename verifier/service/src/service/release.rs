//! Attested secret release. Administrators store secrets (sealed by the
//! vault, versioned); an attested agent asks for one with its DPoP-bound
//! token and a proof, and gets it only as a JWE to the encryption key its
//! own evidence bound. Checks, in order: the token's signature and expiry;
//! the proof (method, URL, `ath`, server nonce, single use); the per-key
//! limit; the credential's record; revocation (immediate or graceful:
//! refused); Cedar's `read_secret` with the workload's delegation rule
//! (before the secret's existence shows); the version in force; quarantine
//! (refused unless the secret allows it); the session's encryption key.
//! Every release and refusal is an audit record (name, version, session,
//! decision), never the value.

use attest_gate_core::AgentKey;
use attest_gate_protocol::jwe;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Map};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{read, AuditAction, AuditCode, Service, Trail};
use crate::api::{decode_b64, PutSecretRequest, SecretInfo, SecretRelease};
use crate::error::{ServiceCode, ServiceError};
use crate::ratelimit::Endpoint;
use crate::revocation::Standing;
use crate::store::SecretRow;
use crate::vault::Sealer;

/// Where secrets are asked for, under the issuer: `{SECRETS_PATH}{name}`.
pub(crate) const SECRETS_PATH: &str = "/v1/secrets/";
/// The largest secret value.
const MAX_SECRET_LEN: usize = 64 * 1024;
/// Longest secret name.
const MAX_NAME_LEN: usize = 128;

/// What a secret request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SecretAsk {
    /// `GET`: the version in force, so a cached copy can be checked.
    Metadata,
    /// `POST`: the value, as a JWE.
    Release,
}

impl SecretAsk {
    fn method(self) -> &'static str {
        match self {
            Self::Metadata => "GET",
            Self::Release => "POST",
        }
    }

    fn action(self) -> AuditAction {
        match self {
            Self::Metadata => AuditAction::SecretMetadata,
            Self::Release => AuditAction::SecretRelease,
        }
    }
}

/// 1 to 128 letters, digits, `.`, `_` or `-`.
fn check_name(name: &str) -> Result<(), ServiceError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ServiceError::new(
            ServiceCode::MalformedRequest,
            "a secret's name is 1 to 128 letters, digits, `.`, `_` or `-`",
        ))
    }
}

fn rfc3339(at: i64) -> String {
    OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

fn info(row: &SecretRow) -> SecretInfo {
    SecretInfo {
        name: row.name.clone(),
        version: row.version,
        created_at: rfc3339(row.created_at),
        not_after: row.not_after.map(rfc3339),
        release_in_quarantine: row.release_in_quarantine,
        retired_at: row.retired_at.map(rfc3339),
    }
}

/// Whether `row` may be released at `now`.
fn in_force(row: &SecretRow, now: OffsetDateTime) -> bool {
    row.retired_at.is_none()
        && row.not_after.is_none_or(|t| now.unix_timestamp() < t)
        && !row.sealed.is_empty()
}

fn not_found() -> ServiceError {
    ServiceError::new(
        ServiceCode::SecretNotFound,
        "no secret of this name is in force",
    )
}

/// The value of a `PUT`: text or base64, 1 byte to 64 KiB.
fn value_of(req: &PutSecretRequest) -> Result<zeroize::Zeroizing<Vec<u8>>, ServiceError> {
    let value = match (&req.value, &req.value_base64) {
        (Some(text), None) => text.as_bytes().to_vec(),
        (None, Some(b64)) => decode_b64("value_base64", b64)?,
        _ => {
            return Err(ServiceError::new(
                ServiceCode::MalformedRequest,
                "give exactly one of `value` and `value_base64`",
            ))
        }
    };
    let value = zeroize::Zeroizing::new(value);
    if value.is_empty() || value.len() > MAX_SECRET_LEN {
        return Err(ServiceError::new(
            ServiceCode::SecretTooLarge,
            "a secret is 1 byte to 64 KiB",
        ));
    }
    Ok(value)
}

impl Service {
    /// `PUT /v1/admin/secrets/{name}`: a new version, in force at once.
    pub async fn put_secret(
        &self,
        name: &str,
        req: &PutSecretRequest,
        now: OffsetDateTime,
    ) -> Result<SecretInfo, ServiceError> {
        check_name(name)?;
        let value = value_of(req)?;
        let not_after = req
            .not_after
            .as_deref()
            .map(|t| {
                OffsetDateTime::parse(t, &Rfc3339)
                    .ok()
                    .filter(|t| *t > now)
                    .map(OffsetDateTime::unix_timestamp)
                    .ok_or_else(|| {
                        ServiceError::new(
                            ServiceCode::MalformedRequest,
                            "`not_after` must be an RFC 3339 instant in the future",
                        )
                    })
            })
            .transpose()?;
        // Versions are numbered in the database; a concurrent writer that
        // takes the same number makes this one read again.
        for _ in 0..4 {
            let latest = self
                .store
                .latest_secret(name)
                .await
                .map_err(ServiceError::internal)?;
            let version = latest.map_or(1, |r| r.version.saturating_add(1));
            let sealed = self
                .vault
                .seal(name, version, &value)
                .map_err(ServiceError::internal)?;
            let row = SecretRow {
                name: name.to_string(),
                version,
                sealed: STANDARD.encode(sealed),
                kek_id: self.vault.id().to_string(),
                release_in_quarantine: req.release_in_quarantine,
                not_after,
                created_at: now.unix_timestamp(),
                retired_at: None,
            };
            if self
                .store
                .insert_secret(&row)
                .await
                .map_err(ServiceError::internal)?
            {
                let detail = format!("secret {name} v{version}");
                self.audit(
                    now,
                    AuditAction::AdminSecretPut,
                    AuditCode::Ok,
                    Trail::admin(),
                    &detail,
                )
                .await?;
                return Ok(info(&row));
            }
        }
        Err(ServiceError::internal(
            "secret versions kept colliding with concurrent writers",
        ))
    }

    /// `GET /v1/admin/secrets`: names and versions, never values.
    pub async fn list_secrets(&self) -> Result<Vec<SecretInfo>, ServiceError> {
        Ok(self
            .store
            .secret_versions()
            .await
            .map_err(ServiceError::internal)?
            .iter()
            .map(info)
            .collect())
    }

    /// `DELETE /v1/admin/secrets/{name}`: the current version is retired
    /// (and its ciphertext wiped); nothing is released until a new one.
    pub async fn retire_secret(
        &self,
        name: &str,
        now: OffsetDateTime,
    ) -> Result<serde_json::Value, ServiceError> {
        check_name(name)?;
        let retired = self
            .store
            .retire_secret(name, now.unix_timestamp())
            .await
            .map_err(ServiceError::internal)?;
        let Some(version) = retired else {
            return Err(not_found());
        };
        let detail = format!("secret {name} v{version}");
        self.audit(
            now,
            AuditAction::AdminSecretRetire,
            AuditCode::Ok,
            Trail::admin(),
            &detail,
        )
        .await?;
        Ok(json!({"name": name, "retired_version": version}))
    }

    /// `GET /v1/secrets/{name}`: the version in force, for an agent the
    /// policy lets read it (the same checks as a release).
    pub async fn secret_metadata(
        &self,
        name: &str,
        token: Option<&str>,
        proof: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<SecretInfo, ServiceError> {
        let (row, _) = self
            .audited_secret(SecretAsk::Metadata, name, token, proof, now)
            .await?;
        let mut shown = info(&row);
        shown.retired_at = None;
        Ok(shown)
    }

    /// `POST /v1/secrets/{name}`: the value, as a JWE to the session's
    /// encryption key.
    pub async fn release_secret(
        &self,
        name: &str,
        token: Option<&str>,
        proof: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<SecretRelease, ServiceError> {
        let (_, release) = self
            .audited_secret(SecretAsk::Release, name, token, proof, now)
            .await?;
        release.ok_or_else(|| ServiceError::internal("a release made no JWE"))
    }

    async fn audited_secret(
        &self,
        ask: SecretAsk,
        name: &str,
        token: Option<&str>,
        proof: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<(SecretRow, Option<SecretRelease>), ServiceError> {
        let mut trail = Trail::default();
        let mut detail = format!(
            "secret {}",
            name.chars().take(MAX_NAME_LEN).collect::<String>()
        );
        let result = self
            .decide_secret(ask, name, token, proof, now, &mut trail, &mut detail)
            .await;
        let code = AuditCode::of(&result);
        if let Err(e) = &result {
            detail = format!("{detail}: {}", e.message());
        }
        self.metrics.secret(ServiceError::refusal(&result));
        if !result.as_ref().is_err_and(super::is_rate_limited) {
            self.audit(now, ask.action(), code, trail, &detail).await?;
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn decide_secret(
        &self,
        ask: SecretAsk,
        name: &str,
        token: Option<&str>,
        proof: Option<&str>,
        now: OffsetDateTime,
        trail: &mut Trail,
        detail: &mut String,
    ) -> Result<(SecretRow, Option<SecretRelease>), ServiceError> {
        check_name(name)?;
        const WHAT: &str = "a secret";
        let path = format!("{SECRETS_PATH}{name}");
        let presented = self.presented(WHAT, token, proof, (ask.method(), &path), now, trail)?;
        let (proof_id, until) = presented.proof;
        self.consume_proof(&proof_id, until).await?;
        let verified = presented.token;
        let claims = verified.claims();
        self.limit_key(Endpoint::Secrets, &claims.cnf.jkt)?;
        let credential = self.live_credential(WHAT, &verified, now, trail).await?;
        let (standing, blocked) = self.standing_of(&credential).await?;
        if let Some(reason) = blocked {
            return Err(ServiceError::new(
                ServiceCode::Revoked,
                format!("the token is revoked: {reason}"),
            ));
        }

        // The policy decides before the secret's existence shows, so an
        // agent that may not read a name cannot learn whether it exists.
        let row = self
            .store
            .latest_secret(name)
            .await
            .map_err(ServiceError::internal)?;
        let version = row.as_ref().map_or(0, |r| r.version);
        let registers: Vec<String> = credential
            .measurements
            .split_whitespace()
            .map(str::to_string)
            .collect();
        read(&self.appraiser).decide_secret(&verified, &registers, (name, version), now)?;
        let row = row.filter(|r| in_force(r, now)).ok_or_else(not_found)?;
        *detail = format!("secret {name} v{}", row.version);

        if let Standing::Quarantined { reason, .. } = &standing {
            if !row.release_in_quarantine {
                return Err(ServiceError::new(
                    ServiceCode::SecretQuarantined,
                    format!("the session is quarantined ({reason}) and this secret is not released in quarantine"),
                ));
            }
            tracing::warn!(secret = %name, %reason, "a secret is released to a quarantined session");
        }

        let recipient = self
            .session_encryption_key(&credential.session_id, claims)
            .await?;
        if ask == SecretAsk::Metadata {
            return Ok((row, None));
        }
        let sealed = STANDARD
            .decode(&row.sealed)
            .map_err(ServiceError::internal)?;
        let value = self
            .vault
            .open(name, row.version, &sealed)
            .map_err(ServiceError::internal)?;
        let mut header = Map::new();
        header.insert("secret".into(), json!(name));
        header.insert("version".into(), json!(row.version));
        let jwe = jwe::encrypt(&recipient, &header, &value).map_err(ServiceError::internal)?;
        let release = SecretRelease {
            name: name.to_string(),
            version: row.version,
            jwe,
        };
        Ok((row, Some(release)))
    }

    /// The key the session's evidence bound, which must be the one the
    /// token names (`cnf.enc_jkt`).
    async fn session_encryption_key(
        &self,
        session_id: &str,
        claims: &attest_gate_protocol::AccessClaims,
    ) -> Result<AgentKey, ServiceError> {
        let none = || {
            ServiceError::new(
                ServiceCode::NoEncryptionKey,
                "the session's evidence bound no encryption key: attest with one to receive secrets",
            )
        };
        let named = claims.cnf.enc_jkt.as_deref().ok_or_else(none)?;
        let jwk = self
            .store
            .session_key(session_id)
            .await
            .map_err(ServiceError::internal)?
            .ok_or_else(none)?;
        let key = serde_json::from_str(&jwk)
            .ok()
            .and_then(|v| AgentKey::from_jwk(&v).ok())
            .ok_or_else(|| ServiceError::internal("a stored session key does not parse"))?;
        if key.jkt() != named {
            return Err(ServiceError::internal(
                "the session's stored encryption key is not the one its token names",
            ));
        }
        Ok(key)
    }
}
