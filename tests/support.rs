//! Shared helpers for the end-to-end tests: where the shared fixtures and the
//! built binaries are.

use std::path::PathBuf;

/// The recorded-evidence fixtures: `$ATTEST_GATE_FIXTURES`, else
/// `../shared/fixtures` beside the checkout.
///
/// `None` (and a SKIPPED line) only on a developer's machine without them.
/// Under `CI`, or when `ATTEST_GATE_FIXTURES` names a folder without a
/// `manifest.json` (a mistyped path), a missing fixture set fails the test:
/// without it nothing verifies real evidence under the vendor roots.
pub fn fixtures_dir() -> Option<PathBuf> {
    let named = std::env::var_os("ATTEST_GATE_FIXTURES").map(PathBuf::from);
    let dir = named
        .clone()
        .unwrap_or_else(|| workspace_root().join("../shared/fixtures"));
    if dir.join("manifest.json").is_file() {
        return Some(dir);
    }
    assert!(
        named.is_none(),
        "ATTEST_GATE_FIXTURES={} holds no manifest.json",
        dir.display()
    );
    assert!(
        std::env::var_os("CI").is_none(),
        "no fixtures at {} under CI (the shared fixtures must sit beside the checkout, \
         or ATTEST_GATE_FIXTURES name them)",
        dir.display()
    );
    eprintln!(
        "SKIPPED: no fixtures at {} (set ATTEST_GATE_FIXTURES)",
        dir.display()
    );
    None
}

/// The lines of a text file (none if it is missing): what a running
/// program has appended so far.
pub fn lines_of(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A binary built by this workspace (`cargo test --workspace` builds them),
/// found beside the running test executable.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test-exe> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(PathBuf::from)
        .unwrap_or_default();
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} not built; run the tests with `cargo test --workspace` (or build it first)",
        path.display()
    );
    path
}

/// The endorsement certificate of a recorded SEV-SNP sample, as the fixtures
/// name it: (collateral file name, path under `<fixtures>/snp`).
pub fn snp_endorsement(fixtures: &std::path::Path, id: &str) -> (&'static str, PathBuf) {
    let snp = fixtures.join("snp");
    match id {
        "virtee-sev/report_milan" => ("vcek.der", snp.join("virtee-sev/vcek_milan.der")),
        "trustee/test-report" => ("vcek.der", snp.join("trustee/test-vcek.der")),
        "trustee/test-vlek-report" => ("vlek.der", snp.join("trustee/test-vlek.der")),
        "trustee/az-snp-vtpm-hcl" => ("vcek.pem", snp.join("trustee/az-snp-vtpm-vcek-chain.pem")),
        _ if snp.join(format!("{id}.vcek.der")).is_file() => {
            ("vcek.der", snp.join(format!("{id}.vcek.der")))
        }
        _ => ("vcek.pem", snp.join(format!("{id}.vcek.pem"))),
    }
}

/// The samples of `manifest.json` recorded for `tee` (`nitro`, `tdx`, `snp`).
pub fn samples(fixtures: &std::path::Path, tee: &str) -> Vec<serde_json::Value> {
    let bytes = std::fs::read(fixtures.join("manifest.json")).unwrap_or_default();
    let manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    manifest
        .get("samples")
        .and_then(serde_json::Value::as_array)
        .map(|all| {
            all.iter()
                .filter(|s| s.get("tee").and_then(serde_json::Value::as_str) == Some(tee))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// One (recorded TDX quote, collateral bundle) pairing the fixtures' staging
/// script found applicable.
pub struct TdxRecorded {
    /// The sample, e.g. `go-tdx-guest/quote_v5_sample`.
    pub id: String,
    /// The quote.
    pub quote: Vec<u8>,
    /// The sample's `.expected.json`.
    pub expected: serde_json::Value,
    /// Its `verification` entry for this bundle.
    pub check: serde_json::Value,
    /// The bundle folder.
    pub bundle: PathBuf,
    /// The instant inside the bundle's window to verify at (RFC 3339).
    pub at: String,
}

/// Every applicable (recorded TDX quote, collateral bundle) pairing. A
/// manifest naming a sample that is missing or broken fails the test.
#[allow(clippy::panic, clippy::indexing_slicing)]
pub fn tdx_recorded(dir: &std::path::Path) -> Vec<TdxRecorded> {
    let mut out = Vec::new();
    for sample in samples(dir, "tdx") {
        let Some(id) = sample["id"].as_str() else {
            continue;
        };
        let read = |suffix: &str| std::fs::read(dir.join(format!("tdx/{id}{suffix}")));
        let (Ok(quote), Ok(expected)) = (read(".dat"), read(".expected.json")) else {
            panic!("tdx/{id}: the manifest names a sample that is not there");
        };
        let expected: serde_json::Value =
            serde_json::from_slice(&expected).unwrap_or_else(|e| panic!("tdx/{id}: {e}"));
        for check in expected["verification"].as_array().into_iter().flatten() {
            if check["applicable"] != true {
                continue;
            }
            out.push(TdxRecorded {
                id: id.to_string(),
                quote: quote.clone(),
                expected: expected.clone(),
                bundle: dir.join(check["collateral_bundle"].as_str().unwrap_or_default()),
                at: check["suggested_verify_at_utc"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                check: check.clone(),
            });
        }
    }
    out
}

/// A TDX collateral folder (the `--collateral` layout) as Phala `dcap-qvl`'s
/// `QuoteCollateralV3`, for using dcap-qvl 0.7.1 as a test oracle and a
/// benchmark baseline on exactly the bytes our verifier reads.
pub fn dcap_qvl_collateral(dir: &std::path::Path) -> Option<dcap_qvl::QuoteCollateralV3> {
    let names = [
        "pck_crl_issuer_chain.pem",
        "root_ca_crl.der",
        "pck_crl.der",
        "tcb_info_issuer_chain.pem",
        "tcb_info.json",
        "qe_identity_issuer_chain.pem",
        "qe_identity.json",
    ];
    let items: Vec<(String, Vec<u8>)> = names
        .iter()
        .filter_map(|name| Some((name.to_string(), std::fs::read(dir.join(name)).ok()?)))
        .collect();
    dcap_qvl_collateral_of(&items)
}

/// The same from collateral items (name, bytes), e.g. edited in memory.
pub fn dcap_qvl_collateral_of(items: &[(String, Vec<u8>)]) -> Option<dcap_qvl::QuoteCollateralV3> {
    #[derive(serde::Deserialize)]
    struct Signed<'a> {
        #[serde(borrow, alias = "tcbInfo", alias = "enclaveIdentity")]
        body: &'a serde_json::value::RawValue,
        signature: String,
    }
    let read = |name: &str| {
        items
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, bytes)| bytes.clone())
    };
    let text = |name: &str| read(name).and_then(|b| String::from_utf8(b).ok());
    let tcb = read("tcb_info.json")?;
    let tcb: Signed<'_> = serde_json::from_slice(&tcb).ok()?;
    let qe = read("qe_identity.json")?;
    let qe: Signed<'_> = serde_json::from_slice(&qe).ok()?;
    Some(dcap_qvl::QuoteCollateralV3 {
        pck_crl_issuer_chain: text("pck_crl_issuer_chain.pem")?,
        root_ca_crl: read("root_ca_crl.der")?,
        pck_crl: read("pck_crl.der")?,
        tcb_info_issuer_chain: text("tcb_info_issuer_chain.pem")?,
        tcb_info: tcb.body.get().to_string(),
        tcb_info_signature: hex::decode(&tcb.signature).ok()?,
        qe_identity_issuer_chain: text("qe_identity_issuer_chain.pem")?,
        qe_identity: qe.body.get().to_string(),
        qe_identity_signature: hex::decode(&qe.signature).ok()?,
        pck_certificate_chain: None,
    })
}

/// A `verifier serve` child process on a free loopback port, killed on drop.
pub struct RunningVerifier {
    /// The process.
    pub child: std::process::Child,
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    /// Its data directory (holds `tls/cert.pem`).
    pub data_dir: tempfile::TempDir,
    /// Every line it wrote to stderr so far.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Drop for RunningVerifier {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RunningVerifier {
    /// Starts `verifier serve --listen 127.0.0.1:0` with `extra` flags and
    /// waits (up to a minute) for its "listening on" line. Panics (failing
    /// the test) when it cannot.
    #[allow(clippy::panic)]
    pub fn start(extra: &[&str]) -> Self {
        let data_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        Self::start_in(data_dir, extra)
    }

    /// As [`Self::start`], on `data_dir` (one an earlier run left).
    #[allow(clippy::panic)]
    pub fn start_in(data_dir: tempfile::TempDir, extra: &[&str]) -> Self {
        use std::io::{BufRead, BufReader};
        let mut child = std::process::Command::new(binary("verifier"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir.path())
            .arg("--measurements")
            .arg(workspace_root().join("measurements"))
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the verifier: {e}"));
        let stderr = child.stderr.take();
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = std::sync::Arc::clone(&log);
        std::thread::spawn(move || {
            for line in stderr.into_iter().flat_map(|s| BufReader::new(s).lines()) {
                let Ok(line) = line else { break };
                eprintln!("[verifier] {line}");
                if let Ok(mut kept) = kept.lock() {
                    kept.push(line.clone());
                }
                let _ = tx.send(line);
            }
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let url = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("the verifier did not start listening"));
            if let Some((_, rest)) = line.split_once("listening on ") {
                break rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
            }
        };
        Self {
            child,
            url,
            data_dir,
            log,
        }
    }

    /// Registers a relying party for introspection; its secret.
    #[allow(clippy::panic)]
    pub async fn register_client(&self, client_id: &str) -> String {
        let answer: serde_json::Value = self
            .client()
            .post(format!("{}/v1/admin/clients", self.url))
            .bearer_auth(self.admin_token())
            .json(&serde_json::json!({ "client_id": client_id }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("registering {client_id}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("registering {client_id}: {e}"));
        answer
            .get("client_secret")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_else(|| panic!("registering {client_id}: {answer}"))
            .to_string()
    }

    /// The tokens among `tokens` that introspection does not call active
    /// (as the registered `client_id` with `secret`).
    #[allow(clippy::panic)]
    pub async fn inactive_tokens(
        &self,
        client_id: &str,
        secret: &str,
        tokens: &[String],
    ) -> Vec<String> {
        let http = self.client();
        let mut inactive = Vec::new();
        for token in tokens {
            let answer: serde_json::Value = http
                .post(format!("{}/v1/introspect", self.url))
                .basic_auth(client_id, Some(secret))
                .form(&[("token", token)])
                .send()
                .await
                .unwrap_or_else(|e| panic!("introspection: {e}"))
                .json()
                .await
                .unwrap_or_else(|e| panic!("introspection: {e}"));
            if answer.get("active") != Some(&serde_json::Value::Bool(true)) {
                inactive.push(format!("{answer}"));
            }
        }
        inactive
    }

    /// The lines of its log that contain `needle`.
    pub fn log_lines_with(&self, needle: &str) -> Vec<String> {
        self.log
            .lock()
            .map(|lines| {
                lines
                    .iter()
                    .filter(|l| l.contains(needle))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Kills the process (SIGKILL: no shutdown of any kind) and hands back
    /// its data directory.
    #[allow(clippy::panic)]
    pub fn kill(mut self) -> tempfile::TempDir {
        let spare = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        std::mem::replace(&mut self.data_dir, spare)
    }

    /// The admin token (a verifier without a terminal writes it to a file).
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("admin-token.new"))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// The verifier's TLS certificate (to pin).
    pub fn cert(&self) -> PathBuf {
        self.data_dir.path().join("tls/cert.pem")
    }

    /// An HTTPS client that trusts only this verifier's certificate.
    #[allow(clippy::panic)]
    pub fn client(&self) -> reqwest::Client {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(self.cert())
            .unwrap_or_else(|e| panic!("the verifier's certificate: {e}"));
        for cert in certs {
            let cert = cert.unwrap_or_else(|e| panic!("the verifier's certificate: {e}"));
            roots
                .add(cert)
                .unwrap_or_else(|e| panic!("the verifier's certificate: {e}"));
        }
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|e| panic!("TLS: {e}"))
        .with_root_certificates(roots)
        .with_no_client_auth();
        reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .build()
            .unwrap_or_else(|e| panic!("HTTP client: {e}"))
    }
}

/// PostgreSQL for a test: `$ATTEST_GATE_TEST_POSTGRES` or the CI
/// machine's; `None` (a SKIPPED line) only outside CI.
pub fn postgres_url() -> Option<String> {
    let named = std::env::var("ATTEST_GATE_TEST_POSTGRES").ok();
    let reachable = "127.0.0.1:5432".parse().is_ok_and(|address| {
        std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_secs(2)).is_ok()
    });
    if named.is_none() && !reachable {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must provide PostgreSQL on 127.0.0.1:5432"
        );
        eprintln!("SKIPPED: no PostgreSQL on 127.0.0.1:5432 (set ATTEST_GATE_TEST_POSTGRES)");
        return None;
    }
    Some(named.unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into()))
}

/// `base` with every connection's `search_path` set to `schema` (a test's
/// own schema, so runs never see each other's rows).
pub fn schema_url(base: &str, schema: &str) -> String {
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}options=-c%20search_path%3D{schema}")
}

/// `schema` made anew on `base` (dropped first if a run left it): a pool
/// on `base` to drop it with afterwards, and the URL whose connections use
/// it.
///
/// # Panics
/// If PostgreSQL refuses: the test cannot run.
#[allow(clippy::unwrap_used)]
pub async fn fresh_schema(base: &str, schema: &str) -> (sqlx::PgPool, String) {
    let admin = sqlx::PgPool::connect(base).await.unwrap();
    for sql in [
        format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
        format!("CREATE SCHEMA {schema}"),
    ] {
        sqlx::query(&sql).execute(&admin).await.unwrap();
    }
    (admin, schema_url(base, schema))
}
