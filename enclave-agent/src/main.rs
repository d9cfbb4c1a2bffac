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
    /// Keep a credential fresh and serve it (and DPoP proofs) on a Unix socket.
    Run(RunArgs),
    /// Ask a running agent for a narrower token for a sub-agent's key.
    Delegate(DelegateArgs),
    /// Print the token a running agent serves.
    Token {
        /// The running agent's socket.
        #[arg(long)]
        socket: PathBuf,
    },
    /// Print a DPoP proof, by a running agent's key, for one request.
    Proof {
        /// The running agent's socket.
        #[arg(long)]
        socket: PathBuf,
        /// HTTP method of the request.
        #[arg(long, default_value = "GET")]
        htm: String,
        /// Full URL of the request.
        #[arg(long)]
        htu: String,
        /// The resource server's `DPoP-Nonce`, if it sent one.
        #[arg(long)]
        nonce: Option<String>,
    },
    /// Print a secret a running agent fetches for this attested agent (its
    /// value on stdout, as released; exit 1 with the refusal as JSON).
    Secret {
        /// The secret's name.
        name: String,
        /// The running agent's socket.
        #[arg(long)]
        socket: PathBuf,
    },
    /// Print the model digest of a file or directory (what `measurements/`
    /// files list under `models`).
    ModelDigest {
        /// The model file or directory.
        path: PathBuf,
    },
    /// Settings files for `run --config FILE`.
    #[command(subcommand)]
    Config(attest_gate_config::ConfigCommand),
}

/// The subcommand whose flags a settings file may set.
const LAYERED: &[&str] = &["run"];

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
    /// SEV-SNP only: the VMPL to ask reports for (0-3). Default:
    /// configfs-tsm's `privlevel_floor`, or 0 on /dev/sev-guest (a guest
    /// under an SVSM or paravisor must name its own level there).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=3), conflicts_with = "simulate")]
    vmpl: Option<u8>,
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

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    attest: AttestArgs,
    /// Serve the token and DPoP proofs on this Unix socket (mode 0600).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Seconds between polls of the verifier's revocation list.
    #[arg(long = "revocation-poll", default_value_t = 10)]
    revocation_poll: u64,
    /// Serve the SPIFFE Workload API (gRPC) on this Unix socket, in an
    /// owner-only directory: the X.509-SVID (implies `--csr`) with its key,
    /// bundles and JWT-SVIDs. Without a path:
    /// /run/enclave-agent/workload-api.sock.
    #[arg(long = "workload-api-socket", num_args = 0..=1,
          default_missing_value = enclave_agent::workload_api::DEFAULT_SOCKET)]
    workload_api_socket: Option<PathBuf>,
}

#[derive(Args)]
struct DelegateArgs {
    /// The running agent's socket.
    #[arg(long)]
    socket: PathBuf,
    /// The sub-agent's public key: a file holding its JWK (JSON).
    #[arg(long = "actor-key")]
    actor_key: PathBuf,
    /// A scope to pass on (repeatable; a subset of this agent's).
    #[arg(long = "scope", required = true)]
    scopes: Vec<String>,
    /// The relying party the sub-agent's token is for.
    #[arg(long)]
    audience: String,
    /// What the sub-agent is for.
    #[arg(long)]
    purpose: String,
    /// A lifetime shorter than this agent's token's, seconds.
    #[arg(long)]
    ttl: Option<u32>,
}

fn main() -> ExitCode {
    let cli: Cli = attest_gate_config::parse_or_exit(LAYERED);
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
        Command::Run(args) => runtime.block_on(run(args)),
        Command::Delegate(args) => runtime.block_on(delegate(args)),
        Command::Token { socket } => runtime.block_on(token(&socket)),
        Command::Proof {
            socket,
            htm,
            htu,
            nonce,
        } => runtime.block_on(proof(&socket, &htm, &htu, nonce)),
        Command::Secret { name, socket } => runtime.block_on(secret(&socket, &name)),
        Command::Config(config) => config
            .run::<Cli>(LAYERED, &[])
            .map(|()| ExitCode::SUCCESS)
            .map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end())),
        Command::ModelDigest { path } => model::digest(&path)
            .map(|d| {
                print(&json!(d.to_hex()));
                ExitCode::SUCCESS
            })
            .map_err(anyhow::Error::from),
    };
    // A device call or QGS exchange still running on the blocking pool
    // (the command ended on a signal meanwhile) cannot be cancelled;
    // dropping the runtime would wait for it, so leave it behind.
    runtime.shutdown_background();
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

/// What `attest` and `run` share: evidence source, model digest, a fresh
/// key, the verifier client and the request.
struct Setup {
    source: std::sync::Arc<dyn EvidenceSource>,
    digest: attest_gate_core::ModelDigest,
    key: EphemeralKey,
    client: VerifierClient,
    ask: Ask,
}

fn setup(args: &AttestArgs) -> anyhow::Result<Setup> {
    let source: std::sync::Arc<dyn EvidenceSource> = match args.simulate {
        Some(tee) => simulator(tee.into())?.into(),
        None => backend::detect(args.tee.map(TeeKind::from), args.vmpl)?.into(),
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
        principal: args.principal.clone(),
        task_id: args.task_id.clone(),
        scopes: args.scopes.clone(),
        audience: args.audience.clone(),
        svid: args.csr,
        ttl_seconds: args.ttl,
    };
    Ok(Setup {
        source,
        digest,
        key,
        client,
        ask,
    })
}

async fn attest(args: AttestArgs) -> anyhow::Result<ExitCode> {
    let Setup {
        source,
        digest,
        key,
        client,
        ask,
    } = setup(&args)?;
    match client.attest(&source, &key, digest, &ask).await {
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
        Err(e) if matches!(e, ClientError::Refused { .. }) => {
            let verdict = e.is_verdict();
            if let ClientError::Refused {
                status,
                code,
                message,
            } = e
            {
                print(&json!({"error": {"code": code, "message": message, "status": status}}));
            }
            Ok(ExitCode::from(if verdict { 1 } else { 2 }))
        }
        Err(e) => Err(e.into()),
    }
}

/// `run`: attest, serve, renew; exit 1 when the verifier refuses this agent
/// (revoked, no longer allowed), 2 when it cannot attest at all.
async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    use enclave_agent::keeper::{Keeper, Pacing, Served};
    use enclave_agent::socket::{self, Responder};
    use std::sync::Arc;
    let mut setup = setup(&args.attest)?;
    // The Workload API hands the SVID's key to workloads: only then is the
    // key kept exportable, and an SVID asked for.
    if args.workload_api_socket.is_some() {
        setup.key = enclave_agent::key::EphemeralKey::generate_exportable()?;
        setup.ask.svid = true;
    }
    let key = Arc::new(setup.key);
    let served = Arc::new(Served::default());
    let token_file = args.attest.token_out.clone();
    let keeper = Keeper {
        client: setup.client.clone(),
        source: setup.source,
        key: Arc::clone(&key),
        model: setup.digest,
        ask: setup.ask,
        pacing: Pacing {
            revocation_poll: std::time::Duration::from_secs(args.revocation_poll.max(1)),
            ..Pacing::default()
        },
        on_change: Box::new(move |token| {
            if let Some(path) = &token_file {
                let written = match token {
                    Some(t) => write_token(path, t),
                    None => std::fs::remove_file(path).or(Ok(())),
                };
                if let Err(e) = written {
                    eprintln!("enclave-agent: token file: {e:#}");
                }
            }
        }),
    };
    if let Some(path) = &args.socket {
        let listener = socket::bind(path).with_context(|| format!("socket {}", path.display()))?;
        let responder = Arc::new(Responder::new(
            Arc::clone(&served),
            Arc::clone(&key),
            setup.client.clone(),
        ));
        tokio::spawn(socket::serve(listener, responder));
        eprintln!("enclave-agent: serving on {}", path.display());
    }
    let workload_api = match &args.workload_api_socket {
        Some(path) => {
            use enclave_agent::workload_api;
            let listener = workload_api::bind(path)?;
            let responder = Arc::new(Responder::new(
                Arc::clone(&served),
                Arc::clone(&key),
                setup.client.clone(),
            ));
            eprintln!("enclave-agent: SPIFFE Workload API on {}", path.display());
            Some(workload_api::start(
                listener,
                Arc::clone(&served),
                Arc::clone(&key),
                setup.client.clone(),
                responder,
            ))
        }
        None => None,
    };
    let outcome = tokio::select! {
        result = keeper.run(&served) => Some(result),
        () = enclave_agent::keeper::stop_signal() => None,
    };
    if let Some(running) = workload_api {
        running.stop().await;
    }
    for path in [&args.socket, &args.workload_api_socket]
        .into_iter()
        .flatten()
    {
        let _ = std::fs::remove_file(path);
    }
    if let Some(path) = &args.attest.token_out {
        let _ = std::fs::remove_file(path);
    }
    match outcome {
        None => Ok(ExitCode::SUCCESS),
        Some(Ok(())) => Ok(ExitCode::SUCCESS),
        Some(Err(e @ enclave_agent::keeper::Stopped::Refused { .. })) => {
            eprintln!("enclave-agent: stopped: {e}");
            Ok(ExitCode::from(1))
        }
        Some(Err(e)) => {
            eprintln!("enclave-agent: stopped: {e}");
            Ok(ExitCode::from(2))
        }
    }
}

/// Prints a socket answer; exit 1 for an error answer.
fn print_answer(answer: &serde_json::Value) -> ExitCode {
    print(answer);
    if answer.get("error").is_some() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

async fn delegate(args: DelegateArgs) -> anyhow::Result<ExitCode> {
    let jwk: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&args.actor_key)
            .with_context(|| format!("cannot read {}", args.actor_key.display()))?,
    )
    .context("--actor-key must hold a JWK (JSON)")?;
    let mut request = json!({
        "op": "delegate",
        "actor_key": jwk,
        "scope": args.scopes.join(" "),
        "audience": args.audience,
        "purpose": args.purpose,
    });
    if let (Some(map), Some(ttl)) = (request.as_object_mut(), args.ttl) {
        map.insert("ttl_seconds".into(), json!(ttl));
    }
    let answer = enclave_agent::socket::ask(&args.socket, &request)
        .await
        .with_context(|| format!("socket {}", args.socket.display()))?;
    Ok(print_answer(&answer))
}

async fn token(socket: &std::path::Path) -> anyhow::Result<ExitCode> {
    let answer = enclave_agent::socket::ask(socket, &json!({"op": "token"}))
        .await
        .with_context(|| format!("socket {}", socket.display()))?;
    match answer
        .get("access_token")
        .and_then(serde_json::Value::as_str)
    {
        Some(t) => {
            println!("{t}");
            Ok(ExitCode::SUCCESS)
        }
        None => Ok(print_answer(&answer)),
    }
}

async fn proof(
    socket: &std::path::Path,
    htm: &str,
    htu: &str,
    nonce: Option<String>,
) -> anyhow::Result<ExitCode> {
    let request = json!({"op": "proof", "htm": htm, "htu": htu, "nonce": nonce});
    let answer = enclave_agent::socket::ask(socket, &request)
        .await
        .with_context(|| format!("socket {}", socket.display()))?;
    match answer.get("proof").and_then(serde_json::Value::as_str) {
        Some(p) => {
            println!("{p}");
            Ok(ExitCode::SUCCESS)
        }
        None => Ok(print_answer(&answer)),
    }
}

/// The secret's bytes exactly as released (no newline added), for scripts.
async fn secret(socket: &std::path::Path, name: &str) -> anyhow::Result<ExitCode> {
    use base64::Engine;
    use std::io::Write;
    let answer = enclave_agent::socket::ask(socket, &json!({"op": "secret", "name": name}))
        .await
        .with_context(|| format!("socket {}", socket.display()))?;
    let value = match (
        answer.get("value").and_then(serde_json::Value::as_str),
        answer
            .get("value_base64")
            .and_then(serde_json::Value::as_str),
    ) {
        (Some(text), _) => zeroize::Zeroizing::new(text.as_bytes().to_vec()),
        (None, Some(b64)) => zeroize::Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .context("the agent sent bad base64")?,
        ),
        (None, None) => return Ok(print_answer(&answer)),
    };
    let mut out = std::io::stdout().lock();
    out.write_all(&value)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
