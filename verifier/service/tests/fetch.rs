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
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use attest_gate_core::{TcbStatus, TeeKind, TrustAnchors, Verifier};
use attest_gate_forge::snp::{ChainSpec as SnpChain, ReportSpec};
use attest_gate_verifier::{Clock, Http, KdsSource, PcsSource};
use attest_gate_verifier::{CollateralSource, Lookup};
use time::macros::datetime;
use time::OffsetDateTime;

use attest_gate_tests::fixtures_dir as fixtures;

mod common;
use common::vendor::{percent_encode, start, Plan};

/// What the service would look a quote up by (here from the unverified
/// PCK certificate: these tests are about the fetcher, not the service's
/// authentication before it).
fn tdx_lookup(quote: &[u8]) -> Lookup {
    let (fmspc, ca) = attest_gate_core::tdx::unverified_pck_lookup(quote).unwrap();
    Lookup::Tdx { fmspc, ca }
}

fn snp_lookup(report: &[u8]) -> Lookup {
    Lookup::snp(report, &attest_gate_core::Collateral::empty()).unwrap()
}

/// A KDS fetcher (no spacing) against the fake server playing `plan`, at
/// the forge's instant.
async fn kds_playing(plan: &Arc<Plan>) -> KdsSource {
    let (url, cert) = start(Arc::clone(plan)).await;
    let (clock, _) = clock(attest_gate_forge::nitro::FORGE_INSTANT);
    KdsSource::new(&url, http(&cert), clock)
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
    let mut http = Http::new(
        attest_gate_verifier::tls_client(cert_pem.as_bytes(), false).unwrap(),
        std::time::Duration::from_secs(8),
    )
    .unwrap();
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

    let lookup = tdx_lookup(&quote);
    let fetched = pcs.find(&lookup).await.unwrap().unwrap();
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
        "one retry after the 5xx"
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
    pcs.find(&lookup).await.unwrap().unwrap();
    assert_eq!(plan.total.load(Ordering::SeqCst), before);

    // Within the hour before nextUpdate it is fetched again.
    let next_update = datetime!(2026-03-20 10:41:15 UTC);
    now.store(
        (next_update - time::Duration::minutes(30)).unix_timestamp(),
        Ordering::SeqCst,
    );
    pcs.find(&lookup).await.unwrap().unwrap();
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
        pcs.find(&lookup).await.unwrap().is_some(),
        "stale while valid"
    );
    now.store(
        (next_update + time::Duration::minutes(1)).unix_timestamp(),
        Ordering::SeqCst,
    );
    assert!(
        pcs.find(&lookup).await.is_err(),
        "expired and unrefreshable"
    );

    // Other TEEs are not its business.
    assert!(pcs.find(&Lookup::Nitro).await.unwrap().is_none());
    assert!(pcs.serves(TeeKind::Tdx) && !pcs.serves(TeeKind::Snp));
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
    let fetched = kds.find(&snp_lookup(&report)).await.unwrap().unwrap();
    // Three requests, at least one interval apart.
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(plan.total.load(Ordering::SeqCst), 3);
    let queries = plan.queries.lock().unwrap().clone();
    assert!(
        queries.iter().any(|q| q.ends_with(&format!(
            "/vcek/v1/Milan/{hwid}?blSPL=03&teeSPL=00&snpSPL=08&ucodeSPL=115"
        ))),
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
    kds.find(&snp_lookup(&report)).await.unwrap().unwrap();
    assert_eq!(plan.total.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_missing_item_is_none_once_not_a_retry_loop() {
    let plan = Arc::new(Plan::default());
    let kds = kds_playing(&plan).await;
    let report = ReportSpec::default().sign(&attest_gate_forge::snp::vcek_key());
    let lookup = snp_lookup(&report);
    assert!(kds.find(&lookup).await.unwrap().is_none());
    // The product's chain (404: its CRL is not asked for) and the VCEK.
    assert_eq!(plan.total.load(Ordering::SeqCst), 2, "404 is final");
    // Remembered: a flood of reports naming unknown chips reaches AMD once.
    assert!(kds.find(&lookup).await.unwrap().is_none());
    assert_eq!(plan.total.load(Ordering::SeqCst), 2);
}

/// A report signed (the report says) by a VLEK: the forge's VCEK key signs
/// it, which is enough for lookups.
fn vlek_report() -> Vec<u8> {
    let mut spec = ReportSpec::default();
    spec.signer_info |= 1 << 2;
    spec.sign(&attest_gate_forge::snp::vcek_key())
}

#[tokio::test]
async fn a_retry_after_stops_the_retries_and_holds_every_request_until_then() {
    let plan = Arc::new(Plan::default());
    plan.set_down(true);
    *plan.retry_after.lock().unwrap() = Some("120".into());
    let kds = kds_playing(&plan).await;
    let report = ReportSpec::default().sign(&attest_gate_forge::snp::vcek_key());
    let lookup = snp_lookup(&report);
    let err = kds.find(&lookup).await.unwrap_err();
    assert_eq!(err.retry_after, Some(Duration::from_secs(120)), "{err}");
    assert_eq!(plan.total.load(Ordering::SeqCst), 1, "no retry against it");
    // Back up, but we were told to wait: nothing is sent before then.
    plan.set_down(false);
    let err = kds.find(&lookup).await.unwrap_err();
    assert!(err
        .retry_after
        .is_some_and(|w| w <= Duration::from_secs(120)));
    assert_eq!(plan.total.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_vlek_signed_report_gets_kds_vlek_chain_and_crl_and_no_vcek() {
    let chain = SnpChain {
        crl_revokes_ask: Some(false),
        ..SnpChain::default()
    };
    let files: HashMap<String, Vec<u8>> = chain.collateral().unwrap().into_iter().collect();
    let mut plan = Plan::default();
    plan.routes.insert(
        "/vlek/v1/Milan/cert_chain".into(),
        (files["cert_chain.pem"].clone(), vec![]),
    );
    plan.routes.insert(
        "/vlek/v1/Milan/crl".into(),
        (files["crl.der"].clone(), vec![]),
    );
    let plan = Arc::new(plan);
    let kds = kds_playing(&plan).await;
    let fetched = kds
        .find(&snp_lookup(&vlek_report()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fetched.get("crl.der").unwrap(), files["crl.der"].as_slice());
    assert!(fetched.get("vcek.der").is_none());
    assert_eq!(plan.total.load(Ordering::SeqCst), 2);
    assert_eq!(plan.hits_under("/vlek/"), 2);
}

#[tokio::test]
async fn a_kds_that_fails_is_an_error_not_an_empty_answer() {
    // What the service turns into 503 collateral_unavailable: never "none",
    // which would let a request's own CRL stand in.
    let plan = Arc::new(Plan {
        failing_prefixes: vec!["/vlek/".into(), "/vcek/".into()],
        ..Plan::default()
    });
    let kds = kds_playing(&plan).await;
    assert!(kds.find(&snp_lookup(&vlek_report())).await.is_err());
}

#[tokio::test]
async fn an_oversized_answer_is_refused() {
    let mut plan = Plan::default();
    plan.routes.insert(
        "/vcek/v1/Milan/cert_chain".into(),
        (vec![b'A'; 2 * 1024 * 1024], vec![]),
    );
    let plan = Arc::new(plan);
    let kds = kds_playing(&plan).await;
    let report = ReportSpec::default().sign(&attest_gate_forge::snp::vcek_key());
    let err = kds.find(&snp_lookup(&report)).await.unwrap_err();
    assert!(err.reason.contains("too large"), "{err}");
}
