//! The verifier under load: one already running (`--verifier URL
//! --ca-cert PEM`), or one this process starts on a fresh data directory
//! (`--spawn`) and stops afterwards.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};

/// One verifier process (a replica) behind the target.
pub(crate) struct Replica {
    /// `https://host:port`.
    pub base: String,
    /// Its process, when local (CPU time is read from `/proc`).
    pub pid: Option<u32>,
}

/// The verifier (one or more replicas of it) to send requests to.
pub(crate) struct Target {
    /// Its replicas: round trip `n` goes to replica `n % len` (at least one).
    pub replicas: Vec<Replica>,
    /// An HTTPS client trusting its certificate.
    pub http: reqwest::Client,
    /// The admin token, when known (spawned servers; or `--admin-token`).
    pub admin_token: Option<String>,
    /// Where its SQLite database lives, when this process owns it.
    pub sqlite: Option<PathBuf>,
    /// The PostgreSQL URL it uses, when spawned with `--database`.
    pub postgres: Option<String>,
    children: std::sync::Mutex<Vec<Child>>,
    _data_dir: Option<tempfile::TempDir>,
}

impl Drop for Target {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An HTTPS client that trusts only `ca_pem`, keeping up to `connections`
/// idle connections.
pub(crate) fn client(ca_pem: &[u8], connections: usize) -> anyhow::Result<reqwest::Client> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.context("reading the CA certificate")?)?;
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
        .pool_max_idle_per_host(connections)
        .timeout(Duration::from_secs(30))
        .build()?)
}

impl Target {
    /// Stops the verifier this process started (if it did).
    pub(crate) fn stop(&self) {
        let mut child = self
            .children
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for mut child in child.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The replica round trip `n` goes to.
    pub(crate) fn replica(&self, n: usize) -> &Replica {
        let index = n % self.replicas.len().max(1);
        // `replicas` is never empty (both constructors make at least one).
        #[allow(clippy::indexing_slicing)]
        &self.replicas[index]
    }

    /// Verifiers already running at `bases` (replicas of one service: one
    /// certificate, one admin token), with their processes' IDs when local.
    pub(crate) fn remote(
        bases: &[String],
        pids: &[u32],
        ca_pem: &Path,
        admin_token: Option<String>,
        connections: usize,
    ) -> anyhow::Result<Self> {
        if bases.is_empty() {
            bail!("name a verifier (--verifier URL --ca-cert PEM) or --spawn one");
        }
        if !pids.is_empty() && pids.len() != bases.len() {
            bail!("give --server-pid once per --verifier, in the same order, or not at all");
        }
        let pem = std::fs::read(ca_pem).with_context(|| format!("reading {}", ca_pem.display()))?;
        let replicas = bases
            .iter()
            .enumerate()
            .map(|(i, base)| Replica {
                base: base.trim_end_matches('/').to_string(),
                pid: pids.get(i).copied(),
            })
            .collect();
        Ok(Self {
            replicas,
            http: client(&pem, connections)?,
            admin_token,
            sqlite: None,
            postgres: None,
            children: std::sync::Mutex::new(Vec::new()),
            _data_dir: None,
        })
    }

    /// Starts `replicas` × `verifier serve --dev --no-rate-limits` on one
    /// fresh data directory (SQLite there, unless `database` names one; more
    /// than one replica needs it, as a deployment's replicas share
    /// PostgreSQL and their keys), with `collateral` in its collateral
    /// folder, and waits until each listens.
    pub(crate) fn spawn(
        verifier: &Path,
        database: Option<&str>,
        extra_args: &[String],
        connections: usize,
        replicas: usize,
        collateral: &[(PathBuf, Vec<u8>)],
    ) -> anyhow::Result<Self> {
        if replicas > 1 && database.is_none() {
            bail!("--replicas above 1 needs --database postgres://... (replicas share PostgreSQL)");
        }
        let data_dir = tempfile::tempdir()?;
        // Its collateral folder (`<data-dir>/collateral`), before it starts.
        for (path, bytes) in collateral {
            let path = data_dir.path().join("collateral").join(path);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&path, bytes)?;
        }
        let mut target = Self {
            replicas: Vec::new(),
            http: client(b"", connections)?,
            admin_token: None,
            sqlite: database
                .is_none()
                .then(|| data_dir.path().join("attest-gate.db")),
            postgres: database.map(str::to_string),
            children: std::sync::Mutex::new(Vec::new()),
            _data_dir: None,
        };
        // One after another: the first creates the keys the others load.
        for _ in 0..replicas.max(1) {
            let (child, base) = start_one(verifier, data_dir.path(), database, extra_args)?;
            target.replicas.push(Replica {
                base,
                pid: Some(child.id()),
            });
            target
                .children
                .lock()
                .map_err(|_| anyhow!("poisoned"))?
                .push(child);
        }
        target.admin_token = std::fs::read_to_string(data_dir.path().join("admin-token.new"))
            .ok()
            .map(|t| t.trim().to_string());
        let pem = std::fs::read(data_dir.path().join("tls/cert.pem"))?;
        target.http = client(&pem, connections)?;
        target._data_dir = Some(data_dir);
        Ok(target)
    }

    /// Bytes the database holds in use (SQLite: pages not free; PostgreSQL:
    /// the database's size), when this process knows where it is.
    pub(crate) async fn database_bytes(&self) -> anyhow::Result<Option<u64>> {
        use sqlx::Connection as _;
        if let Some(path) = &self.sqlite {
            let url = format!("sqlite://{}?mode=ro", path.display());
            let mut db = sqlx::SqliteConnection::connect(&url).await?;
            let (bytes,): (i64,) = sqlx::query_as(
                "SELECT (page_count - freelist_count) * page_size \
                 FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()",
            )
            .fetch_one(&mut db)
            .await?;
            return Ok(u64::try_from(bytes).ok());
        }
        if let Some(url) = &self.postgres {
            let mut db = sqlx::PgConnection::connect(url).await?;
            let (bytes,): (i64,) = sqlx::query_as("SELECT pg_database_size(current_database())")
                .fetch_one(&mut db)
                .await?;
            return Ok(u64::try_from(bytes).ok());
        }
        Ok(None)
    }

    /// Fills the store as a long-running deployment's would be: `sessions`
    /// live credentials with their session evidence, and `revocations`
    /// immediate revocations of other credentials. Only for a store this
    /// process owns, before the first request (the verifier reads the
    /// revocations in force once, then only after changes it makes).
    pub(crate) async fn seed(&self, sessions: u64, revocations: u64) -> anyhow::Result<()> {
        use sqlx::Connection as _;
        if sessions == 0 && revocations == 0 {
            return Ok(());
        }
        let url = match (&self.sqlite, &self.postgres) {
            (Some(path), _) => format!("sqlite://{}", path.display()),
            (None, Some(url)) => url.clone(),
            (None, None) => bail!("--seed-* needs --spawn (a store this process owns)"),
        };
        let expires = time::OffsetDateTime::now_utc().unix_timestamp() + 86_400;
        const CHUNK: u64 = 500;
        macro_rules! fill {
            ($conn:expr) => {{
                let mut tx = $conn.begin().await?;
                for start in (0..sessions).step_by(CHUNK as usize) {
                    let ids: Vec<u64> = (start..(start + CHUNK).min(sessions)).collect();
                    let mut q = sqlx::QueryBuilder::new(
                        "INSERT INTO credentials (jti, subject, session_id, parent_jti, workload, \
                         jkt, scope, audience, issued_at, expires_at, test_root, model_digest, \
                         measurements, depth) ",
                    );
                    q.push_values(&ids, |mut b, i| {
                        b.push_bind(format!("seed-jti-{i}"))
                            .push_bind(format!("spiffe://attest-gate.test/seed/{i}"))
                            .push_bind(format!("seed-session-{i}"))
                            .push_bind(None::<String>)
                            .push_bind("seed")
                            .push_bind(format!("seed-key-{i}"))
                            .push_bind("inference:invoke")
                            .push_bind("https://rp.attest-gate.test")
                            .push_bind(expires - 86_400)
                            .push_bind(expires)
                            .push_bind(true)
                            .push_bind("00")
                            .push_bind("00")
                            .push_bind(0i32);
                    });
                    q.build().execute(&mut *tx).await?;
                    let mut q = sqlx::QueryBuilder::new(
                        "INSERT INTO session_evidence (session_id, tee, evidence, collateral, \
                         evidence_bytes, collateral_refs, model_digest, expires_at, principal, \
                         task_id, scopes, audience) ",
                    );
                    q.push_values(&ids, |mut b, i| {
                        b.push_bind(format!("seed-session-{i}"))
                            .push_bind("tdx")
                            .push_bind("")
                            .push_bind("")
                            .push_bind(vec![0u8; 64])
                            .push_bind("{}")
                            .push_bind("00")
                            .push_bind(expires)
                            .push_bind("system")
                            .push_bind("seed")
                            .push_bind("inference:invoke")
                            .push_bind("https://rp.attest-gate.test");
                    });
                    q.build().execute(&mut *tx).await?;
                }
                for start in (0..revocations).step_by(CHUNK as usize) {
                    let ids: Vec<u64> = (start..(start + CHUNK).min(revocations)).collect();
                    let mut q = sqlx::QueryBuilder::new(
                        "INSERT INTO revocations (id, kind, target, mode, reason, cascade_from, \
                         revoked_at, updated_at, lifted) ",
                    );
                    q.push_values(&ids, |mut b, i| {
                        b.push_bind(format!("seed-revocation-{i}"))
                            .push_bind("jti")
                            .push_bind(format!("seed-revoked-jti-{i}"))
                            .push_bind("immediate")
                            .push_bind("seeded")
                            .push_bind(None::<String>)
                            .push_bind(expires - 86_400)
                            .push_bind(expires - 86_400)
                            .push_bind(false);
                    });
                    q.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }};
        }
        if self.sqlite.is_some() {
            let mut db = sqlx::SqliteConnection::connect(&url).await?;
            fill!(db);
            // Copy the seed out of the write-ahead log here, so the server
            // does not pay for it in the first measured seconds.
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&mut db)
                .await?;
        } else {
            let mut db = sqlx::PgConnection::connect(&url).await?;
            fill!(db);
        }
        Ok(())
    }

    /// Registers a relying party; its client ID and secret.
    pub(crate) async fn register_client(&self) -> anyhow::Result<(String, String)> {
        let Some(token) = &self.admin_token else {
            bail!("the introspect scenario needs the admin token (--admin-token)");
        };
        let id = format!("load-{}", std::process::id());
        let response = self
            .http
            .post(format!("{}/v1/admin/clients", self.replica(0).base))
            .bearer_auth(token)
            .json(&serde_json::json!({"client_id": id}))
            .send()
            .await?;
        let status = response.status();
        let body: serde_json::Value = response.json().await?;
        let secret = body
            .get("client_secret")
            .and_then(serde_json::Value::as_str)
            .with_context(|| format!("registering a client: {status} {body}"))?;
        Ok((id, secret.to_string()))
    }
}

/// CPU time (user + system) a process has used, from `/proc/<pid>/stat`.
/// Linux reports it in clock ticks of 1/100 s (`USER_HZ`) on every
/// architecture it runs this on.
pub(crate) fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) may hold spaces; fields after it are plain.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 overall: 11 and 12 after `)`.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Starts one `verifier serve --dev --no-rate-limits` on `data_dir` and
/// waits until it says where it listens; the process and its URL.
fn start_one(
    verifier: &Path,
    data_dir: &Path,
    database: Option<&str>,
    extra_args: &[String],
) -> anyhow::Result<(Child, String)> {
    let mut command = Command::new(verifier);
    command
        .args([
            "serve",
            "--dev",
            "--no-rate-limits",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra_args)
        .env("RUST_LOG", "warn,attest_gate_verifier::serve=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(url) = database {
        command.arg("--database").arg(url);
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {}", verifier.display()))?;
    let stderr = child.stderr.take().context("no stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let base = loop {
        let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) else {
            let _ = child.kill();
            bail!("the verifier did not say it was listening");
        };
        if let Some(at) = line.find("listening on https://") {
            let rest = line.get(at + "listening on ".len()..).unwrap_or_default();
            break rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
        }
    };
    // The rest of its log: errors shown, so a run's failures have a
    // reason beside them; the pipe never fills.
    std::thread::spawn(move || {
        for line in rx {
            if line.contains("ERROR") || line.contains("panicked") {
                eprintln!("[verifier] {line}");
            }
        }
    });
    Ok((child, base))
}
