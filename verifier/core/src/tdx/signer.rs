//! Intel-signed collateral documents (TCB info, QE identity): which TCB
//! signing certificate may vouch for one, and checking its signature under
//! that certificate. Apart from the collateral set because it is the one rule
//! for "who signed this", applied to each document alike.

use time::OffsetDateTime;

use crate::chain::{parse, ChainValidator, ECDSA_ALGS};
use crate::error::VerifyError;
use crate::trust::{Anchor, TrustAnchors};

use super::collateral::Document;

/// Every certificate (DER) in PEM bytes.
fn pem_certificates(bytes: &[u8]) -> Vec<Vec<u8>> {
    pem::parse_many(bytes)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(pem::Pem::into_contents)
        .collect()
}

/// Largest issuer-chain file accepted (a TCB signing certificate and the root).
const MAX_ISSUER_CHAIN: usize = 16 * 1024;

/// The TCB signing certificate that signed a document, for the root CA CRL
/// check and the cache window.
#[derive(Debug, Clone)]
pub(crate) struct Signer {
    pub(crate) serial: Vec<u8>,
    pub(crate) not_before: OffsetDateTime,
    pub(crate) not_after: OffsetDateTime,
}

/// A certificate's first common name, if any.
fn common_name(der: &[u8]) -> Option<String> {
    let cert = parse(der).ok()?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    Some(cn)
}

/// Verifies a signed document under Intel's TCB signing certificate, as
/// Intel's QVL does: the signer must be issued *directly* by the root the PCK
/// chain ended at, and be named a TCB signing certificate (`SGX TCB Signing`
/// in its CN), so no other certificate under the root (a PCK, a CA) can vouch
/// for TCB levels. The signer comes from the issuer-chain file (exactly the
/// signer, optionally followed by that root), else from the compiled-in ones.
pub(crate) fn verify_signed<T>(
    doc: Document,
    issuer_chain: Option<&[u8]>,
    root: &Anchor,
    anchors: &TrustAnchors,
    chains: &ChainValidator,
    at: OffsetDateTime,
    verify: impl Fn(&[u8]) -> Result<T, VerifyError>,
) -> Result<(T, Signer), VerifyError> {
    let untrusted = |reason: String| VerifyError::ChainUntrusted { reason };
    let candidates: Vec<Vec<u8>> = match issuer_chain {
        Some(pem) if pem.len() > MAX_ISSUER_CHAIN => {
            return Err(VerifyError::malformed(format!(
                "{} issuer chain is larger than 16 KiB",
                doc.name()
            )))
        }
        Some(pem) => match pem_certificates(pem).as_slice() {
            [signer] => vec![signer.clone()],
            [signer, copy] if copy.as_slice() == root.der.as_ref() => vec![signer.clone()],
            [_, _] => {
                return Err(untrusted(format!(
                    "the {} issuer chain ends at another root than the PCK chain",
                    doc.name()
                )))
            }
            _ => {
                return Err(untrusted(format!(
                    "the {} issuer chain is not [TCB signer, optional root]",
                    doc.name()
                )))
            }
        },
        None => anchors.intel_tcb_signing().map(<[u8]>::to_vec).collect(),
    };
    let mut last_err = VerifyError::CollateralMissing {
        what:
            "the TCB signing certificate (tcb_info_issuer_chain.pem / qe_identity_issuer_chain.pem)",
    };
    for der in &candidates {
        let chain = match chains.validate(std::slice::from_ref(root), der, &[], at, ECDSA_ALGS) {
            Ok(chain) => chain,
            Err(e) => {
                last_err = e;
                continue;
            }
        };
        if !common_name(der).is_some_and(|cn| cn.contains("SGX TCB Signing")) {
            last_err = untrusted(format!(
                "{} is signed by a certificate that is not a TCB signing certificate",
                doc.name()
            ));
            continue;
        }
        match verify(&chain.leaf_public_key) {
            Ok(value) => {
                let signer = Signer {
                    serial: parse(der)?.raw_serial().to_vec(),
                    not_before: chain
                        .summaries
                        .iter()
                        .map(|s| s.not_before)
                        .max()
                        .unwrap_or(at),
                    not_after: chain
                        .summaries
                        .iter()
                        .map(|s| s.not_after)
                        .min()
                        .unwrap_or(at),
                };
                return Ok((value, signer));
            }
            Err(e @ VerifyError::CollateralSignatureInvalid { .. }) => last_err = e,
            Err(e) => return Err(e),
        }
    }
    Err(last_err)
}
