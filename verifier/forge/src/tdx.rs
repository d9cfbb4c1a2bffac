//! Forged Intel TDX DCAP quotes (v4 with a TD 1.0 body, v5 with a TD 1.5
//! body) and their collateral (TCB info, QE identity, CRLs and issuer
//! chains) under the project-made Intel-shaped test PKI of [`crate::intel`].
//!
//! Quote layout (all integers little-endian): 48-byte header; in v5 a body
//! descriptor (type u16, size u32); the TD report body; u32 signature-data
//! length; signature data = quote signature (r ‖ s) ‖ attestation key (x ‖ y)
//! ‖ certification data type 6 (u16) ‖ size (u32) ‖ QE report (384) ‖ QE
//! report signature (r ‖ s) ‖ auth-data size (u16) ‖ auth data ‖
//! certification data type 5 (u16) ‖ size (u32) ‖ PEM chain (PCK leaf,
//! Platform CA, root) ‖ NUL.

use sha2::{Digest, Sha256, Sha384, Sha512};
use time::format_description::BorrowedFormatItem;
use time::macros::{datetime, format_description};
use time::{Duration, OffsetDateTime};

use crate::intel::{
    self, collateral_window, err, IntelPkiError, Pki, PlatformSpec, DEFAULT_PCESVN,
    DEFAULT_SGX_SVNS,
};
use crate::keys::TestKeyP256;
use crate::nitro::FORGE_INSTANT;

/// Intel's QE vendor ID.
pub const QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];
/// Attestation key type ECDSA-256-with-P-256.
pub const ATT_KEY_TYPE_ECDSA_P256: u16 = 2;
/// TEE type of TDX.
pub const TEE_TYPE_TDX: u32 = 0x81;
/// Header length.
pub const HEADER_LEN: usize = 48;
/// TD 1.0 report body length.
pub const TD10_BODY_LEN: usize = 584;
/// TD 1.5 report body length.
pub const TD15_BODY_LEN: usize = 648;
/// SGX report body (QE report) length.
pub const QE_REPORT_LEN: usize = 384;
/// Offset of RTMR0 within the TD report body (RTMRn at `+ 48 n`).
pub const RTMR_OFFSET: usize = 328;
/// Offset of REPORTDATA within the TD report body.
pub const REPORT_DATA_OFFSET: usize = 520;
/// Key label of the default attestation key.
pub const ATTESTATION_KEY_LABEL: &str = "tdx-test-attestation-key";
/// TDATTRIBUTES bit 0 (byte 0): the TD is debuggable.
pub const TD_ATTRIBUTES_DEBUG: u8 = 0x01;

/// The default QE's MRSIGNER (the QE identity's `mrsigner`).
pub fn qe_mrsigner() -> [u8; 32] {
    Sha256::digest(b"attest-gate test QE signer").into()
}

fn sha384(label: &str) -> [u8; 48] {
    Sha384::digest(label.as_bytes()).into()
}

/// The QE's SGX report body (the QE report the PCK key signs).
#[derive(Debug, Clone)]
pub struct QeReportSpec {
    /// CPUSVN (@0).
    pub cpusvn: [u8; 16],
    /// MISCSELECT (@16, u32 LE).
    pub miscselect: u32,
    /// ATTRIBUTES (@48).
    pub attributes: [u8; 16],
    /// MRENCLAVE (@64).
    pub mrenclave: [u8; 32],
    /// MRSIGNER (@128).
    pub mrsigner: [u8; 32],
    /// ISVPRODID (@256, u16 LE).
    pub isvprodid: u16,
    /// ISVSVN (@258, u16 LE).
    pub isvsvn: u16,
}

impl Default for QeReportSpec {
    /// The TD QE the default QE identity describes, at its UpToDate ISVSVN.
    fn default() -> Self {
        let mut attributes = [0u8; 16];
        attributes[0] = 0x11;
        Self {
            cpusvn: DEFAULT_SGX_SVNS,
            miscselect: 0,
            attributes,
            mrenclave: Sha256::digest(b"attest-gate test TD QE").into(),
            mrsigner: qe_mrsigner(),
            isvprodid: 2,
            isvsvn: 4,
        }
    }
}

impl QeReportSpec {
    /// The 384-byte report body carrying `report_data` (@320).
    pub fn body(&self, report_data: &[u8; 64]) -> Vec<u8> {
        let mut r = vec![0u8; QE_REPORT_LEN];
        put(&mut r, 0, &self.cpusvn);
        put(&mut r, 16, &self.miscselect.to_le_bytes());
        put(&mut r, 48, &self.attributes);
        put(&mut r, 64, &self.mrenclave);
        put(&mut r, 128, &self.mrsigner);
        put(&mut r, 256, &self.isvprodid.to_le_bytes());
        put(&mut r, 258, &self.isvsvn.to_le_bytes());
        put(&mut r, 320, report_data);
        r
    }
}

fn put(buf: &mut [u8], off: usize, bytes: &[u8]) {
    if let Some(slot) = buf.get_mut(off..off + bytes.len()) {
        slot.copy_from_slice(bytes);
    }
}

/// The fields of a quote to forge, and how to sign it.
#[derive(Debug, Clone)]
pub struct QuoteSpec {
    /// 4 (TD 1.0 body) or 5 (body descriptor, TD 1.5 body).
    pub version: u16,
    /// Header QE SVN.
    pub qe_svn: u16,
    /// Header PCE SVN.
    pub pce_svn: u16,
    /// Header user data.
    pub user_data: [u8; 20],
    /// TEE_TCB_SVN.
    pub tee_tcb_svn: [u8; 16],
    /// MRSEAM.
    pub mr_seam: [u8; 48],
    /// MRSIGNERSEAM.
    pub mr_signer_seam: [u8; 48],
    /// SEAMATTRIBUTES.
    pub seam_attributes: [u8; 8],
    /// TDATTRIBUTES (byte 0 bit 0: DEBUG).
    pub td_attributes: [u8; 8],
    /// XFAM.
    pub xfam: [u8; 8],
    /// MRTD.
    pub mr_td: [u8; 48],
    /// MRCONFIGID.
    pub mr_config_id: [u8; 48],
    /// MROWNER.
    pub mr_owner: [u8; 48],
    /// MROWNERCONFIG.
    pub mr_owner_config: [u8; 48],
    /// RTMR0–3.
    pub rtmr: [[u8; 48]; 4],
    /// REPORTDATA.
    pub report_data: [u8; 64],
    /// TEE_TCB_SVN2 (v5 / TD 1.5 only).
    pub tee_tcb_svn2: [u8; 16],
    /// MRSERVICETD (v5 / TD 1.5 only).
    pub mr_service_td: [u8; 48],
    /// The QE report.
    pub qe_report: QeReportSpec,
    /// QE authentication data (Intel's QE: the 32 bytes 0..31).
    pub qe_auth_data: Vec<u8>,
    /// Key label of the attestation key.
    pub attestation_key: String,
    /// Sign the QE report with this key label instead of the PCK key.
    pub qe_report_signer: Option<String>,
    /// Put a wrong hash in the QE report's REPORT_DATA (still PCK-signed).
    pub break_qe_binding: bool,
    /// Bytes appended after the signature data (real quotes carry zero padding).
    pub trailing: Vec<u8>,
}

/// The default TEE_TCB_SVN: TDX module SVN 5, module version 0 (so no
/// module identity is consulted), late microcode SVN 3.
pub const DEFAULT_TEE_TCB_SVN: [u8; 16] = [5, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

impl Default for QuoteSpec {
    /// A v4, non-debug quote of the default platform: its TCB matches the
    /// default TCB info's UpToDate level, its QE the default QE identity.
    fn default() -> Self {
        let mut report_data = [0u8; 64];
        report_data.copy_from_slice(&Sha512::digest(b"attest-gate test TD report data"));
        let mut user_data = [0u8; 20];
        for (o, b) in user_data
            .iter_mut()
            .zip(Sha256::digest(b"attest-gate test QE user data"))
        {
            *o = b;
        }
        Self {
            version: 4,
            qe_svn: 4,
            pce_svn: DEFAULT_PCESVN,
            user_data,
            tee_tcb_svn: DEFAULT_TEE_TCB_SVN,
            mr_seam: sha384("attest-gate test TDX module"),
            mr_signer_seam: [0; 48],
            seam_attributes: [0; 8],
            td_attributes: [0, 0, 0, 0x10, 0, 0, 0, 0],
            xfam: [0xe7, 0x02, 0x06, 0, 0, 0, 0, 0],
            mr_td: sha384("attest-gate test TD"),
            mr_config_id: [0; 48],
            mr_owner: [0; 48],
            mr_owner_config: [0; 48],
            rtmr: [
                sha384("attest-gate test RTMR0"),
                sha384("attest-gate test RTMR1"),
                sha384("attest-gate test RTMR2"),
                [0; 48],
            ],
            report_data,
            tee_tcb_svn2: DEFAULT_TEE_TCB_SVN,
            mr_service_td: [0; 48],
            qe_report: QeReportSpec::default(),
            qe_auth_data: (0..32).collect(),
            attestation_key: ATTESTATION_KEY_LABEL.into(),
            qe_report_signer: None,
            break_qe_binding: false,
            trailing: Vec::new(),
        }
    }
}

impl QuoteSpec {
    /// The default (valid) quote.
    pub fn valid() -> Self {
        Self::default()
    }

    /// A valid v5 quote with a TD 1.5 body (TEE_TCB_SVN2 = TEE_TCB_SVN).
    pub fn v5() -> Self {
        Self {
            version: 5,
            ..Self::default()
        }
    }

    /// Offset of the TD report body in the quote (after the v5 descriptor).
    pub fn body_offset(&self) -> usize {
        if self.version == 5 {
            HEADER_LEN + 6
        } else {
            HEADER_LEN
        }
    }

    /// The attestation key.
    pub fn attestation_key(&self) -> TestKeyP256 {
        TestKeyP256::new(&self.attestation_key)
    }

    /// Header, body descriptor (v5) and TD report: the bytes the
    /// attestation key signs.
    pub fn signed_part(&self) -> Vec<u8> {
        let mut q = Vec::with_capacity(HEADER_LEN + 6 + TD15_BODY_LEN);
        q.extend_from_slice(&self.version.to_le_bytes());
        q.extend_from_slice(&ATT_KEY_TYPE_ECDSA_P256.to_le_bytes());
        q.extend_from_slice(&TEE_TYPE_TDX.to_le_bytes());
        q.extend_from_slice(&self.qe_svn.to_le_bytes());
        q.extend_from_slice(&self.pce_svn.to_le_bytes());
        q.extend_from_slice(&QE_VENDOR_ID);
        q.extend_from_slice(&self.user_data);
        let td15 = self.version == 5;
        if td15 {
            q.extend_from_slice(&3u16.to_le_bytes());
            q.extend_from_slice(&(TD15_BODY_LEN as u32).to_le_bytes());
        }
        for part in [
            &self.tee_tcb_svn[..],
            &self.mr_seam,
            &self.mr_signer_seam,
            &self.seam_attributes,
            &self.td_attributes,
            &self.xfam,
            &self.mr_td,
            &self.mr_config_id,
            &self.mr_owner,
            &self.mr_owner_config,
        ] {
            q.extend_from_slice(part);
        }
        for rtmr in &self.rtmr {
            q.extend_from_slice(rtmr);
        }
        q.extend_from_slice(&self.report_data);
        if td15 {
            q.extend_from_slice(&self.tee_tcb_svn2);
            q.extend_from_slice(&self.mr_service_td);
        }
        q
    }

    /// The QE report's REPORT_DATA: SHA-256(attestation key ‖ auth data),
    /// zero-extended (one bit off with [`Self::break_qe_binding`]).
    pub fn qe_report_data(&self) -> [u8; 64] {
        let mut h = Sha256::new();
        h.update(self.attestation_key().public_raw());
        h.update(&self.qe_auth_data);
        let mut data = [0u8; 64];
        put(&mut data, 0, &h.finalize());
        if self.break_qe_binding {
            data[0] ^= 0x01;
        }
        data
    }

    /// The quote signed under `pki`: the attestation key signs header and
    /// body, the PCK key (or [`Self::qe_report_signer`]) the QE report.
    pub fn sign(&self, pki: &Pki) -> Vec<u8> {
        let signed = self.signed_part();
        let att_key = self.attestation_key();
        let qe_report = self.qe_report.body(&self.qe_report_data());
        let qe_signature = match &self.qe_report_signer {
            Some(label) => TestKeyP256::new(label).sign_fixed(&qe_report),
            None => pki.pck_key.sign_fixed(&qe_report),
        };
        let mut chain = pki.pck_chain_pem().into_bytes();
        chain.push(0);

        let mut cert = qe_report;
        cert.extend_from_slice(&qe_signature);
        cert.extend_from_slice(&len16(self.qe_auth_data.len()).to_le_bytes());
        cert.extend_from_slice(&self.qe_auth_data);
        cert.extend_from_slice(&5u16.to_le_bytes());
        cert.extend_from_slice(&len32(chain.len()).to_le_bytes());
        cert.extend_from_slice(&chain);

        let mut sig_data = att_key.sign_fixed(&signed);
        sig_data.extend_from_slice(&att_key.public_raw());
        sig_data.extend_from_slice(&6u16.to_le_bytes());
        sig_data.extend_from_slice(&len32(cert.len()).to_le_bytes());
        sig_data.extend_from_slice(&cert);

        let mut quote = signed;
        quote.extend_from_slice(&len32(sig_data.len()).to_le_bytes());
        quote.extend_from_slice(&sig_data);
        quote.extend_from_slice(&self.trailing);
        quote
    }
}

fn len16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// One TCB level of a QE identity or TDX module identity.
#[derive(Debug, Clone)]
pub struct IsvLevel {
    /// `tcb.isvsvn`.
    pub isvsvn: u16,
    /// `tcbDate`.
    pub tcb_date: OffsetDateTime,
    /// `tcbStatus` (`UpToDate`, `OutOfDate`, `Revoked`, …).
    pub status: String,
    /// `advisoryIDs` (omitted when empty).
    pub advisory_ids: Vec<String>,
}

impl IsvLevel {
    /// A level without advisories.
    pub fn new(isvsvn: u16, tcb_date: OffsetDateTime, status: &str) -> Self {
        Self {
            isvsvn,
            tcb_date,
            status: status.into(),
            advisory_ids: Vec::new(),
        }
    }

    fn json(&self) -> Result<String, IntelPkiError> {
        Ok(format!(
            r#"{{"tcb":{{"isvsvn":{}}},"tcbDate":"{}","tcbStatus":"{}"{}}}"#,
            self.isvsvn,
            date(self.tcb_date)?,
            self.status,
            advisories(&self.advisory_ids)
        ))
    }
}

/// A platform TCB level of a TDX TCB info.
#[derive(Debug, Clone)]
pub struct TcbLevel {
    /// `sgxtcbcomponents[].svn`.
    pub sgx: [u8; 16],
    /// `pcesvn`.
    pub pcesvn: u16,
    /// `tdxtcbcomponents[].svn`.
    pub tdx: [u8; 16],
    /// `tcbDate`.
    pub tcb_date: OffsetDateTime,
    /// `tcbStatus`.
    pub status: String,
    /// `advisoryIDs` (omitted when empty).
    pub advisory_ids: Vec<String>,
}

/// `category` / `type` of the SGX components, as Intel annotates them.
const SGX_COMPONENT_NAMES: [(usize, &str, Option<&str>); 7] = [
    (0, "BIOS", Some("Early Microcode Update")),
    (1, "OS/VMM", Some("SGX Late Microcode Update")),
    (2, "OS/VMM", Some("TXT SINIT")),
    (3, "BIOS", None),
    (4, "BIOS", None),
    (5, "BIOS", None),
    (7, "OS/VMM", Some("SEAMLDR ACM")),
];
/// `category` / `type` of the TDX components.
const TDX_COMPONENT_NAMES: [(usize, &str, Option<&str>); 3] = [
    (0, "OS/VMM", Some("TDX Module")),
    (1, "OS/VMM", Some("TDX Module")),
    (2, "OS/VMM", Some("TDX Late Microcode Update")),
];

fn components(svns: &[u8; 16], names: &[(usize, &str, Option<&str>)]) -> String {
    let items: Vec<String> = svns
        .iter()
        .enumerate()
        .map(|(i, svn)| match names.iter().find(|(at, _, _)| *at == i) {
            Some((_, category, Some(kind))) => {
                format!(r#"{{"svn":{svn},"category":"{category}","type":"{kind}"}}"#)
            }
            Some((_, category, None)) => format!(r#"{{"svn":{svn},"category":"{category}"}}"#),
            None => format!(r#"{{"svn":{svn}}}"#),
        })
        .collect();
    format!("[{}]", items.join(","))
}

impl TcbLevel {
    /// A level without advisories.
    pub fn new(
        sgx: [u8; 16],
        pcesvn: u16,
        tdx: [u8; 16],
        tcb_date: OffsetDateTime,
        status: &str,
    ) -> Self {
        Self {
            sgx,
            pcesvn,
            tdx,
            tcb_date,
            status: status.into(),
            advisory_ids: Vec::new(),
        }
    }

    /// The same level with `advisoryIDs`.
    pub fn with_advisories(self, ids: &[&str]) -> Self {
        Self {
            advisory_ids: ids.iter().map(|s| s.to_string()).collect(),
            ..self
        }
    }

    fn json(&self) -> Result<String, IntelPkiError> {
        Ok(format!(
            r#"{{"tcb":{{"sgxtcbcomponents":{},"pcesvn":{},"tdxtcbcomponents":{}}},"tcbDate":"{}","tcbStatus":"{}"{}}}"#,
            components(&self.sgx, &SGX_COMPONENT_NAMES),
            self.pcesvn,
            components(&self.tdx, &TDX_COMPONENT_NAMES),
            date(self.tcb_date)?,
            self.status,
            advisories(&self.advisory_ids)
        ))
    }
}

/// A TDX module identity (`tdxModuleIdentities[]`).
#[derive(Debug, Clone)]
pub struct ModuleIdentity {
    /// `id`: `TDX_` and the module version TEE_TCB_SVN[1] as two upper-case hex digits.
    pub id: String,
    /// `mrsigner` (matched against MRSIGNERSEAM).
    pub mrsigner: [u8; 48],
    /// `attributes` (matched against SEAMATTRIBUTES under the mask).
    pub attributes: [u8; 8],
    /// `attributesMask`.
    pub attributes_mask: [u8; 8],
    /// `tcbLevels`, matched with isvsvn = TEE_TCB_SVN[0].
    pub levels: Vec<IsvLevel>,
}

impl ModuleIdentity {
    /// `TDX_<version>` with a zero MRSIGNER and attributes, all-ones mask.
    pub fn new(version: u8, levels: Vec<IsvLevel>) -> Self {
        Self {
            id: format!("TDX_{version:02X}"),
            mrsigner: [0; 48],
            attributes: [0; 8],
            attributes_mask: [0xff; 8],
            levels,
        }
    }

    fn json(&self) -> Result<String, IntelPkiError> {
        let levels = self
            .levels
            .iter()
            .map(IsvLevel::json)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(format!(
            r#"{{"id":"{}","mrsigner":"{}","attributes":"{}","attributesMask":"{}","tcbLevels":[{}]}}"#,
            self.id,
            upper_hex(&self.mrsigner),
            upper_hex(&self.attributes),
            upper_hex(&self.attributes_mask),
            levels.join(",")
        ))
    }
}

/// `tcb_info.json` for TDX (TCB info version 3).
#[derive(Debug, Clone)]
pub struct TcbInfoSpec {
    /// `fmspc`.
    pub fmspc: [u8; 6],
    /// `pceId`.
    pub pce_id: [u8; 2],
    /// `issueDate`, `nextUpdate`.
    pub window: (OffsetDateTime, OffsetDateTime),
    /// `tcbEvaluationDataNumber`.
    pub tcb_evaluation_data_number: u32,
    /// `tdxModule.mrsigner`.
    pub module_mrsigner: [u8; 48],
    /// `tdxModule.attributes`.
    pub module_attributes: [u8; 8],
    /// `tdxModule.attributesMask`.
    pub module_attributes_mask: [u8; 8],
    /// `tdxModuleIdentities` (the key is omitted when empty).
    pub module_identities: Vec<ModuleIdentity>,
    /// `tcbLevels`, highest first.
    pub levels: Vec<TcbLevel>,
    /// After signing, replace the first occurrence of `.0` in the serialized
    /// `tcbInfo` value with `.1` (the signature then no longer verifies).
    pub edit_after_signing: Option<(String, String)>,
}

/// A window that ended before [`FORGE_INSTANT`].
pub fn expired_window() -> (OffsetDateTime, OffsetDateTime) {
    (
        FORGE_INSTANT - Duration::days(60),
        FORGE_INSTANT - Duration::days(30),
    )
}

/// The TCB date of the UpToDate levels.
pub const LATEST_TCB_DATE: OffsetDateTime = datetime!(2024-11-13 00:00:00 UTC);

/// SGX SVNs of the default TCB info's OutOfDate level (and only that one).
pub const OUT_OF_DATE_SGX_SVNS: [u8; 16] = [2, 2, 2, 2, 3, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0];
/// SGX SVNs of the default TCB info's Revoked level.
pub const REVOKED_SGX_SVNS: [u8; 16] = [1, 1, 1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
/// PCESVN of the default TCB info's Revoked level.
pub const REVOKED_PCESVN: u16 = 5;
/// TEE_TCB_SVN that matches the default TCB info's SWHardeningNeeded level.
pub const SW_HARDENING_TEE_TCB_SVN: [u8; 16] = [5, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

impl Default for TcbInfoSpec {
    /// The default platform's TCB info: UpToDate for the default platform and
    /// quote, then SWHardeningNeeded (late microcode SVN 2), OutOfDate (older
    /// SGX components) and Revoked (older still) levels; module identities
    /// `TDX_03` (isvsvn 3 UpToDate) and `TDX_01`.
    fn default() -> Self {
        let tdx = |svn0: u8, svn2: u8| {
            let mut t = [0u8; 16];
            t[0] = svn0;
            t[2] = svn2;
            t
        };
        Self {
            fmspc: intel::DEFAULT_FMSPC,
            pce_id: [0, 0],
            window: collateral_window(),
            tcb_evaluation_data_number: 17,
            module_mrsigner: [0; 48],
            module_attributes: [0; 8],
            module_attributes_mask: [0xff; 8],
            module_identities: vec![
                ModuleIdentity::new(3, vec![IsvLevel::new(3, LATEST_TCB_DATE, "UpToDate")]),
                ModuleIdentity::new(
                    1,
                    vec![
                        IsvLevel::new(6, LATEST_TCB_DATE, "UpToDate"),
                        IsvLevel {
                            advisory_ids: vec!["INTEL-SA-00002".into()],
                            ..IsvLevel::new(4, datetime!(2024-03-13 00:00:00 UTC), "OutOfDate")
                        },
                    ],
                ),
            ],
            levels: vec![
                TcbLevel::new(
                    DEFAULT_SGX_SVNS,
                    DEFAULT_PCESVN,
                    DEFAULT_TEE_TCB_SVN,
                    LATEST_TCB_DATE,
                    "UpToDate",
                ),
                TcbLevel::new(
                    DEFAULT_SGX_SVNS,
                    DEFAULT_PCESVN,
                    tdx(5, 2),
                    datetime!(2024-08-14 00:00:00 UTC),
                    "SWHardeningNeeded",
                )
                .with_advisories(&["INTEL-SA-00001"]),
                TcbLevel::new(
                    OUT_OF_DATE_SGX_SVNS,
                    DEFAULT_PCESVN,
                    tdx(5, 2),
                    datetime!(2024-03-13 00:00:00 UTC),
                    "OutOfDate",
                )
                .with_advisories(&["INTEL-SA-00002"]),
                TcbLevel::new(
                    REVOKED_SGX_SVNS,
                    REVOKED_PCESVN,
                    tdx(1, 1),
                    datetime!(2018-01-04 00:00:00 UTC),
                    "Revoked",
                )
                .with_advisories(&["INTEL-SA-00003"]),
            ],
            edit_after_signing: None,
        }
    }
}

impl TcbInfoSpec {
    /// The serialized `tcbInfo` value: the exact bytes the signature covers.
    pub fn tcb_info_value(&self) -> Result<String, IntelPkiError> {
        let identities = if self.module_identities.is_empty() {
            String::new()
        } else {
            let ids = self
                .module_identities
                .iter()
                .map(ModuleIdentity::json)
                .collect::<Result<Vec<_>, _>>()?;
            format!(r#","tdxModuleIdentities":[{}]"#, ids.join(","))
        };
        let levels = self
            .levels
            .iter()
            .map(TcbLevel::json)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(format!(
            concat!(
                r#"{{"id":"TDX","version":3,"issueDate":"{}","nextUpdate":"{}","fmspc":"{}","pceId":"{}","tcbType":0,"tcbEvaluationDataNumber":{},"#,
                r#""tdxModule":{{"mrsigner":"{}","attributes":"{}","attributesMask":"{}"}}{},"tcbLevels":[{}]}}"#
            ),
            date(self.window.0)?,
            date(self.window.1)?,
            upper_hex(&self.fmspc),
            upper_hex(&self.pce_id),
            self.tcb_evaluation_data_number,
            upper_hex(&self.module_mrsigner),
            upper_hex(&self.module_attributes),
            upper_hex(&self.module_attributes_mask),
            identities,
            levels.join(",")
        ))
    }

    /// `tcb_info.json`, signed by `key` (the TCB signing key).
    pub fn sign(&self, key: &TestKeyP256) -> Result<Vec<u8>, IntelPkiError> {
        Ok(signed_json(
            "tcbInfo",
            self.tcb_info_value()?,
            key,
            self.edit_after_signing.as_ref(),
        ))
    }
}

/// `qe_identity.json` of the TD QE (enclave identity version 2).
#[derive(Debug, Clone)]
pub struct QeIdentitySpec {
    /// `issueDate`, `nextUpdate`.
    pub window: (OffsetDateTime, OffsetDateTime),
    /// `tcbEvaluationDataNumber`.
    pub tcb_evaluation_data_number: u32,
    /// `miscselect` (hex of the little-endian u32, as the QE report carries it).
    pub miscselect: u32,
    /// `miscselectMask`.
    pub miscselect_mask: u32,
    /// `attributes` (compared byte-wise with the QE report's ATTRIBUTES).
    pub attributes: [u8; 16],
    /// `attributesMask`.
    pub attributes_mask: [u8; 16],
    /// `mrsigner`.
    pub mrsigner: [u8; 32],
    /// `isvprodid`.
    pub isvprodid: u16,
    /// `tcbLevels`, highest first.
    pub levels: Vec<IsvLevel>,
    /// After signing, replace the first occurrence of `.0` in the serialized
    /// `enclaveIdentity` value with `.1` (the signature then no longer verifies).
    pub edit_after_signing: Option<(String, String)>,
}

/// The default QE identity's OutOfDate ISVSVN (any QE ISVSVN in 2..4 matches it).
pub const QE_OUT_OF_DATE_ISVSVN: u16 = 2;

impl Default for QeIdentitySpec {
    /// The TD QE of [`QeReportSpec::default`]: ISVSVN 4 UpToDate, 2 OutOfDate.
    fn default() -> Self {
        let mut attributes = [0u8; 16];
        attributes[0] = 0x11;
        let mut attributes_mask = [0u8; 16];
        attributes_mask[0] = 0xfb;
        for b in attributes_mask.iter_mut().take(8).skip(1) {
            *b = 0xff;
        }
        Self {
            window: collateral_window(),
            tcb_evaluation_data_number: 17,
            miscselect: 0,
            miscselect_mask: 0xffff_ffff,
            attributes,
            attributes_mask,
            mrsigner: qe_mrsigner(),
            isvprodid: 2,
            levels: vec![
                IsvLevel::new(4, LATEST_TCB_DATE, "UpToDate"),
                IsvLevel {
                    advisory_ids: vec!["INTEL-SA-00002".into()],
                    ..IsvLevel::new(
                        QE_OUT_OF_DATE_ISVSVN,
                        datetime!(2024-03-13 00:00:00 UTC),
                        "OutOfDate",
                    )
                },
            ],
            edit_after_signing: None,
        }
    }
}

impl QeIdentitySpec {
    /// The serialized `enclaveIdentity` value: the exact bytes signed.
    pub fn identity_value(&self) -> Result<String, IntelPkiError> {
        let levels = self
            .levels
            .iter()
            .map(IsvLevel::json)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(format!(
            concat!(
                r#"{{"id":"TD_QE","version":2,"issueDate":"{}","nextUpdate":"{}","tcbEvaluationDataNumber":{},"#,
                r#""miscselect":"{}","miscselectMask":"{}","attributes":"{}","attributesMask":"{}","#,
                r#""mrsigner":"{}","isvprodid":{},"tcbLevels":[{}]}}"#
            ),
            date(self.window.0)?,
            date(self.window.1)?,
            self.tcb_evaluation_data_number,
            upper_hex(&self.miscselect.to_le_bytes()),
            upper_hex(&self.miscselect_mask.to_le_bytes()),
            upper_hex(&self.attributes),
            upper_hex(&self.attributes_mask),
            upper_hex(&self.mrsigner),
            self.isvprodid,
            levels.join(",")
        ))
    }

    /// `qe_identity.json`, signed by `key` (the TCB signing key).
    pub fn sign(&self, key: &TestKeyP256) -> Result<Vec<u8>, IntelPkiError> {
        Ok(signed_json(
            "enclaveIdentity",
            self.identity_value()?,
            key,
            self.edit_after_signing.as_ref(),
        ))
    }
}

/// `{"<name>":<value>,"signature":"<hex r ‖ s>"}`, the signature over the
/// exact bytes of `value` (before any edit).
fn signed_json(
    name: &str,
    value: String,
    key: &TestKeyP256,
    edit: Option<&(String, String)>,
) -> Vec<u8> {
    let signature = key.sign_fixed(value.as_bytes());
    let value = match edit {
        Some((from, to)) => value.replacen(from.as_str(), to, 1),
        None => value,
    };
    format!(
        r#"{{"{name}":{value},"signature":"{}"}}"#,
        lower_hex(&signature)
    )
    .into_bytes()
}

/// Collateral files by name.
pub type Collateral = Vec<(String, Vec<u8>)>;

/// The collateral folder's files: `tcb_info.json`,
/// `tcb_info_issuer_chain.pem`, `qe_identity.json`,
/// `qe_identity_issuer_chain.pem`, `pck_crl.der`, `pck_crl_issuer_chain.pem`,
/// `root_ca_crl.der`.
pub fn collateral(
    pki: &Pki,
    tcb_info: &TcbInfoSpec,
    qe_identity: &QeIdentitySpec,
) -> Result<Collateral, IntelPkiError> {
    let chain = pki.tcb_issuer_chain_pem().into_bytes();
    Ok(vec![
        ("tcb_info.json".into(), tcb_info.sign(&pki.tcb_signing_key)?),
        ("tcb_info_issuer_chain.pem".into(), chain.clone()),
        (
            "qe_identity.json".into(),
            qe_identity.sign(&pki.tcb_signing_key)?,
        ),
        ("qe_identity_issuer_chain.pem".into(), chain),
        ("pck_crl.der".into(), pki.pck_crl.clone()),
        (
            "pck_crl_issuer_chain.pem".into(),
            pki.pck_crl_issuer_chain_pem().into_bytes(),
        ),
        ("root_ca_crl.der".into(), pki.root_ca_crl.clone()),
    ])
}

/// Everything one forged TDX sample is made of.
#[derive(Debug, Clone, Default)]
pub struct TdxSpec {
    /// The platform and its PKI.
    pub platform: PlatformSpec,
    /// The quote.
    pub quote: QuoteSpec,
    /// The TCB info.
    pub tcb_info: TcbInfoSpec,
    /// The QE identity.
    pub qe_identity: QeIdentitySpec,
}

impl TdxSpec {
    /// The quote bytes and the collateral files, under one issued PKI.
    pub fn forge(&self) -> Result<(Vec<u8>, Collateral), IntelPkiError> {
        let pki = self.platform.issue()?;
        Ok((
            self.quote.sign(&pki),
            collateral(&pki, &self.tcb_info, &self.qe_identity)?,
        ))
    }
}

const DATE: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

/// Intel's date form, `2025-01-01T00:00:00Z` (the instant must be UTC).
fn date(t: OffsetDateTime) -> Result<String, IntelPkiError> {
    t.to_offset(time::UtcOffset::UTC).format(DATE).map_err(err)
}

fn advisories(ids: &[String]) -> String {
    if ids.is_empty() {
        return String::new();
    }
    let quoted: Vec<String> = ids.iter().map(|id| format!("\"{id}\"")).collect();
    format!(r#","advisoryIDs":[{}]"#, quoted.join(","))
}

fn upper_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn lower_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cases::tdx_cases;
    use p256::ecdsa::signature::Verifier;
    use p256::ecdsa::{Signature, VerifyingKey};
    use x509_cert::der::{Decode, Encode};
    use x509_cert::Certificate;

    /// A quote split along the layout in the module documentation.
    struct Parsed {
        version: u16,
        qe_svn: u16,
        pce_svn: u16,
        signed: Vec<u8>,
        body: Vec<u8>,
        signature: Vec<u8>,
        att_key: Vec<u8>,
        qe_report: Vec<u8>,
        qe_signature: Vec<u8>,
        auth_data: Vec<u8>,
        chain: Vec<Vec<u8>>,
        trailing: Vec<u8>,
    }

    struct Cursor<'a>(&'a [u8], usize);
    impl<'a> Cursor<'a> {
        fn take(&mut self, n: usize) -> &'a [u8] {
            let s = &self.0[self.1..self.1 + n];
            self.1 += n;
            s
        }
        fn u16(&mut self) -> u16 {
            u16::from_le_bytes(self.take(2).try_into().unwrap())
        }
        fn u32(&mut self) -> usize {
            u32::from_le_bytes(self.take(4).try_into().unwrap()) as usize
        }
    }

    fn parse(q: &[u8]) -> Parsed {
        let mut c = Cursor(q, 0);
        let version = c.u16();
        assert_eq!(c.u16(), ATT_KEY_TYPE_ECDSA_P256);
        assert_eq!(c.u32(), TEE_TYPE_TDX as usize);
        let qe_svn = c.u16();
        let pce_svn = c.u16();
        assert_eq!(c.take(16), QE_VENDOR_ID);
        c.take(20);
        let body_len = match version {
            4 => TD10_BODY_LEN,
            5 => {
                assert_eq!(c.u16(), 3);
                assert_eq!(c.u32(), TD15_BODY_LEN);
                TD15_BODY_LEN
            }
            v => panic!("version {v}"),
        };
        let body = c.take(body_len).to_vec();
        let signed = q[..c.1].to_vec();
        let sig_len = c.u32();
        let sig_data = c.take(sig_len);
        let trailing = q[c.1..].to_vec();
        let mut s = Cursor(sig_data, 0);
        let signature = s.take(64).to_vec();
        let att_key = s.take(64).to_vec();
        assert_eq!(s.u16(), 6);
        let cert_len = s.u32();
        assert_eq!(s.1 + cert_len, sig_data.len());
        let mut d = Cursor(s.take(cert_len), 0);
        let qe_report = d.take(QE_REPORT_LEN).to_vec();
        let qe_signature = d.take(64).to_vec();
        let auth_len = d.u16() as usize;
        let auth_data = d.take(auth_len).to_vec();
        assert_eq!(d.u16(), 5);
        let pem_len = d.u32();
        let pem_bytes = d.take(pem_len);
        assert_eq!(d.1, d.0.len());
        assert_eq!(pem_bytes.last(), Some(&0));
        let chain = pem::parse_many(&pem_bytes[..pem_len - 1])
            .unwrap()
            .into_iter()
            .map(pem::Pem::into_contents)
            .collect();
        Parsed {
            version,
            qe_svn,
            pce_svn,
            signed,
            body,
            signature,
            att_key,
            qe_report,
            qe_signature,
            auth_data,
            chain,
            trailing,
        }
    }

    fn cert_key(der: &[u8]) -> VerifyingKey {
        let cert = Certificate::from_der(der).unwrap();
        VerifyingKey::from_sec1_bytes(
            cert.tbs_certificate
                .subject_public_key_info
                .subject_public_key
                .raw_bytes(),
        )
        .unwrap()
    }

    fn verify(key: &VerifyingKey, msg: &[u8], sig: &[u8]) -> bool {
        key.verify(msg, &Signature::from_slice(sig).unwrap())
            .is_ok()
    }

    /// (quote signature, QE report signature, QE binding) validity.
    fn checks(p: &Parsed) -> (bool, bool, bool) {
        let mut point = vec![4];
        point.extend_from_slice(&p.att_key);
        let att = VerifyingKey::from_sec1_bytes(&point).unwrap();
        let mut bound = p.att_key.clone();
        bound.extend_from_slice(&p.auth_data);
        let binding = p.qe_report[320..352] == Sha256::digest(&bound)[..]
            && p.qe_report[352..].iter().all(|b| *b == 0);
        (
            verify(&att, &p.signed, &p.signature),
            verify(&cert_key(&p.chain[0]), &p.qe_report, &p.qe_signature),
            binding,
        )
    }

    #[test]
    fn valid_quotes_parse_and_verify() {
        let pki = PlatformSpec::default().issue().unwrap();
        for spec in [QuoteSpec::valid(), QuoteSpec::v5()] {
            let p = parse(&spec.sign(&pki));
            assert_eq!(p.version, spec.version);
            assert_eq!((p.qe_svn, p.pce_svn), (4, DEFAULT_PCESVN));
            assert_eq!(p.body[..16], spec.tee_tcb_svn);
            assert_eq!(p.body[16..64], spec.mr_seam);
            assert_eq!(p.body[120..128], spec.td_attributes);
            assert_eq!(p.body[136..184], spec.mr_td);
            assert_eq!(p.body[RTMR_OFFSET..RTMR_OFFSET + 48], spec.rtmr[0]);
            assert_eq!(p.body[REPORT_DATA_OFFSET..584], spec.report_data);
            if spec.version == 5 {
                assert_eq!(p.body[584..600], spec.tee_tcb_svn2);
            }
            assert_eq!(p.auth_data, (0..32).collect::<Vec<u8>>());
            assert_eq!(
                p.chain,
                [pki.pck.clone(), pki.platform_ca.clone(), pki.root.clone()]
            );
            assert!(p.trailing.is_empty());
            assert_eq!(p.qe_report[256..260], [2, 0, 4, 0]);
            assert_eq!(p.qe_report[128..160], qe_mrsigner());
            assert_eq!(checks(&p), (true, true, true));
        }
        let deterministic = QuoteSpec::valid().sign(&pki);
        assert_eq!(deterministic, QuoteSpec::valid().sign(&pki));
    }

    /// The signed value and signature hex of `{"<name>":<value>,"signature":"<hex>"}`.
    fn split_signed(json: &[u8], name: &str) -> (Vec<u8>, Vec<u8>) {
        let text = std::str::from_utf8(json).unwrap();
        let rest = text.strip_prefix(&format!("{{\"{name}\":")).unwrap();
        let at = rest.rfind(",\"signature\":\"").unwrap();
        let hex = rest[at..]
            .strip_prefix(",\"signature\":\"")
            .unwrap()
            .strip_suffix("\"}")
            .unwrap();
        let sig = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        (rest.as_bytes()[..at].to_vec(), sig)
    }

    #[test]
    fn collateral_is_signed_over_the_exact_embedded_bytes() {
        let spec = TdxSpec::default();
        let (_, files) = spec.forge().unwrap();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "tcb_info.json",
                "tcb_info_issuer_chain.pem",
                "qe_identity.json",
                "qe_identity_issuer_chain.pem",
                "pck_crl.der",
                "pck_crl_issuer_chain.pem",
                "root_ca_crl.der"
            ]
        );
        let file = |n: &str| files.iter().find(|(f, _)| f == n).unwrap().1.clone();
        let chain: Vec<Vec<u8>> = pem::parse_many(file("tcb_info_issuer_chain.pem"))
            .unwrap()
            .into_iter()
            .map(pem::Pem::into_contents)
            .collect();
        let pki = spec.platform.issue().unwrap();
        assert_eq!(chain, [pki.tcb_signing.clone(), pki.root.clone()]);
        let key = cert_key(&chain[0]);
        for (name, outer) in [
            ("tcb_info.json", "tcbInfo"),
            ("qe_identity.json", "enclaveIdentity"),
        ] {
            let json = file(name);
            let parsed: serde_json::Value = serde_json::from_slice(&json).unwrap();
            let (value, sig) = split_signed(&json, outer);
            assert_eq!(
                serde_json::from_slice::<serde_json::Value>(&value).unwrap(),
                parsed[outer]
            );
            assert!(verify(&key, &value, &sig), "{name}");
        }

        let tcb: serde_json::Value = serde_json::from_slice(&file("tcb_info.json")).unwrap();
        let info = &tcb["tcbInfo"];
        assert_eq!(info["id"], "TDX");
        assert_eq!(info["version"], 3);
        assert_eq!(info["fmspc"], "90C06F000000");
        assert_eq!(info["issueDate"], "2024-12-31T00:00:00Z");
        assert_eq!(info["nextUpdate"], "2025-01-30T00:00:00Z");
        assert_eq!(info["tdxModuleIdentities"][0]["id"], "TDX_03");
        let level = &info["tcbLevels"][0];
        assert_eq!(
            level["tcb"]["sgxtcbcomponents"].as_array().unwrap().len(),
            16
        );
        assert_eq!(
            level["tcb"]["tdxtcbcomponents"].as_array().unwrap().len(),
            16
        );
        assert_eq!(level["tcb"]["pcesvn"], 13);
        assert_eq!(level["tcbStatus"], "UpToDate");
        assert!(level.get("advisoryIDs").is_none());
        assert_eq!(info["tcbLevels"][1]["advisoryIDs"][0], "INTEL-SA-00001");

        // An edit after signing keeps the JSON valid and breaks the signature.
        let mut edited = spec.tcb_info.clone();
        edited.edit_after_signing = Some(("\"tcbType\":0".into(), "\"tcbType\":1".into()));
        let json = edited.sign(&pki.tcb_signing_key).unwrap();
        let parsed: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(parsed["tcbInfo"]["tcbType"], 1);
        let (value, sig) = split_signed(&json, "tcbInfo");
        assert!(!verify(&key, &value, &sig));
    }

    /// The SGX TCB SVNs and PCESVN a PCK certificate certifies.
    fn pck_tcb(der: &[u8]) -> (Vec<u64>, u64) {
        use x509_cert::attr::AttributeTypeAndValue as Entry;
        let cert = Certificate::from_der(der).unwrap();
        let ext = cert
            .tbs_certificate
            .extensions
            .unwrap()
            .into_iter()
            .find(|e| e.extn_id.to_string() == intel::SGX_EXTENSION_OID)
            .unwrap();
        let entries = Vec::<Entry>::from_der(ext.extn_value.as_bytes()).unwrap();
        let tcb = Vec::<Entry>::from_der(&entries[1].value.to_der().unwrap()).unwrap();
        let svns = tcb[..16]
            .iter()
            .map(|e| e.value.decode_as::<u8>().unwrap().into())
            .collect();
        (svns, tcb[16].value.decode_as::<u16>().unwrap().into())
    }

    fn svns(components: &serde_json::Value) -> Vec<u64> {
        components
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["svn"].as_u64().unwrap())
            .collect()
    }

    /// Intel's TDX TCB level matching; `from_index_2` off is the naive
    /// (wrong) comparison. Returns the platform status and, when consulted,
    /// the module identity's.
    fn tdx_status(
        quote: &Parsed,
        tcb_info: &serde_json::Value,
        from_index_2: bool,
    ) -> (Option<String>, Option<String>) {
        let (sgx, pcesvn) = pck_tcb(&quote.chain[0]);
        let tee: Vec<u64> = quote.body[..16].iter().map(|b| u64::from(*b)).collect();
        let info = &tcb_info["tcbInfo"];
        let mut start = 0;
        let mut module = None;
        if let Some(ids) = info["tdxModuleIdentities"].as_array() {
            if tee[1] > 0 {
                if from_index_2 {
                    start = 2;
                }
                let id = format!("TDX_{:02X}", tee[1]);
                let identity = ids.iter().find(|i| i["id"] == id.as_str()).unwrap();
                module = identity["tcbLevels"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|l| l["tcb"]["isvsvn"].as_u64().unwrap() <= tee[0])
                    .map(|l| l["tcbStatus"].as_str().unwrap().to_string());
            }
        }
        let status = info["tcbLevels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| {
                let t = &l["tcb"];
                svns(&t["sgxtcbcomponents"])
                    .iter()
                    .zip(&sgx)
                    .all(|(level, have)| have >= level)
                    && pcesvn >= t["pcesvn"].as_u64().unwrap()
                    && svns(&t["tdxtcbcomponents"])
                        .iter()
                        .zip(&tee)
                        .skip(start)
                        .all(|(level, have)| have >= level)
            })
            .map(|l| l["tcbStatus"].as_str().unwrap().to_string());
        (status, module)
    }

    fn qe_status(quote: &Parsed, qe_identity: &serde_json::Value) -> Option<String> {
        let isvsvn = u64::from(u16::from_le_bytes([
            quote.qe_report[258],
            quote.qe_report[259],
        ]));
        qe_identity["enclaveIdentity"]["tcbLevels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["tcb"]["isvsvn"].as_u64().unwrap() <= isvsvn)
            .map(|l| l["tcbStatus"].as_str().unwrap().to_string())
    }

    /// Every case is what its name says, checked with an independent
    /// parser and Intel's matching rules.
    #[test]
    fn cases_are_what_they_claim() {
        let cases = tdx_cases().unwrap();
        let expected: Vec<(&str, &str)> = cases.iter().map(|c| (c.name, c.expected)).collect();
        assert_eq!(
            expected,
            [
                ("valid", "ok"),
                ("valid_v5", "ok"),
                ("valid_module_identity", "ok"),
                ("flipped_quote_signature", "signature_invalid"),
                ("tampered_rtmr", "signature_invalid"),
                ("qe_report_foreign_key", "qe_report_signature_invalid"),
                ("qe_binding_broken", "qe_binding_invalid"),
                ("qe_identity_mismatch", "qe_identity_mismatch"),
                ("qe_out_of_date", "tcb_status_not_accepted"),
                ("pck_revoked", "certificate_revoked"),
                ("platform_ca_revoked", "certificate_revoked"),
                ("qe_identity_isvprodid_mismatch", "qe_identity_mismatch"),
                ("tdx_module_signer_mismatch", "tdx_module_mismatch"),
                ("tdx_module_identity_unknown", "tdx_module_mismatch"),
                ("tcb_info_other_pce_id", "collateral_mismatch"),
                ("tcb_signer_revoked", "certificate_revoked"),
                ("tcb_info_signed_by_pck", "chain_untrusted"),
                ("qe_identity_signed_by_pck", "chain_untrusted"),
                ("pck_crl_stale", "crl_invalid"),
                ("tcb_out_of_date", "tcb_status_not_accepted"),
                ("tcb_revoked", "tcb_status_not_accepted"),
                ("tcb_sw_hardening_needed", "tcb_status_not_accepted"),
                ("no_matching_tcb_level", "no_matching_tcb_level"),
                ("tcb_info_expired", "collateral_expired"),
                ("qe_identity_expired", "collateral_expired"),
                ("tcb_info_other_fmspc", "collateral_mismatch"),
                ("tcb_info_edited", "collateral_signature_invalid"),
                ("missing_tcb_info", "collateral_missing"),
                ("foreign_root", "chain_untrusted"),
                ("expired_pck", "certificate_expired"),
                ("debug_td", "debug_enclave"),
                ("report_data_mismatch", "report_data_mismatch"),
                ("truncated", "malformed_evidence"),
                ("nonzero_padding", "malformed_evidence"),
            ]
        );
        let json = |c: &crate::cases::Case, n: &str| -> Option<serde_json::Value> {
            c.collateral
                .iter()
                .find(|(f, _)| f == n)
                .map(|(_, b)| serde_json::from_slice(b).unwrap())
        };
        let up = Some("UpToDate".to_string());
        for case in &cases {
            assert_eq!(case.tee, "tdx");
            let name = case.name;
            if name == "truncated" {
                assert!(std::panic::catch_unwind(|| parse(&case.evidence)).is_err());
                continue;
            }
            let quote = parse(&case.evidence);
            let sigs = checks(&quote);
            let expected_sigs = match name {
                "flipped_quote_signature" | "tampered_rtmr" => (false, true, true),
                "qe_report_foreign_key" => (true, false, true),
                "qe_binding_broken" => (true, true, false),
                _ => (true, true, true),
            };
            assert_eq!(sigs, expected_sigs, "{name}");
            assert_eq!(
                quote.trailing.iter().any(|b| *b != 0),
                name == "nonzero_padding",
                "{name}"
            );
            assert_eq!(quote.body[120] & 1 == 1, name == "debug_td", "{name}");
            // Cases about who signed the collateral, revocation of the signer
            // and module / QE identity fields are judged by the verifier's
            // tests alone; this independent model covers TCB levels.
            if matches!(
                name,
                "tdx_module_identity_unknown"
                    | "tdx_module_signer_mismatch"
                    | "tcb_info_signed_by_pck"
                    | "qe_identity_signed_by_pck"
                    | "tcb_signer_revoked"
                    | "tcb_info_other_pce_id"
                    | "qe_identity_isvprodid_mismatch"
            ) {
                continue;
            }
            if name == "missing_tcb_info" {
                assert!(json(case, "tcb_info.json").is_none());
                continue;
            }
            let tcb_info = json(case, "tcb_info.json").unwrap();
            let (status, module) = tdx_status(&quote, &tcb_info, true);
            let want = match name {
                "tcb_out_of_date" => Some("OutOfDate".to_string()),
                "tcb_revoked" => Some("Revoked".to_string()),
                "tcb_sw_hardening_needed" => Some("SWHardeningNeeded".to_string()),
                "no_matching_tcb_level" => None,
                _ => up.clone(),
            };
            assert_eq!(status, want, "{name}");
            if name == "valid_module_identity" {
                assert_eq!(module, up);
                // Comparing the TDX components from index 0 must not accept it.
                assert_ne!(tdx_status(&quote, &tcb_info, false).0, up);
            } else {
                assert_eq!(module, None, "{name}");
            }
            let qe_identity = json(case, "qe_identity.json").unwrap();
            let want_qe = if name == "qe_out_of_date" {
                Some("OutOfDate".to_string())
            } else {
                up.clone()
            };
            assert_eq!(qe_status(&quote, &qe_identity), want_qe, "{name}");
            let qe_signer_matches = qe_identity["enclaveIdentity"]["mrsigner"]
                == upper_hex(&quote.qe_report[128..160]).as_str();
            assert_eq!(qe_signer_matches, name != "qe_identity_mismatch", "{name}");
            assert_eq!(
                tcb_info["tcbInfo"]["fmspc"] == "90C06F000000",
                name != "tcb_info_other_fmspc",
                "{name}"
            );
        }
        let valid = &cases[0];
        assert_eq!(
            valid.expected_report_data.as_deref(),
            Some(&parse(&valid.evidence).body[REPORT_DATA_OFFSET..584])
        );
    }
}
