//! One forged SEV-SNP report per check, each asserting its specific code, cold
//! and warm; and property tests that no report bytes panic the parser.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::OnceLock;

use attest_gate_core::{
    appraise, AppraisalPolicy, Collateral, TeeKind, TrustAnchors, TrustKind, Verifier,
};
use attest_gate_forge::{cases, snp};
use proptest::prelude::*;

fn all_cases() -> &'static [cases::Case] {
    static CASES: OnceLock<Vec<cases::Case>> = OnceLock::new();
    CASES.get_or_init(|| cases::snp_cases().unwrap())
}

fn test_verifier() -> Verifier {
    static ARK: OnceLock<Vec<u8>> = OnceLock::new();
    Verifier::new(
        TrustAnchors::test_roots(vec![ARK.get_or_init(|| snp::test_ark().unwrap()).clone()])
            .unwrap(),
    )
}

fn verdict(verifier: &Verifier, case: &cases::Case) -> Result<(), String> {
    let collateral = Collateral::from_items(case.collateral.clone());
    let claims = verifier
        .verify(TeeKind::Snp, &case.evidence, &collateral, case.at())
        .map_err(|e| e.code().to_string())?;
    assert_eq!(claims.trust, TrustKind::TestRoot);
    let policy = AppraisalPolicy {
        expected_report_data: case.expected_report_data.clone(),
        ..AppraisalPolicy::default()
    };
    appraise(claims, &policy)
        .map(|_| ())
        .map_err(|r| r[0].code().to_string())
}

#[test]
fn every_forged_snp_case_gets_its_expected_verdict_cold_and_warm() {
    let all = all_cases();
    assert!(all.len() >= 20);
    let warm = test_verifier();
    for case in all {
        let expected = if case.expected == "ok" {
            Ok(())
        } else {
            Err(case.expected.to_string())
        };
        assert_eq!(
            verdict(&test_verifier(), case),
            expected,
            "{} (cold)",
            case.name
        );
        assert_eq!(verdict(&warm, &all[0]), Ok(()), "priming");
        assert_eq!(verdict(&warm, case), expected, "{} (warm)", case.name);
    }
}

#[test]
fn forged_reports_are_refused_by_the_vendor_roots() {
    let vendor = Verifier::new(TrustAnchors::vendor().unwrap());
    let case = &all_cases()[0];
    let err = vendor
        .verify(
            TeeKind::Snp,
            &case.evidence,
            &Collateral::from_items(case.collateral.clone()),
            case.at(),
        )
        .unwrap_err();
    assert_eq!(err.code(), "chain_untrusted");
}

fn verifier() -> &'static Verifier {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER.get_or_init(test_verifier)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_report_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1300)) {
        let case = &all_cases()[0];
        let collateral = Collateral::from_items(case.collateral.clone());
        let _ = verifier().verify(TeeKind::Snp, &bytes, &collateral, case.at());
    }

    #[test]
    fn mutated_valid_reports_never_verify(index in 0usize..0x4a0, value in any::<u8>()) {
        let case = &all_cases()[0];
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
        let case = &all_cases()[0];
        let collateral = Collateral::from_items([("vcek.der".to_string(), vcek), ("cert_chain.pem".to_string(), chain)]);
        let _ = verifier().verify(TeeKind::Snp, &case.evidence, &collateral, case.at());
    }
}
