//! What a per-TEE verifier hands back once every signature and link has
//! checked: the common claims without the stamps only the entry point adds.
//!
//! It lives apart from `verifier` (which dispatches to the TEEs) and from the
//! TEE modules (which produce it), so that both depend on this module and
//! neither depends on the other's internals: `verifier → {nitro, snp, tdx} →
//! authenticated → claims`.

use crate::claims::{
    BoundData, CertificateSummary, NamedMeasurement, PlatformClaims, TcbStatus, TeeKind,
};

/// What a per-TEE verifier yields once every signature and link has checked.
#[derive(Debug)]
pub(crate) struct Authenticated {
    pub(crate) tee: TeeKind,
    pub(crate) measurements: Vec<NamedMeasurement>,
    pub(crate) bound: BoundData,
    pub(crate) debug: bool,
    pub(crate) tcb_status: Option<TcbStatus>,
    pub(crate) platform: PlatformClaims,
    pub(crate) chain: Vec<CertificateSummary>,
}
