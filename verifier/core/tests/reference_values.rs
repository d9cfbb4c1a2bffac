//! The example reference values shipped in `measurements/` match the
//! project's forged evidence for every TEE and its example model, and each
//! appraisal rule rejects with its own code; malformed files are refused
//! at load time.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use attest_gate_core::{
    Collateral, ModelDigest, ReferenceValues, Rejection, TeeKind, TrustAnchors, VerifiedClaims,
    Verifier,
};
use attest_gate_forge::{cases, intel, nitro, snp, testdata::EXAMPLE_MODEL};

fn shipped() -> Vec<(String, String)> {
    let dir = attest_gate_tests::workspace_root().join("measurements");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

fn load(files: &[(String, String)]) -> Result<ReferenceValues, String> {
    ReferenceValues::from_files(files.iter().map(|(n, t)| (n.as_str(), t.as_str())))
        .map_err(|e| e.to_string())
}

fn model() -> ModelDigest {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA384, EXAMPLE_MODEL);
    ModelDigest(d.as_ref().try_into().unwrap())
}

/// Verified claims of the named forged case of `tee`.
fn claims(tee: &str, name: &str) -> VerifiedClaims {
    let all = match tee {
        "nitro" => cases::nitro_cases(),
        "snp" => cases::snp_cases(),
        _ => cases::tdx_cases(),
    }
    .unwrap();
    let case = all.into_iter().find(|c| c.name == name).unwrap();
    let roots = vec![
        nitro::test_root().unwrap(),
        snp::test_ark().unwrap(),
        intel::test_root().unwrap(),
    ];
    Verifier::new(TrustAnchors::test_roots(roots).unwrap())
        .verify(
            case.tee.parse::<TeeKind>().unwrap(),
            &case.evidence,
            &Collateral::from_items(case.collateral.clone()),
            case.at(),
        )
        .unwrap()
}

fn code(values: &ReferenceValues, claims: &VerifiedClaims, model: &ModelDigest) -> &'static str {
    match values.appraise(claims, model) {
        Ok(_) => "ok",
        Err(r) => r.code(),
    }
}

#[test]
fn shipped_examples_match_the_forged_evidence_of_every_tee() {
    let values = load(&shipped()).unwrap();
    for tee in ["nitro", "snp", "tdx"] {
        let workload = values.appraise(&claims(tee, "valid"), &model()).unwrap();
        assert_eq!(workload.name, format!("example-{tee}-agent"));
        assert!(workload.grant.max_ttl_seconds > 0);
        assert_eq!(
            code(&values, &claims(tee, "valid"), &ModelDigest([0; 48])),
            "model_not_allowed",
            "{tee}"
        );
    }
}

#[test]
fn each_appraisal_rule_rejects_with_its_own_code() {
    let files = shipped();
    let values = load(&files).unwrap();
    // All-zero PCRs: a debug document measures nothing an example allows.
    assert_eq!(
        code(&values, &claims("nitro", "debug_enclave"), &model()),
        "measurement_not_allowed"
    );
    // Same MRTD as the example, other properties judged by the workload.
    assert_eq!(
        code(&values, &claims("tdx", "debug_td"), &model()),
        "debug_enclave"
    );
    assert_eq!(
        code(&values, &claims("tdx", "tcb_sw_hardening_needed"), &model()),
        "tcb_status_not_accepted"
    );

    let edit = |file: &str, from: &str, to: &str| -> ReferenceValues {
        let edited: Vec<(String, String)> = files
            .iter()
            .map(|(n, t)| {
                let t = if n == file {
                    t.replacen(from, to, 1)
                } else {
                    t.clone()
                };
                assert!(n != file || t.contains(to), "{file}: {from} not found");
                (n.clone(), t)
            })
            .collect();
        load(&edited).unwrap()
    };
    let snp_higher = edit("example-snp-agent.toml", "min_snp = 8", "min_snp = 9");
    assert_eq!(
        code(&snp_higher, &claims("snp", "valid"), &model()),
        "tcb_below_minimum"
    );
    let tdx_other = edit("example-tdx-agent.toml", "mrtd = \"d3", "mrtd = \"e3");
    assert_eq!(
        code(&tdx_other, &claims("tdx", "valid"), &model()),
        "measurement_not_allowed"
    );
    let tdx_sw = edit(
        "example-tdx-agent.toml",
        "[\"UpToDate\"]",
        "[\"UpToDate\", \"SWHardeningNeeded\"]",
    );
    assert_eq!(
        code(&tdx_sw, &claims("tdx", "tcb_sw_hardening_needed"), &model()),
        "ok"
    );
}

/// Where the workload matched, a rejection lists every reason, not the
/// first: a debug TD whose TCB status the workload does not accept fails
/// on both, while `appraise` still names the first.
#[test]
fn a_workload_rejection_lists_every_reason() {
    let files: Vec<(String, String)> = shipped()
        .into_iter()
        .map(|(n, t)| {
            let t = if n == "example-tdx-agent.toml" {
                t.replacen("[\"UpToDate\"]", "[\"SWHardeningNeeded\"]", 1)
            } else {
                t
            };
            (n, t)
        })
        .collect();
    let values = load(&files).unwrap();
    let debug_td = claims("tdx", "debug_td");
    let reasons: Vec<&str> = values
        .appraise_all(&debug_td, &model())
        .unwrap_err()
        .iter()
        .map(|r| r.code())
        .collect();
    assert_eq!(reasons, ["debug_enclave", "tcb_status_not_accepted"]);
    assert_eq!(code(&values, &debug_td, &model()), "debug_enclave");
    // The shipped files: the debug TD fails on debug alone.
    let shipped_values = load(&shipped()).unwrap();
    assert_eq!(
        shipped_values
            .appraise_all(&debug_td, &model())
            .unwrap_err()
            .iter()
            .map(|r| r.code())
            .collect::<Vec<_>>(),
        ["debug_enclave"]
    );
    // SNP: each component below its minimum is its own reason.
    let snp_files: Vec<(String, String)> = shipped()
        .into_iter()
        .map(|(n, t)| {
            let t = if n == "example-snp-agent.toml" {
                t.replacen("min_bootloader = 3", "min_bootloader = 255", 1)
                    .replacen("min_snp = 8", "min_snp = 255", 1)
            } else {
                t
            };
            (n, t)
        })
        .collect();
    let components: Vec<&str> = load(&snp_files)
        .unwrap()
        .appraise_all(&claims("snp", "valid"), &model())
        .unwrap_err()
        .iter()
        .map(|r| match r {
            Rejection::TcbBelowMinimum { component, .. } => component,
            other => other.code(),
        })
        .collect();
    assert_eq!(components, ["bootloader", "snp"]);
}

/// A report from VMPL 1 (a guest under an SVSM or paravisor), genuinely
/// signed, is above the example SNP workload's `max_vmpl = 0`.
#[test]
fn a_report_above_the_maximum_vmpl_is_refused() {
    let mut body = snp::ReportSpec::default().body();
    body[0x030..0x034].copy_from_slice(&1u32.to_le_bytes());
    let report = snp::sign_body(body, &snp::vcek_key());
    let collateral = Collateral::from_items(snp::ChainSpec::default().collateral().unwrap());
    let claims = Verifier::new(TrustAnchors::test_roots(vec![snp::test_ark().unwrap()]).unwrap())
        .verify(TeeKind::Snp, &report, &collateral, nitro::FORGE_INSTANT)
        .unwrap();
    let values = load(&shipped()).unwrap();
    assert_eq!(code(&values, &claims, &model()), "vmpl_above_maximum");
    let reasons = values.appraise_all(&claims, &model()).unwrap_err();
    assert!(
        matches!(
            reasons.as_slice(),
            [Rejection::VmplAboveMaximum {
                have: 1,
                maximum: 0
            }]
        ),
        "{reasons:?}"
    );
}

#[test]
fn malformed_reference_files_are_refused() {
    let (name, good) = shipped()
        .into_iter()
        .find(|(n, _)| n.contains("tdx"))
        .unwrap();
    // Each defect is refused for its own reason, not for some other one.
    for (from, to, why, reason) in [
        (
            "schema = 1",
            "schema = 2",
            "schema",
            "schema 2 (this build reads 1)",
        ),
        (
            "mrtd =",
            "mrtdd =",
            "unknown register",
            "unknown tdx register \"mrtdd\"",
        ),
        (
            "mrtd =",
            "rtmr0 =",
            "primary register missing",
            "mrtd is required for tdx",
        ),
        (
            "[\"UpToDate\"]",
            "[\"Revoked\"]",
            "Revoked",
            "Revoked is never acceptable",
        ),
        ("tee = \"tdx\"", "tee = \"sgx\"", "unknown tee", "tee: "),
        (
            "max_ttl_seconds = 600",
            "max_ttl_seconds = 0",
            "zero ttl",
            "grant.max_ttl_seconds must be positive",
        ),
        (
            "max_delegation_depth = 2",
            "max_delegation_depth = 17",
            "delegation deeper than revocation walks",
            "grant.max_delegation_depth is at most 16",
        ),
        (
            "version = \"1\"",
            "version = \"1\"\nextra = true",
            "unknown field",
            "unknown field `extra`",
        ),
        (
            "models = [\"",
            "models = [\"zz",
            "model not hex",
            "is not a SHA-384 hex digest",
        ),
        (
            "audiences = [\"https://rp.attest-gate.test\"]",
            "audiences = []",
            "no audience (never \"any\")",
            "grant.audiences must name at least one audience",
        ),
        (
            "trust_domain = \"attest-gate.test\"",
            "trust_domain = \"Attest-Gate.test\"",
            "upper-case trust domain",
            "\"Attest-Gate.test\" is not a SPIFFE trust domain",
        ),
        (
            "trust_domain = \"attest-gate.test\"",
            "trust_domain = \"attest-gate.test/x\"",
            "slash in trust domain",
            "\"attest-gate.test/x\" is not a SPIFFE trust domain",
        ),
        (
            "workload = \"example-tdx-agent\"",
            "workload = \"a/b\"",
            "two path segments",
            "grant.workload \"a/b\" is not one SPIFFE path segment",
        ),
        (
            "workload = \"example-tdx-agent\"",
            "workload = \"..\"",
            "dot-dot segment",
            "grant.workload \"..\" is not one SPIFFE path segment",
        ),
        (
            "workload = \"example-tdx-agent\"",
            "workload = \"\"",
            "empty segment",
            "grant.workload \"\" is not one SPIFFE path segment",
        ),
    ] {
        let text = good.replacen(from, to, 1);
        assert_ne!(text, good, "{why}");
        let err = load(&[(name.clone(), text)]).expect_err(why);
        assert!(
            err.starts_with(&format!("reference values {name}: ")) && err.contains(reason),
            "{why}: refused for another reason: {err}"
        );
    }
    let err = load(&[(name.clone(), good.clone()), ("again.toml".into(), good)])
        .expect_err("duplicate names accepted");
    assert!(err.contains("is used twice"), "{err}");
}
