//! The HTTP API's request and response bodies, and its error shape:
//! `{"error": {"code": "...", "message": "..."}}` with 400 for a malformed
//! request, 401 for missing admin credentials, 403 for a denial, 413 for an
//! oversized body, 500/503 for the service's own failures. Messages never
//! carry secrets (keys, tokens, nonces' MACs).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod decode;

pub use decode::check_request_body;
pub(crate) use decode::{decode_b64, parse, Parsed};

pub(crate) use crate::error::ServiceError;

/// `POST /v1/attest`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestRequest {
    /// `nitro`, `tdx` or `snp`.
    pub tee: String,
    /// The evidence, base64 (standard or URL-safe alphabet).
    pub evidence: String,
    /// Collateral files by name, each base64 (TDX / SNP; optional).
    #[serde(default)]
    pub collateral: BTreeMap<String, String>,
    /// The nonce from `POST /v1/challenge`, base64url.
    pub nonce: String,
    /// The agent's ephemeral public key, a JWK.
    pub public_key: serde_json::Value,
    /// A second ephemeral key, for decryption only (EC P-256 JWK): with it
    /// the evidence must carry binding v2, and secrets can be released to
    /// it. Without it binding v1, and no secrets.
    #[serde(default)]
    pub encryption_key: Option<serde_json::Value>,
    /// SHA-384 of the model the agent serves, hex.
    pub model_digest: String,
    /// On whose behalf the agent acts: `user:<id>`, `service:<id>` or `system`.
    pub principal: String,
    /// What it intends to do.
    pub intent: IntentRequest,
    /// A PKCS#10 CSR for the same key (PEM or base64 DER): asks for an X.509-SVID.
    #[serde(default)]
    pub csr: Option<String>,
    /// A shorter lifetime than the workload's maximum, seconds.
    #[serde(default)]
    pub ttl_seconds: Option<u32>,
}

/// The declared intent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntentRequest {
    /// The task identifier.
    pub task_id: String,
    /// Scopes asked for.
    pub scopes: Vec<String>,
    /// The relying party the token is for.
    pub audience: String,
}

/// `POST /v1/challenge` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChallengeResponse {
    /// The nonce, base64url.
    pub nonce: String,
    /// When it stops being accepted (RFC 3339).
    pub expires_at: String,
}

/// `POST /v1/attest` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttestResponse {
    /// The JWT access token.
    pub access_token: String,
    /// `DPoP`: present it with a proof signed by the bound key (RFC 9449).
    pub token_type: String,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// Granted scopes, space-separated.
    pub scope: String,
    /// The SPIFFE ID.
    pub spiffe_id: String,
    /// The session ID.
    pub session_id: String,
    /// The X.509-SVID chain (PEM), when a CSR was sent.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub svid: Option<String>,
    /// True when the evidence chained to a test root (`--dev`).
    pub test_root: bool,
}

/// `POST /v1/admin/revoke`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// `jti`, `session`, `workload`, `measurement`, `model` or `key`.
    pub kind: String,
    /// What it names.
    pub target: String,
    /// `immediate`, `graceful` or `quarantine`.
    pub mode: String,
    /// Why (kept in the audit log and the revocation list).
    pub reason: String,
    /// `credential` (default) or `key`: for a `jti` or `session`, also
    /// revoke every credential of the agent key behind it.
    #[serde(default)]
    pub scope: RevokeScope,
}

/// How far a `jti` or `session` revocation reaches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RevokeScope {
    /// The named credential or session (and what was delegated from it).
    #[default]
    Credential,
    /// Also every credential of the agent key behind it.
    Key,
}

/// `POST /v1/admin/lift`: lifts a quarantine.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LiftRequest {
    /// The quarantine's ID (from `revoke`'s answer or the revocation list).
    pub id: String,
}

/// `POST /v1/admin/clients`: registers a relying party for introspection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClientRequest {
    /// Its name, used as the Basic-auth user name.
    pub client_id: String,
}

/// `POST /v1/admin/reappraise`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReappraiseRequest {
    /// How sessions that no longer pass are revoked.
    pub mode: String,
}

/// `POST /v1/introspect` (RFC 7662; form-encoded or JSON).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct IntrospectRequest {
    /// The access token.
    pub token: String,
    /// A hint the server may ignore (RFC 7662 §2.1), and this one does:
    /// accepted so that clients that send it are not refused.
    #[serde(default)]
    #[allow(dead_code)]
    pub token_type_hint: Option<String>,
}

/// `POST /v1/token/exchange` (RFC 8693 names; JSON), with a `DPoP` proof by
/// the key of `subject_token` and a server nonce.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeRequest {
    /// `urn:ietf:params:oauth:grant-type:token-exchange`.
    pub grant_type: String,
    /// The delegating agent's access token.
    pub subject_token: String,
    /// `urn:ietf:params:oauth:token-type:access_token`.
    pub subject_token_type: String,
    /// The sub-agent's public key (JWK): the new token is bound to it.
    pub actor_key: serde_json::Value,
    /// Scopes, space-separated: a subset of the subject token's.
    pub scope: String,
    /// The relying party (one the workload may address).
    pub audience: String,
    /// What the sub-agent is for (its `intent.task_id`).
    pub purpose: String,
    /// A shorter lifetime; never past the subject token's expiry.
    #[serde(default)]
    pub ttl_seconds: Option<u32>,
}

/// `POST /v1/token/exchange` response (RFC 8693 §2.2.1).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExchangeResponse {
    /// The sub-agent's token.
    pub access_token: String,
    /// `urn:ietf:params:oauth:token-type:access_token`.
    pub issued_token_type: String,
    /// `DPoP`.
    pub token_type: String,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// Granted scopes, space-separated.
    pub scope: String,
    /// The sub-agent's SPIFFE ID.
    pub spiffe_id: String,
}

/// `POST /v1/admin/policy/dry-run`: how a candidate policy would decide one
/// recorded attestation, beside the policy in force.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DryRunRequest {
    /// The candidate Cedar policy's text.
    pub policy: String,
    /// `nitro`, `tdx` or `snp`.
    pub tee: String,
    /// The evidence, base64.
    pub evidence: String,
    /// Collateral files by name, base64.
    #[serde(default)]
    pub collateral: BTreeMap<String, String>,
    /// SHA-384 of the model, hex.
    pub model_digest: String,
    /// `user:<id>`, `service:<id>` or `system`.
    pub principal: String,
    /// The intent.
    pub intent: IntentRequest,
    /// Judge as of this instant (RFC 3339; recorded evidence); default now.
    #[serde(default)]
    pub at: Option<String>,
}

/// One decision, as dry runs and `verifier policy test` report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// `allow` or `deny`.
    pub decision: String,
    /// Granted scopes (allow).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// The rejection code (deny).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

impl Decision {
    /// From appraisal's outcome.
    pub fn of(outcome: Result<Vec<String>, ServiceError>) -> Self {
        match outcome {
            Ok(scopes) => Self {
                decision: "allow".into(),
                scopes,
                code: None,
            },
            Err(e) => Self {
                decision: "deny".into(),
                scopes: Vec::new(),
                code: Some(e.code().as_str().to_string()),
            },
        }
    }
}

/// `PUT /v1/admin/secrets/{name}`: exactly one of `value` and `value_base64`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutSecretRequest {
    /// The value as UTF-8 text.
    #[serde(default)]
    pub value: Option<String>,
    /// The value as base64 (any common alphabet), for bytes.
    #[serde(default)]
    pub value_base64: Option<String>,
    /// Not released after this instant (RFC 3339).
    #[serde(default)]
    pub not_after: Option<String>,
    /// Whether a quarantined session may still have it (default no).
    #[serde(default)]
    pub release_in_quarantine: bool,
}

/// A secret's current version, never its value: the admin API's answers and
/// `GET /v1/secrets/{name}`.
#[derive(Debug, Clone, Serialize)]
pub struct SecretInfo {
    /// Its name.
    pub name: String,
    /// The current version.
    pub version: i64,
    /// When that version was stored (RFC 3339).
    pub created_at: String,
    /// Not released after (RFC 3339), if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// Whether a quarantined session may have it.
    pub release_in_quarantine: bool,
    /// When it was retired (admin listing only; then nothing is released).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<String>,
}

/// `POST /v1/secrets/{name}`: the secret as a compact JWE to the session's
/// encryption key.
#[derive(Debug, Clone, Serialize)]
pub struct SecretRelease {
    /// Its name.
    pub name: String,
    /// The version released.
    pub version: i64,
    /// Compact JWE (`ECDH-ES+A256KW` / `A256GCM`); the protected header
    /// names the secret and version too.
    pub jwe: String,
}

/// `POST /v1/jwt-svid`: the audiences a JWT-SVID is for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSvidRequest {
    /// 1 to 8 audiences, each one the workload's grant names.
    pub audience: Vec<String>,
}

/// `POST /v1/jwt-svid`: a JWT-SVID (a bearer token: whoever holds it is
/// the SPIFFE ID to its audiences until it expires).
#[derive(Debug, Clone, Serialize)]
pub struct JwtSvidResponse {
    /// The compact JWS (`typ: JWT`).
    pub token: String,
    /// Its SPIFFE ID (`sub`).
    pub spiffe_id: String,
    /// Seconds until it expires (at most 300).
    pub expires_in: i64,
    /// Its `jti` (for revocation and audit).
    pub jti: String,
}
