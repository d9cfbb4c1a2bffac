//! Every recorded TDX quote in the shared fixtures, with each collateral
//! bundle the staging script found applicable, gets the verdict and TCB
//! status that `../shared/fixtures/CROSSCHECK.md` (dcap-qvl 0.7.1 and a
//! staging computation of Intel's rules) records, at an instant inside the
//! bundle's window, against the compiled-in Intel SGX Root CA. Outside the
//! window the collateral is refused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;

use attest_gate_core::tdx::import;
use attest_gate_core::{Collateral, PlatformClaims, TeeKind, TrustAnchors, Verifier};
use attest_gate_tests::{fixtures_dir, tdx_recorded, TdxRecorded};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

/// A collateral folder, read as the CLI reads one.
fn folder(dir: &Path) -> Collateral {
    Collateral::from_items(common::tdx_folder(dir))
}

fn instant(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap()
}

/// Samples whose TCB status in CROSSCHECK.md comes only from the staging
/// script (dcap-qvl stopped earlier, on SEPT_VE_DISABLE), which compared TDX
/// components from index 0. Intel's rule compares them from index 2 when
/// TEE_TCB_SVN[1] selects a module identity, and gives:
/// - `zkdcap/quote_v4`: UpToDate. Its SVNs (TEE_TCB_SVN 04 01 07, SGX
///   7 7 2 2 3 1 0 3, PCESVN 11) equal those of `go-tdx-guest/cos-113-tdx-quote`,
///   which dcap-qvl itself rates UpToDate under the same collateral.
/// - `trustee/az-tdx-vtpm-td-quote`: OutOfDate (not "no matching level"); the
///   default appraisal rejects it either way.
fn staging_differs(id: &str) -> Option<&'static str> {
    match id {
        "zkdcap/quote_v4" => Some("UpToDate"),
        "trustee/az-tdx-vtpm-td-quote" => Some("OutOfDate"),
        _ => None,
    }
}

/// Every applicable pairing, with its instant parsed.
fn recorded(dir: &Path) -> Vec<(TdxRecorded, OffsetDateTime)> {
    tdx_recorded(dir)
        .into_iter()
        .map(|r| {
            let at = instant(&r.at);
            (r, at)
        })
        .collect()
}

#[test]
fn every_recorded_tdx_quote_gets_its_crosschecked_verdict() {
    let Some(dir) = fixtures_dir() else { return };
    let verifier = Verifier::new(TrustAnchors::vendor().unwrap());
    let (mut accepted, mut rejected) = (0, 0);
    for (r, at) in recorded(&dir) {
        let (id, quote, expected, check) = (r.id.as_str(), &r.quote, &r.expected, &r.check);
        let bundle = r.bundle.display();
        let collateral = folder(&r.bundle);
        let outcome = check["expected_outcome"].as_str().unwrap();
        let result = verifier.verify(TeeKind::Tdx, quote, &collateral, at);
        if let Some(status) = staging_differs(id) {
            let claims = result.unwrap_or_else(|e| panic!("{id} with {bundle}: {e}"));
            assert_eq!(claims.tcb_status().unwrap().as_str(), status, "{id}");
            accepted += 1;
            continue;
        }
        if outcome.starts_with("ACCEPT") {
            let claims = result.unwrap_or_else(|e| panic!("{id} with {bundle}: {e}"));
            let PlatformClaims::Tdx(tdx) = &claims.platform() else {
                panic!("{id}: not TDX claims")
            };
            let eval = &check["tcb_evaluation"];
            assert_eq!(
                tdx.tcb_status.as_str(),
                eval["final_status"].as_str().unwrap(),
                "{id} with {bundle}"
            );
            let advisories: Vec<&str> = eval["advisory_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            if id == "go-tdx-guest/cos-113-tdx-quote" {
                // Intel's rule matches the UpToDate level (TDX components
                // compared from index 2, as TEE_TCB_SVN[1] = 1 selects
                // module TDX_01), which lists no advisories. dcap-qvl
                // 0.7.1 reports the advisories of a lower, OutOfDate level
                // beside its UpToDate verdict; the statuses agree.
                assert!(tdx.advisory_ids.is_empty(), "{id}");
                assert_eq!(tdx.platform_tcb_status.as_str(), "UpToDate");
            } else {
                assert_eq!(tdx.advisory_ids, advisories, "{id} with {bundle}");
            }
            assert_eq!(
                tdx.qe_tcb_status.as_str(),
                eval["qe_status"][0].as_str().unwrap(),
                "{id} with {bundle}"
            );
            assert_eq!(claims.debug(), expected["td_debug"] == true, "{id}");
            assert_eq!(hex::encode(tdx.fmspc), expected["pck"]["fmspc"], "{id}");
            assert_eq!(
                claims.measurement("mrtd").map(|m| m.to_string()).as_deref(),
                expected["mrtd"].as_str(),
                "{id}"
            );
            assert!(tdx.collateral_valid_from <= at && at < tdx.collateral_valid_until);
            accepted += 1;

            // One second after the bundle's window closes, it is stale.
            let window = check["bundle_window"].as_array().unwrap();
            let late = instant(window[1].as_str().unwrap()) + Duration::seconds(1);
            let code = verifier
                .verify(TeeKind::Tdx, quote, &collateral, late)
                .unwrap_err()
                .code();
            // Whichever item's window closes first refuses it: in these two
            // bundles the TCB info or QE identity, elsewhere a CRL.
            let signed_json_first = [
                "go-tdx-guest-90c06f-2026-02-mixed",
                "go-tdx-guest-50806f-2023-06",
            ]
            .iter()
            .any(|b| r.bundle.ends_with(b));
            let want = if signed_json_first {
                "collateral_expired"
            } else {
                "crl_invalid"
            };
            assert_eq!(code, want, "{id} with {bundle}, late");
        } else {
            let code = result
                .as_ref()
                .map(|_| "accepted")
                .unwrap_or_else(|e| e.code());
            let want = if id.ends_with("SPR_E4") {
                // Text, not zero padding, after the signature data.
                "malformed_evidence"
            } else {
                "no_matching_tcb_level"
            };
            assert_eq!(code, want, "{id} with {bundle}: {outcome}");
            rejected += 1;
        }
    }
    assert_eq!((accepted, rejected), (14, 5));
}

/// The same collateral as dcap-qvl's single JSON file gives the same verdict.
#[test]
fn dcap_qvl_collateral_json_imports() {
    let Some(dir) = fixtures_dir() else { return };
    let verifier = Verifier::new(TrustAnchors::vendor().unwrap());
    let quote = std::fs::read(dir.join("tdx/go-tdx-guest/quote_v5_sample.dat")).unwrap();
    let json = std::fs::read(
        dir.join("tdx/_collateral/dcap-qvl-90c06f-2026-02/original_QuoteCollateralV3.json"),
    )
    .unwrap();
    let collateral = Collateral::from_items(import::from_quote_collateral_v3(&json).unwrap());
    let claims = verifier
        .verify(
            TeeKind::Tdx,
            &quote,
            &collateral,
            instant("2026-03-05T10:50:03Z"),
        )
        .unwrap();
    assert_eq!(claims.tcb_status().unwrap().as_str(), "UpToDate");
}

/// Intel's synthetic QVL sample chains to Intel's own test root, which is
/// not the pinned Intel SGX Root CA; it also carries its PCK chain as DER in
/// certification data type 5, which Intel's quote format defines as PEM, so
/// it is refused as malformed before any trust question arises.
#[test]
fn intel_synthetic_sample_is_refused_under_the_real_root() {
    let Some(dir) = fixtures_dir() else { return };
    let verifier = Verifier::new(TrustAnchors::vendor().unwrap());
    let sample = dir.join("tdx/negative/intel-qvl-synthetic");
    let quote = std::fs::read(sample.join("quote.dat")).unwrap();
    let err = verifier
        .verify(
            TeeKind::Tdx,
            &quote,
            &folder(&sample),
            instant("2025-01-01T00:00:00Z"),
        )
        .unwrap_err();
    assert_eq!(err.code(), "malformed_evidence", "{err}");
}

/// Phala's dcap-qvl 0.7.1 as an independent oracle on the same bytes: where
/// it reaches a TCB verdict (its own policy stops some quotes earlier, on
/// debug or SEPT_VE_DISABLE), ours agrees on acceptance and TCB status, and
/// where it finds no matching TCB level, so do we.
#[test]
fn verdicts_agree_with_dcap_qvl() {
    let Some(dir) = fixtures_dir() else { return };
    let verifier = Verifier::new(TrustAnchors::vendor().unwrap());
    let (mut agreed, mut skipped) = (0, 0);
    for (r, at) in recorded(&dir) {
        let (id, quote, bundle) = (r.id.as_str(), &r.quote, &r.bundle);
        let oracle = dcap_qvl::verify::verify(
            quote,
            &attest_gate_tests::dcap_qvl_collateral(bundle).unwrap(),
            at.unix_timestamp() as u64,
        );
        let ours = verifier.verify(TeeKind::Tdx, quote, &folder(bundle), at);
        match oracle {
            Ok(report) => {
                let claims = ours.unwrap_or_else(|e| panic!("{id}: dcap-qvl accepts, we say {e}"));
                assert_eq!(claims.tcb_status().unwrap().as_str(), report.status, "{id}");
                agreed += 1;
            }
            Err(e) if format!("{e:#}").contains("No matching TCB level") => {
                let code = ours.map(|_| "accepted").unwrap_or_else(|e| e.code());
                // SPR_E4 has text after its signature data, which we refuse
                // before matching a level (dcap-qvl ignores it).
                let want = if id.ends_with("SPR_E4") {
                    "malformed_evidence"
                } else {
                    "no_matching_tcb_level"
                };
                assert_eq!(code, want, "{id}: dcap-qvl finds no level");
                agreed += 1;
            }
            Err(_) => skipped += 1,
        }
    }
    assert!(agreed >= 12, "{agreed} agreed, {skipped} skipped");
}
