//! The service decides at the instant its injected clock gives, never the
//! wall clock's: run in process with a clock fixed in 2030, a challenge
//! expires relative to 2030.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use attest_gate_verifier::{
    router, CollateralSources, RateLimitConfig, Service, ServiceConfig, Store,
};
use axum::body::Body;
use axum::http::Request;
use time::macros::datetime;
use time::Duration;
use tower::ServiceExt;

#[tokio::test]
async fn a_challenge_expires_by_the_injected_clock() {
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
    };
    let fixed = datetime!(2030-01-01 00:00:00 UTC);
    let (service, _) = Service::start(
        config,
        store,
        CollateralSources::new(),
        Arc::new(move || fixed),
    )
    .unwrap();
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
