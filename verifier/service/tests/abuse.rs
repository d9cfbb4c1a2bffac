//! The service under attack: it never takes an agent's TCB info, QE
//! identity or CRLs when it has a source of its own (and says which it used
//! in every credential), fetches only for authenticated TDX platforms,
//! writes nothing for a challenge, voids a decision it cannot audit, and
//! limits requests per client address, agent key and relying party. The
//! vendors are played by a local HTTPS server; nothing leaves the machine.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use std::sync::Arc;

use attest_gate_forge::live;
use attest_gate_forge::tdx::TdxSpec;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::vendor::{percent_encode, start as start_vendor, Plan};
use common::{code, evidence, request, start, Agent, Options, Server, Spec, Tee};
use serde_json::{json, Value};
use time::OffsetDateTime;

/// The claims of a compact JWT, unverified (the tests that verify them are
/// elsewhere; here only the claims matter).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The forged collateral file called `name`.
fn named(items: &[(String, Vec<u8>)], name: &str) -> Vec<u8> {
    items
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, b)| b.clone())
        .unwrap()
}

/// Intel PCS, played with forged collateral current now.
fn pcs_plan() -> Plan {
    pcs_plan_for(&TdxSpec::default())
}

/// Intel PCS, played with the collateral `spec` forges, current now.
fn pcs_plan_for(spec: &TdxSpec) -> Plan {
    let (_, current) = live::tdx(spec, OffsetDateTime::now_utc()).unwrap();
    let item = |name: &str| named(&current, name);
    let header = |name: &str| percent_encode(&String::from_utf8(item(name)).unwrap());
    let mut plan = Plan::default();
    plan.routes.insert(
        "/tdx/certification/v4/tcb".into(),
        (
            item("tcb_info.json"),
            vec![("TCB-Info-Issuer-Chain", header("tcb_info_issuer_chain.pem"))],
        ),
    );
    plan.routes.insert(
        "/tdx/certification/v4/qe/identity".into(),
        (
            item("qe_identity.json"),
            vec![(
                "SGX-Enclave-Identity-Issuer-Chain",
                header("qe_identity_issuer_chain.pem"),
            )],
        ),
    );
    plan.routes.insert(
        "/sgx/certification/v4/pckcrl".into(),
        (
            item("pck_crl.der"),
            vec![(
                "SGX-PCK-CRL-Issuer-Chain",
                header("pck_crl_issuer_chain.pem"),
            )],
        ),
    );
    plan.routes
        .insert("/root.crl".into(), (item("root_ca_crl.der"), vec![]));
    plan
}

/// The forge's SEV-SNP chain with a current CRL that revokes nothing.
fn snp_chain_with_crl() -> Vec<(String, Vec<u8>)> {
    live::snp_chain_with_crl(OffsetDateTime::now_utc()).unwrap()
}

/// `verifier serve` fetching from the fake vendor at `url` (its certificate
/// in `cert`), with no collateral folder.
fn fetching_server(
    flag: &str,
    url: &str,
    cert: &str,
    dir: &tempfile::TempDir,
    vendor_only: bool,
) -> Server {
    let ca = dir.path().join("vendor-ca.pem");
    std::fs::write(&ca, cert).unwrap();
    start(Options {
        vendor_only,
        collateral_dir: Some(dir.path().join("no-folder")),
        args: vec![
            flag.into(),
            url.into(),
            "--root-ca-crl-url".into(),
            format!("{url}/root.crl"),
            "--kds-interval-ms".into(),
            "0".into(),
            "--fetch-ca".into(),
            ca.display().to_string(),
        ],
        ..Options::default()
    })
}

#[tokio::test]
async fn a_fetcher_only_service_never_uses_the_agents_collateral_when_pcs_fails() {
    let plan = Arc::new(pcs_plan());
    plan.set_down(true);
    let (url, cert) = start_vendor(Arc::clone(&plan)).await;
    let dir = tempfile::tempdir().unwrap();
    let server = fetching_server("--pcs-url", &url, &cert, &dir, false);
    let agent = Agent::new();

    // PCS answers 500: the agent's own collateral — signed and current, as
    // an older set from before a TCB recovery would be — is not used.
    let body = common::bound_request(&server, Tee::Tdx, &agent, |_| {}).await;
    let (status, headers, response) = server.post_with("/v1/attest", &body, &[]).await;
    assert_eq!(
        (status, code(&response)),
        (503, "collateral_unavailable"),
        "{response}"
    );
    assert!(headers.contains_key("retry-after"), "{headers:?}");
    assert!(response.get("access_token").is_none());
    assert!(plan.hits("/tdx/certification/v4/tcb") >= 1);

    // PCS is back: the service's own set, and the credential says so.
    plan.set_down(false);
    let body = common::bound_request(&server, Tee::Tdx, &agent, |_| {}).await;
    let (status, response) = server.post("/v1/attest", &body).await;
    assert_eq!(status, 200, "{response}");
    let token = claims(response["access_token"].as_str().unwrap());
    assert_eq!(token["provenance"]["collateral"], "service");
}

/// The collateral checks that follow the platform's authentication (run
/// on the request's own task once the quote's signatures were checked) still
/// refuse: PCS serving a TCB info signed for another FMSPC issues nothing.
#[tokio::test]
async fn collateral_for_another_platform_is_refused_after_its_quote_is_authenticated() {
    let mut spec = TdxSpec::default();
    spec.tcb_info.fmspc[5] ^= 1;
    let plan = Arc::new(pcs_plan_for(&spec));
    let (url, cert) = start_vendor(Arc::clone(&plan)).await;
    let dir = tempfile::tempdir().unwrap();
    let server = fetching_server("--pcs-url", &url, &cert, &dir, false);
    let body = common::bound_request(&server, Tee::Tdx, &Agent::new(), |_| {}).await;
    let (status, response) = server.post("/v1/attest", &body).await;
    assert_eq!(
        (status, code(&response)),
        (403, "collateral_mismatch"),
        "{response}"
    );
    assert!(response.get("access_token").is_none());
    assert!(plan.hits("/tdx/certification/v4/tcb") >= 1);
}

#[tokio::test]
async fn a_kds_only_service_refuses_a_vlek_report_that_brings_its_own_crl() {
    // KDS cannot serve this VLEK's chain and CRL: the report's own
    // (current, revoking nothing) CRL must not stand in for AMD's.
    let plan = Arc::new(Plan {
        failing_prefixes: vec!["/vlek/".into()],
        ..Plan::default()
    });
    let (url, cert) = start_vendor(Arc::clone(&plan)).await;
    let dir = tempfile::tempdir().unwrap();
    let server = fetching_server("--kds-url", &url, &cert, &dir, false);
    let agent = Agent::new();
    let body = common::bound_request(&server, Tee::Snp, &agent, |spec| {
        if let Spec::Snp(report) = spec {
            report.signer_info |= 1 << 2;
        }
    })
    .await;
    let mut body = body;
    let crl = named(&snp_chain_with_crl(), "crl.der");
    body["collateral"]["crl.der"] = json!(base64::engine::general_purpose::STANDARD.encode(crl));
    let (status, response) = server.post("/v1/attest", &body).await;
    assert_eq!(
        (status, code(&response)),
        (503, "collateral_unavailable"),
        "{response}"
    );
    assert!(plan.hits_under("/vlek/v1/Milan/") >= 1);
    assert_eq!(plan.hits_under("/vcek/"), 0, "no VCEK is asked for a VLEK");
}

#[tokio::test]
async fn forged_tdx_quotes_cause_no_pcs_fetch_whatever_fmspc_they_name() {
    // Without --dev the forged PCK chain is untrusted: refused before any
    // fetch, so made-up FMSPCs cannot fill the fetch cache or reach Intel.
    let plan = Arc::new(pcs_plan());
    let (url, cert) = start_vendor(Arc::clone(&plan)).await;
    let dir = tempfile::tempdir().unwrap();
    let server = fetching_server("--pcs-url", &url, &cert, &dir, true);
    let agent = Agent::new();
    for i in 0..40u16 {
        let body = common::bound_request(&server, Tee::Tdx, &agent, |spec| {
            if let Spec::Tdx(tdx) = spec {
                let [hi, lo] = i.to_be_bytes();
                tdx.platform.fmspc = [0x90, 0xc0, hi, lo, 0, 1];
                tdx.tcb_info.fmspc = tdx.platform.fmspc;
            }
        })
        .await;
        server.expect_refusal(&body, 403, "chain_untrusted").await;
    }
    assert_eq!(
        plan.total.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nothing was fetched"
    );
}

#[tokio::test]
async fn a_flood_of_forged_snp_reports_is_bounded_and_a_real_agent_still_attests() {
    // KDS knows the forge's chip; the attacker's 200 reports name random
    // chips, from one address (behind a trusted proxy, so the test can
    // speak for two clients).
    let files = snp_chain_with_crl();
    let file = |name: &str| named(&files, name);
    let mut plan = Plan::default();
    let chip = hex::encode(attest_gate_forge::snp::chip_id());
    plan.routes
        .insert(format!("/vcek/v1/Milan/{chip}"), (file("vcek.der"), vec![]));
    plan.routes.insert(
        "/vcek/v1/Milan/cert_chain".into(),
        (file("cert_chain.pem"), vec![]),
    );
    plan.routes
        .insert("/vcek/v1/Milan/crl".into(), (file("crl.der"), vec![]));
    let plan = Arc::new(plan);
    let (url, cert) = start_vendor(Arc::clone(&plan)).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("vendor-ca.pem");
    std::fs::write(&ca, &cert).unwrap();
    let server = start(Options {
        rate_limits: true,
        collateral_dir: Some(dir.path().join("no-folder")),
        args: vec![
            "--kds-url".into(),
            url.clone(),
            "--kds-interval-ms".into(),
            "20".into(),
            "--fetch-ca".into(),
            ca.display().to_string(),
            "--trusted-proxy".into(),
            "127.0.0.1/32".into(),
            // Bursts of 40, refilled slowly enough not to blur the count.
            "--rate-limit-address".into(),
            "1/40".into(),
        ],
        ..Options::default()
    });

    let started = std::time::Instant::now();
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..200u32 {
        let (client, url) = (server.client.clone(), server.url.clone());
        flood.spawn(async move {
            let post = |path: &str, body: &Value| {
                client
                    .post(format!("{url}{path}"))
                    .header("x-forwarded-for", "192.0.2.66")
                    .json(body)
                    .send()
            };
            let response = post("/v1/challenge", &json!({})).await.unwrap();
            if response.status() != 200 {
                return response.status().as_u16();
            }
            let challenge: Value = response.json().await.unwrap();
            let nonce = URL_SAFE_NO_PAD
                .decode(challenge["nonce"].as_str().unwrap())
                .unwrap();
            let mut chip = [0u8; 64];
            chip[..4].copy_from_slice(&i.to_be_bytes());
            chip[63] = 1;
            let agent = Agent::new();
            let ev = evidence(Tee::Snp, [7u8; 64], |spec| {
                if let Spec::Snp(report) = spec {
                    report.chip_id = chip;
                }
            });
            let body = request(Tee::Snp, &agent, &nonce, &ev, &agent.model);
            post("/v1/attest", &body).await.unwrap().status().as_u16()
        });
    }
    let mut statuses = Vec::new();
    while let Some(status) = flood.join_next().await {
        statuses.push(status.unwrap());
    }
    let limited = statuses.iter().filter(|s| **s == 429).count();
    let mut tally = std::collections::BTreeMap::new();
    for status in &statuses {
        *tally.entry(status).or_insert(0) += 1;
    }
    eprintln!("flood of 200: {tally:?} in {:?}", started.elapsed());
    assert!(
        limited >= 100,
        "the per-address limits stop most: {statuses:?}"
    );
    assert!(!statuses.contains(&200), "{statuses:?}");

    // A real agent elsewhere attests, after at most its own fetch.
    let from = [("x-forwarded-for", "192.0.2.77")];
    let real = Agent::new();
    let (status, _, challenge) = server.post_with("/v1/challenge", &json!({}), &from).await;
    assert_eq!(status, 200);
    let nonce = URL_SAFE_NO_PAD
        .decode(challenge["nonce"].as_str().unwrap())
        .unwrap();
    let ev = evidence(Tee::Snp, real.report_data(&nonce, &real.model), |_| {});
    let body = request(Tee::Snp, &real, &nonce, &(ev.0, vec![]), &real.model);
    let (status, _, response) = server.post_with("/v1/attest", &body, &from).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(
        claims(response["access_token"].as_str().unwrap())["provenance"]["collateral"],
        "service"
    );
    // Every VCEK fetch needed a nonce, and nonces are limited per address:
    // the flood reached KDS at most a burst's worth of times (40, plus one a
    // second of refill), the real agent once; the product's chain and CRL
    // once each.
    let vcek_fetches = plan.hits_under("/vcek/v1/Milan/")
        - plan.hits("/vcek/v1/Milan/cert_chain")
        - plan.hits("/vcek/v1/Milan/crl");
    let refill = usize::try_from(started.elapsed().as_secs()).unwrap() + 1;
    eprintln!("VCEK fetches: {vcek_fetches}");
    assert!(
        vcek_fetches <= 41 + refill,
        "{vcek_fetches} VCEK fetches in {:?}",
        started.elapsed()
    );
    assert_eq!(plan.hits("/vcek/v1/Milan/crl"), 1);
}

#[tokio::test]
async fn the_eleventh_attestation_of_a_burst_of_ten_is_refused_and_another_key_is_not() {
    let server = start(Options {
        rate_limits: true,
        args: vec!["--rate-limit-key".into(), "0.01/10".into()],
        ..Options::default()
    });
    let agent = Agent::new();
    for i in 0..10 {
        let body = common::bound_request(&server, Tee::Nitro, &agent, |_| {}).await;
        let (status, response) = server.post("/v1/attest", &body).await;
        assert_eq!(status, 200, "attempt {i}: {response}");
    }
    let body = common::bound_request(&server, Tee::Nitro, &agent, |_| {}).await;
    let (status, headers, response) = server.post_with("/v1/attest", &body, &[]).await;
    assert_eq!(
        (status, code(&response)),
        (429, "rate_limited"),
        "{response}"
    );
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=100).contains(&wait), "{wait}");

    let other = Agent::new();
    let body = common::bound_request(&server, Tee::Nitro, &other, |_| {}).await;
    let (status, response) = server.post("/v1/attest", &body).await;
    assert_eq!(status, 200, "another key is not limited: {response}");
    let (_, metrics) = server.get("/metrics").await;
    assert!(
        metrics.contains("attest_gate_rate_limited_total{code=\"attest/key\"} 1"),
        "{metrics}"
    );
}

/// Four challenges from the test, each saying it forwards another client.
async fn four_challenges_from_four_forwarded_clients(server: &Server) -> Vec<u16> {
    let mut statuses = Vec::new();
    for client in ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"] {
        let (status, _, _) = server
            .post_with("/v1/challenge", &json!({}), &[("x-forwarded-for", client)])
            .await;
        statuses.push(status);
    }
    statuses
}

#[tokio::test]
async fn forwarding_headers_count_only_from_a_trusted_proxy() {
    let limited = |extra: &[&str]| {
        let mut args = vec!["--rate-limit-address".to_string(), "0.01/3".into()];
        args.extend(extra.iter().map(|s| s.to_string()));
        start(Options {
            rate_limits: true,
            args,
            ..Options::default()
        })
    };
    // No trusted proxy: X-Forwarded-For is ignored, all four are 127.0.0.1.
    let direct = limited(&[]);
    assert_eq!(
        four_challenges_from_four_forwarded_clients(&direct).await,
        [200, 200, 200, 429]
    );
    // Behind a trusted proxy each forwarded client has its own bucket.
    let proxied = limited(&["--trusted-proxy", "127.0.0.0/8"]);
    assert_eq!(
        four_challenges_from_four_forwarded_clients(&proxied).await,
        [200; 4]
    );
}

#[tokio::test]
async fn collateral_origin_is_in_every_credential_and_policy_can_refuse_agent_supplied() {
    // No source for TDX or SNP here: the agent's collateral, marked.
    let server = start(Options::default());
    let agent = Agent::new();
    for (tee, origin) in [
        (Tee::Snp, "agent-supplied"),
        (Tee::Tdx, "agent-supplied"),
        (Tee::Nitro, "none"),
    ] {
        let body = common::bound_request(&server, tee, &agent, |_| {}).await;
        let (status, response) = server.post("/v1/attest", &body).await;
        assert_eq!(status, 200, "{response}");
        let token = claims(response["access_token"].as_str().unwrap());
        assert_eq!(token["provenance"]["collateral"], origin);
    }

    // A policy that refuses agent-supplied collateral.
    let strict = start(Options {
        policy: Some(concat!(
            include_str!("../default.cedar"),
            "\nforbid (principal, action, resource) when { principal.collateral == \"agent-supplied\" };\n"
        )),
        ..Options::default()
    });
    let body = common::bound_request(&strict, Tee::Tdx, &agent, |_| {}).await;
    strict.expect_refusal(&body, 403, "scope_not_allowed").await;
    let body = common::bound_request(&strict, Tee::Nitro, &agent, |_| {}).await;
    let (status, response) = strict.post("/v1/attest", &body).await;
    assert_eq!(status, 200, "{response}");

    // --collateral-policy service-only: no source, no attestation.
    let service_only = start(Options {
        args: vec!["--collateral-policy".into(), "service-only".into()],
        ..Options::default()
    });
    for tee in [Tee::Tdx, Tee::Snp] {
        let body = common::bound_request(&service_only, tee, &agent, |_| {}).await;
        service_only
            .expect_refusal(&body, 503, "collateral_unavailable")
            .await;
    }
}

/// A service in this process, on SQLite in `dir`, with the system clock
/// (the forged evidence is current), `--dev` and no collateral sources.
async fn in_process(dir: &tempfile::TempDir) -> (Arc<attest_gate_verifier::Service>, String) {
    let db = format!("sqlite://{}", dir.path().join("attest-gate.db").display());
    let store = attest_gate_verifier::Store::open(&db).await.unwrap();
    let config = attest_gate_verifier::ServiceConfig {
        issuer: "https://verifier.test".into(),
        data_dir: dir.path().to_path_buf(),
        measurements_dir: common::repo().join("measurements"),
        policy_file: None,
        dev: true,
        nonce_ttl: time::Duration::seconds(60),
        default_token_ttl: 600,
        rate_limits: attest_gate_verifier::RateLimitConfig {
            enabled: false,
            ..attest_gate_verifier::RateLimitConfig::default()
        },
        trusted_proxies: vec![],
        forwarded_header: attest_gate_verifier::ForwardedHeader::default(),
        audit_retention: None,
        credential_retention: None,
        svid_name_constraint: false,
    };
    let (service, _) = attest_gate_verifier::Service::start(
        config,
        store,
        attest_gate_verifier::CollateralSources::new(),
        Arc::new(OffsetDateTime::now_utc),
    )
    .unwrap();
    (Arc::new(service), db)
}

async fn call(
    service: &Arc<attest_gate_verifier::Service>,
    path: &str,
    body: &Value,
) -> (u16, Value) {
    use tower::ServiceExt;
    let request = axum::http::Request::post(path)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let response = attest_gate_verifier::router(Arc::clone(service))
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn count(db: &str, table: &str) -> i64 {
    let pool = sqlx::SqlitePool::connect(db).await.unwrap();
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(&pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn ten_thousand_challenges_write_no_database_row() {
    let dir = tempfile::tempdir().unwrap();
    let (service, db) = in_process(&dir).await;
    for _ in 0..10_000 {
        let (status, body) = call(&service, "/v1/challenge", &json!({})).await;
        assert_eq!(status, 200, "{body}");
    }
    for table in ["audit_events", "consumed_nonces", "credentials"] {
        assert_eq!(count(&db, table).await, 0, "{table}");
    }
    assert!(service
        .metrics_text(service.now())
        .await
        .contains("attest_gate_challenges_total 10000"));

    // The attestation's own record names when its nonce was issued.
    let agent = Agent::new();
    let (_, challenge) = call(&service, "/v1/challenge", &json!({})).await;
    let nonce = URL_SAFE_NO_PAD
        .decode(challenge["nonce"].as_str().unwrap())
        .unwrap();
    let body = common::signed_request(Tee::Nitro, &agent, &nonce, &agent.model);
    let (status, response) = call(&service, "/v1/attest", &body).await;
    assert_eq!(status, 200, "{response}");
    let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
    let detail: String =
        sqlx::query_scalar("SELECT detail FROM audit_events WHERE action = 'attest'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(detail.contains("nonce issued 20"), "{detail}");
}

#[tokio::test]
async fn an_attestation_that_cannot_be_audited_is_a_500_and_issues_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (service, db) = in_process(&dir).await;
    let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
    // The database refuses every audit record (as a full disk or a role
    // that lost INSERT would).
    sqlx::query(
        "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events \
         BEGIN SELECT RAISE(ABORT, 'injected audit failure'); END",
    )
    .execute(&pool)
    .await
    .unwrap();
    let agent = Agent::new();
    let attest = |service: Arc<attest_gate_verifier::Service>| {
        let agent = &agent;
        async move {
            let (_, challenge) = call(&service, "/v1/challenge", &json!({})).await;
            let nonce = URL_SAFE_NO_PAD
                .decode(challenge["nonce"].as_str().unwrap())
                .unwrap();
            let body = common::signed_request(Tee::Nitro, agent, &nonce, &agent.model);
            call(&service, "/v1/attest", &body).await
        }
    };
    let (status, response) = attest(Arc::clone(&service)).await;
    assert_eq!(
        (status, code(&response)),
        (500, "internal_error"),
        "{response}"
    );
    assert!(response.get("access_token").is_none(), "{response}");
    // A refusal that cannot be audited is a 500 too, not its own code.
    let foreign = common::signed_request(Tee::Nitro, &agent, &[0u8; 40], &agent.model);
    let (status, response) = call(&service, "/v1/attest", &foreign).await;
    assert_eq!(
        (status, code(&response)),
        (500, "internal_error"),
        "{response}"
    );

    sqlx::query("DROP TRIGGER refuse_audit")
        .execute(&pool)
        .await
        .unwrap();
    let (status, response) = attest(Arc::clone(&service)).await;
    assert_eq!(
        status, 200,
        "recovers once the log can be written: {response}"
    );
    assert_eq!(count(&db, "audit_events").await, 1);
}

#[tokio::test]
async fn the_revocation_list_is_limited_per_address_too() {
    let server = start(Options {
        rate_limits: true,
        args: vec!["--rate-limit-address".into(), "0.01/2".into()],
        ..Options::default()
    });
    assert_eq!(server.get("/v1/revocations").await.0, 200);
    assert_eq!(server.get("/v1/revocations").await.0, 200);
    let (status, body) = server.get("/v1/revocations").await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("rate_limited"), "{body}");
    // Endpoints are counted apart: a challenge still passes.
    assert_eq!(server.post("/v1/challenge", &json!({})).await.0, 200);
}

/// A collateral source that accepts connections and never answers costs a
/// TDX attestation its fetch timeout (three tries of `--fetch-timeout`),
/// then 503 `collateral_unavailable`, well inside the request limit; Nitro
/// and SEV-SNP attestations meanwhile are answered at once.
#[tokio::test]
async fn a_collateral_source_that_hangs_costs_its_timeout_and_no_other_tee() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let _holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((connection, _)) = listener.accept().await {
            held.push(connection);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let server = start(Options {
        collateral_dir: Some(dir.path().join("no-folder")),
        args: vec![
            "--pcs-url".into(),
            format!("https://{address}"),
            "--root-ca-crl-url".into(),
            format!("https://{address}/root.crl"),
            "--fetch-timeout".into(),
            "1".into(),
        ],
        ..Options::default()
    });
    let agent = Agent::new();
    let tdx_body = common::bound_request(&server, Tee::Tdx, &agent, |_| {}).await;
    let others = [
        common::bound_request(&server, Tee::Nitro, &Agent::new(), |_| {}).await,
        common::bound_request(&server, Tee::Snp, &Agent::new(), |_| {}).await,
    ];
    let started = std::time::Instant::now();
    let tdx = async {
        let answer = server.post("/v1/attest", &tdx_body).await;
        (answer, started.elapsed())
    };
    let rest = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let mut answers = Vec::new();
        for body in &others {
            let at = std::time::Instant::now();
            answers.push((server.post("/v1/attest", body).await, at.elapsed()));
        }
        answers
    };
    let (((status, answer), took), rest) = tokio::join!(tdx, rest);
    assert_eq!(
        (status, code(&answer)),
        (503, "collateral_unavailable"),
        "{answer}"
    );
    assert!(
        took >= std::time::Duration::from_secs(2) && took < std::time::Duration::from_secs(15),
        "the hanging source took {took:?}"
    );
    for ((status, answer), took) in rest {
        assert_eq!(status, 200, "{answer}");
        assert!(
            took < std::time::Duration::from_secs(2),
            "another TEE waited {took:?}"
        );
    }
}
