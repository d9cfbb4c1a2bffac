//! The verifier's API as the agent uses it: a challenge, then one
//! attestation request. HTTPS only; the verifier's certificate is pinned with
//! `--ca-cert`, else checked against the system's roots.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};

use crate::backend::{evidence_off_thread, Evidence, EvidenceSource};
use crate::key::EphemeralKey;
use attest_gate_core::{Binding, ModelDigest};

/// The verifier's token-exchange endpoint, under its URL.
pub const EXCHANGE_PATH: &str = "/v1/token/exchange";

/// Talking to the verifier failed, or it said no.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Transport, TLS or an unreadable answer.
    #[error("verifier unreachable or unreadable: {0}")]
    Transport(String),
    /// The verifier refused, with its error code.
    #[error("the verifier refused ({status} {code}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Its stable error code.
        code: String,
        /// Its message.
        message: String,
    },
    /// The agent could not produce what it needed (key, evidence).
    #[error("{0}")]
    Local(String),
}

/// What the agent asks for.
#[derive(Debug, Clone, Default)]
pub struct Ask {
    /// On whose behalf (`system`, `user:<id>`, `service:<id>`).
    pub principal: String,
    /// Task identifier.
    pub task_id: String,
    /// Scopes requested.
    pub scopes: Vec<String>,
    /// Relying party.
    pub audience: String,
    /// Ask for an X.509-SVID too.
    pub svid: bool,
    /// Shorter lifetime than the workload's maximum.
    pub ttl_seconds: Option<u32>,
}

/// An HTTPS client for one verifier.
#[derive(Debug, Clone)]
pub struct VerifierClient {
    base: String,
    http: reqwest::Client,
}

/// The verifier's error body as a refusal.
pub fn refusal(status: u16, body: &Value) -> ClientError {
    let field = |name: &str| {
        body.pointer(&format!("/error/{name}"))
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string()
    };
    ClientError::Refused {
        status,
        code: field("code"),
        message: field("message"),
    }
}

impl ClientError {
    /// The verifier's verdict on this agent (a 4xx other than timeouts and
    /// rate limits), as opposed to trouble reaching it.
    pub fn is_verdict(&self) -> bool {
        matches!(self, Self::Refused { status, .. }
            if (400..500).contains(status) && *status != 408 && *status != 429)
    }
}

/// A DPoP endpoint's answer: status, JSON body and the `DPoP-Nonce` it
/// handed out.
async fn with_dpop_nonce(
    response: reqwest::Response,
) -> Result<(u16, Value, Option<String>), ClientError> {
    let status = response.status().as_u16();
    let nonce = response
        .headers()
        .get("dpop-nonce")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body: Value = response.json().await.map_err(transport)?;
    Ok((status, body, nonce))
}

fn transport(e: impl std::fmt::Display) -> ClientError {
    ClientError::Transport(e.to_string())
}

impl VerifierClient {
    /// A client for `base` (`https://host:port`); `ca_pem` pins the CA (or
    /// self-signed certificate) the verifier must present.
    pub fn new(base: &str, ca_pem: Option<&[u8]>) -> Result<Self, ClientError> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        match ca_pem {
            Some(pem) => {
                for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
                    roots.add(cert.map_err(transport)?).map_err(transport)?;
                }
            }
            None => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(transport)?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .https_only(true)
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(transport)?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            http,
        })
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.map_err(transport)?;
        if status == 200 {
            return Ok(body);
        }
        Err(refusal(status, &body))
    }

    /// The verifier's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET path`, the body as text (200 only).
    pub async fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(transport)?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(transport)?;
        if status != 200 {
            return Err(ClientError::Refused {
                status,
                code: "http_error".into(),
                message: format!("GET {path} answered {status}"),
            });
        }
        Ok(text)
    }

    /// `POST /v1/token/exchange` with a `DPoP` proof: the status, the body
    /// and the `DPoP-Nonce` the verifier handed out.
    pub async fn exchange(
        &self,
        body: &Value,
        proof: &str,
    ) -> Result<(u16, Value, Option<String>), ClientError> {
        let response = self
            .http
            .post(format!("{}{EXCHANGE_PATH}", self.base))
            .header("DPoP", proof)
            .json(body)
            .send()
            .await
            .map_err(transport)?;
        with_dpop_nonce(response).await
    }

    /// A request under the agent's DPoP-bound token: `method path` with
    /// `Authorization: DPoP <token>`, the proof, and `body` as JSON if given.
    /// The status, the body and the `DPoP-Nonce` the verifier handed out.
    pub async fn with_token(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        proof: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value, Option<String>), ClientError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("Authorization", format!("DPoP {token}"))
            .header("DPoP", proof);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(transport)?;
        with_dpop_nonce(response).await
    }

    /// A fresh nonce.
    pub async fn challenge(&self) -> Result<Vec<u8>, ClientError> {
        let body = self.post("/v1/challenge", &json!({})).await?;
        let nonce = body
            .get("nonce")
            .and_then(Value::as_str)
            .ok_or_else(|| transport("the challenge has no nonce"))?;
        URL_SAFE_NO_PAD.decode(nonce).map_err(transport)
    }

    /// One attestation: challenge, binding, evidence, request. Returns the
    /// verifier's answer (token, expiry, SVID if asked). The evidence is
    /// asked for on the blocking pool: a slow device or QGS does not stall
    /// the caller's runtime.
    pub async fn attest(
        &self,
        source: &Arc<dyn EvidenceSource>,
        key: &EphemeralKey,
        model: ModelDigest,
        ask: &Ask,
    ) -> Result<Value, ClientError> {
        let nonce = self.challenge().await?;
        let binding = Binding::with_encryption_key(
            &nonce,
            key.public().clone(),
            key.encryption_public().clone(),
            model,
        )
        .ok_or_else(|| transport("the verifier's nonce is empty or too long"))?;
        let public_key = key.public().raw_public_key();
        let evidence: Evidence = evidence_off_thread(
            Arc::clone(source),
            binding.report_data(),
            nonce.clone(),
            public_key.to_vec(),
        )
        .await
        .map_err(|e| ClientError::Local(e.to_string()))?;
        let collateral: serde_json::Map<String, Value> = evidence
            .collateral
            .iter()
            .map(|(name, bytes)| (name.clone(), json!(STANDARD.encode(bytes))))
            .collect();
        let mut body = serde_json::Map::new();
        let fields = json!({
            "tee": evidence.tee.to_string(),
            "evidence": STANDARD.encode(&evidence.bytes),
            "collateral": collateral,
            "nonce": URL_SAFE_NO_PAD.encode(&nonce),
            "public_key": key.public().to_jwk(),
            "encryption_key": key.encryption_public().to_jwk(),
            "model_digest": model.to_hex(),
            "principal": ask.principal,
            "intent": {
                "task_id": ask.task_id,
                "scopes": ask.scopes,
                "audience": ask.audience,
            },
        });
        if let Value::Object(map) = fields {
            body.extend(map);
        }
        if ask.svid {
            body.insert(
                "csr".into(),
                json!(key
                    .csr_pem()
                    .map_err(|e| ClientError::Local(e.to_string()))?),
            );
        }
        if let Some(ttl) = ask.ttl_seconds {
            body.insert("ttl_seconds".into(), json!(ttl));
        }
        self.post("/v1/attest", &Value::Object(body)).await
    }
}
