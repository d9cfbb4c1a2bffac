//! `--simulate`: evidence in each hardware format, forged now under the
//! project's test roots by the same generator as the verifier's tests
//! (`attest_gate_forge::template`: chains made once, one signature per document). The measurements are those of the example
//! workloads in `measurements/`. Only a verifier started with `--dev` trusts
//! these roots, and its credentials then say `test_root: true`.

use std::sync::Mutex;

use attest_gate_core::TeeKind;
use attest_gate_forge::template::{Hardware, Template};
use time::{Duration, OffsetDateTime};

use super::{check, BackendError, Evidence, EvidenceSource, Request};

/// How long a template's chains and collateral are used before new ones are
/// made (Nitro's leaf lives three hours; Intel's collateral a month).
const TEMPLATE_LIFETIME: Duration = Duration::hours(1);

/// A simulated TEE. Its chains and collateral are forged once (and again
/// hourly); each document then costs one signature, as on hardware.
pub struct Simulated {
    tee: TeeKind,
    template: Mutex<Option<Template>>,
}

impl std::fmt::Debug for Simulated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulated").field("tee", &self.tee).finish()
    }
}

impl Simulated {
    /// A simulator for `tee`.
    pub fn new(tee: TeeKind) -> Self {
        Self {
            tee,
            template: Mutex::new(None),
        }
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
        // dates the forged certificates, collateral and Nitro timestamp.
        let now = OffsetDateTime::now_utc();
        let mut template = self
            .template
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let stale = template
            .as_ref()
            .is_none_or(|t| now - t.made_at() >= TEMPLATE_LIFETIME || now < t.made_at());
        if stale {
            let hardware = match self.tee {
                TeeKind::Nitro => Hardware::Nitro,
                TeeKind::Snp => Hardware::Snp,
                TeeKind::Tdx => Hardware::Tdx,
            };
            *template = Some(Template::new(hardware, now).map_err(failed)?);
        }
        let Some(t) = template.as_ref() else {
            return Err(failed("no template"));
        };
        let bytes = t
            .evidence(
                &request.report_data,
                Some(request.nonce),
                Some(request.public_key),
                now,
            )
            .map_err(failed)?;
        let collateral = t.collateral().clone();
        // The same self-check as the hardware backends: it keeps their
        // checks honest against evidence in every format.
        match self.tee {
            TeeKind::Nitro => check::nitro_document(&bytes, request),
            TeeKind::Snp => check::snp_report(&bytes, &request.report_data),
            TeeKind::Tdx => check::tdx_quote(&bytes, &request.report_data),
        }
        .map_err(BackendError::check("simulator"))?;
        Ok(Evidence {
            tee: self.tee,
            bytes,
            collateral,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Forged evidence in each format passes the hardware backends' checks.
    #[test]
    fn simulated_evidence_passes_the_self_check_in_every_format() {
        let request = Request {
            report_data: [0x5c; 64],
            nonce: b"a nonce",
            public_key: &[4; 65],
        };
        for tee in [TeeKind::Nitro, TeeKind::Snp, TeeKind::Tdx] {
            let evidence = Simulated::new(tee).evidence(&request).unwrap();
            assert_eq!(evidence.tee, tee);
        }
    }
}
