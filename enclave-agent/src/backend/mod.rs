//! Where evidence comes from: one trait, one implementation per interface.
//!
//! - `nsm`: the Nitro Secure Module (`/dev/nsm`).
//! - `tsm`: Linux configfs-tsm (`/sys/kernel/config/tsm/report`), for TDX
//!   and SEV-SNP guests.
//! - `sim`: evidence forged under the project's test roots (`--simulate`),
//!   which only a verifier in `--dev` mode accepts. Behind the `simulate`
//!   feature (on by default); production images build without it.

pub mod nsm;
#[cfg(feature = "simulate")]
pub mod sim;
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
    #[error("no TEE interface found (looked for /dev/nsm and configfs-tsm); use --simulate outside a TEE")]
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

/// The hardware interface of this machine: `/dev/nsm` for Nitro, else
/// configfs-tsm (its `provider` says TDX or SNP). `forced` skips detection.
pub fn detect(forced: Option<TeeKind>) -> Result<Box<dyn EvidenceSource>, BackendError> {
    let nitro = Path::new(nsm::DEVICE).exists();
    match forced {
        Some(TeeKind::Nitro) => Ok(Box::new(nsm::Nsm)),
        Some(tee) => Ok(Box::new(tsm::Tsm::new(Path::new(tsm::ROOT), Some(tee)))),
        None if nitro => Ok(Box::new(nsm::Nsm)),
        None if Path::new(tsm::ROOT).is_dir() => {
            let tsm = tsm::Tsm::new(Path::new(tsm::ROOT), None);
            tsm.detect_tee()?;
            Ok(Box::new(tsm))
        }
        None => Err(BackendError::NoTee),
    }
}
