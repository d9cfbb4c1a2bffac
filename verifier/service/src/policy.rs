//! Policy over the agent's identity claims, in Cedar: which of the scopes a
//! workload's grant allows may be issued for this principal, intent and time.
//! Evaluated once per requested scope; a scope is granted only on `Allow`
//! with no evaluation error at all. Cedar denies by default and a `forbid`
//! wins, but Cedar *skips* a policy that errors — a `forbid` included — so an
//! error anywhere denies the scope here: a mistake never grants.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use attest_gate_core::{TrustKind, VerifiedClaims, Workload};
use attest_gate_protocol::CollateralOrigin;
use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    PolicySet, Request, RestrictedExpression,
};
use time::OffsetDateTime;

/// The policy the service uses when `--policy` is not given.
pub(crate) const DEFAULT_POLICY: &str = include_str!("../default.cedar");

/// A policy file that does not parse, or a request Cedar cannot form.
#[derive(Debug, Clone, thiserror::Error)]
#[error("policy: {0}")]
pub struct PolicyError(String);

/// What policy knows of the attested agent (the Cedar principal's
/// attributes): taken from verified claims at attestation, and from the
/// verified parent credential at a token exchange, so both decide on the
/// same facts.
#[derive(Debug, Clone, Copy)]
pub struct PolicySubject<'a> {
    /// The workload the evidence proved.
    pub workload: &'a Workload,
    /// `nitro`, `tdx` or `snp`.
    pub tee: &'a str,
    /// SHA-384 of the model it serves, hex.
    pub model: &'a str,
    /// The platform's TCB status (`None` where the TEE has none).
    pub tcb_status: Option<&'a str>,
    /// Whether the TEE runs in debug mode.
    pub debug: bool,
    /// Whether a test root anchored the evidence.
    pub test_root: bool,
    /// Where its TCB info, QE identity and CRLs came from.
    pub collateral: CollateralOrigin,
}

impl<'a> PolicySubject<'a> {
    /// From verified claims that matched `workload`.
    pub fn attested(
        workload: &'a Workload,
        claims: &'a VerifiedClaims,
        model: &'a str,
        tcb_status: Option<&'a str>,
        collateral: CollateralOrigin,
    ) -> Self {
        Self {
            workload,
            tee: claims.tee().as_str(),
            model,
            tcb_status,
            debug: claims.debug(),
            test_root: claims.trust() == TrustKind::TestRoot,
            collateral,
        }
    }
}

impl<'a> PolicySubject<'a> {
    /// From a verified token's provenance (exchange, secret release): the
    /// same facts the attestation decided on.
    pub fn from_provenance(
        workload: &'a Workload,
        provenance: &'a attest_gate_protocol::Provenance,
    ) -> Self {
        Self {
            workload,
            tee: &provenance.tee,
            model: &provenance.model_digest,
            tcb_status: provenance.tcb_status.as_deref(),
            debug: provenance.debug,
            test_root: provenance.test_root,
            collateral: provenance.collateral,
        }
    }
}

/// A delegation being decided (token exchange).
#[derive(Debug, Clone, Copy)]
pub struct DelegationQuery<'a> {
    /// The sub-agent's key thumbprint.
    pub actor: &'a str,
    /// Hops from the attested credential (1 for its direct child).
    pub depth: i64,
    /// The parent credential's `jti`.
    pub parent_jti: &'a str,
    /// The parent's declared task (its `intent.task_id`).
    pub parent_task_id: &'a str,
    /// The parent's audience.
    pub parent_audience: &'a str,
}

/// What the policy is asked about one attestation or delegation.
#[derive(Debug, Clone, Copy)]
pub struct PolicyQuery<'a> {
    /// The attested agent.
    pub subject: PolicySubject<'a>,
    /// `Some` for a token exchange.
    pub delegation: Option<DelegationQuery<'a>>,
    /// On whose behalf it acts (`user:alice`, `system`).
    pub act_for: &'a str,
    /// The task it declares (for an exchange: the sub-agent's `purpose`).
    pub task_id: &'a str,
    /// The audience it asks a token for.
    pub audience: &'a str,
    /// The scopes it asks for.
    pub scopes: &'a [String],
    /// The time of the decision.
    pub now: OffsetDateTime,
}

/// A parsed policy set.
#[derive(Debug, Clone)]
pub struct Policy {
    set: PolicySet,
    names: Names,
}

/// The entity types and actions every request names, parsed once with the
/// policy rather than once per request and scope.
#[derive(Debug, Clone)]
struct Names {
    workload: EntityTypeName,
    scope: EntityTypeName,
    secret: EntityTypeName,
    issue: EntityUid,
    read_secret: EntityUid,
}

impl Names {
    fn parse() -> Result<Self, PolicyError> {
        let ty =
            |name: &str| EntityTypeName::from_str(name).map_err(|e| PolicyError(e.to_string()));
        let action = ty("AttestGate::Action")?;
        Ok(Self {
            workload: ty("AttestGate::Workload")?,
            scope: ty("AttestGate::Scope")?,
            secret: ty("AttestGate::Secret")?,
            issue: uid(&action, "issue"),
            read_secret: uid(&action, "read_secret"),
        })
    }
}

fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
}

fn string(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_string())
}

/// The Cedar principal for `subject`: its UID and entity.
fn workload_entity(
    names: &Names,
    subject: &PolicySubject<'_>,
) -> Result<(EntityUid, Entity), PolicyError> {
    let principal = uid(&names.workload, &subject.workload.name);
    let attrs = HashMap::from([
        ("name".to_string(), string(&subject.workload.name)),
        ("version".to_string(), string(&subject.workload.version)),
        ("tee".to_string(), string(subject.tee)),
        ("model".to_string(), string(subject.model)),
        (
            "tcb_status".to_string(),
            string(subject.tcb_status.unwrap_or("none")),
        ),
        (
            "debug".to_string(),
            RestrictedExpression::new_bool(subject.debug),
        ),
        (
            "test_root".to_string(),
            RestrictedExpression::new_bool(subject.test_root),
        ),
        (
            "collateral".to_string(),
            string(subject.collateral.as_str()),
        ),
    ]);
    let entity = Entity::new(principal.clone(), attrs, HashSet::new())
        .map_err(|e| PolicyError(e.to_string()))?;
    Ok((principal, entity))
}

/// What the policy is asked about one secret release.
#[derive(Debug, Clone, Copy)]
pub struct SecretQuery<'a> {
    /// The attested agent (from its verified token).
    pub subject: PolicySubject<'a>,
    /// The secret's name.
    pub name: &'a str,
    /// Its current version.
    pub version: i64,
    /// On whose behalf the agent acts.
    pub act_for: &'a str,
    /// The task its token was issued for.
    pub task_id: &'a str,
    /// Its token's audience.
    pub audience: &'a str,
    /// Its token's scopes.
    pub scopes: &'a [String],
    /// Every verified register value, hex.
    pub measurements: &'a [String],
    /// Delegation hops of the token (0: the attested agent's own).
    pub depth: i64,
    /// The time of the decision.
    pub now: OffsetDateTime,
}

impl Policy {
    /// Whether Cedar permits `Action::"read_secret"` on `Secret::"{name}"`:
    /// `Allow` with no evaluation error at all (as for scopes, an error
    /// anywhere denies).
    pub fn permits_secret(&self, query: &SecretQuery<'_>) -> Result<bool, PolicyError> {
        let names = &self.names;
        let (principal, workload) = workload_entity(names, &query.subject)?;
        let action = names.read_secret.clone();
        let resource = uid(&names.secret, query.name);
        let secret = Entity::new(
            resource.clone(),
            HashMap::from([
                ("name".to_string(), string(query.name)),
                (
                    "version".to_string(),
                    RestrictedExpression::new_long(query.version),
                ),
            ]),
            HashSet::new(),
        )
        .map_err(|e| PolicyError(e.to_string()))?;
        let set = |items: &[String]| RestrictedExpression::new_set(items.iter().map(|s| string(s)));
        let context = Context::from_pairs([
            ("act_for".to_string(), string(query.act_for)),
            ("task_id".to_string(), string(query.task_id)),
            ("audience".to_string(), string(query.audience)),
            ("scopes".to_string(), set(query.scopes)),
            ("measurements".to_string(), set(query.measurements)),
            (
                "delegated".to_string(),
                RestrictedExpression::new_bool(query.depth > 0),
            ),
            (
                "depth".to_string(),
                RestrictedExpression::new_long(query.depth),
            ),
            (
                "now".to_string(),
                RestrictedExpression::new_long(query.now.unix_timestamp()),
            ),
        ])
        .map_err(|e| PolicyError(e.to_string()))?;
        let entities = Entities::from_entities([workload, secret], None)
            .map_err(|e| PolicyError(e.to_string()))?;
        let request = Request::new(principal, action, resource, context, None)
            .map_err(|e| PolicyError(e.to_string()))?;
        let response = Authorizer::new().is_authorized(&request, &self.set, &entities);
        let mut clean = true;
        for error in response.diagnostics().errors() {
            clean = false;
            tracing::warn!(secret = %query.name, error = %error, "a policy failed to evaluate: secret denied");
        }
        Ok(clean && response.decision() == Decision::Allow)
    }

    /// Parses Cedar policy text.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let set = PolicySet::from_str(text).map_err(|e| PolicyError(format!("{e:?}")))?;
        Ok(Self {
            set,
            names: Names::parse()?,
        })
    }

    /// The scopes among `query.scopes` that the policy permits, in request order.
    pub fn permitted_scopes(&self, query: &PolicyQuery<'_>) -> Result<Vec<String>, PolicyError> {
        let names = &self.names;
        let (principal, workload) = workload_entity(names, &query.subject)?;
        let action = &names.issue;
        let delegation = query.delegation;
        let context = Context::from_pairs([
            ("act_for".to_string(), string(query.act_for)),
            ("task_id".to_string(), string(query.task_id)),
            ("audience".to_string(), string(query.audience)),
            (
                "scopes".to_string(),
                RestrictedExpression::new_set(query.scopes.iter().map(|s| string(s))),
            ),
            (
                "now".to_string(),
                RestrictedExpression::new_long(query.now.unix_timestamp()),
            ),
            (
                "delegated".to_string(),
                RestrictedExpression::new_bool(delegation.is_some()),
            ),
            (
                "depth".to_string(),
                RestrictedExpression::new_long(delegation.map_or(0, |d| d.depth)),
            ),
            (
                "actor".to_string(),
                string(delegation.map_or("", |d| d.actor)),
            ),
            (
                "parent_jti".to_string(),
                string(delegation.map_or("", |d| d.parent_jti)),
            ),
            (
                "parent_task_id".to_string(),
                string(delegation.map_or("", |d| d.parent_task_id)),
            ),
            (
                "parent_audience".to_string(),
                string(delegation.map_or("", |d| d.parent_audience)),
            ),
        ])
        .map_err(|e| PolicyError(e.to_string()))?;

        let authorizer = Authorizer::new();
        let mut permitted = Vec::new();
        for scope in query.scopes {
            let resource = uid(&names.scope, scope);
            let scope_entity = Entity::new(
                resource.clone(),
                HashMap::from([("name".to_string(), string(scope))]),
                HashSet::new(),
            )
            .map_err(|e| PolicyError(e.to_string()))?;
            let entities = Entities::from_entities([workload.clone(), scope_entity], None)
                .map_err(|e| PolicyError(e.to_string()))?;
            let request = Request::new(
                principal.clone(),
                action.clone(),
                resource,
                context.clone(),
                None,
            )
            .map_err(|e| PolicyError(e.to_string()))?;
            let response = authorizer.is_authorized(&request, &self.set, &entities);
            let mut clean = true;
            for error in response.diagnostics().errors() {
                clean = false;
                tracing::warn!(scope = %scope, error = %error, "a policy failed to evaluate: scope denied");
            }
            if clean && response.decision() == Decision::Allow && !permitted.contains(scope) {
                permitted.push(scope.clone());
            }
        }
        Ok(permitted)
    }
}
