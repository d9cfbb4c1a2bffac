//! SEV-SNP claims: what an authenticated attestation report says, decoded.
//!
//! These are value types only (no parsing of evidence, no verification), so
//! that [`crate::claims::PlatformClaims`] can name them without the claims
//! module depending on the SNP verifier; `crate::snp` re-exports them under
//! their old paths.

mod tcb;

pub use tcb::{Product, Tcb};

/// Which key signed the report (SIGNING_KEY, bits 4:2 at 0x48).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningKey {
    /// Versioned Chip Endorsement Key.
    Vcek,
    /// Versioned Loaded Endorsement Key (cloud-provider key).
    Vlek,
}

impl SigningKey {
    /// `vcek` or `vlek`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vcek => "vcek",
            Self::Vlek => "vlek",
        }
    }
}

/// Guest policy bits (SNP ABI), bit number → name.
pub const POLICY_BITS: [(u32, &str); 10] = [
    (16, "smt"),
    (18, "migrate_ma"),
    (19, "debug"),
    (20, "single_socket"),
    (21, "cxl_allow"),
    (22, "mem_aes_256_xts"),
    (23, "rapl_dis"),
    (24, "ciphertext_hiding"),
    (25, "page_swap_disable"),
    (17, "reserved_must_be_one"),
];

/// PLATFORM_INFO bits, bit number → name.
pub const PLATFORM_INFO_BITS: [(u32, &str); 7] = [
    (0, "smt_en"),
    (1, "tsme_en"),
    (2, "ecc_en"),
    (3, "rapl_dis"),
    (4, "ciphertext_hiding_dram_en"),
    (5, "alias_check_complete"),
    (7, "tio_en"),
];

/// Everything an SEV-SNP report says, decoded, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpClaims {
    /// The processor product.
    pub product: Product,
    /// Report format version (2, 3 or 5).
    pub report_version: u32,
    /// VCEK or VLEK.
    pub signing_key: SigningKey,
    /// GUEST_SVN.
    pub guest_svn: u32,
    /// Guest policy, raw (see [`POLICY_BITS`]; ABI major/minor in bits 15:8 / 7:0).
    pub policy: u64,
    /// VMPL the report was requested at.
    pub vmpl: u32,
    /// PLATFORM_INFO, raw (see [`PLATFORM_INFO_BITS`]).
    pub platform_info: u64,
    /// CURRENT_TCB.
    pub current_tcb: Tcb,
    /// REPORTED_TCB (the one the VCEK certifies).
    pub reported_tcb: Tcb,
    /// COMMITTED_TCB.
    pub committed_tcb: Tcb,
    /// LAUNCH_TCB.
    pub launch_tcb: Tcb,
    /// HOST_DATA.
    pub host_data: [u8; 32],
    /// ID_KEY_DIGEST.
    pub id_key_digest: [u8; 48],
    /// AUTHOR_KEY_DIGEST.
    pub author_key_digest: [u8; 48],
    /// AUTHOR_KEY_EN.
    pub author_key_en: bool,
    /// FAMILY_ID.
    pub family_id: [u8; 16],
    /// IMAGE_ID.
    pub image_id: [u8; 16],
    /// REPORT_ID.
    pub report_id: [u8; 32],
    /// CHIP_ID.
    pub chip_id: [u8; 64],
    /// CPUID family, model, stepping (version ≥ 3).
    pub cpuid: Option<(u8, u8, u8)>,
    /// Firmware version (major, minor, build) running now.
    pub current_firmware: (u8, u8, u8),
    /// Committed firmware version (major, minor, build).
    pub committed_firmware: (u8, u8, u8),
    /// (launch, current) mitigation vectors (version ≥ 5).
    pub mitigation_vectors: Option<(u64, u64)>,
    /// The VLEK's cloud-provider ID, if signed by a VLEK.
    pub csp_id: Option<String>,
    /// Whether an AMD CRL was supplied and checked (the CRL is optional
    /// collateral; relying parties that need revocation must require this).
    pub revocation_checked: bool,
}
