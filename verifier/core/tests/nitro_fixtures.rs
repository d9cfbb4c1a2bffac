//! Every recorded Nitro sample in the shared fixtures verifies at its recorded
//! instant against the compiled-in AWS root, and is rejected one second after
//! its leaf certificate expires.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use attest_gate_core::{
    appraise, AppraisalPolicy, Collateral, PlatformClaims, TeeKind, TrustAnchors, TrustKind,
    Verifier,
};
use attest_gate_tests::fixtures_dir;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

#[test]
fn every_recorded_nitro_sample_verifies_at_its_instant_and_expires_after_its_leaf() {
    let Some(dir) = fixtures_dir() else { return };
    let verifier = Verifier::new(TrustAnchors::vendor().unwrap());
    let mut checked = 0;
    for sample in attest_gate_tests::samples(&dir, "nitro") {
        let id = sample["id"].as_str().unwrap();
        let bytes = std::fs::read(dir.join("nitro").join(format!("{id}.cose"))).unwrap();
        let at = OffsetDateTime::parse(sample["verify_at"].as_str().unwrap(), &Rfc3339).unwrap();
        let result = verifier.verify(TeeKind::Nitro, &bytes, &Collateral::empty(), at);
        if sample["valid"] == false {
            assert_eq!(result.unwrap_err().code(), "signature_invalid", "{id}");
            checked += 1;
            continue;
        }
        let claims = result.unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(claims.trust(), TrustKind::VendorRoot);
        assert_eq!(claims.verified_at(), at);
        let PlatformClaims::Nitro {
            module_id, digest, ..
        } = &claims.platform()
        else {
            panic!()
        };
        assert_eq!(module_id, sample["module_id"].as_str().unwrap(), "{id}");
        assert_eq!(digest, "SHA384");
        assert_eq!(
            claims.measurement("pcr0").unwrap().to_string(),
            sample["pcr0"].as_str().unwrap(),
            "{id}"
        );
        assert_eq!(claims.chain().len(), 5, "{id}: root, 3 intermediates, leaf");
        assert_eq!(
            claims.debug(),
            claims.measurement("pcr0").unwrap().is_zero(),
            "{id}"
        );
        if claims.debug() {
            let reasons = appraise(claims.clone(), &AppraisalPolicy::default()).unwrap_err();
            assert_eq!(reasons[0].code(), "debug_enclave", "{id}");
        }

        let leaf_not_after = claims.chain().last().unwrap().not_after;
        let err = verifier
            .verify(
                TeeKind::Nitro,
                &bytes,
                &Collateral::empty(),
                leaf_not_after + Duration::seconds(1),
            )
            .unwrap_err();
        assert_eq!(err.code(), "certificate_expired", "{id}");
        // ...and still verifies at the last second of validity.
        verifier
            .verify(TeeKind::Nitro, &bytes, &Collateral::empty(), leaf_not_after)
            .unwrap_or_else(|e| panic!("{id} at notAfter: {e}"));
        checked += 1;
    }
    assert_eq!(checked, 8, "every Nitro sample in the manifest was checked");
}
