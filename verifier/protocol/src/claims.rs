//! What an access token says: the claims of RFC 9068 (`typ: at+jwt`), the
//! DPoP key binding of RFC 9449 (`cnf.jkt`), Attest Gate's identity claims
//! (`act_for`, `intent`, `provenance`, `session`, RFC 8693 `act`), and the
//! appraisal in the EAR vocabulary (draft-ietf-rats-ear, AR4SI
//! trustworthiness vector). The verifier serializes these; the verifier's
//! token exchange and relying parties deserialize them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The access token's `typ` (RFC 9068 §2.1), so that no other JWS the
/// verifier signs (a revocation list, say) can pass as a token.
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// The EAR profile the verifier emits.
pub const EAR_PROFILE: &str = "tag:github.com,2023:veraison/ear";

/// The `intent` claim: what the agent declared it is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// The task identifier (for a delegated token, the exchange's `purpose`).
    pub task_id: String,
    /// The scopes it asked for (the granted ones are in `scope`).
    pub requested_scopes: Vec<String>,
    /// The audience it asked for.
    pub audience: String,
}

fn fail_closed() -> bool {
    true
}

/// Where the collateral a credential was issued on came from (TCB info, QE
/// identity, CRLs): the `provenance.collateral` claim and a Cedar attribute,
/// so a relying party or a policy can refuse collateral an agent supplied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CollateralOrigin {
    /// From the verifier's own sources (its folder, Intel PCS, AMD KDS).
    Service,
    /// From the agent's request: the verifier has no source for this TEE.
    /// A token without the claim counts as this: fail closed.
    AgentSupplied,
    /// The TEE needs none (Nitro: the chain is in the document).
    None,
}

impl CollateralOrigin {
    /// As the claim and the Cedar attribute spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Service => "service",
            Self::AgentSupplied => "agent-supplied",
            Self::None => "none",
        }
    }
}

impl std::fmt::Display for CollateralOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn agent_supplied() -> CollateralOrigin {
    CollateralOrigin::AgentSupplied
}

/// The `provenance` claim: what was attested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// `nitro`, `tdx` or `snp`.
    pub tee: String,
    /// The workload (measurements file) name.
    pub workload: String,
    /// Its version.
    #[serde(default)]
    pub workload_version: String,
    /// The registers the workload file constrains, hex, by name.
    #[serde(default)]
    pub measurements: BTreeMap<String, String>,
    /// SHA-384 of the model served, hex.
    pub model_digest: String,
    /// The platform's TCB status, where the TEE has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcb_status: Option<String>,
    /// Whether the TEE runs in debug mode (only workloads that allow it). A
    /// token without the claim counts as debug: fail closed.
    #[serde(default = "fail_closed")]
    pub debug: bool,
    /// SHA-384 of the exact evidence bytes, hex.
    #[serde(default)]
    pub evidence_sha384: String,
    /// True when the evidence chained to a test root (`--dev`): not a
    /// production attestation; refuse it in production.
    pub test_root: bool,
    /// Where TCB info, QE identity and CRLs came from.
    #[serde(default = "agent_supplied")]
    pub collateral: CollateralOrigin,
}

/// The `session` claim: where the credential sits in a delegation chain, so
/// that revoking a session or a parent credential reaches its descendants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The session identifier, shared by a whole chain.
    pub id: String,
    /// The `jti` of the credential this one was delegated from.
    #[serde(default)]
    pub parent: Option<String>,
    /// SPIFFE IDs from the root agent to this one.
    #[serde(default)]
    pub chain: Vec<String>,
}

/// `cnf` (RFC 7800, RFC 9449 §6): the key the token is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// RFC 7638 thumbprint of the agent's key: DPoP proofs must be signed by
    /// the key with this thumbprint.
    pub jkt: String,
    /// RFC 7638 thumbprint of the session's encryption key, when the
    /// evidence bound one (binding v2): secrets are released only as JWEs to
    /// that key. Absent when the agent bound none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enc_jkt: Option<String>,
}

/// RFC 8693 §4.1 `act`: the current actor, nesting the prior ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The actor's SPIFFE ID.
    pub sub: String,
    /// The actor before it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

/// One EAR submodule's appraisal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarAppraisal {
    /// `affirming` or `warning`.
    #[serde(rename = "ear.status")]
    pub status: String,
    /// The AR4SI trustworthiness vector.
    #[serde(rename = "ear.trustworthiness-vector")]
    pub trustworthiness: BTreeMap<String, i8>,
    /// Which reference values appraised it.
    #[serde(rename = "ear.appraisal-policy-id")]
    pub policy_id: String,
}

/// The EAR (EAT Attestation Result) carried in the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ear {
    /// The EAR profile.
    pub eat_profile: String,
    /// The verifier that appraised.
    #[serde(rename = "ear.verifier-id")]
    pub verifier_id: BTreeMap<String, String>,
    /// Appraisals by submodule (the TEE kind).
    pub submods: BTreeMap<String, EarAppraisal>,
}

/// An access token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The verifier's issuer URL.
    pub iss: String,
    /// SPIFFE ID: `spiffe://<trust-domain>/<workload>/<instance>`.
    pub sub: String,
    /// The relying party.
    pub aud: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Not before, Unix seconds.
    pub nbf: i64,
    /// Expires, Unix seconds.
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
    /// The actor chain of a delegated token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
    /// The appraisal, for RATS tooling.
    pub ear: Ear,
}

impl AccessClaims {
    /// Delegation hops from the attested credential (0 for it).
    pub fn depth(&self) -> usize {
        self.session.chain.len().saturating_sub(1)
    }
}
