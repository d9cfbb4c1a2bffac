//! The collateral fetchers against a local HTTPS server that plays Intel PCS
//! (serving the recorded collateral of a real TDX quote) and AMD KDS (serving
//! a forged chain): the fetched set verifies, is cached, is refreshed before
//! its nextUpdate, is served stale while still valid when the server fails,
//! and requests are retried and spaced. No test reaches the internet.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use attest_gate_core::{TcbStatus, TeeKind, TrustAnchors, Verifier};
use attest_gate_forge::snp::{ChainSpec as SnpChain, ReportSpec};
use attest_gate_verifier::CollateralSource;
use attest_gate_verifier::{Clock, Http, KdsSource, PcsSource};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use time::macros::datetime;
use time::OffsetDateTime;

use attest_gate_tests::fixtures_dir as fixtures;

/// A body and its headers.
type Answer = (Vec<u8>, Vec<(&'static str, String)>);

/// What the fake server answers: path → (body, headers). Counts hits per
/// path; fails the first `fail_first` hits of a path with 503, and every
/// request while `down` is set.
#[derive(Default)]
struct Plan {
    routes: HashMap<String, Answer>,
    fail_first: HashMap<String, usize>,
    hits: Mutex<HashMap<String, usize>>,
    queries: Mutex<Vec<String>>,
    down: AtomicBool,
    total: AtomicUsize,
}

impl Plan {
    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

async fn serve_plan(State(plan): State<Arc<Plan>>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    plan.total.fetch_add(1, Ordering::SeqCst);
    plan.queries.lock().unwrap().push(request.uri().to_string());
    let hit = {
        let mut hits = plan.hits.lock().unwrap();
        let n = hits.entry(path.clone()).or_default();
        *n += 1;
        *n
    };
    if plan.down.load(Ordering::SeqCst) || hit <= plan.fail_first.get(&path).copied().unwrap_or(0) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    match plan.routes.get(&path) {
        Some((body, headers)) => {
            let mut map = HeaderMap::new();
            for (name, value) in headers {
                map.insert(*name, HeaderValue::from_str(value).unwrap());
            }
            (map, body.clone()).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Starts the fake server on loopback; returns its URL and its certificate (PEM).
async fn start(plan: Arc<Plan>) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let config = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap(),
    ));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().fallback(serve_plan).with_state(plan);
    tokio::spawn(async move {
        axum_server::from_tcp_rustls(listener, config)
            .serve(app.into_make_service())
            .await
            .unwrap();
    });
    (format!("https://{addr}"), cert.pem())
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A clock the test moves.
fn clock(at: OffsetDateTime) -> (Clock, Arc<AtomicI64>) {
    let now = Arc::new(AtomicI64::new(at.unix_timestamp()));
    let reader = Arc::clone(&now);
    let clock: Clock = Arc::new(move || {
        OffsetDateTime::from_unix_timestamp(reader.load(Ordering::SeqCst)).unwrap()
    });
    (clock, now)
}

fn http(cert_pem: &str) -> Http {
    let mut http =
        Http::new(attest_gate_verifier::tls_client(cert_pem.as_bytes(), false).unwrap()).unwrap();
    http.backoff = Duration::from_millis(20);
    http
}

/// Intel PCS, played with the recorded collateral of `quote_v5_sample`.
fn pcs_plan(collateral: &Path) -> Plan {
    let read = |name: &str| std::fs::read(collateral.join(name)).unwrap();
    let chain = |name: &str| String::from_utf8(read(name)).unwrap();
    let mut plan = Plan::default();
    plan.routes.insert(
        "/tdx/certification/v4/tcb".into(),
        (
            read("tcb_info.json"),
            vec![(
                "TCB-Info-Issuer-Chain",
                percent_encode(&chain("tcb_info_issuer_chain.pem")),
            )],
        ),
    );
    plan.routes.insert(
        "/tdx/certification/v4/qe/identity".into(),
        (
            read("qe_identity.json"),
            vec![(
                "SGX-Enclave-Identity-Issuer-Chain",
                percent_encode(&chain("qe_identity_issuer_chain.pem")),
            )],
        ),
    );
    plan.routes.insert(
        "/sgx/certification/v4/pckcrl".into(),
        (
            read("pck_crl.der"),
            vec![(
                "SGX-PCK-CRL-Issuer-Chain",
                percent_encode(&chain("pck_crl_issuer_chain.pem")),
            )],
        ),
    );
    plan.routes.insert(
        "/IntelSGXRootCA.der".into(),
        (read("root_ca_crl.der"), vec![]),
    );
    // The first root CRL request fails: the fetcher must retry.
    plan.fail_first.insert("/IntelSGXRootCA.der".into(), 1);
    plan
}

#[tokio::test]
async fn pcs_collateral_is_fetched_cached_refreshed_and_verifies() {
    let Some(fixtures) = fixtures() else { return };
    let recorded = fixtures.join("tdx/_collateral/dcap-qvl-90c06f-2026-02");
    let quote = std::fs::read(fixtures.join("tdx/go-tdx-guest/quote_v5_sample.dat")).unwrap();
    let plan = Arc::new(pcs_plan(&recorded));
    let (url, cert) = start(Arc::clone(&plan)).await;
    // Inside the recorded set's window [2026-02-18T10:58:51Z, 2026-03-20T10:41:15Z].
    let at = datetime!(2026-02-20 00:00:00 UTC);
    let (clock, now) = clock(at);
    let pcs = PcsSource::new(
        &url,
        &format!("{url}/IntelSGXRootCA.der"),
        http(&cert),
        clock,
    );

    let fetched = pcs.find(TeeKind::Tdx, &quote).await.unwrap().unwrap();
    for name in [
        "tcb_info.json",
        "tcb_info_issuer_chain.pem",
        "qe_identity.json",
        "qe_identity_issuer_chain.pem",
        "pck_crl.der",
        "pck_crl_issuer_chain.pem",
        "root_ca_crl.der",
    ] {
        assert_eq!(
            fetched.get(name).unwrap(),
            std::fs::read(recorded.join(name)).unwrap(),
            "{name}"
        );
    }
    assert_eq!(
        plan.hits("/IntelSGXRootCA.der"),
        2,
        "one retry after the 503"
    );
    let queries = plan.queries.lock().unwrap().clone();
    assert!(
        queries
            .iter()
            .any(|q| q.ends_with("/tdx/certification/v4/tcb?fmspc=90C06F000000")),
        "{queries:?}"
    );
    assert!(
        queries
            .iter()
            .any(|q| q.ends_with("pckcrl?ca=platform&encoding=der")),
        "{queries:?}"
    );

    // What was fetched verifies to the compiled-in Intel root.
    let claims = Verifier::new(TrustAnchors::vendor().unwrap())
        .verify(TeeKind::Tdx, &quote, &fetched, at)
        .unwrap();
    assert_eq!(claims.tcb_status(), Some(TcbStatus::UpToDate));

    // Cached: a second lookup asks the server nothing.
    let before = plan.total.load(Ordering::SeqCst);
    pcs.find(TeeKind::Tdx, &quote).await.unwrap().unwrap();
    assert_eq!(plan.total.load(Ordering::SeqCst), before);

    // Within the hour before nextUpdate it is fetched again.
    let next_update = datetime!(2026-03-20 10:41:15 UTC);
    now.store(
        (next_update - time::Duration::minutes(30)).unix_timestamp(),
        Ordering::SeqCst,
    );
    pcs.find(TeeKind::Tdx, &quote).await.unwrap().unwrap();
    assert!(
        plan.total.load(Ordering::SeqCst) > before,
        "refreshed before nextUpdate"
    );

    // The server fails: the cached set is served while still valid, then not.
    plan.down.store(true, Ordering::SeqCst);
    now.store(
        (next_update - time::Duration::minutes(50)).unix_timestamp(),
        Ordering::SeqCst,
    );
    now.store(
        (next_update - time::Duration::minutes(10)).unix_timestamp(),
        Ordering::SeqCst,
    );
    assert!(
        pcs.find(TeeKind::Tdx, &quote).await.unwrap().is_some(),
        "stale while valid"
    );
    now.store(
        (next_update + time::Duration::minutes(1)).unix_timestamp(),
        Ordering::SeqCst,
    );
    assert!(
        pcs.find(TeeKind::Tdx, &quote).await.is_err(),
        "expired and unrefreshable"
    );

    // Other TEEs are not its business.
    assert!(pcs.find(TeeKind::Snp, &quote).await.unwrap().is_none());
}

#[tokio::test]
async fn kds_vcek_chain_and_crl_are_fetched_spaced_and_verify() {
    let report_spec = ReportSpec::default();
    let report = report_spec.sign(&attest_gate_forge::snp::vcek_key());
    let chain = SnpChain {
        crl_revokes_ask: Some(false),
        ..SnpChain::default()
    };
    let files: HashMap<String, Vec<u8>> = chain.collateral().unwrap().into_iter().collect();
    let lookup = attest_gate_core::snp::unverified_vcek_lookup(&report).unwrap();
    let hwid = hex::encode(lookup.chip_id);

    let mut plan = Plan::default();
    plan.routes.insert(
        format!("/vcek/v1/Milan/{hwid}"),
        (files["vcek.der"].clone(), vec![]),
    );
    plan.routes.insert(
        "/vcek/v1/Milan/cert_chain".into(),
        (files["cert_chain.pem"].clone(), vec![]),
    );
    plan.routes.insert(
        "/vcek/v1/Milan/crl".into(),
        (files["crl.der"].clone(), vec![]),
    );
    let plan = Arc::new(plan);
    let (url, cert) = start(Arc::clone(&plan)).await;
    let at = attest_gate_forge::nitro::FORGE_INSTANT;
    let (clock, _) = clock(at);
    let mut http = http(&cert);
    http.min_interval = Duration::from_millis(150);
    let kds = KdsSource::new(&url, http, clock);

    let started = Instant::now();
    let fetched = kds.find(TeeKind::Snp, &report).await.unwrap().unwrap();
    // Three requests, at least one interval apart.
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(plan.total.load(Ordering::SeqCst), 3);
    let queries = plan.queries.lock().unwrap().clone();
    assert!(
        queries[0].ends_with(&format!(
            "/vcek/v1/Milan/{hwid}?blSPL=03&teeSPL=00&snpSPL=08&ucodeSPL=115"
        )),
        "{queries:?}"
    );
    for name in ["vcek.der", "cert_chain.pem", "crl.der"] {
        assert_eq!(fetched.get(name).unwrap(), files[name].as_slice(), "{name}");
    }
    let root = attest_gate_forge::snp::test_ark().unwrap();
    let claims = Verifier::new(TrustAnchors::test_roots(vec![root]).unwrap())
        .verify(TeeKind::Snp, &report, &fetched, at)
        .unwrap();
    match claims.platform() {
        attest_gate_core::PlatformClaims::Snp(snp) => assert!(snp.revocation_checked),
        other => panic!("{other:?}"),
    }
    // Cached.
    kds.find(TeeKind::Snp, &report).await.unwrap().unwrap();
    assert_eq!(plan.total.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_missing_item_is_none_once_not_a_retry_loop() {
    let plan = Arc::new(Plan::default());
    let (url, cert) = start(Arc::clone(&plan)).await;
    let (clock, _) = clock(attest_gate_forge::nitro::FORGE_INSTANT);
    let kds = KdsSource::new(&url, http(&cert), clock);
    let report = ReportSpec::default().sign(&attest_gate_forge::snp::vcek_key());
    assert!(kds.find(TeeKind::Snp, &report).await.unwrap().is_none());
    assert_eq!(plan.total.load(Ordering::SeqCst), 1, "404 is final");
    // Remembered: a flood of reports naming unknown chips reaches AMD once.
    assert!(kds.find(TeeKind::Snp, &report).await.unwrap().is_none());
    assert_eq!(plan.total.load(Ordering::SeqCst), 1);
}
