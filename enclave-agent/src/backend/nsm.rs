//! The AWS Nitro Secure Module, through AWS's own `aws-nitro-enclaves-nsm-api`
//! (which does the `/dev/nsm` ioctl and the CBOR framing): an attestation
//! document with `user_data` (the binding), `nonce` and `public_key` filled,
//! so the verifier can check all three — and so can the agent, before it
//! sends the document: all three must be in it as requested.

use attest_gate_core::TeeKind;
use aws_nitro_enclaves_nsm_api::api::{Request as NsmRequest, Response as NsmResponse};
use aws_nitro_enclaves_nsm_api::driver::{nsm_exit, nsm_init, nsm_process_request};
use serde_bytes::ByteBuf;

use super::{check, BackendError, Evidence, EvidenceSource, Request};

/// The NSM device.
pub const DEVICE: &str = "/dev/nsm";

/// The Nitro Secure Module.
#[derive(Debug, Clone, Copy)]
pub struct Nsm;

fn failed(reason: impl std::fmt::Display) -> BackendError {
    BackendError::Failed {
        interface: "nsm",
        reason: reason.to_string(),
    }
}

/// The NSM request for `request` (separate so its shape is testable
/// without the device).
pub fn attestation_request(request: &Request<'_>) -> NsmRequest {
    NsmRequest::Attestation {
        user_data: Some(ByteBuf::from(request.report_data.to_vec())),
        nonce: Some(ByteBuf::from(request.nonce.to_vec())),
        public_key: Some(ByteBuf::from(request.public_key.to_vec())),
    }
}

/// The NSM's `response` to `request`, as evidence once the document carries
/// what was asked for (separate so it is testable without the device).
pub fn evidence_from(
    response: NsmResponse,
    request: &Request<'_>,
) -> Result<Evidence, BackendError> {
    match response {
        NsmResponse::Attestation { document } => {
            check::nitro_document(&document, request).map_err(BackendError::check("nsm"))?;
            Ok(Evidence {
                tee: TeeKind::Nitro,
                bytes: document,
                collateral: Vec::new(),
            })
        }
        NsmResponse::Error(code) => Err(failed(format!("the NSM refused: {code:?}"))),
        other => Err(failed(format!("unexpected NSM response {other:?}"))),
    }
}

impl EvidenceSource for Nsm {
    fn evidence(&self, request: &Request<'_>) -> Result<Evidence, BackendError> {
        let fd = nsm_init();
        if fd < 0 {
            return Err(failed(format!("cannot open {DEVICE}")));
        }
        let response = nsm_process_request(fd, attestation_request(request));
        nsm_exit(fd);
        evidence_from(response, request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::check::{Bound, CheckError};
    use attest_gate_forge::nitro::DocSpec;

    #[test]
    fn a_document_not_carrying_the_request_is_refused_before_sending() {
        let request = Request {
            report_data: [7; 64],
            nonce: b"nonce",
            public_key: b"key",
        };
        let document = |user_data: [u8; 64]| {
            DocSpec {
                user_data: Some(user_data.to_vec()),
                nonce: Some(b"nonce".to_vec()),
                public_key: Some(b"key".to_vec()),
                ..DocSpec::default()
            }
            .forge()
            .unwrap()
        };
        let good = document([7; 64]);
        let evidence = evidence_from(
            NsmResponse::Attestation {
                document: good.clone(),
            },
            &request,
        )
        .unwrap();
        assert_eq!(evidence.bytes, good);
        let other = NsmResponse::Attestation {
            document: document([8; 64]),
        };
        assert!(matches!(
            evidence_from(other, &request),
            Err(BackendError::Check {
                interface: "nsm",
                check: CheckError::Mismatch(Bound::UserData),
            })
        ));
    }

    #[test]
    fn the_request_fills_user_data_nonce_and_public_key() {
        let request = Request {
            report_data: [7; 64],
            nonce: b"nonce",
            public_key: b"key",
        };
        match attestation_request(&request) {
            NsmRequest::Attestation {
                user_data,
                nonce,
                public_key,
            } => {
                assert_eq!(
                    user_data.as_deref().map(|b| b.as_slice()),
                    Some(&[7u8; 64][..])
                );
                assert_eq!(nonce.as_deref().map(|b| b.as_slice()), Some(&b"nonce"[..]));
                assert_eq!(
                    public_key.as_deref().map(|b| b.as_slice()),
                    Some(&b"key"[..])
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
