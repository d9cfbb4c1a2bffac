//! The Nitro attestation document payload, parsed exactly as AWS specifies
//! (aws-nitro-enclaves-nsm-api, "attestation_process.md" §3.2.2): required
//! fields present with the right CBOR types, values inside their bounds,
//! no unknown or duplicate keys, no trailing bytes.

use ciborium::value::{Integer, Value};
use time::OffsetDateTime;

use crate::error::VerifyError;

/// The only digest function Nitro uses for PCRs.
pub(crate) const DIGEST_SHA384: &str = "SHA384";
/// PCR length for SHA-384.
const PCR_LEN: usize = 48;
/// PCR indices are 0..32.
const PCR_INDEX_LIMIT: i128 = 32;
/// Certificates are 1..=1024 bytes of DER.
const MAX_CERT_LEN: usize = 1024;
/// A CA bundle longer than this is not a Nitro bundle (real ones have 4).
const MAX_CABUNDLE_LEN: usize = 16;
const MAX_PUBLIC_KEY_LEN: usize = 1024;
const MAX_USER_DATA_LEN: usize = 512;
const MAX_NONCE_LEN: usize = 512;

/// A syntactically valid, not yet authenticated, attestation document.
#[derive(Debug, Clone)]
pub(crate) struct AttestationDocument {
    pub(crate) module_id: String,
    pub(crate) digest: String,
    pub(crate) timestamp: OffsetDateTime,
    /// (index, value), ascending by index.
    pub(crate) pcrs: Vec<(u8, Vec<u8>)>,
    pub(crate) certificate: Vec<u8>,
    pub(crate) cabundle: Vec<Vec<u8>>,
    pub(crate) public_key: Option<Vec<u8>>,
    pub(crate) user_data: Option<Vec<u8>>,
    pub(crate) nonce: Option<Vec<u8>>,
}

#[derive(Default)]
struct Fields {
    module_id: Option<Value>,
    digest: Option<Value>,
    timestamp: Option<Value>,
    pcrs: Option<Value>,
    certificate: Option<Value>,
    cabundle: Option<Value>,
    public_key: Option<Value>,
    user_data: Option<Value>,
    nonce: Option<Value>,
}

impl AttestationDocument {
    /// Parses the CBOR payload of the COSE_Sign1.
    pub(crate) fn parse(payload: &[u8]) -> Result<Self, VerifyError> {
        let mut reader = payload;
        let value: Value = ciborium::de::from_reader(&mut reader)
            .map_err(|e| VerifyError::malformed(format!("attestation document CBOR: {e}")))?;
        if !reader.is_empty() {
            return Err(VerifyError::malformed(
                "trailing bytes after the attestation document",
            ));
        }
        let Value::Map(entries) = value else {
            return Err(VerifyError::malformed(
                "attestation document is not a CBOR map",
            ));
        };

        let mut f = Fields::default();
        for (key, value) in entries {
            let Value::Text(key) = key else {
                return Err(VerifyError::malformed(
                    "attestation document key is not text",
                ));
            };
            let slot = match key.as_str() {
                "module_id" => &mut f.module_id,
                "digest" => &mut f.digest,
                "timestamp" => &mut f.timestamp,
                "pcrs" => &mut f.pcrs,
                "certificate" => &mut f.certificate,
                "cabundle" => &mut f.cabundle,
                "public_key" => &mut f.public_key,
                "user_data" => &mut f.user_data,
                "nonce" => &mut f.nonce,
                _ => {
                    return Err(VerifyError::malformed(format!(
                        "unknown attestation document field {key:?}"
                    )))
                }
            };
            if slot.replace(value).is_some() {
                return Err(VerifyError::malformed(format!(
                    "duplicate attestation document field {key:?}"
                )));
            }
        }

        let module_id = text(required(f.module_id, "module_id")?, "module_id")?;
        if module_id.is_empty() {
            return Err(out_of_range("module_id", "must not be empty".into()));
        }
        let digest = text(required(f.digest, "digest")?, "digest")?;
        if digest != DIGEST_SHA384 {
            return Err(VerifyError::UnsupportedDigest {
                found: digest,
                expected: DIGEST_SHA384,
            });
        }
        let timestamp = timestamp(required(f.timestamp, "timestamp")?)?;
        let pcrs = pcrs(required(f.pcrs, "pcrs")?)?;
        let certificate = cert(required(f.certificate, "certificate")?, "certificate")?;
        let cabundle = cabundle(required(f.cabundle, "cabundle")?)?;
        let public_key = optional_bytes(f.public_key, "public_key", 1, MAX_PUBLIC_KEY_LEN)?;
        let user_data = optional_bytes(f.user_data, "user_data", 0, MAX_USER_DATA_LEN)?;
        let nonce = optional_bytes(f.nonce, "nonce", 0, MAX_NONCE_LEN)?;

        Ok(Self {
            module_id,
            digest,
            timestamp,
            pcrs,
            certificate,
            cabundle,
            public_key,
            user_data,
            nonce,
        })
    }
}

fn required(value: Option<Value>, field: &'static str) -> Result<Value, VerifyError> {
    match value {
        Some(Value::Null) | None => Err(VerifyError::malformed(format!(
            "required field {field} is missing"
        ))),
        Some(v) => Ok(v),
    }
}

fn out_of_range(field: &'static str, reason: String) -> VerifyError {
    VerifyError::FieldOutOfRange { field, reason }
}

fn text(value: Value, field: &'static str) -> Result<String, VerifyError> {
    match value {
        Value::Text(s) => Ok(s),
        _ => Err(VerifyError::malformed(format!(
            "{field} is not a text string"
        ))),
    }
}

fn bytes(value: Value, field: &'static str) -> Result<Vec<u8>, VerifyError> {
    match value {
        Value::Bytes(b) => Ok(b),
        _ => Err(VerifyError::malformed(format!(
            "{field} is not a byte string"
        ))),
    }
}

fn bounded(
    b: Vec<u8>,
    field: &'static str,
    min: usize,
    max: usize,
) -> Result<Vec<u8>, VerifyError> {
    if b.len() < min || b.len() > max {
        return Err(out_of_range(
            field,
            format!("length {} not in {min}..={max}", b.len()),
        ));
    }
    Ok(b)
}

fn cert(value: Value, field: &'static str) -> Result<Vec<u8>, VerifyError> {
    bounded(bytes(value, field)?, field, 1, MAX_CERT_LEN)
}

fn optional_bytes(
    value: Option<Value>,
    field: &'static str,
    min: usize,
    max: usize,
) -> Result<Option<Vec<u8>>, VerifyError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => bounded(bytes(v, field)?, field, min, max).map(Some),
    }
}

fn timestamp(value: Value) -> Result<OffsetDateTime, VerifyError> {
    let Value::Integer(i) = value else {
        return Err(VerifyError::malformed("timestamp is not an integer"));
    };
    let ms = i128::from(i);
    if ms <= 0 {
        return Err(out_of_range("timestamp", "must be positive".into()));
    }
    OffsetDateTime::from_unix_timestamp_nanos(ms.saturating_mul(1_000_000))
        .map_err(|_| out_of_range("timestamp", "not a representable instant".into()))
}

fn pcrs(value: Value) -> Result<Vec<(u8, Vec<u8>)>, VerifyError> {
    let Value::Map(entries) = value else {
        return Err(VerifyError::malformed("pcrs is not a map"));
    };
    if entries.is_empty() || entries.len() > PCR_INDEX_LIMIT as usize {
        return Err(out_of_range(
            "pcrs",
            format!("{} entries, expected 1..=32", entries.len()),
        ));
    }
    let mut out: Vec<(u8, Vec<u8>)> = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        let Value::Integer(index) = key else {
            return Err(VerifyError::malformed("PCR index is not an integer"));
        };
        let index_wide = i128::from(index);
        let index = pcr_index(index)?;
        let Value::Bytes(value) = value else {
            return Err(VerifyError::InvalidPcr {
                index: index_wide,
                reason: "value is not a byte string",
            });
        };
        if value.len() != PCR_LEN {
            return Err(VerifyError::InvalidPcr {
                index: index_wide,
                reason: "value is not 48 bytes (SHA-384)",
            });
        }
        if out.iter().any(|(i, _)| *i == index) {
            return Err(VerifyError::malformed(format!(
                "duplicate PCR index {index}"
            )));
        }
        out.push((index, value));
    }
    out.sort_by_key(|(i, _)| *i);
    Ok(out)
}

fn pcr_index(index: Integer) -> Result<u8, VerifyError> {
    let wide = i128::from(index);
    if !(0..PCR_INDEX_LIMIT).contains(&wide) {
        return Err(VerifyError::InvalidPcr {
            index: wide,
            reason: "index outside 0..32",
        });
    }
    u8::try_from(wide).map_err(|_| VerifyError::InvalidPcr {
        index: wide,
        reason: "index outside 0..32",
    })
}

fn cabundle(value: Value) -> Result<Vec<Vec<u8>>, VerifyError> {
    let Value::Array(items) = value else {
        return Err(VerifyError::malformed("cabundle is not an array"));
    };
    if items.is_empty() || items.len() > MAX_CABUNDLE_LEN {
        return Err(out_of_range(
            "cabundle",
            format!(
                "{} certificates, expected 1..={MAX_CABUNDLE_LEN}",
                items.len()
            ),
        ));
    }
    items.into_iter().map(|v| cert(v, "cabundle")).collect()
}
