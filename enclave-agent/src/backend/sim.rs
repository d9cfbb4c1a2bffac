//! `--simulate`: evidence in each hardware format, forged now under the
//! project's test roots by the same generator as the verifier's tests
//! (`attest_gate_forge::live`). The measurements are those of the example
//! workloads in `measurements/`. Only a verifier started with `--dev` trusts
//! these roots, and its credentials then say `test_root: true`.

use attest_gate_core::TeeKind;
use attest_gate_forge::live;
use attest_gate_forge::nitro::DocSpec;
use attest_gate_forge::snp::ReportSpec;
use attest_gate_forge::tdx::TdxSpec;
use time::OffsetDateTime;

use super::{BackendError, Evidence, EvidenceSource, Request};

/// A simulated TEE.
#[derive(Debug, Clone, Copy)]
pub struct Simulated {
    tee: TeeKind,
}

impl Simulated {
    /// A simulator for `tee`.
    pub fn new(tee: TeeKind) -> Self {
        Self { tee }
    }
}

fn failed(reason: impl std::fmt::Display) -> BackendError {
    BackendError::Failed {
        interface: "simulator",
        reason: reason.to_string(),
    }
}

impl EvidenceSource for Simulated {
    fn simulated(&self) -> bool {
        true
    }

    fn evidence(&self, request: &Request<'_>) -> Result<Evidence, BackendError> {
        // The simulator stands where hardware would: the one clock read here
        // dates the forged certificates and collateral.
        let now = OffsetDateTime::now_utc();
        let (bytes, collateral) = match self.tee {
            TeeKind::Nitro => {
                let doc = DocSpec {
                    user_data: Some(request.report_data.to_vec()),
                    nonce: Some(request.nonce.to_vec()),
                    public_key: Some(request.public_key.to_vec()),
                    ..DocSpec::default()
                };
                (live::nitro(&doc, now).map_err(failed)?, Vec::new())
            }
            TeeKind::Snp => live::snp(&ReportSpec {
                report_data: request.report_data,
                ..ReportSpec::default()
            })
            .map_err(failed)?,
            TeeKind::Tdx => {
                let mut spec = TdxSpec::default();
                spec.quote.report_data = request.report_data;
                live::tdx(&spec, now).map_err(failed)?
            }
        };
        Ok(Evidence {
            tee: self.tee,
            bytes,
            collateral,
        })
    }
}
