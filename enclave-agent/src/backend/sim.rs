//! `--simulate`: evidence in each hardware format, forged now under the
//! project's test roots by the same generator as the verifier's tests
//! (`attest_gate_forge::template`: chains made once, one signature per document). The measurements are those of the example
//! workloads in `measurements/`. Only a verifier started with `--dev` trusts
//! these roots, and its credentials then say `test_root: true`.

use std::sync::Mutex;

use attest_gate_core::TeeKind;
use attest_gate_forge::nitro::DocSpec;
use attest_gate_forge::snp::ReportSpec;
use attest_gate_forge::tdx::TdxSpec;
use attest_gate_forge::template::{NitroTemplate, SnpTemplate, TdxTemplate};
use time::{Duration, OffsetDateTime};

use super::{BackendError, Evidence, EvidenceSource, Request};

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

enum Template {
    Nitro(NitroTemplate),
    Snp(SnpTemplate, OffsetDateTime),
    Tdx(TdxTemplate),
}

impl Template {
    fn new(tee: TeeKind, now: OffsetDateTime) -> Result<Self, BackendError> {
        Ok(match tee {
            TeeKind::Nitro => {
                Self::Nitro(NitroTemplate::new(DocSpec::default(), now).map_err(failed)?)
            }
            TeeKind::Snp => Self::Snp(
                SnpTemplate::new(&ReportSpec::default()).map_err(failed)?,
                now,
            ),
            TeeKind::Tdx => Self::Tdx(TdxTemplate::new(&TdxSpec::default(), now).map_err(failed)?),
        })
    }

    fn made_at(&self) -> OffsetDateTime {
        match self {
            Self::Nitro(t) => t.made_at(),
            Self::Snp(_, at) => *at,
            Self::Tdx(t) => t.made_at(),
        }
    }

    fn evidence(
        &self,
        request: &Request<'_>,
        now: OffsetDateTime,
    ) -> Result<(Vec<u8>, Vec<(String, Vec<u8>)>), BackendError> {
        Ok(match self {
            Self::Nitro(t) => (
                t.document(
                    Some(&request.report_data),
                    Some(request.nonce),
                    Some(request.public_key),
                    now,
                )
                .map_err(failed)?,
                Vec::new(),
            ),
            Self::Snp(t, _) => (t.report(&request.report_data), t.collateral().clone()),
            Self::Tdx(t) => (t.quote(&request.report_data), t.collateral().clone()),
        })
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
            *template = Some(Template::new(self.tee, now)?);
        }
        let (bytes, collateral) = match template.as_ref() {
            Some(t) => t.evidence(request, now)?,
            None => return Err(failed("no template")),
        };
        Ok(Evidence {
            tee: self.tee,
            bytes,
            collateral,
        })
    }
}
