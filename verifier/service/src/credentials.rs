//! What an access token says: the claims of RFC 9068 (`typ: at+jwt`), the
//! DPoP key binding of RFC 9449 (`cnf.jkt`), Attest Gate's four identity
//! claims (`act_for`, `intent`, `provenance`, `session`), and the appraisal in
//! the EAR vocabulary (draft-ietf-rats-ear, AR4SI trustworthiness vector).
//! Pure: the caller supplies the time, identifiers and keys.

use std::collections::BTreeMap;

use attest_gate_core::{ModelDigest, TcbStatus, TrustKind, VerifiedClaims, Workload};
use serde::Serialize;
use time::OffsetDateTime;

/// The EAR profile this service emits.
pub const EAR_PROFILE: &str = "tag:github.com,2023:veraison/ear";

/// The `intent` claim: what the agent declared it is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Intent {
    /// The task identifier.
    pub task_id: String,
    /// The scopes it asked for (the granted ones are in `scope`).
    pub requested_scopes: Vec<String>,
    /// The audience it asked for.
    pub audience: String,
}

/// The `provenance` claim: what was attested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Provenance {
    /// `nitro`, `tdx` or `snp`.
    pub tee: String,
    /// The workload (measurements file) name.
    pub workload: String,
    /// Its version.
    pub workload_version: String,
    /// The registers the workload file constrains, hex.
    pub measurements: BTreeMap<String, String>,
    /// SHA-384 of the model served, hex.
    pub model_digest: String,
    /// The platform's TCB status, where the TEE has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcb_status: Option<String>,
    /// Whether the TEE runs in debug mode (only workloads that allow it).
    pub debug: bool,
    /// SHA-384 of the exact evidence bytes, hex.
    pub evidence_sha384: String,
    /// True when the evidence chained to a test root (`--dev`): not a
    /// production attestation.
    pub test_root: bool,
}

/// The `session` claim: where this credential sits in a delegation chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Session {
    /// The session identifier (shared by a chain).
    pub id: String,
    /// The `jti` of the credential this one was delegated from.
    pub parent: Option<String>,
    /// SPIFFE IDs from the root agent to this one.
    pub chain: Vec<String>,
}

/// `cnf`: the confirmation key (RFC 7800 / RFC 9449).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Confirmation {
    /// The agent key's RFC 7638 thumbprint.
    pub jkt: String,
}

/// One EAR submodule's appraisal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EarAppraisal {
    /// `affirming` or `warning`.
    #[serde(rename = "ear.status")]
    pub status: &'static str,
    /// The AR4SI trustworthiness vector.
    #[serde(rename = "ear.trustworthiness-vector")]
    pub trustworthiness: BTreeMap<&'static str, i8>,
    /// Which reference values appraised it.
    #[serde(rename = "ear.appraisal-policy-id")]
    pub policy_id: String,
}

/// The EAR (EAT Attestation Result) carried in the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ear {
    /// The EAR profile.
    pub eat_profile: &'static str,
    /// The verifier that appraised.
    #[serde(rename = "ear.verifier-id")]
    pub verifier_id: BTreeMap<&'static str, &'static str>,
    /// Appraisals by submodule (the TEE kind).
    pub submods: BTreeMap<String, EarAppraisal>,
}

/// The access token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessClaims {
    /// The verifier's issuer URL.
    pub iss: String,
    /// SPIFFE ID: `spiffe://<trust-domain>/<workload>/<instance>`.
    pub sub: String,
    /// The relying party.
    pub aud: String,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Expires.
    pub exp: i64,
    /// Unique token ID.
    pub jti: String,
    /// OAuth client (the workload), RFC 9068.
    pub client_id: String,
    /// Granted scopes, space-separated.
    pub scope: String,
    /// The key the token is bound to.
    pub cnf: Confirmation,
    /// On whose behalf the agent acts.
    pub act_for: String,
    /// What it declared it is doing.
    pub intent: Intent,
    /// What was attested.
    pub provenance: Provenance,
    /// Its session and delegation chain.
    pub session: Session,
    /// The appraisal, for RATS tooling.
    pub ear: Ear,
}

/// AR4SI: a TEE whose evidence verified to a vendor root and matched
/// reference values is affirming in every claim it speaks to; a TCB status
/// other than UpToDate (accepted by the workload) or a test root is a warning.
fn ear_appraisal(claims: &VerifiedClaims, workload: &Workload) -> EarAppraisal {
    let test_root = claims.trust == TrustKind::TestRoot;
    let platform_warning =
        matches!(claims.tcb_status, Some(status) if status != TcbStatus::UpToDate);
    // AR4SI values: 2 affirming; 32 warning; hardware 2 = genuine,
    // 32 = genuine with known vulnerabilities (or unrecognised root).
    let hardware = if test_root || platform_warning { 32 } else { 2 };
    let trustworthiness = BTreeMap::from([
        ("instance-identity", 2),
        ("configuration", 2),
        ("executables", 2),
        ("hardware", hardware),
        ("runtime-opaque", 2),
    ]);
    EarAppraisal {
        status: if hardware == 2 {
            "affirming"
        } else {
            "warning"
        },
        trustworthiness,
        policy_id: format!("measurements/{}@{}", workload.name, workload.version),
    }
}

/// Everything decided before a token is minted.
#[derive(Debug, Clone)]
pub struct Grant<'a> {
    /// The verified claims.
    pub claims: &'a VerifiedClaims,
    /// The workload they matched.
    pub workload: &'a Workload,
    /// The model served.
    pub model: &'a ModelDigest,
    /// Issuer URL.
    pub issuer: &'a str,
    /// SPIFFE instance segment.
    pub instance: &'a str,
    /// Granted scopes.
    pub scopes: &'a [String],
    /// Audience.
    pub audience: &'a str,
    /// `act_for`.
    pub act_for: &'a str,
    /// Declared intent.
    pub intent: Intent,
    /// Agent key thumbprint.
    pub jkt: String,
    /// Token ID.
    pub jti: String,
    /// Session.
    pub session: Session,
    /// Issued at.
    pub now: OffsetDateTime,
    /// Expires.
    pub expires_at: OffsetDateTime,
}

/// `spiffe://<trust-domain>/<workload>/<instance>`.
pub fn spiffe_id(workload: &Workload, instance: &str) -> String {
    format!(
        "spiffe://{}/{}/{}",
        workload.grant.trust_domain, workload.grant.workload, instance
    )
}

/// The values of the registers the workload file constrains, hex, by name.
pub fn measured(workload: &Workload, claims: &VerifiedClaims) -> BTreeMap<String, String> {
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
pub fn all_registers(claims: &VerifiedClaims) -> Vec<String> {
    attest_gate_core::verified_registers(claims)
        .into_iter()
        .map(|(_, value)| hex::encode(value))
        .collect()
}

impl Grant<'_> {
    /// The token's claims.
    pub fn access_claims(&self) -> AccessClaims {
        let measurements = measured(self.workload, self.claims);
        let tee = self.claims.tee.to_string();
        AccessClaims {
            iss: self.issuer.to_string(),
            sub: spiffe_id(self.workload, self.instance),
            aud: self.audience.to_string(),
            iat: self.now.unix_timestamp(),
            nbf: self.now.unix_timestamp(),
            exp: self.expires_at.unix_timestamp(),
            jti: self.jti.clone(),
            client_id: self.workload.name.clone(),
            scope: self.scopes.join(" "),
            cnf: Confirmation {
                jkt: self.jkt.clone(),
            },
            act_for: self.act_for.to_string(),
            intent: self.intent.clone(),
            provenance: Provenance {
                tee: tee.clone(),
                workload: self.workload.name.clone(),
                workload_version: self.workload.version.clone(),
                measurements,
                model_digest: self.model.to_hex(),
                tcb_status: self.claims.tcb_status.map(|s| s.to_string()),
                debug: self.claims.debug,
                evidence_sha384: hex::encode(self.claims.evidence_sha384),
                test_root: self.claims.trust == TrustKind::TestRoot,
            },
            session: self.session.clone(),
            ear: Ear {
                eat_profile: EAR_PROFILE,
                verifier_id: BTreeMap::from([
                    ("developer", "attest-gate"),
                    ("build", env!("CARGO_PKG_VERSION")),
                ]),
                submods: BTreeMap::from([(tee, ear_appraisal(self.claims, self.workload))]),
            },
        }
    }
}
