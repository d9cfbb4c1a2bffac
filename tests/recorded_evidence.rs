//! The `verifier` binary over every recorded Nitro sample in the shared
//! fixtures, as a user would run it: `--at doc` accepts the genuine ones with
//! vendor-root trust, a bundle recorded from each replays, and the real
//! negative sample is rejected with `signature_invalid`. The SEV-SNP and TDX
//! samples likewise, with their collateral.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::Command;

use attest_gate_tests::{binary, fixtures_dir};
use serde_json::Value;

fn verify(args: &[&str]) -> (i32, Value) {
    let out = Command::new(binary("verifier"))
        .arg("verify")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
    )
}

#[test]
fn recorded_nitro_samples_through_the_cli() {
    let Some(dir) = fixtures_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut n = 0;
    for sample in attest_gate_tests::samples(&dir, "nitro") {
        let id = sample["id"].as_str().unwrap();
        // Prefer the base64 text where the source shipped it, to exercise decoding.
        let b64 = dir.join(format!("nitro/{id}.b64"));
        let file = if b64.is_file() {
            b64
        } else {
            dir.join(format!("nitro/{id}.cose"))
        };
        let file = file.to_str().unwrap();
        let (code, json) = verify(&[file, "--at", "doc", "--allow-debug"]);
        if sample["valid"] == false {
            assert_eq!(
                (code, json["error"]["code"].as_str()),
                (1, Some("signature_invalid")),
                "{id}"
            );
            n += 1;
            continue;
        }
        assert_eq!(code, 0, "{id}: {json}");
        assert_eq!(json["trust"], "vendor-root");
        assert_eq!(json["claims"]["module_id"], sample["module_id"], "{id}");
        assert_eq!(
            json["claims"]["measurements"]["pcr0"], sample["pcr0"],
            "{id}"
        );
        assert_eq!(
            json["claims"]["chain"][0]["sha256"],
            "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"
        );

        // Record once, replay: the bundle carries the instant.
        let bundle = tmp.path().join(format!("{}.json", id.replace('/', "_")));
        let status = Command::new(binary("verifier"))
            .args([
                "bundle",
                file,
                "--note",
                &format!("shared fixture {id}"),
                "-o",
                bundle.to_str().unwrap(),
            ])
            .status()
            .unwrap();
        assert!(status.success(), "{id}");
        let (code, replay) = verify(&[bundle.to_str().unwrap(), "--allow-debug"]);
        assert_eq!(code, 0, "{id} replay: {replay}");
        assert_eq!(
            replay["claims"]["evidence_sha384"],
            json["claims"]["evidence_sha384"]
        );
        // Wall-clock verification of years-old evidence: the leaf has expired.
        let (code, late) = verify(&[file]);
        assert_eq!(
            (code, late["error"]["code"].as_str()),
            (1, Some("certificate_expired")),
            "{id}"
        );
        n += 1;
    }
    assert_eq!(n, 8);
}

/// The binary over every recorded SEV-SNP sample, with a `--collateral`
/// folder named as AMD's KDS names its files, and `--report-data` checked.
#[test]
fn recorded_snp_samples_through_the_cli() {
    let Some(dir) = fixtures_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut n = 0;
    for sample in attest_gate_tests::samples(&dir, "snp") {
        let id = sample["id"].as_str().unwrap();
        let expected: Value = serde_json::from_slice(
            &std::fs::read(dir.join(format!("snp/{id}.expected.json"))).unwrap(),
        )
        .unwrap();
        let col = tmp.path().join(id.replace('/', "_"));
        std::fs::create_dir_all(&col).unwrap();
        let snp = dir.join("snp");
        let (name, src) = attest_gate_tests::snp_endorsement(&dir, id);
        std::fs::copy(&src, col.join(name)).unwrap();
        let at = sample["window"][0]
            .as_str()
            .unwrap()
            .replace('Z', "")
            .to_string();
        // One day into the endorsement key's validity.
        let at = time_plus_one_day(&at);
        let report = snp.join(format!("{id}.report.bin"));
        let rd = expected["report_data"].as_str().unwrap();
        let base = [
            report.to_str().unwrap(),
            "--collateral",
            col.to_str().unwrap(),
            "--at",
            &at,
            "--allow-debug",
        ];
        let (code, json) = verify(&[&base[..], &["--report-data", rd]].concat());
        assert_eq!(code, 0, "{id}: {json}");
        assert_eq!(json["tee"], "snp");
        assert_eq!(json["trust"], "vendor-root");
        assert_eq!(
            json["claims"]["measurements"]["measurement"], expected["measurement"],
            "{id}"
        );
        assert_eq!(
            json["claims"]["signing_key"],
            sample["key"].as_str().unwrap().to_lowercase(),
            "{id}"
        );
        let wrong = "00".repeat(64);
        let (code, json) = verify(&[&base[..], &["--report-data", &wrong]].concat());
        assert_eq!(
            (code, json["error"]["code"].as_str()),
            (1, Some("report_data_mismatch")),
            "{id}"
        );
        n += 1;
    }
    assert_eq!(n, 13);
}

/// Recorded TDX quotes through the binary with their Intel collateral
/// folders: auto-detected, UpToDate accepted with the claims the issue lists,
/// OutOfDate rejected by default (claims still shown) and accepted only when
/// asked, Revoked never acceptable, and dcap-qvl's JSON collateral file read
/// directly.
#[test]
fn recorded_tdx_quotes_through_the_cli() {
    let Some(dir) = fixtures_dir() else { return };
    let tdx = dir.join("tdx");
    let quote = |id: &str| tdx.join(format!("{id}.dat")).to_str().unwrap().to_string();
    let bundle = |name: &str| {
        tdx.join("_collateral")
            .join(name)
            .to_str()
            .unwrap()
            .to_string()
    };

    let v5 = quote("go-tdx-guest/quote_v5_sample");
    let col = bundle("dcap-qvl-90c06f-2026-02");
    let at = "2026-03-05T10:50:03Z";
    let (code, json) = verify(&[&v5, "--collateral", &col, "--at", at]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["tee"], "tdx");
    assert_eq!(json["trust"], "vendor-root");
    let claims = &json["claims"];
    for key in [
        "mrtd",
        "rtmr0",
        "rtmr1",
        "rtmr2",
        "rtmr3",
        "mrconfigid",
        "mrowner",
        "mrownerconfig",
        "mrseam",
        "mrsignerseam",
    ] {
        assert_eq!(
            claims["measurements"][key].as_str().unwrap().len(),
            96,
            "{key}"
        );
    }
    assert_eq!(claims["quote_version"], 5);
    assert_eq!(claims["fmspc"], "90c06f000000");
    assert_eq!(claims["tcb_status"], "UpToDate");
    assert_eq!(claims["qe_tcb_status"], "UpToDate");
    assert_eq!(claims["td_attributes"]["debug"], false);
    assert!(claims["advisory_ids"].is_array());
    assert!(claims["collateral_validity"]["not_after"].is_string());
    assert_eq!(claims["chain"].as_array().unwrap().len(), 3);
    let rd = claims["report_data"].as_str().unwrap().to_string();
    let (code, _) = verify(&[&v5, "--collateral", &col, "--at", at, "--report-data", &rd]);
    assert_eq!(code, 0);

    // The same collateral as dcap-qvl's one-file JSON.
    let json_file = format!("{col}/original_QuoteCollateralV3.json");
    let (code, json) = verify(&[&v5, "--tee", "tdx", "--collateral", &json_file, "--at", at]);
    assert_eq!(code, 0, "{json}");

    // OutOfDate: rejected by default, with the claims that say why.
    let q6 = quote("trustee/tdx_quote_6");
    let col6 = bundle("trustee-00a06d080000-2025-10");
    let at6 = "2025-11-04T20:45:20Z";
    let (code, json) = verify(&[&q6, "--collateral", &col6, "--at", at6]);
    assert_eq!(code, 1, "{json}");
    assert_eq!(json["error"]["code"], "tcb_status_not_accepted");
    assert_eq!(json["claims"]["tcb_status"], "OutOfDate");
    let (code, json) = verify(&[
        &q6,
        "--collateral",
        &col6,
        "--at",
        at6,
        "--accept-tcb-status",
        "OutOfDate",
    ]);
    assert_eq!(code, 0, "{json}");
    let (code, _) = verify(&[
        &q6,
        "--collateral",
        &col6,
        "--at",
        at6,
        "--accept-tcb-status",
        "Revoked",
    ]);
    assert_eq!(code, 2, "Revoked is a usage error");

    // Without collateral there is nothing to judge the TCB by.
    let (code, json) = verify(&[&q6, "--at", at6]);
    assert_eq!(
        (code, json["error"]["code"].as_str()),
        (1, Some("collateral_missing"))
    );
    // A month after the collateral's nextUpdate it is refused.
    let (code, json) = verify(&[&q6, "--collateral", &col6, "--at", "2025-12-12T00:00:00Z"]);
    assert_eq!(code, 1);
    assert!(
        matches!(
            json["error"]["code"].as_str(),
            Some("collateral_expired" | "crl_invalid")
        ),
        "{json}"
    );
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) plus one day, as RFC 3339.
fn time_plus_one_day(t: &str) -> String {
    let out = Command::new("date")
        .args(["-u", "-d", &format!("{t}Z + 1 day"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
