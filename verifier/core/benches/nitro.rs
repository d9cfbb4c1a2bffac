//! Nitro verification cost, cold and warm, beside the bare signature checks it
//! needs (leaf certificate ← issuing CA, and the COSE ES384 signature), all in
//! one run so that the ratios are meaningful.
//!
//! Uses the recorded sample `nitro/evervault/valid-attestation-doc-bytes.cose`
//! from the shared fixtures (ATTEST_GATE_FIXTURES, default ../shared/fixtures)
//! against the real AWS root; falls back to a forged document under the test
//! root when the fixtures are absent.
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
use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P384_SHA384_ASN1, ECDSA_P384_SHA384_FIXED};
use coset::{CborSerializable, CoseSign1};
use criterion::{criterion_group, criterion_main, Criterion};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

struct Sample {
    name: &'static str,
    bytes: Vec<u8>,
    at: OffsetDateTime,
    anchors: TrustAnchors,
}

fn sample() -> Sample {
    let dir = common::fixtures();
    let path = dir.join("nitro/evervault/valid-attestation-doc-bytes.cose");
    match std::fs::read(&path) {
        Ok(bytes) => Sample {
            name: "recorded evervault/valid-attestation-doc-bytes (AWS root)",
            at: attest_gate_core::nitro::unverified_timestamp(&bytes).unwrap(),
            bytes,
            anchors: TrustAnchors::vendor().unwrap(),
        },
        Err(_) => Sample {
            name: "forged document (test root; fixtures absent)",
            bytes: attest_gate_forge::nitro::DocSpec::default()
                .forge()
                .unwrap(),
            at: attest_gate_forge::nitro::FORGE_INSTANT,
            anchors: TrustAnchors::test_roots(vec![attest_gate_forge::nitro::test_root().unwrap()])
                .unwrap(),
        },
    }
}

/// The two signature checks a warm verification cannot avoid, prepared once.
struct BareChecks {
    issuer_key: Vec<u8>,
    leaf_tbs: Vec<u8>,
    leaf_sig: Vec<u8>,
    leaf_key: Vec<u8>,
    cose_tbs: Vec<u8>,
    cose_sig: Vec<u8>,
}

impl BareChecks {
    fn new(doc: &[u8]) -> Self {
        let sign1 = CoseSign1::from_slice(doc).unwrap();
        let payload: ciborium::Value =
            ciborium::de::from_reader(sign1.payload.as_deref().unwrap()).unwrap();
        let map = payload.as_map().unwrap();
        let field = |name: &str| {
            map.iter()
                .find(|(k, _)| k.as_text() == Some(name))
                .unwrap()
                .1
                .clone()
        };
        let leaf_der = field("certificate").into_bytes().unwrap();
        let bundle = field("cabundle").into_array().unwrap();
        let issuer_der = bundle.last().unwrap().clone().into_bytes().unwrap();
        let (_, leaf) = X509Certificate::from_der(&leaf_der).unwrap();
        let (_, issuer) = X509Certificate::from_der(&issuer_der).unwrap();
        Self {
            issuer_key: issuer.public_key().subject_public_key.data.to_vec(),
            leaf_tbs: leaf.tbs_certificate.as_ref().to_vec(),
            leaf_sig: leaf.signature_value.data.to_vec(),
            leaf_key: leaf.public_key().subject_public_key.data.to_vec(),
            cose_tbs: sign1.tbs_data(&[]),
            cose_sig: sign1.signature.clone(),
        }
    }

    fn run(&self) {
        UnparsedPublicKey::new(&ECDSA_P384_SHA384_ASN1, &self.issuer_key)
            .verify(&self.leaf_tbs, &self.leaf_sig)
            .unwrap();
        UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, &self.leaf_key)
            .verify(&self.cose_tbs, &self.cose_sig)
            .unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let s = sample();
    let bare = BareChecks::new(&s.bytes);
    let verifier = Verifier::new(s.anchors.clone());
    let empty = Collateral::empty();
    verifier
        .verify(TeeKind::Nitro, &s.bytes, &empty, s.at)
        .unwrap();

    let mut group = c.benchmark_group("nitro");
    group.bench_function("bare_two_p384_verifies", |b| b.iter(|| bare.run()));
    group.bench_function("verify_warm", |b| {
        b.iter(|| {
            verifier
                .verify(TeeKind::Nitro, black_box(&s.bytes), &empty, s.at)
                .unwrap()
        })
    });
    group.bench_function("verify_cold", |b| {
        b.iter(|| {
            verifier.clear_cache();
            verifier
                .verify(TeeKind::Nitro, black_box(&s.bytes), &empty, s.at)
                .unwrap()
        })
    });
    group.finish();

    common::report_ratios(
        &format!("Nitro verification, {}", s.name),
        "bare checks (2 x P-384 verify):",
        || bare.run(),
        || {
            verifier
                .verify(TeeKind::Nitro, &s.bytes, &empty, s.at)
                .unwrap();
        },
        || {
            verifier.clear_cache();
            verifier
                .verify(TeeKind::Nitro, &s.bytes, &empty, s.at)
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
