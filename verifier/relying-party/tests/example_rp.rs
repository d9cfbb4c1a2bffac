//! The `example-rp` binary end to end, against a stand-in verifier (HTTPS on
//! loopback) that serves a JWKS and, once enabled, a revocation list.
#![cfg(feature = "example")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use common::{token_claims, Agent, Issuer, AUDIENCE};
use serde_json::{json, Value};

#[derive(Default)]
struct Mock {
    jwks: Value,
    /// `None`: 404. Else pages by the smallest `since` they answer.
    revocations: Option<Vec<(i64, String)>>,
    since_queries: Vec<String>,
}

type Shared = Arc<Mutex<Mock>>;

async fn jwks(State(mock): State<Shared>) -> Json<Value> {
    Json(mock.lock().unwrap().jwks.clone())
}

async fn revocations(
    State(mock): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mut mock = mock.lock().unwrap();
    mock.since_queries
        .push(query.get("since").cloned().unwrap_or_default());
    let since: i64 = query.get("since").and_then(|s| s.parse().ok()).unwrap_or(0);
    match &mock.revocations {
        None => StatusCode::NOT_FOUND.into_response(),
        Some(pages) => {
            let jws = pages
                .iter()
                .rev()
                .find(|(from, _)| *from <= since)
                .unwrap_or(&pages[0])
                .1
                .clone();
            ([(header::CONTENT_TYPE, "application/jwt")], jws).into_response()
        }
    }
}

/// Starts the stand-in verifier; returns its URL and CA certificate (PEM).
fn start_verifier(mock: Shared) -> (String, String) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert_pem = certified.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)
    .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/v1/revocations", get(revocations))
        .with_state(mock);
    let server = axum_server::from_tcp_rustls(
        listener,
        axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls)),
    )
    .serve(app.into_make_service());
    tokio::spawn(server);
    (format!("https://{addr}"), cert_pem)
}

/// Kills the child when the test ends, pass or fail.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `example-rp`; returns it and the address from its one stdout line.
fn start_rp(verifier: &str, ca_path: &std::path::Path) -> (Running, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_example-rp"))
        .args(["--verifier", verifier, "--ca-cert"])
        .arg(ca_path)
        .args([
            "--audience",
            AUDIENCE,
            "--scope",
            "inference:invoke",
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
    let Some(addr) = line.trim().strip_prefix("example-rp listening on http://") else {
        let _ = child.kill();
        let mut log = String::new();
        let _ = stderr.read_to_string(&mut log);
        panic!("no listening line: {line:?}\nstderr:\n{log}");
    };
    // Drain stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    (Running(child), addr.to_string())
}

/// The wall clock: `example-rp` is a binary and reads it, so the tokens and
/// proofs sent to it must be current (the library itself takes `now`).
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn token_for(issuer: &Issuer, agent: &Agent, verifier: &str, jti: &str, scope: &str) -> String {
    let now = unix_now();
    let mut claims = token_claims(&agent.jkt(), jti);
    claims["iss"] = json!(verifier);
    claims["iat"] = json!(now);
    claims["nbf"] = json!(now);
    claims["exp"] = json!(now + 300);
    claims["scope"] = json!(scope);
    issuer.sign("at+jwt", &claims)
}

struct Outcome {
    status: u16,
    challenge: String,
    body: Value,
}

async fn get_hello(
    client: &reqwest::Client,
    url: &str,
    authorization: Option<String>,
    dpop: Option<String>,
) -> Outcome {
    let mut request = client.get(url);
    if let Some(a) = authorization {
        request = request.header("authorization", a);
    }
    if let Some(d) = dpop {
        request = request.header("dpop", d);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = response.json().await.unwrap();
    Outcome {
        status,
        challenge,
        body,
    }
}

fn revocation_list(
    issuer: &Issuer,
    verifier: &str,
    cursor: i64,
    more: bool,
    entries: Value,
) -> String {
    issuer.sign(
        "revocation-list+jwt",
        &json!({"iss": verifier, "iat": unix_now(), "since": 0, "cursor": cursor,
                "more": more, "entries": entries}),
    )
}

fn entry(id: &str, kind: &str, target: &str, mode: &str) -> Value {
    let at = unix_now() - 100;
    json!({"id": id, "kind": kind, "target": target, "mode": mode, "reason": format!("test {id}"),
           "revoked_at": at, "updated_at": at, "lifted": false, "cascade_from": null})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_rp_accepts_bound_tokens_and_follows_revocations() {
    let issuer = Issuer::new();
    let mock: Shared = Arc::new(Mutex::new(Mock {
        jwks: issuer.jwks_json(),
        ..Mock::default()
    }));
    let (verifier, ca_pem) = start_verifier(Arc::clone(&mock));
    let ca_path =
        std::env::temp_dir().join(format!("example-rp-test-ca-{}.pem", std::process::id()));
    std::fs::write(&ca_path, ca_pem).unwrap();
    let (_rp, addr) = start_rp(&verifier, &ca_path);
    let url = format!("http://{addr}/hello");
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
        )
        .build()
        .unwrap();

    let agent = Agent::p256();
    let token = token_for(&issuer, &agent, &verifier, "tok-1", "inference:invoke");
    let dpop_auth = || Some(format!("DPoP {token}"));
    let proof = |jti: &str| Some(agent.proof("GET", &url, Some(&token), None, unix_now(), jti));

    // No revocation endpoint (404): a failed refresh, so nothing is accepted.
    let refused = get_hello(&client, &url, dpop_auth(), proof("p0")).await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.body["error"], "temporarily_unavailable");
    mock.lock().unwrap().revocations = Some(vec![(
        0,
        revocation_list(&issuer, &verifier, unix_now(), false, json!([])),
    )]);
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // A bound token with its proof, the (empty) list current.
    let first = proof("p1");
    let ok = get_hello(&client, &url, dpop_auth(), first.clone()).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(
        ok.body,
        json!({"hello": format!("spiffe://attest-gate.test/example-snp-agent/{}", agent.jkt()),
               "scope": "inference:invoke", "quarantined": false})
    );

    // Replay, no proof, Bearer, a thief's proof: all 401.
    let replay = get_hello(&client, &url, dpop_auth(), first).await;
    assert_eq!(replay.status, 401);
    assert!(
        replay
            .challenge
            .starts_with(r#"DPoP error="invalid_dpop_proof""#),
        "{}",
        replay.challenge
    );
    assert_eq!(replay.body["error"], "invalid_dpop_proof");
    let bare = get_hello(&client, &url, dpop_auth(), None).await;
    assert_eq!(
        (bare.status, bare.body["error"].as_str()),
        (401, Some("invalid_dpop_proof"))
    );
    let bearer = get_hello(&client, &url, Some(format!("Bearer {token}")), proof("p2")).await;
    assert_eq!(
        (bearer.status, bearer.body["error"].as_str()),
        (401, Some("invalid_token"))
    );
    let thief = Agent::p256();
    let stolen = thief.proof("GET", &url, Some(&token), None, unix_now(), "p3");
    let stolen = get_hello(&client, &url, dpop_auth(), Some(stolen)).await;
    assert_eq!(stolen.status, 401);

    // Without the scope: 403.
    let narrow = token_for(&issuer, &agent, &verifier, "tok-2", "tools:search");
    let narrow_proof = agent.proof("GET", &url, Some(&narrow), None, unix_now(), "p4");
    let scope = get_hello(
        &client,
        &url,
        Some(format!("DPoP {narrow}")),
        Some(narrow_proof),
    )
    .await;
    assert_eq!(
        (scope.status, scope.body["error"].as_str()),
        (403, Some("insufficient_scope"))
    );

    // Key rotation: a token under a new key is accepted after a JWKS re-fetch.
    let rotated = Issuer::new();
    mock.lock().unwrap().jwks = json!({"keys": [rotated.public_jwk(), issuer.public_jwk()]});
    let new_token = token_for(&rotated, &agent, &verifier, "tok-3", "inference:invoke");
    let new_proof = agent.proof("GET", &url, Some(&new_token), None, unix_now(), "p5");
    let ok = get_hello(
        &client,
        &url,
        Some(format!("DPoP {new_token}")),
        Some(new_proof),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);

    // Quarantine the workload, then revoke the token.
    let first_cursor = unix_now();
    mock.lock().unwrap().revocations = Some(vec![(
        0,
        revocation_list(
            &issuer,
            &verifier,
            first_cursor,
            false,
            json!([entry("q", "workload", "example-snp-agent", "quarantine")]),
        ),
    )]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let flagged = get_hello(&client, &url, dpop_auth(), proof("p6")).await;
    assert_eq!(flagged.status, 200, "{}", flagged.body);
    assert_eq!(flagged.body["quarantined"], true);

    // Two pages: the revocation is on the second, which the RP must fetch
    // at once because the first says `more`.
    let page_two_from = first_cursor + 1000;
    mock.lock().unwrap().revocations = Some(vec![
        (
            0,
            revocation_list(
                &rotated,
                &verifier,
                page_two_from,
                true,
                json!([entry("q", "workload", "example-snp-agent", "quarantine")]),
            ),
        ),
        (
            page_two_from,
            revocation_list(
                &rotated,
                &verifier,
                page_two_from + 1,
                false,
                json!([entry("r", "jti", "tok-1", "immediate")]),
            ),
        ),
    ]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let revoked = get_hello(&client, &url, dpop_auth(), proof("p7")).await;
    assert_eq!(revoked.status, 401, "{}", revoked.body);
    assert_eq!(revoked.body["error"], "token_revoked");
    assert!(revoked.challenge.contains(r#"error="token_revoked""#));

    // It asked from 0 while there was no list, then from the cursor.
    let queries = mock.lock().unwrap().since_queries.clone();
    assert_eq!(queries.first().map(String::as_str), Some("0"));
    assert!(queries.contains(&first_cursor.to_string()), "{queries:?}");
    assert!(queries.contains(&page_two_from.to_string()), "{queries:?}");
    let _ = std::fs::remove_file(&ca_path);
}
