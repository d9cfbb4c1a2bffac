//! End-to-end tests of `verifier serve` over real HTTPS on loopback: the
//! binary is started as a child process with its own data directory, and
//! the tests play the agent with evidence the forge makes *now* under the
//! project's test roots.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use attest_gate_core::ModelDigest;
use attest_gate_forge::{live, tdx::TdxSpec};
use attest_gate_verifier::{issue_nonce, NonceKey};
use attest_gate_verifier::{AuditQuery, Store};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};
use time::OffsetDateTime;

async fn full_flow(tee: Tee) {
    let server = start(Options::default());
    let agent = Agent::new();
    let mut body = bound_request(&server, tee, &agent, |_| {}).await;
    body["csr"] = json!(agent.csr());
    let (status, response) = server.post("/v1/attest", &body).await;
    assert_eq!(status, 200, "{response}");

    let (_, jwks) = server.get("/.well-known/jwks.json").await;
    let jwks: Value = serde_json::from_str(&jwks).unwrap();
    let (header, claims) = verify_jwt(response["access_token"].as_str().unwrap(), &jwks);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "ES256");
    let name = tee_name(tee);
    assert_eq!(claims["iss"], server.url.as_str());
    assert_eq!(
        claims["sub"],
        format!(
            "spiffe://attest-gate.test/example-{name}-agent/{}",
            agent.jwk.jkt()
        )
    );
    assert_eq!(claims["aud"], "https://rp.attest-gate.test");
    assert_eq!(claims["scope"], "inference:invoke tools:search");
    assert_eq!(claims["cnf"]["jkt"], agent.jwk.jkt());
    assert_eq!(claims["act_for"], "user:alice");
    assert_eq!(claims["intent"]["task_id"], "task-42");
    assert_eq!(claims["provenance"]["tee"], name);
    assert_eq!(
        claims["provenance"]["workload"],
        format!("example-{name}-agent")
    );
    assert_eq!(claims["provenance"]["model_digest"], agent.model.to_hex());
    assert_eq!(claims["provenance"]["test_root"], true);
    assert_eq!(claims["session"]["chain"][0], claims["sub"]);
    let exp = claims["exp"].as_i64().unwrap();
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(exp - iat, 600);
    assert_eq!(claims["nbf"], claims["iat"]);
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    // A test root is never an affirming appraisal.
    assert_eq!(claims["ear"]["submods"][name]["ear.status"], "warning");
    assert_eq!(response["token_type"], "DPoP");
    assert_eq!(response["test_root"], true);

    // The X.509-SVID names the SPIFFE ID, lives as long, and chains to the bundle.
    let svid_pem = response["svid"].as_str().unwrap();
    let chain = pem::parse_many(svid_pem).unwrap();
    assert_eq!(chain.len(), 2);
    let (_, svid) = x509_parser::parse_x509_certificate(chain[0].contents()).unwrap();
    let uri = svid
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .find_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(u) => Some(u.to_string()),
            _ => None,
        })
        .unwrap();
    assert_eq!(uri, claims["sub"].as_str().unwrap());
    let san = svid.subject_alternative_name().unwrap().unwrap();
    assert_eq!(
        san.value.general_names.len(),
        1,
        "the SPIFFE ID is the only SAN"
    );
    let basic = svid.basic_constraints().unwrap().unwrap();
    assert!(!basic.value.ca);
    let eku = svid.extended_key_usage().unwrap().unwrap();
    assert!(eku.value.client_auth && eku.value.server_auth);
    let ku = svid.key_usage().unwrap().unwrap();
    assert!(ku.value.digital_signature() && !ku.value.key_cert_sign());
    // Test-root evidence is said so in the SVID too.
    assert!(svid
        .subject()
        .to_string()
        .contains("attest-gate test-root evidence"));
    assert_eq!(svid.validity().not_after.timestamp(), exp);
    assert_eq!(
        svid.public_key().subject_public_key.data.as_ref(),
        agent.key.public_key_raw()
    );
    let (_, bundle) = server.get("/v1/bundle").await;
    let root = pem::parse(&bundle).unwrap();
    let (_, root) = x509_parser::parse_x509_certificate(root.contents()).unwrap();
    let (_, intermediate) = x509_parser::parse_x509_certificate(chain[1].contents()).unwrap();
    svid.verify_signature(Some(intermediate.public_key()))
        .unwrap();
    intermediate
        .verify_signature(Some(root.public_key()))
        .unwrap();

    // A second SVID for the same key has another serial (RFC 5280 §4.1.2.2).
    let mut again = bound_request(&server, tee, &agent, |_| {}).await;
    again["csr"] = json!(agent.csr());
    let (status, second) = server.post("/v1/attest", &again).await;
    assert_eq!(status, 200, "{second}");
    let second_pem = pem::parse_many(second["svid"].as_str().unwrap()).unwrap();
    let (_, second_svid) = x509_parser::parse_x509_certificate(second_pem[0].contents()).unwrap();
    assert_ne!(second_svid.raw_serial(), svid.raw_serial());

    let audit = Store::open(&format!(
        "sqlite://{}",
        server.data_dir.path().join("attest-gate.db").display()
    ))
    .await
    .unwrap()
    .audit_records(&AuditQuery {
        action: Some("attest".into()),
        limit: 10,
        ..AuditQuery::default()
    })
    .await
    .unwrap();
    assert!(
        audit
            .iter()
            .any(|r| r.event.decision == "allow" && r.event.code == "ok"),
        "{audit:?}"
    );
}

#[tokio::test]
async fn nitro_challenge_attest_token_and_svid() {
    full_flow(Tee::Nitro).await;
}

#[tokio::test]
async fn snp_challenge_attest_token_and_svid() {
    full_flow(Tee::Snp).await;
}

#[tokio::test]
async fn tdx_challenge_attest_token_and_svid() {
    full_flow(Tee::Tdx).await;
}

#[tokio::test]
async fn a_nonce_is_single_use() {
    let server = start(Options::default());
    let agent = Agent::new();
    let body = bound_request(&server, Tee::Nitro, &agent, |_| {}).await;
    assert_eq!(server.post("/v1/attest", &body).await.0, 200);
    server.expect_refusal(&body, 403, "nonce_replayed").await;

    // Eight copies at once: exactly one wins.
    let body = bound_request(&server, Tee::Tdx, &agent, |_| {}).await;
    let statuses = race(&[&server], &body, 8).await;
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == (200, "ok".into()))
            .count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == (403, "nonce_replayed".into()))
            .count(),
        7,
        "{statuses:?}"
    );
}

/// Sends `body` `copies` times at once, spread over `servers`; returns each
/// (status, code), `ok` for success.
async fn race(servers: &[&Server], body: &Value, copies: usize) -> Vec<(u16, String)> {
    let mut attempts = Vec::new();
    for i in 0..copies {
        let server = servers[i % servers.len()];
        let (client, url, body) = (server.client.clone(), server.url.clone(), body.clone());
        attempts.push(tokio::spawn(async move {
            let response = client
                .post(format!("{url}/v1/attest"))
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            let code = if status == 200 {
                "ok".to_string()
            } else {
                code(&body).to_string()
            };
            (status, code)
        }));
    }
    let mut out = Vec::new();
    for attempt in attempts {
        out.push(attempt.await.unwrap());
    }
    out
}

#[tokio::test]
async fn an_expired_or_foreign_nonce_is_refused() {
    let server = start(Options::default());
    let agent = Agent::new();
    let ttl = time::Duration::seconds(60);
    let past = OffsetDateTime::now_utc() - time::Duration::minutes(5);
    let expired = issue_nonce(&server.nonce_key(), past, ttl).unwrap().nonce;
    let foreign = issue_nonce(&NonceKey::new(&[7; 32]), OffsetDateTime::now_utc(), ttl)
        .unwrap()
        .nonce;
    for (nonce, expected) in [(expired, "nonce_expired"), (foreign, "nonce_unknown")] {
        let body = signed_request(Tee::Nitro, &agent, &nonce, &agent.model);
        server.expect_refusal(&body, 403, expected).await;
    }
}

#[tokio::test]
async fn evidence_bound_to_another_nonce_key_or_model_is_refused() {
    let server = start(Options::default());
    let agent = Agent::new();
    // Evidence bound to one challenge, presented with another.
    let first = server.nonce().await;
    let second = server.nonce().await;
    let ev = evidence(Tee::Snp, agent.report_data(&first, &agent.model), |_| {});
    server
        .expect_refusal(
            &request(Tee::Snp, &agent, &second, &ev, &agent.model),
            403,
            "binding_mismatch",
        )
        .await;
    // Bound to the right nonce but presented with another agent's key.
    let other = Agent::new();
    let ev = evidence(Tee::Tdx, agent.report_data(&second, &agent.model), |_| {});
    server
        .expect_refusal(
            &request(Tee::Tdx, &other, &second, &ev, &agent.model),
            403,
            "binding_mismatch",
        )
        .await;
    // Bound to one model, presented as serving another (allowed or not).
    let third = server.nonce().await;
    let ev = evidence(
        Tee::Nitro,
        agent.report_data(&third, &ModelDigest([0x33; 48])),
        |_| {},
    );
    server
        .expect_refusal(
            &request(Tee::Nitro, &agent, &third, &ev, &agent.model),
            403,
            "binding_mismatch",
        )
        .await;
    // A CSR for another key than the bound one.
    let mut body = bound_request(&server, Tee::Nitro, &agent, |_| {}).await;
    body["csr"] = json!(other.csr());
    server.expect_refusal(&body, 403, "csr_key_mismatch").await;
    // The nonce of a refused attempt is still good: a refusal changes no
    // state, even one made after the evidence verified and matched.
    body.as_object_mut().unwrap().remove("csr");
    let audience = body["intent"]["audience"].clone();
    body["intent"]["audience"] = json!("https://elsewhere.example");
    server
        .expect_refusal(&body, 403, "audience_not_allowed")
        .await;
    body["intent"]["audience"] = audience;
    assert_eq!(server.post("/v1/attest", &body).await.0, 200);
}

/// An SNP workload stricter than the example: another launch measurement
/// (first byte 0xff), SNP firmware SPL at least 9. Returns the file and the
/// measurement.
fn strict_snp_workload() -> (String, [u8; 48]) {
    let text = std::fs::read_to_string(repo().join("measurements/example-snp-agent.toml")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("measurement = "))
        .unwrap();
    let example = line.split('"').nth(1).unwrap();
    let strict = format!("ff{}", &example[2..]);
    let text = text
        .replace(example, &strict)
        .replace(
            "name = \"example-snp-agent\"",
            "name = \"strict-snp-agent\"",
        )
        .replace("min_snp = 8", "min_snp = 9");
    assert!(text.contains("strict-snp-agent") && text.contains("min_snp = 9"));
    (text, hex::decode(strict).unwrap().try_into().unwrap())
}

#[tokio::test]
async fn appraisal_rejections_each_have_their_code() {
    let (strict, measurement) = strict_snp_workload();
    let server = start(Options {
        extra_workloads: vec![("strict-snp-agent.toml", strict)],
        ..Options::default()
    });
    let agent = Agent::new();

    // Another launch measurement than any workload allows.
    let body = bound_request(&server, Tee::Snp, &agent, |s| {
        if let Spec::Snp(r) = s {
            r.measurement = [0x55; 48];
        }
    })
    .await;
    server
        .expect_refusal(&body, 403, "measurement_not_allowed")
        .await;

    // A model the workload does not serve.
    let nonce = server.nonce().await;
    let other_model = ModelDigest([0x11; 48]);
    let ev = evidence(Tee::Nitro, agent.report_data(&nonce, &other_model), |_| {});
    server
        .expect_refusal(
            &request(Tee::Nitro, &agent, &nonce, &ev, &other_model),
            403,
            "model_not_allowed",
        )
        .await;

    // The strict workload's measurement, on firmware below its minimum.
    let body = bound_request(&server, Tee::Snp, &agent, |s| {
        if let Spec::Snp(r) = s {
            r.measurement = measurement;
        }
    })
    .await;
    server.expect_refusal(&body, 403, "tcb_below_minimum").await;

    // A debug-mode guest (SNP policy DEBUG) of an allowed image.
    let body = bound_request(&server, Tee::Snp, &agent, |s| {
        if let Spec::Snp(r) = s {
            r.policy |= 1 << 19;
        }
    })
    .await;
    server.expect_refusal(&body, 403, "debug_enclave").await;

    // A scope outside the workload's grant is not granted; the rest are.
    let mut body = bound_request(&server, Tee::Tdx, &agent, |_| {}).await;
    body["intent"]["scopes"] = json!(["inference:invoke", "admin:everything"]);
    let (status, response) = server.post("/v1/attest", &body).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["scope"], "inference:invoke");

    // An audience the workload may not address.
    let mut body = bound_request(&server, Tee::Tdx, &agent, |_| {}).await;
    body["intent"]["audience"] = json!("https://elsewhere.example");
    server
        .expect_refusal(&body, 403, "audience_not_allowed")
        .await;
}

#[tokio::test]
async fn policy_decides_which_granted_scopes_are_issued() {
    let server = start(Options::default());
    let agent = Agent::new();
    // The default policy lets agents act for users and the system only.
    let mut body = bound_request(&server, Tee::Nitro, &agent, |_| {}).await;
    body["principal"] = json!("service:batch");
    server.expect_refusal(&body, 403, "scope_not_allowed").await;

    // An operator's policy that forbids one scope narrows the grant.
    let server = start(Options {
        policy: Some(
            r#"permit (principal, action == AttestGate::Action::"issue", resource);
               forbid (principal, action, resource == AttestGate::Scope::"tools:search")
               when { context.act_for != "system" };"#,
        ),
        ..Options::default()
    });
    let body = bound_request(&server, Tee::Snp, &agent, |_| {}).await;
    let (status, response) = server.post("/v1/attest", &body).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["scope"], "inference:invoke");
    let mut body = bound_request(&server, Tee::Snp, &agent, |_| {}).await;
    body["intent"]["scopes"] = json!(["tools:search"]);
    server.expect_refusal(&body, 403, "scope_not_allowed").await;

    // A forbid that fails to evaluate denies (Cedar itself would skip it).
    let server = start(Options {
        policy: Some(
            r#"permit (principal, action == AttestGate::Action::"issue", resource);
               forbid (principal, action, resource) when { principal.no_such_attribute == 1 };"#,
        ),
        ..Options::default()
    });
    let body = bound_request(&server, Tee::Nitro, &agent, |_| {}).await;
    server.expect_refusal(&body, 403, "scope_not_allowed").await;
}

#[tokio::test]
async fn the_default_policy_keeps_admin_scopes_from_test_root_evidence() {
    // The Nitro example, granted an admin scope as well.
    let nitro = std::fs::read_to_string(repo().join("measurements/example-nitro-agent.toml"))
        .unwrap()
        .replace(
            "scopes = [\"inference:invoke\"",
            "scopes = [\"admin:ops\", \"inference:invoke\"",
        );
    assert!(nitro.contains("admin:ops"));
    let server = start(Options {
        extra_workloads: vec![("example-nitro-agent.toml", nitro)],
        ..Options::default()
    });
    let agent = Agent::new();
    let mut body = bound_request(&server, Tee::Nitro, &agent, |_| {}).await;
    body["intent"]["scopes"] = json!(["admin:ops", "inference:invoke"]);
    let (status, response) = server.post("/v1/attest", &body).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["scope"], "inference:invoke");
    let mut body = bound_request(&server, Tee::Nitro, &agent, |_| {}).await;
    body["intent"]["scopes"] = json!(["admin:ops"]);
    server.expect_refusal(&body, 403, "scope_not_allowed").await;
}

#[test]
fn dev_mode_listens_on_loopback_only() {
    let data = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_verifier"))
        .args(["serve", "--dev", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("loopback"));
}

#[tokio::test]
async fn without_dev_test_root_evidence_is_untrusted() {
    let server = start(Options {
        vendor_only: true,
        ..Options::default()
    });
    let agent = Agent::new();
    for tee in [Tee::Nitro, Tee::Snp, Tee::Tdx] {
        let body = bound_request(&server, tee, &agent, |_| {}).await;
        let (status, response) = server.post("/v1/attest", &body).await;
        assert_eq!(
            (status, code(&response)),
            (403, "chain_untrusted"),
            "{tee:?}: {response}"
        );
    }
}

#[tokio::test]
async fn malformed_and_oversized_requests_get_json_errors() {
    let server = start(Options::default());
    let response = server
        .client
        .post(format!("{}/v1/attest", server.url))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(code(&body), "malformed_request");

    let agent = Agent::new();
    let mut body = bound_request(&server, Tee::Nitro, &agent, |_| {}).await;
    body["evidence"] = json!("A".repeat(300 * 1024));
    // The server answers before reading the whole body and then closes the
    // connection; keep it out of the client's pool.
    let response = server
        .client
        .post(format!("{}/v1/attest", server.url))
        .header("connection", "close")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    let refusal: Value = response.json().await.unwrap();
    assert_eq!(code(&refusal), "body_too_large");

    for (field, value, expected) in [
        ("tee", json!("sgx"), "malformed_request"),
        ("evidence", json!("%%%"), "malformed_request"),
        ("nonce", json!("%%%"), "malformed_request"),
        ("model_digest", json!("abcd"), "malformed_request"),
        ("principal", json!("root"), "malformed_request"),
        ("public_key", json!({"kty": "RSA"}), "invalid_public_key"),
        ("csr", json!("not a csr"), "malformed_request"),
        ("unexpected", json!(1), "malformed_request"),
    ] {
        let mut bad = bound_request(&server, Tee::Nitro, &agent, |_| {}).await;
        bad[field] = value;
        let (status, response) = server.post("/v1/attest", &bad).await;
        assert_eq!(
            (status, code(&response)),
            (400, expected),
            "{field}: {response}"
        );
    }
    // CSRs in the right alphabet that are not a usable request.
    let pem_csr = pem::parse(agent.csr()).unwrap();
    let mut broken_signature = pem_csr.contents().to_vec();
    *broken_signature.last_mut().unwrap() ^= 1;
    let ed25519 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let ed25519_csr = rcgen::CertificateParams::default()
        .serialize_request(&ed25519)
        .unwrap()
        .pem()
        .unwrap();
    for (why, csr, expected) in [
        (
            "a certificate, not a request",
            pem::encode(&pem::Pem::new("CERTIFICATE", pem_csr.contents())),
            "csr_invalid",
        ),
        (
            "a broken self-signature",
            pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", broken_signature)),
            "csr_invalid",
        ),
        (
            "base64 of no DER",
            STANDARD.encode(b"not a DER request"),
            "csr_invalid",
        ),
        ("an Ed25519 key", ed25519_csr, "csr_unsupported_key"),
    ] {
        let mut bad = bound_request(&server, Tee::Nitro, &agent, |_| {}).await;
        bad["csr"] = json!(csr);
        let (status, response) = server.post("/v1/attest", &bad).await;
        assert_eq!(
            (status, code(&response)),
            (400, expected),
            "{why}: {response}"
        );
    }
    // A query the HTTP layer cannot parse, before any handler runs.
    let (status, body) = server.get("/v1/revocations?since=soon").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(code(&serde_json::from_str(&body).unwrap()), "bad_request");

    let (status, body) = server.get("/v1/nothing-here").await;
    assert_eq!(status, 404);
    assert_eq!(code(&serde_json::from_str(&body).unwrap()), "not_found");
    let (status, body) = server.get("/v1/attest").await;
    assert_eq!(status, 405);
    assert_eq!(
        code(&serde_json::from_str(&body).unwrap()),
        "method_not_allowed"
    );
}

#[tokio::test]
async fn admin_endpoints_need_the_admin_token() {
    let server = start(Options::default());
    assert!(
        server.admin_token.starts_with("agadm_"),
        "the first start prints the token"
    );
    for path in ["/v1/admin/reload", "/v1/admin/rotate-signing-key"] {
        let response = server
            .client
            .post(format!("{}{path}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 401, "{path} without a token");
        let body: Value = response.json().await.unwrap();
        assert_eq!(code(&body), "unauthorized", "{path} without a token");
        let response = server
            .client
            .post(format!("{}{path}", server.url))
            .bearer_auth("agadm_not-the-token")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 401, "{path} with a wrong token");
        let body: Value = response.json().await.unwrap();
        assert_eq!(code(&body), "unauthorized", "{path} with a wrong token");
    }
    let (_, before) = server.get("/.well-known/jwks.json").await;
    let before: Value = serde_json::from_str(&before).unwrap();
    let response = server
        .client
        .post(format!("{}/v1/admin/rotate-signing-key", server.url))
        .bearer_auth(&server.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let (_, after) = server.get("/.well-known/jwks.json").await;
    let after: Value = serde_json::from_str(&after).unwrap();
    assert_eq!(after["keys"].as_array().unwrap().len(), 2);
    assert_eq!(after["keys"][1]["kid"], before["keys"][0]["kid"]);

    let response = server
        .client
        .post(format!("{}/v1/admin/reload", server.url))
        .bearer_auth(&server.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["workloads"], 3);

    let (status, discovery) = server.get("/.well-known/openid-configuration").await;
    assert_eq!(status, 200);
    let discovery: Value = serde_json::from_str(&discovery).unwrap();
    assert_eq!(discovery["issuer"], server.url.as_str());
    assert_eq!(
        discovery["jwks_uri"],
        format!("{}/.well-known/jwks.json", server.url)
    );
}

#[test]
fn keys_at_rest_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let server = start(Options::default());
    let data = server.data_dir.path();
    for file in [
        "keys-dev/nonce.key",
        "keys-dev/jwt/current.p8",
        "keys-dev/ca/root.key.pem",
        "keys-dev/ca/intermediate.key.pem",
        "tls/key.pem",
        "admin-token.sha256",
        "admin-token.new",
        "attest-gate.db",
        "attest-gate.db-wal",
    ] {
        let mode = std::fs::metadata(data.join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
}

#[test]
fn the_database_url_can_come_from_the_environment() {
    // A URL with a password should not sit in the process list.
    let elsewhere = tempfile::tempdir().unwrap();
    let file = elsewhere.path().join("from-env.db");
    let server = start(Options {
        env: vec![(
            "ATTEST_GATE_DATABASE_URL".into(),
            format!("sqlite://{}?mode=rwc", file.display()),
        )],
        ..Options::default()
    });
    assert!(file.exists(), "the environment's database is used");
    assert!(!server.data_dir.path().join("attest-gate.db").exists());
}

/// PostgreSQL for the shared-store test: `ATTEST_GATE_TEST_POSTGRES`, else the
/// development machines' server; `None` (test skipped, said aloud) if unreachable.
fn postgres_url() -> Option<String> {
    let url = std::env::var("ATTEST_GATE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    if std::net::TcpStream::connect_timeout(
        &"127.0.0.1:5432".parse().unwrap(),
        Duration::from_secs(2),
    )
    .is_err()
        && std::env::var("ATTEST_GATE_TEST_POSTGRES").is_err()
    {
        return None;
    }
    Some(url)
}

#[tokio::test]
async fn two_replicas_sharing_postgres_accept_a_nonce_once() {
    let Some(base) = postgres_url() else {
        // CI machines run PostgreSQL: there, its absence is a failure.
        assert!(
            std::env::var("CI").is_err(),
            "CI must provide PostgreSQL on 127.0.0.1:5432"
        );
        eprintln!("SKIPPED: no PostgreSQL on 127.0.0.1:5432 (set ATTEST_GATE_TEST_POSTGRES)");
        return;
    };
    // A schema of its own, so runs never see each other's rows.
    let schema = format!("ag_test_{}", std::process::id());
    let admin = sqlx::PgPool::connect(&base).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&admin)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");

    let shared = tempfile::tempdir().unwrap();
    let first = start(Options {
        database: Some(url.clone()),
        data_dir: Some(shared.path().to_path_buf()),
        ..Options::default()
    });
    let second = start(Options {
        database: Some(url),
        data_dir: Some(shared.path().to_path_buf()),
        ..Options::default()
    });
    let agent = Agent::new();
    let body = bound_request(&first, Tee::Snp, &agent, |_| {}).await;
    let (status, response) = first.post("/v1/attest", &body).await;
    assert_eq!(status, 200, "{response}");
    second.expect_refusal(&body, 403, "nonce_replayed").await;
    // And the other way round, with a nonce from the second replica.
    let body = bound_request(&second, Tee::Tdx, &agent, |_| {}).await;
    assert_eq!(second.post("/v1/attest", &body).await.0, 200);
    first.expect_refusal(&body, 403, "nonce_replayed").await;

    // Both replicas at once, four copies each: exactly one wins.
    let body = bound_request(&first, Tee::Nitro, &agent, |_| {}).await;
    let statuses = race(&[&first, &second], &body, 8).await;
    assert_eq!(
        statuses.iter().filter(|s| s.0 == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|s| s.0 == 200 || s.1 == "nonce_replayed"),
        "{statuses:?}"
    );

    // A revocation made on one replica reaches the other's in-memory copy
    // (LISTEN/NOTIFY): the revoked agent cannot come back through it.
    let body = bound_request(&second, Tee::Snp, &agent, |_| {}).await;
    let (status, issued) = second.post("/v1/attest", &body).await;
    assert_eq!(status, 200, "{issued}");
    let payload = issued["access_token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap()
        .to_string();
    use base64::Engine as _;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    let jti = claims["jti"].as_str().unwrap().to_string();
    let bearer = format!("Bearer {}", first.admin_token);
    let (status, _, revoked) = first
        .post_with(
            "/v1/admin/revoke",
            &serde_json::json!({"kind": "jti", "target": jti, "mode": "immediate", "reason": "replica test"}),
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(status, 200, "{revoked}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let body = bound_request(&second, Tee::Snp, &agent, |_| {}).await;
        let (status, answer) = second.post("/v1/attest", &body).await;
        if status == 403 && code(&answer) == "revoked" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the other replica still issues: {status} {answer}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    drop((first, second));
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin)
        .await
        .unwrap();
}

/// Files collateral in a keyed folder (`keyed`, for names starting with
/// `keyed_prefix`) and its parent (the shared folder, for the rest).
fn file_collateral(collateral: &[(String, Vec<u8>)], keyed: &Path, keyed_prefix: &str) {
    std::fs::create_dir_all(keyed).unwrap();
    for (name, bytes) in collateral {
        let dir = if name.starts_with(keyed_prefix) {
            keyed
        } else {
            keyed.parent().unwrap()
        };
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

#[tokio::test]
async fn the_collateral_folder_is_keyed_by_fmspc_and_chip_and_wins_over_the_request() {
    let agent = Agent::new();
    let folder = tempfile::tempdir().unwrap();
    let server = start(Options {
        collateral_dir: Some(folder.path().to_path_buf()),
        ..Options::default()
    });
    // TDX: TCB info under tdx/<fmspc>/, the rest shared in tdx/.
    let nonce = server.nonce().await;
    let (quote, collateral) = evidence(Tee::Tdx, agent.report_data(&nonce, &agent.model), |_| {});
    let fmspc = attest_gate_core::tdx::unverified_pck_lookup(&quote)
        .unwrap()
        .0;
    let keyed = folder.path().join("tdx").join(hex::encode(fmspc));
    file_collateral(&collateral, &keyed, "tcb_info");
    let (status, response) = server
        .post(
            "/v1/attest",
            &request(
                Tee::Tdx,
                &agent,
                &nonce,
                &(quote.clone(), vec![]),
                &agent.model,
            ),
        )
        .await;
    assert_eq!(status, 200, "{response}");

    // A request that brings other (stale) TCB info does not replace the folder's.
    let nonce = server.nonce().await;
    let ev = evidence(Tee::Tdx, agent.report_data(&nonce, &agent.model), |_| {});
    let stale = live::tdx(
        &TdxSpec::default(),
        OffsetDateTime::now_utc() - time::Duration::days(90),
    )
    .unwrap()
    .1;
    let (status, response) = server
        .post(
            "/v1/attest",
            &request(
                Tee::Tdx,
                &agent,
                &nonce,
                &(ev.0, stale.clone()),
                &agent.model,
            ),
        )
        .await;
    assert_eq!(
        status, 200,
        "the folder's current collateral wins: {response}"
    );
    // Without the folder, that stale set is refused.
    let bare = start(Options::default());
    let nonce = bare.nonce().await;
    let ev = evidence(Tee::Tdx, agent.report_data(&nonce, &agent.model), |_| {});
    let (status, response) = bare
        .post(
            "/v1/attest",
            &request(Tee::Tdx, &agent, &nonce, &(ev.0, stale), &agent.model),
        )
        .await;
    assert_eq!(status, 403, "{response}");

    // SNP: the VCEK under snp/<chip_id>-<reported_tcb>/, the chain shared.
    let nonce = server.nonce().await;
    let (report, collateral) = evidence(Tee::Snp, agent.report_data(&nonce, &agent.model), |_| {});
    let lookup = attest_gate_core::snp::unverified_vcek_lookup(&report).unwrap();
    let keyed = folder.path().join("snp").join(format!(
        "{}-{:016x}",
        hex::encode(lookup.chip_id),
        lookup.reported_tcb
    ));
    file_collateral(&collateral, &keyed, "vcek");
    let (status, response) = server
        .post(
            "/v1/attest",
            &request(Tee::Snp, &agent, &nonce, &(report, vec![]), &agent.model),
        )
        .await;
    assert_eq!(status, 200, "{response}");
}

#[tokio::test]
async fn vendor_rooted_snp_evidence_needs_amds_crl() {
    // A real report, verified to the compiled-in AMD root: the service goes
    // past authenticity and refuses for want of revocation checking (before
    // the binding, which a recorded report cannot carry).
    let Some(fixtures) = attest_gate_tests::fixtures_dir() else {
        return;
    };
    let server = start(Options {
        vendor_only: true,
        ..Options::default()
    });
    let agent = Agent::new();
    let nonce = server.nonce().await;
    let report = std::fs::read(fixtures.join("snp/virtee-sev/report_milan.report.bin")).unwrap();
    let vcek = std::fs::read(fixtures.join("snp/virtee-sev/vcek_milan.der")).unwrap();
    let body = request(
        Tee::Snp,
        &agent,
        &nonce,
        &(report, vec![("vcek.der".to_string(), vcek)]),
        &agent.model,
    );
    server
        .expect_refusal(&body, 403, "revocation_not_checked")
        .await;
}

#[test]
fn sighup_reloads_and_sigterm_stops_gracefully() {
    let mut server = start(Options {
        extra_workloads: vec![("strict-snp-agent.toml", strict_snp_workload().0)],
        ..Options::default()
    });
    let signal = |name: &str, pid: u32| {
        let status = Command::new("kill")
            .args([name, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    let pid = server.child.id();
    signal("-HUP", pid);
    assert!(
        server.wait_for_log("reloaded on SIGHUP"),
        "no reload logged"
    );
    signal("-TERM", pid);
    assert!(server.wait_for_log("stopped"), "no orderly stop logged");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}
