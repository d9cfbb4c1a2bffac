//! The `verifier` command-line contract, exercised through the real binary:
//! exit codes, JSON shape, input encodings, bundles, and every forged case.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const FORGE_AT: &str = "2025-01-01T00:00:00Z";

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata")
}

fn test_root() -> PathBuf {
    testdata().join("roots/nitro-test-root.pem")
}

/// Runs `verifier args...`; returns (exit code, parsed stdout or Null, stderr).
fn run(args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_verifier"))
        .args(args)
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap(),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs every case listed in `testdata/<tee>/cases.tsv` through the binary.
fn run_committed_cases(
    tee: &str,
    root: &Path,
    evidence_and_collateral: impl Fn(&str) -> (PathBuf, Option<PathBuf>),
) -> usize {
    let index = std::fs::read_to_string(testdata().join(tee).join("cases.tsv")).unwrap();
    let mut n = 0;
    for line in index.lines().filter(|l| !l.starts_with('#')) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (name, expected, nonce, report_data) = (cols[0], cols[1], cols[2], cols[3]);
        let (file, collateral) = evidence_and_collateral(name);
        let mut args = vec![
            "verify",
            s(&file),
            "--tee",
            tee,
            "--at",
            FORGE_AT,
            "--trust-root",
            s(root),
        ];
        if let Some(dir) = &collateral {
            args.extend(["--collateral", s(dir)]);
        }
        if nonce != "-" {
            args.extend(["--nonce", nonce]);
        }
        if report_data != "-" {
            args.extend(["--report-data", report_data]);
        }
        let (code, json, stderr) = run(&args);
        assert!(
            stderr.contains("WARNING: trusting test roots"),
            "{name}: test roots are announced"
        );
        if expected == "ok" {
            assert_eq!(code, 0, "{tee}/{name}: {json}");
            assert_eq!(json["verified"], true);
            assert_eq!(json["trust"], "test-root");
            assert_eq!(json["claims"]["trust"], "test-root");
        } else {
            assert_eq!(code, 1, "{tee}/{name}: {json}");
            assert_eq!(json["verified"], false, "{name}");
            assert_eq!(json["error"]["code"], expected, "{tee}/{name}: {json}");
            assert!(json["error"]["message"].as_str().unwrap().len() > 5);
        }
        n += 1;
    }
    n
}

#[test]
fn every_committed_forged_case_gets_its_exit_code_and_error_code() {
    let nitro = run_committed_cases("nitro", &test_root(), |name| {
        (testdata().join(format!("nitro/{name}.cose")), None)
    });
    assert!(nitro >= 20);
    let folder = |tee: &'static str| {
        move |name: &str| {
            let dir = testdata().join(tee).join(name);
            let collateral = dir.join("collateral");
            (
                dir.join("evidence.bin"),
                collateral.is_dir().then_some(collateral),
            )
        }
    };
    let snp = run_committed_cases(
        "snp",
        &testdata().join("roots/snp-test-ark.pem"),
        folder("snp"),
    );
    assert!(snp >= 20);
    let tdx = run_committed_cases(
        "tdx",
        &testdata().join("roots/tdx-test-root.pem"),
        folder("tdx"),
    );
    assert!(tdx >= 25);
}

/// `verifier verify` (no `--tee`: auto-detection) on a committed case kept
/// as a folder (`evidence.bin`, `collateral/`), under the test root `root`.
fn run_case(tee: &str, root: &str, name: &str, extra: &[&str]) -> (i32, Value) {
    let dir = testdata().join(tee).join(name);
    let (evidence, collateral) = (dir.join("evidence.bin"), dir.join("collateral"));
    let root = testdata().join("roots").join(root);
    let mut args = vec![
        "verify",
        s(&evidence),
        "--collateral",
        s(&collateral),
        "--at",
        FORGE_AT,
        "--trust-root",
        s(&root),
    ];
    args.extend(extra);
    let (code, json, _) = run(&args);
    (code, json)
}

fn run_snp_case(name: &str) -> (i32, Value) {
    run_case("snp", "snp-test-ark.pem", name, &[])
}

fn run_tdx_case(name: &str, extra: &[&str]) -> (i32, Value) {
    run_case("tdx", "tdx-test-root.pem", name, extra)
}

#[test]
fn auto_detection_names_an_unsupported_snp_version() {
    let (code, json) = run_snp_case("unsupported_version");
    assert_eq!(
        (code, json["error"]["code"].as_str()),
        (1, Some("unsupported_version")),
        "{json}"
    );
}

#[test]
fn snp_claims_are_decoded() {
    let (code, json) = run_snp_case("valid");
    assert_eq!(code, 0, "{json}");
    let c = &json["claims"];
    assert_eq!(json["tee"], "snp");
    assert_eq!(c["product"], "Milan");
    assert_eq!(c["signing_key"], "vcek");
    assert_eq!(c["report_version"], 3);
    assert_eq!(c["policy"]["debug"], false);
    assert_eq!(c["policy"]["smt"], true);
    assert_eq!(c["reported_tcb"]["microcode"], 115);
    assert_eq!(c["reported_tcb"]["snp"], 8);
    assert_eq!(c["chain"].as_array().unwrap().len(), 3);
    assert_eq!(c["measurements"]["measurement"].as_str().unwrap().len(), 96);
    assert_eq!(c["report_data"].as_str().unwrap().len(), 128);
}

#[test]
fn claims_have_the_documented_shape() {
    let (code, json, _) = run(&[
        "verify",
        s(&testdata().join("nitro/valid.cose")),
        "--at",
        FORGE_AT,
        "--trust-root",
        s(&test_root()),
    ]);
    assert_eq!(code, 0);
    let c = &json["claims"];
    assert_eq!(json["tee"], "nitro");
    assert_eq!(c["debug"], false);
    assert_eq!(c["digest"], "SHA384");
    assert_eq!(c["module_id"], "i-0test-enc0test");
    assert_eq!(c["verified_at"], FORGE_AT);
    assert_eq!(c["timestamp"], FORGE_AT);
    assert_eq!(c["measurements"].as_object().unwrap().len(), 16);
    assert_eq!(c["chain"].as_array().unwrap().len(), 5);
    for hex_field in [
        &c["measurements"]["pcr0"],
        &c["nonce"],
        &c["evidence_sha384"],
        &c["chain"][0]["sha256"],
    ] {
        let h = hex_field.as_str().unwrap();
        assert!(
            h.chars()
                .all(|ch| ch.is_ascii_digit() || ('a'..='f').contains(&ch)),
            "lower-case hex: {h}"
        );
    }
    assert_eq!(c["evidence_sha384"].as_str().unwrap().len(), 96);
    assert_eq!(c["user_data"], Value::Null);
}

#[test]
fn debug_is_rejected_unless_allowed() {
    let file = testdata().join("nitro/debug_enclave.cose");
    let root = test_root();
    let base = [
        "verify",
        s(&file),
        "--at",
        FORGE_AT,
        "--trust-root",
        s(&root),
    ];
    let (code, json, _) = run(&base);
    assert_eq!(
        (code, json["error"]["code"].as_str()),
        (1, Some("debug_enclave"))
    );
    let (code, json, _) = run(&[&base[..], &["--allow-debug"]].concat());
    assert_eq!(code, 0);
    assert_eq!(json["claims"]["debug"], true);
}

#[test]
fn vendor_roots_refuse_forged_evidence_by_default() {
    let (code, json, stderr) = run(&[
        "verify",
        s(&testdata().join("nitro/valid.cose")),
        "--at",
        FORGE_AT,
    ]);
    assert_eq!(
        (code, json["error"]["code"].as_str()),
        (1, Some("chain_untrusted"))
    );
    assert!(!stderr.contains("WARNING"));
    let dir = testdata().join("tdx/valid");
    let (code, json, _) = run(&[
        "verify",
        s(&dir.join("evidence.bin")),
        "--collateral",
        s(&dir.join("collateral")),
        "--at",
        FORGE_AT,
    ]);
    assert_eq!(
        (code, json["error"]["code"].as_str()),
        (1, Some("chain_untrusted"))
    );
}

#[test]
fn hex_and_base64_inputs_are_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let raw = std::fs::read(testdata().join("nitro/valid.cose")).unwrap();
    let hex_file = dir.path().join("doc.hex");
    std::fs::write(&hex_file, hex::encode(&raw)).unwrap();
    let b64_file = dir.path().join("doc.b64");
    std::fs::write(&b64_file, base64_encode(&raw)).unwrap();
    for f in [&hex_file, &b64_file] {
        let (code, json, _) = run(&[
            "verify",
            s(f),
            "--at",
            FORGE_AT,
            "--trust-root",
            s(&test_root()),
        ]);
        assert_eq!(code, 0, "{}: {json}", f.display());
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    // Wrapped at 76 columns, as `base64` prints it, to exercise whitespace handling.
    let out = Command::new("base64")
        .arg("-w")
        .arg("76")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    out.stdin.as_ref().unwrap().write_all(bytes).unwrap();
    String::from_utf8(out.wait_with_output().unwrap().stdout).unwrap()
}

#[test]
fn bundle_records_and_replays() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("valid.bundle.json");
    let out = Command::new(env!("CARGO_BIN_EXE_verifier"))
        .args([
            "bundle",
            s(&testdata().join("nitro/valid.cose")),
            "--note",
            "forged by attest-gate-forge",
            "-o",
            s(&bundle),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recorded: Value = serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    assert_eq!(recorded["format"], "attest-gate-evidence-bundle");
    assert_eq!(recorded["version"], 1);
    assert_eq!(recorded["tee"], "nitro");
    assert_eq!(
        recorded["verify_at"], FORGE_AT,
        "Nitro bundles default to the document's timestamp"
    );
    assert_eq!(recorded["provenance"], "forged by attest-gate-forge");

    // No --at: the bundle's instant is used.
    let (code, json, _) = run(&["verify", s(&bundle), "--trust-root", s(&test_root())]);
    assert_eq!(code, 0, "{json}");
    // An explicit --at still wins.
    let (code, json, _) = run(&[
        "verify",
        s(&bundle),
        "--trust-root",
        s(&test_root()),
        "--at",
        "2030-01-01T00:00:00Z",
    ]);
    assert_eq!(
        (code, json["error"]["code"].as_str()),
        (1, Some("certificate_expired"))
    );
    // A bundle for another TEE than --tee says.
    let (code, json, _) = run(&[
        "verify",
        s(&bundle),
        "--tee",
        "snp",
        "--trust-root",
        s(&test_root()),
    ]);
    assert_eq!(
        (code, json["error"]["code"].as_str()),
        (1, Some("tee_mismatch"))
    );
    // A damaged bundle is rejected evidence, not a usage error.
    std::fs::write(&bundle, b"{\"format\": \"something else\"}").unwrap();
    let (code, json, _) = run(&["verify", s(&bundle)]);
    assert_eq!(
        (code, json["error"]["code"].as_str()),
        (1, Some("malformed_evidence"))
    );
}

#[test]
fn at_doc_uses_the_document_timestamp() {
    let (code, json, _) = run(&[
        "verify",
        s(&testdata().join("nitro/valid.cose")),
        "--at",
        "doc",
        "--trust-root",
        s(&test_root()),
    ]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["claims"]["verified_at"], FORGE_AT);
}

#[test]
fn usage_errors_and_unreadable_files_exit_2() {
    let valid = testdata().join("nitro/valid.cose");
    for args in [
        vec!["verify", "/nonexistent/evidence"],
        vec!["verify", s(&valid), "--at", "yesterday"],
        vec!["verify", s(&valid), "--nonce", "xyz"],
        vec!["verify", s(&valid), "--tee", "sgx"],
        vec!["verify", s(&valid), "--trust-root", "/nonexistent/root.pem"],
        vec!["verify"],
        vec!["frobnicate"],
    ] {
        let (code, json, stderr) = run(&args);
        assert_eq!(code, 2, "{args:?}: {json} {stderr}");
        assert!(!stderr.is_empty());
    }
}

#[test]
fn empty_and_garbage_files_are_rejections_not_crashes() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [
        ("empty", &b""[..]),
        ("text", b"hello world"),
        ("bin", &[0xd2, 0x84, 0xff, 0x00][..]),
    ] {
        let f = dir.path().join(name);
        std::fs::write(&f, bytes).unwrap();
        let (code, json, stderr) = run(&["verify", s(&f)]);
        assert_eq!(code, 1, "{name}: {json} {stderr}");
        assert_eq!(json["error"]["code"], "malformed_evidence", "{name}");
        assert!(!stderr.contains("panicked"));
    }
}

#[test]
fn a_truncated_tdx_quote_is_malformed_not_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("tdx");
    let mut quote = vec![4, 0, 2, 0, 0x81, 0, 0, 0];
    quote.resize(1000, 0);
    std::fs::write(&f, &quote).unwrap();
    let (code, json, _) = run(&["verify", s(&f)]);
    assert_eq!(
        (code, json["error"]["code"].as_str()),
        (1, Some("malformed_evidence"))
    );
}

#[test]
fn tdx_tcb_statuses_other_than_up_to_date_need_a_flag() {
    let (code, json) = run_tdx_case("tcb_sw_hardening_needed", &[]);
    assert_eq!(
        (code, json["error"]["code"].as_str()),
        (1, Some("tcb_status_not_accepted"))
    );
    assert_eq!(json["claims"]["tcb_status"], "SWHardeningNeeded");
    assert_eq!(json["claims"]["advisory_ids"][0], "INTEL-SA-00001");
    let (code, json) = run_tdx_case(
        "tcb_sw_hardening_needed",
        &["--accept-tcb-status", "SWHardeningNeeded"],
    );
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["claims"]["tcb_status"], "SWHardeningNeeded");
    // The flag names one status; it does not open the door to others.
    let (code, _) = run_tdx_case(
        "tcb_out_of_date",
        &["--accept-tcb-status", "SWHardeningNeeded"],
    );
    assert_eq!(code, 1);
    let (code, json) = run_tdx_case("debug_td", &["--allow-debug"]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["claims"]["td_attributes"]["debug"], true);
}

#[test]
fn tdx_claims_are_decoded() {
    let (code, json) = run_tdx_case("valid_module_identity", &[]);
    assert_eq!(code, 0, "{json}");
    let c = &json["claims"];
    assert_eq!(c["tee"], "tdx");
    assert_eq!(c["quote_version"], 4);
    assert_eq!(c["tdx_module_tcb_status"], "UpToDate");
    assert_eq!(c["qe_tcb_status"], "UpToDate");
    assert_eq!(c["trust"], "test-root");
    assert_eq!(c["chain"].as_array().unwrap().len(), 3);
    let (code, json) = run_tdx_case("valid_v5", &[]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["claims"]["quote_version"], 5);
    assert!(json["claims"]["measurements"]["mrservicetd"].is_string());
}

#[test]
fn policy_test_compares_decisions_with_expectations() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = |args: &[&str], name: &str| {
        let out = dir.path().join(format!("{name}.bundle.json"));
        let mut all = vec!["bundle"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", s(&out)]);
        let (code, _, stderr) = run(&all);
        assert_eq!(code, 0, "{stderr}");
    };
    let tdx = testdata().join("tdx/valid");
    bundle(
        &[
            s(&tdx.join("evidence.bin")),
            "--collateral",
            s(&tdx.join("collateral")),
            "--at",
            FORGE_AT,
        ],
        "tdx-user",
    );
    bundle(
        &[s(&testdata().join("nitro/valid.cose")), "--at", "doc"],
        "nitro-service",
    );
    let model = "cb1f947ab95c2c44afd3132bfde700ecf3264d170aeb81870936bc0c0e9cd1d789d4a3367252efc991f9d153d5e84f8a";
    let expect = |name: &str, principal: &str, expect: Value| {
        let case = serde_json::json!({
            "model_digest": model,
            "principal": principal,
            "intent": {"task_id": "t", "scopes": ["inference:invoke", "tools:search"],
                       "audience": "https://rp.attest-gate.test"},
            "expect": expect,
        });
        std::fs::write(
            dir.path().join(format!("{name}.expect.json")),
            case.to_string(),
        )
        .unwrap();
    };
    expect(
        "tdx-user",
        "user:alice",
        serde_json::json!({"decision": "allow", "scopes": ["inference:invoke", "tools:search"]}),
    );
    // The default policy permits agents acting for `system` or `user:*` only.
    expect(
        "nitro-service",
        "service:billing",
        serde_json::json!({"decision": "deny", "code": "scope_not_allowed"}),
    );
    let measurements = testdata().join("../measurements");
    let args = [
        "policy",
        "test",
        s(dir.path()),
        "--dev",
        "--measurements",
        s(&measurements),
    ];
    let out = Command::new(env!("CARGO_BIN_EXE_verifier"))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.contains("\"ok\":true")).count(),
        2
    );

    // Without --dev the test roots are not trusted, whatever else fails:
    // the forged TDX bundle is refused as untrusted, not judged.
    let out = Command::new(env!("CARGO_BIN_EXE_verifier"))
        .args(args.iter().filter(|a| **a != "--dev"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let tdx: Value = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .find(|v: &Value| v["case"] == "tdx-user")
        .unwrap();
    assert_eq!(tdx["got"]["code"], "chain_untrusted", "{tdx}");

    // A candidate's `forbid` applies to `policy test` as it would in service.
    let forbidding = dir.path().join("forbid-tdx.cedar");
    std::fs::write(
        &forbidding,
        "permit (principal, action, resource);\n\
         forbid (principal, action, resource) when { principal.tee == \"tdx\" };",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_verifier"))
        .args(args)
        .arg("--policy")
        .arg(&forbidding)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let tdx: Value = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .find(|v: &Value| v["case"] == "tdx-user")
        .unwrap();
    assert_eq!(
        (tdx["got"]["decision"].clone(), tdx["got"]["code"].clone()),
        (
            serde_json::json!("deny"),
            serde_json::json!("scope_not_allowed")
        ),
        "{tdx}"
    );

    // A policy change that turns the denial into an allowance is caught.
    let permissive = dir.path().join("permissive.cedar");
    std::fs::write(&permissive, "permit (principal, action, resource);").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_verifier"))
        .args(args)
        .arg("--policy")
        .arg(&permissive)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let differing: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &Value| v["ok"] == false)
        .collect();
    assert_eq!(differing.len(), 1);
    assert_eq!(differing[0]["case"], "nitro-service");
    assert_eq!(differing[0]["got"]["decision"], "allow");
}
