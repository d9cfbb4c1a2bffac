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
//! - anything else, or no credential being served →
//!   `{"error": {"code", "message"}}` (`no_token` once revoked or expired).
//!
//! The socket file is created mode 0600: only this user's processes talk to it.

use std::path::Path;
use std::sync::Arc;

use attest_gate_relying_party::dpop::{make_proof, ProofClaims};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

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
}

/// What answers on the socket.
pub struct Responder {
    /// The credential served.
    pub served: Arc<Served>,
    /// The attested key.
    pub key: Arc<EphemeralKey>,
    /// The verifier (for delegation).
    pub client: VerifierClient,
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
                self.delegate(&body, &current.token).await
            }
        }
    }

    /// The exchange, with RFC 9449's nonce round: a first proof without a
    /// nonce earns one; the second carries it.
    async fn delegate(&self, body: &Value, token: &str) -> Value {
        let htu = format!("{}{EXCHANGE_PATH}", self.client.base());
        let mut nonce: Option<String> = None;
        for _ in 0..2 {
            let proof = match self.proof("POST", &htu, token, nonce.as_deref()) {
                Ok(p) => p,
                Err(e) => return error("proof_failed", e),
            };
            match self.client.exchange(body, &proof).await {
                Ok((200, answer, _)) => return answer,
                Ok((status, answer, fresh)) => {
                    let code = answer.pointer("/error/code").and_then(Value::as_str);
                    if code == Some("use_dpop_nonce") && fresh.is_some() && nonce.is_none() {
                        nonce = fresh;
                        continue;
                    }
                    return match refusal(status, &answer) {
                        crate::client::ClientError::Refused {
                            code,
                            message,
                            status,
                        } => {
                            json!({"error": {"code": code, "message": message, "status": status}})
                        }
                        other => error("exchange_failed", other),
                    };
                }
                Err(e) => return error("verifier_unreachable", e),
            }
        }
        error(
            "exchange_failed",
            "the verifier kept asking for a new DPoP nonce",
        )
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
