//! The `verifier` binary over every recorded Nitro sample in the shared
//! fixtures, as a user would run it: `--at doc` accepts the genuine ones with
//! vendor-root trust, a bundle recorded from each replays, and the real
//! negative sample is rejected with `signature_invalid`.
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

/// `YYYY-MM-DDTHH:MM:SS` (UTC) plus one day, as RFC 3339.
fn time_plus_one_day(t: &str) -> String {
    let out = Command::new("date")
        .args(["-u", "-d", &format!("{t}Z + 1 day"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
