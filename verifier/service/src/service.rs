//! The verifier service's decisions, independent of HTTP: issue a challenge;
//! take an attestation request through parsing → freshness → evidence
//! verification → binding → reference values → policy → single use → and
//! only then credentials; audit every decision; reload and rotate on an
//! administrator's word.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use attest_gate_core::{
    AgentKey, Binding, Collateral, ModelDigest, PlatformClaims, ReferenceValues, TeeKind,
    TrustAnchors, TrustKind, VerifiedClaims, Verifier, VerifyError, Workload,
};
use aws_lc_rs::digest::{digest, SHA256};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::api::{
    ApiError, AttestRequest, AttestResponse, ChallengeResponse, ErrorKind, IntentRequest,
};
use crate::ca::{check_csr, CheckedCsr, SvidCa};
use crate::challenge::{self, NonceError, NonceKey};
use crate::collateral_source::CollateralSources;
use crate::credentials::{self, Intent, Session};
use crate::policy::{Policy, PolicyQuery, DEFAULT_POLICY};
use crate::secrets::{self, AdminTokenHash};
use crate::store::{AuditEvent, CredentialRecord, Store};
use crate::token::TokenKeys;

/// The project's test roots, trusted only with `--dev`.
const TEST_ROOTS_PEM: [&str; 3] = [
    include_str!("../../../testdata/roots/nitro-test-root.pem"),
    include_str!("../../../testdata/roots/snp-test-ark.pem"),
    include_str!("../../../testdata/roots/tdx-test-root.pem"),
];

/// Longest a requested principal, task ID, audience or scope may be.
const MAX_FIELD_LEN: usize = 256;
/// Most scopes one request may ask for.
const MAX_SCOPES: usize = 32;
/// Most collateral files one request may carry.
const MAX_COLLATERAL_FILES: usize = 16;
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
}

/// The running service's state.
#[derive(Debug)]
pub struct Service {
    config: ServiceConfig,
    vendor: Verifier,
    test: Option<Verifier>,
    /// Reference values and policy, swapped together on reload.
    appraiser: RwLock<Arc<Appraiser>>,
    /// Bounds concurrent evidence verifications (CPU-bound, in
    /// `spawn_blocking`), so a flood of requests queues instead of piling up
    /// blocking threads.
    verify_slots: Arc<tokio::sync::Semaphore>,
    nonce_key: NonceKey,
    tokens: RwLock<Arc<TokenKeys>>,
    ca: SvidCa,
    store: Store,
    collateral: CollateralSources,
    admin: AdminTokenHash,
}

/// What appraisal judges against; reloaded as one.
#[derive(Debug)]
struct Appraiser {
    references: ReferenceValues,
    policy: Policy,
}

/// Where keys live: `keys/`, or `keys-dev/` under `--dev`, so a production
/// data directory's keys never sign credentials for test-root evidence.
pub fn keys_dir(data_dir: &Path, dev: bool) -> PathBuf {
    data_dir.join(if dev { "keys-dev" } else { "keys" })
}

/// Reads every `*.toml` in `dir`, in name order.
pub fn load_references(dir: &Path) -> Result<ReferenceValues, StartError> {
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

/// Reads the policy file, or the built-in default.
pub fn load_policy(file: Option<&Path>) -> Result<Policy, StartError> {
    let text = match file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| StartError::Config(format!("policy {}: {e}", path.display())))?,
        None => DEFAULT_POLICY.to_string(),
    };
    Policy::parse(&text).map_err(|e| StartError::Config(e.to_string()))
}

fn test_anchors() -> Result<TrustAnchors, StartError> {
    let mut roots = Vec::new();
    for text in TEST_ROOTS_PEM {
        for block in pem::parse_many(text).map_err(|e| StartError::Config(e.to_string()))? {
            roots.push(block.into_contents());
        }
    }
    Ok(TrustAnchors::test_roots(roots)?)
}

fn decode_b64(what: &str, text: &str) -> Result<Vec<u8>, ApiError> {
    let text = text.trim();
    [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
        .ok_or_else(|| ApiError::malformed("malformed_request", format!("`{what}` is not base64")))
}

fn check_field(what: &str, value: &str, allowed: impl Fn(char) -> bool) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > MAX_FIELD_LEN || !value.chars().all(allowed) {
        return Err(ApiError::malformed(
            "malformed_request",
            format!("`{what}` must be 1 to {MAX_FIELD_LEN} allowed characters"),
        ));
    }
    Ok(())
}

fn id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._-@+".contains(c)
}

/// `system`, `user:<id>` or `service:<id>`.
fn check_principal(p: &str) -> Result<(), ApiError> {
    let ok = p == "system"
        || ["user:", "service:"].iter().any(|prefix| {
            p.strip_prefix(prefix)
                .is_some_and(|id| !id.is_empty() && id.len() <= 128 && id.chars().all(id_char))
        });
    if ok {
        Ok(())
    } else {
        Err(ApiError::malformed(
            "malformed_request",
            "`principal` must be `system`, `user:<id>` or `service:<id>`",
        ))
    }
}

fn check_intent(intent: &IntentRequest) -> Result<(), ApiError> {
    check_field("intent.task_id", &intent.task_id, |c| {
        !c.is_control() && c != ' '
    })?;
    check_field("intent.audience", &intent.audience, |c| {
        c.is_ascii_graphic()
    })?;
    if intent.scopes.len() > MAX_SCOPES {
        return Err(ApiError::malformed(
            "malformed_request",
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

fn parse_csr(text: &str) -> Result<Vec<u8>, ApiError> {
    if text.contains("-----BEGIN") {
        pem::parse(text)
            .ok()
            .filter(|p| p.tag() == "CERTIFICATE REQUEST" || p.tag() == "NEW CERTIFICATE REQUEST")
            .map(pem::Pem::into_contents)
            .ok_or_else(|| {
                ApiError::malformed("csr_invalid", "`csr` is not a PEM certificate request")
            })
    } else {
        decode_b64("csr", text)
    }
}

/// A parsed, well-formed attestation request.
struct Parsed {
    tee: TeeKind,
    evidence: Vec<u8>,
    collateral: Collateral,
    nonce: Vec<u8>,
    key: AgentKey,
    model: ModelDigest,
    csr: Option<Vec<u8>>,
}

fn parse(req: &AttestRequest) -> Result<Parsed, ApiError> {
    let tee: TeeKind = req.tee.parse().map_err(|e: attest_gate_core::UnknownTee| {
        ApiError::malformed("malformed_request", e.to_string())
    })?;
    let evidence = decode_b64("evidence", &req.evidence)?;
    if req.collateral.len() > MAX_COLLATERAL_FILES {
        return Err(ApiError::malformed(
            "malformed_request",
            format!("at most {MAX_COLLATERAL_FILES} collateral files"),
        ));
    }
    let mut items = Vec::new();
    for (name, b64) in &req.collateral {
        check_field("collateral name", name, id_char)?;
        items.push((name.clone(), decode_b64("collateral", b64)?));
    }
    let nonce = URL_SAFE_NO_PAD
        .decode(req.nonce.trim())
        .map_err(|_| ApiError::malformed("malformed_request", "`nonce` is not base64url"))?;
    let key = AgentKey::from_jwk(&req.public_key)
        .map_err(|e| ApiError::malformed("invalid_public_key", e.to_string()))?;
    let model = ModelDigest::from_hex(req.model_digest.trim()).ok_or_else(|| {
        ApiError::malformed(
            "malformed_request",
            "`model_digest` must be 96 hex digits (SHA-384)",
        )
    })?;
    check_principal(&req.principal)?;
    check_intent(&req.intent)?;
    if req.ttl_seconds == Some(0) {
        return Err(ApiError::malformed(
            "malformed_request",
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
        model,
        csr,
    })
}

/// Decodes and checks an attestation request body as `POST /v1/attest` does
/// before any verification (what the fuzz target and property tests drive).
/// Also the CSR's parse and key check. Bad input is a 400 error, never a panic.
pub fn check_request_body(body: &[u8]) -> Result<AttestRequest, ApiError> {
    let req: AttestRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::malformed("malformed_request", e.to_string()))?;
    let parsed = parse(&req)?;
    if let Some(der) = &parsed.csr {
        check_csr(der, &parsed.key).map_err(|e| ApiError::malformed(e.code(), e.to_string()))?;
    }
    Ok(req)
}

fn nonce_denial(e: NonceError) -> ApiError {
    ApiError::denied(e.code(), e.to_string())
}

fn verify_denial(e: &VerifyError) -> ApiError {
    ApiError::denied(e.code(), e.to_string())
}

/// What an audited attestation decided, for the audit log.
#[derive(Default)]
struct Trail {
    tee: Option<String>,
    workload: Option<String>,
    subject: Option<String>,
    jti: Option<String>,
}

impl Service {
    /// Opens the data directory (creating keys on first start), loads
    /// reference values and policy, and wires the collateral sources.
    pub fn start(
        config: ServiceConfig,
        store: Store,
        collateral: CollateralSources,
        now: OffsetDateTime,
    ) -> Result<(Self, Option<String>), StartError> {
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
        let ca = SvidCa::load_or_create(&keys_dir.join("ca"), now)?;
        let (admin, new_admin_token) =
            AdminTokenHash::load_or_create(&config.data_dir.join("admin-token.sha256"))?;
        let references = load_references(&config.measurements_dir)?;
        let policy = load_policy(config.policy_file.as_deref())?;
        let test = if config.dev {
            Some(Verifier::new(test_anchors()?))
        } else {
            None
        };
        let slots = std::thread::available_parallelism().map_or(2, |n| n.get() * 2);
        Ok((
            Self {
                vendor: Verifier::new(TrustAnchors::vendor()?),
                test,
                appraiser: RwLock::new(Arc::new(Appraiser { references, policy })),
                verify_slots: Arc::new(tokio::sync::Semaphore::new(slots)),
                nonce_key: NonceKey::new(&nonce_secret),
                tokens: RwLock::new(Arc::new(tokens)),
                ca,
                store,
                collateral,
                admin,
                config,
            },
            new_admin_token,
        ))
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

    /// Whether `token` is the admin token.
    pub fn is_admin(&self, token: &str) -> bool {
        self.admin.matches(token)
    }

    /// `POST /v1/challenge`.
    pub fn challenge(&self, now: OffsetDateTime) -> Result<ChallengeResponse, ApiError> {
        let issued = challenge::issue(&self.nonce_key, now, self.config.nonce_ttl)
            .map_err(|_| ApiError::internal("random generator failed"))?;
        Ok(ChallengeResponse {
            nonce: issued.encoded(),
            expires_at: issued
                .expires_at
                .format(&Rfc3339)
                .map_err(ApiError::internal)?,
        })
    }

    /// `GET /.well-known/jwks.json`.
    pub fn jwks(&self) -> serde_json::Value {
        read(&self.tokens).jwks()
    }

    /// `GET /v1/bundle`.
    pub fn bundle_pem(&self) -> String {
        self.ca.bundle_pem().to_string()
    }

    /// `GET /.well-known/openid-configuration` (the parts that apply).
    pub fn discovery(&self) -> serde_json::Value {
        let iss = &self.config.issuer;
        // Authorization-server metadata (RFC 8414) for what this service is:
        // a token endpoint that takes attestation evidence, no authorization
        // endpoint, no ID tokens. Relying parties need `issuer` and `jwks_uri`.
        serde_json::json!({
            "issuer": iss,
            "jwks_uri": format!("{iss}/.well-known/jwks.json"),
            "token_endpoint": format!("{iss}/v1/attest"),
            "grant_types_supported": ["urn:attest-gate:grant-type:attestation"],
            "token_endpoint_auth_methods_supported": ["none"],
            "response_types_supported": [],
            "access_token_signing_alg_values_supported": ["ES256"],
            "challenge_endpoint": format!("{iss}/v1/challenge"),
            "x509_svid_bundle_uri": format!("{iss}/v1/bundle"),
        })
    }

    /// Re-reads reference values, policy and the token-signing keys (so a
    /// rotation on one replica reaches the others); on any error keeps the
    /// old ones.
    pub async fn reload(&self, now: OffsetDateTime) -> Result<serde_json::Value, ApiError> {
        let jwt_dir = keys_dir(&self.config.data_dir, self.config.dev).join("jwt");
        let result = load_references(&self.config.measurements_dir).and_then(|references| {
            let policy = load_policy(self.config.policy_file.as_deref())?;
            let tokens = TokenKeys::load_or_create(&jwt_dir)?;
            Ok((Appraiser { references, policy }, tokens))
        });
        let (code, outcome) = match result {
            Ok((appraiser, tokens)) => {
                let workloads = appraiser.references.workloads().len();
                write(&self.appraiser, appraiser);
                write(&self.tokens, tokens);
                (
                    "ok",
                    Ok(serde_json::json!({"reloaded": true, "workloads": workloads})),
                )
            }
            // The operator's own files are broken: say why (admin-only endpoint).
            Err(e) => (
                "reload_failed",
                Err(ApiError::new(
                    ErrorKind::Internal,
                    "reload_failed",
                    e.to_string(),
                )),
            ),
        };
        self.audit(now, "admin.reload", code, Trail::default(), "")
            .await;
        outcome
    }

    /// Makes a new token-signing key; the old one stays published.
    pub async fn rotate_signing_key(
        &self,
        now: OffsetDateTime,
    ) -> Result<serde_json::Value, ApiError> {
        let keys = TokenKeys::rotate(&keys_dir(&self.config.data_dir, self.config.dev).join("jwt"))
            .map_err(ApiError::internal)?;
        let kid = keys.current.kid().to_string();
        write(&self.tokens, keys);
        self.audit(
            now,
            "admin.rotate_signing_key",
            "ok",
            Trail::default(),
            &kid,
        )
        .await;
        Ok(serde_json::json!({"rotated": true, "kid": kid}))
    }

    async fn audit(
        &self,
        now: OffsetDateTime,
        action: &str,
        code: &str,
        trail: Trail,
        detail: &str,
    ) {
        let event = AuditEvent {
            id: secrets::random_id().unwrap_or_default(),
            at: now.unix_timestamp(),
            action: action.to_string(),
            decision: if code == "ok" { "allow" } else { "deny" }.to_string(),
            code: code.to_string(),
            tee: trail.tee,
            workload: trail.workload,
            subject: trail.subject,
            jti: trail.jti,
            detail: detail.chars().take(MAX_AUDIT_DETAIL).collect(),
        };
        if let Err(e) = self.store.audit(&event).await {
            tracing::error!(error = %e, action, code, "could not write the audit log");
        }
        tracing::info!(action, decision = %event.decision, code, tee = ?event.tee, workload = ?event.workload, "decision");
    }

    /// `POST /v1/attest`: every check, then credentials; every outcome audited.
    pub async fn attest(
        self: &Arc<Self>,
        req: AttestRequest,
        now: OffsetDateTime,
    ) -> Result<AttestResponse, ApiError> {
        let mut trail = Trail::default();
        let result = self.attest_inner(req, now, &mut trail).await;
        let (code, detail) = match &result {
            Ok(r) => ("ok".to_string(), r.scope.clone()),
            Err(e) => (e.code.clone(), e.message.clone()),
        };
        self.audit(now, "attest", &code, trail, &detail).await;
        result
    }

    async fn attest_inner(
        self: &Arc<Self>,
        req: AttestRequest,
        now: OffsetDateTime,
        trail: &mut Trail,
    ) -> Result<AttestResponse, ApiError> {
        let parsed = parse(&req)?;
        trail.tee = Some(parsed.tee.to_string());
        let csr = parsed
            .csr
            .as_deref()
            .map(|der| check_csr(der, &parsed.key))
            .transpose()
            .map_err(|e| match e {
                crate::ca::CsrError::KeyMismatch => ApiError::denied(e.code(), e.to_string()),
                _ => ApiError::malformed(e.code(), e.to_string()),
            })?;
        let nonce_expiry =
            challenge::check(&self.nonce_key, &parsed.nonce, now).map_err(nonce_denial)?;

        let collateral = self
            .collateral
            .resolve(parsed.tee, &parsed.evidence, parsed.collateral.clone())
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "collateral source failed");
                ApiError::new(
                    ErrorKind::Unavailable,
                    "collateral_unavailable",
                    "the verifier's collateral could not be read; see its log",
                )
            })?;
        let claims = self
            .verify_evidence(parsed.tee, parsed.evidence.clone(), collateral, now)
            .await?;
        self.require_revocation(&claims)?;

        let binding = Binding::new(&parsed.nonce, parsed.key.clone(), parsed.model)
            .ok_or_else(|| nonce_denial(NonceError::Unknown))?;
        binding
            .check(&claims)
            .map_err(|r| ApiError::denied(r.code(), r.to_string()))?;

        let appraiser = read(&self.appraiser);
        let workload = appraiser
            .references
            .appraise(&claims, &parsed.model)
            .map_err(|r| ApiError::denied(r.code(), r.to_string()))?;
        trail.workload = Some(workload.name.clone());
        let scopes = grant_scopes(
            &appraiser.policy,
            workload,
            &claims,
            &parsed.model,
            &req,
            now,
        )?;

        // `now` was read when the request arrived; the nonce must still be
        // current when it is consumed, or a slow request could outlive its
        // expiry and the pruning of consumed nonces.
        if crate::clock::now() >= nonce_expiry {
            return Err(nonce_denial(NonceError::Expired));
        }

        let nonce_id = hex::encode(digest(&SHA256, &parsed.nonce));
        let first_use = self
            .store
            .consume_nonce(&nonce_id, nonce_expiry.unix_timestamp())
            .await
            .map_err(ApiError::internal)?;
        if !first_use {
            return Err(nonce_denial(NonceError::Replayed));
        }
        self.issue(
            &parsed,
            &req,
            &claims,
            workload,
            scopes,
            csr.as_ref(),
            now,
            trail,
        )
        .await
    }

    /// Vendor roots first; with `--dev`, evidence no vendor root anchors is
    /// tried against the test roots (and is marked as such from then on).
    async fn verify_evidence(
        self: &Arc<Self>,
        tee: TeeKind,
        evidence: Vec<u8>,
        collateral: Collateral,
        now: OffsetDateTime,
    ) -> Result<VerifiedClaims, ApiError> {
        let this = Arc::clone(self);
        let slot = Arc::clone(&self.verify_slots)
            .acquire_owned()
            .await
            .map_err(ApiError::internal)?;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            match this.vendor.verify(tee, &evidence, &collateral, now) {
                Err(e) if e.code() == "chain_untrusted" => match &this.test {
                    Some(test) => test.verify(tee, &evidence, &collateral, now),
                    None => Err(e),
                },
                other => other,
            }
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| verify_denial(&e))
    }

    /// The AMD CRL is optional collateral; for production (vendor-root)
    /// evidence this service requires that revocation was checked.
    fn require_revocation(&self, claims: &VerifiedClaims) -> Result<(), ApiError> {
        if let PlatformClaims::Snp(snp) = &claims.platform {
            if claims.trust == TrustKind::VendorRoot && !snp.revocation_checked {
                return Err(ApiError::denied(
                    "revocation_not_checked",
                    "SEV-SNP evidence needs AMD's CRL for its ARK (crl.der) as collateral",
                ));
            }
        }
        Ok(())
    }
}

/// requested ∩ the workload's grant ∩ what policy permits; the audience must
/// be one the grant names (a grant always names at least one).
fn grant_scopes(
    policy: &Policy,
    workload: &Workload,
    claims: &VerifiedClaims,
    model: &ModelDigest,
    req: &AttestRequest,
    now: OffsetDateTime,
) -> Result<Vec<String>, ApiError> {
    let intent = &req.intent;
    if !workload.grant.audiences.contains(&intent.audience) {
        return Err(ApiError::denied(
            "audience_not_allowed",
            format!(
                "workload {} may not get tokens for this audience",
                workload.name
            ),
        ));
    }
    let allowed: Vec<String> = intent
        .scopes
        .iter()
        .filter(|s| workload.grant.scopes.contains(s))
        .cloned()
        .collect();
    let permitted = policy
        .permitted_scopes(&PolicyQuery {
            workload,
            claims,
            model,
            act_for: &req.principal,
            task_id: &intent.task_id,
            audience: &intent.audience,
            scopes: &allowed,
            now,
        })
        .map_err(ApiError::internal)?;
    if permitted.is_empty() {
        return Err(ApiError::denied(
            "scope_not_allowed",
            "no requested scope is allowed by the workload's grant and the policy",
        ));
    }
    Ok(permitted)
}

impl Service {
    #[allow(clippy::too_many_arguments)]
    async fn issue(
        &self,
        parsed: &Parsed,
        req: &AttestRequest,
        claims: &VerifiedClaims,
        workload: &Workload,
        scopes: Vec<String>,
        csr: Option<&CheckedCsr>,
        now: OffsetDateTime,
        trail: &mut Trail,
    ) -> Result<AttestResponse, ApiError> {
        let max_ttl = workload.grant.max_ttl_seconds;
        let ttl = req
            .ttl_seconds
            .unwrap_or(self.config.default_token_ttl)
            .min(max_ttl);
        let expires_at = now + Duration::seconds(i64::from(ttl));
        let jkt = parsed.key.jkt();
        let jti = secrets::random_id().map_err(ApiError::internal)?;
        let session_id = secrets::random_id().map_err(ApiError::internal)?;
        let sub = credentials::spiffe_id(workload, &jkt);
        let test_root = claims.trust == TrustKind::TestRoot;
        let grant = credentials::Grant {
            claims,
            workload,
            model: &parsed.model,
            issuer: &self.config.issuer,
            instance: &jkt,
            scopes: &scopes,
            audience: &req.intent.audience,
            act_for: &req.principal,
            intent: Intent {
                task_id: req.intent.task_id.clone(),
                requested_scopes: req.intent.scopes.clone(),
                audience: req.intent.audience.clone(),
            },
            jkt: jkt.clone(),
            jti: jti.clone(),
            session: Session {
                id: session_id.clone(),
                parent: None,
                chain: vec![sub.clone()],
            },
            now,
            expires_at,
        };
        let access_token = read(&self.tokens)
            .current
            .sign_jwt("at+jwt", &grant.access_claims())
            .map_err(ApiError::internal)?;
        let svid = csr
            .map(|csr| self.ca.issue(csr, &sub, now, expires_at, test_root))
            .transpose()
            .map_err(ApiError::internal)?;
        self.store
            .record_credential(&CredentialRecord {
                jti: jti.clone(),
                subject: sub.clone(),
                session_id: session_id.clone(),
                parent_jti: None,
                workload: workload.name.clone(),
                jkt,
                scope: scopes.join(" "),
                audience: req.intent.audience.clone(),
                issued_at: now.unix_timestamp(),
                expires_at: expires_at.unix_timestamp(),
                test_root,
            })
            .await
            .map_err(ApiError::internal)?;
        trail.subject = Some(sub.clone());
        trail.jti = Some(jti);
        Ok(AttestResponse {
            access_token,
            token_type: "DPoP".into(),
            expires_in: i64::from(ttl),
            scope: scopes.join(" "),
            spiffe_id: sub,
            session_id,
            svid,
            test_root,
        })
    }
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
            assert_eq!(e.kind, ErrorKind::Malformed, "{field}");
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
