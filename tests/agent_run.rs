//! The long-running agent with the real binaries: `verifier serve --dev`,
//! `enclave-agent run --simulate nitro --socket S`, and the `example-rp`
//! relying party. The AI agent's side is played through the socket (token
//! and DPoP proofs). Then: a sub-agent gets a narrower delegated token that
//! the relying party accepts; revoking the agent's credential makes the
//! running agent stop serving it and exit non-zero, and the relying party
//! refuse both tokens.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use attest_gate_core::AgentKey;
use attest_gate_relying_party::dpop::{make_proof, ProofClaims};
use attest_gate_tests::{binary, workspace_root, RunningVerifier};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

const AUDIENCE: &str = "https://rp.attest-gate.test";

/// A child process killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn socket_ask(socket: &Path, request: &Value) -> Value {
    try_socket_ask(socket, request).unwrap_or_else(|e| panic!("{}: {e}", socket.display()))
}

/// One request on the agent's socket, or why it got no answer: for polls
/// that run while the agent may be creating or removing its socket.
fn try_socket_ask(socket: &Path, request: &Value) -> Result<Value, String> {
    let mut stream =
        std::os::unix::net::UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
    writeln!(stream, "{request}").map_err(|e| format!("write: {e}"))?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(|e| format!("read: {e}"))?;
    serde_json::from_str(&line).map_err(|e| format!("answer {line:?}: {e}"))
}

fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// `GET url` over plain HTTP/1.1 with DPoP headers: (status, body).
fn get(url: &str, token: &str, proof: &str) -> (u16, Value) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: DPoP {token}\r\nDPoP: {proof}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    // The body may be chunked: take the JSON object inside.
    let json = body
        .find('{')
        .and_then(|start| body.rfind('}').map(|end| &body[start..=end]))
        .unwrap_or("null");
    (status, serde_json::from_str(json).unwrap_or(Value::Null))
}

/// A sub-agent: its own key, making its own proofs.
struct SubAgent {
    pair: EcdsaKeyPair,
    jwk: AgentKey,
}

impl SubAgent {
    fn new() -> Self {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let point = pair.public_key().as_ref().to_vec();
        let jwk = AgentKey::P256 {
            x: point[1..33].try_into().unwrap(),
            y: point[33..65].try_into().unwrap(),
        };
        Self { pair, jwk }
    }

    fn proof(&self, htu: &str, token: &str) -> String {
        let mut id = [0u8; 16];
        aws_lc_rs::rand::SecureRandom::fill(&SystemRandom::new(), &mut id).unwrap();
        let jti = URL_SAFE_NO_PAD.encode(id);
        let claims = ProofClaims {
            htm: "GET",
            htu,
            access_token: Some(token),
            nonce: None,
            iat: time_now(),
            jti: &jti,
        };
        make_proof(&self.jwk, &claims, |m| {
            self.pair
                .sign(&SystemRandom::new(), m)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| "sign")
        })
        .unwrap()
    }
}

fn time_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn agent_proof(socket: &Path, htu: &str) -> (String, String) {
    let answer = socket_ask(socket, &json!({"op": "proof", "htm": "GET", "htu": htu}));
    (
        answer["access_token"]
            .as_str()
            .expect("a token")
            .to_string(),
        answer["proof"].as_str().unwrap().to_string(),
    )
}

/// An admin call to the verifier (its TLS certificate pinned): the status.
async fn admin(verifier: &RunningVerifier, method: &str, path: &str, body: &Value) -> u16 {
    let client = verifier.client();
    let response = client
        .request(method.parse().unwrap(), format!("{}{path}", verifier.url))
        .bearer_auth(verifier.admin_token())
        .json(body)
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

async fn revoke(verifier: &RunningVerifier, jti: &str) {
    let body = json!({"kind": "jti", "target": jti, "mode": "immediate", "reason": "compromised"});
    assert_eq!(
        admin(verifier, "POST", "/v1/admin/revoke", &body).await,
        200
    );
}

/// `enclave-agent run --simulate <tee>` serving on a socket in `dir`;
/// returns once it serves a token.
fn start_agent(verifier: &RunningVerifier, tee: &str, dir: &Path) -> (Running, PathBuf, PathBuf) {
    let socket = dir.join(format!("{tee}.sock"));
    let token_file = dir.join(format!("{tee}.jwt"));
    let agent = Running(
        Command::new(binary("enclave-agent"))
            .args([
                "run",
                "--simulate",
                tee,
                "--verifier",
                &verifier.url,
                "--ca-cert",
            ])
            .arg(verifier.cert())
            .arg("--model")
            .arg(workspace_root().join("testdata/models/example-model.txt"))
            .args(["--principal", "user:alice", "--audience", AUDIENCE])
            .args(["--scope", "inference:invoke", "--scope", "tools:search"])
            .args(["--revocation-poll", "1", "--socket"])
            .arg(&socket)
            .arg("--token-out")
            .arg(&token_file)
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    wait_until("the agent's token", || {
        try_socket_ask(&socket, &json!({"op": "token"}))
            .is_ok_and(|answer| answer["access_token"].is_string())
    });
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    (agent, socket, token_file)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_agent_serves_delegates_and_stops_when_revoked() {
    let verifier = RunningVerifier::start(&["--dev"]);
    let dir = tempfile::tempdir().unwrap();

    let mut rp = Command::new(binary("example-rp"))
        .args(["--verifier", &verifier.url, "--ca-cert"])
        .arg(verifier.cert())
        .args(["--audience", AUDIENCE, "--scope", "inference:invoke"])
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(rp.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _rp = Running(rp);
    let rp_url = line.trim().rsplit(' ').next().unwrap().to_string();
    let hello = format!("{rp_url}/hello");

    // For every TEE, the AI agent takes token and proof from the socket and
    // calls the relying party; the last agent goes on below.
    let mut running = None;
    for tee in ["nitro", "tdx", "snp"] {
        let (agent, socket, token_file) = start_agent(&verifier, tee, dir.path());
        let (token, proof) = agent_proof(&socket, &hello);
        assert_eq!(claims(&token)["provenance"]["tee"], tee);
        assert_eq!(std::fs::read_to_string(&token_file).unwrap(), token);
        let (status, body) = get(&hello, &token, &proof);
        assert_eq!(status, 200, "{tee}: {body}");
        assert_eq!(body["hello"], claims(&token)["sub"]);
        running = Some((agent, socket, token_file, token));
    }
    let (mut agent, socket, token_file, token) = running.unwrap();
    let parent = claims(&token);
    // The token alone (a thief without the key) is refused.
    let thief = SubAgent::new();
    let (status, _) = get(&hello, &token, &thief.proof(&hello, &token));
    assert_eq!(status, 401);

    // A sub-agent: narrower, chained, accepted with its own key's proof.
    let sub = SubAgent::new();
    let jwk_file = dir.path().join("sub.jwk");
    std::fs::write(&jwk_file, sub.jwk.to_jwk().to_string()).unwrap();
    let output = Command::new(binary("enclave-agent"))
        .args(["delegate", "--socket"])
        .arg(&socket)
        .arg("--actor-key")
        .arg(&jwk_file)
        .args([
            "--scope",
            "inference:invoke",
            "--audience",
            AUDIENCE,
            "--purpose",
            "summarise",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let delegated: Value = serde_json::from_slice(&output.stdout).unwrap();
    let child_token = delegated["access_token"].as_str().unwrap().to_string();
    let child = claims(&child_token);
    assert_eq!(parent["scope"], "inference:invoke tools:search");
    assert_eq!(child["scope"], "inference:invoke");
    assert_eq!(child["session"]["parent"], parent["jti"]);
    assert_eq!(child["act"]["sub"], parent["sub"]);
    assert!(child["exp"].as_i64() <= parent["exp"].as_i64());
    let (status, body) = get(&hello, &child_token, &sub.proof(&hello, &child_token));
    assert_eq!(status, 200, "{body}");

    // Revocation: the agent stops serving and exits 1; the RP refuses both.
    revoke(&verifier, parent["jti"].as_str().unwrap()).await;
    wait_until("the agent to withdraw its token", || {
        // Gone, going (refused mid-removal) or answering that it has none.
        try_socket_ask(&socket, &json!({"op": "token"}))
            .map_or(true, |answer| answer["error"]["code"] == "no_token")
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = agent.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the agent did not stop");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status.code(), Some(1), "revoked: re-attestation is refused");
    assert!(!token_file.exists(), "the token file is removed");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, body) = get(&hello, &child_token, &sub.proof(&hello, &child_token));
    assert_eq!(
        (status, body["error"].clone()),
        (401, json!("token_revoked")),
        "{body}"
    );
}

/// Attested secret release through the running agent, for each TEE: the
/// agent binds its decryption key, fetches a secret the policy allows over
/// its socket and opens it inside; `enclave-agent secret` prints it; a new
/// version reaches the agent at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_running_agent_fetches_secrets_the_policy_allows() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.cedar");
    std::fs::write(
        &policy,
        format!(
            "{}\npermit (principal, action == AttestGate::Action::\"read_secret\", resource == AttestGate::Secret::\"api-key\");\n",
            std::fs::read_to_string(workspace_root().join("verifier/service/default.cedar")).unwrap()
        ),
    )
    .unwrap();
    let verifier = RunningVerifier::start(&["--dev", "--policy", policy.to_str().unwrap()]);
    let put = |value: &'static str| json!({"value": value});
    assert_eq!(
        admin(
            &verifier,
            "PUT",
            "/v1/admin/secrets/api-key",
            &put("sk-first")
        )
        .await,
        200
    );
    assert_eq!(
        admin(&verifier, "PUT", "/v1/admin/secrets/other", &put("nope")).await,
        200
    );
    for tee in ["nitro", "tdx", "snp"] {
        let (_agent, socket, _) = start_agent(&verifier, tee, dir.path());
        let answer = socket_ask(&socket, &json!({"op": "secret", "name": "api-key"}));
        assert_eq!(answer["value"], "sk-first", "{tee}: {answer}");
        let refused = socket_ask(&socket, &json!({"op": "secret", "name": "other"}));
        assert_eq!(refused["error"]["code"], "secret_denied", "{refused}");
        let printed = Command::new(binary("enclave-agent"))
            .args(["secret", "api-key", "--socket"])
            .arg(&socket)
            .output()
            .unwrap();
        assert!(printed.status.success());
        assert_eq!(printed.stdout, b"sk-first");
    }
    // A fresh folder: the agents above left their (dead) sockets behind.
    let again = tempfile::tempdir().unwrap();
    let (_agent, socket, _) = start_agent(&verifier, "tdx", again.path());
    assert_eq!(
        socket_ask(&socket, &json!({"op": "secret", "name": "api-key"}))["version"],
        1
    );
    assert_eq!(
        admin(
            &verifier,
            "PUT",
            "/v1/admin/secrets/api-key",
            &put("sk-second")
        )
        .await,
        200
    );
    let answer = socket_ask(&socket, &json!({"op": "secret", "name": "api-key"}));
    assert_eq!(
        (answer["version"].as_i64(), answer["value"].as_str()),
        (Some(2), Some("sk-second"))
    );
}
