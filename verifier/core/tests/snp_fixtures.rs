//! Every recorded SEV-SNP sample in the shared fixtures verifies inside its
//! endorsement key's validity against the compiled-in AMD roots (ASK/ASVK and
//! ARK compiled in too), with the claims the staging script decoded; outside
//! the window, or with the negative VCEKs, it is rejected.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;

use attest_gate_core::snp::Product;
use attest_gate_core::{Collateral, PlatformClaims, TeeKind, TrustAnchors, Verifier};
use attest_gate_tests::fixtures_dir;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

/// The endorsement certificate of a sample, as a collateral item.
fn endorsement(dir: &Path, id: &str) -> (String, Vec<u8>) {
    let (name, path) = attest_gate_tests::snp_endorsement(dir, id);
    (
        name.to_string(),
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
}

#[test]
fn every_recorded_snp_sample_verifies_inside_its_window() {
    let Some(dir) = fixtures_dir() else { return };
    let verifier = Verifier::new(TrustAnchors::vendor().unwrap());
    let mut checked = 0;
    for sample in attest_gate_tests::samples(&dir, "snp") {
        let id = sample["id"].as_str().unwrap();
        let report = std::fs::read(dir.join(format!("snp/{id}.report.bin"))).unwrap();
        let collateral = Collateral::from_items([endorsement(&dir, id)]);
        let window: Vec<OffsetDateTime> = sample["window"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| OffsetDateTime::parse(t.as_str().unwrap(), &Rfc3339).unwrap())
            .collect();
        let at = window[0] + Duration::days(1);

        let claims = verifier
            .verify(TeeKind::Snp, &report, &collateral, at)
            .unwrap_or_else(|e| panic!("{id}: {} {e}", e.code()));
        let PlatformClaims::Snp(snp) = &claims.platform() else {
            panic!()
        };
        assert!(!snp.revocation_checked, "{id}: no CRL was given");
        let expected: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.join(format!("snp/{id}.expected.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(
            snp.report_version,
            expected["version"].as_u64().unwrap() as u32,
            "{id}"
        );
        assert_eq!(
            snp.product.as_str().to_lowercase(),
            sample["product"].as_str().unwrap(),
            "{id}"
        );
        assert_eq!(
            snp.signing_key.as_str(),
            sample["key"].as_str().unwrap().to_lowercase(),
            "{id}"
        );
        assert_eq!(snp.policy, expected["policy"].as_u64().unwrap(), "{id}");
        assert_eq!(
            claims.measurement("measurement").unwrap().to_string(),
            expected["measurement"],
            "{id}"
        );
        assert_eq!(
            hex_of(claims.bound().report_data.as_deref().unwrap()),
            expected["report_data"],
            "{id}"
        );
        assert_eq!(
            snp.reported_tcb.microcode as u64,
            expected["reported_tcb"]["ucode"].as_u64().unwrap(),
            "{id}"
        );
        assert_eq!(
            snp.reported_tcb.snp as u64,
            expected["reported_tcb"]["snp"].as_u64().unwrap(),
            "{id}"
        );
        assert_eq!(
            claims.debug(),
            expected["debug_allowed"].as_bool().unwrap(),
            "{id}"
        );
        assert_eq!(claims.chain().len(), 3, "{id}: ARK, ASK/ASVK, VCEK/VLEK");
        assert!(
            claims.chain()[0]
                .subject
                .contains(&format!("ARK-{}", snp.product)),
            "{id}"
        );

        // Outside the endorsement key's validity.
        let late = verifier.verify(
            TeeKind::Snp,
            &report,
            &collateral,
            window[1] + Duration::seconds(1),
        );
        assert_eq!(late.unwrap_err().code(), "certificate_expired", "{id}");
        let early = verifier.verify(
            TeeKind::Snp,
            &report,
            &collateral,
            window[0] - Duration::seconds(1),
        );
        assert_eq!(
            early.unwrap_err().code(),
            "certificate_not_yet_valid",
            "{id}"
        );
        checked += 1;
    }
    assert_eq!(checked, 13, "every SNP sample in the manifest was checked");
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn negative_vceks_and_mismatched_collateral_are_rejected() {
    let Some(dir) = fixtures_dir() else { return };
    let verifier = Verifier::new(TrustAnchors::vendor().unwrap());
    let report = std::fs::read(dir.join("snp/go-sev-guest/attestation.report.bin")).unwrap();
    let at = OffsetDateTime::parse("2023-01-01T00:00:00Z", &Rfc3339).unwrap();
    for bad in [
        "trustee-test-vcek-invalid-legacy.der",
        "trustee-test-vcek-invalid-new.der",
    ] {
        let vcek = std::fs::read(dir.join("snp/negative").join(bad)).unwrap();
        let err = verifier
            .verify(
                TeeKind::Snp,
                &report,
                &Collateral::from_items([("vcek.der".to_string(), vcek)]),
                at,
            )
            .unwrap_err();
        assert_eq!(err.code(), "certificate_signature_invalid", "{bad}");
    }
    // Another chip's genuine VCEK: the chain is fine, the report signature is not.
    let other = std::fs::read(dir.join("snp/virtee-sev/vcek_milan.der")).unwrap();
    let at = OffsetDateTime::parse("2024-01-01T00:00:00Z", &Rfc3339).unwrap();
    let err = verifier
        .verify(
            TeeKind::Snp,
            &report,
            &Collateral::from_items([("vcek.der".to_string(), other)]),
            at,
        )
        .unwrap_err();
    assert_eq!(err.code(), "signature_invalid");
    // No endorsement certificate at all.
    let err = verifier
        .verify(TeeKind::Snp, &report, &Collateral::empty(), at)
        .unwrap_err();
    assert_eq!(err.code(), "collateral_missing");
}

#[test]
fn the_amd_crl_is_checked_when_given() {
    let Some(dir) = fixtures_dir() else { return };
    let verifier = Verifier::new(TrustAnchors::vendor().unwrap());
    // enarx-steward/milan is the only sample whose VCEK overlaps the Milan CRL's window.
    let report = std::fs::read(dir.join("snp/enarx-steward/milan.report.bin")).unwrap();
    let vcek = std::fs::read(dir.join("snp/enarx-steward/milan.vcek.der")).unwrap();
    let crl = std::fs::read(dir.join("snp/_trust/milan/ark_crl_2022-05-09.der")).unwrap();
    let with_crl = |crl: Vec<u8>| {
        Collateral::from_items([
            ("vcek.der".to_string(), vcek.clone()),
            ("crl.der".to_string(), crl),
        ])
    };
    let inside = OffsetDateTime::parse("2023-01-01T00:00:00Z", &Rfc3339).unwrap();
    let claims = verifier
        .verify(TeeKind::Snp, &report, &with_crl(crl.clone()), inside)
        .unwrap();
    let PlatformClaims::Snp(snp) = &claims.platform() else {
        panic!()
    };
    assert!(snp.revocation_checked);
    // Past nextUpdate (2023-05-09T23:00:00Z): a stale CRL is refused, not ignored.
    let stale = OffsetDateTime::parse("2023-06-01T00:00:00Z", &Rfc3339).unwrap();
    let err = verifier
        .verify(TeeKind::Snp, &report, &with_crl(crl.clone()), stale)
        .unwrap_err();
    assert_eq!(err.code(), "crl_invalid");
    // The Genoa ARK's CRL is not signed by the Milan ARK.
    let genoa = std::fs::read(dir.join("snp/_trust/genoa/ark_crl_2022-10-31.der")).unwrap();
    let err = verifier
        .verify(TeeKind::Snp, &report, &with_crl(genoa), inside)
        .unwrap_err();
    assert_eq!(err.code(), "crl_invalid");
    // A flipped bit in the CRL's signature.
    let mut tampered = crl;
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let err = verifier
        .verify(TeeKind::Snp, &report, &with_crl(tampered), inside)
        .unwrap_err();
    assert_eq!(err.code(), "crl_invalid");
    let _ = Product::Milan;
}
