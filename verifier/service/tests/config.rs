//! `verifier serve --config FILE` and `verifier config check FILE`: a TOML
//! file under `ATTEST_GATE_<KEY>` variables under flags, every key a flag of
//! `serve`, checked by the flags' own parsers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn verifier() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_verifier"));
    // The variables of serve's settings are the test's to set.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ATTEST_GATE_") {
            command.env_remove(name);
        }
    }
    command
}

fn check(file: &Path, env: &[(&str, &str)]) -> Output {
    verifier()
        .args(["config", "check"])
        .arg(file)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("attest-gate.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_example_file_checks_and_every_setting_names_its_source() {
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/attest-gate.toml");
    let out = check(&example, &[]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{shown}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "listen = \"127.0.0.1:8443\"  # file",
        "issuer = \"https://127.0.0.1:8443\"  # file",
        "fetch-timeout = \"8\"  # file",
        "trusted-proxy",
    ] {
        if line == "trusted-proxy" {
            assert!(!shown.contains(line), "a commented key is unset: {shown}");
        } else {
            assert!(shown.contains(line), "{line} in {shown}");
        }
    }
    assert!(shown.contains("dev = \"false\"  # default"), "{shown}");
}

#[test]
fn the_environment_beats_the_file_and_passwords_are_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "nonce-ttl = 30\nlog-format = \"json\"\ndatabase = \"postgres://attest:hunter2@127.0.0.1:1/x\"\n",
    );
    let out = check(&file, &[("ATTEST_GATE_NONCE_TTL", "40")]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains("nonce-ttl = \"40\"  # environment"),
        "{shown}"
    );
    assert!(shown.contains("log-format = \"json\"  # file"), "{shown}");
    assert!(
        shown.contains("database = \"postgres://attest:***@127.0.0.1:1/x\"  # file"),
        "{shown}"
    );
    assert!(!shown.contains("hunter2"), "{shown}");
    // The database's own variable counts as the environment too.
    let out = check(
        &file,
        &[("ATTEST_GATE_DATABASE_URL", "sqlite:/tmp/other.db")],
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("database = \"sqlite:/tmp/other.db\"  # environment"),
        "{shown}"
    );
}

#[test]
fn an_unknown_key_or_a_bad_value_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    for (text, named) in [
        ("listen = \"127.0.0.1:1\"\nnonce-tll = 30\n", "nonce-tll"),
        ("nonce-ttl = \"soon\"\n", "nonce-ttl"),
        ("fetch-timeout = 60\n", "fetch-timeout"),
        ("dev = \"yes\"\n", "dev"),
        ("listen = [\"127.0.0.1:1\"]\n", "listen"),
        ("rate-limit-key = \"fast\"\n", "rate-limit-key"),
        ("listen = \n", "TOML"),
    ] {
        let file = write(dir.path(), text);
        for out in [
            check(&file, &[]),
            verifier()
                .arg("serve")
                .arg("--config")
                .arg(&file)
                .output()
                .unwrap(),
        ] {
            let said = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{text}: {said}");
            assert!(said.contains(named), "{text}: {said}");
        }
    }
}

/// `serve --config`: the file's settings are used, and a flag beats the
/// file (here the data directory: the service writes its TLS certificate
/// into the flag's, never the file's).
#[test]
fn serve_takes_its_settings_from_the_file_under_its_flags() {
    let dir = tempfile::tempdir().unwrap();
    let from_file = dir.path().join("from-file");
    let from_flag = dir.path().join("from-flag");
    let file = write(
        dir.path(),
        &format!(
            "listen = \"127.0.0.1:0\"\ndev = true\nno-rate-limits = true\ndata-dir = \"{}\"\n",
            from_file.display()
        ),
    );
    let mut child = verifier()
        .arg("serve")
        .arg("--config")
        .arg(&file)
        .arg("--data-dir")
        .arg(&from_flag)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !from_flag.join("tls/cert.pem").is_file() && started.elapsed() < Duration::from_secs(60) {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("serve exited: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(from_flag.join("tls/cert.pem").is_file(), "{log}");
    assert!(!from_file.exists(), "the file's data-dir was used: {log}");
    // The file's `dev = true` is in force: dev keys and the loud warning.
    assert!(from_flag.join("keys-dev").is_dir(), "{log}");
}
