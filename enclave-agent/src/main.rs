//! `enclave-agent`: attest this TEE (or a simulated one) to the Attest Gate
//! verifier and obtain key-bound credentials.
//!
//! Exit codes: 0 a token was issued; 1 the verifier refused (its error code
//! is printed as JSON); 2 the agent could not attest (no TEE, unreadable
//! model, unreachable verifier, bad flags).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use attest_gate_core::TeeKind;
use clap::{Args, Parser, Subcommand, ValueEnum};
use enclave_agent::backend::{self, EvidenceSource};
use enclave_agent::client::{Ask, ClientError, VerifierClient};
use enclave_agent::key::EphemeralKey;
use enclave_agent::model;
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "enclave-agent",
    version,
    about = "Attest this TEE to the Attest Gate verifier and obtain credentials"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One attestation: print the verifier's answer (token, expiry, SVID) as JSON.
    Attest(AttestArgs),
    /// Print the model digest of a file or directory (what `measurements/`
    /// files list under `models`).
    ModelDigest {
        /// The model file or directory.
        path: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum TeeArg {
    Nitro,
    Tdx,
    Snp,
}

impl From<TeeArg> for TeeKind {
    fn from(t: TeeArg) -> Self {
        match t {
            TeeArg::Nitro => Self::Nitro,
            TeeArg::Tdx => Self::Tdx,
            TeeArg::Snp => Self::Snp,
        }
    }
}

#[derive(Args)]
struct AttestArgs {
    /// The verifier, e.g. `https://127.0.0.1:8443`.
    #[arg(long)]
    verifier: String,
    /// Trust only this certificate (PEM) for the verifier, e.g. its
    /// `<data-dir>/tls/cert.pem`. Default: the system's roots.
    #[arg(long = "ca-cert")]
    ca_cert: Option<PathBuf>,
    /// The model served: a file, or a directory (hashed in a defined order).
    #[arg(long)]
    model: PathBuf,
    /// Forge evidence for this TEE under the project's test roots instead of
    /// asking hardware (the verifier must run with `--dev`).
    #[arg(long, value_enum, conflicts_with = "tee")]
    simulate: Option<TeeArg>,
    /// Use this TEE's interface instead of detecting one.
    #[arg(long, value_enum)]
    tee: Option<TeeArg>,
    /// On whose behalf the agent acts: `system`, `user:<id>`, `service:<id>`.
    #[arg(long, default_value = "system")]
    principal: String,
    /// A scope to ask for (repeatable).
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// The relying party the token is for.
    #[arg(long)]
    audience: String,
    /// The task this agent declares.
    #[arg(long = "task-id", default_value = "default")]
    task_id: String,
    /// Also ask for an X.509-SVID (the agent makes the CSR for its key).
    #[arg(long)]
    csr: bool,
    /// A lifetime shorter than the workload's maximum, seconds.
    #[arg(long)]
    ttl: Option<u32>,
    /// Also write the access token to this file (mode 0600).
    #[arg(long = "token-out")]
    token_out: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("enclave-agent: cannot start: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Attest(args) => runtime.block_on(attest(args)),
        Command::ModelDigest { path } => model::digest(&path)
            .map(|d| {
                print(&json!(d.to_hex()));
                ExitCode::SUCCESS
            })
            .map_err(anyhow::Error::from),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("enclave-agent: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn print(value: &serde_json::Value) {
    use std::io::Write;
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// Writes the token to a new 0600 file beside `path`, then renames it over
/// `path`: an existing file's looser mode or a planted link is never reused.
fn write_token(path: &std::path::Path, token: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(token.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The simulator, announced loudly; builds without the `simulate` feature
/// (production images) have none.
#[cfg(feature = "simulate")]
fn simulator(tee: TeeKind) -> anyhow::Result<Box<dyn EvidenceSource>> {
    eprintln!(
        "enclave-agent: SIMULATED {tee} evidence under the project's test roots; \
         only a verifier in --dev mode accepts it"
    );
    Ok(Box::new(backend::sim::Simulated::new(tee)))
}

#[cfg(not(feature = "simulate"))]
fn simulator(_tee: TeeKind) -> anyhow::Result<Box<dyn EvidenceSource>> {
    anyhow::bail!("this build has no simulator (it was built without the `simulate` feature)")
}

async fn attest(args: AttestArgs) -> anyhow::Result<ExitCode> {
    let source: Box<dyn EvidenceSource> = match args.simulate {
        Some(tee) => simulator(tee.into())?,
        None => backend::detect(args.tee.map(TeeKind::from))?,
    };
    let digest = model::digest(&args.model)?;
    let key = EphemeralKey::generate()?;
    let ca = match &args.ca_cert {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?)
        }
        None => None,
    };
    let client = VerifierClient::new(&args.verifier, ca.as_deref())?;
    let ask = Ask {
        principal: args.principal,
        task_id: args.task_id,
        scopes: args.scopes,
        audience: args.audience,
        svid: args.csr,
        ttl_seconds: args.ttl,
    };
    match client.attest(source.as_ref(), &key, digest, &ask).await {
        Ok(mut answer) => {
            let Some(token) = answer
                .get("access_token")
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
            else {
                anyhow::bail!("the verifier answered 200 without an access token");
            };
            if let Some(path) = &args.token_out {
                write_token(path, &token)?;
            }
            if let Some(map) = answer.as_object_mut() {
                map.insert("model_digest".into(), json!(digest.to_hex()));
                map.insert("jkt".into(), json!(key.public().jkt()));
                map.insert("simulated".into(), json!(source.simulated()));
            }
            print(&answer);
            Ok(ExitCode::SUCCESS)
        }
        // A refusal is the verifier's verdict on this agent (exit 1); its own
        // trouble (5xx, timeouts, rate limits) means "could not attest" (2).
        Err(ClientError::Refused {
            status,
            code,
            message,
        }) => {
            print(&json!({"error": {"code": code, "message": message, "status": status}}));
            let verdict = (400..500).contains(&status) && status != 408 && status != 429;
            Ok(ExitCode::from(if verdict { 1 } else { 2 }))
        }
        Err(e) => Err(e.into()),
    }
}
