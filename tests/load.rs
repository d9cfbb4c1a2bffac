//! The load generator against the real verifier: a short run with every
//! TEE and scenario answers without an error (a smoke test, not a speed),
//! and a server killed under load has committed every credential it
//! handed out.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use attest_gate_tests::{binary, fresh_schema, lines_of as lines, postgres_url, RunningVerifier};
use serde_json::Value;

const SERVE_ARGS: [&str; 2] = ["--dev", "--no-rate-limits"];

fn load_report(args: &[&str]) -> Value {
    let output = Command::new(binary("attest-gate-load"))
        .args(args)
        .arg("--json")
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(output.status.success(), "attest-gate-load failed");
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn a_short_mixed_run_on_every_tee_has_no_errors() {
    let verifier = binary("verifier");
    let report = load_report(&[
        "--spawn",
        "--verifier-bin",
        verifier.to_str().unwrap(),
        "--tee",
        "mix",
        "--scenario",
        "mixed",
        "--concurrency",
        "4",
        "--keys",
        "6",
        "--duration",
        "3",
        "--fail-on-error",
    ]);
    assert_eq!(report["errors"], 0, "{report}");
    assert!(report["round_trips"].as_u64().unwrap() > 0, "{report}");
    // The figures a benchmark reads are there.
    for field in [
        "/latency_ms/p99",
        "/server_cpu_ms_per_round_trip",
        "/generator_cpu_ms_per_round_trip",
        "/database_bytes_per_attestation",
    ] {
        assert!(
            report.pointer(field).unwrap().is_number(),
            "{field}: {report}"
        );
    }
}

/// Two replicas on one PostgreSQL, driven by one generator: both serve,
/// nothing is refused (nonces, keys and the audit chain are shared), and
/// each replica's CPU per round trip is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_postgresql_serve_a_short_run_without_errors() {
    let Some(base) = postgres_url() else { return };
    let schema = format!("ag_load_{}", std::process::id());
    let (admin, url) = fresh_schema(&base, &schema).await;
    let verifier = binary("verifier");
    let report = tokio::task::spawn_blocking(move || {
        load_report(&[
            "--spawn",
            "--verifier-bin",
            verifier.to_str().unwrap(),
            "--database",
            &url,
            "--replicas",
            "2",
            "--concurrency",
            "4",
            "--duration",
            "3",
            "--fail-on-error",
        ])
    })
    .await
    .unwrap();
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin)
        .await
        .unwrap();
    assert_eq!(report["errors"], 0, "{report}");
    let replicas = report["replicas"].as_array().unwrap();
    assert_eq!(replicas.len(), 2, "{report}");
    for replica in replicas {
        assert!(replica["round_trips"].as_u64().unwrap() > 0, "{report}");
        assert!(
            replica["server_cpu_ms_per_round_trip"].is_number(),
            "{report}"
        );
    }
}

/// SIGKILL under load: whatever the generator was given (a 200), the
/// restarted verifier knows — the credential, its session and the audit
/// record were committed before the answer went out — and the audit chain
/// is intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_credential_handed_out_before_a_crash_is_committed() {
    let verifier = RunningVerifier::start(&SERVE_ARGS);
    let tokens = verifier.data_dir.path().join("received-tokens");
    let mut generator = Command::new(binary("attest-gate-load"))
        .args(["--verifier", &verifier.url, "--ca-cert"])
        .arg(verifier.cert())
        .args(["--tee", "tdx", "--concurrency", "6", "--warmup", "0"])
        .args(["--duration", "60", "--record-tokens"])
        .arg(&tokens)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while lines(&tokens).len() < 40 {
        assert!(
            Instant::now() < deadline,
            "the generator received no tokens"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Killed mid-stream: requests are in flight, batches half-written.
    let data_dir = verifier.kill();
    std::thread::sleep(Duration::from_millis(200));
    let _ = generator.kill();
    let _ = generator.wait();
    let received = lines(&tokens);
    assert!(received.len() >= 40);

    let verifier = RunningVerifier::start_in(data_dir, &SERVE_ARGS);
    let secret = verifier.register_client("crash-check").await;
    let inactive = verifier
        .inactive_tokens("crash-check", &secret, &received)
        .await;
    assert!(
        inactive.is_empty(),
        "tokens handed out were not committed: {inactive:?}"
    );
    let audit = Command::new(binary("verifier"))
        .args(["audit", "verify", "--data-dir"])
        .arg(verifier.data_dir.path())
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&audit.stdout).unwrap();
    assert!(audit.status.success(), "{report}");
    assert_eq!(report["intact"], true, "{report}");
    // Every issuance and its audit record: at least one record per token.
    assert!(report["records"].as_u64().unwrap() >= received.len() as u64);
}
