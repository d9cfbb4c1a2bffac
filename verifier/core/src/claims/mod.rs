//! The normalized, typed result of verifying evidence from any TEE.
//!
//! [`VerifiedClaims`] can only be constructed inside this crate, by a
//! verifier that has checked every signature and chain link: holding one is
//! proof that verification ran (the pattern of rustls' `HandshakeSignatureValid`).
//!
//! The per-TEE claim types live in the submodules `snp` and `tdx` (Nitro's
//! few fields are inline in [`PlatformClaims::Nitro`]); `crate::snp` and
//! `crate::tdx` re-export them. So claims depend on nothing else in the
//! crate, and every verifier depends on claims, never the reverse.

pub(crate) mod snp;
pub(crate) mod tdx;

use std::fmt;

use time::OffsetDateTime;

/// The kind of trusted execution environment that produced evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TeeKind {
    /// AWS Nitro Enclaves (NSM attestation document, COSE_Sign1).
    Nitro,
    /// Intel TDX (DCAP quote v4/v5).
    Tdx,
    /// AMD SEV-SNP (attestation report).
    Snp,
}

impl TeeKind {
    /// The lower-case name used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nitro => "nitro",
            Self::Tdx => "tdx",
            Self::Snp => "snp",
        }
    }
}

impl fmt::Display for TeeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TeeKind {
    type Err = UnknownTee;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "nitro" => Ok(Self::Nitro),
            "tdx" => Ok(Self::Tdx),
            "snp" => Ok(Self::Snp),
            _ => Err(UnknownTee),
        }
    }
}

/// A TEE name that is not one of `nitro`, `tdx`, `snp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown TEE kind (expected nitro, tdx or snp)")]
pub struct UnknownTee;

/// Which kind of root the evidence chained to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustKind {
    /// A vendor root compiled into the verifier.
    VendorRoot,
    /// A root supplied explicitly for testing; never for production use.
    TestRoot,
}

impl TrustKind {
    /// `vendor-root` or `test-root`, as printed in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VendorRoot => "vendor-root",
            Self::TestRoot => "test-root",
        }
    }
}

/// A measurement register value (PCR, MRTD, RTMR, MEASUREMENT...).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Measurement(Vec<u8>);

impl Measurement {
    /// Wraps raw register bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The raw register bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// True if every byte is zero (an unset or debug-mode register).
    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|b| *b == 0)
    }
}

impl fmt::Display for Measurement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl fmt::Debug for Measurement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Measurement({self})")
    }
}

/// A measurement with the name it has in its TEE (`pcr0`, `mrtd`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedMeasurement {
    /// The register's name, lower case.
    pub name: String,
    /// Its value.
    pub value: Measurement,
}

/// Data the workload bound into the evidence when requesting it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BoundData {
    /// Nitro `user_data`.
    pub user_data: Option<Vec<u8>>,
    /// Nitro `nonce`.
    pub nonce: Option<Vec<u8>>,
    /// Nitro `public_key`.
    pub public_key: Option<Vec<u8>>,
    /// TDX / SNP `REPORT_DATA` (64 bytes).
    pub report_data: Option<Vec<u8>>,
}

/// A platform's TCB status as the vendor's collateral rates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcbStatus {
    /// Fully patched.
    UpToDate,
    /// Patched, but software hardening is advised.
    SwHardeningNeeded,
    /// Patched, but the platform configuration needs a change.
    ConfigurationNeeded,
    /// Both of the above.
    ConfigurationAndSwHardeningNeeded,
    /// A newer TCB exists.
    OutOfDate,
    /// A newer TCB exists and the configuration needs a change.
    OutOfDateConfigurationNeeded,
    /// The TCB has been revoked.
    Revoked,
}

impl TcbStatus {
    /// The vendor's spelling (Intel PCS names).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UpToDate => "UpToDate",
            Self::SwHardeningNeeded => "SWHardeningNeeded",
            Self::ConfigurationNeeded => "ConfigurationNeeded",
            Self::ConfigurationAndSwHardeningNeeded => "ConfigurationAndSWHardeningNeeded",
            Self::OutOfDate => "OutOfDate",
            Self::OutOfDateConfigurationNeeded => "OutOfDateConfigurationNeeded",
            Self::Revoked => "Revoked",
        }
    }
}

impl std::str::FromStr for TcbStatus {
    type Err = UnknownTcbStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Self::UpToDate,
            Self::SwHardeningNeeded,
            Self::ConfigurationNeeded,
            Self::ConfigurationAndSwHardeningNeeded,
            Self::OutOfDate,
            Self::OutOfDateConfigurationNeeded,
            Self::Revoked,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
        .ok_or(UnknownTcbStatus)
    }
}

/// A TCB status name that is not one of Intel's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown TCB status (expected UpToDate, SWHardeningNeeded, ConfigurationNeeded, ConfigurationAndSWHardeningNeeded, OutOfDate, OutOfDateConfigurationNeeded or Revoked)")]
pub struct UnknownTcbStatus;

impl fmt::Display for TcbStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the verifier records of one certificate in a verified chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSummary {
    /// Subject distinguished name (RFC 4514 string).
    pub subject: String,
    /// Serial number, big-endian bytes.
    pub serial: Vec<u8>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// SHA-256 of the DER encoding.
    pub sha256: [u8; 32],
}

/// Claims specific to one TEE, beyond the common ones.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformClaims {
    /// AWS Nitro Enclaves.
    Nitro {
        /// The issuing Nitro hypervisor module.
        module_id: String,
        /// The PCR digest function (always `SHA384` once verified).
        digest: String,
        /// When the NSM produced the document.
        timestamp: OffsetDateTime,
    },
    /// AMD SEV-SNP.
    Snp(Box<snp::SnpClaims>),
    /// Intel TDX.
    Tdx(Box<tdx::TdxClaims>),
}

/// Verified, normalized claims: authentic evidence, not yet appraised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedClaims {
    /// The TEE that produced the evidence.
    pub(crate) tee: TeeKind,
    /// Every measurement register present, in the TEE's own order.
    pub(crate) measurements: Vec<NamedMeasurement>,
    /// The data the workload bound into the evidence.
    pub(crate) bound: BoundData,
    /// Whether the TEE runs in a debug (inspectable) mode.
    pub(crate) debug: bool,
    /// The platform's TCB status; `None` where the TEE has no such notion (Nitro).
    pub(crate) tcb_status: Option<TcbStatus>,
    /// TEE-specific claims.
    pub(crate) platform: PlatformClaims,
    /// The verified chain, root first, leaf last.
    pub(crate) chain: Vec<CertificateSummary>,
    /// The instant the evidence was verified at (an input, never the clock).
    pub(crate) verified_at: OffsetDateTime,
    /// Whether a vendor root or a test root anchored the chain.
    pub(crate) trust: TrustKind,
    /// SHA-384 of the exact evidence bytes verified.
    pub(crate) evidence_sha384: [u8; 48],
    pub(crate) _verified: Verified,
}

/// Private token: only code in this crate can assemble [`VerifiedClaims`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verified;

/// Read-only: the fields are crate-private so that verified claims cannot
/// be edited after verification (a `VerifiedClaims` is proof of what the
/// evidence says, not a form to fill in).
impl VerifiedClaims {
    /// The TEE that produced the evidence.
    pub fn tee(&self) -> TeeKind {
        self.tee
    }
    /// Every measurement register present, in the TEE's own order.
    pub fn measurements(&self) -> &[NamedMeasurement] {
        &self.measurements
    }
    /// The data the workload bound into the evidence.
    pub fn bound(&self) -> &BoundData {
        &self.bound
    }
    /// Whether the TEE runs in a debug (inspectable) mode.
    pub fn debug(&self) -> bool {
        self.debug
    }
    /// The platform's TCB status; `None` where the TEE has no such notion (Nitro).
    pub fn tcb_status(&self) -> Option<TcbStatus> {
        self.tcb_status
    }
    /// TEE-specific claims.
    pub fn platform(&self) -> &PlatformClaims {
        &self.platform
    }
    /// The verified chain, root first, leaf last.
    pub fn chain(&self) -> &[CertificateSummary] {
        &self.chain
    }
    /// The instant the evidence was verified at (an input, never the clock).
    pub fn verified_at(&self) -> OffsetDateTime {
        self.verified_at
    }
    /// Whether a vendor root or a test root anchored the chain.
    pub fn trust(&self) -> TrustKind {
        self.trust
    }
    /// SHA-384 of the exact evidence bytes verified.
    pub fn evidence_sha384(&self) -> &[u8; 48] {
        &self.evidence_sha384
    }

    /// Looks a measurement up by name.
    pub fn measurement(&self, name: &str) -> Option<&Measurement> {
        self.measurements
            .iter()
            .find(|m| m.name == name)
            .map(|m| &m.value)
    }
}

#[cfg(test)]
impl VerifiedClaims {
    /// TDX claims for unit tests of appraisal: one `mrtd` register, the
    /// given debug flag (also in TDATTRIBUTES) and TCB status, no chain.
    pub(crate) fn for_test(mrtd: &[u8], debug: bool, tcb_status: Option<TcbStatus>) -> Self {
        let epoch = OffsetDateTime::UNIX_EPOCH;
        let status = tcb_status.unwrap_or(TcbStatus::UpToDate);
        Self {
            tee: TeeKind::Tdx,
            measurements: vec![NamedMeasurement {
                name: "mrtd".into(),
                value: Measurement::new(mrtd.to_vec()),
            }],
            bound: BoundData::default(),
            debug,
            tcb_status,
            platform: PlatformClaims::Tdx(Box::new(tdx::TdxClaims {
                quote_version: 4,
                td_attributes: tdx::TdAttributes::decode([u8::from(debug), 0, 0, 0, 0, 0, 0, 0]),
                xfam: [0; 8],
                tee_tcb_svn: [0; 16],
                seam_attributes: [0; 8],
                fmspc: [0; 6],
                pce_id: [0; 2],
                tcb_status: status,
                advisory_ids: Vec::new(),
                platform_tcb_status: status,
                tdx_module_tcb_status: None,
                qe_tcb_status: TcbStatus::UpToDate,
                tcb_date: epoch,
                tcb_evaluation_data_number: 0,
                collateral_valid_from: epoch,
                collateral_valid_until: epoch,
            })),
            chain: Vec::new(),
            verified_at: epoch,
            trust: TrustKind::TestRoot,
            evidence_sha384: [0; 48],
            _verified: Verified,
        }
    }
}
