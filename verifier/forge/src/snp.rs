//! Forged SEV-SNP attestation reports, signed by a VCEK under a project-made
//! test ARK → ASK chain that mirrors AMD's (names, PSS parameters, extensions).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use rsa::RsaPrivateKey;
use sha2::{Digest, Sha256, Sha384};
use time::{Duration, OffsetDateTime};

use crate::amd::{self, AmdPkiError, VcekExtensions};
use crate::keys::TestKey;
use crate::nitro::FORGE_INSTANT;
use crate::pki::pem_encode;

/// Report size.
pub const REPORT_LEN: usize = 0x4a0;
/// The test ARK's key label (Milan).
pub const TEST_ARK_KEY: &str = "snp-test-ark-milan";
/// The Turin test ARK's key label.
pub const TEST_ARK_KEY_TURIN: &str = "snp-test-ark-turin";

/// RSA key generation is slow; each label is generated once per process.
fn rsa_key(label: &str) -> Result<RsaPrivateKey, AmdPkiError> {
    static KEYS: OnceLock<Mutex<HashMap<String, RsaPrivateKey>>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(k) = keys.lock().ok().and_then(|m| m.get(label).cloned()) {
        return Ok(k);
    }
    let key = amd::rsa_key(label)?;
    if let Ok(mut m) = keys.lock() {
        m.insert(label.to_string(), key.clone());
    }
    Ok(key)
}

/// A TCB_VERSION in the Turin layout.
pub fn turin_tcb(fmc: u8, bootloader: u8, tee: u8, snp: u8, microcode: u8) -> u64 {
    u64::from_le_bytes([fmc, bootloader, tee, snp, 0, 0, 0, microcode])
}

/// A TCB_VERSION in the Milan/Genoa layout.
pub fn milan_tcb(bootloader: u8, tee: u8, snp: u8, microcode: u8) -> u64 {
    u64::from_le_bytes([bootloader, tee, 0, 0, 0, 0, snp, microcode])
}

/// The fields of a report to forge.
#[derive(Debug, Clone)]
pub struct ReportSpec {
    /// VERSION.
    pub version: u32,
    /// POLICY.
    pub policy: u64,
    /// SIGNATURE_ALGO.
    pub signature_algo: u32,
    /// Signer info at 0x48 (SIGNING_KEY in bits 4:2).
    pub signer_info: u32,
    /// REPORT_DATA.
    pub report_data: [u8; 64],
    /// MEASUREMENT.
    pub measurement: [u8; 48],
    /// HOST_DATA.
    pub host_data: [u8; 32],
    /// CURRENT, REPORTED, COMMITTED and LAUNCH TCB (one value for all four).
    pub tcb: u64,
    /// CPUID family, model, stepping.
    pub cpuid: (u8, u8, u8),
    /// CHIP_ID.
    pub chip_id: [u8; 64],
    /// PLATFORM_INFO.
    pub platform_info: u64,
}

/// The chip ID of the forged platform.
pub fn chip_id() -> [u8; 64] {
    let mut bytes = Sha384::digest(b"attest-gate test chip").to_vec();
    bytes.extend_from_slice(&Sha256::digest(b"attest-gate test chip"));
    array(&bytes)
}

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = *b;
    }
    out
}

impl Default for ReportSpec {
    /// A Milan, version-3, VCEK-signed, non-debug report.
    fn default() -> Self {
        Self {
            version: 3,
            policy: 0x30000,
            signature_algo: 1,
            signer_info: 0,
            report_data: array(&Sha384::digest(b"attest-gate test report data")),
            measurement: array(&Sha384::digest(b"attest-gate test guest")),
            host_data: [0; 32],
            tcb: milan_tcb(3, 0, 8, 115),
            cpuid: (0x19, 0x01, 0x01),
            chip_id: chip_id(),
            platform_info: 0x25,
        }
    }
}

impl ReportSpec {
    /// A Turin report: CPUID family 0x1A, Turin TCB layout, 8-byte chip ID.
    pub fn turin() -> Self {
        let mut chip = [0u8; 64];
        chip[..8].copy_from_slice(&turin_chip_id());
        Self {
            tcb: turin_tcb(1, 3, 0, 8, 77),
            cpuid: (0x1a, 0x02, 0x00),
            chip_id: chip,
            ..Self::default()
        }
    }

    /// The unsigned report bytes.
    pub fn body(&self) -> Vec<u8> {
        let mut r = vec![0u8; REPORT_LEN];
        let mut put = |off: usize, bytes: &[u8]| {
            if let Some(slot) = r.get_mut(off..off + bytes.len()) {
                slot.copy_from_slice(bytes);
            }
        };
        put(0x000, &self.version.to_le_bytes());
        put(0x008, &self.policy.to_le_bytes());
        put(0x034, &self.signature_algo.to_le_bytes());
        put(0x038, &self.tcb.to_le_bytes());
        put(0x040, &self.platform_info.to_le_bytes());
        put(0x048, &self.signer_info.to_le_bytes());
        put(0x050, &self.report_data);
        put(0x090, &self.measurement);
        put(0x0c0, &self.host_data);
        put(0x140, &Sha256::digest(b"attest-gate test report id"));
        put(0x180, &self.tcb.to_le_bytes());
        if self.version >= 3 {
            put(0x188, &[self.cpuid.0, self.cpuid.1, self.cpuid.2]);
        }
        put(0x1a0, &self.chip_id);
        put(0x1e0, &self.tcb.to_le_bytes());
        put(0x1e8, &[12, 55, 1]);
        put(0x1ec, &[12, 55, 1]);
        put(0x1f0, &self.tcb.to_le_bytes());
        r
    }

    /// The report signed by `vcek`: ECDSA P-384 over bytes 0..0x2A0, r and s
    /// little-endian in 72-byte fields.
    pub fn sign(&self, vcek: &TestKey) -> Vec<u8> {
        sign_body(self.body(), vcek)
    }
}

/// Signs report bytes as the firmware does (for bodies edited by hand).
pub fn sign_body(r: Vec<u8>, vcek: &TestKey) -> Vec<u8> {
    sign_body_with(r, |signed| vcek.sign_fixed(signed))
}

/// Signs report bytes with `sign` (P-384 `r ‖ s`, big-endian, 96 bytes),
/// stored as the firmware stores them.
pub fn sign_body_with(mut r: Vec<u8>, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> Vec<u8> {
    {
        let sig = sign(r.get(..0x2a0).unwrap_or_default());
        for (i, half) in sig.chunks(48).enumerate() {
            let mut le = half.to_vec();
            le.reverse();
            let off = 0x2a0 + 72 * i;
            if let Some(slot) = r.get_mut(off..off + 48) {
                slot.copy_from_slice(&le);
            }
        }
    }
    r
}

/// The 8-byte chip ID of the forged Turin platform.
pub fn turin_chip_id() -> [u8; 8] {
    array(&Sha256::digest(b"attest-gate test turin chip"))
}

/// The endorsement chain to issue.
#[derive(Debug, Clone)]
pub struct ChainSpec {
    /// `Milan` or `Turin`: names the CAs and picks the ARK.
    pub product: &'static str,
    /// Key label of the ARK that signs the ASK.
    pub ask_signer: String,
    /// Key label of the VCEK (its public key goes in the certificate).
    pub vcek_key: String,
    /// VCEK validity.
    pub vcek_window: (OffsetDateTime, OffsetDateTime),
    /// VCEK extensions.
    pub vcek_extensions: VcekExtensions,
    /// Include the ARK in `cert_chain.pem`.
    pub ark_in_chain: bool,
    /// Revoke the ASK in a `crl.der`.
    pub crl_revokes_ask: Option<bool>,
    /// The CRL's `thisUpdate` and `nextUpdate`.
    pub crl_window: (OffsetDateTime, OffsetDateTime),
}

impl ChainSpec {
    /// A Turin chain: ARK-Turin → SEV-Turin → VCEK with fmcSPL and an 8-byte hwID.
    pub fn turin() -> Self {
        let mut spec = Self {
            product: "Turin",
            ask_signer: TEST_ARK_KEY_TURIN.into(),
            ..Self::default()
        };
        spec.vcek_extensions = VcekExtensions {
            product_name: "Turin".into(),
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 77,
            hw_id: turin_chip_id().to_vec(),
            fmc: Some(1),
        };
        spec
    }
}

impl Default for ChainSpec {
    fn default() -> Self {
        Self {
            product: "Milan",
            ask_signer: TEST_ARK_KEY.into(),
            vcek_key: "snp-test-vcek".into(),
            vcek_window: (
                FORGE_INSTANT - Duration::days(30),
                FORGE_INSTANT + Duration::days(7 * 365),
            ),
            vcek_extensions: VcekExtensions {
                product_name: "Milan-B0".into(),
                bootloader: 3,
                tee: 0,
                snp: 8,
                microcode: 115,
                hw_id: chip_id().to_vec(),
                fmc: None,
            },
            ark_in_chain: true,
            crl_revokes_ask: None,
            crl_window: (
                FORGE_INSTANT - Duration::days(1),
                FORGE_INSTANT + Duration::days(30),
            ),
        }
    }
}

const ASK_SERIAL: u32 = 0x1_0001;

fn ca_window() -> (OffsetDateTime, OffsetDateTime) {
    (
        FORGE_INSTANT - Duration::days(365),
        FORGE_INSTANT + Duration::days(25 * 365),
    )
}

/// The test ARK certificate (DER): the root to trust with `--trust-root`.
pub fn test_ark() -> Result<Vec<u8>, AmdPkiError> {
    test_ark_for("Milan")
}

/// The test ARK certificate of `product` (`Milan` or `Turin`).
pub fn test_ark_for(product: &str) -> Result<Vec<u8>, AmdPkiError> {
    let ark = rsa_key(&label("ark", product))?;
    let name = format!("ARK-{product}");
    amd::issue(
        &name,
        &name,
        0x1_0000,
        ca_window(),
        &amd::rsa_spki(&ark)?,
        amd::ca_extensions(true)?,
        &ark,
    )
}

/// `snp-test-<role>-<product>`, lower case.
fn label(role: &str, product: &str) -> String {
    format!("snp-test-{role}-{}", product.to_lowercase())
}

impl ChainSpec {
    /// The collateral folder's files: `vcek.der`, `cert_chain.pem`, maybe `crl.der`.
    pub fn collateral(&self) -> Result<Vec<(String, Vec<u8>)>, AmdPkiError> {
        let (ark_name, ask_name) = (
            format!("ARK-{}", self.product),
            format!("SEV-{}", self.product),
        );
        let ark = rsa_key(&label("ark", self.product))?;
        let ask_signer = rsa_key(&self.ask_signer)?;
        let ask = rsa_key(&label("ask", self.product))?;
        let ask_cert = amd::issue(
            &ask_name,
            &ark_name,
            ASK_SERIAL,
            ca_window(),
            &amd::rsa_spki(&ask)?,
            amd::ca_extensions(true)?,
            &ask_signer,
        )?;
        let vcek_key = TestKey::p384(&self.vcek_key);
        let vcek = amd::issue(
            "SEV-VCEK",
            &ask_name,
            0,
            self.vcek_window,
            &amd::ec_spki(&vcek_key),
            self.vcek_extensions.encode()?,
            &ask,
        )?;
        let mut chain = pem_encode("CERTIFICATE", &ask_cert);
        if self.ark_in_chain {
            chain.push_str(&pem_encode("CERTIFICATE", &test_ark_for(self.product)?));
        }
        let mut files = vec![
            ("vcek.der".to_string(), vcek),
            ("cert_chain.pem".to_string(), chain.into_bytes()),
        ];
        if let Some(revoke) = self.crl_revokes_ask {
            let serials: &[u32] = if revoke { &[ASK_SERIAL] } else { &[] };
            files.push((
                "crl.der".to_string(),
                amd::crl(&ark_name, &ark, self.crl_window, serials)?,
            ));
        }
        Ok(files)
    }
}

/// The VCEK key that signs reports under the default chain.
pub fn vcek_key() -> TestKey {
    TestKey::p384("snp-test-vcek")
}

/// GUIDs of the extended report's certificate table, in table byte order.
const TABLE_GUIDS: [[u8; 16]; 3] = [
    // VCEK 63da758d-e664-4564-adc5-f4b93be8accd
    [
        0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64, 0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac,
        0xcd,
    ],
    // ASK 4ab7b379-bbac-4fe4-a02f-05aef327c782
    [
        0x4a, 0xb7, 0xb3, 0x79, 0xbb, 0xac, 0x4f, 0xe4, 0xa0, 0x2f, 0x05, 0xae, 0xf3, 0x27, 0xc7,
        0x82,
    ],
    // ARK c0b406a4-a803-4952-9743-3fb6014cd0ae
    [
        0xc0, 0xb4, 0x06, 0xa4, 0xa8, 0x03, 0x49, 0x52, 0x97, 0x43, 0x3f, 0xb6, 0x01, 0x4c, 0xd0,
        0xae,
    ],
];

/// The certificate table SNP_GET_EXT_REPORT appends: VCEK, ASK, ARK entries,
/// an all-zero terminator, then the DER certificates.
pub fn cert_table(vcek: &[u8], ask: &[u8], ark: &[u8]) -> Vec<u8> {
    let mut offset = (TABLE_GUIDS.len() + 1) * 24;
    let mut table = Vec::new();
    let mut data = Vec::new();
    for (guid, der) in TABLE_GUIDS.iter().zip([vcek, ask, ark]) {
        table.extend_from_slice(guid);
        table.extend_from_slice(&u32::try_from(offset).unwrap_or(u32::MAX).to_le_bytes());
        table.extend_from_slice(&u32::try_from(der.len()).unwrap_or(u32::MAX).to_le_bytes());
        data.extend_from_slice(der);
        offset += der.len();
    }
    table.extend_from_slice(&[0; 24]);
    table.extend_from_slice(&data);
    table
}

/// The certificates of a chain's collateral, DER: (VCEK, ASK, ARK).
pub fn chain_ders(collateral: &[(String, Vec<u8>)]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let find = |name: &str| {
        collateral
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.clone())
            .unwrap_or_default()
    };
    let chain: Vec<Vec<u8>> = pem::parse_many(find("cert_chain.pem"))
        .unwrap_or_default()
        .into_iter()
        .map(pem::Pem::into_contents)
        .collect();
    let mut it = chain.into_iter();
    (
        find("vcek.der"),
        it.next().unwrap_or_default(),
        it.next().unwrap_or_default(),
    )
}
