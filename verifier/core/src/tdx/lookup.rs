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
    /// The CA named `issuer` (a PCK's issuer, or its CA's subject): Intel
    /// calls one "…Processor CA" and the other "…Platform CA".
    pub(crate) fn of_issuer(issuer: &x509_parser::x509::X509Name<'_>) -> Self {
        let processor = issuer
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .any(|cn| cn.contains("Processor"));
        if processor {
            Self::Processor
        } else {
            Self::Platform
        }
    }

    /// `platform` or `processor`, as PCS's `pckcrl?ca=` names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Platform => "platform",
            Self::Processor => "processor",
        }
    }
}

/// Where a quote's PCK chain starts: the bytes from there to the end (the
/// chain's PEM, then any zero padding) are alike in every quote of a
/// platform, so a store can keep them once, apart from the rest. `None`
/// if `evidence` is not a quote. Unverified: it only splits bytes.
pub fn pck_chain_offset(evidence: &[u8]) -> Option<usize> {
    Quote::parse(evidence)
        .ok()
        .map(|quote| quote.pck_chain_at)
        .filter(|at| *at <= evidence.len())
}

/// The FMSPC and issuing CA named by the PCK certificate a quote carries,
/// *unverified*: only for finding the platform's collateral. Verification
/// later checks the PCK chain and that the TCB info is for this very FMSPC.
pub fn unverified_pck_lookup(evidence: &[u8]) -> Result<([u8; 6], PckCa), VerifyError> {
    let chain = Quote::parse(evidence)?.pck_chain()?;
    let leaf = chain
        .first()
        .ok_or_else(|| VerifyError::malformed("the quote carries no PCK certificate"))?;
    let cert = parse(leaf)?;
    Ok((
        PckExtension::parse(&cert)?.fmspc,
        PckCa::of_issuer(cert.issuer()),
    ))
}
