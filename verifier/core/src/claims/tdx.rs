//! TDX claims: what an authenticated TDX quote says of its TD, decoded.
//!
//! Value types only (no parsing, no verification), so that
//! [`crate::claims::PlatformClaims`] can name them without the claims module
//! depending on the TDX verifier; `crate::tdx` re-exports them under their
//! old paths.

use time::OffsetDateTime;

use super::TcbStatus;

/// TD attributes, decoded (Intel TDX module ABI, TDATTRIBUTES).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TdAttributes {
    /// The raw 64-bit value.
    pub raw: u64,
    /// Bit 0: the TD is debuggable (its memory and state are not private).
    pub debug: bool,
    /// Bit 28: EPT violations are not converted to #VE (required by most policies).
    pub sept_ve_disable: bool,
    /// Bit 30: protection keys for supervisor pages.
    pub pks: bool,
    /// Bit 31: key locker.
    pub key_locker: bool,
    /// Bit 63: perfmon.
    pub perfmon: bool,
}

impl TdAttributes {
    pub(crate) fn decode(bytes: [u8; 8]) -> Self {
        let raw = u64::from_le_bytes(bytes);
        let bit = |n: u32| raw & (1 << n) != 0;
        Self {
            raw,
            debug: bit(0),
            sept_ve_disable: bit(28),
            pks: bit(30),
            key_locker: bit(31),
            perfmon: bit(63),
        }
    }
}

/// TDX-specific claims of verified evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxClaims {
    /// Quote format version (4 or 5).
    pub quote_version: u16,
    /// TD attributes.
    pub td_attributes: TdAttributes,
    /// XFAM, raw.
    pub xfam: [u8; 8],
    /// TEE_TCB_SVN.
    pub tee_tcb_svn: [u8; 16],
    /// SEAMATTRIBUTES.
    pub seam_attributes: [u8; 8],
    /// FMSPC from the PCK certificate.
    pub fmspc: [u8; 6],
    /// PCE-ID from the PCK certificate.
    pub pce_id: [u8; 2],
    /// The converged TCB status.
    pub tcb_status: TcbStatus,
    /// Intel security advisories of the matched levels.
    pub advisory_ids: Vec<String>,
    /// The platform level's status (before convergence).
    pub platform_tcb_status: TcbStatus,
    /// The TDX module identity's status, when TEE_TCB_SVN selects one.
    pub tdx_module_tcb_status: Option<TcbStatus>,
    /// The QE's TCB status.
    pub qe_tcb_status: TcbStatus,
    /// The matched platform level's TCB date.
    pub tcb_date: OffsetDateTime,
    /// Intel's TCB evaluation data number of the TCB info.
    pub tcb_evaluation_data_number: u32,
    /// When the collateral set became valid (latest issue date / thisUpdate).
    pub collateral_valid_from: OffsetDateTime,
    /// When it must be refreshed (earliest nextUpdate).
    pub collateral_valid_until: OffsetDateTime,
}
