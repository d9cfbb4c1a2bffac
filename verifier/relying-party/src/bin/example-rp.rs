//! `example-rp`: a minimal relying party that accepts Attest Gate tokens.
//!
//! It fetches the verifier's JWKS at start, keeps the verifier's revocation
//! list current (at most one refresh a second), and serves `GET /hello` to
//! requests carrying a DPoP-bound token with the configured scope and a valid
//! DPoP proof. It listens over plain HTTP: it is a loopback example. A real
//! RP serves HTTPS (or sits behind a TLS proxy and passes `--public-url`).
//!
//! ```text
//! example-rp --verifier https://127.0.0.1:8443 --ca-cert attest-gate-data/tls/cert.pem \
//!     --audience https://rp.attest-gate.test --scope inference:invoke \
//!     --listen 127.0.0.1:0 [--public-url URL] [--issuer URL]
//! ```
//!
//! When ready it prints exactly one line to stdout:
//! `example-rp listening on http://ADDR`. Logs go to stderr.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use attest_gate_relying_party::revocation::MAX_REVOCATION_LIST_LEN;
use attest_gate_relying_party::{
    AuthError, Jwks, RelyingParty, ReplayCache, Request, RevocationError, RevocationList,
    RevocationSet, TokenError, Validator,
};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;
use serde_json::{json, Value};

/// Revocations are fetched at most this often.
const REVOCATION_REFRESH: Duration = Duration::from_secs(1);
/// Most revocation-list pages fetched in one refresh.
const MAX_REVOCATION_PAGES: usize = 64;
/// Past this without a successful refresh, requests are refused (503): an RP
/// that cannot learn about revocations must not keep accepting tokens.
const REVOCATION_MAX_STALENESS: Duration = Duration::from_secs(30);
/// The JWKS is re-fetched for an unknown `kid` at most this often.
const JWKS_REFRESH: Duration = Duration::from_secs(10);
/// Largest JWKS read.
const MAX_JWKS_LEN: usize = 64 * 1024;
/// Replay-cache size: proofs live two minutes (±60 s), so this allows
/// roughly 800 requests a second before the cache fails closed.
const REPLAY_CAPACITY: usize = 100_000;
/// The endpoint served.
const HELLO_PATH: &str = "/hello";

#[derive(Debug, Parser)]
#[command(
    name = "example-rp",
    about = "Example relying party for Attest Gate DPoP-bound tokens (plain HTTP, for loopback use)"
)]
struct Args {
    /// The verifier's base URL (https://host:port).
    #[arg(long)]
    verifier: String,
    /// The CA (or self-signed certificate) the verifier presents, PEM.
    #[arg(long)]
    ca_cert: PathBuf,
    /// This RP's audience: tokens must name it in `aud`.
    #[arg(long)]
    audience: String,
    /// The scope `GET /hello` requires.
    #[arg(long, default_value = "inference:invoke")]
    scope: String,
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The base URL clients address this RP by (proofs' `htu` is this plus
    /// the path); default `http://<bound address>`.
    #[arg(long)]
    public_url: Option<String>,
    /// The verifier's issuer (`iss`); default the `--verifier` URL.
    #[arg(long)]
    issuer: Option<String>,
}

struct Revocations {
    set: RevocationSet,
    last_attempt: Option<Instant>,
    last_success: Option<Instant>,
}

struct App {
    rp: RelyingParty,
    http: reqwest::Client,
    verifier: String,
    scope: String,
    public_base: String,
    jwks: RwLock<Jwks>,
    /// When the JWKS was last re-fetched (the fetch at start does not count).
    jwks_refetched: Mutex<Option<Instant>>,
    revocations: tokio::sync::Mutex<Revocations>,
    replay: ReplayCache,
}

/// The only clock read: the library takes `now` as an argument.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn http_client(ca_pem: &[u8]) -> anyhow::Result<reqwest::Client> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.context("reading --ca-cert")?)?;
    }
    if roots.is_empty() {
        bail!("--ca-cert holds no certificate");
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .https_only(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .build()?)
}

/// The body, refused past `cap` bytes without reading further.
async fn read_capped(mut response: reqwest::Response, cap: usize) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len().saturating_add(chunk.len()) > cap {
            bail!("response larger than {cap} bytes");
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

async fn fetch_jwks(http: &reqwest::Client, verifier: &str) -> anyhow::Result<Jwks> {
    let response = http
        .get(format!("{verifier}/.well-known/jwks.json"))
        .send()
        .await?;
    let status = response.status();
    if !status.is_success() {
        bail!("GET /.well-known/jwks.json: {status}");
    }
    let document: Value = serde_json::from_slice(&read_capped(response, MAX_JWKS_LEN).await?)?;
    Ok(Jwks::from_json(&document)?)
}

impl App {
    /// Fetches the JWKS again unless that was done less than
    /// [`JWKS_REFRESH`] ago; true if a new one is in place.
    async fn refresh_jwks(&self) -> bool {
        {
            let mut refetched = self
                .jwks_refetched
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if refetched.is_some_and(|at| at.elapsed() < JWKS_REFRESH) {
                return false;
            }
            *refetched = Some(Instant::now());
        }
        match fetch_jwks(&self.http, &self.verifier).await {
            Ok(jwks) => {
                tracing::info!(keys = jwks.len(), "re-fetched the verifier's JWKS");
                *self
                    .jwks
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = jwks;
                true
            }
            Err(e) => {
                tracing::warn!("re-fetching the JWKS failed: {e:#}");
                false
            }
        }
    }

    fn jwks(&self) -> Jwks {
        self.jwks
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// One `GET /v1/revocations?since=<cursor>`. Anything but a 200 — a 404
    /// included — is a failed refresh: a relying party that cannot learn of
    /// revocations must not assume there are none.
    async fn fetch_revocations(&self, cursor: i64) -> anyhow::Result<String> {
        let response = self
            .http
            .get(format!("{}/v1/revocations?since={cursor}", self.verifier))
            .send()
            .await?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            bail!("GET /v1/revocations: {status}");
        }
        let body = read_capped(response, MAX_REVOCATION_LIST_LEN).await?;
        String::from_utf8(body).context("the list is not text")
    }

    /// Brings the set up to date: one request, or several while the
    /// verifier says there are `more` pages (bounded).
    async fn update_revocations(&self, state: &mut Revocations) -> anyhow::Result<()> {
        for _ in 0..MAX_REVOCATION_PAGES {
            let jws = self.fetch_revocations(state.set.cursor()).await?;
            let issuer = &self.rp.validator.issuer;
            let list = match RevocationList::verify(&jws, &self.jwks(), issuer) {
                Err(RevocationError::UnknownKid) if self.refresh_jwks().await => {
                    RevocationList::verify(&jws, &self.jwks(), issuer)?
                }
                other => other?,
            };
            let more = list.more;
            let changed = state.set.apply(list)?;
            if changed > 0 {
                tracing::info!(
                    changed,
                    held = state.set.len(),
                    cursor = state.set.cursor(),
                    "revocation list updated"
                );
            }
            if !more {
                return Ok(());
            }
        }
        bail!("the revocation list still has more pages after {MAX_REVOCATION_PAGES}")
    }

    /// Refreshes the revocation set if the last attempt is a second old; an
    /// error if the set is too stale to rely on.
    async fn current_revocations(
        &self,
    ) -> Result<tokio::sync::MutexGuard<'_, Revocations>, &'static str> {
        let mut state = self.revocations.lock().await;
        let due = state
            .last_attempt
            .is_none_or(|at| at.elapsed() >= REVOCATION_REFRESH);
        if due {
            state.last_attempt = Some(Instant::now());
            match self.update_revocations(&mut state).await {
                Ok(()) => state.last_success = Some(Instant::now()),
                Err(e) => tracing::warn!("refreshing the revocation list failed: {e:#}"),
            }
        }
        let fresh = state
            .last_success
            .is_some_and(|at| at.elapsed() < REVOCATION_MAX_STALENESS);
        if fresh {
            Ok(state)
        } else {
            Err("the revocation list could not be refreshed")
        }
    }
}

fn refusal(error: &AuthError, scope: &str) -> Response {
    let status = StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::UNAUTHORIZED);
    let mut challenge = format!(r#"DPoP error="{}", algs="ES256 ES384 EdDSA""#, error.code());
    if matches!(error, AuthError::InsufficientScope { .. }) {
        challenge.push_str(&format!(r#", scope="{scope}""#));
    }
    let body = Json(json!({"error": error.code(), "message": error.to_string()}));
    let mut response = (status, body).into_response();
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

fn unavailable(message: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"error": "temporarily_unavailable", "message": message})),
    )
        .into_response()
}

/// The single value of a header; `Err` if it is repeated or not text.
fn single<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, ()> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(());
    }
    first.map(|v| v.to_str().map_err(|_| ())).transpose()
}

async fn hello(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let revocations = match app.current_revocations().await {
        Ok(guard) => guard,
        Err(message) => return unavailable(message),
    };
    let Ok(authorization) = single(&headers, "authorization") else {
        return refusal(&AuthError::MissingToken, &app.scope);
    };
    let Ok(dpop) = single(&headers, "dpop") else {
        return refusal(
            &AuthError::InvalidProof(attest_gate_relying_party::DpopError::Malformed(
                "more than one DPoP header",
            )),
            &app.scope,
        );
    };
    let url = format!("{}{HELLO_PATH}", app.public_base);
    let request = Request {
        authorization,
        dpop,
        method: "GET",
        url: &url,
        required_scope: Some(&app.scope),
        nonce: None,
        now: unix_now(),
    };
    let mut result = app
        .rp
        .authorize(&request, &app.jwks(), &revocations.set, &app.replay);
    if matches!(result, Err(AuthError::InvalidToken(TokenError::UnknownKid)))
        && app.refresh_jwks().await
    {
        // Safe to retry: an unknown kid fails before the proof's jti is recorded.
        result = app
            .rp
            .authorize(&request, &app.jwks(), &revocations.set, &app.replay);
    }
    drop(revocations);
    match result {
        Ok(authorized) => {
            if authorized.quarantined {
                tracing::warn!(sub = %authorized.token.sub, jti = %authorized.token.jti,
                    "serving a quarantined token: route to monitoring");
            }
            Json(json!({
                "hello": authorized.token.sub,
                "scope": authorized.token.scope,
                "quarantined": authorized.quarantined,
            }))
            .into_response()
        }
        Err(error) => {
            tracing::info!(code = error.code(), "refused: {error}");
            refusal(&error, &app.scope)
        }
    }
}

async fn shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let verifier = args.verifier.trim_end_matches('/').to_string();
    let issuer = args.issuer.clone().unwrap_or_else(|| verifier.clone());
    let ca_pem = std::fs::read(&args.ca_cert)
        .with_context(|| format!("reading {}", args.ca_cert.display()))?;
    let http = http_client(&ca_pem)?;
    let jwks = fetch_jwks(&http, &verifier)
        .await
        .context("fetching the verifier's JWKS")?;

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let public_base = match &args.public_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None if addr.ip().is_unspecified() => format!("http://localhost:{}", addr.port()),
        None => format!("http://{addr}"),
    };
    let app = Arc::new(App {
        rp: RelyingParty::new(Validator::new(issuer, args.audience.clone())),
        http,
        verifier,
        scope: args.scope.clone(),
        public_base,
        jwks: RwLock::new(jwks),
        jwks_refetched: Mutex::new(None),
        revocations: tokio::sync::Mutex::new(Revocations {
            set: RevocationSet::new(),
            last_attempt: None,
            last_success: None,
        }),
        replay: ReplayCache::new(REPLAY_CAPACITY),
    });
    let router = Router::new()
        .route(HELLO_PATH, get(hello))
        .with_state(Arc::clone(&app));

    {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "example-rp listening on http://{addr}")?;
        stdout.flush()?;
    }
    tracing::info!(audience = %args.audience, scope = %args.scope, "plain HTTP: a loopback example");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown())
        .await?;
    Ok(())
}
