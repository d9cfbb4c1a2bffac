//! The service decides at the instant its injected clock gives, never the
//! wall clock's: run in process with a clock fixed in 2030, a challenge
//! expires relative to 2030.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;

use attest_gate_verifier::{
    router, CollateralSources, RateLimitConfig, Service, ServiceConfig, Store,
};
use axum::body::Body;
use axum::http::Request;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use time::macros::datetime;
use time::Duration;
use tower::ServiceExt;

/// A service in process on a fresh data directory, deciding by `clock`.
async fn service_with(clock: attest_gate_verifier::Clock) -> (Service, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!(
        "sqlite://{}",
        dir.path().join("attest-gate.db").display()
    ))
    .await
    .unwrap();
    let config = ServiceConfig {
        issuer: "https://verifier.test".into(),
        data_dir: dir.path().to_path_buf(),
        measurements_dir: common::repo().join("measurements"),
        policy_file: None,
        dev: true,
        nonce_ttl: Duration::seconds(60),
        default_token_ttl: 600,
        rate_limits: RateLimitConfig::default(),
        trusted_proxies: vec![],
        forwarded_header: attest_gate_verifier::ForwardedHeader::default(),
        audit_retention: None,
        credential_retention: None,
        svid_name_constraint: false,
    };
    let (service, _) = Service::start(config, store, CollateralSources::new(), clock).unwrap();
    (service, dir)
}

#[tokio::test]
async fn a_challenge_expires_by_the_injected_clock() {
    let fixed = datetime!(2030-01-01 00:00:00 UTC);
    let (service, _dir) = service_with(Arc::new(move || fixed)).await;
    assert_eq!(service.now(), fixed);
    let response = router(Arc::new(service))
        .oneshot(Request::post("/v1/challenge").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .unwrap();
    let challenge: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(challenge["expires_at"], "2030-01-01T00:01:00Z");
}

/// The service's clock jumping an hour forward and back between challenge
/// and attestation: a nonce is current only while `now < expiry <= now +
/// ttl`, so either jump expires it (never a panic, never a nonce that lives
/// longer than its ttl), and a fresh challenge after the jump works.
#[tokio::test]
async fn a_clock_jumping_an_hour_either_way_expires_the_nonce_and_nothing_else() {
    use std::sync::atomic::{AtomicI64, Ordering};
    let start = time::OffsetDateTime::now_utc();
    let offset = Arc::new(AtomicI64::new(0));
    let clock = {
        let offset = Arc::clone(&offset);
        Arc::new(move || start + Duration::seconds(offset.load(Ordering::SeqCst)))
    };
    let (service, _dir) = service_with(clock).await;
    let app = router(Arc::new(service));
    let call = |path: &'static str, body: Option<serde_json::Value>| {
        let app = app.clone();
        async move {
            let request = Request::post(path).header("content-type", "application/json");
            let body = body.map(|b| Body::from(b.to_string())).unwrap_or_default();
            let response = app.oneshot(request.body(body).unwrap()).await.unwrap();
            let status = response.status().as_u16();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            (
                status,
                serde_json::from_slice::<serde_json::Value>(&bytes).unwrap(),
            )
        }
    };
    let nonce = || async {
        let (status, body) = call("/v1/challenge", None).await;
        assert_eq!(status, 200, "{body}");
        URL_SAFE_NO_PAD
            .decode(body["nonce"].as_str().unwrap())
            .unwrap()
    };
    let agent = common::Agent::new();
    for jump in [3600, -3600] {
        offset.store(0, Ordering::SeqCst);
        let issued = nonce().await;
        offset.store(jump, Ordering::SeqCst);
        let body = common::signed_request(common::Tee::Tdx, &agent, &issued, &agent.model);
        let (status, answer) = call("/v1/attest", Some(body)).await;
        assert_eq!(
            (status, common::code(&answer)),
            (403, "nonce_expired"),
            "after a jump of {jump} s: {answer}"
        );
    }
    // Back where it was: a fresh challenge is answered.
    offset.store(0, Ordering::SeqCst);
    let fresh = nonce().await;
    let body = common::signed_request(common::Tee::Tdx, &agent, &fresh, &agent.model);
    let (status, answer) = call("/v1/attest", Some(body)).await;
    assert_eq!(status, 200, "{answer}");
}
