//! Intel's signed TDX collateral: TCB info (`{"tcbInfo":{...},"signature":"..."}`)
//! and QE identity (`{"enclaveIdentity":{...},"signature":"..."}`), exactly
//! as Intel PCS serves them. The signature (ECDSA P-256, raw r ‖ s in hex)
//! covers the exact bytes of the inner JSON value, so that value is kept raw
//! and checked before anything in it is believed.

use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use serde::Deserialize;
use serde_json::value::RawValue;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::claims::TcbStatus;
use crate::error::VerifyError;

/// Largest signed collateral document accepted (real ones are a few KiB).
pub(crate) const MAX_COLLATERAL_JSON: usize = 256 * 1024;
/// Most TCB levels accepted in one list (Intel's hold a few dozen).
const MAX_LEVELS: usize = 512;

/// Which signed document, for messages and error codes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Document {
    TcbInfo,
    QeIdentity,
}

impl Document {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::TcbInfo => "TCB info",
            Self::QeIdentity => "QE identity",
        }
    }
}

fn bad(doc: Document, what: impl std::fmt::Display) -> VerifyError {
    VerifyError::malformed(format!("{}: {what}", doc.name()))
}

/// Splits a PCS response into (exact signed bytes, signature), whichever of
/// the two wrapper keys it uses.
fn signed_body(bytes: &[u8], doc: Document) -> Result<(&str, [u8; 64]), VerifyError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Wrapper<'a> {
        #[serde(borrow, rename = "tcbInfo")]
        tcb_info: Option<&'a RawValue>,
        #[serde(borrow, rename = "enclaveIdentity")]
        enclave_identity: Option<&'a RawValue>,
        signature: &'a str,
    }
    if bytes.len() > MAX_COLLATERAL_JSON {
        return Err(bad(doc, "larger than 256 KiB"));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| bad(doc, "not UTF-8"))?;
    let wrapper: Wrapper<'_> = serde_json::from_str(text).map_err(|e| bad(doc, e))?;
    let body = match doc {
        Document::TcbInfo => wrapper.tcb_info,
        Document::QeIdentity => wrapper.enclave_identity,
    }
    .ok_or_else(|| bad(doc, "the signed body is missing"))?;
    let signature = hex::decode(wrapper.signature)
        .ok()
        .and_then(|s| <[u8; 64]>::try_from(s).ok())
        .ok_or_else(|| bad(doc, "signature is not 64 hex-encoded bytes"))?;
    Ok((body.get(), signature))
}

/// Checks `signature` over `body` with the signing certificate's key.
fn check_signature(
    doc: Document,
    body: &str,
    signature: &[u8; 64],
    signer_public_key: &[u8],
) -> Result<(), VerifyError> {
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, signer_public_key)
        .verify(body.as_bytes(), signature)
        .map_err(|_| VerifyError::CollateralSignatureInvalid { what: doc.name() })
}

fn instant(doc: Document, s: &str) -> Result<OffsetDateTime, VerifyError> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|_| bad(doc, format!("bad date {s:?}")))
}

fn hex_array<const N: usize>(doc: Document, field: &str, s: &str) -> Result<[u8; N], VerifyError> {
    hex::decode(s)
        .ok()
        .and_then(|v| <[u8; N]>::try_from(v).ok())
        .ok_or_else(|| bad(doc, format!("{field} is not {N} hex-encoded bytes")))
}

fn status(doc: Document, s: &str) -> Result<TcbStatus, VerifyError> {
    s.parse()
        .map_err(|_| bad(doc, format!("unknown TCB status {s:?}")))
}

fn bounded<T>(doc: Document, levels: Vec<T>) -> Result<Vec<T>, VerifyError> {
    if levels.len() > MAX_LEVELS {
        return Err(bad(doc, "too many TCB levels"));
    }
    Ok(levels)
}

/// The validity window every signed document carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) issued: OffsetDateTime,
    pub(crate) next_update: OffsetDateTime,
}

impl Window {
    /// `collateral_expired` unless `issued <= at < next_update`.
    pub(crate) fn check(&self, doc: Document, at: OffsetDateTime) -> Result<(), VerifyError> {
        if at < self.issued || at >= self.next_update {
            return Err(VerifyError::CollateralExpired {
                what: doc.name(),
                issued: self.issued,
                next_update: self.next_update,
                at,
            });
        }
        Ok(())
    }
}

/// One level of a TCB-level list: the status applies to any platform at or above `tcb`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Level<T> {
    pub(crate) tcb: T,
    pub(crate) date: OffsetDateTime,
    pub(crate) status: TcbStatus,
    pub(crate) advisory_ids: Vec<String>,
}

/// The platform TCB a TDX TCB-info level names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlatformTcb {
    pub(crate) sgx: [u8; 16],
    pub(crate) pce_svn: u16,
    pub(crate) tdx: [u8; 16],
}

/// A TDX module signer and attributes (`tdxModule`, or one of `tdxModuleIdentities`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ModuleIdentity {
    /// `TDX_<version>` for identities, empty for the base `tdxModule`.
    pub(crate) id: String,
    pub(crate) mrsigner: [u8; 48],
    pub(crate) attributes: [u8; 8],
    pub(crate) attributes_mask: [u8; 8],
    /// Levels by the module's ISV SVN (identities only).
    pub(crate) levels: Vec<Level<u8>>,
}

/// A verified TDX TCB info (version 3, id `TDX`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TcbInfo {
    pub(crate) window: Window,
    pub(crate) fmspc: [u8; 6],
    pub(crate) pce_id: [u8; 2],
    pub(crate) evaluation_data_number: u32,
    pub(crate) tdx_module: ModuleIdentity,
    pub(crate) module_identities: Vec<ModuleIdentity>,
    pub(crate) levels: Vec<Level<PlatformTcb>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TcbInfoJson {
    id: String,
    version: u32,
    issue_date: String,
    next_update: String,
    fmspc: String,
    pce_id: String,
    tcb_evaluation_data_number: u32,
    tdx_module: ModuleJson,
    #[serde(default)]
    tdx_module_identities: Vec<ModuleJson>,
    tcb_levels: Vec<LevelJson<TcbJson>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModuleJson {
    #[serde(default)]
    id: String,
    mrsigner: String,
    attributes: String,
    attributes_mask: String,
    #[serde(default)]
    tcb_levels: Vec<LevelJson<IsvSvnJson>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LevelJson<T> {
    tcb: T,
    tcb_date: String,
    tcb_status: String,
    #[serde(rename = "advisoryIDs", default)]
    advisory_ids: Vec<String>,
}

#[derive(Deserialize)]
struct TcbJson {
    sgxtcbcomponents: Vec<ComponentJson>,
    pcesvn: u16,
    tdxtcbcomponents: Vec<ComponentJson>,
}

#[derive(Deserialize)]
struct ComponentJson {
    svn: u8,
}

#[derive(Deserialize)]
struct IsvSvnJson {
    isvsvn: u16,
}

fn level<J, T>(
    doc: Document,
    json: LevelJson<J>,
    tcb: impl FnOnce(J) -> Result<T, VerifyError>,
) -> Result<Level<T>, VerifyError> {
    Ok(Level {
        tcb: tcb(json.tcb)?,
        date: instant(doc, &json.tcb_date)?,
        status: status(doc, &json.tcb_status)?,
        advisory_ids: json.advisory_ids,
    })
}

fn components(doc: Document, list: Vec<ComponentJson>) -> Result<[u8; 16], VerifyError> {
    let svns: Vec<u8> = list.into_iter().map(|c| c.svn).collect();
    <[u8; 16]>::try_from(svns).map_err(|_| bad(doc, "a TCB level does not have 16 components"))
}

impl ModuleIdentity {
    fn from_json(json: ModuleJson) -> Result<Self, VerifyError> {
        let doc = Document::TcbInfo;
        Ok(Self {
            id: json.id,
            mrsigner: hex_array(doc, "mrsigner", &json.mrsigner)?,
            attributes: hex_array(doc, "attributes", &json.attributes)?,
            attributes_mask: hex_array(doc, "attributesMask", &json.attributes_mask)?,
            levels: bounded(doc, json.tcb_levels)?
                .into_iter()
                .map(|l| {
                    level(doc, l, |t: IsvSvnJson| {
                        u8::try_from(t.isvsvn).map_err(|_| bad(doc, "module isvsvn above 255"))
                    })
                })
                .collect::<Result<_, _>>()?,
        })
    }
}

impl TcbInfo {
    /// Parses a PCS `tcb_info.json`, checking its signature with the TCB
    /// signing key before reading anything else.
    pub(crate) fn verify(bytes: &[u8], signer_public_key: &[u8]) -> Result<Self, VerifyError> {
        let doc = Document::TcbInfo;
        let (body, signature) = signed_body(bytes, doc)?;
        check_signature(doc, body, &signature, signer_public_key)?;
        let json: TcbInfoJson = serde_json::from_str(body).map_err(|e| bad(doc, e))?;
        if json.id != "TDX" || json.version != 3 {
            return Err(VerifyError::CollateralMismatch {
                reason: format!(
                    "TCB info is {} version {}, not TDX version 3",
                    json.id, json.version
                ),
            });
        }
        Ok(Self {
            window: Window {
                issued: instant(doc, &json.issue_date)?,
                next_update: instant(doc, &json.next_update)?,
            },
            fmspc: hex_array(doc, "fmspc", &json.fmspc)?,
            pce_id: hex_array(doc, "pceId", &json.pce_id)?,
            evaluation_data_number: json.tcb_evaluation_data_number,
            tdx_module: ModuleIdentity::from_json(json.tdx_module)?,
            module_identities: bounded(doc, json.tdx_module_identities)?
                .into_iter()
                .map(ModuleIdentity::from_json)
                .collect::<Result<_, _>>()?,
            levels: bounded(doc, json.tcb_levels)?
                .into_iter()
                .map(|l| {
                    level(doc, l, |t: TcbJson| {
                        Ok(PlatformTcb {
                            sgx: components(doc, t.sgxtcbcomponents)?,
                            pce_svn: t.pcesvn,
                            tdx: components(doc, t.tdxtcbcomponents)?,
                        })
                    })
                })
                .collect::<Result<_, _>>()?,
        })
    }
}

/// A verified QE identity (version 2, id `TD_QE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QeIdentity {
    pub(crate) window: Window,
    pub(crate) miscselect: u32,
    pub(crate) miscselect_mask: u32,
    pub(crate) attributes: [u8; 16],
    pub(crate) attributes_mask: [u8; 16],
    pub(crate) mrsigner: [u8; 32],
    pub(crate) isv_prod_id: u16,
    pub(crate) levels: Vec<Level<u16>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QeIdentityJson {
    id: String,
    version: u32,
    issue_date: String,
    next_update: String,
    miscselect: String,
    miscselect_mask: String,
    attributes: String,
    attributes_mask: String,
    mrsigner: String,
    isvprodid: u16,
    tcb_levels: Vec<LevelJson<IsvSvnJson>>,
}

impl QeIdentity {
    /// Parses a PCS `qe_identity.json`, checking its signature first.
    pub(crate) fn verify(bytes: &[u8], signer_public_key: &[u8]) -> Result<Self, VerifyError> {
        let doc = Document::QeIdentity;
        let (body, signature) = signed_body(bytes, doc)?;
        check_signature(doc, body, &signature, signer_public_key)?;
        let json: QeIdentityJson = serde_json::from_str(body).map_err(|e| bad(doc, e))?;
        if json.id != "TD_QE" || json.version != 2 {
            return Err(VerifyError::CollateralMismatch {
                reason: format!(
                    "QE identity is {} version {}, not TD_QE version 2",
                    json.id, json.version
                ),
            });
        }
        Ok(Self {
            window: Window {
                issued: instant(doc, &json.issue_date)?,
                next_update: instant(doc, &json.next_update)?,
            },
            // Little-endian, as the QE report carries it (Intel QVL, go-tdx-guest).
            miscselect: u32::from_le_bytes(hex_array(doc, "miscselect", &json.miscselect)?),
            miscselect_mask: u32::from_le_bytes(hex_array(
                doc,
                "miscselectMask",
                &json.miscselect_mask,
            )?),
            attributes: hex_array(doc, "attributes", &json.attributes)?,
            attributes_mask: hex_array(doc, "attributesMask", &json.attributes_mask)?,
            mrsigner: hex_array(doc, "mrsigner", &json.mrsigner)?,
            isv_prod_id: json.isvprodid,
            levels: bounded(doc, json.tcb_levels)?
                .into_iter()
                .map(|l| level(doc, l, |t: IsvSvnJson| Ok(t.isvsvn)))
                .collect::<Result<_, _>>()?,
        })
    }
}
