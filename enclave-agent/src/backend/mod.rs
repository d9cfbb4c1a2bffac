//! Where evidence comes from: one trait, one implementation per interface.
//!
//! - `nsm`: the Nitro Secure Module (`/dev/nsm`).
//! - `tsm`: Linux configfs-tsm (`/sys/kernel/config/tsm/report`), for TDX
//!   and SEV-SNP guests.
//! - `tdx_guest`, `sev_guest`: the older device ioctls, for kernels without
//!   configfs-tsm (TDX quotes then come from the host's QGS over vsock). The
//!   ioctls themselves live in `ioctl`, the crate's only `unsafe` code.
//! - `sim`: evidence forged under the project's test roots (`--simulate`),
//!   which only a verifier in `--dev` mode accepts. Behind the `simulate`
//!   feature (on by default); production images build without it.
//!
//! Every hardware backend checks, before returning, that the evidence
//! carries what was asked for (`check`): the host is not trusted to.
//! Backends block (a TDX quote may take the QGS 35 s of timeouts), so the
//! async code asks them through [`evidence_off_thread`], on the runtime's
//! blocking pool, and the agent's one runtime thread keeps serving.

pub mod check;
mod ioctl;
pub mod nsm;
pub mod sev_guest;
#[cfg(feature = "simulate")]
pub mod sim;
pub mod tdx_guest;
pub mod tsm;

use std::path::Path;
use std::sync::Arc;

use attest_gate_core::TeeKind;

/// Evidence and any collateral that came with it (e.g. SNP certificates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// Which TEE made it.
    pub tee: TeeKind,
    /// The raw evidence (COSE document, TDX quote, SNP report).
    pub bytes: Vec<u8>,
    /// Collateral files by the verifier's names.
    pub collateral: Vec<(String, Vec<u8>)>,
}

/// What the evidence must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// The 64-byte binding (REPORT_DATA / Nitro `user_data`).
    pub report_data: [u8; 64],
    /// The verifier's nonce (Nitro's `nonce` field).
    pub nonce: &'a [u8],
    /// The agent key as a SEC1 point (Nitro's `public_key` field).
    pub public_key: &'a [u8],
}

/// Getting evidence failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// No TEE interface is present.
    #[error("no TEE interface found (looked for /dev/nsm, configfs-tsm with a provider, /dev/tdx_guest and /dev/sev-guest); use --simulate outside a TEE")]
    NoTee,
    /// The interface answered with an error or an unexpected shape.
    #[error("{interface}: {reason}")]
    Failed {
        /// Which interface.
        interface: &'static str,
        /// What happened.
        reason: String,
    },
    /// configfs-tsm failed.
    #[error("configfs-tsm: {0}")]
    Tsm(tsm::TsmError),
    /// `/dev/sev-guest` failed, or its answer is not what it promises.
    #[error("sev-guest: {0}")]
    SevGuest(sev_guest::SnpError),
    /// The evidence does not carry what was requested (checked before
    /// anything is sent).
    #[error("{interface}: {check}")]
    Check {
        /// Which interface returned it.
        interface: &'static str,
        /// What is wrong with it.
        check: check::CheckError,
    },
    /// The blocking task that asked the backend ended without an answer
    /// (it panicked, or the runtime is shutting down).
    #[error("the evidence request ended without an answer: {0}")]
    Task(tokio::task::JoinError),
}

impl BackendError {
    /// A check failure of `interface`'s evidence.
    pub(crate) fn check(interface: &'static str) -> impl FnOnce(check::CheckError) -> Self {
        move |check| Self::Check { interface, check }
    }
}

/// A source of attestation evidence.
///
/// `evidence` may block for a long time (device ioctls, the TDX QGS over
/// vsock): async callers use [`evidence_off_thread`].
pub trait EvidenceSource: Send + Sync {
    /// Whether its evidence is simulated (forged under test roots).
    fn simulated(&self) -> bool {
        false
    }
    /// Evidence carrying `request`.
    fn evidence(&self, request: &Request<'_>) -> Result<Evidence, BackendError>;
}

/// Asks `source` for evidence on the runtime's blocking pool (a
/// current-thread runtime has one too), so the caller's thread keeps
/// running the socket server and the signal handlers meanwhile. The request
/// is owned because the blocking task may outlive the caller's borrow (a
/// caller cancelled by a signal does not stop the device call).
pub async fn evidence_off_thread(
    source: Arc<dyn EvidenceSource>,
    report_data: [u8; 64],
    nonce: Vec<u8>,
    public_key: Vec<u8>,
) -> Result<Evidence, BackendError> {
    tokio::task::spawn_blocking(move || {
        source.evidence(&Request {
            report_data,
            nonce: &nonce,
            public_key: &public_key,
        })
    })
    .await
    .map_err(BackendError::Task)?
}

/// The interfaces [`detect`] chooses between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interface {
    Nsm,
    Tsm,
    TdxGuest,
    SevGuest,
}

/// What probing configfs-tsm found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TsmState {
    /// No `/sys/kernel/config/tsm/report`.
    Absent,
    /// There, but no TEE driver registered behind it (ENXIO): the device
    /// interfaces may still work.
    NoProvider,
    /// There (with a provider, or not probed because a TEE was forced).
    Present,
}

/// The choice [`detect`] makes, given what configfs-tsm is and which
/// device paths exist. A forced TDX or SNP prefers configfs-tsm, the newer
/// interface, and falls back to its device; configfs-tsm without a provider
/// is passed over only when nothing was forced (a forced TEE was not
/// probed, and its error shows when evidence is asked for).
fn choose(
    forced: Option<TeeKind>,
    tsm: TsmState,
    exists: impl Fn(&str) -> bool,
) -> Option<Interface> {
    let tsm_usable = tsm == TsmState::Present;
    match forced {
        Some(TeeKind::Nitro) => Some(Interface::Nsm),
        Some(_) if tsm != TsmState::Absent => Some(Interface::Tsm),
        Some(TeeKind::Tdx) => Some(Interface::TdxGuest),
        Some(TeeKind::Snp) => Some(Interface::SevGuest),
        None if exists(nsm::DEVICE) => Some(Interface::Nsm),
        None if tsm_usable => Some(Interface::Tsm),
        None if exists(tdx_guest::DEVICE) => Some(Interface::TdxGuest),
        None if exists(sev_guest::DEVICE) => Some(Interface::SevGuest),
        None => None,
    }
}

/// The state a configfs-tsm probe (`Tsm::detect_tee`) leaves: only "no
/// provider" is passed over; any other failure stays an error.
fn probed(probe: Result<TeeKind, BackendError>) -> Result<TsmState, BackendError> {
    match probe {
        Ok(_) => Ok(TsmState::Present),
        Err(BackendError::Tsm(tsm::TsmError::NoProvider)) => Ok(TsmState::NoProvider),
        Err(e) => Err(e),
    }
}

/// The hardware interface of this machine: `/dev/nsm` for Nitro, else
/// configfs-tsm (its `provider` says TDX or SNP; without one, on to the
/// devices), else `/dev/tdx_guest`, else `/dev/sev-guest`. `forced` skips
/// detection. `vmpl` is the SEV-SNP VMPL to ask reports for (default:
/// configfs-tsm's `privlevel_floor`, or 0 on `/dev/sev-guest`).
pub fn detect(
    forced: Option<TeeKind>,
    vmpl: Option<u8>,
) -> Result<Box<dyn EvidenceSource>, BackendError> {
    let tsm_root = Path::new(tsm::ROOT);
    let exists = |path: &str| Path::new(path).exists();
    let tsm = tsm::Tsm::new(tsm_root, forced, vmpl);
    let state = if !tsm_root.is_dir() {
        TsmState::Absent
    } else if forced.is_none() && !exists(nsm::DEVICE) {
        probed(tsm.detect_tee())?
    } else {
        TsmState::Present
    };
    match choose(forced, state, exists) {
        Some(Interface::Nsm) => Ok(Box::new(nsm::Nsm)),
        Some(Interface::Tsm) => Ok(Box::new(tsm)),
        Some(Interface::TdxGuest) => Ok(Box::new(tdx_guest::TdxGuest::configured()?)),
        Some(Interface::SevGuest) => Ok(Box::new(sev_guest::SevGuest::new(
            vmpl.unwrap_or(sev_guest::DEFAULT_VMPL),
        ))),
        None => Err(BackendError::NoTee),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(present: &'static [&'static str]) -> impl Fn(&str) -> bool {
        move |path| present.contains(&path)
    }

    use TsmState::{Absent, NoProvider, Present};

    /// A backend with a bug.
    struct Panics;

    impl EvidenceSource for Panics {
        fn evidence(&self, _request: &Request<'_>) -> Result<Evidence, BackendError> {
            panic!("a backend bug")
        }
    }

    #[tokio::test]
    async fn a_panicking_backend_is_an_error_not_a_crash() {
        let result = evidence_off_thread(Arc::new(Panics), [0; 64], Vec::new(), Vec::new()).await;
        match result {
            Err(BackendError::Task(e)) => assert!(e.is_panic()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn detection_prefers_nsm_then_configfs_tsm_then_the_devices() {
        let all = with(&[nsm::DEVICE, tdx_guest::DEVICE, sev_guest::DEVICE]);
        assert_eq!(choose(None, Present, &all), Some(Interface::Nsm));
        let no_nsm = with(&[tdx_guest::DEVICE, sev_guest::DEVICE]);
        assert_eq!(choose(None, Present, &no_nsm), Some(Interface::Tsm));
        assert_eq!(choose(None, Absent, &no_nsm), Some(Interface::TdxGuest));
        let snp = with(&[sev_guest::DEVICE]);
        assert_eq!(choose(None, Absent, &snp), Some(Interface::SevGuest));
        assert_eq!(choose(None, Absent, with(&[])), None);
    }

    #[test]
    fn configfs_tsm_without_a_provider_falls_through_to_the_devices() {
        // The probe's ENXIO (tsm.rs's fake tree makes it) is "no provider"...
        assert_eq!(
            probed(Err(BackendError::Tsm(tsm::TsmError::NoProvider))).unwrap(),
            NoProvider
        );
        assert_eq!(probed(Ok(TeeKind::Snp)).unwrap(), Present);
        // ...any other failure is not passed over.
        assert!(probed(Err(BackendError::Tsm(tsm::TsmError::UnknownProvider(
            "arm_cca_guest".into()
        ))))
        .is_err());
        let tdx = with(&[tdx_guest::DEVICE]);
        assert_eq!(choose(None, NoProvider, &tdx), Some(Interface::TdxGuest));
        let snp = with(&[sev_guest::DEVICE]);
        assert_eq!(choose(None, NoProvider, &snp), Some(Interface::SevGuest));
        assert_eq!(choose(None, NoProvider, with(&[])), None);
        // A forced TEE keeps configfs-tsm, and with it the error.
        assert_eq!(
            choose(Some(TeeKind::Tdx), NoProvider, &tdx),
            Some(Interface::Tsm)
        );
        assert_eq!(
            choose(Some(TeeKind::Snp), NoProvider, &snp),
            Some(Interface::Tsm)
        );
    }

    #[test]
    fn a_forced_tee_prefers_configfs_tsm_then_its_device() {
        let none = with(&[]);
        assert_eq!(
            choose(Some(TeeKind::Nitro), Present, &none),
            Some(Interface::Nsm)
        );
        assert_eq!(
            choose(Some(TeeKind::Tdx), Present, &none),
            Some(Interface::Tsm)
        );
        assert_eq!(
            choose(Some(TeeKind::Snp), Present, &none),
            Some(Interface::Tsm)
        );
        assert_eq!(
            choose(Some(TeeKind::Tdx), Absent, &none),
            Some(Interface::TdxGuest)
        );
        // Forced past whatever else is there.
        let nsm = with(&[nsm::DEVICE]);
        assert_eq!(
            choose(Some(TeeKind::Snp), Absent, &nsm),
            Some(Interface::SevGuest)
        );
    }
}
