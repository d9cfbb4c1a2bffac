//! The one decision path. [`Verification`] turns evidence into verified
//! claims with exactly the configured trust; the [`Appraiser`] (reference
//! values and Cedar policy, swapped together on reload) decides with one
//! scope rule for every caller — attestation, token exchange, reappraisal,
//! the admin dry run and `verifier policy test` — and only it builds the
//! [`Grant`] that the token signer, the SVID CA and the credential record
//! take (and the [`JwtSvidGrant`] that the JWT-SVID signer takes). A tested
//! policy therefore decides exactly as the service will, and a delegation
//! cannot escape a `forbid` that the attestation obeyed.

use std::path::Path;

use attest_gate_core::{
    AgentKey, AuthenticatedQuote, Binding, Collateral, ModelDigest, PlatformClaims,
    ReferenceValues, TeeKind, TrustAnchors, TrustKind, VerifiedClaims, Verifier, VerifyError,
    Workload,
};
use attest_gate_protocol::{Actor, CollateralOrigin, Ear, Intent, Provenance, Session};
use aws_lc_rs::digest::{digest, SHA256};
use time::{Duration, OffsetDateTime};

use crate::api::IntentRequest;
use crate::credentials;
use crate::error::{ErrorCode, ServiceCode, ServiceError};
use crate::policy::{
    DelegationQuery, Policy, PolicyQuery, PolicySubject, SecretQuery, DEFAULT_POLICY,
};
use crate::revocation::Standing;
use crate::secrets;
use crate::service::{test_anchors, StartError};
use crate::token::VerifiedToken;

/// Evidence verification with exactly the trust the configuration names:
/// the pinned vendor roots, and with `--dev` the project's test roots for
/// evidence that no vendor root anchors (and only then). Used by the service
/// and by `verifier policy test`, so both accept the same evidence.
#[derive(Debug)]
pub struct Verification {
    vendor: Verifier,
    test: Option<Verifier>,
}

impl Verification {
    /// Vendor roots; also the test roots when `dev`.
    pub fn new(dev: bool) -> Result<Self, StartError> {
        Ok(Self {
            vendor: Verifier::new(TrustAnchors::vendor()?),
            test: if dev {
                Some(Verifier::new(test_anchors()?))
            } else {
                None
            },
        })
    }

    /// A TDX quote's own signatures and PCK chain checked, with the same
    /// trust as [`Verification::verify`]: what the service checks before it
    /// fetches collateral for the platform, then finishes with
    /// [`AuthenticatedQuote::verify`] under the verifier that accepted it.
    pub fn authenticate_tdx_quote<'a>(
        &'a self,
        evidence: &'a [u8],
        at: OffsetDateTime,
    ) -> Result<AuthenticatedQuote<'a>, ServiceError> {
        match (self.vendor.authenticate_tdx_quote(evidence, at), &self.test) {
            (Err(VerifyError::ChainUntrusted { .. }), Some(test)) => {
                test.authenticate_tdx_quote(evidence, at)
            }
            (other, _) => other,
        }
        .map_err(|e| ServiceError::from(&e))
    }

    /// Verifies, then requires what the service requires of verified
    /// evidence: SEV-SNP under the vendor roots must have had its
    /// revocation checked (AMD's CRL is optional collateral to the core).
    pub fn verify(
        &self,
        tee: TeeKind,
        evidence: &[u8],
        collateral: &Collateral,
        at: OffsetDateTime,
    ) -> Result<VerifiedClaims, ServiceError> {
        let claims = match (
            self.vendor.verify(tee, evidence, collateral, at),
            &self.test,
        ) {
            (Err(VerifyError::ChainUntrusted { .. }), Some(test)) => {
                test.verify(tee, evidence, collateral, at)
            }
            (other, _) => other,
        }
        .map_err(|e| ServiceError::from(&e))?;
        if let PlatformClaims::Snp(snp) = &claims.platform() {
            if claims.trust() == TrustKind::VendorRoot && !snp.revocation_checked {
                return Err(ServiceError::new(
                    ServiceCode::RevocationNotChecked,
                    "SEV-SNP evidence needs AMD's CRL for its ARK (crl.der) as collateral",
                ));
            }
        }
        Ok(claims)
    }
}

/// Reference values and policy, reloaded together.
#[derive(Debug)]
pub struct Appraiser {
    /// The workload files.
    pub references: ReferenceValues,
    /// The policy.
    pub policy: Policy,
    /// SHA-256 of the policy text (16 hex digits), for the audit log.
    pub policy_version: String,
}

/// What appraisal decided for recorded evidence (dry run, `policy test`,
/// reappraisal): nothing is signed from it.
#[derive(Debug, Clone)]
pub struct Decided<'a> {
    /// The workload the claims matched.
    pub workload: &'a Workload,
    /// requested ∩ the workload's grant ∩ what policy permits; never empty.
    pub scopes: Vec<String>,
}

/// Everything decided before anything is signed: who (workload, key,
/// SPIFFE ID), what (scopes, audience, lifetime), on what evidence
/// (provenance, registers, EAR) and where in a delegation chain. Only this
/// module builds one — [`Appraiser::grant_attestation`] from verified,
/// bound, appraised evidence and [`Appraiser::grant_delegation`] from a
/// verified parent token run through the same policy — and the token
/// signer, the SVID CA and the credential record take `&Grant` and nothing
/// else, so nothing undecided can be signed.
///
/// ```compile_fail
/// // Outside this module a Grant cannot be assembled by hand:
/// let grant = attest_gate_verifier::decision::Grant { jti: String::new() };
/// ```
#[derive(Debug, Clone)]
pub struct Grant {
    workload: Workload,
    jkt: String,
    encryption_jkt: Option<String>,
    scopes: Vec<String>,
    audience: String,
    act_for: String,
    intent: Intent,
    provenance: Provenance,
    ear: Ear,
    jti: String,
    session: Session,
    actor: Option<Actor>,
    depth: i32,
    registers: Vec<String>,
    issued_at: OffsetDateTime,
    expires_at: OffsetDateTime,
}

impl Grant {
    /// The workload it is for.
    pub fn workload(&self) -> &Workload {
        &self.workload
    }
    /// The bound key's RFC 7638 thumbprint.
    pub fn jkt(&self) -> &str {
        &self.jkt
    }
    /// The session's encryption key's thumbprint, when its evidence bound
    /// one (`cnf.enc_jkt`): secrets are released only to that key.
    pub fn encryption_jkt(&self) -> Option<&str> {
        self.encryption_jkt.as_deref()
    }
    /// Its SPIFFE ID (`spiffe://<domain>/<workload>/<jkt>`).
    pub fn subject(&self) -> String {
        credentials::spiffe_id(&self.workload, &self.jkt)
    }
    /// The granted scopes, never empty.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }
    /// The relying party it is for.
    pub fn audience(&self) -> &str {
        &self.audience
    }
    /// On whose behalf the agent acts.
    pub fn act_for(&self) -> &str {
        &self.act_for
    }
    /// What was asked.
    pub fn intent(&self) -> &Intent {
        &self.intent
    }
    /// What was attested.
    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }
    /// The appraisal in EAR form.
    pub fn ear(&self) -> &Ear {
        &self.ear
    }
    /// The new credential's ID.
    pub fn jti(&self) -> &str {
        &self.jti
    }
    /// Its session and delegation chain.
    pub fn session(&self) -> &Session {
        &self.session
    }
    /// The actor chain (delegated credentials).
    pub fn actor(&self) -> Option<&Actor> {
        self.actor.as_ref()
    }
    /// Delegation hops from the attested credential.
    pub fn depth(&self) -> i32 {
        self.depth
    }
    /// Every verified register value, hex.
    pub fn registers(&self) -> &[String] {
        &self.registers
    }
    /// Whether a test root anchored the evidence (`--dev`).
    pub fn test_root(&self) -> bool {
        self.provenance.test_root
    }
    /// Issued at.
    pub fn issued_at(&self) -> OffsetDateTime {
        self.issued_at
    }
    /// Expires at.
    pub fn expires_at(&self) -> OffsetDateTime {
        self.expires_at
    }
}

/// The most audiences one JWT-SVID may name.
pub(crate) const MAX_JWT_SVID_AUDIENCES: usize = 8;
/// The longest a JWT-SVID lives: a bearer token, so short-lived (it is never
/// valid past the access token it was asked with either).
pub(crate) const JWT_SVID_TTL_SECONDS: i64 = 300;
/// The longest audience a JWT-SVID may name.
const MAX_AUDIENCE_LEN: usize = 256;

/// A JWT-SVID decided: for whom (the access token's SPIFFE ID, session and
/// key), for which audiences, until when. Only
/// [`Appraiser::grant_jwt_svid`] builds one, from a verified access token
/// run through the same audience rule and Cedar policy as the token itself;
/// the JWT-SVID signer and its credential record take it and nothing else.
///
/// ```compile_fail
/// let grant = attest_gate_verifier::decision::JwtSvidGrant { jti: String::new() };
/// ```
#[derive(Debug, Clone)]
pub struct JwtSvidGrant {
    subject: String,
    audiences: Vec<String>,
    jti: String,
    parent_jti: String,
    session_id: String,
    workload: String,
    jkt: String,
    depth: i32,
    model_digest: String,
    registers: Vec<String>,
    test_root: bool,
    issued_at: OffsetDateTime,
    expires_at: OffsetDateTime,
}

impl JwtSvidGrant {
    /// Its SPIFFE ID (`sub`): the access token's.
    pub fn subject(&self) -> &str {
        &self.subject
    }
    /// The audiences (`aud`), each one the workload's grant names.
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }
    /// Its own ID.
    pub fn jti(&self) -> &str {
        &self.jti
    }
    /// The access token it was asked with: revoking that revokes it.
    pub fn parent_jti(&self) -> &str {
        &self.parent_jti
    }
    /// The session it belongs to.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }
    /// The workload's name.
    pub fn workload(&self) -> &str {
        &self.workload
    }
    /// The agent key's thumbprint.
    pub fn jkt(&self) -> &str {
        &self.jkt
    }
    /// The access token's delegation depth.
    pub fn depth(&self) -> i32 {
        self.depth
    }
    /// The model digest the session attested, hex.
    pub fn model_digest(&self) -> &str {
        &self.model_digest
    }
    /// The verified register values of the session, hex.
    pub fn registers(&self) -> &[String] {
        &self.registers
    }
    /// Whether a test root anchored the session's evidence.
    pub fn test_root(&self) -> bool {
        self.test_root
    }
    /// Issued at.
    pub fn issued_at(&self) -> OffsetDateTime {
        self.issued_at
    }
    /// Expires at: at most [`JWT_SVID_TTL_SECONDS`] later, never after the
    /// access token.
    pub fn expires_at(&self) -> OffsetDateTime {
        self.expires_at
    }
}

/// What an agent asks a JWT-SVID for, and how its credential stands.
#[derive(Debug, Clone, Copy)]
pub struct JwtSvidAsk<'a> {
    /// The audiences.
    pub audiences: &'a [String],
    /// The access token's standing against the revocations in force.
    pub standing: &'a Standing,
    /// Why nothing may be issued on it (revoked, immediately or
    /// gracefully), if so.
    pub blocked: Option<&'a str>,
    /// The session's verified register values, hex.
    pub registers: &'a [String],
}

/// What an attesting agent asks for.
#[derive(Debug, Clone, Copy)]
pub struct AttestationAsk<'a> {
    /// On whose behalf it acts.
    pub principal: &'a str,
    /// Task, scopes and audience.
    pub intent: &'a IntentRequest,
    /// A shorter lifetime than the workload's maximum.
    pub ttl_seconds: Option<u32>,
    /// The lifetime when none is asked for (capped by the workload).
    pub default_ttl: u32,
    /// Where the verification's collateral came from.
    pub collateral: CollateralOrigin,
}

/// What a delegating agent asks for its sub-agent.
#[derive(Debug, Clone, Copy)]
pub struct DelegationAsk<'a> {
    /// The sub-agent's key.
    pub actor: &'a AgentKey,
    /// Scopes: a subset of the parent's.
    pub scopes: &'a [String],
    /// The relying party.
    pub audience: &'a str,
    /// What the sub-agent is for (its `intent.task_id`).
    pub purpose: &'a str,
    /// A shorter lifetime; never past the parent's expiry.
    pub ttl_seconds: Option<u32>,
}

/// Reads every `*.toml` in `dir`, in name order.
pub(crate) fn load_references(dir: &Path) -> Result<ReferenceValues, StartError> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| StartError::Config(format!("measurements {}: {e}", dir.display())))?;
    for entry in entries {
        let path = entry
            .map_err(|e| StartError::Config(format!("measurements {}: {e}", dir.display())))?
            .path();
        if path.extension().is_some_and(|x| x == "toml") {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| StartError::Config(format!("{}: {e}", path.display())))?;
            files.push((path.display().to_string(), text));
        }
    }
    files.sort();
    ReferenceValues::from_files(files.iter().map(|(f, t)| (f.as_str(), t.as_str())))
        .map_err(|e| StartError::Config(e.to_string()))
}

/// Reads the policy file's text, or the built-in default's.
pub(crate) fn read_policy(file: Option<&Path>) -> Result<String, StartError> {
    match file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| StartError::Config(format!("policy {}: {e}", path.display()))),
        None => Ok(DEFAULT_POLICY.to_string()),
    }
}

impl Appraiser {
    /// From reference values and a policy's text.
    pub fn new(references: ReferenceValues, policy_text: &str) -> Result<Self, StartError> {
        let policy = Policy::parse(policy_text).map_err(|e| StartError::Config(e.to_string()))?;
        let policy_version = hex::encode(digest(&SHA256, policy_text.as_bytes()))
            .chars()
            .take(16)
            .collect();
        Ok(Self {
            references,
            policy,
            policy_version,
        })
    }

    /// From the measurements folder and the policy file (or the default).
    pub fn load(measurements: &Path, policy_file: Option<&Path>) -> Result<Self, StartError> {
        Self::new(load_references(measurements)?, &read_policy(policy_file)?)
    }

    /// Attestation: the binding (nonce, key, model), reference values,
    /// then [`Appraiser::decide`]'s scope rule and the lifetime: the only
    /// way an attestation becomes a [`Grant`].
    pub fn grant_attestation(
        &self,
        claims: &VerifiedClaims,
        binding: &Binding,
        ask: &AttestationAsk<'_>,
        now: OffsetDateTime,
    ) -> Result<Grant, ServiceError> {
        binding.check(claims).map_err(|r| ServiceError::from(&r))?;
        let model = binding.model();
        let decided = self.decide(
            claims,
            ask.collateral,
            model,
            ask.principal,
            ask.intent,
            now,
        )?;
        let workload = decided.workload;
        let ttl = ask
            .ttl_seconds
            .unwrap_or(ask.default_ttl)
            .min(workload.grant.max_ttl_seconds);
        let jkt = binding.key().jkt();
        let session_id = secrets::ordered_id(now).map_err(ServiceError::internal)?;
        Ok(Grant {
            workload: workload.clone(),
            scopes: decided.scopes,
            audience: ask.intent.audience.clone(),
            act_for: ask.principal.to_string(),
            intent: Intent {
                task_id: ask.intent.task_id.clone(),
                requested_scopes: ask.intent.scopes.clone(),
                audience: ask.intent.audience.clone(),
            },
            provenance: Provenance {
                tee: claims.tee().to_string(),
                workload: workload.name.clone(),
                workload_version: workload.version.clone(),
                measurements: credentials::measured(workload, claims),
                model_digest: model.to_hex(),
                tcb_status: claims.tcb_status().map(|s| s.to_string()),
                debug: claims.debug(),
                evidence_sha384: hex::encode(claims.evidence_sha384()),
                test_root: claims.trust() == TrustKind::TestRoot,
                collateral: ask.collateral,
            },
            ear: credentials::ear(claims, workload),
            jti: secrets::ordered_id(now).map_err(ServiceError::internal)?,
            session: Session {
                id: session_id,
                parent: None,
                chain: vec![credentials::spiffe_id(workload, &jkt)],
            },
            jkt,
            encryption_jkt: binding.encryption_key().map(AgentKey::jkt),
            actor: None,
            depth: 0,
            registers: credentials::all_registers(claims),
            issued_at: now,
            expires_at: now + Duration::seconds(i64::from(ttl)),
        })
    }

    /// Token exchange: the parent's workload must still be allowed and may
    /// delegate this deep; scopes only narrow; then the same scope rule as
    /// attestation ([`Appraiser::decide`]'s), with the sub-agent's audience,
    /// purpose and key in Cedar's context; expiry never past the parent's.
    pub fn grant_delegation(
        &self,
        parent: &VerifiedToken,
        registers: &[String],
        ask: &DelegationAsk<'_>,
        now: OffsetDateTime,
    ) -> Result<Grant, ServiceError> {
        let parent = parent.claims();
        let workload = self.listed_workload(&parent.client_id, "the subject token")?;
        if !workload.grant.may_delegate {
            return Err(ServiceError::new(
                ServiceCode::DelegationNotAllowed,
                format!("workload {} may not delegate", workload.name),
            ));
        }
        let depth = i32::try_from(parent.depth())
            .unwrap_or(i32::MAX)
            .saturating_add(1);
        if depth > i32::from(workload.grant.max_delegation_depth) {
            return Err(ServiceError::new(
                ServiceCode::DelegationTooDeep,
                format!(
                    "workload {} allows {} delegation hops",
                    workload.name, workload.grant.max_delegation_depth
                ),
            ));
        }
        let held: Vec<&str> = parent.scope.split_whitespace().collect();
        if let Some(wider) = ask.scopes.iter().find(|s| !held.contains(&s.as_str())) {
            return Err(ServiceError::new(
                ServiceCode::ScopeWidening,
                format!("`{wider}` is not among the subject token's scopes"),
            ));
        }
        let jkt = ask.actor.jkt();
        let provenance = &parent.provenance;
        let scopes = self.permitted(&PolicyQuery {
            subject: PolicySubject::from_provenance(workload, provenance),
            delegation: Some(DelegationQuery {
                actor: &jkt,
                depth: i64::from(depth),
                parent_jti: &parent.jti,
                parent_task_id: &parent.intent.task_id,
                parent_audience: &parent.aud,
            }),
            act_for: &parent.act_for,
            task_id: ask.purpose,
            audience: ask.audience,
            scopes: ask.scopes,
            now,
        })?;
        let parent_expiry =
            OffsetDateTime::from_unix_timestamp(parent.exp).map_err(ServiceError::internal)?;
        let expires_at = match ask.ttl_seconds {
            Some(ttl) => (now + Duration::seconds(i64::from(ttl))).min(parent_expiry),
            None => parent_expiry,
        };
        let mut chain = parent.session.chain.clone();
        chain.push(credentials::spiffe_id(workload, &jkt));
        Ok(Grant {
            workload: workload.clone(),
            scopes,
            audience: ask.audience.to_string(),
            act_for: parent.act_for.clone(),
            intent: Intent {
                task_id: ask.purpose.to_string(),
                requested_scopes: ask.scopes.to_vec(),
                audience: ask.audience.to_string(),
            },
            provenance: parent.provenance.clone(),
            ear: parent.ear.clone(),
            jti: secrets::ordered_id(now).map_err(ServiceError::internal)?,
            session: Session {
                id: parent.session.id.clone(),
                parent: Some(parent.jti.clone()),
                chain,
            },
            jkt,
            // The session's key: a sub-agent holds no key of the evidence.
            encryption_jkt: parent.cnf.enc_jkt.clone(),
            // RFC 8693 §4.1: `act` names the current actor, nesting the prior ones.
            actor: Some(Actor {
                sub: parent.sub.clone(),
                act: parent.act.clone().map(Box::new),
            }),
            depth,
            registers: registers.to_vec(),
            issued_at: now,
            expires_at,
        })
    }

    /// The workload a verified token names, if `measurements/` still lists
    /// it (`what` names the token in the refusal).
    fn listed_workload(&self, name: &str, what: &str) -> Result<&Workload, ServiceError> {
        self.references
            .workloads()
            .iter()
            .find(|w| w.name == name)
            .ok_or_else(|| {
                ServiceError::new(
                    ServiceCode::WorkloadUnknown,
                    format!("{what}'s workload is no longer allowed"),
                )
            })
    }

    /// Secret release: the token's workload must still be listed; a
    /// delegated token only if the workload says `secrets_may_delegate`;
    /// then Cedar must permit `read_secret` on the secret for this agent's
    /// verified claims (the default policy permits none). Revocation and
    /// quarantine are the caller's (they need the store).
    pub fn decide_secret(
        &self,
        token: &VerifiedToken,
        registers: &[String],
        secret: (&str, i64),
        now: OffsetDateTime,
    ) -> Result<(), ServiceError> {
        let claims = token.claims();
        let workload = self.listed_workload(&claims.client_id, "the token")?;
        let depth = i64::try_from(claims.depth()).unwrap_or(i64::MAX);
        if depth > 0 && !workload.grant.secrets_may_delegate {
            return Err(ServiceError::new(
                ServiceCode::SecretsNotDelegable,
                format!(
                    "workload {} does not let delegated tokens read secrets",
                    workload.name
                ),
            ));
        }
        let provenance = &claims.provenance;
        let scopes: Vec<String> = claims
            .scope
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let (name, version) = secret;
        let permitted = self
            .policy
            .permits_secret(&SecretQuery {
                subject: PolicySubject::from_provenance(workload, provenance),
                name,
                version,
                act_for: &claims.act_for,
                task_id: &claims.intent.task_id,
                audience: &claims.aud,
                scopes: &scopes,
                measurements: registers,
                depth,
                now,
            })
            .map_err(ServiceError::internal)?;
        if permitted {
            Ok(())
        } else {
            Err(ServiceError::new(
                ServiceCode::SecretDenied,
                format!(
                    "the policy does not permit workload {} to read this secret",
                    workload.name
                ),
            ))
        }
    }

    /// A JWT-SVID for a verified access token, checked in order: 1 to 8
    /// distinct audiences of at most 256 characters; the credential's
    /// standing (revoked: `revoked`; quarantined: `quarantined`, since a
    /// bearer token cannot carry the quarantine to a relying party); the
    /// token's workload still listed; a delegated token only for its own
    /// audience (delegation only narrows); each audience one the workload
    /// names and for which Cedar permits at least one of the token's scopes
    /// (the one scope rule, as if the token were asked for that audience).
    /// Lifetime: [`JWT_SVID_TTL_SECONDS`], never past the token's expiry.
    pub fn grant_jwt_svid(
        &self,
        token: &VerifiedToken,
        ask: &JwtSvidAsk<'_>,
        now: OffsetDateTime,
    ) -> Result<JwtSvidGrant, ServiceError> {
        let claims = token.claims();
        let audiences = ask.audiences;
        let distinct = audiences
            .iter()
            .enumerate()
            .all(|(i, a)| !audiences.iter().take(i).any(|b| b == a));
        if audiences.is_empty()
            || audiences.len() > MAX_JWT_SVID_AUDIENCES
            || audiences.iter().any(|a| {
                a.is_empty() || a.len() > MAX_AUDIENCE_LEN || a.chars().any(char::is_control)
            })
            || !distinct
        {
            return Err(ServiceError::new(
                ServiceCode::AudienceCount,
                format!(
                    "`audience` must name 1 to {MAX_JWT_SVID_AUDIENCES} distinct audiences of 1 to {MAX_AUDIENCE_LEN} characters"
                ),
            ));
        }
        if let Some(reason) = ask.blocked {
            return Err(ServiceError::new(
                ServiceCode::Revoked,
                format!("the token is revoked: {reason}"),
            ));
        }
        if let Standing::Quarantined { reason, .. } = ask.standing {
            return Err(ServiceError::new(
                ServiceCode::Quarantined,
                format!("the session is quarantined ({reason}): no JWT-SVID is issued on it"),
            ));
        }
        let workload = self.listed_workload(&claims.client_id, "the token")?;
        // A sub-agent is not attested: a bearer JWT-SVID would give it an
        // identity of the attested shape, with its delegation chain gone, for
        // relying parties (clouds) that cannot see the difference.
        if claims.depth() > 0 {
            return Err(ServiceError::new(
                ServiceCode::JwtSvidNotDelegable,
                "a delegated token gets no JWT-SVID: its sub-agent was not attested",
            ));
        }
        let scopes: Vec<String> = claims
            .scope
            .split_whitespace()
            .map(str::to_string)
            .collect();
        for audience in audiences {
            // The one scope rule: the workload must name the audience, and
            // Cedar must permit one of the token's scopes for it.
            let allowed = {
                let query = PolicyQuery {
                    subject: PolicySubject::from_provenance(workload, &claims.provenance),
                    delegation: None,
                    act_for: &claims.act_for,
                    task_id: &claims.intent.task_id,
                    audience,
                    scopes: &scopes,
                    now,
                };
                match self.permitted(&query) {
                    Ok(_) => true,
                    Err(e)
                        if matches!(
                            e.code(),
                            ErrorCode::Service(
                                ServiceCode::AudienceNotAllowed | ServiceCode::ScopeNotAllowed
                            )
                        ) =>
                    {
                        false
                    }
                    Err(e) => return Err(e),
                }
            };
            if !allowed {
                return Err(ServiceError::new(
                    ServiceCode::AudienceNotAllowed,
                    format!(
                        "workload {} may not get JWT-SVIDs for `{}`",
                        workload.name,
                        audience.chars().take(MAX_AUDIENCE_LEN).collect::<String>()
                    ),
                ));
            }
        }
        let token_expiry =
            OffsetDateTime::from_unix_timestamp(claims.exp).map_err(ServiceError::internal)?;
        let expires_at = (now + Duration::seconds(JWT_SVID_TTL_SECONDS)).min(token_expiry);
        if expires_at <= now {
            return Err(ServiceError::new(
                ServiceCode::InvalidToken,
                "the access token has expired",
            ));
        }
        Ok(JwtSvidGrant {
            subject: claims.sub.clone(),
            audiences: audiences.to_vec(),
            jti: secrets::ordered_id(now).map_err(ServiceError::internal)?,
            parent_jti: claims.jti.clone(),
            session_id: claims.session.id.clone(),
            workload: workload.name.clone(),
            jkt: claims.cnf.jkt.clone(),
            // Only an attested agent's own token gets here.
            depth: 0,
            model_digest: claims.provenance.model_digest.clone(),
            registers: ask.registers.to_vec(),
            test_root: claims.provenance.test_root,
            issued_at: now,
            expires_at,
        })
    }

    /// Reference values, then the scope rule: what attestation, the dry run,
    /// `verifier policy test` and reappraisal all decide with.
    pub fn decide(
        &self,
        claims: &VerifiedClaims,
        collateral: CollateralOrigin,
        model: &ModelDigest,
        principal: &str,
        intent: &IntentRequest,
        now: OffsetDateTime,
    ) -> Result<Decided<'_>, ServiceError> {
        let workload = self
            .references
            .appraise(claims, model)
            .map_err(|r| ServiceError::from(&r))?;
        let model_hex = model.to_hex();
        let tcb_status = claims.tcb_status().map(|s| s.to_string());
        let scopes = self.permitted(&PolicyQuery {
            subject: PolicySubject::attested(
                workload,
                claims,
                &model_hex,
                tcb_status.as_deref(),
                collateral,
            ),
            delegation: None,
            act_for: principal,
            task_id: &intent.task_id,
            audience: &intent.audience,
            scopes: &intent.scopes,
            now,
        })?;
        Ok(Decided { workload, scopes })
    }

    /// The one scope rule, for attestation and delegation alike: the
    /// audience must be one the workload names, and the scopes granted are
    /// `query.scopes` ∩ the workload's grant ∩ what Cedar permits for this
    /// subject, principal, task, audience and (for an exchange) actor;
    /// never empty.
    fn permitted(&self, query: &PolicyQuery<'_>) -> Result<Vec<String>, ServiceError> {
        let workload = query.subject.workload;
        if !workload.grant.audiences.iter().any(|a| a == query.audience) {
            return Err(ServiceError::new(
                ServiceCode::AudienceNotAllowed,
                format!(
                    "workload {} may not get tokens for this audience",
                    workload.name
                ),
            ));
        }
        let allowed: Vec<String> = query
            .scopes
            .iter()
            .filter(|s| workload.grant.scopes.contains(s))
            .cloned()
            .collect();
        let scopes = self
            .policy
            .permitted_scopes(&PolicyQuery {
                scopes: &allowed,
                ..*query
            })
            .map_err(ServiceError::internal)?;
        if scopes.is_empty() {
            return Err(ServiceError::new(
                ServiceCode::ScopeNotAllowed,
                "no requested scope is allowed by the workload's grant and the policy",
            ));
        }
        Ok(scopes)
    }
}
