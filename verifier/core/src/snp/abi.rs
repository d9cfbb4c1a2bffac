//! The SEV-SNP attestation report (AMD SEV-SNP firmware ABI, table
//! "ATTESTATION_REPORT"), 1184 bytes, little-endian. Offsets mirror the spec;
//! every must-be-zero range is checked.

use crate::claims::snp::SigningKey;
use crate::error::VerifyError;

/// Size of an attestation report.
pub const REPORT_LEN: usize = 0x4a0;
/// The signature covers bytes `[0, SIGNED_LEN)`.
pub(crate) const SIGNED_LEN: usize = 0x2a0;
/// SIGNATURE_ALGO value for ECDSA P-384 with SHA-384.
const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;

/// A parsed report: fields as raw bytes or integers, not yet authenticated.
#[derive(Debug, Clone)]
pub(crate) struct Report<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) version: u32,
    pub(crate) guest_svn: u32,
    pub(crate) policy: u64,
    pub(crate) family_id: [u8; 16],
    pub(crate) image_id: [u8; 16],
    pub(crate) vmpl: u32,
    pub(crate) current_tcb: u64,
    pub(crate) platform_info: u64,
    pub(crate) author_key_en: bool,
    pub(crate) mask_chip_key: bool,
    pub(crate) signing_key: SigningKey,
    pub(crate) report_data: [u8; 64],
    pub(crate) measurement: [u8; 48],
    pub(crate) host_data: [u8; 32],
    pub(crate) id_key_digest: [u8; 48],
    pub(crate) author_key_digest: [u8; 48],
    pub(crate) report_id: [u8; 32],
    pub(crate) reported_tcb: u64,
    /// (family, model, stepping) for version ≥ 3.
    pub(crate) cpuid: Option<(u8, u8, u8)>,
    pub(crate) chip_id: [u8; 64],
    pub(crate) committed_tcb: u64,
    pub(crate) launch_tcb: u64,
    /// (major, minor, build).
    pub(crate) current_version: (u8, u8, u8),
    pub(crate) committed_version: (u8, u8, u8),
    /// (launch, current) mitigation vectors, version ≥ 5.
    pub(crate) mit_vectors: Option<(u64, u64)>,
    /// ECDSA r ‖ s, big-endian, 48 bytes each.
    pub(crate) signature: [u8; 96],
}

fn arr<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = b.get(off..off + N) {
        out.copy_from_slice(src);
    }
    out
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(arr(b, off))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(arr(b, off))
}

fn must_be_zero(b: &[u8], from: usize, to: usize) -> Result<(), VerifyError> {
    match b.get(from..to) {
        Some(range) if range.iter().all(|x| *x == 0) => Ok(()),
        _ => Err(VerifyError::malformed(format!(
            "reserved report bytes {from:#x}..{to:#x} are not zero"
        ))),
    }
}

/// AMD's 72-byte little-endian signature component → 48 bytes big-endian;
/// the upper 24 bytes must be zero for P-384.
fn signature_component(b: &[u8], off: usize) -> Result<[u8; 48], VerifyError> {
    must_be_zero(b, off + 48, off + 72)?;
    let mut le: [u8; 48] = arr(b, off);
    le.reverse();
    Ok(le)
}

impl<'a> Report<'a> {
    /// Parses exactly one report.
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Self, VerifyError> {
        if bytes.len() != REPORT_LEN {
            // Callers split an extended report first; a short one lands here.
            return Err(VerifyError::malformed(format!(
                "an SEV-SNP report is {REPORT_LEN} bytes, found {}",
                bytes.len()
            )));
        }
        let b = bytes;
        let version = u32_at(b, 0x000);
        if !matches!(version, 2 | 3 | 5) {
            return Err(VerifyError::UnsupportedVersion {
                what: "SEV-SNP report",
                version,
            });
        }
        let sig_algo = u32_at(b, 0x034);
        if sig_algo != SIG_ALGO_ECDSA_P384_SHA384 {
            return Err(VerifyError::UnsupportedAlgorithm {
                found: format!("SIGNATURE_ALGO {sig_algo}"),
                expected: "ECDSA P-384 with SHA-384 (1)",
            });
        }
        let signer = u32_at(b, 0x048);
        if signer >> 5 != 0 {
            return Err(VerifyError::malformed("reserved signer-info bits are set"));
        }
        let signing_key = match (signer >> 2) & 0b111 {
            0 => SigningKey::Vcek,
            1 => SigningKey::Vlek,
            7 => {
                return Err(VerifyError::malformed(
                    "the report is unsigned (SIGNING_KEY = NONE)",
                ))
            }
            other => {
                return Err(VerifyError::malformed(format!(
                    "reserved SIGNING_KEY value {other}"
                )))
            }
        };
        let policy = u64_at(b, 0x008);
        if policy & (1 << 17) == 0 {
            return Err(VerifyError::malformed(
                "guest policy bit 17 (reserved, must be one) is zero",
            ));
        }
        if policy >> 26 != 0 {
            return Err(VerifyError::malformed(
                "reserved guest policy bits 63:26 are set",
            ));
        }
        must_be_zero(b, 0x04c, 0x050)?;
        let cpuid = if version >= 3 {
            must_be_zero(b, 0x18b, 0x1a0)?;
            Some((
                b.get(0x188).copied().unwrap_or(0),
                b.get(0x189).copied().unwrap_or(0),
                b.get(0x18a).copied().unwrap_or(0),
            ))
        } else {
            must_be_zero(b, 0x188, 0x1a0)?;
            None
        };
        must_be_zero(b, 0x1eb, 0x1ec)?;
        must_be_zero(b, 0x1ef, 0x1f0)?;
        let mit_vectors = if version >= 5 {
            must_be_zero(b, 0x208, SIGNED_LEN)?;
            Some((u64_at(b, 0x1f8), u64_at(b, 0x200)))
        } else {
            must_be_zero(b, 0x1f8, SIGNED_LEN)?;
            None
        };
        let r = signature_component(b, 0x2a0)?;
        let s = signature_component(b, 0x2e8)?;
        must_be_zero(b, 0x330, REPORT_LEN)?;
        let mut signature = [0u8; 96];
        signature[..48].copy_from_slice(&r);
        signature[48..].copy_from_slice(&s);
        let byte = |off: usize| b.get(off).copied().unwrap_or(0);

        Ok(Self {
            bytes,
            version,
            guest_svn: u32_at(b, 0x004),
            policy,
            family_id: arr(b, 0x010),
            image_id: arr(b, 0x020),
            vmpl: u32_at(b, 0x030),
            current_tcb: u64_at(b, 0x038),
            platform_info: u64_at(b, 0x040),
            author_key_en: signer & 1 == 1,
            mask_chip_key: signer & 2 == 2,
            signing_key,
            report_data: arr(b, 0x050),
            measurement: arr(b, 0x090),
            host_data: arr(b, 0x0c0),
            id_key_digest: arr(b, 0x0e0),
            author_key_digest: arr(b, 0x110),
            report_id: arr(b, 0x140),
            reported_tcb: u64_at(b, 0x180),
            cpuid,
            chip_id: arr(b, 0x1a0),
            committed_tcb: u64_at(b, 0x1e0),
            current_version: (byte(0x1ea), byte(0x1e9), byte(0x1e8)),
            committed_version: (byte(0x1ee), byte(0x1ed), byte(0x1ec)),
            launch_tcb: u64_at(b, 0x1f0),
            mit_vectors,
            signature,
        })
    }

    /// The signed bytes.
    pub(crate) fn signed(&self) -> &[u8] {
        self.bytes.get(..SIGNED_LEN).unwrap_or_default()
    }

    /// Guest policy DEBUG (bit 19).
    pub(crate) fn debug_allowed(&self) -> bool {
        self.policy & (1 << 19) != 0
    }
}
