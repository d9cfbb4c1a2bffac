//! End-to-end tests of a credential's life after issuance, over real HTTPS
//! against the `verifier` binary: delegation by token exchange (DPoP, server
//! nonces, attenuation, depth, cascade), the three revocation modes as
//! introspection, the signed revocation list and re-attestation see them,
//! persistence across a restart, reappraisal, policy dry-run, metrics, and
//! that no secret reaches the audit log or the logs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use attest_gate_relying_party::{Jwks, RevocationList};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::*;
use serde_json::{json, Value};

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

/// An attested agent and its token.
struct Holder {
    agent: Agent,
    token: String,
    claims: Value,
}

async fn attest(server: &Server, tee: Tee) -> Holder {
    attest_as(server, tee, Agent::new()).await
}

async fn attest_as(server: &Server, tee: Tee, agent: Agent) -> Holder {
    let body = bound_request(server, tee, &agent, |_| {}).await;
    let (status, response) = server.post("/v1/attest", &body).await;
    assert_eq!(status, 200, "{response}");
    let token = response["access_token"].as_str().unwrap().to_string();
    let (_, claims) = decode(&token);
    Holder {
        agent,
        token,
        claims,
    }
}

fn decode(token: &str) -> (Value, Value) {
    let part = |i: usize| -> Value {
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token.split('.').nth(i).unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    (part(0), part(1))
}

/// One exchange call with an explicit proof; returns status, body, DPoP-Nonce.
async fn exchange_call(
    server: &Server,
    body: &Value,
    proof: Option<&str>,
) -> (u16, Value, Option<String>) {
    let mut request = server
        .client
        .post(format!("{}/v1/token/exchange", server.url))
        .json(body);
    if let Some(proof) = proof {
        request = request.header("DPoP", proof);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let nonce = response
        .headers()
        .get("dpop-nonce")
        .map(|v| v.to_str().unwrap().to_string());
    (status, response.json().await.unwrap_or(Value::Null), nonce)
}

fn exchange_body(parent: &Holder, child: &Agent, scope: &str) -> Value {
    json!({
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": parent.token,
        "subject_token_type": ACCESS_TOKEN,
        "actor_key": child.jwk.to_jwk(),
        "scope": scope,
        "audience": "https://rp.attest-gate.test",
        "purpose": "summarise-search-results",
    })
}

/// The RFC 9449 dance: a proof without a nonce earns `use_dpop_nonce` and a
/// nonce; the retry with it is decided on its merits.
async fn exchange(server: &Server, parent: &Holder, child: &Agent, scope: &str) -> (u16, Value) {
    let htu = format!("{}/v1/token/exchange", server.url);
    let body = exchange_body(parent, child, scope);
    let proof = parent.agent.dpop("POST", &htu, Some(&parent.token), None);
    let (status, response, nonce) = exchange_call(server, &body, Some(&proof)).await;
    assert_eq!(
        (status, code(&response)),
        (400, "use_dpop_nonce"),
        "{response}"
    );
    let nonce = nonce.expect("a DPoP-Nonce header");
    let proof = parent
        .agent
        .dpop("POST", &htu, Some(&parent.token), Some(&nonce));
    let (status, response, _) = exchange_call(server, &body, Some(&proof)).await;
    (status, response)
}

async fn delegate(server: &Server, parent: &Holder, scope: &str) -> Holder {
    let child = Agent::new();
    let (status, response) = exchange(server, parent, &child, scope).await;
    assert_eq!(status, 200, "{response}");
    let token = response["access_token"].as_str().unwrap().to_string();
    let (_, claims) = decode(&token);
    Holder {
        agent: child,
        token,
        claims,
    }
}

impl Server {
    async fn admin(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.admin_token)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn revoke(&self, kind: &str, target: &str, mode: &str) -> Value {
        let (status, body) = self
            .admin(
                "/v1/admin/revoke",
                &json!({"kind": kind, "target": target, "mode": mode, "reason": format!("test {mode}")}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Registers a relying party; returns its Basic credentials.
    async fn client(&self, id: &str) -> (String, String) {
        let (status, body) = self
            .admin("/v1/admin/clients", &json!({"client_id": id}))
            .await;
        assert_eq!(status, 200, "{body}");
        (
            id.to_string(),
            body["client_secret"].as_str().unwrap().to_string(),
        )
    }

    async fn introspect(&self, rp: &(String, String), token: &str) -> Value {
        let response = self
            .client
            .post(format!("{}/v1/introspect", self.url))
            .basic_auth(&rp.0, Some(&rp.1))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        response.json().await.unwrap()
    }

    async fn revocation_list(&self, since: i64) -> RevocationList {
        let (status, jws) = self.get(&format!("/v1/revocations?since={since}")).await;
        assert_eq!(status, 200, "{jws}");
        let (_, jwks) = self.get("/.well-known/jwks.json").await;
        let jwks = Jwks::from_json(&serde_json::from_str(&jwks).unwrap()).unwrap();
        RevocationList::verify(&jws, &jwks, &self.url).unwrap()
    }

    async fn audit_log(&self) -> Vec<Value> {
        let response = self
            .client
            .get(format!("{}/v1/admin/audit?limit=1000", self.url))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        response.json().await.unwrap()
    }
}

#[tokio::test]
async fn a_delegated_token_is_narrower_chained_and_dies_with_its_parent() {
    let server = start(Options::default());
    let rp = server.client("rp-one").await;
    let parent = attest(&server, Tee::Nitro).await;
    let htu = format!("{}/v1/token/exchange", server.url);

    // Without a proof, with another key's proof, or as a widening: refused.
    let thief = Agent::new();
    let body = exchange_body(&parent, &thief, "inference:invoke");
    let (status, response, nonce) = exchange_call(&server, &body, None).await;
    assert_eq!((status, code(&response)), (401, "invalid_dpop_proof"));
    let stolen = thief.dpop("POST", &htu, Some(&parent.token), nonce.as_deref());
    let (status, response, _) = exchange_call(&server, &body, Some(&stolen)).await;
    assert_eq!(
        (status, code(&response)),
        (401, "invalid_dpop_proof"),
        "{response}"
    );
    let (status, response) = exchange(
        &server,
        &parent,
        &Agent::new(),
        "inference:invoke admin:all",
    )
    .await;
    assert_eq!((status, code(&response)), (403, "scope_widening"));

    // A proof is good once.
    let child_agent = Agent::new();
    let body = exchange_body(&parent, &child_agent, "inference:invoke");
    let (_, _, nonce) = exchange_call(&server, &body, None).await;
    let proof = parent
        .agent
        .dpop("POST", &htu, Some(&parent.token), nonce.as_deref());
    let (status, response, _) = exchange_call(&server, &body, Some(&proof)).await;
    assert_eq!(status, 200, "{response}");
    let (status, response, _) = exchange_call(&server, &body, Some(&proof)).await;
    assert_eq!((status, code(&response)), (401, "invalid_dpop_proof"));

    let child = delegate(&server, &parent, "inference:invoke").await;
    let c = &child.claims;
    assert_eq!(c["scope"], "inference:invoke");
    assert_eq!(c["cnf"]["jkt"], child.agent.jwk.jkt());
    assert_eq!(c["act"]["sub"], parent.claims["sub"]);
    assert_eq!(c["session"]["id"], parent.claims["session"]["id"]);
    assert_eq!(c["session"]["parent"], parent.claims["jti"]);
    assert_eq!(c["session"]["chain"].as_array().unwrap().len(), 2);
    assert!(c["exp"].as_i64() <= parent.claims["exp"].as_i64());
    assert_eq!(c["provenance"], parent.claims["provenance"]);

    // Depth: the workload allows two hops.
    let grandchild = delegate(&server, &child, "inference:invoke").await;
    assert_eq!(grandchild.claims["act"]["act"]["sub"], parent.claims["sub"]);
    assert_eq!(
        grandchild.claims["session"]["chain"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let (status, response) =
        exchange(&server, &grandchild, &Agent::new(), "inference:invoke").await;
    assert_eq!((status, code(&response)), (403, "delegation_too_deep"));

    // A revoked key cannot be delegated to again.
    let sibling = delegate(&server, &child, "inference:invoke").await;
    server
        .revoke("jti", sibling.claims["jti"].as_str().unwrap(), "immediate")
        .await;
    let (status, response) = exchange(&server, &child, &sibling.agent, "inference:invoke").await;
    assert_eq!((status, code(&response)), (403, "revoked"), "{response}");

    // Revoking the parent revokes what it delegated, recorded as cascade.
    let introspected = server.introspect(&rp, &grandchild.token).await;
    assert_eq!(introspected["active"], true, "{introspected}");
    assert_eq!(introspected["act"]["act"]["sub"], parent.claims["sub"]);
    let revoked = server
        .revoke("jti", parent.claims["jti"].as_str().unwrap(), "immediate")
        .await;
    assert_eq!(revoked["cascaded"], 4, "{revoked}");
    for holder in [&parent, &child, &grandchild] {
        assert_eq!(server.introspect(&rp, &holder.token).await["active"], false);
    }
    let list = server.revocation_list(0).await;
    let cascaded = list
        .entries
        .iter()
        .filter(|e| e.cascade_from.as_deref() == parent.claims["jti"].as_str())
        .count();
    assert_eq!(cascaded, 4);
    let (status, response) = exchange(&server, &child, &Agent::new(), "inference:invoke").await;
    assert_eq!((status, code(&response)), (403, "parent_revoked"));
}

#[tokio::test]
async fn a_workload_that_may_not_delegate_cannot() {
    let no_delegation =
        std::fs::read_to_string(repo().join("measurements/example-nitro-agent.toml"))
            .unwrap()
            .replace(
                "name = \"example-nitro-agent\"",
                "name = \"a-nitro-no-delegation\"",
            )
            .replace("may_delegate = true", "may_delegate = false");
    let server = start(Options {
        extra_workloads: vec![("a-nitro-no-delegation.toml", no_delegation)],
        ..Options::default()
    });
    let mut found = false;
    // Two workloads match the same evidence; whichever is chosen, check the
    // right refusal when it is the non-delegating one.
    for _ in 0..4 {
        let parent = attest(&server, Tee::Nitro).await;
        let (status, response) =
            exchange(&server, &parent, &Agent::new(), "inference:invoke").await;
        if parent.claims["client_id"] == "a-nitro-no-delegation" {
            assert_eq!((status, code(&response)), (403, "delegation_not_allowed"));
            found = true;
            break;
        }
        assert_eq!(status, 200, "{response}");
    }
    assert!(found, "the non-delegating workload never matched");
}

#[tokio::test]
async fn each_revocation_mode_as_introspection_the_list_and_reattestation_see_it() {
    let server = start(Options::default());
    let rp = server.client("rp-modes").await;
    let (status, _) = server.post("/v1/introspect", &json!({"token": "x"})).await;
    assert_eq!(status, 401, "introspection needs client credentials");
    for (id, secret) in [("rp-modes", "wrong"), ("rp-unknown", rp.1.as_str())] {
        let response = server
            .client
            .post(format!("{}/v1/introspect", server.url))
            .basic_auth(id, Some(secret))
            .form(&[("token", "x")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 401, "{id}");
    }

    let immediate = attest(&server, Tee::Nitro).await;
    let graceful = attest(&server, Tee::Tdx).await;
    let quarantined = attest(&server, Tee::Snp).await;
    for h in [&immediate, &graceful, &quarantined] {
        let answer = server.introspect(&rp, &h.token).await;
        assert_eq!(answer["active"], true, "{answer}");
        assert_eq!(answer["revocation"], Value::Null);
    }
    let t0 = server.revocation_list(0).await.cursor;
    // One-second resolution: graceful spares what was issued before its second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    server
        .revoke(
            "jti",
            immediate.claims["jti"].as_str().unwrap(),
            "immediate",
        )
        .await;
    server
        .revoke(
            "session",
            graceful.claims["session"]["id"].as_str().unwrap(),
            "graceful",
        )
        .await;
    let q = server
        .revoke(
            "jti",
            quarantined.claims["jti"].as_str().unwrap(),
            "quarantine",
        )
        .await;

    assert_eq!(
        server.introspect(&rp, &immediate.token).await["active"],
        false
    );
    let g = server.introspect(&rp, &graceful.token).await;
    assert_eq!(
        (g["active"].clone(), g["revocation"].clone()),
        (json!(true), json!("graceful"))
    );
    let qa = server.introspect(&rp, &quarantined.token).await;
    assert_eq!(
        (qa["active"].clone(), qa["revocation"].clone()),
        (json!(true), json!("quarantined"))
    );

    let list = server.revocation_list(t0).await;
    let modes: Vec<(String, String)> = list
        .entries
        .iter()
        .map(|e| {
            (
                format!("{:?}", e.kind).to_lowercase(),
                format!("{:?}", e.mode).to_lowercase(),
            )
        })
        .collect();
    assert!(
        modes.contains(&("jti".into(), "immediate".into())),
        "{modes:?}"
    );
    assert!(
        modes.contains(&("session".into(), "graceful".into())),
        "{modes:?}"
    );
    assert!(
        modes.contains(&("jti".into(), "quarantine".into())),
        "{modes:?}"
    );

    // Re-attestation with a revoked (immediate or graceful) key is refused;
    // a quarantined one may renew (and stays marked by its own revocation).
    for (holder, tee) in [(immediate, Tee::Nitro), (graceful, Tee::Tdx)] {
        let body = bound_request(&server, tee, &holder.agent, |_| {}).await;
        server.expect_refusal(&body, 403, "revoked").await;
    }
    let renewed = attest_as(&server, Tee::Snp, quarantined.agent).await;
    let answer = server.introspect(&rp, &renewed.token).await;
    assert_eq!(
        (answer["active"].clone(), answer["revocation"].clone()),
        (json!(true), json!("quarantined")),
        "renewing does not shed a quarantine"
    );

    // Every look at a quarantined credential is audited.
    let log = server.audit_log().await;
    assert!(log
        .iter()
        .any(|r| r["code"] == "quarantined_use" && r["actor"] == "rp:rp-modes"));

    // Lifting the quarantine is an admin action; the list shows it lifted.
    let (status, _) = server
        .admin("/v1/admin/lift", &json!({"id": q["id"]}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        server.introspect(&rp, &quarantined.token).await["revocation"],
        Value::Null
    );
    let lifted = server.revocation_list(t0).await;
    assert!(lifted
        .entries
        .iter()
        .any(|e| e.id == q["id"].as_str().unwrap() && e.lifted));
    let (status, body) = server
        .admin("/v1/admin/lift", &json!({"id": q["id"]}))
        .await;
    assert_eq!((status, code(&body)), (404, "not_found"), "lifting twice");
}

#[tokio::test]
async fn revoking_a_model_or_measurement_refuses_new_attestations_and_survives_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let options = || Options {
        data_dir: Some(data.path().to_path_buf()),
        ..Options::default()
    };
    let server = start(options());
    let rp = server.client("rp-restart").await;
    let nitro = attest(&server, Tee::Nitro).await;
    let tdx = attest(&server, Tee::Tdx).await;
    let pcr0 = nitro.claims["provenance"]["measurements"]["pcr0"]
        .as_str()
        .unwrap();
    server.revoke("measurement", pcr0, "immediate").await;
    assert_eq!(server.introspect(&rp, &nitro.token).await["active"], false);
    let body = bound_request(&server, Tee::Nitro, &Agent::new(), |_| {}).await;
    server.expect_refusal(&body, 403, "revoked").await;
    attest(&server, Tee::Tdx).await;

    // Revocations have one-second resolution: what is issued in the
    // revocation's second counts as issued after it (fails closed).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    server
        .revoke("model", &example_model().to_hex(), "graceful")
        .await;
    assert_eq!(
        server.introspect(&rp, &tdx.token).await["revocation"],
        "graceful"
    );
    let body = bound_request(&server, Tee::Tdx, &Agent::new(), |_| {}).await;
    server.expect_refusal(&body, 403, "revoked").await;

    drop(server);
    let server = start(options());
    assert_eq!(server.introspect(&rp, &nitro.token).await["active"], false);
    assert_eq!(
        server.introspect(&rp, &tdx.token).await["revocation"],
        "graceful"
    );
    let body = bound_request(&server, Tee::Snp, &Agent::new(), |_| {}).await;
    server.expect_refusal(&body, 403, "revoked").await;
}

#[tokio::test]
async fn reappraisal_revokes_sessions_whose_reference_values_are_gone() {
    let server = start(Options {
        copy_measurements: true,
        ..Options::default()
    });
    let rp = server.client("rp-reappraise").await;
    let nitro = attest(&server, Tee::Nitro).await;
    let snp = attest(&server, Tee::Snp).await;
    // A TDX session's quote is stored in two parts (its PCK chain once per
    // platform): reappraisal verifies the quote put back together.
    let tdx = attest(&server, Tee::Tdx).await;
    let child = delegate(&server, &nitro, "inference:invoke").await;

    // Nothing changed: nothing is revoked, and nothing goes unjudged.
    let (status, outcome) = server
        .admin("/v1/admin/reappraise", &json!({"mode": "immediate"}))
        .await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["checked"], 3);
    assert_eq!(outcome["revoked"], json!([]));
    assert_eq!(outcome["not_judged"], json!([]), "{outcome}");

    // The Nitro workload's reference values are withdrawn. The command line
    // may not reappraise a SQLite database a running service holds (that
    // service would not see what it revoked): it is refused, pointing at
    // the admin endpoint, and changes nothing.
    let measurements = server.measurements_dir().unwrap();
    std::fs::remove_file(measurements.join("example-nitro-agent.toml")).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_verifier"))
        .args(["reappraise", "--mode", "immediate", "--dev", "--data-dir"])
        .arg(server.data_path())
        .arg("--measurements")
        .arg(&measurements)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("/v1/admin/reappraise"), "{stderr}");
    assert_eq!(server.introspect(&rp, &nitro.token).await["active"], true);

    // The operator reloads and reappraises on the service.
    let (status, _) = server.admin("/v1/admin/reload", &json!({})).await;
    assert_eq!(status, 200);
    let (status, outcome) = server
        .admin("/v1/admin/reappraise", &json!({"mode": "immediate"}))
        .await;
    assert_eq!(status, 200, "{outcome}");
    let revoked = outcome["revoked"].as_array().unwrap();
    assert_eq!(revoked.len(), 1, "{outcome}");
    assert_eq!(revoked[0]["session_id"], nitro.claims["session"]["id"]);
    assert_eq!(revoked[0]["code"], "measurement_not_allowed");

    assert_eq!(server.introspect(&rp, &nitro.token).await["active"], false);
    assert_eq!(server.introspect(&rp, &child.token).await["active"], false);
    assert_eq!(server.introspect(&rp, &snp.token).await["active"], true);
    assert_eq!(server.introspect(&rp, &tdx.token).await["active"], true);
}

#[tokio::test]
async fn a_candidate_policy_is_tried_on_recorded_evidence_before_it_ships() {
    let server = start(Options::default());
    let agent = Agent::new();
    let recorded = bound_request(&server, Tee::Tdx, &agent, |_| {}).await;
    let mut body = json!({
        "policy": "permit (principal, action == AttestGate::Action::\"issue\", resource);\n\
                   forbid (principal, action, resource == AttestGate::Scope::\"tools:search\");",
        "tee": recorded["tee"],
        "evidence": recorded["evidence"],
        "collateral": recorded["collateral"],
        "model_digest": recorded["model_digest"],
        "principal": "user:alice",
        "intent": recorded["intent"],
    });
    let (status, decided) = server.admin("/v1/admin/policy/dry-run", &body).await;
    assert_eq!(status, 200, "{decided}");
    assert_eq!(
        decided["current"]["scopes"],
        json!(["inference:invoke", "tools:search"])
    );
    assert_eq!(
        decided["candidate"]["scopes"],
        json!(["inference:invoke"]),
        "{decided}"
    );
    body["policy"] = json!("not cedar");
    let (status, response) = server.admin("/v1/admin/policy/dry-run", &body).await;
    assert_eq!((status, code(&response)), (400, "policy_invalid"));
    let (status, _) = server.post("/v1/admin/policy/dry-run", &body).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn metrics_count_outcomes_and_no_secret_reaches_the_audit_log_or_the_logs() {
    let server = start(Options::default());
    let rp = server.client("rp-secrets").await;
    let parent = attest(&server, Tee::Nitro).await;
    let child = delegate(&server, &parent, "inference:invoke").await;
    server.introspect(&rp, &child.token).await;
    let replay = bound_request(&server, Tee::Nitro, &Agent::new(), |_| {}).await;
    server.post("/v1/attest", &replay).await;
    server.expect_refusal(&replay, 403, "nonce_replayed").await;

    let (status, metrics) = server.get("/metrics").await;
    assert_eq!(status, 200);
    for line in [
        "attest_gate_attestations_total{tee=\"nitro\",outcome=\"issued\"} 2",
        "attest_gate_attestations_total{tee=\"nitro\",outcome=\"rejected\"} 1",
        "attest_gate_rejections_total{code=\"nonce_replayed\"} 1",
        "attest_gate_active_sessions 3",
        "attest_gate_issuance_latency_seconds_count 3",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }

    let log = server.audit_log().await;
    let actions: Vec<&str> = log.iter().filter_map(|r| r["action"].as_str()).collect();
    for action in ["attest", "exchange", "introspect", "admin.add_client"] {
        assert!(
            actions.contains(&action),
            "{action} not audited: {actions:?}"
        );
    }
    let attest = log.iter().find(|r| r["action"] == "attest").unwrap();
    assert!(attest["evidence_sha384"].as_str().unwrap().len() == 96);
    assert!(attest["policy_version"].as_str().is_some());
    assert!(log.windows(2).all(|w| w[1]["prev_hash"] == w[0]["hash"]));

    let logs: Vec<String> = server.logs.try_iter().collect();
    let everything = format!(
        "{}\n{}",
        serde_json::to_string(&log).unwrap(),
        logs.join("\n")
    );
    let nonce = replay["nonce"].as_str().unwrap();
    for (what, secret) in [
        ("access token", parent.token.as_str()),
        ("delegated token", child.token.as_str()),
        ("admin token", server.admin_token.as_str()),
        ("client secret", rp.1.as_str()),
        ("nonce", nonce),
        ("evidence", &replay["evidence"].as_str().unwrap()[..64]),
        ("token signature", parent.token.rsplit('.').next().unwrap()),
    ] {
        assert!(!everything.contains(secret), "the {what} leaked");
    }
    let _ = STANDARD;
}

/// The example Nitro workload, also allowed to address a second audience.
fn nitro_with_two_audiences() -> (&'static str, String) {
    let text = std::fs::read_to_string(repo().join("measurements/example-nitro-agent.toml"))
        .unwrap()
        .replace(
            "audiences = [\"https://rp.attest-gate.test\"]",
            "audiences = [\"https://rp.attest-gate.test\", \"https://elsewhere.test\"]",
        );
    assert!(text.contains("elsewhere"));
    ("example-nitro-agent.toml", text)
}

fn exchange_to(
    parent: &Holder,
    child: &Agent,
    scope: &str,
    audience: &str,
    purpose: &str,
) -> Value {
    let mut body = exchange_body(parent, child, scope);
    body["audience"] = json!(audience);
    body["purpose"] = json!(purpose);
    body
}

/// `exchange` with a body of the caller's.
async fn exchange_with(server: &Server, parent: &Holder, body: &Value) -> (u16, Value) {
    let htu = format!("{}/v1/token/exchange", server.url);
    let (_, _, nonce) = exchange_call(server, body, None).await;
    let proof = parent
        .agent
        .dpop("POST", &htu, Some(&parent.token), nonce.as_deref());
    let (status, response, _) = exchange_call(server, body, Some(&proof)).await;
    (status, response)
}

#[tokio::test]
async fn policy_decides_every_exchange_so_a_forbid_cannot_be_escaped_by_delegating() {
    let policy = r#"
        permit (principal, action == AttestGate::Action::"issue", resource)
        when { context.act_for == "system" || context.act_for like "user:*" };
        forbid (principal, action, resource == AttestGate::Scope::"tools:search")
        when { context.audience != "https://rp.attest-gate.test" };
        forbid (principal, action, resource)
        when { context.delegated && context.task_id == "exfiltrate" };
    "#;
    let server = start(Options {
        extra_workloads: vec![nitro_with_two_audiences()],
        policy: Some(policy),
        ..Options::default()
    });
    let parent = attest(&server, Tee::Nitro).await;
    assert_eq!(parent.claims["scope"], "inference:invoke tools:search");

    // The audience-conditioned forbid holds through an exchange.
    let child = Agent::new();
    let body = exchange_to(
        &parent,
        &child,
        "tools:search",
        "https://elsewhere.test",
        "t",
    );
    let (status, response) = exchange_with(&server, &parent, &body).await;
    assert_eq!(
        (status, code(&response)),
        (403, "scope_not_allowed"),
        "{response}"
    );
    let body = exchange_to(
        &parent,
        &child,
        "inference:invoke tools:search",
        "https://elsewhere.test",
        "t",
    );
    let (status, response) = exchange_with(&server, &parent, &body).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["scope"], "inference:invoke", "{response}");

    // So does a purpose-conditioned one.
    let body = exchange_to(
        &parent,
        &Agent::new(),
        "inference:invoke",
        "https://rp.attest-gate.test",
        "exfiltrate",
    );
    let (status, response) = exchange_with(&server, &parent, &body).await;
    assert_eq!(
        (status, code(&response)),
        (403, "scope_not_allowed"),
        "{response}"
    );

    // Both are audited as refusals of the exchange.
    let log = server.audit_log().await;
    assert!(log
        .iter()
        .any(|r| r["action"] == "exchange" && r["code"] == "scope_not_allowed"));
}

#[tokio::test]
async fn reappraisal_reads_what_was_verified_whatever_alphabet_was_sent() {
    let server = start(Options::default());
    let agent = Agent::new();
    let mut body = bound_request(&server, Tee::Tdx, &agent, |_| {}).await;
    // URL-safe, unpadded collateral: accepted at attestation...
    let collateral = body["collateral"].as_object().unwrap().clone();
    assert!(!collateral.is_empty());
    for (name, b64) in collateral {
        let bytes = STANDARD.decode(b64.as_str().unwrap()).unwrap();
        body["collateral"][name] =
            json!(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    }
    let (status, response) = server.post("/v1/attest", &body).await;
    assert_eq!(status, 200, "{response}");
    let kept = response["session_id"].as_str().unwrap().to_string();
    let corrupted = attest(&server, Tee::Nitro).await;
    let corrupted_id = corrupted.claims["session"]["id"].as_str().unwrap();

    // ...and a stored row that cannot be read (here: it names a collateral
    // file the store does not hold) is the verifier's trouble, not a denial.
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite:{}",
        server.data_path().join("attest-gate.db").display()
    ))
    .await
    .unwrap();
    sqlx::query(
        "UPDATE session_evidence SET collateral_refs = '{\"gone.pem\":\"00\"}' WHERE session_id = $1",
    )
        .bind(corrupted_id)
        .execute(&db)
        .await
        .unwrap();

    let (status, outcome) = server
        .admin("/v1/admin/reappraise", &json!({"mode": "immediate"}))
        .await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["revoked"], json!([]), "{outcome}");
    let not_judged = outcome["not_judged"].as_array().unwrap();
    assert_eq!(not_judged.len(), 1, "{outcome}");
    assert_eq!(not_judged[0]["session_id"], corrupted_id);
    assert_ne!(not_judged[0]["session_id"], kept.as_str());
}

/// RTMR1 of a TDX quote (TD report body at 48; RTMR1 at 376 within it).
fn rtmr1_of(evidence_b64: &str) -> String {
    let quote = STANDARD.decode(evidence_b64).unwrap();
    hex::encode(&quote[48 + 376..48 + 424])
}

#[tokio::test]
async fn revoking_a_register_no_workload_pins_blocks_it_everywhere() {
    let server = start(Options::default());
    let rp = server.client("rp-rtmr").await;
    let agent = Agent::new();
    let body = bound_request(&server, Tee::Tdx, &agent, |_| {}).await;
    let rtmr1 = rtmr1_of(body["evidence"].as_str().unwrap());
    let (status, response) = server.post("/v1/attest", &body).await;
    assert_eq!(status, 200, "{response}");
    let token = response["access_token"].as_str().unwrap().to_string();
    let (_, claims) = decode(&token);
    assert!(
        claims["provenance"]["measurements"].get("rtmr1").is_none(),
        "the example workload does not pin RTMR1"
    );

    // A target no TEE can produce is refused, not silently recorded.
    for bad in ["cafe", "not hex at all", &"ab".repeat(20), &"00".repeat(48)] {
        let (status, response) = server
            .admin(
                "/v1/admin/revoke",
                &json!({"kind": "measurement", "target": bad, "mode": "immediate", "reason": "x"}),
            )
            .await;
        assert_eq!(
            (status, code(&response)),
            (400, "malformed_request"),
            "{bad}"
        );
    }

    server
        .revoke("measurement", &rtmr1.to_uppercase(), "immediate")
        .await;
    assert_eq!(server.introspect(&rp, &token).await["active"], false);
    let body = bound_request(&server, Tee::Tdx, &Agent::new(), |_| {}).await;
    server.expect_refusal(&body, 403, "revoked").await;
    // Other TEEs' evidence does not carry it.
    attest(&server, Tee::Nitro).await;
}

#[tokio::test]
async fn revoking_a_key_revokes_every_session_of_it_and_their_delegations() {
    let server = start(Options::default());
    let rp = server.client("rp-key").await;
    let first = attest(&server, Tee::Nitro).await;
    let first_child = delegate(&server, &first, "inference:invoke").await;
    // A renewal: the same key, a new session.
    let second = attest_as(&server, Tee::Nitro, first.agent).await;
    assert_ne!(
        first.claims["session"]["id"],
        second.claims["session"]["id"]
    );
    let second_child = delegate(&server, &second, "inference:invoke").await;
    let bystander = attest(&server, Tee::Nitro).await;

    let (status, response) = server
        .admin(
            "/v1/admin/revoke",
            &json!({"kind": "key", "target": "short", "mode": "immediate", "reason": "x"}),
        )
        .await;
    assert_eq!((status, code(&response)), (400, "malformed_request"));

    let jkt = first.claims["cnf"]["jkt"].as_str().unwrap();
    let revoked = server.revoke("key", jkt, "immediate").await;
    assert_eq!(revoked["cascaded"], 4, "{revoked}");
    for token in [
        &first.token,
        &second.token,
        &first_child.token,
        &second_child.token,
    ] {
        assert_eq!(server.introspect(&rp, token).await["active"], false);
    }
    assert_eq!(
        server.introspect(&rp, &bystander.token).await["active"],
        true
    );
    let body = bound_request(&server, Tee::Nitro, &second.agent, |_| {}).await;
    server.expect_refusal(&body, 403, "revoked").await;

    // `"scope": "key"` on a jti does the same for that jti's key.
    let one = attest(&server, Tee::Tdx).await;
    let other = attest_as(&server, Tee::Tdx, one.agent).await;
    let (status, body) = server
        .admin(
            "/v1/admin/revoke",
            &json!({"kind": "jti", "target": one.claims["jti"], "mode": "immediate",
                    "reason": "compromised key", "scope": "key"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.introspect(&rp, &other.token).await["active"], false);
}

#[tokio::test]
async fn a_quarantined_key_stays_quarantined_when_delegated_to_until_lifted() {
    let server = start(Options::default());
    let rp = server.client("rp-inherit").await;
    let parent = attest(&server, Tee::Nitro).await;
    let earlier = attest(&server, Tee::Tdx).await;
    let q = server
        .revoke(
            "session",
            earlier.claims["session"]["id"].as_str().unwrap(),
            "quarantine",
        )
        .await;

    let (status, response) = exchange(&server, &parent, &earlier.agent, "inference:invoke").await;
    assert_eq!(status, 200, "{response}");
    let child = response["access_token"].as_str().unwrap();
    let answer = server.introspect(&rp, child).await;
    assert_eq!(
        (answer["active"].clone(), answer["revocation"].clone()),
        (json!(true), json!("quarantined")),
        "{answer}"
    );
    // The parent itself is not quarantined.
    assert_eq!(
        server.introspect(&rp, &parent.token).await["revocation"],
        Value::Null
    );

    // A quarantined parent's grandchildren are marked for relying parties
    // too (which see only a token's own jti and its parent).
    let q_parent = server
        .revoke("jti", parent.claims["jti"].as_str().unwrap(), "quarantine")
        .await;
    let child_of_q = delegate(&server, &parent, "inference:invoke").await;
    let grandchild = delegate(&server, &child_of_q, "inference:invoke").await;
    let mut set = attest_gate_relying_party::RevocationSet::new();
    set.apply(server.revocation_list(0).await).unwrap();
    let (_, jwks) = server.get("/.well-known/jwks.json").await;
    let jwks = Jwks::from_json(&serde_json::from_str(&jwks).unwrap()).unwrap();
    let now = grandchild.claims["iat"].as_i64().unwrap();
    let token =
        attest_gate_relying_party::Validator::new(&server.url, "https://rp.attest-gate.test")
            .validate(&jwks, &grandchild.token, now)
            .unwrap();
    assert!(
        matches!(
            set.status(&token),
            attest_gate_relying_party::Status::Quarantined { .. }
        ),
        "{:?}",
        set.status(&token)
    );
    let (status, _) = server
        .admin("/v1/admin/lift", &json!({"id": q_parent["id"]}))
        .await;
    assert_eq!(status, 200);

    // Lifting the original quarantine lifts the inherited one.
    let (status, _) = server
        .admin("/v1/admin/lift", &json!({"id": q["id"]}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        server.introspect(&rp, child).await["revocation"],
        Value::Null
    );
}

#[tokio::test]
async fn reappraisal_applies_a_forbid_added_since_attestation() {
    let server = start(Options {
        policy: Some("permit (principal, action == AttestGate::Action::\"issue\", resource);"),
        ..Options::default()
    });
    let rp = server.client("rp-reappraise-policy").await;
    let nitro = attest(&server, Tee::Nitro).await;
    let tdx = attest(&server, Tee::Tdx).await;
    std::fs::write(
        server.data_dir.path().join("test-policy.cedar"),
        "permit (principal, action == AttestGate::Action::\"issue\", resource);\n\
         forbid (principal, action, resource) when { principal.tee == \"nitro\" };",
    )
    .unwrap();
    let (status, _) = server.admin("/v1/admin/reload", &json!({})).await;
    assert_eq!(status, 200);
    let (status, outcome) = server
        .admin("/v1/admin/reappraise", &json!({"mode": "immediate"}))
        .await;
    assert_eq!(status, 200, "{outcome}");
    let revoked = outcome["revoked"].as_array().unwrap();
    assert_eq!(revoked.len(), 1, "{outcome}");
    assert_eq!(revoked[0]["session_id"], nitro.claims["session"]["id"]);
    assert_eq!(revoked[0]["code"], "scope_not_allowed");
    assert_eq!(server.introspect(&rp, &nitro.token).await["active"], false);
    assert_eq!(server.introspect(&rp, &tdx.token).await["active"], true);

    // Narrowing counts too: forbidding one scope the TDX session holds ends it.
    std::fs::write(
        server.data_dir.path().join("test-policy.cedar"),
        "permit (principal, action == AttestGate::Action::\"issue\", resource);\n\
         forbid (principal, action, resource == AttestGate::Scope::\"tools:search\");",
    )
    .unwrap();
    let (status, _) = server.admin("/v1/admin/reload", &json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(tdx.claims["scope"], "inference:invoke tools:search");
    let (status, outcome) = server
        .admin("/v1/admin/reappraise", &json!({"mode": "immediate"}))
        .await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(
        outcome["revoked"][0]["session_id"], tdx.claims["session"]["id"],
        "{outcome}"
    );
    assert_eq!(server.introspect(&rp, &tdx.token).await["active"], false);
}

/// 10,001 live children of `parent` written straight into the service's
/// SQLite database: a delegation tree too large to revoke in one request.
async fn plant_children(server: &Server, parent: &Holder, count: usize) {
    use sqlx::Connection as _;
    let url = format!(
        "sqlite://{}",
        server.data_path().join("attest-gate.db").display()
    );
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let parent_jti = parent.claims["jti"].as_str().unwrap();
    let exp = parent.claims["exp"].as_i64().unwrap();
    let mut tx = db.begin().await.unwrap();
    for chunk in (0..count).collect::<Vec<_>>().chunks(500) {
        let mut q = sqlx::QueryBuilder::new(
            "INSERT INTO credentials (jti, subject, session_id, parent_jti, workload, jkt, \
             scope, audience, issued_at, expires_at, test_root, model_digest, measurements, depth) ",
        );
        q.push_values(chunk, |mut b, i| {
            b.push_bind(format!("planted-{i}"))
                .push_bind(format!("spiffe://attest-gate.test/planted/{i}"))
                .push_bind(parent.claims["session"]["id"].as_str().unwrap().to_string())
                .push_bind(parent_jti.to_string())
                .push_bind("example-nitro-agent")
                .push_bind(format!("planted-key-{i}"))
                .push_bind("inference:invoke")
                .push_bind("https://rp.attest-gate.test")
                .push_bind(exp - 60)
                .push_bind(exp)
                .push_bind(true)
                .push_bind("00")
                .push_bind("00")
                .push_bind(1i32);
        });
        q.build().execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// The refusals of exchange, introspection, registration, reload and
/// revocation that no other test reaches, each with its own code.
#[tokio::test]
async fn exchange_introspection_and_admin_refusals_name_their_codes() {
    let server = start(Options {
        copy_measurements: true,
        ..Options::default()
    });

    // Introspection without client credentials.
    let (status, body) = server.post("/v1/introspect", &json!({"token": "x"})).await;
    assert_eq!((status, code(&body)), (401, "invalid_client"), "{body}");
    // A client registered twice.
    server.client("rp-once").await;
    let (status, body) = server
        .admin("/v1/admin/clients", &json!({"client_id": "rp-once"}))
        .await;
    assert_eq!((status, code(&body)), (403, "client_exists"), "{body}");
    // The audit log without the admin token, and with a wrong one.
    for token in [None, Some("agadm_not-the-token")] {
        let mut request = server.client.get(format!("{}/v1/admin/audit", server.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_eq!((status, code(&body)), (401, "unauthorized"), "{token:?}");
    }

    // An exchange that is not RFC 8693's exchange of an access token.
    let parent = attest(&server, Tee::Nitro).await;
    let child = Agent::new();
    for (field, value) in [
        ("grant_type", "authorization_code"),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
    ] {
        let mut body = exchange_body(&parent, &child, "inference:invoke");
        body[field] = json!(value);
        let (status, response) = exchange_with(&server, &parent, &body).await;
        assert_eq!(
            (status, code(&response)),
            (400, "unsupported_grant_type"),
            "{field}: {response}"
        );
    }

    // A delegation tree too large to revoke in one request is refused whole.
    plant_children(&server, &parent, 10_001).await;
    let jti = parent.claims["jti"].as_str().unwrap();
    let (status, body) = server
        .admin(
            "/v1/admin/revoke",
            &json!({"kind": "jti", "target": jti, "mode": "immediate", "reason": "test"}),
        )
        .await;
    assert_eq!((status, code(&body)), (500, "cascade_too_large"), "{body}");
    let rp = server.client("rp-cascade").await;
    assert_eq!(server.introspect(&rp, &parent.token).await["active"], true);

    // A reload that finds a broken file keeps the old reference values.
    let measurements = server.measurements_dir().unwrap();
    std::fs::write(measurements.join("broken.toml"), "schema = ").unwrap();
    let (status, body) = server.admin("/v1/admin/reload", &json!({})).await;
    assert_eq!((status, code(&body)), (500, "reload_failed"), "{body}");
    let still = attest(&server, Tee::Tdx).await;
    std::fs::remove_file(measurements.join("broken.toml")).unwrap();

    // The token's workload is withdrawn: it can no longer be delegated.
    std::fs::remove_file(measurements.join("example-tdx-agent.toml")).unwrap();
    let (status, _) = server.admin("/v1/admin/reload", &json!({})).await;
    assert_eq!(status, 200);
    let body = exchange_body(&still, &Agent::new(), "inference:invoke");
    let (status, response) = exchange_with(&server, &still, &body).await;
    assert_eq!(
        (status, code(&response)),
        (403, "workload_unknown"),
        "{response}"
    );
}
