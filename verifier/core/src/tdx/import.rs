//! Other common shapes of the same Intel collateral, translated to the
//! folder names of [`super::names`]: the file names of Intel's own QVL
//! samples, and Phala `dcap-qvl`'s `QuoteCollateralV3` JSON. Translation
//! only re-wraps bytes; signatures are still checked over the originals.

use serde::Deserialize;

use super::collateral::MAX_COLLATERAL_JSON;
use super::names;
use crate::error::VerifyError;

/// The canonical names a file of this name provides (Intel QVL sample
/// names, and the canonical names themselves); empty if unknown.
pub fn canonical_names(file_name: &str) -> &'static [&'static str] {
    match file_name {
        names::TCB_INFO | "tcbInfo.json" => &[names::TCB_INFO],
        names::QE_IDENTITY | "qeIdentity.json" => &[names::QE_IDENTITY],
        names::TCB_INFO_ISSUER_CHAIN => &[names::TCB_INFO_ISSUER_CHAIN],
        names::QE_IDENTITY_ISSUER_CHAIN => &[names::QE_IDENTITY_ISSUER_CHAIN],
        // Intel's samples sign TCB info and QE identity with one chain.
        "tcbSignChain.pem" => &[
            names::TCB_INFO_ISSUER_CHAIN,
            names::QE_IDENTITY_ISSUER_CHAIN,
        ],
        names::PCK_CRL | "pck_crl.pem" | "intermediateCaCrl.der" | "intermediateCaCrl.pem" => {
            &[names::PCK_CRL]
        }
        names::PCK_CRL_ISSUER_CHAIN | "pckSignChain.pem" => &[names::PCK_CRL_ISSUER_CHAIN],
        names::ROOT_CA_CRL | "root_ca_crl.pem" | "rootCaCrl.der" | "rootCaCrl.pem" => {
            &[names::ROOT_CA_CRL]
        }
        _ => &[],
    }
}

/// `dcap-qvl`'s `QuoteCollateralV3` (JSON): PEM chains as strings, CRLs as
/// hex DER, TCB info and QE identity as their signed JSON bodies with the
/// signatures beside them.
#[derive(Deserialize)]
struct QuoteCollateralV3 {
    pck_crl_issuer_chain: String,
    root_ca_crl: String,
    pck_crl: String,
    tcb_info_issuer_chain: String,
    tcb_info: String,
    tcb_info_signature: String,
    qe_identity_issuer_chain: String,
    qe_identity: String,
    qe_identity_signature: String,
}

/// Translates a `QuoteCollateralV3` JSON document into named collateral items.
pub fn from_quote_collateral_v3(json: &[u8]) -> Result<Vec<(String, Vec<u8>)>, VerifyError> {
    let bad = |what: String| VerifyError::malformed(format!("QuoteCollateralV3: {what}"));
    if json.len() > 4 * MAX_COLLATERAL_JSON {
        return Err(bad("larger than 1 MiB".into()));
    }
    let c: QuoteCollateralV3 = serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
    let hex = |field: &str, s: &str| hex::decode(s).map_err(|_| bad(format!("{field} is not hex")));
    // The signed body goes in verbatim: the signature covers its exact bytes.
    let wrap = |key: &str, body: &str, signature: &str| {
        format!("{{\"{key}\":{body},\"signature\":\"{signature}\"}}").into_bytes()
    };
    Ok(vec![
        (
            names::TCB_INFO.into(),
            wrap("tcbInfo", &c.tcb_info, &c.tcb_info_signature),
        ),
        (
            names::TCB_INFO_ISSUER_CHAIN.into(),
            c.tcb_info_issuer_chain.into_bytes(),
        ),
        (
            names::QE_IDENTITY.into(),
            wrap("enclaveIdentity", &c.qe_identity, &c.qe_identity_signature),
        ),
        (
            names::QE_IDENTITY_ISSUER_CHAIN.into(),
            c.qe_identity_issuer_chain.into_bytes(),
        ),
        (names::PCK_CRL.into(), hex("pck_crl", &c.pck_crl)?),
        (
            names::PCK_CRL_ISSUER_CHAIN.into(),
            c.pck_crl_issuer_chain.into_bytes(),
        ),
        (
            names::ROOT_CA_CRL.into(),
            hex("root_ca_crl", &c.root_ca_crl)?,
        ),
    ])
}
