//! Reading a quote *unverified*, only to find the platform's collateral
//! (which FMSPC, which PCK CA): kept apart so nothing in the verify flow
//! can mistake these values for verified ones.

use crate::chain::parse;
use crate::error::VerifyError;

use super::abi::Quote;
use super::pck::PckExtension;

/// Which Intel PCK CA issued a PCK certificate (the `ca` of PCS's PCK CRL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PckCa {
    /// Intel SGX PCK Platform CA (multi-package platforms).
    Platform,
    /// Intel SGX PCK Processor CA.
    Processor,
}

impl PckCa {
    /// `platform` or `processor`, as PCS's `pckcrl?ca=` names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Platform => "platform",
            Self::Processor => "processor",
        }
    }
}

/// The FMSPC and issuing CA named by the PCK certificate a quote carries,
/// *unverified*: only for finding the platform's collateral. Verification
/// later checks the PCK chain and that the TCB info is for this very FMSPC.
pub fn unverified_pck_lookup(evidence: &[u8]) -> Result<([u8; 6], PckCa), VerifyError> {
    let quote = Quote::parse(evidence)?;
    let leaf = quote
        .pck_chain
        .first()
        .ok_or_else(|| VerifyError::malformed("the quote carries no PCK certificate"))?;
    let cert = parse(leaf)?;
    let processor = cert
        .issuer()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .any(|cn| cn.contains("Processor"));
    let ca = if processor {
        PckCa::Processor
    } else {
        PckCa::Platform
    };
    Ok((PckExtension::parse(&cert)?.fmspc, ca))
}
