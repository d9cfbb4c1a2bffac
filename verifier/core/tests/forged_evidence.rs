//! Every forged case in `attest-gate-forge` (one per check, for each TEE) gets
//! its expected verdict, cold and warm; forged evidence is refused under the
//! vendor roots; and property tests show that no input panics and no edit of
//! a valid piece of evidence verifies.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::OnceLock;

use attest_gate_core::{
    appraise, resolve_tee, AppraisalPolicy, Collateral, TeeKind, TrustAnchors, TrustKind, Verifier,
};
use attest_gate_forge::{cases, intel, nitro, snp};
use proptest::prelude::*;

fn nitro_cases() -> &'static [cases::Case] {
    static CASES: OnceLock<Vec<cases::Case>> = OnceLock::new();
    CASES.get_or_init(|| cases::nitro_cases().unwrap())
}

fn snp_cases() -> &'static [cases::Case] {
    static CASES: OnceLock<Vec<cases::Case>> = OnceLock::new();
    CASES.get_or_init(|| cases::snp_cases().unwrap())
}

fn tdx_cases() -> &'static [cases::Case] {
    static CASES: OnceLock<Vec<cases::Case>> = OnceLock::new();
    CASES.get_or_init(|| cases::tdx_cases().unwrap())
}

/// A fresh verifier trusting the project's test roots (Nitro root, SNP ARKs, SGX root).
fn test_verifier() -> Verifier {
    static ROOTS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    let roots = ROOTS.get_or_init(|| {
        vec![
            nitro::test_root().unwrap(),
            snp::test_ark().unwrap(),
            snp::test_ark_for("Turin").unwrap(),
            intel::test_root().unwrap(),
        ]
    });
    Verifier::new(TrustAnchors::test_roots(roots.clone()).unwrap())
}

/// One warm verifier shared by the property tests (exercises the caches too).
fn verifier() -> &'static Verifier {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER.get_or_init(test_verifier)
}

fn tee(case: &cases::Case) -> TeeKind {
    case.tee.parse().unwrap()
}

/// Verifies and appraises like the CLI: `Ok(())` or the first code.
fn verdict(verifier: &Verifier, case: &cases::Case) -> Result<(), String> {
    let tee = resolve_tee(&case.evidence, Some(tee(case))).map_err(|e| e.code().to_string())?;
    let collateral = Collateral::from_items(case.collateral.clone());
    appraised(
        verifier.verify(tee, &case.evidence, &collateral, case.at()),
        case,
    )
}

/// `claims` appraised like the CLI: `Ok(())` or the first code.
fn appraised(
    claims: Result<attest_gate_core::VerifiedClaims, attest_gate_core::VerifyError>,
    case: &cases::Case,
) -> Result<(), String> {
    let claims = claims.map_err(|e| e.code().to_string())?;
    assert_eq!(claims.trust(), TrustKind::TestRoot);
    let policy = AppraisalPolicy {
        expected_nonce: case.expected_nonce.clone(),
        expected_report_data: case.expected_report_data.clone(),
        ..AppraisalPolicy::default()
    };
    appraise(claims, &policy)
        .map(|_| ())
        .map_err(|r| r[0].code().to_string())
}

fn assert_every_case(all: &[cases::Case]) {
    assert!(all.len() >= 20);
    let warm = test_verifier();
    for case in all {
        let expected = if case.expected == "ok" {
            Ok(())
        } else {
            Err(case.expected.to_string())
        };
        // Cold: a fresh verifier with nothing cached.
        assert_eq!(
            verdict(&test_verifier(), case),
            expected,
            "{} {} (cold)",
            case.tee,
            case.name
        );
        // Warm: one long-lived verifier, after the valid case primed its cache.
        assert_eq!(verdict(&warm, &all[0]), Ok(()), "priming");
        assert_eq!(
            verdict(&warm, case),
            expected,
            "{} {} (warm)",
            case.tee,
            case.name
        );
    }
}

#[test]
fn every_forged_nitro_case_gets_its_expected_verdict_cold_and_warm() {
    assert_every_case(nitro_cases());
}

#[test]
fn every_forged_snp_case_gets_its_expected_verdict_cold_and_warm() {
    assert_every_case(snp_cases());
}

#[test]
fn every_forged_tdx_case_gets_its_expected_verdict_cold_and_warm() {
    assert_every_case(tdx_cases());
}

/// A service authenticates a TDX quote before it fetches collateral, then
/// finishes that same authenticated quote with the collateral: every case
/// must get its verdict, the ones refused for a signature or chain by the
/// authentication itself, the rest by the verification that follows it.
#[test]
fn tdx_authenticated_first_then_verified_gets_every_expected_verdict() {
    let warm = test_verifier();
    for case in tdx_cases() {
        let expected = if case.expected == "ok" {
            Ok(())
        } else {
            Err(case.expected.to_string())
        };
        let collateral = Collateral::from_items(case.collateral.clone());
        let claims = warm
            .authenticate_tdx_quote(&case.evidence, case.at())
            .and_then(|quote| quote.verify(&collateral));
        assert_eq!(appraised(claims, case), expected, "{}", case.name);
        assert_eq!(verdict(&warm, case), expected, "{}", case.name);
    }
}

/// The two steps give what one `verify` gives, at the instant of the
/// authentication and under its verifier's trust.
#[test]
fn an_authenticated_quote_verifies_to_the_claims_of_one_verify() {
    let verifier = test_verifier();
    let case = tdx_cases().iter().find(|c| c.expected == "ok").unwrap();
    let collateral = Collateral::from_items(case.collateral.clone());
    let quote = verifier
        .authenticate_tdx_quote(&case.evidence, case.at())
        .unwrap();
    let platform = quote.platform();
    let two_steps = quote.verify(&collateral).unwrap();
    let one = verifier
        .verify(TeeKind::Tdx, &case.evidence, &collateral, case.at())
        .unwrap();
    assert_eq!(two_steps.verified_at(), case.at());
    assert_eq!(two_steps.trust(), one.trust());
    assert_eq!(two_steps.evidence_sha384(), one.evidence_sha384());
    assert_eq!(two_steps.measurements(), one.measurements());
    assert_eq!(two_steps.tcb_status(), one.tcb_status());
    match two_steps.platform() {
        attest_gate_core::PlatformClaims::Tdx(tdx) => assert_eq!(tdx.fmspc, platform.fmspc),
        other => panic!("not TDX claims: {other:?}"),
    }
}

#[test]
fn a_quotes_pck_chain_offset_splits_off_its_pem() {
    let evidence = &tdx_cases()[0].evidence;
    let at = attest_gate_core::tdx::pck_chain_offset(evidence).unwrap();
    assert!(evidence[at..].starts_with(b"-----BEGIN CERTIFICATE-----"));
    assert_eq!(
        attest_gate_core::tdx::pck_chain_offset(b"not a quote"),
        None
    );
}

/// A warm PCK chain is recognised by its PEM byte for byte: once the valid
/// quote has primed the cache, the same quote with one base64 character of
/// its chain changed (other DER) or replaced by a space (PEM outside the one
/// accepted spelling) is decoded and refused, not served from the cache.
#[test]
fn a_warm_pck_chain_is_recognised_only_by_its_exact_pem() {
    let warm = test_verifier();
    let valid = &tdx_cases()[0];
    assert_eq!(verdict(&warm, valid), Ok(()));
    let at = attest_gate_core::tdx::pck_chain_offset(&valid.evidence).unwrap();
    // Inside the leaf's base64, on its third line: away from the first
    // and last 64 bytes the cache's key is made of, so only the full
    // comparison can tell the edited chain from the cached one.
    let inside = at + "-----BEGIN CERTIFICATE-----\n".len() + 2 * 65 + 42;
    for (replacement, expected) in [(b' ', Some("malformed_evidence")), (b'A', None)] {
        let mut edited = valid.clone();
        let original = edited.evidence[inside];
        edited.evidence[inside] = if original == replacement {
            b'B'
        } else {
            replacement
        };
        let refused = verdict(&warm, &edited).unwrap_err();
        if let Some(code) = expected {
            assert_eq!(refused, code);
        }
    }
    assert_eq!(verdict(&warm, valid), Ok(()));
}

#[test]
fn forged_evidence_is_refused_by_the_vendor_roots() {
    let vendor = Verifier::new(TrustAnchors::vendor().unwrap());
    for case in [&nitro_cases()[0], &snp_cases()[0], &tdx_cases()[0]] {
        let collateral = Collateral::from_items(case.collateral.clone());
        let err = vendor
            .verify(tee(case), &case.evidence, &collateral, case.at())
            .unwrap_err();
        assert_eq!(err.code(), "chain_untrusted", "{}", case.tee);
    }
}

#[test]
fn warm_cache_never_outlives_the_issuer_chain() {
    // A second leaf under the *same* intermediates, valid for 30 hours: longer
    // than the instance CA (22 hours). The cache holds the intermediates after
    // the first document; at +23 h the leaf alone is fine but its issuer has
    // expired, and the cached path must not hide that.
    let mut long_leaf = nitro::chain_spec();
    long_leaf.leaf.not_after = nitro::FORGE_INSTANT + time::Duration::hours(30);
    let chain = long_leaf.issue().unwrap();
    let later_doc = nitro::DocSpec::default()
        .sign(&chain, &nitro::bundle(&chain))
        .unwrap();

    let verifier = test_verifier();
    let first = &nitro_cases()[0];
    verifier
        .verify(
            TeeKind::Nitro,
            &first.evidence,
            &Collateral::empty(),
            first.at(),
        )
        .unwrap();
    let within = first.at() + time::Duration::hours(21);
    verifier
        .verify(TeeKind::Nitro, &later_doc, &Collateral::empty(), within)
        .unwrap();
    let after_issuer = first.at() + time::Duration::hours(23);
    let err = verifier
        .verify(
            TeeKind::Nitro,
            &later_doc,
            &Collateral::empty(),
            after_issuer,
        )
        .unwrap_err();
    assert_eq!(err.code(), "certificate_expired");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let verified = verifier().verify(TeeKind::Nitro, &bytes, &Collateral::empty(), nitro::FORGE_INSTANT);
        prop_assert!(verified.is_err(), "random bytes verified as a Nitro document");
        let _ = attest_gate_core::nitro::unverified_timestamp(&bytes);
        let _ = attest_gate_core::decode_text_encoding(&bytes);
        let _ = attest_gate_core::tdx::Quote::parse(&bytes);
        let _ = attest_gate_core::EvidenceBundle::from_json(&bytes);
    }

    #[test]
    fn mutated_valid_documents_never_panic_and_never_verify(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let valid = nitro_cases()[0].evidence.clone();
        let mut bytes = valid.clone();
        for (index, value) in &edits {
            let i = index.index(bytes.len());
            bytes[i] = *value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        let result = verifier().verify(TeeKind::Nitro, &bytes, &Collateral::empty(), nitro::FORGE_INSTANT);
        // Every byte of the envelope is either signed, structural, or the
        // (empty) unprotected header, which no one-byte edit keeps valid.
        if bytes != valid {
            prop_assert!(result.is_err(), "a mutated document verified");
        }
    }

    #[test]
    fn arbitrary_report_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1300)) {
        let case = &snp_cases()[0];
        let collateral = Collateral::from_items(case.collateral.clone());
        let result = verifier().verify(TeeKind::Snp, &bytes, &collateral, case.at());
        prop_assert!(result.is_err(), "a random report verified beside a valid chain");
    }

    #[test]
    fn mutated_valid_reports_never_verify(index in 0usize..0x4a0, value in any::<u8>()) {
        let case = &snp_cases()[0];
        let mut bytes = case.evidence.clone();
        prop_assume!(bytes[index] != value);
        bytes[index] = value;
        let collateral = Collateral::from_items(case.collateral.clone());
        let result = verifier().verify(TeeKind::Snp, &bytes, &collateral, case.at());
        // Bytes 0x2D0..0x2E8 and 0x318..0x330 are the zero-extension of R and S;
        // every other byte is signed or must be zero.
        prop_assert!(result.is_err(), "a report edited at {:#x} verified", index);
    }

    #[test]
    fn arbitrary_collateral_never_panics(vcek in proptest::collection::vec(any::<u8>(), 0..2000), chain in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let case = &snp_cases()[0];
        let collateral = Collateral::from_items([("vcek.der".to_string(), vcek), ("cert_chain.pem".to_string(), chain)]);
        let result = verifier().verify(TeeKind::Snp, &case.evidence, &collateral, case.at());
        prop_assert!(result.is_err(), "a valid report verified beside a random VCEK and chain");
    }

    #[test]
    fn arbitrary_quote_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..6000)) {
        let case = &tdx_cases()[0];
        let collateral = Collateral::from_items(case.collateral.clone());
        let result = verifier().verify(TeeKind::Tdx, &bytes, &collateral, case.at());
        prop_assert!(result.is_err(), "a random quote verified beside valid collateral");
    }

    #[test]
    fn mutated_valid_quotes_never_verify(index in any::<prop::sample::Index>(), value in any::<u8>()) {
        let case = &tdx_cases()[0];
        let mut bytes = case.evidence.clone();
        // Any byte of the quote, its certification data's tail included.
        let index = index.index(bytes.len());
        prop_assume!(bytes[index] != value);
        bytes[index] = value;
        let collateral = Collateral::from_items(case.collateral.clone());
        let result = verifier().verify(TeeKind::Tdx, &bytes, &collateral, case.at());
        prop_assert!(result.is_err(), "a quote edited at {} verified", index);
    }

    #[test]
    fn arbitrary_tdx_collateral_never_panics(
        name in proptest::sample::select(attest_gate_core::tdx::names::ALL.to_vec()),
        bytes in proptest::collection::vec(any::<u8>(), 0..3000),
    ) {
        let case = &tdx_cases()[0];
        let mut items = case.collateral.clone();
        items.retain(|(n, _)| n != name);
        items.push((name.to_string(), bytes));
        let result = verifier().verify(TeeKind::Tdx, &case.evidence, &Collateral::from_items(items), case.at());
        prop_assert!(result.is_err() || name == attest_gate_core::tdx::names::PCK_CRL_ISSUER_CHAIN);
    }
}

/// A CRL's outer structure is outside what is signed; a CRL whose outer
/// signatureAlgorithm is not the tbsCertList's own (its tag or OID edited),
/// or whose outer SEQUENCE tag is another, is refused, for the PCK CRL and
/// the root CA CRL alike. (Found by the differential check against
/// dcap-qvl: we used to accept both.)
#[test]
fn a_crl_whose_outer_algorithm_differs_from_the_signed_one_is_refused() {
    const ECDSA_SHA256: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
    let case = &tdx_cases()[0];
    assert_eq!(case.expected, "ok");
    for name in ["pck_crl.der", "root_ca_crl.der"] {
        for (what, at, value) in [
            ("algorithm tag", Some(0), 0x4a),
            ("algorithm OID", Some(9), 0x03),
            ("SEQUENCE tag", None, 0xb0),
        ] {
            let mut items = case.collateral.clone();
            let crl = &mut items.iter_mut().find(|(n, _)| n == name).unwrap().1;
            let outer = crl
                .windows(ECDSA_SHA256.len())
                .rposition(|w| w == ECDSA_SHA256)
                .expect("an ECDSA-SHA256 CRL");
            match at {
                Some(at) => crl[outer + at] = value,
                None => crl[0] = value,
            }
            let code = verifier()
                .verify(
                    TeeKind::Tdx,
                    &case.evidence,
                    &Collateral::from_items(items),
                    case.at(),
                )
                .unwrap_err()
                .code();
            assert_eq!(code, "crl_invalid", "{name}, outer {what} edited");
        }
    }
}

/// A certificate with a critical extension no one here understands is
/// refused by path validation (RFC 5280 §4.2), in the leaf and in an
/// intermediate, as `certificate_invalid`.
#[test]
fn an_unknown_critical_extension_is_certificate_invalid() {
    for position in ["zonal intermediate", "leaf"] {
        let mut spec = nitro::chain_spec();
        match position {
            "leaf" => spec.leaf.unknown_critical_extension = true,
            _ => spec.intermediates[1].unknown_critical_extension = true,
        }
        let chain = spec.issue().unwrap();
        let document = nitro::DocSpec::default()
            .sign(&chain, &nitro::bundle(&chain))
            .unwrap();
        let code = verifier()
            .verify(
                TeeKind::Nitro,
                &document,
                &Collateral::empty(),
                nitro::FORGE_INSTANT,
            )
            .unwrap_err()
            .code();
        assert_eq!(code, "certificate_invalid", "{position}");
    }
}

/// Every byte of a valid quote is covered by a signature, a hash binding, a
/// certificate, or the zero-padding rule: flipping any one is refused.
#[test]
fn no_single_byte_edit_of_a_valid_quote_verifies() {
    let case = &tdx_cases()[0];
    let collateral = Collateral::from_items(case.collateral.clone());
    let verifier = verifier();
    let mut accepted = Vec::new();
    for index in 0..case.evidence.len() {
        let mut bytes = case.evidence.clone();
        bytes[index] ^= 0x01;
        if verifier
            .verify(TeeKind::Tdx, &bytes, &collateral, case.at())
            .is_ok()
        {
            accepted.push(index);
        }
    }
    assert!(accepted.is_empty(), "edits at {accepted:?} verified");
}

/// The binding check over real verified claims: evidence made with the
/// binding of (nonce, key, model) passes; any other nonce, key or model is
/// `binding_mismatch`, naming the field. Nitro also checks its `nonce` and
/// `public_key` fields when present.
#[test]
fn binding_is_checked_against_verified_evidence() {
    use attest_gate_core::{AgentKey, Binding, ModelDigest};
    use attest_gate_forge::tdx::TdxSpec;

    let key = AgentKey::Ed25519 { x: [7; 32] };
    let binding = Binding::new(b"challenge", key.clone(), ModelDigest([9; 48])).unwrap();
    let others = [
        Binding::new(b"challengf", key.clone(), ModelDigest([9; 48])).unwrap(),
        Binding::new(
            b"challenge",
            AgentKey::Ed25519 { x: [8; 32] },
            ModelDigest([9; 48]),
        )
        .unwrap(),
        Binding::new(b"challenge", key.clone(), ModelDigest([1; 48])).unwrap(),
    ];

    let mut spec = TdxSpec::default();
    spec.quote.report_data = binding.report_data();
    let (quote, collateral) = spec.forge().unwrap();
    let claims = verifier()
        .verify(
            TeeKind::Tdx,
            &quote,
            &Collateral::from_items(collateral),
            cases::tdx_cases().unwrap()[0].at(),
        )
        .unwrap();
    assert_eq!(binding.check(&claims), Ok(()));
    for other in &others {
        assert_eq!(other.check(&claims).unwrap_err().code(), "binding_mismatch");
    }

    let doc = nitro::DocSpec {
        user_data: Some(binding.report_data().to_vec()),
        nonce: Some(b"challenge".to_vec()),
        public_key: Some(key.raw_public_key()),
        ..nitro::DocSpec::default()
    };
    let at = nitro_cases()[0].at();
    let claims = verifier()
        .verify(
            TeeKind::Nitro,
            &doc.forge().unwrap(),
            &Collateral::empty(),
            at,
        )
        .unwrap();
    assert_eq!(binding.check(&claims), Ok(()));
    for other in &others {
        assert_eq!(other.check(&claims).unwrap_err().code(), "binding_mismatch");
    }
    let wrong_nonce_field = nitro::DocSpec {
        nonce: Some(b"other".to_vec()),
        ..doc.clone()
    };
    let claims = verifier()
        .verify(
            TeeKind::Nitro,
            &wrong_nonce_field.forge().unwrap(),
            &Collateral::empty(),
            at,
        )
        .unwrap();
    assert_eq!(
        binding.check(&claims),
        Err(attest_gate_core::Rejection::BindingMismatch { field: "nonce" })
    );
}
