//! What is signed, built only from a [`Grant`]: the access token's claims
//! (the protocol's [`AccessClaims`]) and the credential's database record;
//! and from a [`JwtSvidGrant`], a JWT-SVID's claims and record. Grants come
//! only from the decision module, so nothing here decides anything: it lays
//! out what was decided. Pure: no clock, no I/O.

use std::collections::BTreeMap;

use attest_gate_core::{TcbStatus, TrustKind, VerifiedClaims, Workload};
use attest_gate_protocol::claims::EAR_PROFILE;
use attest_gate_protocol::{AccessClaims, Confirmation, Ear, EarAppraisal};

use serde::{Deserialize, Serialize};

use crate::decision::{Grant, JwtSvidGrant};
use crate::store::CredentialRecord;

/// A JWT-SVID's `aud`: one audience as a string, several as an array
/// (RFC 7519 §4.1.3 allows both; a single string is what most OIDC
/// consumers expect).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Audience {
    /// One.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// The claims of a JWT-SVID (SPIFFE JWT-SVID §3): `sub` the SPIFFE ID,
/// `aud`, `exp`, plus `iss`, `iat` and `jti` (so OIDC consumers can find
/// the issuer's keys, and revocation and introspection can name it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JwtSvidClaims {
    /// The issuer URL.
    pub iss: String,
    /// The SPIFFE ID.
    pub sub: String,
    /// The audiences.
    pub aud: Audience,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Its ID.
    pub jti: String,
}

/// The JWT-SVID's claims for `grant`, issued by `issuer`.
pub(crate) fn jwt_svid_claims(grant: &JwtSvidGrant, issuer: &str) -> JwtSvidClaims {
    let aud = match grant.audiences() {
        [one] => Audience::One(one.clone()),
        all => Audience::Many(all.to_vec()),
    };
    JwtSvidClaims {
        iss: issuer.to_string(),
        sub: grant.subject().to_string(),
        aud,
        exp: grant.expires_at().unix_timestamp(),
        iat: grant.issued_at().unix_timestamp(),
        jti: grant.jti().to_string(),
    }
}

/// A JWT-SVID's database record: a credential of the access token's
/// session, with that token as its parent (so revoking the token, its
/// session, key, workload, model or a measurement revokes it too), no
/// scope, and its audiences space-separated.
pub(crate) fn jwt_svid_record(grant: &JwtSvidGrant) -> CredentialRecord {
    CredentialRecord {
        jti: grant.jti().to_string(),
        subject: grant.subject().to_string(),
        session_id: grant.session_id().to_string(),
        parent_jti: Some(grant.parent_jti().to_string()),
        workload: grant.workload().to_string(),
        jkt: grant.jkt().to_string(),
        scope: String::new(),
        audience: grant.audiences().join(" "),
        issued_at: grant.issued_at().unix_timestamp(),
        expires_at: grant.expires_at().unix_timestamp(),
        test_root: grant.test_root(),
        model_digest: grant.model_digest().to_string(),
        measurements: grant.registers().join(" "),
        depth: grant.depth(),
    }
}

/// `spiffe://<trust-domain>/<workload>/<instance>`.
pub(crate) fn spiffe_id(workload: &Workload, instance: &str) -> String {
    format!(
        "spiffe://{}/{}/{}",
        workload.grant.trust_domain, workload.grant.workload, instance
    )
}

/// The values of the registers the workload file constrains, hex, by name:
/// what the token's `provenance.measurements` shows.
pub(crate) fn measured(workload: &Workload, claims: &VerifiedClaims) -> BTreeMap<String, String> {
    workload
        .measurements
        .keys()
        .filter_map(|name| {
            claims
                .measurement(name)
                .map(|m| (name.clone(), m.to_string()))
        })
        .collect()
}

/// Every verified register's value, hex, in the TEE's order: what is
/// recorded per credential and matched by `kind: measurement` revocations,
/// whether or not the workload pins the register.
pub(crate) fn all_registers(claims: &VerifiedClaims) -> Vec<String> {
    attest_gate_core::verified_registers(claims)
        .into_iter()
        .map(|(_, value)| hex::encode(value))
        .collect()
}

/// AR4SI: a TEE whose evidence verified to a vendor root and matched
/// reference values is affirming in every claim it speaks to; a TCB status
/// other than UpToDate (accepted by the workload) or a test root is a warning.
pub(crate) fn ear(claims: &VerifiedClaims, workload: &Workload) -> Ear {
    let test_root = claims.trust() == TrustKind::TestRoot;
    let platform_warning =
        matches!(claims.tcb_status(), Some(status) if status != TcbStatus::UpToDate);
    // AR4SI values: 2 affirming; 32 warning; hardware 2 = genuine,
    // 32 = genuine with known vulnerabilities (or unrecognised root).
    let hardware = if test_root || platform_warning { 32 } else { 2 };
    let trustworthiness = [
        ("instance-identity", 2),
        ("configuration", 2),
        ("executables", 2),
        ("hardware", hardware),
        ("runtime-opaque", 2),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let appraisal = EarAppraisal {
        status: if hardware == 2 {
            "affirming"
        } else {
            "warning"
        }
        .to_string(),
        trustworthiness,
        policy_id: format!("measurements/{}@{}", workload.name, workload.version),
    };
    Ear {
        eat_profile: EAR_PROFILE.to_string(),
        verifier_id: BTreeMap::from([
            ("developer".to_string(), "attest-gate".to_string()),
            ("build".to_string(), env!("CARGO_PKG_VERSION").to_string()),
        ]),
        submods: BTreeMap::from([(claims.tee().to_string(), appraisal)]),
    }
}

/// The access token's claims for `grant`, issued by `issuer`.
pub(crate) fn access_claims(grant: &Grant, issuer: &str) -> AccessClaims {
    AccessClaims {
        iss: issuer.to_string(),
        sub: grant.subject(),
        aud: grant.audience().to_string(),
        iat: grant.issued_at().unix_timestamp(),
        nbf: grant.issued_at().unix_timestamp(),
        exp: grant.expires_at().unix_timestamp(),
        jti: grant.jti().to_string(),
        client_id: grant.workload().name.clone(),
        scope: grant.scopes().join(" "),
        cnf: Confirmation {
            jkt: grant.jkt().to_string(),
            enc_jkt: grant.encryption_jkt().map(str::to_string),
        },
        act_for: grant.act_for().to_string(),
        intent: grant.intent().clone(),
        provenance: grant.provenance().clone(),
        session: grant.session().clone(),
        act: grant.actor().cloned(),
        ear: grant.ear().clone(),
    }
}

/// The credential's database record for `grant`.
pub(crate) fn record(grant: &Grant) -> CredentialRecord {
    CredentialRecord {
        jti: grant.jti().to_string(),
        subject: grant.subject(),
        session_id: grant.session().id.clone(),
        parent_jti: grant.session().parent.clone(),
        workload: grant.workload().name.clone(),
        jkt: grant.jkt().to_string(),
        scope: grant.scopes().join(" "),
        audience: grant.audience().to_string(),
        issued_at: grant.issued_at().unix_timestamp(),
        expires_at: grant.expires_at().unix_timestamp(),
        test_root: grant.test_root(),
        model_digest: grant.provenance().model_digest.clone(),
        measurements: grant.registers().join(" "),
        depth: grant.depth(),
    }
}
