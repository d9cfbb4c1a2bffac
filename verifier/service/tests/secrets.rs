//! Attested secret release against the `verifier` binary over HTTPS: an
//! agent that bound an encryption key (binding v2) gets a secret the policy
//! allows as a JWE it alone opens; every refusal has its code; the stored
//! bytes are sealed; rotation and retirement apply at once; the audit log
//! records every decision and never the value.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use attest_gate_core::{AgentKey, Binding};
use attest_gate_protocol::jwe;
use aws_lc_rs::agreement::{PrivateKey, ECDH_P256};
use common::*;
use serde_json::{json, Value};

const SECRET: &str = "hunter2-correct-horse";
const NITRO_PCR0: &str = "a3c6486d6e4cae2aa52d3c4d0954cd39f7cffa3219ab54934edc3a6614f63dc898fde3f47b9b20d29766fd542f8d21a9";

/// The default policy, plus: every example workload may read `db-password`
/// and `quarantine-ok`; only TDX may read `tdx-only`; `pcr-gated` is
/// permitted to all but forbidden on the Nitro example's PCR0.
fn policy() -> &'static str {
    Box::leak(
        format!(
            "{}\n{}",
            include_str!("../default.cedar"),
            r#"
permit (principal, action == AttestGate::Action::"read_secret", resource)
when { resource.name == "db-password" || resource.name == "quarantine-ok" || resource.name == "pcr-gated" };
permit (principal, action == AttestGate::Action::"read_secret", resource == AttestGate::Secret::"tdx-only")
when { principal.tee == "tdx" };
forbid (principal, action == AttestGate::Action::"read_secret", resource == AttestGate::Secret::"pcr-gated")
when { context.measurements.contains("PCR0") };
"#
            .replace("PCR0", NITRO_PCR0)
        )
        .into_boxed_str(),
    )
}

/// An attested agent with its decryption key.
struct Holder {
    agent: Agent,
    decryption: PrivateKey,
    token: String,
    session: String,
}

async fn attest_v2(server: &Server, tee: Tee) -> Holder {
    let agent = Agent::new();
    let decryption = PrivateKey::generate(&ECDH_P256).unwrap();
    let public = jwe::public_key(&decryption).unwrap();
    let nonce = server.nonce().await;
    let binding =
        Binding::with_encryption_key(&nonce, agent.jwk.clone(), public.clone(), agent.model)
            .unwrap();
    let ev = evidence(tee, binding.report_data(), |_| {});
    let mut body = request(tee, &agent, &nonce, &ev, &agent.model);
    body["encryption_key"] = public.to_jwk();
    let (status, answer) = server.post("/v1/attest", &body).await;
    assert_eq!(status, 200, "{answer}");
    Holder {
        agent,
        decryption,
        token: answer["access_token"].as_str().unwrap().to_string(),
        session: answer["session_id"].as_str().unwrap().to_string(),
    }
}

/// `method /v1/secrets/{name}` with the holder's token and proofs, after
/// the DPoP nonce round.
async fn ask(server: &Server, holder: &Holder, method: &str, name: &str) -> (u16, Value) {
    let path = format!("/v1/secrets/{name}");
    let htu = format!("{}{path}", server.url);
    let mut nonce: Option<String> = None;
    for _ in 0..2 {
        let proof = holder
            .agent
            .dpop(method, &htu, Some(&holder.token), nonce.as_deref());
        let response = server
            .client
            .request(method.parse().unwrap(), &htu)
            .header("Authorization", format!("DPoP {}", holder.token))
            .header("DPoP", proof)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let fresh = response
            .headers()
            .get("dpop-nonce")
            .map(|v| v.to_str().unwrap().to_string());
        let body: Value = response.json().await.unwrap();
        if code(&body) == "use_dpop_nonce" && nonce.is_none() {
            nonce = fresh;
            continue;
        }
        return (status, body);
    }
    panic!("the DPoP nonce round did not end");
}

async fn release(server: &Server, holder: &Holder, name: &str) -> (u16, Value) {
    ask(server, holder, "POST", name).await
}

impl Server {
    async fn admin_call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .client
            .request(method.parse().unwrap(), format!("{}{path}", self.url))
            .bearer_auth(&self.admin_token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn put_secret(&self, name: &str, body: Value) -> Value {
        let (status, answer) = self
            .admin_call("PUT", &format!("/v1/admin/secrets/{name}"), Some(body))
            .await;
        assert_eq!(status, 200, "{answer}");
        answer
    }
}

fn open(holder: &Holder, answer: &Value) -> (Value, Vec<u8>) {
    let opened = jwe::decrypt(&holder.decryption, answer["jwe"].as_str().unwrap()).unwrap();
    (Value::Object(opened.header), opened.plaintext)
}

#[tokio::test]
async fn each_tee_gets_the_secret_as_a_jwe_only_its_bound_key_opens() {
    let server = start(Options {
        policy: Some(policy()),
        ..Options::default()
    });
    let stored = server
        .put_secret("db-password", json!({"value": SECRET}))
        .await;
    assert_eq!(stored["version"], 1);
    for tee in [Tee::Nitro, Tee::Tdx, Tee::Snp] {
        let holder = attest_v2(&server, tee).await;
        let (_, claims) = verify_jwt(
            &holder.token,
            &serde_json::from_str(&server.get("/.well-known/jwks.json").await.1).unwrap(),
        );
        assert_eq!(
            claims["cnf"]["enc_jkt"],
            jwe::public_key(&holder.decryption).unwrap().jkt().as_str(),
            "the token names the bound encryption key"
        );
        let (status, meta) = ask(&server, &holder, "GET", "db-password").await;
        assert_eq!((status, meta["version"].as_i64()), (200, Some(1)), "{meta}");
        assert!(meta.get("value").is_none() && meta.get("jwe").is_none());
        let (status, answer) = release(&server, &holder, "db-password").await;
        assert_eq!(status, 200, "{tee:?}: {answer}");
        let (header, plaintext) = open(&holder, &answer);
        assert_eq!(plaintext, SECRET.as_bytes());
        assert_eq!(header["secret"], "db-password");
        assert_eq!(header["version"], 1);
        assert_eq!(header["alg"], "ECDH-ES+A256KW");
        assert_eq!(header["enc"], "A256GCM");
        // Another key cannot open it.
        let other = PrivateKey::generate(&ECDH_P256).unwrap();
        assert!(jwe::decrypt(&other, answer["jwe"].as_str().unwrap()).is_err());
        if std::env::var_os("ATTEST_GATE_JWCRYPTO_PYTHON").is_some() {
            jwcrypto_opens(&holder, answer["jwe"].as_str().unwrap());
        } else {
            // CI must run the independent check, never skip it.
            assert!(
                std::env::var_os("CI").is_none(),
                "CI runs set ATTEST_GATE_JWCRYPTO_PYTHON (.ci/run installs jwcrypto)"
            );
        }
    }

    // Rotation: the new version goes to the next request at once.
    server
        .put_secret("db-password", json!({"value_base64": "AAEC/w=="}))
        .await;
    let holder = attest_v2(&server, Tee::Tdx).await;
    let (status, answer) = release(&server, &holder, "db-password").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["version"], 2);
    assert_eq!(open(&holder, &answer).1, vec![0, 1, 2, 255]);

    // Listing shows names and versions, never values.
    let (status, list) = server.admin_call("GET", "/v1/admin/secrets", None).await;
    assert_eq!(status, 200);
    assert_eq!(list["secrets"][0]["name"], "db-password");
    assert_eq!(list["secrets"][0]["version"], 2);
    assert!(!list.to_string().contains(SECRET));

    // Retired: nothing is released.
    let (status, retired) = server
        .admin_call("DELETE", "/v1/admin/secrets/db-password", None)
        .await;
    assert_eq!(
        (status, retired["retired_version"].as_i64()),
        (200, Some(2))
    );
    let (status, answer) = release(&server, &holder, "db-password").await;
    assert_eq!((status, code(&answer)), (404, "secret_not_found"));

    // At rest the value is sealed; the KEK is 0600.
    let kek = server.data_path().join("keys-dev/secrets.kek");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&kek).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let db = std::fs::read(server.data_path().join("attest-gate.db")).unwrap_or_default();
    let wal = std::fs::read(server.data_path().join("attest-gate.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(!bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()));
    }

    // Audited, never with the value.
    let (status, audit) = server
        .admin_call("GET", "/v1/admin/audit?limit=1000", None)
        .await;
    assert_eq!(status, 200);
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    for action in [
        "admin.secret_put",
        "admin.secret_retire",
        "secret.release",
        "secret.metadata",
    ] {
        assert!(actions.contains(&action), "{action} audited");
    }
    assert!(!audit.to_string().contains(SECRET));
    assert!(audit
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["action"] == "secret.release" && r["code"] == "secret_not_found"));
    let logs: Vec<String> = server.logs.try_iter().collect();
    assert!(!logs.iter().any(|l| l.contains(SECRET)));
}

/// Python's jwcrypto (not ours) opens the JWE with the agent's private key:
/// the format is standard. `.ci/run` installs it and sets
/// `ATTEST_GATE_JWCRYPTO_PYTHON` to its interpreter.
fn jwcrypto_opens(holder: &Holder, compact: &str) {
    use aws_lc_rs::encoding::AsBigEndian;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let python = std::env::var("ATTEST_GATE_JWCRYPTO_PYTHON").unwrap();
    let d: aws_lc_rs::encoding::EcPrivateKeyBin<'_> = holder.decryption.as_be_bytes().unwrap();
    let mut jwk = jwe::public_key(&holder.decryption).unwrap().to_jwk();
    jwk["d"] = json!(URL_SAFE_NO_PAD.encode(d.as_ref()));
    let script = "import sys, json\nfrom jwcrypto import jwe, jwk\nk = jwk.JWK(**json.loads(sys.argv[1]))\nt = jwe.JWE()\nt.deserialize(sys.argv[2], key=k)\nsys.stdout.write(t.payload.decode())\n";
    let out = std::process::Command::new(python)
        .args(["-c", script, &jwk.to_string(), compact])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, SECRET.as_bytes());
}

#[tokio::test]
async fn every_refusal_has_its_code() {
    let server = start(Options {
        policy: Some(policy()),
        ..Options::default()
    });
    for name in [
        "db-password",
        "tdx-only",
        "pcr-gated",
        "quarantine-ok",
        "nobody",
    ] {
        server.put_secret(name, json!({"value": SECRET})).await;
    }
    server
        .put_secret(
            "quarantine-ok",
            json!({"value": SECRET, "release_in_quarantine": true}),
        )
        .await;
    let nitro = attest_v2(&server, Tee::Nitro).await;

    // The policy: another workload's secret; nothing not permitted; a
    // forbid on a measurement; and a name that does not exist looks the
    // same as one not permitted.
    for name in ["tdx-only", "nobody", "pcr-gated", "no-such-secret"] {
        let (status, answer) = release(&server, &nitro, name).await;
        assert_eq!((status, code(&answer)), (403, "secret_denied"), "{name}");
    }
    let tdx = attest_v2(&server, Tee::Tdx).await;
    assert_eq!(release(&server, &tdx, "tdx-only").await.0, 200);
    assert_eq!(release(&server, &tdx, "pcr-gated").await.0, 200);

    // No token, a token without its proof, a proof by another key.
    let path = format!("{}/v1/secrets/db-password", server.url);
    let (status, _, answer) = server
        .post_with("/v1/secrets/db-password", &json!({}), &[])
        .await;
    assert_eq!((status, code(&answer)), (401, "invalid_token"));
    let auth = format!("DPoP {}", nitro.token);
    let (status, _, answer) = server
        .post_with(
            "/v1/secrets/db-password",
            &json!({}),
            &[("Authorization", &auth)],
        )
        .await;
    assert_eq!((status, code(&answer)), (401, "invalid_dpop_proof"));
    let stranger = Agent::new();
    let (_, headers, _) = server
        .post_with(
            "/v1/secrets/db-password",
            &json!({}),
            &[("Authorization", &auth)],
        )
        .await;
    let nonce = headers["dpop-nonce"].to_str().unwrap().to_string();
    let proof = stranger.dpop("POST", &path, Some(&nitro.token), Some(&nonce));
    let (status, _, answer) = server
        .post_with(
            "/v1/secrets/db-password",
            &json!({}),
            &[("Authorization", &auth), ("DPoP", &proof)],
        )
        .await;
    assert_eq!((status, code(&answer)), (401, "invalid_dpop_proof"));

    // Binding v1: the session has no encryption key.
    let v1 = Agent::new();
    let body = bound_request(&server, Tee::Nitro, &v1, |_| {}).await;
    let (status, answer) = server.post("/v1/attest", &body).await;
    assert_eq!(status, 200, "{answer}");
    let v1 = Holder {
        agent: v1,
        decryption: PrivateKey::generate(&ECDH_P256).unwrap(),
        token: answer["access_token"].as_str().unwrap().to_string(),
        session: answer["session_id"].as_str().unwrap().to_string(),
    };
    let (status, answer) = release(&server, &v1, "db-password").await;
    assert_eq!((status, code(&answer)), (403, "no_encryption_key"));

    // Evidence whose binding does not cover the encryption key presented.
    let agent = Agent::new();
    let presented = jwe::public_key(&PrivateKey::generate(&ECDH_P256).unwrap()).unwrap();
    let mut body = bound_request(&server, Tee::Tdx, &agent, |_| {}).await;
    body["encryption_key"] = presented.to_jwk();
    let (status, answer) = server.post("/v1/attest", &body).await;
    assert_eq!(
        (status, code(&answer)),
        (403, "binding_mismatch"),
        "{answer}"
    );
    // Nor may the encryption key be the signing key.
    let mut body = bound_request(&server, Tee::Tdx, &agent, |_| {}).await;
    body["encryption_key"] = agent.jwk.to_jwk();
    let (status, answer) = server.post("/v1/attest", &body).await;
    assert_eq!((status, code(&answer)), (400, "invalid_public_key"));
    let p384 = AgentKey::P384 {
        x: [1; 48],
        y: [2; 48],
    };
    body["encryption_key"] = p384.to_jwk();
    assert_eq!(server.post("/v1/attest", &body).await.0, 400);

    // Quarantine: refused unless the secret allows it.
    let quarantined = attest_v2(&server, Tee::Snp).await;
    let (status, answer) = server
        .admin_call(
            "POST",
            "/v1/admin/revoke",
            Some(json!({"kind": "session", "target": quarantined.session, "mode": "quarantine", "reason": "watch"})),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = release(&server, &quarantined, "db-password").await;
    assert_eq!((status, code(&answer)), (403, "secret_quarantined"));
    assert_eq!(release(&server, &quarantined, "quarantine-ok").await.0, 200);

    // Revoked, immediately and gracefully.
    for mode in ["immediate", "graceful"] {
        let holder = attest_v2(&server, Tee::Nitro).await;
        let (status, answer) = server
            .admin_call(
                "POST",
                "/v1/admin/revoke",
                Some(json!({"kind": "session", "target": holder.session, "mode": mode, "reason": "gone"})),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        let (status, answer) = release(&server, &holder, "db-password").await;
        assert_eq!((status, code(&answer)), (403, "revoked"), "{mode}");
    }

    // Bad admin input changes nothing.
    let (status, answer) = server
        .admin_call(
            "PUT",
            "/v1/admin/secrets/x",
            Some(json!({"value": "a", "value_base64": "YQ=="})),
        )
        .await;
    assert_eq!((status, code(&answer)), (400, "malformed_request"));
    let (status, answer) = server
        .admin_call(
            "PUT",
            "/v1/admin/secrets/x",
            Some(json!({"value": "a".repeat(65_537)})),
        )
        .await;
    assert_eq!((status, code(&answer)), (413, "secret_too_large"));
    let (status, answer) = server
        .admin_call(
            "PUT",
            "/v1/admin/secrets/bad%20name",
            Some(json!({"value": "a"})),
        )
        .await;
    assert_eq!((status, code(&answer)), (400, "malformed_request"));
    let (status, answer) = server
        .admin_call(
            "PUT",
            "/v1/admin/secrets/x",
            Some(json!({"value": "a", "not_after": "2000-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!((status, code(&answer)), (400, "malformed_request"));
    let (status, _) = server
        .admin_call("DELETE", "/v1/admin/secrets/x", None)
        .await;
    assert_eq!(status, 404);
    let response = server
        .client
        .get(format!("{}/v1/admin/secrets", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
}

#[tokio::test]
async fn a_delegated_token_gets_no_secret_unless_the_workload_allows_it() {
    let server = start(Options {
        policy: Some(policy()),
        ..Options::default()
    });
    server
        .put_secret("db-password", json!({"value": SECRET}))
        .await;
    let parent = attest_v2(&server, Tee::Tdx).await;
    let child = Agent::new();
    let htu = format!("{}/v1/token/exchange", server.url);
    let body = json!({
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": parent.token,
        "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "actor_key": child.jwk.to_jwk(),
        "scope": "tools:search",
        "audience": "https://rp.attest-gate.test",
        "purpose": "sub-task",
    });
    let proof = parent.agent.dpop("POST", &htu, Some(&parent.token), None);
    let (_, headers, _) = server
        .post_with("/v1/token/exchange", &body, &[("DPoP", &proof)])
        .await;
    let nonce = headers["dpop-nonce"].to_str().unwrap().to_string();
    let proof = parent
        .agent
        .dpop("POST", &htu, Some(&parent.token), Some(&nonce));
    let (status, _, answer) = server
        .post_with("/v1/token/exchange", &body, &[("DPoP", &proof)])
        .await;
    assert_eq!(status, 200, "{answer}");
    let delegated = Holder {
        agent: child,
        decryption: PrivateKey::generate(&ECDH_P256).unwrap(),
        token: answer["access_token"].as_str().unwrap().to_string(),
        session: parent.session.clone(),
    };
    let (status, answer) = release(&server, &delegated, "db-password").await;
    assert_eq!((status, code(&answer)), (403, "secrets_not_delegable"));
}
