//! Differential check of SEV-SNP verification against VirTEE's `sev` crate
//! (8.0, pure-Rust `crypto_nossl`), an independent implementation of AMD's
//! report format and chain: its parser, its ARK → ASK/ASVK → VCEK/VLEK
//! chain check (RSA-PSS) and its report signature check (ECDSA P-384), with
//! AMD's ARK and ASK as the `sev` crate itself ships them (the ASVK from the
//! fixtures' copy of AMD's KDS chain). The recorded reports (under AMD's
//! roots, inside their endorsement key's validity) and forged ones (under the
//! project's test ARKs) are mutated — byte edits, truncation, appended
//! bytes, endorsement-certificate edits, and for forged reports edits of the
//! signed body *re-signed with the test VCEK key*, so the checks after the
//! signature are reached — and every disagreement must fall in a class we
//! chose on purpose. `sev` checks signatures only; what we check beyond
//! them is appraisal-grade input validation, and each class names the field
//! the edit reached and the code we must give for it:
//!
//! - **report fields**: VERSION 2, 3 or 5 only (`unsupported_version`);
//!   SIGNATURE_ALGO 1, ECDSA P-384 with SHA-384 (`unsupported_algorithm`);
//!   the SIGNING_KEY field names the key that signed (`signing_key_mismatch`);
//!   the CPUID family of a version ≥ 3 report is the chain's product
//!   (`product_mismatch`); reserved bits and ranges (policy bit 17 one and
//!   63:26 zero, signer info, VMPL, must-be-zero ranges) as the ABI says
//!   (`malformed_evidence`).
//! - **TCB or chip not the VCEK's**: REPORTED_TCB must equal the TCB the
//!   VCEK certifies and CHIP_ID its hwID (AMD's VCEK specification, §3;
//!   `tcb_mismatch`, `chip_id_mismatch`); `sev` does not read the
//!   certificate's extensions.
//! - **unsigned bytes**: the signature's 72-byte little-endian `r` and `s`
//!   are zero above their 48 bytes, and the reserved tail after them is zero
//!   (invariant 10: unsigned bytes are not slack, `malformed_evidence`);
//!   `sev` reads the low 48 bytes only.
//! - **endorsement certificate's outer algorithm**: the unsigned outer
//!   signatureAlgorithm of the VCEK must be AMD's exact RSA-PSS encoding
//!   (`unsupported_algorithm`); `sev` checks its OID only.
//! - **sev re-encodes before checking the signature** (a weakness of the
//!   oracle, not of ours): `sev` parses the report into fields and verifies
//!   the signature over their re-encoding, so an edit in the bytes the TCB
//!   layouts reserve, which its parser drops, still verifies there; we verify
//!   the bytes as received (`signature_invalid`). (Found by this run, which
//!   also found that we accepted such reserved TCB bytes when validly signed:
//!   now `malformed_evidence`, like every other reserved range.)
//!
//! Where both accept, the decoded fields must be the same (version, SVN,
//! policy, VMPL, every TCB, report data, measurement, host data, ID and
//! author key digests, report ID, chip ID). The number of mutations is
//! `ATTEST_GATE_DIFFERENTIAL_MUTATIONS` (default 2,000, what CI runs); the
//! long run's figures are in docs/reliability.md.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use attest_gate_core::snp::Tcb;
use attest_gate_core::{Collateral, PlatformClaims, TeeKind, TrustAnchors, Verifier};
use attest_gate_forge::snp;
use attest_gate_tests::fixtures_dir;
use common::{Rng, Verdict};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

/// The report's fields both sides decode, in one comparable line.
#[allow(clippy::too_many_arguments)]
fn summary(head: (u32, u32, u64, u32), tcbs: [String; 4], data: [&[u8]; 8]) -> String {
    let (version, svn, policy, vmpl) = head;
    let data: Vec<String> = data.iter().map(hex::encode).collect();
    format!(
        "v{version} svn={svn} policy={policy:#x} vmpl={vmpl} tcb={tcbs:?} {}",
        data.join(" ")
    )
}

/// The oracle: the `sev` crate, used as its README shows.
mod amd {
    use super::*;
    use sev::certs::snp::{ca, Certificate, Chain, Verifiable};
    use sev::firmware::guest::AttestationReport;
    use sev::firmware::host::TcbVersion;
    use sev::parser::ByteParser;

    fn tcb(t: &TcbVersion) -> String {
        format!(
            "{:?}/{}/{}/{}/{}",
            t.fmc, t.bootloader, t.tee, t.snp, t.microcode
        )
    }

    /// The AMD CA pair an endorsement key chains to.
    #[derive(Clone)]
    pub(crate) struct Cas {
        pub(crate) ark: Vec<u8>,
        pub(crate) ask: Vec<u8>,
    }

    impl Cas {
        /// AMD's ARK and ASK for `product`, as `sev` ships them; for a
        /// VLEK, the ASVK from AMD's KDS chain in the fixtures.
        pub(crate) fn amd(product: &str, vlek: bool, fixtures: &Path) -> Self {
            use sev::certs::snp::builtin::{genoa, milan, turin};
            let (ark, ask) = match product {
                "milan" => (milan::ARK, milan::ASK),
                "genoa" => (genoa::ARK, genoa::ASK),
                "turin" => (turin::ARK, turin::ASK),
                other => panic!("no AMD CAs for {other}"),
            };
            let der = |pem_bytes: &[u8]| pem::parse(pem_bytes).unwrap().into_contents();
            let ask = if vlek {
                let chain =
                    std::fs::read(fixtures.join(format!("snp/_trust/{product}/ask_ark_asvk.pem")))
                        .unwrap();
                pem::parse_many(chain).unwrap()[2].contents().to_vec()
            } else {
                der(ask)
            };
            Self { ark: der(ark), ask }
        }
    }

    /// Verifies `report` with `sev`: the chain ARK → ASK → `vek` (the ARK
    /// must be `cas.ark`, which `sev` checks is self-signed), then the
    /// report's signature by the VEK.
    pub(crate) fn verify(report: &[u8], vek: &[u8], cas: &Cas) -> Result<String, String> {
        let cert = |der: &[u8]| Certificate::from_der(der).map_err(|e| format!("certificate: {e}"));
        let chain = Chain {
            ca: ca::Chain {
                ark: cert(&cas.ark)?,
                ask: cert(&cas.ask)?,
            },
            vek: cert(vek)?,
        };
        let parsed = AttestationReport::from_bytes(report).map_err(|e| format!("report: {e}"))?;
        // `sev`'s (&Chain, &AttestationReport) check is the chain's, then
        // the report's by the VEK; the chain's verdict is kept per chain, since
        // most mutations leave it alone (RSA-4096 in pure Rust is slow).
        thread_local! {
            static CHAINS: std::cell::RefCell<std::collections::HashMap<Vec<u8>, Result<(), String>>> =
                Default::default();
        }
        let key = [cas.ark.as_slice(), &cas.ask, vek].concat();
        CHAINS.with_borrow_mut(|chains| {
            chains
                .entry(key)
                .or_insert_with(|| {
                    (&chain)
                        .verify()
                        .map(|_| ())
                        .map_err(|e| format!("chain: {e}"))
                })
                .clone()
        })?;
        (&chain.vek, &parsed)
            .verify()
            .map_err(|e| format!("verify: {e}"))?;
        let r = &parsed;
        Ok(summary(
            (r.version, r.guest_svn, r.policy.0, r.vmpl),
            [
                tcb(&r.current_tcb),
                tcb(&r.reported_tcb),
                tcb(&r.committed_tcb),
                tcb(&r.launch_tcb),
            ],
            [
                &r.report_data,
                &r.measurement,
                &r.host_data,
                &r.id_key_digest,
                &r.author_key_digest,
                &r.report_id,
                &r.chip_id,
                &r.family_id,
            ],
        ))
    }
}

fn tcb(t: &Tcb) -> String {
    format!(
        "{:?}/{}/{}/{}/{}",
        t.fmc, t.bootloader, t.tee, t.snp, t.microcode
    )
}

fn ours(
    verifier: &Verifier,
    report: &[u8],
    items: &[(String, Vec<u8>)],
    at: OffsetDateTime,
) -> Verdict {
    match verifier.verify(
        TeeKind::Snp,
        report,
        &Collateral::from_items(items.to_vec()),
        at,
    ) {
        Ok(claims) => {
            let PlatformClaims::Snp(s) = claims.platform() else {
                panic!("SNP claims")
            };
            let measurement = claims
                .measurement("measurement")
                .unwrap()
                .as_bytes()
                .to_vec();
            let report_data = claims.bound().report_data.clone().unwrap();
            Verdict::Accepted(summary(
                (s.report_version, s.guest_svn, s.policy, s.vmpl),
                [
                    tcb(&s.current_tcb),
                    tcb(&s.reported_tcb),
                    tcb(&s.committed_tcb),
                    tcb(&s.launch_tcb),
                ],
                [
                    &report_data,
                    &measurement,
                    &s.host_data,
                    &s.id_key_digest,
                    &s.author_key_digest,
                    &s.report_id,
                    &s.chip_id,
                    &s.family_id,
                ],
            ))
        }
        Err(e) => Verdict::Refused(e.code().to_string()),
    }
}

/// One report to mutate, with what verifies it.
struct Subject {
    id: String,
    report: Vec<u8>,
    /// Our collateral; its first item is the endorsement key.
    items: Vec<(String, Vec<u8>)>,
    /// The endorsement key (DER) the oracle gets.
    vek: Vec<u8>,
    cas: amd::Cas,
    vendor: bool,
    at: OffsetDateTime,
    /// For a forged report, the key to sign edited bodies with.
    signer: Option<attest_gate_forge::keys::TestKey>,
}

/// The first certificate of a DER or PEM endorsement file, DER.
fn first_der(bytes: &[u8]) -> Vec<u8> {
    if bytes.starts_with(b"-----") {
        pem::parse_many(bytes).unwrap()[0].contents().to_vec()
    } else {
        bytes.to_vec()
    }
}

fn subjects() -> Vec<Subject> {
    let mut out = Vec::new();
    if let Some(dir) = fixtures_dir() {
        for sample in attest_gate_tests::samples(&dir, "snp") {
            let id = sample["id"].as_str().unwrap().to_string();
            let report = std::fs::read(dir.join(format!("snp/{id}.report.bin"))).unwrap();
            let (name, path) = attest_gate_tests::snp_endorsement(&dir, &id);
            let endorsement = std::fs::read(path).unwrap();
            let window0 =
                OffsetDateTime::parse(sample["window"][0].as_str().unwrap(), &Rfc3339).unwrap();
            let product = sample["product"].as_str().unwrap();
            let vlek = sample["key"] == "VLEK";
            out.push(Subject {
                vek: first_der(&endorsement),
                items: vec![(name.to_string(), endorsement)],
                cas: amd::Cas::amd(product, vlek, &dir),
                id,
                report,
                vendor: true,
                at: window0 + Duration::days(1),
                signer: None,
            });
        }
    }
    let milan = snp::ReportSpec::default();
    let versions = [
        ("milan-v3", milan.clone(), snp::ChainSpec::default()),
        (
            "milan-v2",
            snp::ReportSpec {
                version: 2,
                ..milan.clone()
            },
            snp::ChainSpec::default(),
        ),
        (
            "milan-v5",
            snp::ReportSpec {
                version: 5,
                ..milan
            },
            snp::ChainSpec::default(),
        ),
        (
            "turin-v3",
            snp::ReportSpec::turin(),
            snp::ChainSpec::turin(),
        ),
    ];
    for (name, report, chain) in versions {
        let key = attest_gate_forge::keys::TestKey::p384(&chain.vcek_key);
        let items = chain.collateral().unwrap();
        let (vcek, ask, ark) = snp::chain_ders(&items);
        out.push(Subject {
            id: format!("forged/{name}"),
            report: report.sign(&key),
            vek: vcek,
            cas: amd::Cas { ark, ask },
            items,
            vendor: false,
            at: attest_gate_forge::nitro::FORGE_INSTANT,
            signer: Some(key),
        });
    }
    out
}

/// The signed body's fields (offset, length) a field edit aims at.
const FIELDS: [(usize, usize); 12] = [
    (0x000, 4),  // VERSION
    (0x004, 4),  // GUEST_SVN
    (0x008, 8),  // POLICY
    (0x030, 4),  // VMPL
    (0x034, 4),  // SIGNATURE_ALGO
    (0x038, 8),  // CURRENT_TCB
    (0x040, 8),  // PLATFORM_INFO
    (0x048, 4),  // signer info
    (0x180, 8),  // REPORTED_TCB
    (0x188, 3),  // CPUID
    (0x1a0, 64), // CHIP_ID
    (0x1e0, 8),  // COMMITTED_TCB
];

/// The report field at `at` (SEV-SNP firmware ABI, `ATTESTATION_REPORT`).
fn field_of(at: usize) -> &'static str {
    match at {
        0x000..0x004 => "VERSION",
        0x004..0x008 => "GUEST_SVN",
        0x008..0x010 => "POLICY",
        0x010..0x030 => "FAMILY_ID/IMAGE_ID",
        0x030..0x034 => "VMPL",
        0x034..0x038 => "SIGNATURE_ALGO",
        0x038..0x040 => "CURRENT_TCB",
        0x040..0x048 => "PLATFORM_INFO",
        0x048..0x04c => "signer info",
        0x04c..0x050 => "reserved",
        0x050..0x180 => "data and digests",
        0x180..0x188 => "REPORTED_TCB",
        0x188..0x18b => "CPUID",
        0x18b..0x1a0 => "reserved",
        0x1a0..0x1e0 => "CHIP_ID",
        0x1e0..0x1e8 => "COMMITTED_TCB",
        0x1e8..0x1f0 => "firmware versions",
        0x1f0..0x1f8 => "LAUNCH_TCB",
        0x1f8..0x2a0 => "mitigation vectors and reserved",
        0x2a0..0x2d0 => "signature r",
        0x2d0..0x2e8 => "signature r padding",
        0x2e8..0x318 => "signature s",
        0x318..0x330 => "signature s padding",
        _ => "after the signature",
    }
}

/// Where the endorsement certificate's outer signatureAlgorithm lies: after
/// the TBS, before the signature value (unsigned; `sev` checks its OID only,
/// we require it to be AMD's exact RSA-PSS encoding).
fn outer_algorithm(vek: &[u8]) -> std::ops::Range<usize> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(vek).unwrap();
    let tbs: &[u8] = cert.tbs_certificate.as_ref();
    let start = tbs.as_ptr() as usize - vek.as_ptr() as usize + tbs.len();
    let value = cert.signature_value.data.as_ptr() as usize - vek.as_ptr() as usize;
    start..value
}

/// Why a refusal by us (`code`) of what `sev` accepts is deliberate, if it
/// is: the code must be the one for the check the edit reached.
fn stricter_class(kind: &str, at: Option<usize>, code: &str, vek: &[u8]) -> Option<&'static str> {
    let at = at?;
    if kind == "endorsement byte" {
        return (code == "unsupported_algorithm" && outer_algorithm(vek).contains(&at))
            .then_some("endorsement certificate's outer algorithm");
    }
    let resigned = kind.ends_with("re-signed");
    let class = match (field_of(at), code) {
        ("VERSION", "unsupported_version") => "report fields: VERSION",
        ("SIGNATURE_ALGO", "unsupported_algorithm") => "report fields: SIGNATURE_ALGO",
        (
            "VMPL"
            | "POLICY"
            | "signer info"
            | "PLATFORM_INFO"
            | "reserved"
            | "firmware versions"
            | "mitigation vectors and reserved",
            "malformed_evidence",
        ) => "report fields: reserved bits",
        ("signer info", "signing_key_mismatch") => "report fields: SIGNING_KEY",
        ("REPORTED_TCB", "tcb_mismatch") => "TCB or chip not the VCEK's: TCB",
        ("CHIP_ID", "chip_id_mismatch") => "TCB or chip not the VCEK's: chip",
        ("CPUID", "product_mismatch") => "report fields: CPUID family",
        (
            "signature r padding" | "signature s padding" | "after the signature",
            "malformed_evidence",
        ) if !resigned => "unsigned bytes",
        // Only the bytes the TCB layouts reserve (2..6 Milan/Genoa, 4..7
        // Turin): the ones `sev` drops when it parses.
        ("CURRENT_TCB" | "REPORTED_TCB" | "COMMITTED_TCB" | "LAUNCH_TCB", "signature_invalid")
            if !resigned && (2..7).contains(&(at % 8)) =>
        {
            "sev re-encodes before checking the signature"
        }
        _ => return None,
    };
    Some(class)
}

#[test]
fn mutated_snp_reports_get_the_sev_crates_verdict_or_a_deliberate_stricter_one() {
    let (mutations, seed) = common::differential_run(2_000, 20_261_206);
    let subjects = subjects();
    let vendor = Verifier::new(TrustAnchors::vendor().unwrap());
    let test_arks: Vec<Vec<u8>> = subjects
        .iter()
        .filter(|s| !s.vendor)
        .map(|s| s.cas.ark.clone())
        .collect();
    let test = Verifier::new(TrustAnchors::test_roots(test_arks).unwrap());
    let verifier_of = |s: &Subject| if s.vendor { &vendor } else { &test };
    // Unmutated, both accept every subject and decode it alike.
    for s in &subjects {
        let we = ours(verifier_of(s), &s.report, &s.items, s.at);
        let they =
            amd::verify(&s.report, &s.vek, &s.cas).map_or_else(Verdict::Refused, Verdict::Accepted);
        assert!(matches!(we, Verdict::Accepted(_)), "{}: {we:?}", s.id);
        assert_eq!(we, they, "{}", s.id);
    }
    assert!(subjects.len() >= 4, "only {} subjects", subjects.len());

    let mut rng = Rng(seed);
    let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
    let mut unexplained = Vec::new();
    for n in 0..mutations {
        let s = &subjects[rng.below(subjects.len())];
        let mut report = s.report.clone();
        let mut items = s.items.clone();
        let mut vek = s.vek.clone();
        let mut edited = None;
        let kind = match (rng.below(100), &s.signer) {
            (0..=29, _) | (40..=94, None) => {
                let at = rng.below(report.len());
                report[at] ^= rng.flip();
                edited = Some((at, report[at]));
                "byte"
            }
            (30..=34, _) => {
                report.truncate(rng.below(report.len()));
                "truncated"
            }
            (35..=39, _) => {
                report.extend((0..1 + rng.below(16)).map(|_| rng.below(256) as u8));
                "appended"
            }
            (40..=69, Some(key)) => {
                let at = rng.below(0x2a0);
                report[at] ^= rng.flip();
                edited = Some((at, report[at]));
                report = snp::sign_body(report, key);
                "body byte, re-signed"
            }
            (70..=94, Some(key)) => {
                let (at, len) = FIELDS[rng.below(FIELDS.len())];
                let i = at + rng.below(len);
                report[i] = [0, 1, 2, 3, 4, 5, 0x1a, 0x19, 0xff][rng.below(9)];
                edited = Some((i, report[i]));
                report = snp::sign_body(report, key);
                "field, re-signed"
            }
            _ => {
                // The endorsement key's certificate, for both sides.
                let at = rng.below(vek.len());
                vek[at] ^= rng.flip();
                edited = Some((at, vek[at]));
                items[0].1 = if items[0].0.ends_with(".pem") {
                    let mut rest = pem::parse_many(&items[0].1).unwrap();
                    rest[0] = pem::Pem::new("CERTIFICATE", vek.clone());
                    pem::encode_many(&rest).into_bytes()
                } else {
                    vek.clone()
                };
                "endorsement byte"
            }
        };
        let we = ours(verifier_of(s), &report, &items, s.at);
        let they =
            amd::verify(&report, &vek, &s.cas).map_or_else(Verdict::Refused, Verdict::Accepted);
        let class = match (&we, &they) {
            (Verdict::Refused(_), Verdict::Refused(_)) => "both refuse",
            (Verdict::Accepted(a), Verdict::Accepted(b)) if a == b => "both accept, same report",
            (Verdict::Refused(code), Verdict::Accepted(_)) => {
                stricter_class(kind, edited.map(|(at, _)| at), code, &s.vek)
                    .unwrap_or("UNEXPLAINED")
            }
            _ => "UNEXPLAINED",
        };
        if class == "UNEXPLAINED" {
            unexplained.push(format!(
                "#{n} {} ({kind} {edited:x?}): we {}, sev {they:?}",
                s.id,
                if matches!(we, Verdict::Accepted(_)) {
                    "accept"
                } else {
                    "refuse"
                }
            ));
        }
        *tally.entry(class).or_default() += 1;
    }
    common::assert_all_explained("SEV-SNP", mutations, seed, &tally, &unexplained);
}
