//! Faults under load, against the real binaries: PostgreSQL cutting every
//! connection while agents attest, and the SQLite data directory's disk
//! filling up. Requests caught by the fault fail with 503
//! `storage_unavailable` (never a 200 without its rows), the service
//! recovers without a restart, and nothing in its log is a panic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use attest_gate_tests::{binary, fresh_schema, lines_of as lines, postgres_url, RunningVerifier};
use serde_json::Value;

/// One attestation by the load generator's own client: its report.
fn one_round(verifier: &RunningVerifier, seconds: &str, tokens: Option<&Path>) -> Value {
    let mut command = Command::new(binary("attest-gate-load"));
    command
        .args(["--verifier", &verifier.url, "--ca-cert"])
        .arg(verifier.cert())
        .args(["--tee", "mix", "--concurrency", "2", "--warmup", "0"])
        .args(["--duration", seconds, "--json"]);
    if let Some(tokens) = tokens {
        command.arg("--record-tokens").arg(tokens);
    }
    let output = command.stderr(Stdio::inherit()).output().unwrap();
    assert!(output.status.success(), "attest-gate-load failed");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The errors a load report saw (keyed `"<status> <code>"`), but for 503
/// `allowed`.
fn other_errors(report: &Value, allowed: &str) -> Vec<String> {
    let allowed = format!("503 {allowed}");
    report["errors_by_code"]
        .as_object()
        .map(|codes| {
            codes
                .keys()
                .filter(|key| **key != allowed)
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_postgresql_connections_fail_closed_and_the_service_recovers() {
    let Some(base) = postgres_url() else { return };
    // A schema of its own, so runs never see each other's rows.
    let schema = format!("ag_faults_{}", std::process::id());
    let (admin, url) = fresh_schema(&base, &schema).await;
    let verifier = RunningVerifier::start(&["--dev", "--no-rate-limits", "--database", &url]);

    let tokens = verifier.data_dir.path().join("received-tokens");
    let generator = {
        let (url, cert, tokens) = (verifier.url.clone(), verifier.cert(), tokens.clone());
        std::thread::spawn(move || {
            let output = Command::new(binary("attest-gate-load"))
                .args(["--verifier", &url, "--ca-cert"])
                .arg(cert)
                .args(["--tee", "mix", "--concurrency", "4", "--warmup", "0"])
                .args(["--duration", "8", "--json", "--record-tokens"])
                .arg(tokens)
                .stderr(Stdio::inherit())
                .output()
                .unwrap();
            assert!(output.status.success(), "attest-gate-load failed");
            serde_json::from_slice::<Value>(&output.stdout).unwrap()
        })
    };
    // Under load, cut every connection the verifier holds, three times.
    let deadline = Instant::now() + Duration::from_secs(30);
    while lines(&tokens).len() < 20 {
        assert!(Instant::now() < deadline, "no tokens before the fault");
        std::thread::sleep(Duration::from_millis(20));
    }
    let cut = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
               WHERE datname = current_database() AND pid <> pg_backend_pid() \
               AND query NOT ILIKE '%pg_stat_activity%'";
    let mut terminated = 0i64;
    for _ in 0..3 {
        let (n,): (i64,) = sqlx::query_as(cut).fetch_one(&admin).await.unwrap();
        terminated += n;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    assert!(terminated > 0, "no connection of the verifier's was cut");
    let during = generator.join().unwrap();
    // Requests caught by the cuts were refused as the database's trouble,
    // and only so.
    assert_eq!(
        other_errors(&during, "storage_unavailable"),
        Vec::<String>::new(),
        "{during}"
    );

    // It recovered without a restart: a new round has no error at all.
    let after = one_round(&verifier, "2", None);
    assert_eq!(after["errors"], 0, "{after}");
    assert!(after["round_trips"].as_u64().unwrap() > 0, "{after}");

    // Every 200 during the fault was committed with its rows.
    let received = lines(&tokens);
    assert!(received.len() >= 20);
    let secret = verifier.register_client("fault-check").await;
    let inactive = verifier
        .inactive_tokens("fault-check", &secret, &received)
        .await;
    assert!(inactive.is_empty(), "issued without its rows: {inactive:?}");
    assert_eq!(verifier.log_lines_with("panicked"), Vec::<String>::new());
    drop(verifier);
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&admin)
        .await
        .unwrap();
}

/// A tmpfs mounted on a fresh directory, unmounted on drop.
struct SmallDisk {
    dir: Option<tempfile::TempDir>,
}

impl SmallDisk {
    /// `None` where this process may not mount (not root); under CI that is
    /// a failure.
    fn mount(megabytes: u32) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={megabytes}m,mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status();
        if !status.is_ok_and(|s| s.success()) {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must be able to mount a tmpfs (run as root)"
            );
            eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
            return None;
        }
        Some(Self { dir: Some(dir) })
    }

    fn path(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    /// Fills what is left with one file; returns its path.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let filler = self.path().join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while file.write_all(&block).is_ok() {}
        let _ = file.sync_all();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = Command::new("umount").arg("-l").arg(dir.path()).status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_storage_unavailable_and_space_returning_recovers() {
    let Some(disk) = SmallDisk::mount(24) else {
        return;
    };
    let data = tempfile::TempDir::new_in(disk.path()).unwrap();
    let verifier = RunningVerifier::start_in(data, &["--dev", "--no-rate-limits"]);
    let before = one_round(&verifier, "1", None);
    assert_eq!(before["errors"], 0, "{before}");

    let filler = disk.fill();
    // SQLite may still write into pages it holds; once those are used up,
    // every attestation is refused.
    let elsewhere = tempfile::tempdir().unwrap();
    let tokens = elsewhere.path().join("tokens-while-full");
    let full = one_round(&verifier, "3", Some(&tokens));
    assert!(full["errors"].as_u64().unwrap() > 0, "{full}");
    assert_eq!(
        other_errors(&full, "storage_unavailable"),
        Vec::<String>::new(),
        "{full}"
    );
    // What needs no write is still served.
    let http = verifier.client();
    for path in ["/healthz", "/.well-known/jwks.json", "/v1/bundle"] {
        let status = http
            .get(format!("{}{path}", verifier.url))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status.as_u16(), 200, "{path} on a full disk");
    }

    std::fs::remove_file(filler).unwrap();
    let after = one_round(&verifier, "2", None);
    assert_eq!(after["errors"], 0, "not recovered: {after}");
    assert!(after["round_trips"].as_u64().unwrap() > 0, "{after}");
    // Whatever was answered 200 while the disk was full was committed.
    let secret = verifier.register_client("disk-check").await;
    let issued = lines(&tokens);
    let inactive = verifier
        .inactive_tokens("disk-check", &secret, &issued)
        .await;
    assert!(inactive.is_empty(), "issued without its rows: {inactive:?}");
    assert_eq!(verifier.log_lines_with("panicked"), Vec::<String>::new());
    drop(verifier);
}
