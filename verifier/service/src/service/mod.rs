//! The verifier service's decisions, independent of HTTP: issue a challenge;
//! take an attestation request through parsing → freshness → evidence
//! verification → binding → reference values → policy → single use → and
//! only then credentials; audit every decision; reload and rotate on an
//! administrator's word.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

mod attest;
mod audit_terms;
mod dry_run;
mod exchange;
mod jwt_svid;
mod lifecycle;
mod presented;
mod release;
mod retention;

pub(crate) use audit_terms::{AuditAction, AuditCode};
pub(crate) use exchange::EXCHANGE_PATH;
pub(crate) use jwt_svid::JWT_SVID_PATH;
pub(crate) use release::SECRETS_PATH;

use attest_gate_core::TrustAnchors;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::api::ChallengeResponse;
use crate::audit_checkpoint::CheckpointKey;
use crate::ca::SvidCa;
use crate::challenge::{self, NonceKey};
use crate::clock::Clock;
use crate::collateral_source::CollateralSources;
use crate::decision::{Appraiser, Verification};
use crate::error::{ServiceCode, ServiceError};
use crate::metrics::Metrics;
use crate::ratelimit::{self, Endpoint, ForwardedHeader, Limited, RateLimitConfig, RateLimits};
use crate::revocation::{Mode, RevocationIndex};
use crate::revocation_cache::RevocationCache;
use crate::secrets::{self, SecretHash};
use crate::store::{AuditEvent, Committed, Row, Store, WriteSet, Writer};
use crate::token::TokenKeys;
use crate::vault::LocalKek;

/// The project's test roots, trusted only with `--dev`.
const TEST_ROOTS_PEM: [&str; 3] = [
    include_str!("../../../../testdata/roots/nitro-test-root.pem"),
    include_str!("../../../../testdata/roots/snp-test-ark.pem"),
    include_str!("../../../../testdata/roots/tdx-test-root.pem"),
];

/// How often a SPIFFE bundle consumer should poll `GET /v1/bundle/spiffe`:
/// a signing-key rotation keeps the previous key published, so a consumer
/// that polls this often never misses a key that signs live JWT-SVIDs.
const SPIFFE_REFRESH_HINT_SECONDS: u64 = 300;

/// Longest a requested principal, task ID, audience or scope may be.
pub(crate) const MAX_FIELD_LEN: usize = 256;
/// Longest audit detail stored (details can echo request input).
const MAX_AUDIT_DETAIL: usize = 512;

/// How the service is set up (from flags).
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// `iss` of tokens and the discovery document's issuer.
    pub issuer: String,
    /// Keys, CA, TLS and (by default) the database live here.
    pub data_dir: PathBuf,
    /// The reference-value files.
    pub measurements_dir: PathBuf,
    /// A Cedar policy file; the built-in default if absent.
    pub policy_file: Option<PathBuf>,
    /// Also trust the project's test roots (never in production).
    pub dev: bool,
    /// How long a challenge nonce lives.
    pub nonce_ttl: Duration,
    /// Token lifetime when the request names none (capped by the workload).
    pub default_token_ttl: u32,
    /// Per-client request limits.
    pub rate_limits: RateLimitConfig,
    /// Peers whose forwarding header names the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Which header they write.
    pub forwarded_header: ForwardedHeader,
    /// Audit records older than this are removed behind a signed
    /// checkpoint (`None`: kept).
    pub audit_retention: Option<Duration>,
    /// Expired credentials no revocation names are forgotten this long
    /// after their expiry (`None`: kept).
    pub credential_retention: Option<Duration>,
    /// Put a critical URI name constraint (the workloads' trust domains) on
    /// the SVID intermediate. Off by default: rustls-webpki and BoringSSL
    /// refuse every certificate under a URI name constraint (they do not
    /// implement that name form and fail closed), so relying parties built
    /// on them could not accept our SVIDs; OpenSSL and Go honour it.
    pub svid_name_constraint: bool,
}

/// Something the service could not start with.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A data-directory file.
    #[error(transparent)]
    Secret(#[from] secrets::SecretError),
    /// The CA.
    #[error(transparent)]
    Pki(#[from] crate::ca::PkiError),
    /// Reference values or policy.
    #[error("{0}")]
    Config(String),
    /// Trust anchors.
    #[error(transparent)]
    Trust(#[from] attest_gate_core::TrustError),
    /// The store's writer.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// The running service's state.
pub struct Service {
    config: ServiceConfig,
    verification: Verification,
    /// Reference values and policy, swapped together on reload.
    appraiser: RwLock<Arc<Appraiser>>,
    /// Bounds concurrent evidence verifications (CPU-bound: TDX on the
    /// request's task, Nitro and SNP in `spawn_blocking`), so a flood of
    /// requests queues instead of piling up blocking threads.
    verify_slots: Arc<tokio::sync::Semaphore>,
    nonce_key: NonceKey,
    /// Authenticates DPoP server nonces (a key of its own, derived from the
    /// nonce secret, so a DPoP nonce is never an attestation challenge).
    dpop_nonce_key: NonceKey,
    tokens: RwLock<Arc<TokenKeys>>,
    /// Issued again (same keys) when the trust domains change on reload.
    ca: RwLock<Arc<SvidCa>>,
    store: Store,
    /// Commits decisions, many requests' to a transaction.
    writer: Writer,
    /// The revocations in force, in memory.
    revocations: Arc<RevocationCache>,
    collateral: CollateralSources,
    admin: SecretHash,
    metrics: Metrics,
    limits: RateLimits,
    /// Seals secrets at rest (`keys/secrets.kek`).
    vault: LocalKek,
    /// Signs audit checkpoints when records are pruned (`--audit-retention`).
    checkpoint_key: Option<CheckpointKey>,
    /// The data directory's lock, held while this process uses its SQLite
    /// database.
    data_dir_lock: Option<std::fs::File>,
    clock: Clock,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Where keys live: `keys/`, or `keys-dev/` under `--dev`, so a production
/// data directory's keys never sign credentials for test-root evidence.
pub(crate) fn keys_dir(data_dir: &Path, dev: bool) -> PathBuf {
    data_dir.join(if dev { "keys-dev" } else { "keys" })
}

/// The project's test roots (`--dev`, `verifier policy test --dev`).
pub(crate) fn test_anchors() -> Result<TrustAnchors, StartError> {
    let mut roots = Vec::new();
    for text in TEST_ROOTS_PEM {
        for block in pem::parse_many(text).map_err(|e| StartError::Config(e.to_string()))? {
            roots.push(block.into_contents());
        }
    }
    Ok(TrustAnchors::test_roots(roots)?)
}

/// What a decision concerned, for the audit log (never a secret).
#[derive(Debug, Default, Clone)]
struct Trail {
    actor: Option<String>,
    tee: Option<String>,
    workload: Option<String>,
    workload_version: Option<String>,
    subject: Option<String>,
    jti: Option<String>,
    session_id: Option<String>,
    evidence_sha384: Option<String>,
    /// When the attestation's nonce was issued (challenges are not audited
    /// themselves).
    nonce_issued: Option<OffsetDateTime>,
}

impl Trail {
    fn admin() -> Self {
        Self {
            actor: Some("admin".into()),
            ..Self::default()
        }
    }
}

impl Service {
    /// Opens the data directory (creating keys on first start), loads
    /// reference values and policy, and wires the collateral sources.
    pub fn start(
        config: ServiceConfig,
        store: Store,
        collateral: CollateralSources,
        clock: Clock,
    ) -> Result<(Self, Option<String>), StartError> {
        let now = clock();
        let keys_dir = keys_dir(&config.data_dir, config.dev);
        secrets::private_dir(&keys_dir)?;
        let (nonce_secret, _) = secrets::load_or_create(&keys_dir.join("nonce.key"), || {
            Ok(secrets::random_bytes::<32>()?.to_vec())
        })?;
        let nonce_secret: [u8; 32] = nonce_secret.try_into().map_err(|_| {
            StartError::Config(format!(
                "{}: not 32 bytes",
                keys_dir.join("nonce.key").display()
            ))
        })?;
        let tokens = TokenKeys::load_or_create(&keys_dir.join("jwt"))?;
        let appraiser = Appraiser::load(&config.measurements_dir, config.policy_file.as_deref())?;
        let ca = SvidCa::load_or_create(
            &keys_dir.join("ca"),
            &trust_domains(&appraiser),
            config.svid_name_constraint,
            now,
        )?;
        let vault = LocalKek::load_or_create(&keys_dir.join("secrets.kek"))?;
        let checkpoint_key = config
            .audit_retention
            .map(|_| CheckpointKey::load_or_create(&config.data_dir))
            .transpose()
            .map_err(|e| StartError::Config(e.to_string()))?;
        let (admin, new_admin_token) =
            SecretHash::load_or_create(&config.data_dir.join("admin-token.sha256"))?;
        let verification = Verification::new(config.dev)?;
        let slots = std::thread::available_parallelism().map_or(2, |n| n.get() * 2);
        let metrics = Metrics::default();
        Ok((
            Self {
                verification,
                appraiser: RwLock::new(Arc::new(appraiser)),
                verify_slots: Arc::new(tokio::sync::Semaphore::new(slots)),
                nonce_key: NonceKey::new(&nonce_secret),
                dpop_nonce_key: NonceKey::new(&derive_key(&nonce_secret, b"dpop-nonce")),
                tokens: RwLock::new(Arc::new(tokens)),
                ca: RwLock::new(Arc::new(ca)),
                writer: Writer::start(store.clone(), metrics.commit_batch_sizes())?,
                revocations: RevocationCache::start(&store),
                store,
                collateral,
                admin,
                metrics,
                limits: RateLimits::new(&config.rate_limits, Arc::clone(&clock)),
                vault,
                checkpoint_key,
                data_dir_lock: None,
                config,
                clock,
            },
            new_admin_token,
        ))
    }

    /// Keeps `lock` (the data directory's) for as long as the service lives.
    pub(crate) fn hold(&mut self, lock: std::fs::File) {
        self.data_dir_lock = Some(lock);
    }

    /// Now, by the injected clock: the instant every decision is made at.
    pub fn now(&self) -> OffsetDateTime {
        (self.clock)()
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// How many workloads the reference values allow.
    pub fn workload_count(&self) -> usize {
        read(&self.appraiser).references.workloads().len()
    }

    /// One request from `address` (the client, as [`Service::client_address`]
    /// found it) to a limited endpoint.
    pub fn limit_address(
        &self,
        endpoint: Endpoint,
        address: std::net::IpAddr,
    ) -> Result<(), ServiceError> {
        self.limits
            .address(endpoint, address)
            .map_err(|l| self.limited(l))
    }

    /// One request by the agent key `jkt`.
    pub(crate) fn limit_key(&self, endpoint: Endpoint, jkt: &str) -> Result<(), ServiceError> {
        self.limits.key(endpoint, jkt).map_err(|l| self.limited(l))
    }

    /// One introspection by the relying party `client_id`.
    pub(crate) fn limit_client(&self, client_id: &str) -> Result<(), ServiceError> {
        self.limits.client(client_id).map_err(|l| self.limited(l))
    }

    fn limited(&self, l: Limited) -> ServiceError {
        self.metrics
            .rate_limited(&format!("{}/{}", l.endpoint.as_str(), l.by));
        ServiceError::new(
            ServiceCode::RateLimited,
            format!(
                "too many {} requests from this {}; try again in {} s",
                l.endpoint.as_str(),
                l.by,
                l.retry_after
            ),
        )
        .with_retry_after(l.retry_after)
    }

    /// The client's address: the peer, or behind a `--trusted-proxy` what
    /// its forwarding headers say.
    pub fn client_address(
        &self,
        peer: std::net::IpAddr,
        headers: &axum::http::HeaderMap,
    ) -> std::net::IpAddr {
        ratelimit::client_address(
            peer,
            headers,
            &self.config.trusted_proxies,
            self.config.forwarded_header,
        )
    }

    /// Whether `token` is the admin token.
    pub fn is_admin(&self, token: &str) -> bool {
        self.admin.matches(token)
    }

    /// `POST /v1/challenge`. Costs no database write: the nonce is
    /// stateless (its MAC proves it ours), challenges are counted in the
    /// metrics, and the attestation's own audit record names when its nonce
    /// was issued — so a flood of unauthenticated challenges cannot stall
    /// the store's writers or the audit chain.
    pub fn challenge(&self, now: OffsetDateTime) -> Result<ChallengeResponse, ServiceError> {
        let issued = challenge::issue(&self.nonce_key, now, self.config.nonce_ttl)
            .map_err(|_| ServiceError::internal("random generator failed"))?;
        let expires_at = issued
            .expires_at
            .format(&Rfc3339)
            .map_err(ServiceError::internal)?;
        self.metrics.challenge();
        Ok(ChallengeResponse {
            nonce: issued.encoded(),
            expires_at,
        })
    }

    /// `GET /.well-known/jwks.json`.
    pub fn jwks(&self) -> serde_json::Value {
        read(&self.tokens).jwks()
    }

    /// `GET /v1/bundle`.
    pub fn bundle_pem(&self) -> String {
        read(&self.ca).bundle_pem().to_string()
    }

    /// `GET /v1/bundle/spiffe`: the SPIFFE bundle (SPIFFE Trust Domain and
    /// Bundle §4): the SVID root as a `use: x509-svid` key with `x5c`, each
    /// published token-signing key as a `use: jwt-svid` key with its `kid`,
    /// and how often to poll. One bundle serves every trust domain the
    /// service issues for (they share the root and the signing keys).
    pub fn spiffe_bundle(&self) -> serde_json::Value {
        let mut keys = vec![read(&self.ca).bundle_jwk().clone()];
        let jwks = read(&self.tokens).jwks();
        for key in jwks
            .get("keys")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
        {
            let mut key = key.clone();
            if let Some(map) = key.as_object_mut() {
                map.insert("use".into(), serde_json::json!("jwt-svid"));
            }
            keys.push(key);
        }
        serde_json::json!({
            "keys": keys,
            "spiffe_refresh_hint": SPIFFE_REFRESH_HINT_SECONDS,
        })
    }

    /// `GET /.well-known/openid-configuration`: OpenID Connect Discovery
    /// 1.0 metadata, so that OIDC federation (a cloud's workload identity
    /// federation) can trust JWT-SVIDs by the issuer URL alone, plus the
    /// authorization-server metadata (RFC 8414) of what this service is: a
    /// token endpoint that takes attestation evidence, no authorization
    /// endpoint. `issuer` is `--issuer`, byte for byte the JWT-SVIDs' `iss`;
    /// the signing algorithms are the published keys'.
    pub fn discovery(&self) -> serde_json::Value {
        let iss = &self.config.issuer;
        let jwks = read(&self.tokens).jwks();
        let mut algs: Vec<String> = jwks
            .get("keys")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|k| k.get("alg").and_then(serde_json::Value::as_str))
            .map(str::to_string)
            .collect();
        algs.sort();
        algs.dedup();
        serde_json::json!({
            "issuer": iss,
            "jwks_uri": format!("{iss}/.well-known/jwks.json"),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": algs,
            "claims_supported": ["sub", "aud", "exp", "iat", "iss", "jti"],
            "token_endpoint": format!("{iss}/v1/attest"),
            "grant_types_supported": ["urn:attest-gate:grant-type:attestation"],
            "token_endpoint_auth_methods_supported": ["none"],
            "access_token_signing_alg_values_supported": algs,
            "challenge_endpoint": format!("{iss}/v1/challenge"),
            "jwt_svid_endpoint": format!("{iss}{JWT_SVID_PATH}"),
            "x509_svid_bundle_uri": format!("{iss}/v1/bundle"),
            "spiffe_bundle_uri": format!("{iss}/v1/bundle/spiffe"),
        })
    }

    /// Re-reads reference values, policy and the token-signing keys (so a
    /// rotation on one replica reaches the others); on any error keeps the
    /// old ones.
    pub async fn reload(&self, now: OffsetDateTime) -> Result<serde_json::Value, ServiceError> {
        let jwt_dir = keys_dir(&self.config.data_dir, self.config.dev).join("jwt");
        let result = Appraiser::load(
            &self.config.measurements_dir,
            self.config.policy_file.as_deref(),
        )
        .and_then(|appraiser| Ok((appraiser, TokenKeys::load_or_create(&jwt_dir)?)))
        .and_then(|(appraiser, tokens)| {
            // The intermediate follows the trust domains: issued again when
            // they changed, so no SVID fails its name constraint.
            let ca = SvidCa::load_or_create(
                &keys_dir(&self.config.data_dir, self.config.dev).join("ca"),
                &trust_domains(&appraiser),
                self.config.svid_name_constraint,
                now,
            )?;
            Ok((appraiser, tokens, ca))
        });
        let outcome = match result {
            Ok((appraiser, tokens, ca)) => {
                let workloads = appraiser.references.workloads().len();
                // The CA first: a grant decided under the new workloads
                // finds an intermediate that may issue for it.
                write(&self.ca, ca);
                write(&self.appraiser, appraiser);
                write(&self.tokens, tokens);
                Ok(serde_json::json!({"reloaded": true, "workloads": workloads}))
            }
            // The operator's own files are broken: say why (admin-only endpoint).
            Err(e) => Err(ServiceError::new(ServiceCode::ReloadFailed, e.to_string())),
        };
        let code = AuditCode::of(&outcome);
        self.audit(now, AuditAction::AdminReload, code, Trail::admin(), "")
            .await?;
        outcome
    }

    /// Makes a new token-signing key; the old one stays published.
    pub async fn rotate_signing_key(
        &self,
        now: OffsetDateTime,
    ) -> Result<serde_json::Value, ServiceError> {
        let keys = TokenKeys::rotate(&keys_dir(&self.config.data_dir, self.config.dev).join("jwt"))
            .map_err(ServiceError::internal)?;
        let kid = keys.current.kid().to_string();
        write(&self.tokens, keys);
        self.audit(
            now,
            AuditAction::AdminRotateSigningKey,
            AuditCode::Ok,
            Trail::admin(),
            &kid,
        )
        .await?;
        Ok(serde_json::json!({"rotated": true, "kid": kid}))
    }

    /// Appends the decision to the audit chain. A decision that cannot be
    /// recorded is not made: the caller answers 500 and hands out nothing.
    async fn audit(
        &self,
        now: OffsetDateTime,
        action: AuditAction,
        code: impl Into<AuditCode>,
        trail: Trail,
        detail: &str,
    ) -> Result<(), ServiceError> {
        let event = self.audit_event(now, action, code, trail, detail);
        self.commit(WriteSet::audit(event)).await.map(|_| ())
    }

    /// The revocations in force (from memory while they are unchanged).
    async fn revocations_in_force(&self) -> Result<Arc<RevocationIndex>, ServiceError> {
        self.revocations
            .get(&self.store)
            .await
            .map_err(ServiceError::internal)
    }

    /// `count` revocations in `mode` were committed: counted, and the
    /// in-memory copy is read again.
    fn revocations_changed(&self, mode: Mode, count: u64) {
        self.revocations.invalidate();
        if count > 0 {
            self.metrics.revoked(mode.as_str(), count);
        }
    }

    /// The audit record of a decision (never a secret).
    fn audit_event(
        &self,
        now: OffsetDateTime,
        action: AuditAction,
        code: impl Into<AuditCode>,
        trail: Trail,
        detail: &str,
    ) -> AuditEvent {
        let code = code.into();
        let detail = match trail.nonce_issued {
            Some(at) => format!(
                "{detail}; nonce issued {}",
                at.format(&Rfc3339).unwrap_or_default()
            ),
            None => detail.to_string(),
        };
        AuditEvent {
            id: secrets::ordered_id(now).unwrap_or_default(),
            at: now.unix_timestamp(),
            action: action.as_str().to_string(),
            actor: trail.actor,
            decision: code.decision().to_string(),
            code: code.as_str().to_string(),
            tee: trail.tee,
            workload: trail.workload,
            workload_version: trail.workload_version,
            policy_version: Some(read(&self.appraiser).policy_version.clone()),
            subject: trail.subject,
            jti: trail.jti,
            session_id: trail.session_id,
            evidence_sha384: trail.evidence_sha384,
            detail: detail.chars().take(MAX_AUDIT_DETAIL).collect(),
        }
    }

    /// Commits a decision's rows with its audit record (group commit: with
    /// whatever else is waiting). A failure means nothing is issued: 503
    /// `storage_unavailable` when the database is the trouble, else 500.
    async fn commit(&self, set: WriteSet) -> Result<Committed, ServiceError> {
        let (action, code) = (set.audit.action.clone(), set.audit.code.clone());
        let decision = set.audit.decision.clone();
        let (tee, workload) = (set.audit.tee.clone(), set.audit.workload.clone());
        let revokes = set.rows.iter().any(|row| matches!(row, Row::Revocation(_)));
        let written = self.writer.commit(set).await;
        // Whatever the outcome but a replay (which writes no row): a
        // revocation whose commit failed uncertainly may have committed, and
        // must not stay out of the copy in memory.
        if revokes && !matches!(written, Ok(Committed::Replayed(_))) {
            self.revocations.invalidate();
        }
        match written {
            Ok(committed) => {
                tracing::info!(action, %decision, code, ?tee, ?workload, "decision");
                Ok(committed)
            }
            Err(e) => {
                tracing::error!(error = %e, action, code, "could not write the decision and its audit record; the decision is void");
                Err(ServiceError::new(
                    ServiceCode::of_store_error(&e),
                    "the decision could not be recorded in the audit log; nothing was issued",
                ))
            }
        }
    }
}

/// The SPIFFE trust domains the workloads name: what the SVID
/// intermediate's name constraint permits.
fn trust_domains(appraiser: &Appraiser) -> std::collections::BTreeSet<String> {
    appraiser
        .references
        .workloads()
        .iter()
        .map(|w| w.grant.trust_domain.clone())
        .collect()
}

/// Whether a request was refused by the rate limiter (then it is not
/// audited: a flood must not cost database writes).
fn is_rate_limited(e: &ServiceError) -> bool {
    e.code() == ServiceCode::RateLimited.into()
}

/// SHA-256(`label` ‖ `secret`): an independent key for another purpose.
fn derive_key(secret: &[u8; 32], label: &[u8]) -> [u8; 32] {
    let mut input = label.to_vec();
    input.extend_from_slice(secret);
    let mut out = [0u8; 32];
    out.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &input).as_ref());
    out
}

/// A snapshot of a reloadable value (a poisoned lock still holds a whole
/// value: writers only swap an `Arc`).
fn read<T>(lock: &RwLock<Arc<T>>) -> Arc<T> {
    Arc::clone(
        &lock
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
}

fn write<T>(lock: &RwLock<Arc<T>>, value: T) {
    *lock
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(value);
}
