//! The JSON the `verifier` prints: the CLI contract, rendered from typed claims.
//! Hex is lower case everywhere; instants are RFC 3339, UTC.

use attest_gate_core::snp::{SnpClaims, Tcb, PLATFORM_INFO_BITS, POLICY_BITS};
use attest_gate_core::tdx::TdxClaims;
use attest_gate_core::{
    CertificateSummary, PlatformClaims, Rejection, VerifiedClaims, VerifyError,
};
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// RFC 3339 rendering of an instant (UTC).
pub(crate) fn instant(t: OffsetDateTime) -> Value {
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
pub(crate) fn claims(c: &VerifiedClaims) -> Value {
    let mut out = Map::new();
    out.insert("tee".into(), json!(c.tee().as_str()));
    out.insert("trust".into(), json!(c.trust().as_str()));
    out.insert("debug".into(), json!(c.debug()));
    out.insert(
        "tcb_status".into(),
        c.tcb_status().map_or(Value::Null, |s| json!(s.as_str())),
    );
    let measurements: Map<String, Value> = c
        .measurements()
        .iter()
        .map(|m| (m.name.clone(), json!(m.value.to_string())))
        .collect();
    out.insert("measurements".into(), Value::Object(measurements));
    match &c.platform() {
        PlatformClaims::Nitro {
            module_id,
            digest,
            timestamp,
        } => {
            out.insert("module_id".into(), json!(module_id));
            out.insert("digest".into(), json!(digest));
            out.insert("timestamp".into(), instant(*timestamp));
            out.insert("user_data".into(), hex_opt(c.bound().user_data.as_deref()));
            out.insert("nonce".into(), hex_opt(c.bound().nonce.as_deref()));
            out.insert(
                "public_key".into(),
                hex_opt(c.bound().public_key.as_deref()),
            );
        }
        PlatformClaims::Snp(snp) => {
            out.insert(
                "report_data".into(),
                hex_opt(c.bound().report_data.as_deref()),
            );
            snp_claims(snp, &mut out);
        }
        PlatformClaims::Tdx(tdx) => {
            out.insert(
                "report_data".into(),
                hex_opt(c.bound().report_data.as_deref()),
            );
            tdx_claims(tdx, &mut out);
        }
        _ => {
            out.insert(
                "report_data".into(),
                hex_opt(c.bound().report_data.as_deref()),
            );
        }
    }
    out.insert(
        "chain".into(),
        Value::Array(c.chain().iter().map(certificate).collect()),
    );
    out.insert("verified_at".into(), instant(c.verified_at()));
    out.insert(
        "evidence_sha384".into(),
        json!(hex::encode(c.evidence_sha384())),
    );
    Value::Object(out)
}

fn tdx_claims(t: &TdxClaims, out: &mut Map<String, Value>) {
    let a = &t.td_attributes;
    out.insert("quote_version".into(), json!(t.quote_version));
    out.insert(
        "td_attributes".into(),
        json!({
            "raw": hex::encode(a.raw.to_le_bytes()),
            "debug": a.debug,
            "sept_ve_disable": a.sept_ve_disable,
            "pks": a.pks,
            "key_locker": a.key_locker,
            "perfmon": a.perfmon,
        }),
    );
    out.insert("xfam".into(), json!(hex::encode(t.xfam)));
    out.insert("tee_tcb_svn".into(), json!(hex::encode(t.tee_tcb_svn)));
    out.insert(
        "seam_attributes".into(),
        json!(hex::encode(t.seam_attributes)),
    );
    out.insert("fmspc".into(), json!(hex::encode(t.fmspc)));
    out.insert("pce_id".into(), json!(hex::encode(t.pce_id)));
    out.insert("advisory_ids".into(), json!(t.advisory_ids));
    out.insert(
        "platform_tcb_status".into(),
        json!(t.platform_tcb_status.as_str()),
    );
    out.insert(
        "tdx_module_tcb_status".into(),
        t.tdx_module_tcb_status
            .map_or(Value::Null, |s| json!(s.as_str())),
    );
    out.insert("qe_tcb_status".into(), json!(t.qe_tcb_status.as_str()));
    out.insert("tcb_date".into(), instant(t.tcb_date));
    out.insert(
        "tcb_evaluation_data_number".into(),
        json!(t.tcb_evaluation_data_number),
    );
    out.insert(
        "collateral_validity".into(),
        json!({
            "not_before": instant(t.collateral_valid_from),
            "not_after": instant(t.collateral_valid_until),
        }),
    );
}

fn bits(raw: u64, names: &[(u32, &str)]) -> Value {
    let mut out = Map::new();
    for (bit, name) in names {
        out.insert((*name).into(), json!(raw >> bit & 1 == 1));
    }
    Value::Object(out)
}

fn tcb(t: &Tcb) -> Value {
    let mut out = Map::new();
    if let Some(fmc) = t.fmc {
        out.insert("fmc".into(), json!(fmc));
    }
    out.insert("bootloader".into(), json!(t.bootloader));
    out.insert("tee".into(), json!(t.tee));
    out.insert("snp".into(), json!(t.snp));
    out.insert("microcode".into(), json!(t.microcode));
    out.insert("raw".into(), json!(format!("{:016x}", t.raw)));
    Value::Object(out)
}

fn version(v: (u8, u8, u8)) -> Value {
    json!(format!("{}.{}.{}", v.0, v.1, v.2))
}

/// The SEV-SNP claims, decoded.
fn snp_claims(s: &SnpClaims, out: &mut Map<String, Value>) {
    let mut policy = Map::new();
    policy.insert("raw".into(), json!(format!("{:#x}", s.policy)));
    policy.insert("abi_major".into(), json!(s.policy >> 8 & 0xff));
    policy.insert("abi_minor".into(), json!(s.policy & 0xff));
    if let Value::Object(flags) = bits(s.policy, &POLICY_BITS) {
        policy.extend(flags);
    }
    let mut platform = Map::new();
    platform.insert("raw".into(), json!(format!("{:#x}", s.platform_info)));
    if let Value::Object(flags) = bits(s.platform_info, &PLATFORM_INFO_BITS) {
        platform.extend(flags);
    }
    let fields = [
        ("product", json!(s.product.as_str())),
        ("report_version", json!(s.report_version)),
        ("signing_key", json!(s.signing_key.as_str())),
        ("host_data", json!(hex::encode(s.host_data))),
        ("id_key_digest", json!(hex::encode(s.id_key_digest))),
        ("author_key_digest", json!(hex::encode(s.author_key_digest))),
        ("author_key_en", json!(s.author_key_en)),
        ("family_id", json!(hex::encode(s.family_id))),
        ("image_id", json!(hex::encode(s.image_id))),
        ("report_id", json!(hex::encode(s.report_id))),
        ("guest_svn", json!(s.guest_svn)),
        ("policy", Value::Object(policy)),
        ("vmpl", json!(s.vmpl)),
        ("platform_info", Value::Object(platform)),
        ("current_tcb", tcb(&s.current_tcb)),
        ("reported_tcb", tcb(&s.reported_tcb)),
        ("committed_tcb", tcb(&s.committed_tcb)),
        ("launch_tcb", tcb(&s.launch_tcb)),
        ("chip_id", json!(hex::encode(s.chip_id))),
        (
            "cpuid",
            s.cpuid.map_or(
                Value::Null,
                |(f, m, st)| json!({"family": f, "model": m, "stepping": st}),
            ),
        ),
        ("current_firmware", version(s.current_firmware)),
        ("committed_firmware", version(s.committed_firmware)),
        (
            "mitigation_vectors",
            s.mitigation_vectors.map_or(
                Value::Null,
                |(l, c)| json!({"launch": format!("{l:016x}"), "current": format!("{c:016x}")}),
            ),
        ),
        (
            "csp_id",
            s.csp_id.as_ref().map_or(Value::Null, |c| json!(c)),
        ),
        ("revocation_checked", json!(s.revocation_checked)),
    ];
    for (k, v) in fields {
        out.insert(k.into(), v);
    }
}

/// `{"verified": true, ...}`.
pub fn verified(c: &VerifiedClaims) -> Value {
    json!({
        "verified": true,
        "tee": c.tee().as_str(),
        "trust": c.trust().as_str(),
        "claims": claims(c),
    })
}

/// `{"verified": false, "error": {...}}` for a verification failure.
pub fn verify_failed(e: &VerifyError) -> Value {
    failure(e.code(), &e.to_string(), Vec::new())
}

/// `{"verified": false, ...}` for appraisal rejections; `error` is the first,
/// `reasons` lists them all.
/// Authentic evidence that appraisal rejected: the reasons, and the verified
/// claims they were judged on (so an operator sees, e.g., the TCB status).
pub fn rejected(reasons: &[Rejection], verified: &VerifiedClaims) -> Value {
    let all: Vec<Value> = reasons
        .iter()
        .map(|r| json!({"code": r.code(), "message": r.to_string()}))
        .collect();
    let mut out = match reasons.first() {
        Some(first) => failure(first.code(), &first.to_string(), all),
        None => failure("rejected", "rejected", all),
    };
    if let Some(obj) = out.as_object_mut() {
        obj.insert("claims".into(), claims(verified));
    }
    out
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
