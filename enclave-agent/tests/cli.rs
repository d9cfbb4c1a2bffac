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

#[test]
fn usage_errors_exit_2() {
    // No --audience.
    let output = agent()
        .args([
            "attest",
            "--verifier",
            "https://127.0.0.1:1",
            "--model",
            "x",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    // --simulate and --tee together.
    let output = agent()
        .args([
            "attest",
            "--verifier",
            "https://v",
            "--model",
            "x",
            "--audience",
            "a",
        ])
        .args(["--simulate", "tdx", "--tee", "snp"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}
