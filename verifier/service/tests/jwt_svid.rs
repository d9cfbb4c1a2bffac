//! JWT-SVIDs and OIDC federation against the `verifier` binary over HTTPS:
//! the discovery document is OpenID Connect Discovery metadata; each TEE's
//! agent gets a JWT-SVID with its DPoP-bound token and a proof; clients no
//! one here wrote (Python Authlib, through discovery and the discovered
//! JWKS) validate it; every refusal has its own code; a JWT-SVID is a
//! credential: audited, counted, listed and inactive once its session or
//! token is revoked.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use attest_gate_relying_party::{Jwks, RevocationList};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use serde_json::{json, Value};

const RP: &str = "https://rp.attest-gate.test";
/// A second audience the TDX example workload names in these tests.
const STS: &str = "sts.amazonaws.com";

/// The example workloads, the TDX one also naming [`STS`].
fn options() -> Options {
    let tdx = std::fs::read_to_string(repo().join("measurements/example-tdx-agent.toml")).unwrap();
    let tdx = tdx.replace(
        "audiences = [\"https://rp.attest-gate.test\"]",
        &format!("audiences = [\"https://rp.attest-gate.test\", \"{STS}\"]"),
    );
    assert!(tdx.contains(STS));
    Options {
        extra_workloads: vec![("example-tdx-agent.toml", tdx)],
        ..Options::default()
    }
}

/// An attested (or delegated) agent and its token.
struct Holder {
    agent: Agent,
    token: String,
    claims: Value,
}

fn decode(token: &str) -> (Value, Value) {
    let part = |i: usize| -> Value {
        serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').nth(i).unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    (part(0), part(1))
}

async fn attest(server: &Server, tee: Tee) -> Holder {
    let agent = Agent::new();
    let body = bound_request(server, tee, &agent, |_| {}).await;
    let (status, response) = server.post("/v1/attest", &body).await;
    assert_eq!(status, 200, "{response}");
    let token = response["access_token"].as_str().unwrap().to_string();
    let claims = decode(&token).1;
    Holder {
        agent,
        token,
        claims,
    }
}

/// One `POST /v1/jwt-svid`: (status, body, the answer's DPoP-Nonce).
async fn call(
    server: &Server,
    token: Option<&str>,
    proof: Option<&str>,
    body: &Value,
) -> (u16, Value, Option<String>) {
    let mut request = server
        .client
        .post(format!("{}/v1/jwt-svid", server.url))
        .json(body);
    if let Some(token) = token {
        request = request.header("Authorization", format!("DPoP {token}"));
    }
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

/// A fresh DPoP server nonce (the answer to a proof without one).
async fn dpop_nonce(server: &Server, holder: &Holder) -> String {
    let htu = format!("{}/v1/jwt-svid", server.url);
    let proof = holder.agent.dpop("POST", &htu, Some(&holder.token), None);
    let (status, body, nonce) = call(
        server,
        Some(&holder.token),
        Some(&proof),
        &json!({"audience": [RP]}),
    )
    .await;
    assert_eq!((status, code(&body)), (400, "use_dpop_nonce"), "{body}");
    nonce.expect("a DPoP-Nonce header")
}

/// The JWT-SVID request for `audiences` with the holder's token and a
/// proof carrying a server nonce.
async fn ask(server: &Server, holder: &Holder, audiences: &[&str]) -> (u16, Value) {
    let nonce = dpop_nonce(server, holder).await;
    let htu = format!("{}/v1/jwt-svid", server.url);
    let proof = holder
        .agent
        .dpop("POST", &htu, Some(&holder.token), Some(&nonce));
    let (status, body, _) = call(
        server,
        Some(&holder.token),
        Some(&proof),
        &json!({ "audience": audiences }),
    )
    .await;
    (status, body)
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

    async fn revoke(&self, kind: &str, target: &str, mode: &str) {
        let body = json!({"kind": kind, "target": target, "mode": mode, "reason": "test"});
        let (status, answer) = self.admin("/v1/admin/revoke", &body).await;
        assert_eq!(status, 200, "{answer}");
    }

    async fn relying_party(&self) -> (String, String) {
        let (status, body) = self
            .admin("/v1/admin/clients", &json!({"client_id": "federation-rp"}))
            .await;
        assert_eq!(status, 200, "{body}");
        (
            "federation-rp".into(),
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

    async fn revocation_list(&self) -> RevocationList {
        let (status, jws) = self.get("/v1/revocations?since=0").await;
        assert_eq!(status, 200, "{jws}");
        let (_, jwks) = self.get("/.well-known/jwks.json").await;
        let jwks = Jwks::from_json(&serde_json::from_str(&jwks).unwrap()).unwrap();
        RevocationList::verify(&jws, &jwks, &self.url).unwrap()
    }

    async fn json(&self, path: &str) -> Value {
        let (status, text) = self.get(path).await;
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).unwrap()
    }
}

#[tokio::test]
async fn the_discovery_document_is_openid_connect_metadata() {
    let server = start(Options::default());
    let discovery = server.json("/.well-known/openid-configuration").await;
    let jwks = server.json("/.well-known/jwks.json").await;
    // OpenID Connect Discovery 1.0 §3's required metadata (but the
    // authorization endpoint: there is none).
    assert_eq!(discovery["issuer"], server.url.as_str());
    assert_eq!(
        discovery["jwks_uri"],
        format!("{}/.well-known/jwks.json", server.url)
    );
    assert_eq!(discovery["response_types_supported"], json!(["id_token"]));
    assert_eq!(discovery["subject_types_supported"], json!(["public"]));
    let algs: Vec<Value> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["alg"].clone())
        .collect();
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"],
        json!(algs)
    );
    assert_eq!(algs, [json!("ES256")]);
    assert_eq!(
        discovery["jwt_svid_endpoint"],
        format!("{}/v1/jwt-svid", server.url)
    );
    assert_eq!(
        discovery["spiffe_bundle_uri"],
        format!("{}/v1/bundle/spiffe", server.url)
    );
}

/// Authlib (Python, not ours) discovers the issuer, fetches the discovered
/// JWKS and validates `token` for `audience`: whether it accepted it.
/// `.ci/run` installs it and sets `ATTEST_GATE_AUTHLIB_PYTHON`; without it
/// the check is skipped, except under CI, where that fails.
fn authlib_accepts(server: &Server, token: &str, audience: &str) -> Option<bool> {
    let Some(python) = std::env::var_os("ATTEST_GATE_AUTHLIB_PYTHON") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs set ATTEST_GATE_AUTHLIB_PYTHON (.ci/run installs authlib)"
        );
        eprintln!("ATTEST_GATE_AUTHLIB_PYTHON unset: skipping the Authlib check");
        return None;
    };
    let script = repo().join("verifier/service/tests/python/authlib_oidc.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .args([&server.url, token, audience])
        .arg(server.data_path().join("tls/cert.pem"))
        .output()
        .unwrap();
    eprintln!(
        "authlib: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(out.status.success())
}

#[tokio::test]
async fn each_tee_gets_a_jwt_svid_that_independent_clients_validate() {
    let server = start(options());
    let jwks = server.json("/.well-known/jwks.json").await;
    let bundle = server.json("/v1/bundle/spiffe").await;
    let rp = server.relying_party().await;
    for tee in [Tee::Nitro, Tee::Snp, Tee::Tdx] {
        let holder = attest(&server, tee).await;
        let (status, answer) = ask(&server, &holder, &[RP]).await;
        assert_eq!(status, 200, "{tee:?}: {answer}");
        let svid = answer["token"].as_str().unwrap();
        // The signature against the published key (aws-lc-rs, not the
        // service's code path).
        let (header, claims) = verify_jwt(svid, &jwks);
        assert_eq!(header["typ"], "JWT");
        assert_eq!(header["alg"], "ES256");
        assert!(bundle["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["use"] == "jwt-svid" && k["kid"] == header["kid"]));
        assert_eq!(claims["sub"], holder.claims["sub"]);
        assert_eq!(answer["spiffe_id"], holder.claims["sub"]);
        assert_eq!(claims["aud"], RP);
        assert_eq!(claims["iss"], server.url.as_str());
        let (iat, exp) = (
            claims["iat"].as_i64().unwrap(),
            claims["exp"].as_i64().unwrap(),
        );
        assert!(exp > iat && exp - iat <= 300, "{claims}");
        assert!(exp <= holder.claims["exp"].as_i64().unwrap());
        assert_eq!(answer["jti"], claims["jti"]);
        assert_ne!(claims["jti"], holder.claims["jti"]);
        // Nothing else: a JWT-SVID carries no scope, cnf or provenance.
        let mut names: Vec<&str> = claims
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        assert_eq!(names, ["aud", "exp", "iat", "iss", "jti", "sub"]);

        // A JWT-SVID is not an access token: introspection says what it is.
        let seen = server.introspect(&rp, svid).await;
        assert_eq!(
            (seen["active"].as_bool(), seen["token_type"].as_str()),
            (Some(true), Some("jwt-svid")),
            "{seen}"
        );
        assert_eq!(seen["session"]["parent"], holder.claims["jti"]);

        if let Some(accepted) = authlib_accepts(&server, svid, RP) {
            assert!(accepted, "{tee:?}: Authlib refused a valid JWT-SVID");
            assert_eq!(
                authlib_accepts(&server, svid, "https://elsewhere.test"),
                Some(false),
                "Authlib accepted a JWT-SVID for another audience"
            );
            let mut tampered = svid.to_string();
            tampered.replace_range(tampered.len() - 4.., "AAAA");
            assert_eq!(authlib_accepts(&server, &tampered, RP), Some(false));
        }
    }

    // Several audiences the workload names: `aud` is an array.
    let holder = attest(&server, Tee::Tdx).await;
    let (status, answer) = ask(&server, &holder, &[RP, STS]).await;
    assert_eq!(status, 200, "{answer}");
    let (_, claims) = verify_jwt(answer["token"].as_str().unwrap(), &jwks);
    assert_eq!(claims["aud"], json!([RP, STS]));
    if authlib_accepts(&server, answer["token"].as_str().unwrap(), STS).is_some() {
        assert_eq!(
            authlib_accepts(&server, answer["token"].as_str().unwrap(), STS),
            Some(true)
        );
    }

    // Counted and audited.
    let (_, metrics) = server.get("/metrics").await;
    assert!(
        metrics.contains("attest_gate_jwt_svid_requests_total{code=\"ok\"} 4"),
        "{metrics}"
    );
    let response = server
        .client
        .get(format!(
            "{}/v1/admin/audit?limit=1000&action=jwt_svid",
            server.url
        ))
        .bearer_auth(&server.admin_token)
        .send()
        .await
        .unwrap();
    let audit: Value = response.json().await.unwrap();
    let issued = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["code"] == "ok" && r["decision"] == "allow")
        .count();
    assert_eq!(issued, 4, "{audit}");
    // The audit log names the JWT-SVID, never holds it.
    assert!(!audit
        .to_string()
        .contains(answer["token"].as_str().unwrap()));
}

#[tokio::test]
async fn every_jwt_svid_refusal_has_its_code() {
    let server = start(options());
    let holder = attest(&server, Tee::Tdx).await;
    let htu = format!("{}/v1/jwt-svid", server.url);
    let rp_body = json!({"audience": [RP]});

    // No token; a token that is not ours; no proof.
    let nonce = dpop_nonce(&server, &holder).await;
    let proof = holder
        .agent
        .dpop("POST", &htu, Some(&holder.token), Some(&nonce));
    let (status, body, _) = call(&server, None, Some(&proof), &rp_body).await;
    assert_eq!((status, code(&body)), (401, "invalid_token"), "{body}");
    let mut forged = holder.token.clone();
    forged.replace_range(forged.len() - 4.., "AAAA");
    let (status, body, _) = call(&server, Some(&forged), Some(&proof), &rp_body).await;
    assert_eq!((status, code(&body)), (401, "invalid_token"), "{body}");
    let (status, body, _) = call(&server, Some(&holder.token), None, &rp_body).await;
    assert_eq!((status, code(&body)), (401, "invalid_dpop_proof"), "{body}");

    // A proof by another key, for another URL, or used twice.
    let thief = Agent::new();
    let stolen = thief.dpop("POST", &htu, Some(&holder.token), Some(&nonce));
    let (status, body, _) = call(&server, Some(&holder.token), Some(&stolen), &rp_body).await;
    assert_eq!((status, code(&body)), (401, "invalid_dpop_proof"), "{body}");
    let elsewhere = holder.agent.dpop(
        "POST",
        &format!("{}/v1/secrets/x", server.url),
        Some(&holder.token),
        Some(&nonce),
    );
    let (status, body, _) = call(&server, Some(&holder.token), Some(&elsewhere), &rp_body).await;
    assert_eq!((status, code(&body)), (401, "invalid_dpop_proof"), "{body}");
    let (status, body, _) = call(&server, Some(&holder.token), Some(&proof), &rp_body).await;
    assert_eq!(status, 200, "{body}");
    let (status, body, _) = call(&server, Some(&holder.token), Some(&proof), &rp_body).await;
    assert_eq!(
        (status, code(&body)),
        (401, "invalid_dpop_proof"),
        "replayed: {body}"
    );

    // Audiences: not the workload's; none; too many; twice; not a list.
    let (status, body) = ask(&server, &holder, &["https://elsewhere.test"]).await;
    assert_eq!(
        (status, code(&body)),
        (403, "audience_not_allowed"),
        "{body}"
    );
    let (status, body) = ask(&server, &holder, &[RP, "https://elsewhere.test"]).await;
    assert_eq!(
        (status, code(&body)),
        (403, "audience_not_allowed"),
        "{body}"
    );
    let (status, body) = ask(&server, &holder, &[]).await;
    assert_eq!((status, code(&body)), (400, "audience_count"), "{body}");
    let (status, body) = ask(&server, &holder, &[RP; 9]).await;
    assert_eq!((status, code(&body)), (400, "audience_count"), "{body}");
    let (status, body) = ask(&server, &holder, &[RP, RP]).await;
    assert_eq!((status, code(&body)), (400, "audience_count"), "{body}");
    let (status, body) = ask(&server, &holder, &[""]).await;
    assert_eq!((status, code(&body)), (400, "audience_count"), "{body}");
    let (status, body, _) = call(
        &server,
        Some(&holder.token),
        Some(&proof),
        &json!({"audience": RP}),
    )
    .await;
    assert_eq!((status, code(&body)), (400, "malformed_request"), "{body}");

    // A delegated token: no JWT-SVID at all, not even for its own
    // audience (its sub-agent was not attested).
    let child = delegate(&server, &holder).await;
    for audiences in [&[RP][..], &[STS][..]] {
        let (status, body) = ask(&server, &child, audiences).await;
        assert_eq!(
            (status, code(&body)),
            (403, "jwt_svid_not_delegable"),
            "{body}"
        );
    }

    // Quarantined: a bearer token could not carry the mark, so none.
    let watched = attest(&server, Tee::Nitro).await;
    server
        .revoke(
            "session",
            watched.claims["session"]["id"].as_str().unwrap(),
            "quarantine",
        )
        .await;
    let (status, body) = ask(&server, &watched, &[RP]).await;
    assert_eq!((status, code(&body)), (403, "quarantined"), "{body}");
}

/// RFC 8693 exchange of `parent`'s token for a new agent's key.
async fn delegate(server: &Server, parent: &Holder) -> Holder {
    let child = Agent::new();
    let htu = format!("{}/v1/token/exchange", server.url);
    let body = json!({
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": parent.token,
        "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "actor_key": child.jwk.to_jwk(),
        "scope": "inference:invoke",
        "audience": RP,
        "purpose": "federation-test",
    });
    let mut nonce = None;
    for _ in 0..2 {
        let proof = parent
            .agent
            .dpop("POST", &htu, Some(&parent.token), nonce.as_deref());
        let (status, headers, response) = server
            .post_with("/v1/token/exchange", &body, &[("DPoP", &proof)])
            .await;
        if code(&response) == "use_dpop_nonce" && nonce.is_none() {
            nonce = headers
                .get("dpop-nonce")
                .map(|v| v.to_str().unwrap().to_string());
            continue;
        }
        assert_eq!(status, 200, "{response}");
        let token = response["access_token"].as_str().unwrap().to_string();
        let claims = decode(&token).1;
        return Holder {
            agent: child,
            token,
            claims,
        };
    }
    panic!("the DPoP nonce round did not end");
}

#[tokio::test]
async fn a_revoked_sessions_jwt_svids_are_listed_inactive_and_no_more_are_issued() {
    let server = start(options());
    let rp = server.relying_party().await;

    // Revoking the session: its JWT-SVID is listed by jti and introspects
    // inactive; the token gets no new one.
    let holder = attest(&server, Tee::Snp).await;
    let (status, answer) = ask(&server, &holder, &[RP]).await;
    assert_eq!(status, 200, "{answer}");
    let svid = answer["token"].as_str().unwrap().to_string();
    let jti = answer["jti"].as_str().unwrap().to_string();
    assert_eq!(server.introspect(&rp, &svid).await["active"], true);
    let session = holder.claims["session"]["id"].as_str().unwrap();
    server.revoke("session", session, "immediate").await;
    assert_eq!(server.introspect(&rp, &svid).await["active"], false);
    let list = server.revocation_list().await;
    assert!(
        list.entries
            .iter()
            .any(|e| e.target == jti && format!("{:?}", e.kind).eq_ignore_ascii_case("jti")),
        "the revoked session's JWT-SVID is listed by jti"
    );
    let (status, body) = ask(&server, &holder, &[RP]).await;
    assert_eq!((status, code(&body)), (403, "revoked"), "{body}");

    // Revoking the access token alone revokes the JWT-SVIDs it bought.
    let other = attest(&server, Tee::Nitro).await;
    let (status, answer) = ask(&server, &other, &[RP]).await;
    assert_eq!(status, 200, "{answer}");
    let svid = answer["token"].as_str().unwrap().to_string();
    server
        .revoke("jti", other.claims["jti"].as_str().unwrap(), "immediate")
        .await;
    assert_eq!(server.introspect(&rp, &svid).await["active"], false);
    let list = server.revocation_list().await;
    assert!(list
        .entries
        .iter()
        .any(|e| Some(e.target.as_str()) == answer["jti"].as_str()));

    // Refusals are audited and counted as such.
    let (_, metrics) = server.get("/metrics").await;
    assert!(
        metrics.contains("attest_gate_jwt_svid_requests_total{code=\"revoked\"} 1"),
        "{metrics}"
    );
}

/// The JWT-SVID never outlives its access token, and Cedar is asked about
/// each audience: a `forbid` on an audience the workload names holds for
/// JWT-SVIDs too.
#[tokio::test]
async fn a_jwt_svid_is_bounded_by_its_token_and_by_the_policy() {
    let policy: &'static str = Box::leak(
        format!(
            "{}\nforbid (principal, action == AttestGate::Action::\"issue\", resource)\nwhen {{ context.audience == \"{STS}\" }};\n",
            include_str!("../default.cedar")
        )
        .into_boxed_str(),
    );
    let server = start(Options {
        policy: Some(policy),
        ..options()
    });
    let agent = Agent::new();
    let mut body = bound_request(&server, Tee::Tdx, &agent, |_| {}).await;
    body["ttl_seconds"] = json!(60);
    let (status, response) = server.post("/v1/attest", &body).await;
    assert_eq!(status, 200, "{response}");
    let token = response["access_token"].as_str().unwrap().to_string();
    let holder = Holder {
        agent,
        claims: decode(&token).1,
        token,
    };
    let (status, answer) = ask(&server, &holder, &[RP]).await;
    assert_eq!(status, 200, "{answer}");
    let claims = decode(answer["token"].as_str().unwrap()).1;
    assert_eq!(
        claims["exp"], holder.claims["exp"],
        "capped at the token's expiry"
    );
    assert!(answer["expires_in"].as_i64().unwrap() <= 60);

    let (status, body) = ask(&server, &holder, &[STS]).await;
    assert_eq!(
        (status, code(&body)),
        (403, "audience_not_allowed"),
        "{body}"
    );
}

/// A token whose workload left `measurements/` (reload) gets no JWT-SVID.
#[tokio::test]
async fn a_workload_no_longer_listed_gets_no_jwt_svid() {
    let server = start(options());
    let holder = attest(&server, Tee::Tdx).await;
    let (status, answer) = ask(&server, &holder, &[RP]).await;
    assert_eq!(status, 200, "{answer}");
    let dir = server.measurements_dir().unwrap();
    std::fs::remove_file(dir.join("example-tdx-agent.toml")).unwrap();
    let (status, body) = server.admin("/v1/admin/reload", &json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = ask(&server, &holder, &[RP]).await;
    assert_eq!((status, code(&body)), (403, "workload_unknown"), "{body}");
}
