//! The agent's Unix socket: the AI agent process asks here for the current
//! token and for DPoP proofs signed by the attested key, so that key never
//! leaves this process; sub-agent tokens are obtained here too.
//!
//! Protocol: one JSON object per line each way.
//! - `{"op": "token"}` → `{"access_token", "token_type": "DPoP", "expires_at", "scope", "quarantined"}`
//! - `{"op": "proof", "htm": "GET", "htu": "https://rp/x", "nonce": null}` →
//!   `{"proof", "access_token"}`: a proof for that request, bound (`ath`) to
//!   the token it returns.
//! - `{"op": "delegate", "actor_key": {JWK}, "scope": "a b", "audience", "purpose", "ttl_seconds"}`
//!   → the verifier's token-exchange answer (the sub-agent's token).
//! - `{"op": "secret", "name": "db-password"}` → `{"name", "version", "value"}`
//!   (`value_base64` instead when the secret is not UTF-8 text): fetched
//!   from the verifier as a JWE to this agent's decryption key and opened
//!   here, in the TEE. A copy is kept in memory only (never on disk) and
//!   served again while the verifier's `GET /v1/secrets/{name}` still names
//!   its version; a new version is fetched at once.
//! - anything else, or no credential being served →
//!   `{"error": {"code", "message"}}` (`no_token` once revoked or expired).
//!
//! The socket file is created mode 0600: only this user's processes talk to it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use attest_gate_relying_party::dpop::{make_proof, ProofClaims};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use zeroize::Zeroizing;

use crate::client::{refusal, VerifierClient, EXCHANGE_PATH};
use crate::keeper::Served;
use crate::key::EphemeralKey;

/// Longest request line accepted.
const MAX_LINE: usize = 64 * 1024;

/// One request on the socket.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum SocketRequest {
    /// The current token.
    Token,
    /// A DPoP proof for one request.
    Proof {
        /// HTTP method.
        htm: String,
        /// Full URL.
        htu: String,
        /// The resource server's `DPoP-Nonce`, if it sent one.
        #[serde(default)]
        nonce: Option<String>,
    },
    /// A narrower token for a sub-agent's key (RFC 8693 exchange).
    Delegate {
        /// The sub-agent's public key (JWK).
        actor_key: Value,
        /// Scopes, space-separated (a subset of this agent's).
        scope: String,
        /// The relying party.
        audience: String,
        /// What the sub-agent is for.
        purpose: String,
        /// A shorter lifetime.
        #[serde(default)]
        ttl_seconds: Option<u32>,
    },
    /// A secret the verifier releases to this attested agent.
    Secret {
        /// Its name.
        name: String,
    },
}

/// The verifier's path for secrets, under its URL.
const SECRETS_PATH: &str = "/v1/secrets/";

/// A secret opened earlier, by version (zeroized when dropped).
struct Cached {
    version: i64,
    value: Zeroizing<Vec<u8>>,
}

/// One request the agent makes under its token, with a DPoP proof.
enum Call<'a> {
    /// `POST /v1/token/exchange` with this body.
    Exchange(&'a Value),
    /// `GET` (metadata) or `POST` (release) of a secret.
    Secret(reqwest::Method, String),
}

/// What answers on the socket.
pub struct Responder {
    /// The credential served.
    served: Arc<Served>,
    /// The attested key.
    key: Arc<EphemeralKey>,
    /// The verifier (for delegation and secrets).
    client: VerifierClient,
    /// The last `DPoP-Nonce` the verifier handed out (saves a round trip).
    dpop_nonce: Mutex<Option<String>>,
    /// Secrets opened, by name.
    secrets: Mutex<HashMap<String, Cached>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The verifier's refusal, as a socket answer.
fn refused(status: u16, answer: &Value, fallback: &str) -> Value {
    match refusal(status, answer) {
        crate::client::ClientError::Refused {
            code,
            message,
            status,
        } => json!({"error": {"code": code, "message": message, "status": status}}),
        other => error(fallback, other),
    }
}

fn error(code: &str, message: impl std::fmt::Display) -> Value {
    json!({"error": {"code": code, "message": message.to_string()}})
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn random_jti() -> Option<String> {
    use aws_lc_rs::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes).ok()?;
    Some(hex::encode(bytes))
}

impl Responder {
    /// Answers for `served`, signing with `key`, talking to `client`.
    pub fn new(served: Arc<Served>, key: Arc<EphemeralKey>, client: VerifierClient) -> Self {
        Self {
            served,
            key,
            client,
            dpop_nonce: Mutex::new(None),
            secrets: Mutex::new(HashMap::new()),
        }
    }

    /// A DPoP proof by the agent's key for `htm` `htu`, bound to `token`.
    pub fn proof(
        &self,
        htm: &str,
        htu: &str,
        token: &str,
        nonce: Option<&str>,
    ) -> Result<String, String> {
        let jti = random_jti().ok_or("the random generator failed")?;
        let claims = ProofClaims {
            htm,
            htu,
            access_token: Some(token),
            nonce,
            iat: now_unix(),
            jti: &jti,
        };
        make_proof(self.key.public(), &claims, |m| self.key.sign(m)).map_err(|e| e.to_string())
    }

    /// Answers one request.
    pub async fn answer(&self, request: SocketRequest) -> Value {
        let Some(current) = self.served.get(now_unix()) else {
            return error(
                "no_token",
                "no credential is being served (not yet issued, expired or revoked)",
            );
        };
        match request {
            SocketRequest::Token => json!({
                "access_token": current.token,
                "token_type": "DPoP",
                "expires_at": current.expires_at,
                "scope": current.scope,
                "quarantined": current.quarantined,
            }),
            SocketRequest::Proof { htm, htu, nonce } => {
                match self.proof(&htm, &htu, &current.token, nonce.as_deref()) {
                    Ok(proof) => json!({"proof": proof, "access_token": current.token}),
                    Err(e) => error("proof_failed", e),
                }
            }
            SocketRequest::Delegate {
                actor_key,
                scope,
                audience,
                purpose,
                ttl_seconds,
            } => {
                let mut body = json!({
                    "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                    "subject_token": current.token,
                    "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
                    "actor_key": actor_key,
                    "scope": scope,
                    "audience": audience,
                    "purpose": purpose,
                });
                if let (Some(map), Some(ttl)) = (body.as_object_mut(), ttl_seconds) {
                    map.insert("ttl_seconds".into(), json!(ttl));
                }
                match self.call(&Call::Exchange(&body), &current.token).await {
                    Ok((200, answer)) => answer,
                    Ok((status, answer)) => refused(status, &answer, "exchange_failed"),
                    Err(e) => e,
                }
            }
            SocketRequest::Secret { name } => self.secret(&name, &current.token).await,
        }
    }

    /// One call under `token` with RFC 9449's nonce round: the proof
    /// carries the last nonce the verifier gave (if any); a
    /// `use_dpop_nonce` answer's fresh nonce is tried once more.
    async fn call(&self, call: &Call<'_>, token: &str) -> Result<(u16, Value), Value> {
        let (htm, path) = match call {
            Call::Exchange(_) => (reqwest::Method::POST, EXCHANGE_PATH.to_string()),
            Call::Secret(method, path) => (method.clone(), path.clone()),
        };
        let htu = format!("{}{path}", self.client.base());
        let mut retried = false;
        loop {
            let nonce = lock(&self.dpop_nonce).clone();
            let proof = self
                .proof(htm.as_str(), &htu, token, nonce.as_deref())
                .map_err(|e| error("proof_failed", e))?;
            let sent = match call {
                Call::Exchange(body) => self.client.exchange(body, &proof).await,
                Call::Secret(method, path) => {
                    self.client
                        .with_token(method.clone(), path, token, &proof, None)
                        .await
                }
            };
            let (status, answer, fresh) = sent.map_err(|e| error("verifier_unreachable", e))?;
            if fresh.is_some() {
                *lock(&self.dpop_nonce) = fresh;
            }
            let code = answer.pointer("/error/code").and_then(Value::as_str);
            if code == Some("use_dpop_nonce") && !retried {
                retried = true;
                continue;
            }
            return Ok((status, answer));
        }
    }

    /// A secret: the version in force, then the cached copy if it is that
    /// version, else a release opened with the decryption key.
    async fn secret(&self, name: &str, token: &str) -> Value {
        let valid = !name.is_empty()
            && name.len() <= 128
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !valid {
            return error(
                "malformed_request",
                "a secret's name is 1 to 128 letters, digits, `.`, `_` or `-`",
            );
        }
        let path = format!("{SECRETS_PATH}{name}");
        let version = match self
            .call(&Call::Secret(reqwest::Method::GET, path.clone()), token)
            .await
        {
            Ok((200, meta)) => meta.get("version").and_then(Value::as_i64),
            Ok((status, answer)) => {
                lock(&self.secrets).remove(name);
                return refused(status, &answer, "secret_failed");
            }
            Err(e) => return e,
        };
        if let Some(cached) = lock(&self.secrets).get(name) {
            if Some(cached.version) == version {
                return secret_answer(name, cached);
            }
        }
        let released = match self
            .call(&Call::Secret(reqwest::Method::POST, path), token)
            .await
        {
            Ok((200, released)) => released,
            Ok((status, answer)) => return refused(status, &answer, "secret_failed"),
            Err(e) => return e,
        };
        let Some(jwe) = released.get("jwe").and_then(Value::as_str) else {
            return error("secret_failed", "the verifier's answer has no JWE");
        };
        let opened = match self.key.open(jwe) {
            Ok(o) => o,
            Err(e) => return error("secret_undecryptable", e),
        };
        // The protected header (authenticated by the decryption) must name
        // what was asked for.
        let version = opened.header.get("version").and_then(Value::as_i64);
        let (Some(version), true) = (
            version,
            opened.header.get("secret").and_then(Value::as_str) == Some(name),
        ) else {
            return error(
                "secret_undecryptable",
                "the JWE's protected header names another secret",
            );
        };
        let cached = Cached {
            version,
            value: Zeroizing::new(opened.plaintext),
        };
        let answer = secret_answer(name, &cached);
        lock(&self.secrets).insert(name.to_string(), cached);
        answer
    }
}

/// A secret on the socket: text as `value`, other bytes as `value_base64`.
fn secret_answer(name: &str, cached: &Cached) -> Value {
    match std::str::from_utf8(&cached.value) {
        Ok(text) => json!({"name": name, "version": cached.version, "value": text}),
        Err(_) => json!({
            "name": name,
            "version": cached.version,
            "value_base64": STANDARD.encode(&cached.value[..]),
        }),
    }
}

/// Binds `path` (replacing a stale socket file), mode 0600.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            std::fs::remove_file(path)?;
        } else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves connections until the listener fails.
pub async fn serve(listener: UnixListener, responder: Arc<Responder>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let responder = Arc::clone(&responder);
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read.take(MAX_LINE as u64 * 64)).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let answer = if line.len() > MAX_LINE {
                    error("malformed_request", "request line too long")
                } else {
                    match serde_json::from_str::<SocketRequest>(&line) {
                        Ok(request) => responder.answer(request).await,
                        Err(e) => error("malformed_request", e),
                    }
                };
                let mut out = answer.to_string();
                out.push('\n');
                if write.write_all(out.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// One request to a running agent's socket (the `token`, `proof` and
/// `delegate` commands).
pub async fn ask(path: &Path, request: &Value) -> std::io::Result<Value> {
    let stream = tokio::net::UnixStream::connect(path).await?;
    let (read, mut write) = stream.into_split();
    let mut line = request.to_string();
    line.push('\n');
    write.write_all(line.as_bytes()).await?;
    let mut answer = String::new();
    BufReader::new(read.take(MAX_LINE as u64 * 4))
        .read_line(&mut answer)
        .await?;
    serde_json::from_str(&answer)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}
