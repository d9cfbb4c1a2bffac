//! The JSON the `verifier` prints: the CLI contract, rendered from typed claims.
//! Hex is lower case everywhere; instants are RFC 3339, UTC.

use attest_gate_core::{
    CertificateSummary, PlatformClaims, Rejection, VerifiedClaims, VerifyError,
};
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// RFC 3339 rendering of an instant (UTC).
pub fn instant(t: OffsetDateTime) -> Value {
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .map_or(Value::Null, Value::String)
}

fn hex_opt(bytes: Option<&[u8]>) -> Value {
    bytes.map_or(Value::Null, |b| Value::String(hex::encode(b)))
}

fn certificate(c: &CertificateSummary) -> Value {
    json!({
        "subject": c.subject,
        "serial": hex::encode(&c.serial),
        "not_before": instant(c.not_before),
        "not_after": instant(c.not_after),
        "sha256": hex::encode(c.sha256),
    })
}

/// The `claims` object of a successful verification.
pub fn claims(c: &VerifiedClaims) -> Value {
    let mut out = Map::new();
    out.insert("tee".into(), json!(c.tee.as_str()));
    out.insert("trust".into(), json!(c.trust.as_str()));
    out.insert("debug".into(), json!(c.debug));
    out.insert(
        "tcb_status".into(),
        c.tcb_status.map_or(Value::Null, |s| json!(s.as_str())),
    );
    let measurements: Map<String, Value> = c
        .measurements
        .iter()
        .map(|m| (m.name.clone(), json!(m.value.to_string())))
        .collect();
    out.insert("measurements".into(), Value::Object(measurements));
    match &c.platform {
        PlatformClaims::Nitro {
            module_id,
            digest,
            timestamp,
        } => {
            out.insert("module_id".into(), json!(module_id));
            out.insert("digest".into(), json!(digest));
            out.insert("timestamp".into(), instant(*timestamp));
            out.insert("user_data".into(), hex_opt(c.bound.user_data.as_deref()));
            out.insert("nonce".into(), hex_opt(c.bound.nonce.as_deref()));
            out.insert("public_key".into(), hex_opt(c.bound.public_key.as_deref()));
        }
        _ => {
            out.insert(
                "report_data".into(),
                hex_opt(c.bound.report_data.as_deref()),
            );
        }
    }
    out.insert(
        "chain".into(),
        Value::Array(c.chain.iter().map(certificate).collect()),
    );
    out.insert("verified_at".into(), instant(c.verified_at));
    out.insert(
        "evidence_sha384".into(),
        json!(hex::encode(c.evidence_sha384)),
    );
    Value::Object(out)
}

/// `{"verified": true, ...}`.
pub fn verified(c: &VerifiedClaims) -> Value {
    json!({
        "verified": true,
        "tee": c.tee.as_str(),
        "trust": c.trust.as_str(),
        "claims": claims(c),
    })
}

/// `{"verified": false, "error": {...}}` for a verification failure.
pub fn verify_failed(e: &VerifyError) -> Value {
    failure(e.code(), &e.to_string(), Vec::new())
}

/// `{"verified": false, ...}` for appraisal rejections; `error` is the first,
/// `reasons` lists them all.
pub fn rejected(reasons: &[Rejection]) -> Value {
    let all: Vec<Value> = reasons
        .iter()
        .map(|r| json!({"code": r.code(), "message": r.to_string()}))
        .collect();
    match reasons.first() {
        Some(first) => failure(first.code(), &first.to_string(), all),
        None => failure("rejected", "rejected", all),
    }
}

/// A failure with an explicit code (e.g. an unreadable bundle).
pub fn failure(code: &str, message: &str, reasons: Vec<Value>) -> Value {
    let error = json!({"code": code, "message": message});
    let reasons = if reasons.is_empty() {
        vec![error.clone()]
    } else {
        reasons
    };
    json!({"verified": false, "error": error, "reasons": reasons})
}
