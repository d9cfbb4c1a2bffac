//! The `enclave-agent` command line itself (its attestations are tested end
//! to end against a running verifier in `tests/agent_end_to_end.rs`; this
//! file also makes `cargo test --workspace` build the binary those tests run).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_enclave-agent"))
}

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn model_digest_prints_what_measurements_list() {
    let output = agent()
        .arg("model-digest")
        .arg(repo().join("testdata/models/example-model.txt"))
        .output()
        .unwrap();
    assert!(output.status.success());
    let digest: String = serde_json::from_slice(&output.stdout).unwrap();
    let example =
        std::fs::read_to_string(repo().join("measurements/example-tdx-agent.toml")).unwrap();
    assert!(example.contains(&digest), "{digest}");
}

/// Runs `enclave-agent attest` with otherwise valid arguments (a real model
/// file, a verifier URL) plus `extra`, and returns (exit code, stderr).
fn attest_with(extra: &[&str], audience: bool) -> (Option<i32>, String) {
    let model = repo().join("testdata/models/example-model.txt");
    let mut command = agent();
    command
        .args(["attest", "--verifier", "https://127.0.0.1:1", "--model"])
        .arg(&model)
        .args(extra);
    if audience {
        command.args(["--audience", "https://rp.attest-gate.test"]);
    }
    let output = command.output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn usage_errors_exit_2() {
    // Each run differs from a valid one by the defect named, and the message
    // says which usage rule refused it (exit 2 alone would also be a failed
    // connection or an unreadable model).
    let (code, stderr) = attest_with(&[], false);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("required arguments were not provided") && stderr.contains("--audience"),
        "{stderr}"
    );
    let (code, stderr) = attest_with(&["--simulate", "tdx", "--tee", "snp"], true);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("'--simulate <SIMULATE>' cannot be used with '--tee <TEE>'"),
        "{stderr}"
    );
    let (code, stderr) = attest_with(&["--simulate", "sgx"], true);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("invalid value 'sgx' for '--simulate <SIMULATE>'"),
        "{stderr}"
    );
    let (code, stderr) = attest_with(&["--tee", "snp", "--vmpl", "4"], true);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("invalid value '4' for '--vmpl <VMPL>'"),
        "{stderr}"
    );
    let (code, stderr) = attest_with(&["--simulate", "snp", "--vmpl", "2"], true);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("'--simulate <SIMULATE>' cannot be used with '--vmpl <VMPL>'"),
        "{stderr}"
    );
}
