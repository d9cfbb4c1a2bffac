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

mod ioctl;
pub mod nsm;
pub mod sev_guest;
#[cfg(feature = "simulate")]
pub mod sim;
pub mod tdx_guest;
pub mod tsm;

use std::path::Path;

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
    #[error("no TEE interface found (looked for /dev/nsm, configfs-tsm, /dev/tdx_guest and /dev/sev-guest); use --simulate outside a TEE")]
    NoTee,
    /// The interface answered with an error or an unexpected shape.
    #[error("{interface}: {reason}")]
    Failed {
        /// Which interface.
        interface: &'static str,
        /// What happened.
        reason: String,
    },
}

/// A source of attestation evidence.
pub trait EvidenceSource: Send + Sync {
    /// Whether its evidence is simulated (forged under test roots).
    fn simulated(&self) -> bool {
        false
    }
    /// Evidence carrying `request`.
    fn evidence(&self, request: &Request<'_>) -> Result<Evidence, BackendError>;
}

/// The interfaces [`detect`] chooses between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interface {
    Nsm,
    Tsm,
    TdxGuest,
    SevGuest,
}

/// The choice [`detect`] makes, given whether configfs-tsm is there and
/// which device paths exist. A forced TDX or SNP prefers configfs-tsm, the
/// newer interface, and falls back to its device.
fn choose(
    forced: Option<TeeKind>,
    tsm_present: bool,
    exists: impl Fn(&str) -> bool,
) -> Option<Interface> {
    match forced {
        Some(TeeKind::Nitro) => Some(Interface::Nsm),
        Some(_) if tsm_present => Some(Interface::Tsm),
        Some(TeeKind::Tdx) => Some(Interface::TdxGuest),
        Some(TeeKind::Snp) => Some(Interface::SevGuest),
        None if exists(nsm::DEVICE) => Some(Interface::Nsm),
        None if tsm_present => Some(Interface::Tsm),
        None if exists(tdx_guest::DEVICE) => Some(Interface::TdxGuest),
        None if exists(sev_guest::DEVICE) => Some(Interface::SevGuest),
        None => None,
    }
}

/// The hardware interface of this machine: `/dev/nsm` for Nitro, else
/// configfs-tsm (its `provider` says TDX or SNP), else `/dev/tdx_guest`,
/// else `/dev/sev-guest`. `forced` skips detection.
pub fn detect(forced: Option<TeeKind>) -> Result<Box<dyn EvidenceSource>, BackendError> {
    let tsm_root = Path::new(tsm::ROOT);
    let interface = choose(forced, tsm_root.is_dir(), |path| Path::new(path).exists());
    match interface {
        Some(Interface::Nsm) => Ok(Box::new(nsm::Nsm)),
        Some(Interface::Tsm) => {
            let tsm = tsm::Tsm::new(tsm_root, forced);
            if forced.is_none() {
                tsm.detect_tee()?;
            }
            Ok(Box::new(tsm))
        }
        Some(Interface::TdxGuest) => Ok(Box::new(tdx_guest::TdxGuest::configured()?)),
        Some(Interface::SevGuest) => Ok(Box::new(sev_guest::SevGuest)),
        None => Err(BackendError::NoTee),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(present: &'static [&'static str]) -> impl Fn(&str) -> bool {
        move |path| present.contains(&path)
    }

    #[test]
    fn detection_prefers_nsm_then_configfs_tsm_then_the_devices() {
        let all = with(&[nsm::DEVICE, tdx_guest::DEVICE, sev_guest::DEVICE]);
        assert_eq!(choose(None, true, &all), Some(Interface::Nsm));
        let no_nsm = with(&[tdx_guest::DEVICE, sev_guest::DEVICE]);
        assert_eq!(choose(None, true, &no_nsm), Some(Interface::Tsm));
        assert_eq!(choose(None, false, &no_nsm), Some(Interface::TdxGuest));
        let snp = with(&[sev_guest::DEVICE]);
        assert_eq!(choose(None, false, &snp), Some(Interface::SevGuest));
        assert_eq!(choose(None, false, with(&[])), None);
    }

    #[test]
    fn a_forced_tee_prefers_configfs_tsm_then_its_device() {
        let none = with(&[]);
        assert_eq!(
            choose(Some(TeeKind::Nitro), true, &none),
            Some(Interface::Nsm)
        );
        assert_eq!(
            choose(Some(TeeKind::Tdx), true, &none),
            Some(Interface::Tsm)
        );
        assert_eq!(
            choose(Some(TeeKind::Snp), true, &none),
            Some(Interface::Tsm)
        );
        assert_eq!(
            choose(Some(TeeKind::Tdx), false, &none),
            Some(Interface::TdxGuest)
        );
        // Forced past whatever else is there.
        let nsm = with(&[nsm::DEVICE]);
        assert_eq!(
            choose(Some(TeeKind::Snp), false, &nsm),
            Some(Interface::SevGuest)
        );
    }
}
