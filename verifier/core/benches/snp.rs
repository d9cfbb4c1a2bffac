//! SEV-SNP verification cost, cold and warm, beside the one bare ECDSA P-384
//! check a warm verification needs (the report signature), in one run.
//!
//! Uses the recorded `snp/oak/cb` report and VCEK from the shared fixtures
//! (ATTEST_GATE_FIXTURES, default ../shared/fixtures) against the compiled-in
//! AMD Milan roots; falls back to a forged report when fixtures are absent.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use std::hint::black_box;
use std::time::Duration;

use attest_gate_core::{Collateral, TeeKind, TrustAnchors, Verifier};
use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P384_SHA384_FIXED};
use criterion::{criterion_group, criterion_main, Criterion};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

struct Sample {
    name: &'static str,
    report: Vec<u8>,
    collateral: Collateral,
    vcek: Vec<u8>,
    at: OffsetDateTime,
    anchors: TrustAnchors,
}

fn sample() -> Sample {
    let dir = common::fixtures();
    if let (Ok(report), Ok(vcek)) = (
        std::fs::read(dir.join("snp/oak/cb.report.bin")),
        std::fs::read(dir.join("snp/oak/cb.vcek.der")),
    ) {
        return Sample {
            name: "recorded oak/cb (Milan, AMD roots)",
            report,
            collateral: Collateral::from_items([("vcek.der".to_string(), vcek.clone())]),
            vcek,
            at: OffsetDateTime::from_unix_timestamp(1_750_000_000).unwrap(),
            anchors: TrustAnchors::vendor().unwrap(),
        };
    }
    let case = attest_gate_forge::cases::snp_cases().unwrap().remove(0);
    let vcek = case
        .collateral
        .iter()
        .find(|(n, _)| n == "vcek.der")
        .unwrap()
        .1
        .clone();
    Sample {
        name: "forged report (test ARK; fixtures absent)",
        at: case.at(),
        collateral: Collateral::from_items(case.collateral),
        report: case.evidence,
        vcek,
        anchors: TrustAnchors::test_roots(vec![attest_gate_forge::snp::test_ark().unwrap()])
            .unwrap(),
    }
}

/// The report signature check alone: r, s little-endian → big-endian r ‖ s.
fn bare_check(report: &[u8], vcek_key: &[u8]) {
    let mut sig = Vec::with_capacity(96);
    for off in [0x2a0, 0x2e8] {
        let mut half = report[off..off + 48].to_vec();
        half.reverse();
        sig.extend(half);
    }
    UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, vcek_key)
        .verify(&report[..0x2a0], &sig)
        .unwrap();
}

fn bench(c: &mut Criterion) {
    let s = sample();
    let (_, cert) = X509Certificate::from_der(&s.vcek).unwrap();
    let key = cert.public_key().subject_public_key.data.to_vec();
    let verifier = Verifier::new(s.anchors.clone());
    verifier
        .verify(TeeKind::Snp, &s.report, &s.collateral, s.at)
        .unwrap();
    bare_check(&s.report, &key);

    let mut group = c.benchmark_group("snp");
    group.bench_function("bare_one_p384_verify", |b| {
        b.iter(|| bare_check(black_box(&s.report), &key))
    });
    group.bench_function("verify_warm", |b| {
        b.iter(|| {
            verifier
                .verify(TeeKind::Snp, black_box(&s.report), &s.collateral, s.at)
                .unwrap()
        })
    });
    group.bench_function("verify_cold", |b| {
        b.iter(|| {
            verifier.clear_cache();
            verifier
                .verify(TeeKind::Snp, black_box(&s.report), &s.collateral, s.at)
                .unwrap()
        })
    });
    group.finish();

    common::report_ratios(
        &format!("SEV-SNP verification, {}", s.name),
        "bare check (1 x P-384 verify):",
        || bare_check(&s.report, &key),
        || {
            verifier
                .verify(TeeKind::Snp, &s.report, &s.collateral, s.at)
                .unwrap();
        },
        || {
            verifier.clear_cache();
            verifier
                .verify(TeeKind::Snp, &s.report, &s.collateral, s.at)
                .unwrap();
        },
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
