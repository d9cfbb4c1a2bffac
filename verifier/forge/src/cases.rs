//! The catalogue of forged evidence: one case per check the verifier makes,
//! each naming the error code it must produce ("ok" for evidence that must
//! verify and pass the default appraisal). Tests iterate it; the testdata
//! writer stores it.

use coset::iana;
use rcgen::KeyUsagePurpose;
use time::Duration;

use crate::nitro::{self, DocSpec, ForgeError, FORGE_INSTANT};
use crate::pki::CertSpec;
use crate::snp::{self as snp_forge, ChainSpec as SnpChain, ReportSpec};

/// One forged sample and its expected verdict.
#[derive(Debug, Clone)]
pub struct Case {
    /// File-name-safe identifier.
    pub name: &'static str,
    /// What is wrong with it (or that nothing is).
    pub description: &'static str,
    /// The TEE whose format it is in.
    pub tee: &'static str,
    /// The evidence bytes.
    pub evidence: Vec<u8>,
    /// Collateral files by name (the `--collateral` folder).
    pub collateral: Vec<(String, Vec<u8>)>,
    /// `"ok"`, or the error / rejection code the verifier must give.
    pub expected: &'static str,
    /// The nonce the appraisal must be given (`--nonce`), if any.
    pub expected_nonce: Option<Vec<u8>>,
    /// The report data the appraisal must be given (`--report-data`), if any.
    pub expected_report_data: Option<Vec<u8>>,
}

impl Case {
    /// The instant the case is meant to be verified at.
    pub fn at(&self) -> time::OffsetDateTime {
        FORGE_INSTANT
    }
}

fn nitro_case(
    name: &'static str,
    description: &'static str,
    evidence: Vec<u8>,
    expected: &'static str,
) -> Case {
    Case {
        name,
        description,
        tee: "nitro",
        evidence,
        collateral: Vec::new(),
        expected,
        expected_nonce: None,
        expected_report_data: None,
    }
}

/// Replaces the first occurrence of `from` with `to` (same length).
fn splice(mut bytes: Vec<u8>, from: &[u8], to: &[u8]) -> Vec<u8> {
    if let Some(pos) = bytes.windows(from.len()).position(|w| w == from) {
        if let Some(slot) = bytes.get_mut(pos..pos + to.len()) {
            slot.copy_from_slice(to);
        }
    }
    bytes
}

/// Every Nitro case.
pub fn nitro_cases() -> Result<Vec<Case>, ForgeError> {
    let spec = DocSpec::default();
    let valid = spec.forge()?;
    let chain = nitro::chain_spec().issue()?;
    let full_bundle = nitro::bundle(&chain);
    let mut cases = Vec::new();

    let mut ok = nitro_case(
        "valid",
        "a well-formed, correctly signed document",
        valid.clone(),
        "ok",
    );
    ok.expected_nonce = spec.nonce.clone();
    cases.push(ok);
    cases.push(nitro_case(
        "valid_tagged",
        "the same, with CBOR tag 18",
        DocSpec {
            tagged: true,
            ..spec.clone()
        }
        .forge()?,
        "ok",
    ));
    cases.push(nitro_case(
        "unprotected_algorithm_ignored",
        "ES256 in the unprotected header is ignored; the protected ES384 rules",
        DocSpec {
            unprotected_algorithm: Some(iana::Algorithm::ES256),
            ..spec.clone()
        }
        .forge()?,
        "ok",
    ));
    cases.push(nitro_case(
        "debug_enclave",
        "authentic, but PCR0-2 are zero (debug mode); denied by default",
        DocSpec::debug().forge()?,
        "debug_enclave",
    ));
    let mut nonce_mismatch = nitro_case(
        "nonce_mismatch",
        "authentic, but the nonce is not the one expected",
        valid.clone(),
        "nonce_mismatch",
    );
    nonce_mismatch.expected_nonce = Some(vec![0x42; 32]);
    cases.push(nonce_mismatch);

    cases.push(nitro_case(
        "tampered_payload",
        "one byte of module_id changed after signing",
        splice(valid.clone(), b"i-0test-enc0test", b"i-0test-enc1test"),
        "signature_invalid",
    ));
    let mut flipped = valid.clone();
    if let Some(last) = flipped.last_mut() {
        *last ^= 0x01;
    }
    cases.push(nitro_case(
        "flipped_signature",
        "last signature bit flipped",
        flipped,
        "signature_invalid",
    ));
    cases.push(nitro_case(
        "wrong_algorithm",
        "protected header says ES256",
        DocSpec {
            protected_algorithm: Some(iana::Algorithm::ES256),
            ..spec.clone()
        }
        .forge()?,
        "unsupported_algorithm",
    ));
    cases.push(nitro_case(
        "algorithm_only_unprotected",
        "ES384 only in the unprotected header",
        DocSpec {
            protected_algorithm: None,
            unprotected_algorithm: Some(iana::Algorithm::ES384),
            ..spec.clone()
        }
        .forge()?,
        "unsupported_algorithm",
    ));

    let mut foreign = nitro::chain_spec();
    foreign.root.key_label = "nitro-foreign-root".into();
    let foreign = foreign.issue()?;
    cases.push(nitro_case(
        "foreign_root_same_name",
        "chain under a different root with the same subject name",
        spec.sign(&foreign, &nitro::bundle(&foreign))?,
        "chain_untrusted",
    ));

    let mut missing = full_bundle.clone();
    missing.remove(2);
    cases.push(nitro_case(
        "missing_intermediate",
        "the zonal intermediate is left out of cabundle",
        spec.sign(&chain, &missing)?,
        "chain_incomplete",
    ));

    let mut not_ca = nitro::chain_spec();
    if let Some(zonal) = not_ca.intermediates.get_mut(1) {
        zonal.ca_path_len = None;
    }
    let not_ca = not_ca.issue()?;
    cases.push(nitro_case(
        "intermediate_not_ca",
        "an intermediate without the CA basic constraint",
        spec.sign(&not_ca, &nitro::bundle(&not_ca))?,
        "basic_constraints_violated",
    ));

    let mut no_cert_sign = nitro::chain_spec();
    if let Some(zonal) = no_cert_sign.intermediates.get_mut(1) {
        zonal.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    }
    let no_cert_sign = no_cert_sign.issue()?;
    cases.push(nitro_case(
        "intermediate_without_key_cert_sign",
        "an intermediate whose key usage lacks keyCertSign",
        spec.sign(&no_cert_sign, &nitro::bundle(&no_cert_sign))?,
        "key_usage_invalid",
    ));

    let mut wrong_signer = nitro::chain_spec();
    wrong_signer.leaf_signed_by = Some("nitro-impostor".into());
    let wrong_signer = wrong_signer.issue()?;
    cases.push(nitro_case(
        "leaf_signed_by_wrong_key",
        "the leaf names the instance CA as issuer but another key signed it",
        spec.sign(&wrong_signer, &nitro::bundle(&wrong_signer))?,
        "certificate_signature_invalid",
    ));

    let with_leaf_window = |from: Duration, to: Duration| -> Result<Vec<u8>, ForgeError> {
        let mut s = nitro::chain_spec();
        s.leaf = CertSpec::leaf(
            &s.leaf.common_name,
            &s.leaf.key_label,
            (FORGE_INSTANT + from, FORGE_INSTANT + to),
        );
        let c = s.issue()?;
        spec.sign(&c, &nitro::bundle(&c))
    };
    cases.push(nitro_case(
        "expired_leaf",
        "the leaf expired an hour before the document's instant",
        with_leaf_window(Duration::hours(-4), Duration::hours(-1))?,
        "certificate_expired",
    ));
    cases.push(nitro_case(
        "not_yet_valid_leaf",
        "the leaf becomes valid an hour after the document's instant",
        with_leaf_window(Duration::hours(1), Duration::hours(4))?,
        "certificate_not_yet_valid",
    ));

    let mut short_pcr = spec.clone();
    if let Some((_, v)) = short_pcr.pcrs.get_mut(3) {
        *v = vec![0; 32];
    }
    cases.push(nitro_case(
        "wrong_pcr_length",
        "PCR3 is 32 bytes",
        short_pcr.forge()?,
        "invalid_pcr",
    ));
    let mut high_pcr = spec.clone();
    high_pcr.pcrs.push((32, vec![0; 48]));
    cases.push(nitro_case(
        "pcr_index_out_of_range",
        "a PCR numbered 32",
        high_pcr.forge()?,
        "invalid_pcr",
    ));
    cases.push(nitro_case(
        "wrong_digest",
        "digest SHA256",
        DocSpec {
            digest: "SHA256".into(),
            ..spec.clone()
        }
        .forge()?,
        "unsupported_digest",
    ));
    cases.push(nitro_case(
        "oversized_user_data",
        "user_data of 513 bytes (limit 512)",
        DocSpec {
            user_data: Some(vec![7; 513]),
            ..spec.clone()
        }
        .forge()?,
        "field_out_of_range",
    ));
    cases.push(nitro_case(
        "truncated",
        "the valid document cut in half",
        valid.get(..valid.len() / 2).unwrap_or_default().to_vec(),
        "malformed_evidence",
    ));
    let mut trailing = valid.clone();
    trailing.push(0);
    cases.push(nitro_case(
        "trailing_bytes",
        "a byte after the COSE_Sign1",
        trailing,
        "malformed_evidence",
    ));
    cases.push(nitro_case(
        "random_bytes",
        "512 pseudo-random bytes",
        (0..512u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect(),
        "malformed_evidence",
    ));
    Ok(cases)
}

fn snp_case(
    name: &'static str,
    description: &'static str,
    report: &ReportSpec,
    chain: &SnpChain,
    expected: &'static str,
) -> Result<Case, ForgeError> {
    Ok(Case {
        name,
        description,
        tee: "snp",
        evidence: report.sign(&snp_forge::vcek_key()),
        collateral: chain.collateral()?,
        expected,
        expected_nonce: None,
        expected_report_data: None,
    })
}

/// Every SEV-SNP case.
pub fn snp_cases() -> Result<Vec<Case>, ForgeError> {
    let report = ReportSpec::default();
    let chain = SnpChain::default();
    let mut cases = Vec::new();

    let mut valid = snp_case(
        "valid",
        "a Milan v3 report signed by its VCEK",
        &report,
        &chain,
        "ok",
    )?;
    valid.expected_report_data = Some(report.report_data.to_vec());
    cases.push(valid.clone());
    cases.push(snp_case(
        "valid_v2",
        "version 2 (no CPUID)",
        &ReportSpec {
            version: 2,
            ..report.clone()
        },
        &chain,
        "ok",
    )?);
    cases.push(snp_case(
        "valid_v5",
        "version 5 (mitigation vectors zero)",
        &ReportSpec {
            version: 5,
            ..report.clone()
        },
        &chain,
        "ok",
    )?);
    cases.push(snp_case(
        "crl_not_revoked",
        "an ARK-signed CRL that lists nothing of this chain",
        &report,
        &SnpChain {
            crl_revokes_ask: Some(false),
            ..chain.clone()
        },
        "ok",
    )?);
    cases.push(snp_case(
        "debug_policy",
        "guest policy allows DEBUG",
        &ReportSpec {
            policy: 0x30000 | 1 << 19,
            ..report.clone()
        },
        &chain,
        "debug_enclave",
    )?);
    let mut wrong_data = valid.clone();
    wrong_data.name = "report_data_mismatch";
    wrong_data.description = "authentic, but REPORT_DATA is not the expected value";
    wrong_data.expected = "report_data_mismatch";
    wrong_data.expected_report_data = Some(vec![0x42; 64]);
    cases.push(wrong_data);

    let mut flipped = valid.clone();
    flipped.name = "flipped_signature";
    flipped.description = "one bit of R flipped";
    flipped.expected = "signature_invalid";
    flipped.expected_report_data = None;
    if let Some(b) = flipped.evidence.get_mut(0x2a0) {
        *b ^= 1;
    }
    cases.push(flipped);
    let mut tampered = valid.clone();
    tampered.name = "tampered_measurement";
    tampered.description = "one byte of MEASUREMENT changed after signing";
    tampered.expected = "signature_invalid";
    tampered.expected_report_data = None;
    if let Some(b) = tampered.evidence.get_mut(0x090) {
        *b ^= 0xff;
    }
    cases.push(tampered);
    let mut truncated = valid.clone();
    truncated.name = "truncated";
    truncated.description = "the report without its last byte";
    truncated.expected = "malformed_evidence";
    truncated.expected_report_data = None;
    truncated.evidence.pop();
    cases.push(truncated);

    cases.push(snp_case(
        "unsupported_version",
        "VERSION 4",
        &ReportSpec {
            version: 4,
            ..report.clone()
        },
        &chain,
        "unsupported_version",
    )?);
    cases.push(snp_case(
        "unknown_signature_algorithm",
        "SIGNATURE_ALGO 2",
        &ReportSpec {
            signature_algo: 2,
            ..report.clone()
        },
        &chain,
        "unsupported_algorithm",
    )?);
    cases.push(snp_case(
        "signing_key_mismatch",
        "the report says VLEK but a VCEK is supplied",
        &ReportSpec {
            signer_info: 1 << 2,
            ..report.clone()
        },
        &chain,
        "signing_key_mismatch",
    )?);
    cases.push(snp_case(
        "product_mismatch",
        "CPUID says Genoa, the chain is Milan",
        &ReportSpec {
            cpuid: (0x19, 0x11, 0x01),
            ..report.clone()
        },
        &chain,
        "product_mismatch",
    )?);
    let mut other_tcb = chain.clone();
    other_tcb.vcek_extensions.microcode = 116;
    cases.push(snp_case(
        "vcek_tcb_mismatch",
        "the VCEK certifies microcode 116, REPORTED_TCB says 115",
        &report,
        &other_tcb,
        "tcb_mismatch",
    )?);
    let mut other_chip = chain.clone();
    other_chip.vcek_extensions.hw_id = vec![0xab; 64];
    cases.push(snp_case(
        "hwid_mismatch",
        "the VCEK's hwID is another chip's",
        &report,
        &other_chip,
        "chip_id_mismatch",
    )?);
    cases.push(snp_case(
        "ask_from_foreign_ark",
        "the ASK is signed by a different key under the ARK's name",
        &report,
        &SnpChain {
            ask_signer: "snp-foreign-ark".into(),
            ark_in_chain: false,
            ..chain.clone()
        },
        "chain_untrusted",
    )?);
    cases.push(snp_case(
        "vcek_of_another_key",
        "a genuine VCEK for another key than the one that signed",
        &report,
        &SnpChain {
            vcek_key: "snp-other-vcek".into(),
            ..chain.clone()
        },
        "signature_invalid",
    )?);
    cases.push(snp_case(
        "expired_vcek",
        "the VCEK expired a day before the instant",
        &report,
        &SnpChain {
            vcek_window: (
                FORGE_INSTANT - Duration::days(400),
                FORGE_INSTANT - Duration::days(1),
            ),
            ..chain.clone()
        },
        "certificate_expired",
    )?);
    cases.push(snp_case(
        "revoked_ask",
        "an ARK-signed CRL revokes the ASK",
        &report,
        &SnpChain {
            crl_revokes_ask: Some(true),
            ..chain.clone()
        },
        "certificate_revoked",
    )?);
    let mut reserved = report.body();
    if let Some(b) = reserved.get_mut(0x1f8) {
        *b = 1;
    }
    cases.push(Case {
        name: "reserved_nonzero",
        description: "a must-be-zero byte (0x1F8 in a v3 report) set, and signed",
        evidence: snp_forge::sign_body(reserved, &snp_forge::vcek_key()),
        ..no_data(&valid, "malformed_evidence")
    });
    let (vcek, ask, ark) = snp_forge::chain_ders(&valid.collateral);
    let mut extended = valid.evidence.clone();
    extended.extend_from_slice(&snp_forge::cert_table(&vcek, &ask, &ark));
    cases.push(Case {
        name: "extended_report",
        description:
            "report followed by its SNP_GET_EXT_REPORT certificate table; no collateral files",
        evidence: extended.clone(),
        collateral: Vec::new(),
        ..no_data(&valid, "ok")
    });
    let mut bad_table = extended;
    if let Some(b) = bad_table.get_mut(0x4a0 + 19) {
        *b = 0xff; // the VCEK entry's offset now points past the table
    }
    cases.push(Case {
        name: "extended_report_bad_table",
        description: "a certificate table entry pointing outside the table",
        evidence: bad_table,
        collateral: Vec::new(),
        ..no_data(&valid, "malformed_evidence")
    });
    cases.push(snp_case(
        "valid_turin",
        "a Turin report: FMC in the TCB, 8-byte hwID",
        &ReportSpec::turin(),
        &SnpChain::turin(),
        "ok",
    )?);
    let mut turin_fmc = SnpChain::turin();
    turin_fmc.vcek_extensions.fmc = Some(2);
    cases.push(snp_case(
        "turin_fmc_mismatch",
        "the Turin VCEK certifies FMC 2, REPORTED_TCB says 1",
        &ReportSpec::turin(),
        &turin_fmc,
        "tcb_mismatch",
    )?);
    let mut turin_chip = ReportSpec::turin();
    turin_chip.chip_id[8] = 1;
    cases.push(snp_case(
        "turin_chip_id_beyond_hwid",
        "a Turin CHIP_ID whose bytes past the 8-byte hwID are not zero",
        &turin_chip,
        &SnpChain::turin(),
        "chip_id_mismatch",
    )?);
    let mut no_vcek = no_data(&valid, "collateral_missing");
    no_vcek.name = "missing_vcek";
    no_vcek.description = "no endorsement certificate in the collateral";
    no_vcek.collateral.retain(|(name, _)| name != "vcek.der");
    cases.push(no_vcek);
    Ok(cases)
}

/// A copy of `case` expecting `expected`, without an expected report data.
fn no_data(case: &Case, expected: &'static str) -> Case {
    Case {
        expected,
        expected_report_data: None,
        ..case.clone()
    }
}
