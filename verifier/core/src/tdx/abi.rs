//! The Intel DCAP quote, versions 4 and 5, for TDX (Intel "TDX DCAP Quoting
//! Library API", appendix A): header, TD report body (TD 1.0, or TD 1.5 in v5),
//! and the ECDSA signature data with its nested certification data. All
//! integers little-endian; lengths are bounded by the input and checked.

use crate::error::VerifyError;

const TD10_BODY_LEN: usize = 584;
const TD15_BODY_LEN: usize = 648;
const QE_REPORT_LEN: usize = 384;
/// Attestation key type: ECDSA-256-with-P-256 curve.
const ATT_KEY_ECDSA_P256: u16 = 2;
/// TEE type of TDX.
const TEE_TYPE_TDX: u32 = 0x81;
/// Intel's QE vendor ID.
pub(crate) const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];
/// Certification data type 6: QE report certification data.
const CERT_DATA_QE_REPORT: u16 = 6;
/// Certification data type 5: PCK certificate chain (PEM).
const CERT_DATA_PCK_CHAIN: u16 = 5;

/// A TD report body (TD 1.0 fields; TD 1.5 adds two).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdReport {
    /// TEE_TCB_SVN.
    pub tee_tcb_svn: [u8; 16],
    /// MRSEAM.
    pub mr_seam: [u8; 48],
    /// MRSIGNERSEAM.
    pub mr_signer_seam: [u8; 48],
    /// SEAMATTRIBUTES.
    pub seam_attributes: [u8; 8],
    /// TDATTRIBUTES.
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
    /// TEE_TCB_SVN2 (TD 1.5).
    pub tee_tcb_svn2: Option<[u8; 16]>,
    /// MRSERVICETD (TD 1.5).
    pub mr_service_td: Option<[u8; 48]>,
}

/// A parsed quote; the byte ranges the signatures cover are kept.
#[derive(Debug, Clone)]
pub struct Quote<'a> {
    /// 4 or 5.
    pub version: u16,
    /// QE SVN from the header.
    pub qe_svn: u16,
    /// PCE SVN from the header.
    pub pce_svn: u16,
    /// The TD report.
    pub td_report: TdReport,
    /// Bytes the attestation key signed (header and body).
    pub(crate) signed: &'a [u8],
    /// ECDSA P-256 r ‖ s by the attestation key.
    pub(crate) quote_signature: &'a [u8],
    /// The attestation key, x ‖ y.
    pub(crate) attestation_key: &'a [u8],
    /// The QE's SGX report body (384 bytes), signed by the PCK key.
    pub(crate) qe_report: &'a [u8],
    /// ECDSA P-256 r ‖ s over `qe_report` by the PCK key.
    pub(crate) qe_report_signature: &'a [u8],
    /// QE authentication data.
    pub(crate) qe_auth_data: &'a [u8],
    /// The PCK certificate chain as carried: PEM, then any NUL terminator.
    /// Decoded only when it is validated ([`Quote::pck_chain`]): a chain
    /// verified before is recognised by these exact bytes, and the cheap
    /// readers of a quote (where the chain starts) never need it decoded.
    pub(crate) pck_chain_pem: &'a [u8],
    /// Where the chain's PEM starts in the quote's bytes: from there on
    /// (the PEM and any zero padding) a platform's quotes are all alike.
    pub(crate) pck_chain_at: usize,
}

/// A cursor that refuses to read past its input.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], VerifyError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.bytes.len());
        match end.and_then(|e| self.bytes.get(self.pos..e).map(|s| (s, e))) {
            Some((s, e)) => {
                self.pos = e;
                Ok(s)
            }
            None => Err(VerifyError::malformed(format!(
                "TDX quote truncated in {what}"
            ))),
        }
    }
    fn u16(&mut self, what: &str) -> Result<u16, VerifyError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([
            b.first().copied().unwrap_or(0),
            b.get(1).copied().unwrap_or(0),
        ]))
    }
    fn u32(&mut self, what: &str) -> Result<u32, VerifyError> {
        let b = self.take(4, what)?;
        let mut a = [0u8; 4];
        a.copy_from_slice(b);
        Ok(u32::from_le_bytes(a))
    }
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], VerifyError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }
    fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.pos..).unwrap_or_default()
    }
}

fn td_report(r: &mut Reader<'_>, td15: bool) -> Result<TdReport, VerifyError> {
    let w = "TD report";
    Ok(TdReport {
        tee_tcb_svn: r.array(w)?,
        mr_seam: r.array(w)?,
        mr_signer_seam: r.array(w)?,
        seam_attributes: r.array(w)?,
        td_attributes: r.array(w)?,
        xfam: r.array(w)?,
        mr_td: r.array(w)?,
        mr_config_id: r.array(w)?,
        mr_owner: r.array(w)?,
        mr_owner_config: r.array(w)?,
        rtmr: [r.array(w)?, r.array(w)?, r.array(w)?, r.array(w)?],
        report_data: r.array(w)?,
        tee_tcb_svn2: if td15 { Some(r.array(w)?) } else { None },
        mr_service_td: if td15 { Some(r.array(w)?) } else { None },
    })
}

/// PEM certificates, ignoring the NUL terminator real quotes carry.
///
/// Strict on purpose: the PEM text is not signed, so only one spelling of
/// each certificate is accepted: BEGIN/END lines exactly, base64 lines with
/// nothing else (canonical padding), `\n` or `\r\n` line ends, blank lines
/// only between blocks.
fn pem_chain(data: &[u8]) -> Result<Vec<Vec<u8>>, VerifyError> {
    use base64::Engine;
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let bad = |what: &str| VerifyError::malformed(format!("PCK chain PEM: {what}"));
    let end = data.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    let text =
        std::str::from_utf8(data.get(..end).unwrap_or_default()).map_err(|_| bad("not ASCII"))?;
    let mut certs = Vec::new();
    let mut body: Option<String> = None;
    for line in text.lines() {
        match (&mut body, line) {
            (None, "") => {}
            (None, BEGIN) => body = Some(String::new()),
            (None, _) => return Err(bad("text outside a certificate block")),
            (Some(b64), END) => {
                let der = base64::engine::general_purpose::STANDARD
                    .decode(b64.as_bytes())
                    .map_err(|_| bad("bad base64"))?;
                certs.push(der);
                body = None;
            }
            (Some(b64), line)
                if !line.is_empty()
                    && line
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=')) =>
            {
                b64.push_str(line);
            }
            (Some(_), _) => return Err(bad("a line that is not base64")),
        }
    }
    if body.is_some() {
        return Err(bad("unterminated certificate block"));
    }
    if certs.is_empty() {
        return Err(VerifyError::malformed("PCK chain holds no certificate"));
    }
    Ok(certs)
}

impl<'a> Quote<'a> {
    /// The bytes the attestation key signed (header and TD report body).
    pub fn signed_bytes(&self) -> &'a [u8] {
        self.signed
    }

    /// The quote signature, ECDSA P-256 r ‖ s.
    pub fn quote_signature(&self) -> &'a [u8] {
        self.quote_signature
    }

    /// The attestation key, raw x ‖ y.
    pub fn attestation_key(&self) -> &'a [u8] {
        self.attestation_key
    }

    /// The QE's 384-byte SGX report body.
    pub fn qe_report(&self) -> &'a [u8] {
        self.qe_report
    }

    /// The QE report signature by the PCK key, r ‖ s.
    pub fn qe_report_signature(&self) -> &'a [u8] {
        self.qe_report_signature
    }

    /// The PCK certificate chain carried in the quote, DER, leaf first
    /// (unverified), decoded from its PEM; an error if the PEM is not in
    /// the one spelling accepted.
    pub fn pck_chain(&self) -> Result<Vec<Vec<u8>>, VerifyError> {
        pem_chain(self.pck_chain_pem)
    }

    /// Parses a v4 or v5 TDX quote.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, VerifyError> {
        let mut r = Reader { bytes, pos: 0 };
        let version = r.u16("header")?;
        if !matches!(version, 4 | 5) {
            return Err(VerifyError::UnsupportedVersion {
                what: "TDX quote",
                version: version.into(),
            });
        }
        let key_type = r.u16("header")?;
        if key_type != ATT_KEY_ECDSA_P256 {
            return Err(VerifyError::UnsupportedAlgorithm {
                found: format!("attestation key type {key_type}"),
                expected: "ECDSA-256-with-P-256 (2)",
            });
        }
        let tee_type = r.u32("header")?;
        if tee_type != TEE_TYPE_TDX {
            return Err(VerifyError::malformed(format!(
                "TEE type {tee_type:#x} is not TDX (0x81)"
            )));
        }
        let qe_svn = r.u16("header")?;
        let pce_svn = r.u16("header")?;
        let vendor: [u8; 16] = r.array("header")?;
        if vendor != INTEL_QE_VENDOR_ID {
            return Err(VerifyError::malformed("QE vendor ID is not Intel's"));
        }
        r.take(20, "header")?;

        let td15 = if version == 5 {
            let body_type = r.u16("body descriptor")?;
            let body_size = r.u32("body descriptor")? as usize;
            match (body_type, body_size) {
                (2, TD10_BODY_LEN) => false,
                (3, TD15_BODY_LEN) => true,
                _ => {
                    return Err(VerifyError::malformed(format!(
                        "v5 body type {body_type} of {body_size} bytes is not a TD report"
                    )))
                }
            }
        } else {
            false
        };
        let td_report = td_report(&mut r, td15)?;
        let signed = bytes.get(..r.pos).unwrap_or_default();

        let sig_len = r.u32("signature data length")? as usize;
        let sig_data = r.take(sig_len, "signature data")?;
        // Real quotes carry zero padding after the signature data: accept
        // exactly that, nothing else.
        if r.rest().iter().any(|b| *b != 0) {
            return Err(VerifyError::malformed(
                "non-zero bytes after the signature data",
            ));
        }

        let mut s = Reader {
            bytes: sig_data,
            pos: 0,
        };
        let quote_signature = s.take(64, "quote signature")?;
        let attestation_key = s.take(64, "attestation key")?;
        let cert_type = s.u16("certification data")?;
        let cert_len = s.u32("certification data")? as usize;
        let cert_data = s.take(cert_len, "certification data")?;
        if cert_type != CERT_DATA_QE_REPORT {
            return Err(VerifyError::malformed(format!(
                "certification data type {cert_type} (QE report certification data, 6, is required)"
            )));
        }
        if !s.rest().is_empty() {
            return Err(VerifyError::malformed(
                "trailing bytes in the signature data",
            ));
        }

        let mut c = Reader {
            bytes: cert_data,
            pos: 0,
        };
        let qe_report = c.take(QE_REPORT_LEN, "QE report")?;
        let qe_report_signature = c.take(64, "QE report signature")?;
        let auth_len = usize::from(c.u16("QE authentication data")?);
        let qe_auth_data = c.take(auth_len, "QE authentication data")?;
        let inner_type = c.u16("PCK certification data")?;
        let inner_len = c.u32("PCK certification data")? as usize;
        let inner = c.take(inner_len, "PCK certification data")?;
        if inner_type != CERT_DATA_PCK_CHAIN {
            return Err(VerifyError::malformed(format!(
                "inner certification data type {inner_type} (PCK chain, 5, is required)"
            )));
        }
        if !c.rest().is_empty() {
            return Err(VerifyError::malformed(
                "trailing bytes in the QE certification data",
            ));
        }

        Ok(Self {
            version,
            qe_svn,
            pce_svn,
            td_report,
            signed,
            quote_signature,
            attestation_key,
            qe_report,
            qe_report_signature,
            qe_auth_data,
            pck_chain_pem: inner,
            pck_chain_at: (inner.as_ptr() as usize).saturating_sub(bytes.as_ptr() as usize),
        })
    }
}

/// The fields of the QE's SGX report body that QE identity matching reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QeReport {
    pub(crate) miscselect: u32,
    pub(crate) attributes: [u8; 16],
    pub(crate) mrsigner: [u8; 32],
    pub(crate) isv_prod_id: u16,
    pub(crate) isv_svn: u16,
}

impl QeReport {
    /// Decodes the 384-byte SGX report body (Intel SDK `sgx_report_body_t`).
    pub(crate) fn parse(body: &[u8]) -> Result<Self, VerifyError> {
        if body.len() != QE_REPORT_LEN {
            return Err(VerifyError::malformed("QE report is not 384 bytes"));
        }
        let mut r = Reader {
            bytes: body,
            pos: 16,
        };
        let w = "QE report";
        let miscselect = r.u32(w)?;
        r.take(28, w)?;
        let attributes = r.array(w)?;
        r.take(32, w)?; // MRENCLAVE
        r.take(32, w)?;
        let mrsigner = r.array(w)?;
        r.take(96, w)?;
        let isv_prod_id = r.u16(w)?;
        let isv_svn = r.u16(w)?;
        Ok(Self {
            miscselect,
            attributes,
            mrsigner,
            isv_prod_id,
            isv_svn,
        })
    }
}
