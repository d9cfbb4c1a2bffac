//! Intel TDX verification cost, cold and warm, beside the two bare ECDSA
//! P-256 checks a warm verification needs (quote signature by the
//! attestation key, QE report signature by the PCK key), and beside Phala's
//! `dcap-qvl` 0.7.1 verifying the same quote with the same collateral, in
//! one run.
//!
//! Uses the recorded `tdx/go-tdx-guest/quote_v5_sample` with the
//! `dcap-qvl-90c06f-2026-02` Intel collateral from the shared fixtures
//! (ATTEST_GATE_FIXTURES, default ../shared/fixtures) against the
//! compiled-in Intel SGX Root CA; falls back to a forged quote when the
//! fixtures are absent (then without dcap-qvl, which pins Intel's root).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use std::hint::black_box;
use std::time::Duration;

use attest_gate_core::tdx::Quote;
use attest_gate_core::{Collateral, TeeKind, TrustAnchors, Verifier};
use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use criterion::{criterion_group, criterion_main, Criterion};
use time::OffsetDateTime;

struct Sample {
    name: &'static str,
    quote: Vec<u8>,
    collateral: Collateral,
    dcap: Option<dcap_qvl::QuoteCollateralV3>,
    at: OffsetDateTime,
    anchors: TrustAnchors,
}

fn folder(dir: &std::path::Path) -> Collateral {
    Collateral::from_items(
        attest_gate_core::tdx::names::ALL
            .iter()
            .filter_map(|n| std::fs::read(dir.join(n)).ok().map(|b| (n.to_string(), b))),
    )
}

fn sample() -> Sample {
    let dir = common::fixtures();
    let bundle = dir.join("tdx/_collateral/dcap-qvl-90c06f-2026-02");
    if let (Ok(quote), Some(dcap)) = (
        std::fs::read(dir.join("tdx/go-tdx-guest/quote_v5_sample.dat")),
        attest_gate_tests::dcap_qvl_collateral(&bundle),
    ) {
        return Sample {
            name: "recorded go-tdx-guest/quote_v5_sample (Intel root)",
            quote,
            collateral: folder(&bundle),
            dcap: Some(dcap),
            at: OffsetDateTime::parse(
                "2026-03-05T10:50:03Z",
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap(),
            anchors: TrustAnchors::vendor().unwrap(),
        };
    }
    let case = attest_gate_forge::cases::tdx_cases().unwrap().remove(0);
    Sample {
        name: "forged quote (test root; fixtures absent)",
        at: case.at(),
        collateral: Collateral::from_items(case.collateral),
        quote: case.evidence,
        dcap: None,
        anchors: TrustAnchors::test_roots(vec![attest_gate_forge::intel::test_root().unwrap()])
            .unwrap(),
    }
}

/// What no TDX verifier can skip: the two P-256 signatures (keys already parsed).
struct Bare {
    signed: Vec<u8>,
    quote_sig: Vec<u8>,
    att_key: Vec<u8>,
    qe_report: Vec<u8>,
    qe_sig: Vec<u8>,
    pck_key: Vec<u8>,
}

impl Bare {
    fn new(bytes: &[u8]) -> Self {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let quote = Quote::parse(bytes).unwrap();
        let chain = quote.pck_chain().unwrap();
        let (_, pck) = X509Certificate::from_der(&chain[0]).unwrap();
        Self {
            signed: quote.signed_bytes().to_vec(),
            quote_sig: quote.quote_signature().to_vec(),
            att_key: [&[0x04][..], quote.attestation_key()].concat(),
            qe_report: quote.qe_report().to_vec(),
            qe_sig: quote.qe_report_signature().to_vec(),
            pck_key: pck.public_key().subject_public_key.data.to_vec(),
        }
    }

    fn check(&self) {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.att_key)
            .verify(&self.signed, &self.quote_sig)
            .unwrap();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.pck_key)
            .verify(&self.qe_report, &self.qe_sig)
            .unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let s = sample();
    let bare = Bare::new(&s.quote);
    bare.check();
    let verifier = Verifier::new(s.anchors.clone());
    let verify = || {
        verifier
            .verify(TeeKind::Tdx, black_box(&s.quote), &s.collateral, s.at)
            .unwrap()
    };
    verify();
    let dcap = || {
        if let Some(collateral) = &s.dcap {
            dcap_qvl::verify::verify(&s.quote, collateral, s.at.unix_timestamp() as u64).unwrap();
        }
    };
    dcap();

    let mut group = c.benchmark_group("tdx");
    group.bench_function("bare_two_p256_verifies", |b| b.iter(|| bare.check()));
    group.bench_function("verify_warm", |b| b.iter(verify));
    group.bench_function("verify_cold", |b| {
        b.iter(|| {
            verifier.clear_cache();
            verify()
        })
    });
    if s.dcap.is_some() {
        group.bench_function("dcap_qvl_0_7_1", |b| b.iter(dcap));
    }
    group.finish();

    common::report_ratios_with(
        &format!("Intel TDX verification, {}", s.name),
        "bare check (2 x P-256 verify):",
        || bare.check(),
        || {
            verify();
        },
        || {
            verifier.clear_cache();
            verify();
        },
        &[("dcap-qvl 0.7.1 verify:", &dcap)],
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
