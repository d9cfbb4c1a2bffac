//! The catalogue of forged evidence: one case per check the verifier makes,
//! each naming the error code it must produce ("ok" for evidence that must
//! verify and pass the default appraisal). Tests iterate it; the testdata
//! writer stores it.

use coset::iana;
use rcgen::KeyUsagePurpose;
use sha2::Digest;
use time::Duration;

use crate::nitro::{self, DocSpec, ForgeError, FORGE_INSTANT};
use crate::pki::CertSpec;
use crate::snp::{self as snp_forge, ChainSpec as SnpChain, ReportSpec};
use crate::tdx::{self, TdxSpec};

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
    let mut reserved_tcb = report.body();
    if let Some(b) = reserved_tcb.get_mut(0x3b) {
        *b = 2;
    }
    cases.push(Case {
        name: "reserved_tcb_nonzero",
        description:
            "a reserved byte inside CURRENT_TCB (byte 3 of the Milan layout) set, and signed",
        evidence: snp_forge::sign_body(reserved_tcb, &snp_forge::vcek_key()),
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

fn tdx_case(
    name: &'static str,
    description: &'static str,
    spec: &TdxSpec,
    expected: &'static str,
) -> Result<Case, ForgeError> {
    let (evidence, collateral) = spec.forge()?;
    Ok(Case {
        name,
        description,
        tee: "tdx",
        evidence,
        collateral,
        expected,
        expected_nonce: None,
        expected_report_data: None,
    })
}

/// Every TDX case. The valid evidence is a v4 quote whose platform matches
/// the TCB info's first (UpToDate) level and whose QE matches the QE
/// identity's UpToDate level; all collateral is current at [`FORGE_INSTANT`].
pub fn tdx_cases() -> Result<Vec<Case>, ForgeError> {
    let spec = TdxSpec::default();
    let mut cases = Vec::new();

    let mut valid = tdx_case(
        "valid",
        "a v4 quote of an UpToDate platform and QE, with current collateral",
        &spec,
        "ok",
    )?;
    valid.expected_report_data = Some(spec.quote.report_data.to_vec());
    cases.push(valid.clone());
    cases.push(tdx_case(
        "valid_v5",
        "a v5 quote with a TD 1.5 body (TEE_TCB_SVN2 = TEE_TCB_SVN)",
        &TdxSpec {
            quote: tdx::QuoteSpec::v5(),
            ..spec.clone()
        },
        "ok",
    )?);
    let mut module = spec.clone();
    let module_svn = [3, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    module.quote.tee_tcb_svn = module_svn;
    module.quote.tee_tcb_svn2 = module_svn;
    if let Some(level) = module.tcb_info.levels.first_mut() {
        // Larger than the quote's SVNs where only module identity matching
        // may look: a level that matches only when compared from index 2.
        level.tdx = [9, 9, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    }
    cases.push(tdx_case(
        "valid_module_identity",
        "TEE_TCB_SVN 03 03 03: module TDX_03, isvsvn 3 UpToDate; platform level compared from index 2",
        &module,
        "ok",
    )?);

    let signed_len = spec.quote.body_offset() + tdx::TD10_BODY_LEN;
    let mut flipped = no_data(&valid, "signature_invalid");
    flipped.name = "flipped_quote_signature";
    flipped.description = "one bit of the quote signature's r flipped";
    if let Some(b) = flipped.evidence.get_mut(signed_len + 4) {
        *b ^= 1;
    }
    cases.push(flipped);
    let mut tampered = no_data(&valid, "signature_invalid");
    tampered.name = "tampered_rtmr";
    tampered.description = "one byte of RTMR0 changed after signing";
    if let Some(b) = tampered
        .evidence
        .get_mut(spec.quote.body_offset() + tdx::RTMR_OFFSET)
    {
        *b ^= 0xff;
    }
    cases.push(tampered);

    let mut foreign_qe = spec.clone();
    foreign_qe.quote.qe_report_signer = Some("tdx-test-foreign-qe-signer".into());
    cases.push(tdx_case(
        "qe_report_foreign_key",
        "the QE report is signed by a key other than the PCK certificate's",
        &foreign_qe,
        "qe_report_signature_invalid",
    )?);
    let mut unbound = spec.clone();
    unbound.quote.break_qe_binding = true;
    cases.push(tdx_case(
        "qe_binding_broken",
        "the QE report's REPORT_DATA is not SHA-256(attestation key || auth data)",
        &unbound,
        "qe_binding_invalid",
    )?);
    let mut other_qe = spec.clone();
    other_qe.qe_identity.mrsigner = sha2::Sha256::digest(b"attest-gate other QE signer").into();
    cases.push(tdx_case(
        "qe_identity_mismatch",
        "the QE identity names another MRSIGNER than the QE report's",
        &other_qe,
        "qe_identity_mismatch",
    )?);
    let mut old_qe = spec.clone();
    old_qe.quote.qe_report.isvsvn = 3;
    old_qe.quote.qe_svn = 3;
    cases.push(tdx_case(
        "qe_out_of_date",
        "QE ISVSVN 3: below the UpToDate level (4), matching the OutOfDate one (2)",
        &old_qe,
        "tcb_status_not_accepted",
    )?);

    let mut pck_revoked = spec.clone();
    pck_revoked.platform.revoke_pck = true;
    cases.push(tdx_case(
        "pck_revoked",
        "the PCK CRL lists the PCK certificate's serial",
        &pck_revoked,
        "certificate_revoked",
    )?);
    let mut ca_revoked = spec.clone();
    ca_revoked.platform.revoke_platform_ca = true;
    cases.push(tdx_case(
        "platform_ca_revoked",
        "the root CA CRL lists the PCK Platform CA's serial",
        &ca_revoked,
        "certificate_revoked",
    )?);
    let mut other_prod = spec.clone();
    other_prod.qe_identity.isvprodid = spec.qe_identity.isvprodid + 1;
    cases.push(tdx_case(
        "qe_identity_isvprodid_mismatch",
        "the QE identity names another ISVPRODID than the QE report's",
        &other_prod,
        "qe_identity_mismatch",
    )?);
    let mut other_seam = spec.clone();
    other_seam.quote.mr_signer_seam = [0x5e; 48];
    cases.push(tdx_case(
        "tdx_module_signer_mismatch",
        "MRSIGNERSEAM is not the TCB info's tdxModule.mrsigner",
        &other_seam,
        "tdx_module_mismatch",
    )?);
    let mut unknown_module = spec.clone();
    let unknown_svn = [3, 0x0a, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    unknown_module.quote.tee_tcb_svn = unknown_svn;
    unknown_module.quote.tee_tcb_svn2 = unknown_svn;
    cases.push(tdx_case(
        "tdx_module_identity_unknown",
        "TEE_TCB_SVN[1] = 0x0a selects module identity TDX_0A, which the TCB info does not list",
        &unknown_module,
        "tdx_module_mismatch",
    )?);
    let mut other_pce = spec.clone();
    other_pce.tcb_info.pce_id = [0x01, 0x00];
    cases.push(tdx_case(
        "tcb_info_other_pce_id",
        "TCB info for another PCE-ID than the PCK certificate's",
        &other_pce,
        "collateral_mismatch",
    )?);
    let mut signer_revoked = spec.clone();
    signer_revoked.platform.revoke_tcb_signing = true;
    cases.push(tdx_case(
        "tcb_signer_revoked",
        "the root CA CRL lists the TCB signing certificate that signed TCB info and QE identity",
        &signer_revoked,
        "certificate_revoked",
    )?);
    // A PCK key (e.g. extracted from an out-of-date platform) signs its own
    // TCB info / QE identity: only Intel's TCB signing certificate may.
    let pki = spec.platform.issue()?;
    for (name, description, file, chain_file) in [
        (
            "tcb_info_signed_by_pck",
            "TCB info signed by the PCK key, with the PCK chain as its issuer chain",
            "tcb_info.json",
            "tcb_info_issuer_chain.pem",
        ),
        (
            "qe_identity_signed_by_pck",
            "QE identity signed by the PCK key, with the PCK chain as its issuer chain",
            "qe_identity.json",
            "qe_identity_issuer_chain.pem",
        ),
    ] {
        let mut collateral = tdx::collateral(&pki, &spec.tcb_info, &spec.qe_identity)?;
        for (n, bytes) in collateral.iter_mut() {
            if n == file {
                *bytes = if file == "tcb_info.json" {
                    spec.tcb_info.sign(&pki.pck_key)?
                } else {
                    spec.qe_identity.sign(&pki.pck_key)?
                };
            } else if n == chain_file {
                *bytes = pki.pck_chain_pem().into_bytes();
            }
        }
        cases.push(Case {
            name,
            description,
            tee: "tdx",
            evidence: spec.quote.sign(&pki),
            collateral,
            expected: "chain_untrusted",
            expected_nonce: None,
            expected_report_data: None,
        });
    }
    let mut stale = spec.clone();
    stale.platform.pck_crl_window = (
        FORGE_INSTANT - Duration::days(31),
        FORGE_INSTANT - Duration::days(1),
    );
    cases.push(tdx_case(
        "pck_crl_stale",
        "the PCK CRL's nextUpdate is a day before the instant",
        &stale,
        "crl_invalid",
    )?);

    let with_platform = |sgx: [u8; 16], pcesvn: u16| {
        let mut s = spec.clone();
        s.platform = s.platform.clone().with_svns(sgx, pcesvn);
        s.quote.qe_report.cpusvn = sgx;
        s.quote.pce_svn = pcesvn;
        s
    };
    cases.push(tdx_case(
        "tcb_out_of_date",
        "the PCK certifies older SGX components: the OutOfDate level matches",
        &with_platform(tdx::OUT_OF_DATE_SGX_SVNS, crate::intel::DEFAULT_PCESVN),
        "tcb_status_not_accepted",
    )?);
    cases.push(tdx_case(
        "tcb_revoked",
        "the PCK certifies SVNs that only the Revoked level matches",
        &with_platform(tdx::REVOKED_SGX_SVNS, tdx::REVOKED_PCESVN),
        "tcb_status_not_accepted",
    )?);
    let mut hardening = spec.clone();
    hardening.quote.tee_tcb_svn = tdx::SW_HARDENING_TEE_TCB_SVN;
    cases.push(tdx_case(
        "tcb_sw_hardening_needed",
        "TDX late microcode SVN 2: the SWHardeningNeeded level (INTEL-SA-00001) matches",
        &hardening,
        "tcb_status_not_accepted",
    )?);
    cases.push(tdx_case(
        "no_matching_tcb_level",
        "the PCK certifies SGX SVNs and PCESVN 0, below every TCB level",
        &with_platform([0; 16], 0),
        "no_matching_tcb_level",
    )?);

    let mut tcb_expired = spec.clone();
    tcb_expired.tcb_info.window = tdx::expired_window();
    cases.push(tdx_case(
        "tcb_info_expired",
        "the TCB info's nextUpdate is 30 days before the instant",
        &tcb_expired,
        "collateral_expired",
    )?);
    let mut qe_expired = spec.clone();
    qe_expired.qe_identity.window = tdx::expired_window();
    cases.push(tdx_case(
        "qe_identity_expired",
        "the QE identity's nextUpdate is 30 days before the instant",
        &qe_expired,
        "collateral_expired",
    )?);
    let mut other_fmspc = spec.clone();
    other_fmspc.tcb_info.fmspc = [0x00, 0x80, 0x6f, 0x05, 0x00, 0x00];
    cases.push(tdx_case(
        "tcb_info_other_fmspc",
        "the TCB info is for FMSPC 00806F050000, the PCK certifies 90C06F000000",
        &other_fmspc,
        "collateral_mismatch",
    )?);
    let mut edited = spec.clone();
    edited.tcb_info.edit_after_signing = Some((
        "\"tcbEvaluationDataNumber\":17".into(),
        "\"tcbEvaluationDataNumber\":18".into(),
    ));
    cases.push(tdx_case(
        "tcb_info_edited",
        "tcbEvaluationDataNumber changed from 17 to 18 after signing (JSON still valid)",
        &edited,
        "collateral_signature_invalid",
    )?);
    let mut missing = no_data(&valid, "collateral_missing");
    missing.name = "missing_tcb_info";
    missing.description = "no tcb_info.json in the collateral";
    missing
        .collateral
        .retain(|(name, _)| name != "tcb_info.json");
    cases.push(missing);

    cases.push(tdx_case(
        "foreign_root",
        "PCK chain and collateral all under a different self-signed root",
        &TdxSpec {
            platform: crate::intel::PlatformSpec::foreign_root(),
            ..spec.clone()
        },
        "chain_untrusted",
    )?);
    let mut expired_pck = spec.clone();
    expired_pck.platform.pck_window = (
        FORGE_INSTANT - Duration::days(400),
        FORGE_INSTANT - Duration::days(1),
    );
    cases.push(tdx_case(
        "expired_pck",
        "the PCK certificate expired a day before the instant",
        &expired_pck,
        "certificate_expired",
    )?);
    let mut debug = spec.clone();
    debug.quote.td_attributes[0] |= tdx::TD_ATTRIBUTES_DEBUG;
    cases.push(tdx_case(
        "debug_td",
        "authentic, but TDATTRIBUTES.DEBUG is set; denied by default",
        &debug,
        "debug_enclave",
    )?);
    let mut wrong_data = valid.clone();
    wrong_data.name = "report_data_mismatch";
    wrong_data.description = "authentic, but REPORTDATA is not the expected value";
    wrong_data.expected = "report_data_mismatch";
    wrong_data.expected_report_data = Some(vec![0x42; 64]);
    cases.push(wrong_data);
    let mut truncated = no_data(&valid, "malformed_evidence");
    truncated.name = "truncated";
    truncated.description = "the quote without its last byte (the PEM chain's NUL)";
    truncated.evidence.pop();
    cases.push(truncated);
    let mut padded = spec.clone();
    padded.quote.trailing = vec![0, 0, 0, 0, 0, 0, 0, 1];
    cases.push(tdx_case(
        "nonzero_padding",
        "zero padding after the signature data ending in a non-zero byte",
        &padded,
        "malformed_evidence",
    )?);
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
