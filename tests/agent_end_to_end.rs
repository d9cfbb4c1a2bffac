//! The new user's path, with the real binaries: `verifier serve --dev`, then
//! `enclave-agent attest --simulate <tee>` against it, for every TEE; a model
//! that no workload serves is refused; and without `--dev` simulated evidence
//! is refused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::{Command, Output};

use attest_gate_tests::{binary, workspace_root, RunningVerifier};
use serde_json::Value;

fn agent(
    verifier: &RunningVerifier,
    tee: &str,
    model: &std::path::Path,
    extra: &[&str],
) -> (Output, Value) {
    let output = Command::new(binary("enclave-agent"))
        .args([
            "attest",
            "--simulate",
            tee,
            "--verifier",
            &verifier.url,
            "--ca-cert",
        ])
        .arg(verifier.cert())
        .arg("--model")
        .arg(model)
        .args([
            "--principal",
            "user:alice",
            "--audience",
            "https://rp.attest-gate.test",
            "--scope",
            "inference:invoke",
            "--scope",
            "tools:search",
        ])
        .args(extra)
        .output()
        .unwrap();
    let json = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output, json)
}

#[test]
fn a_simulated_agent_gets_credentials_for_every_tee() {
    let verifier = RunningVerifier::start(&["--dev"]);
    let model = workspace_root().join("testdata/models/example-model.txt");
    let tokens = tempfile::tempdir().unwrap();
    for tee in ["nitro", "tdx", "snp"] {
        let token_file = tokens.path().join(format!("{tee}.jwt"));
        let (output, answer) = agent(
            &verifier,
            tee,
            &model,
            &["--csr", "--token-out", token_file.to_str().unwrap()],
        );
        assert!(
            output.status.success(),
            "{tee}: {answer}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(answer["token_type"], "DPoP");
        assert_eq!(answer["scope"], "inference:invoke tools:search");
        assert_eq!(answer["simulated"], true);
        assert_eq!(answer["test_root"], true);
        let spiffe = answer["spiffe_id"].as_str().unwrap();
        assert_eq!(
            spiffe,
            format!(
                "spiffe://attest-gate.test/example-{tee}-agent/{}",
                answer["jkt"].as_str().unwrap()
            )
        );
        assert!(answer["svid"]
            .as_str()
            .unwrap()
            .contains("BEGIN CERTIFICATE"));
        let written = std::fs::read_to_string(&token_file).unwrap();
        assert_eq!(written, answer["access_token"].as_str().unwrap());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(String::from_utf8_lossy(&output.stderr).contains("SIMULATED"));
    }
}

#[test]
fn a_model_no_workload_serves_is_refused() {
    let verifier = RunningVerifier::start(&["--dev"]);
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("other-model.bin");
    std::fs::write(&model, b"not the example model").unwrap();
    let (output, answer) = agent(&verifier, "snp", &model, &[]);
    assert_eq!(output.status.code(), Some(1), "{answer}");
    assert_eq!(answer["error"]["code"], "model_not_allowed");
}

#[test]
fn a_verifier_without_dev_refuses_simulated_evidence() {
    let verifier = RunningVerifier::start(&[]);
    let model = workspace_root().join("testdata/models/example-model.txt");
    let (output, answer) = agent(&verifier, "tdx", &model, &[]);
    assert_eq!(output.status.code(), Some(1), "{answer}");
    assert_eq!(answer["error"]["code"], "chain_untrusted");
}

#[test]
fn an_unreachable_verifier_or_missing_model_is_exit_code_2() {
    let attest_unreachable = |model: &std::path::Path| {
        Command::new(binary("enclave-agent"))
            .args([
                "attest",
                "--simulate",
                "nitro",
                "--verifier",
                "https://127.0.0.1:1",
            ])
            .args(["--audience", "https://rp", "--model"])
            .arg(model)
            .output()
            .unwrap()
    };
    let output = attest_unreachable(&workspace_root().join("testdata/models/example-model.txt"));
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unreachable"));
    let output = attest_unreachable(std::path::Path::new("/nonexistent/model"));
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/model"));
}
