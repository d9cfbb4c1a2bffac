//! Request decoding: an `AttestRequest` as JSON becomes validated, decoded
//! bytes (`Parsed`) before any decision. Base64 in any of the four common
//! alphabets is accepted here and nowhere else; what is stored and judged
//! later is the decoded bytes, so no later reader can misread them.

use attest_gate_core::{AgentKey, Collateral, ModelDigest, TeeKind};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;

use super::{AttestRequest, IntentRequest};
use crate::ca::check_csr;
use crate::error::{ServiceCode, ServiceError};
use crate::service::MAX_FIELD_LEN;

/// Most scopes one request may ask for.
const MAX_SCOPES: usize = 32;
/// Most collateral files one request may carry.
const MAX_COLLATERAL_FILES: usize = 16;

pub(crate) fn decode_b64(what: &str, text: &str) -> Result<Vec<u8>, ServiceError> {
    let text = text.trim();
    [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
        .ok_or_else(|| {
            ServiceError::new(
                ServiceCode::MalformedRequest,
                format!("`{what}` is not base64"),
            )
        })
}

fn check_field(
    what: &str,
    value: &str,
    allowed: impl Fn(char) -> bool,
) -> Result<(), ServiceError> {
    if value.is_empty() || value.len() > MAX_FIELD_LEN || !value.chars().all(allowed) {
        return Err(ServiceError::new(
            ServiceCode::MalformedRequest,
            format!("`{what}` must be 1 to {MAX_FIELD_LEN} allowed characters"),
        ));
    }
    Ok(())
}

fn id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._-@+".contains(c)
}

/// `system`, `user:<id>` or `service:<id>`.
fn check_principal(p: &str) -> Result<(), ServiceError> {
    let ok = p == "system"
        || ["user:", "service:"].iter().any(|prefix| {
            p.strip_prefix(prefix)
                .is_some_and(|id| !id.is_empty() && id.len() <= 128 && id.chars().all(id_char))
        });
    if ok {
        Ok(())
    } else {
        Err(ServiceError::new(
            ServiceCode::MalformedRequest,
            "`principal` must be `system`, `user:<id>` or `service:<id>`",
        ))
    }
}

fn check_intent(intent: &IntentRequest) -> Result<(), ServiceError> {
    check_field("intent.task_id", &intent.task_id, |c| {
        !c.is_control() && c != ' '
    })?;
    check_field("intent.audience", &intent.audience, |c| {
        c.is_ascii_graphic()
    })?;
    if intent.scopes.len() > MAX_SCOPES {
        return Err(ServiceError::new(
            ServiceCode::MalformedRequest,
            format!("at most {MAX_SCOPES} scopes"),
        ));
    }
    for scope in &intent.scopes {
        check_field("intent.scopes", scope, |c| {
            c.is_ascii_alphanumeric() || ":._/-".contains(c)
        })?;
    }
    Ok(())
}

fn parse_csr(text: &str) -> Result<Vec<u8>, ServiceError> {
    if text.contains("-----BEGIN") {
        pem::parse(text)
            .ok()
            .filter(|p| p.tag() == "CERTIFICATE REQUEST" || p.tag() == "NEW CERTIFICATE REQUEST")
            .map(pem::Pem::into_contents)
            .ok_or_else(|| {
                ServiceError::new(
                    ServiceCode::CsrInvalid,
                    "`csr` is not a PEM certificate request",
                )
            })
    } else {
        decode_b64("csr", text)
    }
}

/// The decryption-only key: EC P-256 (what the JWE of a released secret
/// uses), and never the signing key itself.
fn parse_encryption_key(jwk: &serde_json::Value, key: &AgentKey) -> Result<AgentKey, ServiceError> {
    let invalid = |m: String| ServiceError::new(ServiceCode::InvalidPublicKey, m);
    let encryption =
        AgentKey::from_jwk(jwk).map_err(|e| invalid(format!("`encryption_key`: {e}")))?;
    if !matches!(encryption, AgentKey::P256 { .. }) {
        return Err(invalid("`encryption_key` must be an EC P-256 key".into()));
    }
    if encryption.thumbprint() == key.thumbprint() {
        return Err(invalid(
            "`encryption_key` must not be the signing key".into(),
        ));
    }
    Ok(encryption)
}

/// A parsed, well-formed attestation request.
pub(crate) struct Parsed {
    pub(crate) tee: TeeKind,
    pub(crate) evidence: Vec<u8>,
    pub(crate) collateral: Collateral,
    pub(crate) nonce: Vec<u8>,
    pub(crate) key: AgentKey,
    pub(crate) encryption_key: Option<AgentKey>,
    pub(crate) model: ModelDigest,
    pub(crate) csr: Option<Vec<u8>>,
}

pub(crate) fn parse(req: &AttestRequest) -> Result<Parsed, ServiceError> {
    let tee: TeeKind = req.tee.parse().map_err(|e: attest_gate_core::UnknownTee| {
        ServiceError::new(ServiceCode::MalformedRequest, e.to_string())
    })?;
    let evidence = decode_b64("evidence", &req.evidence)?;
    if req.collateral.len() > MAX_COLLATERAL_FILES {
        return Err(ServiceError::new(
            ServiceCode::MalformedRequest,
            format!("at most {MAX_COLLATERAL_FILES} collateral files"),
        ));
    }
    let mut items = Vec::new();
    for (name, b64) in &req.collateral {
        check_field("collateral name", name, id_char)?;
        items.push((name.clone(), decode_b64("collateral", b64)?));
    }
    let nonce = URL_SAFE_NO_PAD.decode(req.nonce.trim()).map_err(|_| {
        ServiceError::new(ServiceCode::MalformedRequest, "`nonce` is not base64url")
    })?;
    let key = AgentKey::from_jwk(&req.public_key)
        .map_err(|e| ServiceError::new(ServiceCode::InvalidPublicKey, e.to_string()))?;
    let encryption_key = req
        .encryption_key
        .as_ref()
        .map(|jwk| parse_encryption_key(jwk, &key))
        .transpose()?;
    let model = ModelDigest::from_hex(req.model_digest.trim()).ok_or_else(|| {
        ServiceError::new(
            ServiceCode::MalformedRequest,
            "`model_digest` must be 96 hex digits (SHA-384)",
        )
    })?;
    check_principal(&req.principal)?;
    check_intent(&req.intent)?;
    if req.ttl_seconds == Some(0) {
        return Err(ServiceError::new(
            ServiceCode::MalformedRequest,
            "`ttl_seconds` must be positive",
        ));
    }
    let csr = req.csr.as_deref().map(parse_csr).transpose()?;
    Ok(Parsed {
        tee,
        evidence,
        collateral: Collateral::from_items(items),
        nonce,
        key,
        encryption_key,
        model,
        csr,
    })
}

/// Decodes and checks an attestation request body as `POST /v1/attest` does
/// before any verification (what the fuzz target and property tests drive).
/// Also the CSR's parse and key check. Bad input is a 400 error, never a panic.
pub fn check_request_body(body: &[u8]) -> Result<AttestRequest, ServiceError> {
    let req: AttestRequest = serde_json::from_slice(body)
        .map_err(|e| ServiceError::new(ServiceCode::MalformedRequest, e.to_string()))?;
    let parsed = parse(&req)?;
    if let Some(der) = &parsed.csr {
        check_csr(der, &parsed.key).map_err(|e| ServiceError::from(&e))?;
    }
    Ok(req)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn valid_body() -> serde_json::Value {
        serde_json::json!({
            "tee": "tdx",
            "evidence": "AAAA",
            "collateral": {"tcb_info.json": "e30="},
            "nonce": "AAAA",
            "public_key": {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            "model_digest": "00".repeat(48),
            "principal": "user:alice",
            "intent": {"task_id": "t", "scopes": ["a:b"], "audience": "https://rp"},
        })
    }

    #[test]
    fn a_well_formed_body_passes_and_each_defect_is_a_400() {
        let body = valid_body();
        check_request_body(body.to_string().as_bytes()).unwrap();
        for (field, value) in [
            ("principal", serde_json::json!("user:")),
            ("principal", serde_json::json!("user:a b")),
            ("model_digest", serde_json::json!("00")),
            ("tee", serde_json::json!("TDX!")),
            ("ttl_seconds", serde_json::json!(0)),
            ("csr", serde_json::json!("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")),
        ] {
            let mut bad = body.clone();
            bad[field] = value;
            let e = check_request_body(bad.to_string().as_bytes()).unwrap_err();
            assert_eq!(e.code().status(), axum::http::StatusCode::BAD_REQUEST, "{field}");
        }
        let mut many = body.clone();
        many["intent"]["scopes"] = serde_json::json!(vec!["s"; MAX_SCOPES + 1]);
        assert!(check_request_body(many.to_string().as_bytes()).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = check_request_body(&bytes);
        }

        #[test]
        fn mutated_bodies_never_panic(position in 0usize..1024, byte in any::<u8>()) {
            let mut body = valid_body().to_string().into_bytes();
            let at = position % body.len();
            body[at] = byte;
            let _ = check_request_body(&body);
        }
    }
}
