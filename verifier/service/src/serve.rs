//! `verifier serve`: start-up (data directory, database, keys, TLS), the
//! HTTPS listener, signals (SIGHUP reloads, SIGINT/SIGTERM drain and stop)
//! and housekeeping.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, ValueEnum};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use time::Duration;
use tracing_subscriber::EnvFilter;

use crate::ca;
use crate::clock::{self, Clock};
use crate::collateral_source::{CollateralPolicy, CollateralSources, DirectorySource};
use crate::fetch;
use crate::http;
use crate::ratelimit::{ForwardedHeader, Rate, RateLimitConfig};
use crate::secrets;
use crate::service::{Service, ServiceConfig};
use crate::store::Store;
use attest_gate_core::TeeKind;

/// The longest retention a setting takes (a hundred years): beyond it the
/// pruner's horizon would leave the representable instants.
const MAX_RETENTION_DAYS: i64 = 36_500;

/// `verifier serve` flags (other tools depend on their names).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the log says which).
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Keys, CA, TLS certificate and the default database live here.
    #[arg(long = "data-dir", default_value = "./attest-gate-data")]
    pub data_dir: PathBuf,
    /// `sqlite:PATH` or `postgres://...` (default: SQLite in the data
    /// directory). Prefer the environment variable: a password in a flag is
    /// visible to every user in the process list.
    #[arg(long, env = "ATTEST_GATE_DATABASE_URL", hide_env_values = true)]
    pub database: Option<String>,
    /// Reference-value folder (default: `./measurements`, else the repository's).
    #[arg(long)]
    pub measurements: Option<PathBuf>,
    /// Cedar policy file (default: the built-in policy, `verifier/service/default.cedar`).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Also trust the project's test roots. Never in production: every
    /// credential issued under them says `test_root: true`.
    #[arg(long)]
    pub dev: bool,
    /// TLS certificate chain (PEM); default: generated in `<data-dir>/tls/`.
    #[arg(long = "tls-cert", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long = "tls-key", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Collateral folder with `tdx/` and `snp/` subfolders (default: `<data-dir>/collateral`).
    #[arg(long)]
    pub collateral: Option<PathBuf>,
    /// Fetch TDX collateral from Intel PCS or a PCCS at this URL (e.g.
    /// `https://api.trustedservices.intel.com`) when the folder has none.
    #[arg(long = "pcs-url")]
    pub pcs_url: Option<String>,
    /// Where the Intel SGX root CA's CRL is fetched from (with `--pcs-url`).
    #[arg(long = "root-ca-crl-url", default_value = fetch::INTEL_ROOT_CA_CRL_URL)]
    pub root_ca_crl_url: String,
    /// Fetch SEV-SNP VCEKs, chain and CRL from AMD KDS at this URL (e.g.
    /// `https://kdsintf.amd.com`) when the folder has none.
    #[arg(long = "kds-url")]
    pub kds_url: Option<String>,
    /// At least this many milliseconds between two KDS requests (its rate limit).
    #[arg(long = "kds-interval-ms", default_value_t = 1000)]
    pub kds_interval_ms: u64,
    /// Seconds one collateral fetch may take (connect, TLS, answer); with
    /// three tries and their backoff a source that hangs costs a request
    /// at most about 3 x this, inside the 30 s request limit.
    #[arg(long = "fetch-timeout", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=9))]
    pub fetch_timeout: u64,
    /// Also trust this CA (PEM) for collateral fetches (e.g. a PCCS's own).
    #[arg(long = "fetch-ca")]
    pub fetch_ca: Option<PathBuf>,
    /// For a TEE the service has no collateral source for (no fetcher, no
    /// file in the folder): use the agent's collateral (warned at start;
    /// credentials say `collateral: agent-supplied`) or refuse.
    #[arg(
        long = "collateral-policy",
        value_enum,
        default_value = "allow-agent-supplied"
    )]
    pub collateral_policy: CollateralPolicy,
    /// Per client address and endpoint (challenge, attest, exchange,
    /// introspection, revocation list): RATE/BURST, requests a second and
    /// at once.
    #[arg(long = "rate-limit-address", default_value = "20/40")]
    pub rate_limit_address: Rate,
    /// Per agent key (JWK thumbprint), for attest and exchange: RATE/BURST.
    #[arg(long = "rate-limit-key", default_value = "1/10")]
    pub rate_limit_key: Rate,
    /// Per relying party (`client_id`), for introspection: RATE/BURST.
    #[arg(long = "rate-limit-client", default_value = "50/100")]
    pub rate_limit_client: Rate,
    /// Turn every rate limit off (load tests from one address; never in production).
    #[arg(long = "no-rate-limits")]
    pub no_rate_limits: bool,
    /// A proxy or load balancer (CIDR, repeatable) whose `Forwarded` /
    /// `X-Forwarded-For` headers name the client; without it those headers
    /// are ignored.
    #[arg(long = "trusted-proxy")]
    pub trusted_proxy: Vec<ipnet::IpNet>,
    /// The header those proxies write the client's address in (only that
    /// one is read: a client could send the other through them).
    #[arg(
        long = "forwarded-header",
        value_enum,
        default_value = "x-forwarded-for"
    )]
    pub forwarded_header: ForwardedHeader,
    /// Issuer URL in tokens (default: `https://<listen address>`).
    #[arg(long)]
    pub issuer: Option<String>,
    /// Challenge nonce lifetime, seconds.
    #[arg(long = "nonce-ttl", default_value_t = 60)]
    pub nonce_ttl: u32,
    /// Log format.
    #[arg(long = "log-format", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Remove audit records older than this many days (checked once a
    /// minute), leaving a signed checkpoint; 0 keeps them all.
    #[arg(
        long = "audit-retention",
        value_name = "DAYS",
        default_value_t = 0,
        value_parser = clap::value_parser!(u32).range(0..=MAX_RETENTION_DAYS)
    )]
    pub audit_retention_days: u32,
    /// Forget expired credentials this many days after their expiry,
    /// unless a revocation names them (those are kept, so a revoked agent
    /// key stays refused); 0 keeps them all. Until then a credential can
    /// still be revoked by its `jti` or session to refuse its key.
    #[arg(
        long = "credential-retention",
        value_name = "DAYS",
        default_value_t = 7,
        value_parser = clap::value_parser!(u32).range(0..=MAX_RETENTION_DAYS)
    )]
    pub credential_retention_days: u32,
    /// Limit the SVID intermediate to the workloads' trust domains with a
    /// critical URI name constraint. Relying parties on rustls-webpki or
    /// BoringSSL (Envoy) then refuse every SVID, since they do not
    /// implement URI constraints; OpenSSL and Go honour it.
    #[arg(long = "svid-name-constraint")]
    pub svid_name_constraint: bool,
}

/// How logs are written (to stderr).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per event.
    Json,
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn default_measurements() -> PathBuf {
    let here = PathBuf::from("measurements");
    if here.is_dir() {
        here
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../measurements")
    }
}

fn tls_config(args: &ServeArgs, addr: SocketAddr) -> anyhow::Result<rustls::ServerConfig> {
    let (cert_pem, key_pem) = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => (
            std::fs::read_to_string(cert).with_context(|| format!("{}", cert.display()))?,
            String::from_utf8(secrets::read_secret(key)?).context("TLS key is not PEM text")?,
        ),
        _ => ca::load_or_create_tls(
            &args.data_dir.join("tls"),
            &[addr.ip().to_string()],
            clock::now(),
        )?,
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("TLS certificate PEM")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("TLS key PEM")?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// `https://host[:port][/path]`, without a trailing slash (RFC 8414 issuers
/// are compared as strings).
fn normalize_issuer(url: &str) -> anyhow::Result<String> {
    let trimmed = url.trim().trim_end_matches('/');
    let host = trimmed.strip_prefix("https://").unwrap_or_default();
    if host.is_empty() || trimmed.contains(['?', '#', ' ']) {
        anyhow::bail!("--issuer {url:?} must be an https:// URL without query or fragment");
    }
    Ok(trimmed.to_string())
}

/// A new admin token is shown once: on the terminal when there is one, else
/// (under a service manager, whose stderr is the log pipeline) in a one-time
/// file, mode 0600, that the operator reads and deletes.
fn show_admin_token_once(data_dir: &Path, token: &str) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let hash_file = data_dir.join("admin-token.sha256");
    if std::io::stderr().is_terminal() {
        eprintln!(
            "attest-gate: new admin token (shown once; only its hash is kept in {}): {token}",
            hash_file.display()
        );
    } else {
        let once = data_dir.join("admin-token.new");
        secrets::write_new_secret(&once, format!("{token}\n").as_bytes())?;
        tracing::warn!(
            file = %once.display(),
            "a new admin token was written once to this file (mode 0600): read it, store it, delete the file"
        );
    }
    Ok(())
}

/// The collateral folder, then (when enabled) Intel PCS and AMD KDS.
fn collateral_sources(
    args: &ServeArgs,
    dir: PathBuf,
    clock: &Clock,
) -> anyhow::Result<CollateralSources> {
    let mut sources = CollateralSources::new()
        .with_policy(args.collateral_policy)
        .with(DirectorySource::new(dir));
    if args.pcs_url.is_none() && args.kds_url.is_none() {
        return Ok(sources);
    }
    let extra = match &args.fetch_ca {
        Some(path) => std::fs::read(path).with_context(|| format!("{}", path.display()))?,
        None => Vec::new(),
    };
    let tls = fetch::tls_client(&extra, true).map_err(anyhow::Error::msg)?;
    // One client per vendor: a `Retry-After` or pacing state of one never
    // holds requests to the other.
    let timeout = std::time::Duration::from_secs(args.fetch_timeout);
    if let Some(url) = &args.pcs_url {
        let http = fetch::Http::new(tls.clone(), timeout).map_err(anyhow::Error::msg)?;
        sources = sources.with(fetch::PcsSource::new(
            url,
            &args.root_ca_crl_url,
            http,
            Arc::clone(clock),
        ));
    }
    if let Some(url) = &args.kds_url {
        let mut http = fetch::Http::new(tls, timeout).map_err(anyhow::Error::msg)?;
        http.min_interval = std::time::Duration::from_millis(args.kds_interval_ms);
        sources = sources.with(fetch::KdsSource::new(url, http, Arc::clone(clock)));
    }
    Ok(sources)
}

/// Opens the data directory, the database and the service as `serve` does
/// (also what `verifier reappraise` judges with). `addr` names the issuer
/// when `--issuer` is not given.
pub async fn open(args: &ServeArgs, addr: SocketAddr) -> anyhow::Result<(Service, PathBuf)> {
    secrets::private_dir(&args.data_dir)?;
    let data_dir = args.data_dir.canonicalize()?;
    let database = match &args.database {
        Some(url) => url.clone(),
        None => {
            let file = data_dir.join("attest-gate.db");
            secrets::create_private_file(&file)?;
            format!("sqlite://{}", file.display())
        }
    };
    // SQLite is one process's database: the revocations it holds in memory
    // are read again only after its own changes, so no other process may
    // write (serve or reappraise) on the same file while it runs.
    let lock = if database.starts_with("sqlite:") {
        Some(lock_data_dir(&data_dir)?)
    } else {
        None
    };
    let store = Store::open(&database)
        .await
        .context("opening the database")?;

    let issuer = match &args.issuer {
        Some(url) => normalize_issuer(url)?,
        None if addr.ip().is_unspecified() => format!("https://localhost:{}", addr.port()),
        None => format!("https://{addr}"),
    };
    let config = ServiceConfig {
        issuer,
        data_dir: data_dir.clone(),
        measurements_dir: args
            .measurements
            .clone()
            .unwrap_or_else(default_measurements),
        policy_file: args.policy.clone(),
        dev: args.dev,
        nonce_ttl: Duration::seconds(i64::from(args.nonce_ttl.max(1))),
        default_token_ttl: 600,
        rate_limits: RateLimitConfig {
            enabled: !args.no_rate_limits,
            per_address: args.rate_limit_address,
            per_key: args.rate_limit_key,
            per_client: args.rate_limit_client,
        },
        trusted_proxies: args.trusted_proxy.clone(),
        forwarded_header: args.forwarded_header,
        audit_retention: (args.audit_retention_days > 0)
            .then(|| Duration::days(i64::from(args.audit_retention_days))),
        credential_retention: (args.credential_retention_days > 0)
            .then(|| Duration::days(i64::from(args.credential_retention_days))),
        svid_name_constraint: args.svid_name_constraint,
    };
    let collateral_dir = args
        .collateral
        .clone()
        .unwrap_or_else(|| data_dir.join("collateral"));
    // The system clock, read by the fetchers and the service alike and by
    // nothing else that serves a request.
    let clock = clock::system();
    let sources = collateral_sources(args, collateral_dir, &clock)?;
    for tee in [TeeKind::Tdx, TeeKind::Snp] {
        if sources.serves(tee) {
            continue;
        }
        match args.collateral_policy {
            CollateralPolicy::AllowAgentSupplied => tracing::warn!(
                %tee,
                "no collateral source for {tee} (no fetcher, no file in the collateral folder): \
                 agents' own TCB info, QE identity and CRLs are used, and credentials say \
                 collateral: agent-supplied; --collateral-policy service-only refuses them"
            ),
            CollateralPolicy::ServiceOnly => tracing::warn!(
                %tee,
                "no collateral source for {tee} and --collateral-policy service-only: \
                 {tee} evidence is refused with collateral_unavailable"
            ),
        }
    }
    let (mut service, new_admin_token) = Service::start(config, store, sources, clock)?;
    if let Some(lock) = lock {
        service.hold(lock);
    }
    if let Some(token) = new_admin_token {
        show_admin_token_once(&data_dir, &token)?;
    }
    Ok((service, data_dir))
}

/// Runs the service until SIGINT or SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_tracing(args.log_format);
    if args.dev && !args.listen.ip().is_loopback() {
        anyhow::bail!(
            "--dev trusts publicly derivable test keys; it only listens on a loopback address \
             (127.0.0.1 or ::1), not {}",
            args.listen
        );
    }
    let listener = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let (service, data_dir) = open(&args, addr).await?;
    if args.no_rate_limits {
        tracing::warn!("--no-rate-limits: no request is limited per address, key or client");
    }
    if args.dev {
        tracing::warn!(
            "--dev: the project's TEST ROOTS are trusted besides the vendor roots; \
             credentials for evidence under them say test_root: true. Never use in production."
        );
    }
    let service = Arc::new(service);

    let tls = tls_config(&args, addr)?;
    let handle = axum_server::Handle::new();
    tokio::spawn(signals(Arc::clone(&service), handle.clone()));
    tokio::spawn(prune_nonces(Arc::clone(&service)));

    let app = http::router(Arc::clone(&service));
    let server = axum_server::from_tcp_rustls(
        listener,
        axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls)),
    )
    .handle(handle)
    .serve(app.into_make_service_with_connect_info::<SocketAddr>());
    tracing::info!(
        database = service.store().kind(),
        workloads = service.workload_count(),
        dev = args.dev,
        tls_cert = %data_dir.join("tls/cert.pem").display(),
        "attest-gate verifier listening on https://{addr}"
    );
    server.await?;
    tracing::info!("stopped");
    Ok(())
}

/// SIGHUP reloads reference values and policy; SIGINT / SIGTERM stop
/// accepting and give in-flight requests ten seconds.
async fn signals(service: Arc<Service>, handle: axum_server::Handle) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                match service.reload(service.now()).await {
                    Ok(_) => tracing::info!(workloads = service.workload_count(), "reloaded on SIGHUP"),
                    Err(e) => tracing::error!(error = %e.message(), "SIGHUP reload failed; keeping the previous configuration"),
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("shutting down");
    handle.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
}

/// An exclusive lock on `<data-dir>/attest-gate.lock`, held for the
/// process's life (the OS releases it however the process ends).
fn lock_data_dir(data_dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = data_dir.join("attest-gate.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another verifier process uses {} with its SQLite database; stop it first \
             (on a running service, use POST /v1/admin/reappraise)",
            data_dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// Prunes what has outlived its use once a minute (`Service::prune`).
async fn prune_nonces(service: Arc<Service>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tick.tick().await;
        service.prune(service.now()).await;
    }
}
