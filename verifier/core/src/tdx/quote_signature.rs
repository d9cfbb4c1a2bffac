//! The signatures a quote carries within itself: the quote under its
//! attestation key, the QE report's binding of that key, and the QE report
//! under the PCK key. No collateral is involved, which is why the recorded
//! quotes can be checked here on their own.

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};

use crate::error::VerifyError;

use super::abi::Quote;

/// Checks the quote signature and the QE binding (no collateral needed).
pub(crate) fn check_quote_and_binding(quote: &Quote<'_>) -> Result<(), VerifyError> {
    // Header and TD report, signed by the attestation key (raw x ‖ y).
    let mut att_key = Vec::with_capacity(65);
    att_key.push(0x04);
    att_key.extend_from_slice(quote.attestation_key);
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &att_key)
        .verify(quote.signed, quote.quote_signature)
        .map_err(|_| VerifyError::SignatureInvalid)?;

    // The QE report binds the attestation key: REPORT_DATA[0..32] =
    // SHA-256(attestation key ‖ QE authentication data), the rest zero.
    let mut bound = quote.attestation_key.to_vec();
    bound.extend_from_slice(quote.qe_auth_data);
    let expected = digest(&SHA256, &bound);
    let report_data = quote.qe_report.get(320..384).unwrap_or_default();
    let (hash, rest) = report_data.split_at(report_data.len().min(32));
    if verify_slices_are_equal(hash, expected.as_ref()).is_err() || rest.iter().any(|b| *b != 0) {
        return Err(VerifyError::QeBindingInvalid);
    }
    Ok(())
}

/// The QE report is signed by the PCK leaf's P-256 key.
pub(crate) fn check_qe_report_signature(
    quote: &Quote<'_>,
    pck_key: &[u8],
) -> Result<(), VerifyError> {
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, pck_key)
        .verify(quote.qe_report, quote.qe_report_signature)
        .map_err(|_| VerifyError::QeReportSignatureInvalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::parse;

    /// The three signatures a quote carries within itself (no collateral).
    fn check_embedded_signatures(quote: &Quote<'_>) -> Result<(), VerifyError> {
        check_quote_and_binding(quote)?;
        let chain = quote.pck_chain()?;
        let leaf = parse(chain.first().ok_or(VerifyError::ChainIncomplete)?)?;
        check_qe_report_signature(quote, &leaf.public_key().subject_public_key.data)
    }

    /// Every recorded TDX quote parses, carries the manifest's MRTD and
    /// version, and its embedded signatures and QE binding check out; any
    /// edit to a signed byte, the QE report or the auth data is caught.
    #[test]
    fn recorded_quotes_parse_and_their_embedded_signatures_verify() {
        let Some(dir) = attest_gate_tests::fixtures_dir() else {
            return;
        };
        let mut n = 0;
        for sample in attest_gate_tests::samples(&dir, "tdx") {
            let id = sample["id"].as_str().unwrap();
            let bytes = std::fs::read(dir.join(format!("tdx/{id}.dat"))).unwrap();
            if id == "go-tdx-guest/tdx_prod_quote_SPR_E4" {
                // go-tdx-guest appended the text "extra bytes(only for testing
                // purpose)" after the signature data: only zero padding is
                // tolerated, so this one is malformed (its expected verdict is
                // a rejection anyway).
                assert_eq!(
                    Quote::parse(&bytes).unwrap_err().code(),
                    "malformed_evidence"
                );
                n += 1;
                continue;
            }
            let quote = Quote::parse(&bytes).unwrap_or_else(|e| panic!("{id}: {e}"));
            assert_eq!(
                u64::from(quote.version),
                sample["version"].as_u64().unwrap(),
                "{id}"
            );
            assert_eq!(
                hex::encode(quote.td_report.mr_td),
                sample["mrtd"].as_str().unwrap(),
                "{id}"
            );
            check_embedded_signatures(&quote).unwrap_or_else(|e| panic!("{id}: {e}"));

            let code = |mutate: &dyn Fn(&mut Vec<u8>)| {
                let mut b = bytes.clone();
                mutate(&mut b);
                Quote::parse(&b)
                    .and_then(|q| check_embedded_signatures(&q))
                    .unwrap_err()
                    .code()
            };
            // RTMR0 sits at 48 (+6 in v5) + 328 within the signed body.
            let rtmr0 = 48 + if quote.version == 5 { 6 } else { 0 } + 328;
            assert_eq!(
                code(&|b| b[rtmr0] ^= 1),
                "signature_invalid",
                "{id}: tampered RTMR"
            );
            let qe_report = quote.signed.len() + 4 + 128 + 6;
            assert_eq!(
                code(&|b| b[qe_report + 16] ^= 1),
                "qe_report_signature_invalid",
                "{id}: QE report edited"
            );
            // The QE authentication data is covered by no signature, only by the binding hash.
            let auth_data = qe_report + 384 + 64 + 2;
            assert_eq!(
                code(&|b| b[auth_data] ^= 1),
                "qe_binding_invalid",
                "{id}: QE auth data edited"
            );
            // A different attestation key no longer verifies the quote.
            assert_eq!(
                code(&|b| b[quote.signed.len() + 4 + 64] ^= 1),
                "signature_invalid",
                "{id}: attestation key swapped"
            );
            assert_eq!(
                code(&|b| b.truncate(b.len() / 2)),
                "malformed_evidence",
                "{id}: truncated"
            );
            n += 1;
        }
        assert_eq!(n, 14);
    }
}
