//! The generator's command line refuses what it cannot run (and, being an
//! integration test, makes `cargo test --workspace` build the binary the
//! end-to-end load tests in `tests/load.rs` drive).

#![allow(clippy::unwrap_used)]

use std::process::Command;

fn run(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_attest-gate-load"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn it_needs_a_verifier_or_spawn() {
    let (code, stderr) = run(&["--duration", "1"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("--spawn"), "{stderr}");
}

#[test]
fn a_running_verifier_needs_its_certificate() {
    let (code, stderr) = run(&["--verifier", "https://127.0.0.1:1"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--ca-cert"), "{stderr}");
}

#[test]
fn zero_keys_and_a_zero_rate_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("ca.pem");
    std::fs::write(&pem, "").unwrap();
    let pem = pem.to_str().unwrap();
    let base = ["--verifier", "https://127.0.0.1:1", "--ca-cert", pem];
    let (code, stderr) = run(&[&base[..], &["--keys", "0"]].concat());
    assert_ne!(code, 0);
    assert!(stderr.contains("--keys"), "{stderr}");
    let (code, stderr) = run(&[&base[..], &["--rate", "0"]].concat());
    assert_ne!(code, 0);
    assert!(stderr.contains("--rate"), "{stderr}");
}

#[test]
fn replicas_need_a_shared_database_and_pids_match_verifiers() {
    let (code, stderr) = run(&["--spawn", "--replicas", "2", "--duration", "1"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("--database"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("ca.pem");
    std::fs::write(&pem, "").unwrap();
    let (code, stderr) = run(&[
        "--verifier",
        "https://127.0.0.1:1",
        "--verifier",
        "https://127.0.0.1:2",
        "--server-pid",
        "1",
        "--ca-cert",
        pem.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("--server-pid"), "{stderr}");
}
