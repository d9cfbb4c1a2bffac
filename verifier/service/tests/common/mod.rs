//! Shared by the end-to-end tests: start `verifier serve` as a child
//! process, play the agent with evidence forged now under the test roots.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod vendor;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use attest_gate_core::{AgentKey, Binding, ModelDigest};
use attest_gate_forge::{live, nitro::DocSpec, snp::ReportSpec, tdx::TdxSpec};
use attest_gate_verifier::NonceKey;
use aws_lc_rs::digest::{digest, SHA384};
use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256};
use serde_json::{json, Value};
use time::OffsetDateTime;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A running `verifier serve` child, killed on drop.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub admin_token: String,
    pub data_dir: tempfile::TempDir,
    pub data_path: PathBuf,
    pub client: reqwest::Client,
    pub logs: mpsc::Receiver<String>,
    pub _measurements: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Options for one server.
#[derive(Default)]
pub struct Options {
    pub vendor_only: bool,
    pub extra_workloads: Vec<(&'static str, String)>,
    pub policy: Option<&'static str>,
    pub database: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub collateral_dir: Option<PathBuf>,
    /// Run on a private copy of `measurements/` (to change it under the server).
    pub copy_measurements: bool,
    /// Keep the default rate limits (otherwise `--no-rate-limits`: most
    /// tests send many requests from one address and key).
    pub rate_limits: bool,
    /// More flags for `verifier serve`.
    pub args: Vec<String>,
    /// Environment variables for it.
    pub env: Vec<(String, String)>,
}

pub fn start(options: Options) -> Server {
    let data_dir = tempfile::tempdir().unwrap();
    let data_path = options
        .data_dir
        .clone()
        .unwrap_or_else(|| data_dir.path().to_path_buf());
    let mut command = Command::new(env!("CARGO_BIN_EXE_verifier"));
    command
        .arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(&data_path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let measurements = if options.extra_workloads.is_empty() && !options.copy_measurements {
        command
            .arg("--measurements")
            .arg(repo().join("measurements"));
        None
    } else {
        let dir = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(repo().join("measurements")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|x| x == "toml") {
                std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
            }
        }
        for (name, text) in &options.extra_workloads {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        command.arg("--measurements").arg(dir.path());
        Some(dir)
    };
    if !options.vendor_only {
        command.arg("--dev");
    }
    if let Some(policy) = options.policy {
        let path = data_dir.path().join("test-policy.cedar");
        std::fs::write(&path, policy).unwrap();
        command.arg("--policy").arg(path);
    }
    if let Some(db) = &options.database {
        command.arg("--database").arg(db);
    }
    if let Some(dir) = &options.collateral_dir {
        command.arg("--collateral").arg(dir);
    }
    if !options.rate_limits {
        command.arg("--no-rate-limits");
    }
    command.args(&options.args);
    command.envs(options.env.iter().map(|(k, v)| (k, v)));
    let mut child = command.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[verifier] {line}");
            let _ = tx.send(line);
        }
    });
    let (mut url, mut admin_token) = (None, String::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    while url.is_none() {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the verifier did not say it was listening");
        if let Some(token) = line
            .split("): ")
            .nth(1)
            .filter(|_| line.contains("admin token"))
        {
            admin_token = token.trim().to_string();
        }
        if let Some(at) = line.find("listening on https://") {
            let rest = &line[at + "listening on ".len()..];
            url = Some(rest.split_whitespace().next().unwrap().to_string());
        }
    }
    // Stderr is a pipe here, so a new admin token goes to a one-time file.
    if let Ok(token) = std::fs::read_to_string(data_path.join("admin-token.new")) {
        admin_token = token.trim().to_string();
    }
    let cert = std::fs::read(data_path.join("tls/cert.pem")).unwrap();
    let client = client_trusting(&cert);
    Server {
        child,
        url: url.unwrap(),
        admin_token,
        data_dir,
        data_path,
        client,
        logs: rx,
        _measurements: measurements,
    }
}

pub fn client_trusting(cert_pem: &[u8]) -> reqwest::Client {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

impl Server {
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// POSTs `body` with extra headers: the status, the headers and the body.
    pub async fn post_with(
        &self,
        path: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut request = self.client.post(format!("{}{path}", self.url)).json(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (
            status,
            headers,
            response.json().await.unwrap_or(Value::Null),
        )
    }

    /// Posts an attestation request that must be refused with `status` and `code`.
    pub async fn expect_refusal(&self, body: &Value, status: u16, expected: &str) {
        let (got, response) = self.post("/v1/attest", body).await;
        assert_eq!((got, code(&response)), (status, expected), "{response}");
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = self
            .client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    pub async fn nonce(&self) -> Vec<u8> {
        let (status, body) = self.post("/v1/challenge", &json!({})).await;
        assert_eq!(status, 200, "{body}");
        URL_SAFE_NO_PAD
            .decode(body["nonce"].as_str().unwrap())
            .unwrap()
    }

    /// Waits up to ten seconds for a log line containing `needle`.
    pub fn wait_for_log(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Ok(line) = self
            .logs
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if line.contains(needle) {
                return true;
            }
        }
        false
    }

    /// The measurements folder (when the server has its own copy).
    pub fn measurements_dir(&self) -> Option<PathBuf> {
        self._measurements.as_ref().map(|d| d.path().to_path_buf())
    }

    /// The data directory the server runs on.
    pub fn data_path(&self) -> PathBuf {
        self.data_path.clone()
    }

    pub fn nonce_key(&self) -> NonceKey {
        let secret = std::fs::read(self.data_dir.path().join("keys-dev/nonce.key")).unwrap();
        NonceKey::new(&secret.try_into().unwrap())
    }
}

/// The agent: an ephemeral P-256 key and the model it serves.
pub struct Agent {
    pub key: KeyPair,
    pub jwk: AgentKey,
    pub model: ModelDigest,
}

pub fn example_model() -> ModelDigest {
    let bytes = std::fs::read(repo().join("testdata/models/example-model.txt")).unwrap();
    ModelDigest(digest(&SHA384, &bytes).as_ref().try_into().unwrap())
}

impl Agent {
    pub fn new() -> Self {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let point = key.public_key_raw().to_vec();
        let jwk = AgentKey::P256 {
            x: point[1..33].try_into().unwrap(),
            y: point[33..65].try_into().unwrap(),
        };
        Self {
            key,
            jwk,
            model: example_model(),
        }
    }

    pub fn report_data(&self, nonce: &[u8], model: &ModelDigest) -> [u8; 64] {
        Binding::new(nonce, self.jwk.clone(), *model)
            .unwrap()
            .report_data()
    }

    /// A DPoP proof by this agent's key (RFC 9449).
    pub fn dpop(&self, htm: &str, htu: &str, token: Option<&str>, nonce: Option<&str>) -> String {
        use aws_lc_rs::rand::{SecureRandom, SystemRandom};
        use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &self.key.serialize_der())
                .unwrap();
        let mut id = [0u8; 16];
        SystemRandom::new().fill(&mut id).unwrap();
        let jti = hex::encode(id);
        let claims = attest_gate_relying_party::dpop::ProofClaims {
            htm,
            htu,
            access_token: token,
            nonce,
            iat: OffsetDateTime::now_utc().unix_timestamp(),
            jti: &jti,
        };
        attest_gate_relying_party::dpop::make_proof(&self.jwk, &claims, |m| {
            pair.sign(&SystemRandom::new(), m)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| "sign")
        })
        .unwrap()
    }

    pub fn csr(&self) -> String {
        CertificateParams::default()
            .serialize_request(&self.key)
            .unwrap()
            .pem()
            .unwrap()
    }
}

/// Which evidence to make, and how to spoil it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Tee {
    Nitro,
    Snp,
    Tdx,
}

pub fn evidence(
    tee: Tee,
    report_data: [u8; 64],
    edit: impl FnOnce(&mut Spec),
) -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
    let now = OffsetDateTime::now_utc();
    let mut spec = match tee {
        Tee::Nitro => Spec::Nitro(DocSpec::default()),
        Tee::Snp => Spec::Snp(ReportSpec::default()),
        Tee::Tdx => Spec::Tdx(Box::default()),
    };
    match &mut spec {
        Spec::Nitro(doc) => {
            doc.user_data = Some(report_data.to_vec());
            doc.nonce = None;
        }
        Spec::Snp(report) => report.report_data = report_data,
        Spec::Tdx(tdx) => tdx.quote.report_data = report_data,
    }
    edit(&mut spec);
    match spec {
        Spec::Nitro(doc) => (live::nitro(&doc, now).unwrap(), vec![]),
        Spec::Snp(report) => live::snp(&report).unwrap(),
        Spec::Tdx(tdx) => live::tdx(&tdx, now).unwrap(),
    }
}

pub enum Spec {
    Nitro(DocSpec),
    Snp(ReportSpec),
    Tdx(Box<TdxSpec>),
}

pub fn tee_name(tee: Tee) -> &'static str {
    match tee {
        Tee::Nitro => "nitro",
        Tee::Snp => "snp",
        Tee::Tdx => "tdx",
    }
}

pub fn request(
    tee: Tee,
    agent: &Agent,
    nonce: &[u8],
    evidence: &(Vec<u8>, Vec<(String, Vec<u8>)>),
    model: &ModelDigest,
) -> Value {
    let collateral: serde_json::Map<String, Value> = evidence
        .1
        .iter()
        .map(|(name, bytes)| (name.clone(), json!(STANDARD.encode(bytes))))
        .collect();
    json!({
        "tee": tee_name(tee),
        "evidence": STANDARD.encode(&evidence.0),
        "collateral": collateral,
        "nonce": URL_SAFE_NO_PAD.encode(nonce),
        "public_key": agent.jwk.to_jwk(),
        "model_digest": model.to_hex(),
        "principal": "user:alice",
        "intent": {
            "task_id": "task-42",
            "scopes": ["inference:invoke", "tools:search"],
            "audience": "https://rp.attest-gate.test",
        },
    })
}

/// Evidence bound to `nonce`, `agent`'s key and `model`, in a request.
pub fn signed_request(tee: Tee, agent: &Agent, nonce: &[u8], model: &ModelDigest) -> Value {
    let ev = evidence(tee, agent.report_data(nonce, model), |_| {});
    request(tee, agent, nonce, &ev, model)
}

/// A fresh challenge, evidence bound to it, and the request carrying both.
pub async fn bound_request(
    server: &Server,
    tee: Tee,
    agent: &Agent,
    edit: impl FnOnce(&mut Spec),
) -> Value {
    let nonce = server.nonce().await;
    let ev = evidence(tee, agent.report_data(&nonce, &agent.model), edit);
    request(tee, agent, &nonce, &ev, &agent.model)
}

pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}

/// Verifies a compact ES256 JWS against a JWKS, independently of the service.
pub fn verify_jwt(token: &str, jwks: &Value) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("the token's kid is in the JWKS");
    let point = [
        &[4u8][..],
        &URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap(),
        &URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap(),
    ]
    .concat();
    let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
        .expect("the token verifies against the JWKS");
    (header, claims)
}
