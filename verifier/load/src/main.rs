//! `attest-gate-load`: drives a verifier with simulated agents and reports
//! throughput, latency, errors by code, the server's CPU per round trip and
//! the database's growth per attestation. See `docs/performance.md`.
//!
//! Closed loop (`--concurrency N`): N agents each send the next request when
//! the last one is answered. Open loop (`--rate R`): requests start at a
//! constant rate whatever the answers do, and latency counts from when each
//! was due, so a server that falls behind shows it instead of slowing the
//! generator down.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use attest_gate_core::TeeKind;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use clap::{Parser, ValueEnum};
use serde_json::{json, Value};
use tokio::time::Instant;

mod agents;
mod target;

use agents::{exchange_request, Agent, Simulator};
use target::{cpu_time, Target};

/// Each round trip builds and parses a few small JSON and HTTP buffers:
/// mimalloc keeps the generator's own cost per round trip down (as in the
/// verifier).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Which TEE's evidence the agents present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TeeChoice {
    Nitro,
    Tdx,
    Snp,
    /// Each agent key one TEE, in turn.
    Mix,
}

/// What one round trip is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// `POST /v1/challenge`, then `POST /v1/attest` with evidence bound to it.
    Attest,
    /// `POST /v1/token/exchange` of an attested token (with its DPoP proof).
    Exchange,
    /// `POST /v1/introspect` of an attested token, as a relying party.
    Introspect,
    /// Half attestations, a quarter each exchanges and introspections.
    Mixed,
}

#[derive(Debug, Parser)]
#[command(name = "attest-gate-load", version, about)]
struct Args {
    /// A running verifier (`https://host:port`); repeat it for replicas of
    /// one service, which round trips then take turns at.
    #[arg(long, conflicts_with = "spawn", requires = "ca_cert")]
    verifier: Vec<String>,
    /// The certificate (or CA) the running verifier presents, PEM.
    #[arg(long = "ca-cert")]
    ca_cert: Option<PathBuf>,
    /// Its admin token (the introspect scenario registers a client with it).
    #[arg(
        long = "admin-token",
        env = "ATTEST_GATE_ADMIN_TOKEN",
        hide_env_values = true
    )]
    admin_token: Option<String>,
    /// Start `verifier serve --dev --no-rate-limits` on a fresh data
    /// directory, and stop it afterwards.
    #[arg(long)]
    spawn: bool,
    /// With `--spawn`: a database URL in place of SQLite in the data directory.
    #[arg(long, requires = "spawn")]
    database: Option<String>,
    /// With `--spawn`: the verifier binary (default: `verifier` beside this one).
    #[arg(long = "verifier-bin", requires = "spawn")]
    verifier_bin: Option<PathBuf>,
    /// With `--spawn --database`: start this many replicas on the one
    /// database and data directory, which round trips take turns at.
    #[arg(long, default_value_t = 1, requires = "spawn")]
    replicas: usize,
    /// With `--spawn`: another flag for `verifier serve` (repeatable).
    #[arg(long = "serve-arg", requires = "spawn", allow_hyphen_values = true)]
    serve_args: Vec<String>,
    /// The TEE.
    #[arg(long, value_enum, default_value = "tdx")]
    tee: TeeChoice,
    /// What a round trip is.
    #[arg(long, value_enum, default_value = "attest")]
    scenario: Scenario,
    /// Closed loop: this many agents, each with one request outstanding.
    #[arg(long, default_value_t = 8, conflicts_with = "rate")]
    concurrency: usize,
    /// Open loop: round trips started per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds run before measuring (connections, caches, the JIT of nothing).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Distinct agent keys.
    #[arg(long, default_value_t = 8)]
    keys: usize,
    /// The verifier's process, for its CPU time (with `--verifier`; once
    /// per `--verifier`, in the same order).
    #[arg(long = "server-pid", conflicts_with = "spawn")]
    server_pid: Vec<u32>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Append every access token an attestation returned to this file, one
    /// a line, as it arrives (the crash test checks each was committed).
    #[arg(long = "record-tokens")]
    record_tokens: Option<PathBuf>,
    /// With `--spawn`: fill the store with this many live sessions first
    /// (credentials and session evidence), to measure cost as it grows.
    #[arg(long = "seed-sessions", default_value_t = 0, requires = "spawn")]
    seed_sessions: u64,
    /// With `--spawn`: and this many revocations in force.
    #[arg(long = "seed-revocations", default_value_t = 0, requires = "spawn")]
    seed_revocations: u64,
    /// Exit 1 if any round trip failed.
    #[arg(long = "fail-on-error")]
    fail_on_error: bool,
}

/// One kind of round trip, chosen per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Attest,
    Exchange,
    Introspect,
}

impl Scenario {
    fn step(self, n: u64) -> Step {
        match self {
            Self::Attest => Step::Attest,
            Self::Exchange => Step::Exchange,
            Self::Introspect => Step::Introspect,
            Self::Mixed => match n % 4 {
                0 | 1 => Step::Attest,
                2 => Step::Exchange,
                _ => Step::Introspect,
            },
        }
    }

    fn needs_tokens(self) -> bool {
        self != Self::Attest
    }
}

/// What every round trip shares.
struct Load {
    target: Target,
    scenario: Scenario,
    agents: Vec<Agent>,
    /// The TEE simulator each agent uses.
    simulators: Vec<Arc<Simulator>>,
    /// An attested token per agent (exchange, introspection).
    tokens: Vec<String>,
    /// The key exchanged tokens are delegated to.
    actor: Agent,
    /// The relying party's Basic credentials (introspection).
    client: Option<(String, String)>,
    /// The last `DPoP-Nonce` the verifier handed out.
    dpop_nonce: Mutex<Option<String>>,
    next: AtomicU64,
    stats: Mutex<Stats>,
    /// Where received tokens are written (`--record-tokens`).
    record: Option<Mutex<std::fs::File>>,
}

/// Outcomes of the measured round trips.
#[derive(Default)]
struct Stats {
    latencies_us: Vec<u64>,
    errors: BTreeMap<String, u64>,
    attested: u64,
    /// Measured round trips (succeeded or not) per replica.
    per_replica: BTreeMap<usize, u64>,
}

impl Load {
    /// `POST path` with a JSON `body` (already serialised).
    async fn post(
        &self,
        replica: usize,
        path: &str,
        body: Vec<u8>,
        headers: &[(&str, String)],
    ) -> Result<(u16, Value, Option<String>), String> {
        let mut request = self
            .target
            .http
            .post(format!("{}{path}", self.target.replica(replica).base))
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.map_err(|_| "transport".to_string())?;
        let status = response.status().as_u16();
        let nonce = response
            .headers()
            .get("dpop-nonce")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body: Value = response
            .json()
            .await
            .map_err(|_| "unreadable".to_string())?;
        Ok((status, body, nonce))
    }

    fn refused(status: u16, body: &Value) -> String {
        let code = body
            .pointer("/error/code")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        format!("{status} {code}")
    }

    /// Challenge and attestation for agent `i`; its token.
    async fn attest(&self, i: usize) -> Result<String, String> {
        let (status, body, _) = self.post(i, "/v1/challenge", b"{}".to_vec(), &[]).await?;
        let nonce = body
            .get("nonce")
            .and_then(Value::as_str)
            .and_then(|n| URL_SAFE_NO_PAD.decode(n).ok())
            .ok_or_else(|| Self::refused(status, &body))?;
        let (agent, simulator) = (self.agent(i)?, self.simulator(i)?);
        let request = simulator
            .attest_request(agent, &nonce)
            .map_err(|e| format!("generator: {e}"))?;
        let (status, body, _) = self.post(i, "/v1/attest", request, &[]).await?;
        match body.get("access_token").and_then(Value::as_str) {
            Some(token) if status == 200 => {
                if let Some(file) = &self.record {
                    use std::io::Write as _;
                    let mut file = file.lock().map_err(|_| "poisoned")?;
                    file.write_all(format!("{token}\n").as_bytes())
                        .map_err(|e| format!("recording a token: {e}"))?;
                }
                Ok(token.to_string())
            }
            _ => Err(Self::refused(status, &body)),
        }
    }

    fn agent(&self, i: usize) -> Result<&Agent, String> {
        self.agents
            .get(i % self.agents.len().max(1))
            .ok_or_else(|| "no agents".to_string())
    }

    fn simulator(&self, i: usize) -> Result<&Simulator, String> {
        self.simulators
            .get(i % self.simulators.len().max(1))
            .map(|s| &**s)
            .ok_or_else(|| "no simulators".to_string())
    }

    fn token(&self, i: usize) -> Result<&str, String> {
        self.tokens
            .get(i % self.tokens.len().max(1))
            .map(String::as_str)
            .ok_or_else(|| "no tokens".to_string())
    }

    /// A token exchange by agent `i`, with the last server nonce (and once
    /// more with a new one if the verifier asks).
    async fn exchange(&self, i: usize) -> Result<(), String> {
        let (agent, token) = (self.agent(i)?, self.token(i)?);
        let htu = format!("{}/v1/token/exchange", self.target.replica(i).base);
        let body = exchange_request(token, &self.actor)
            .to_string()
            .into_bytes();
        for _ in 0..2 {
            let nonce = self.dpop_nonce.lock().map_err(|_| "poisoned")?.clone();
            let proof = agent
                .proof("POST", &htu, Some(token), nonce.as_deref())
                .map_err(|e| format!("generator: {e}"))?;
            let (status, answer, new_nonce) = self
                .post(i, "/v1/token/exchange", body.clone(), &[("DPoP", proof)])
                .await?;
            if let Some(n) = new_nonce {
                *self.dpop_nonce.lock().map_err(|_| "poisoned")? = Some(n);
            }
            if status == 200 {
                return Ok(());
            }
            if answer.pointer("/error/code").and_then(Value::as_str) != Some("use_dpop_nonce") {
                return Err(Self::refused(status, &answer));
            }
        }
        Err("400 use_dpop_nonce".into())
    }

    /// An introspection of agent `i`'s token by the relying party.
    async fn introspect(&self, i: usize) -> Result<(), String> {
        let (id, secret) = self.client.as_ref().ok_or("no client")?;
        let response = self
            .target
            .http
            .post(format!("{}/v1/introspect", self.target.replica(i).base))
            .basic_auth(id, Some(secret))
            .form(&[("token", self.token(i)?)])
            .send()
            .await
            .map_err(|_| "transport".to_string())?;
        let status = response.status().as_u16();
        let body: Value = response
            .json()
            .await
            .map_err(|_| "unreadable".to_string())?;
        match body.get("active").and_then(Value::as_bool) {
            Some(true) if status == 200 => Ok(()),
            Some(false) => Err("inactive".into()),
            _ => Err(Self::refused(status, &body)),
        }
    }

    /// One round trip, recorded if it started at or after `measure_from`.
    async fn round_trip(&self, due: Instant, measure_from: Instant, until: Instant) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let i = usize::try_from(n).unwrap_or_default();
        let step = self.scenario.step(n);
        let result = match step {
            Step::Attest => self.attest(i).await.map(|_| ()),
            Step::Exchange => self.exchange(i).await,
            Step::Introspect => self.introspect(i).await,
        };
        if due < measure_from || due >= until {
            return;
        }
        let elapsed = u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX);
        let Ok(mut stats) = self.stats.lock() else {
            return;
        };
        *stats
            .per_replica
            .entry(i % self.target.replicas.len().max(1))
            .or_default() += 1;
        match result {
            Ok(()) => {
                stats.latencies_us.push(elapsed);
                if step == Step::Attest {
                    stats.attested += 1;
                }
            }
            Err(code) => *stats.errors.entry(code).or_default() += 1,
        }
    }
}

/// Every replica's CPU time so far (`None` for one not local).
fn server_cpu(target: &Target) -> Option<Vec<Option<Duration>>> {
    Some(
        target
            .replicas
            .iter()
            .map(|replica| replica.pid.and_then(|pid| cpu_time(Some(pid))))
            .collect(),
    )
}

fn tees(choice: TeeChoice) -> Vec<TeeKind> {
    match choice {
        TeeChoice::Nitro => vec![TeeKind::Nitro],
        TeeChoice::Tdx => vec![TeeKind::Tdx],
        TeeChoice::Snp => vec![TeeKind::Snp],
        TeeChoice::Mix => vec![TeeKind::Tdx, TeeKind::Snp, TeeKind::Nitro],
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    sorted.get(index).copied().unwrap_or_default() as f64 / 1000.0
}

async fn build(args: &Args) -> anyhow::Result<Load> {
    if args.keys == 0 {
        bail!("--keys must be at least 1");
    }
    if args
        .rate
        .is_some_and(|rate| !(rate > 0.0 && rate.is_finite()))
    {
        bail!("--rate must be a positive number of round trips per second");
    }
    let connections = args.concurrency.max(64);
    let now = time::OffsetDateTime::now_utc();
    let kinds = tees(args.tee);
    // A spawned verifier has the TDX collateral in its folder (as one
    // with a collateral source would), so TDX requests carry none.
    let mut made = Vec::new();
    let mut folder = Vec::new();
    for tee in &kinds {
        let served = args.spawn && *tee == TeeKind::Tdx;
        let simulator = Simulator::new(*tee, now, served)?;
        if served {
            folder.extend(simulator.folder_files(now)?);
        }
        made.push(Arc::new(simulator));
    }
    let target = if args.spawn {
        let verifier = match &args.verifier_bin {
            Some(path) => path.clone(),
            None => std::env::current_exe()?
                .parent()
                .context("no directory for this binary")?
                .join("verifier"),
        };
        Target::spawn(
            &verifier,
            args.database.as_deref(),
            &args.serve_args,
            connections,
            args.replicas,
            &folder,
        )?
    } else {
        let (false, Some(ca)) = (args.verifier.is_empty(), &args.ca_cert) else {
            bail!("name a verifier (--verifier URL --ca-cert PEM) or --spawn one");
        };
        Target::remote(
            &args.verifier,
            &args.server_pid,
            ca,
            args.admin_token.clone(),
            connections,
        )?
    };
    target
        .seed(args.seed_sessions, args.seed_revocations)
        .await
        .context("seeding the store")?;
    let agents = (0..args.keys)
        .map(|_| Agent::new())
        .collect::<anyhow::Result<Vec<_>>>()?;
    let simulators = (0..args.keys)
        .filter_map(|i| made.get(i % made.len()).cloned())
        .collect();
    let mut load = Load {
        target,
        scenario: args.scenario,
        agents,
        simulators,
        tokens: Vec::new(),
        actor: Agent::new()?,
        client: None,
        dpop_nonce: Mutex::new(None),
        next: AtomicU64::new(0),
        stats: Mutex::new(Stats::default()),
        record: match &args.record_tokens {
            Some(path) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("opening {}", path.display()))?,
            )),
            None => None,
        },
    };
    if args.scenario.needs_tokens() {
        for i in 0..args.keys {
            let token = load
                .attest(i)
                .await
                .map_err(|code| anyhow!("setting up: an attestation was refused: {code}"))?;
            load.tokens.push(token);
        }
        load.client = Some(load.target.register_client().await?);
    }
    Ok(load)
}

async fn run(load: Arc<Load>, args: &Args) -> anyhow::Result<Value> {
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup.max(0.0));
    let until = measure_from + Duration::from_secs_f64(args.duration.max(0.1));
    let progress = std::io::stderr().is_terminal() && !args.json;
    let mut cpu_start = None;
    let mut db_start = None;
    let ticker = {
        let load = Arc::clone(&load);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_secs(1));
            loop {
                interval.tick().await;
                if progress {
                    let (done, errors) = load
                        .stats
                        .lock()
                        .map(|s| (s.latencies_us.len(), s.errors.values().sum::<u64>()))
                        .unwrap_or_default();
                    eprint!("\r{done} round trips, {errors} errors   ");
                }
            }
        })
    };
    let mut workers = Vec::new();
    match args.rate {
        None => {
            for _ in 0..args.concurrency.max(1) {
                let load = Arc::clone(&load);
                workers.push(tokio::spawn(async move {
                    loop {
                        let due = Instant::now();
                        if due >= until {
                            break;
                        }
                        load.round_trip(due, measure_from, until).await;
                    }
                }));
            }
            tokio::time::sleep_until(measure_from).await;
            cpu_start = Some((server_cpu(&load.target), cpu_time(None)));
            db_start = load.target.database_bytes().await.ok().flatten();
        }
        Some(rate) => {
            let period = Duration::from_secs_f64(1.0 / rate);
            let mut due = start;
            while due < until {
                if cpu_start.is_none() && due >= measure_from {
                    cpu_start = Some((server_cpu(&load.target), cpu_time(None)));
                    db_start = load.target.database_bytes().await.ok().flatten();
                }
                tokio::time::sleep_until(due).await;
                let load = Arc::clone(&load);
                workers.push(tokio::spawn(async move {
                    load.round_trip(due, measure_from, until).await;
                }));
                due += period;
            }
        }
    }
    for worker in workers {
        worker.await?;
    }
    let wall = until
        .min(Instant::now())
        .saturating_duration_since(measure_from);
    let (server_end, generator_end) = (server_cpu(&load.target), cpu_time(None));
    ticker.abort();
    if progress {
        eprintln!();
    }
    let db_end = load.target.database_bytes().await.ok().flatten();
    let mut stats = std::mem::take(&mut *load.stats.lock().map_err(|_| anyhow!("poisoned"))?);
    stats.latencies_us.sort_unstable();
    let ok = stats.latencies_us.len() as u64;
    let errors: u64 = stats.errors.values().sum();
    let total = ok + errors;
    let per_round_trip = |start: Option<Duration>, end: Option<Duration>| match (start, end, total)
    {
        (Some(s), Some(e), t) if t > 0 => {
            Some(e.saturating_sub(s).as_secs_f64() * 1000.0 / t as f64)
        }
        _ => None,
    };
    let (server_start, generator_start) = cpu_start.unwrap_or_default();
    let server_total = |cpu: &Option<Vec<Option<Duration>>>| {
        cpu.as_ref()
            .and_then(|each| each.iter().copied().sum::<Option<Duration>>())
    };
    let replicas: Vec<Value> = load
        .target
        .replicas
        .iter()
        .enumerate()
        .map(|(i, replica)| {
            let round_trips = stats.per_replica.get(&i).copied().unwrap_or_default();
            let at = |cpu: &Option<Vec<Option<Duration>>>| {
                cpu.as_ref().and_then(|each| each.get(i).copied().flatten())
            };
            let cpu = match (at(&server_start), at(&server_end), round_trips) {
                (Some(s), Some(e), n) if n > 0 => {
                    Some(e.saturating_sub(s).as_secs_f64() * 1000.0 / n as f64)
                }
                _ => None,
            };
            json!({
                "url": replica.base,
                "round_trips": round_trips,
                "server_cpu_ms_per_round_trip": cpu,
            })
        })
        .collect();
    let db_per_attestation = match (db_start, db_end, stats.attested) {
        (Some(s), Some(e), n) if n > 0 => Some(e.saturating_sub(s) as f64 / n as f64),
        _ => None,
    };
    Ok(json!({
        "scenario": format!("{:?}", args.scenario).to_lowercase(),
        "tee": format!("{:?}", args.tee).to_lowercase(),
        "mode": match args.rate {
            Some(rate) => format!("open loop, {rate}/s"),
            None => format!("closed loop, {} agents", args.concurrency),
        },
        "keys": args.keys,
        "seconds": wall.as_secs_f64(),
        "round_trips": ok,
        "errors": errors,
        "errors_by_code": stats.errors,
        "throughput_per_s": ok as f64 / wall.as_secs_f64().max(1e-9),
        "latency_ms": {
            "p50": percentile(&stats.latencies_us, 50.0),
            "p90": percentile(&stats.latencies_us, 90.0),
            "p99": percentile(&stats.latencies_us, 99.0),
            "max": percentile(&stats.latencies_us, 100.0),
        },
        "server_cpu_ms_per_round_trip": per_round_trip(server_total(&server_start), server_total(&server_end)),
        "replicas": replicas,
        "generator_cpu_ms_per_round_trip": per_round_trip(generator_start, generator_end),
        "database_bytes_per_attestation": db_per_attestation,
        "database": if load.target.postgres.is_some() { "postgres" } else if load.target.sqlite.is_some() { "sqlite" } else { "unknown" },
    }))
}

fn print_text(report: &Value) {
    let get = |path: &str| report.pointer(path).cloned().unwrap_or(Value::Null);
    let ms = |path: &str| {
        get(path)
            .as_f64()
            .map_or_else(|| "n/a".to_string(), |v| format!("{v:.3} ms"))
    };
    println!(
        "{} on {} ({}, {} keys, {} database), {:.1} s measured",
        get("/scenario").as_str().unwrap_or_default(),
        get("/tee").as_str().unwrap_or_default(),
        get("/mode").as_str().unwrap_or_default(),
        get("/keys"),
        get("/database").as_str().unwrap_or_default(),
        get("/seconds").as_f64().unwrap_or_default(),
    );
    println!(
        "  {} round trips, {:.0}/s, {} errors",
        get("/round_trips"),
        get("/throughput_per_s").as_f64().unwrap_or_default(),
        get("/errors"),
    );
    if let Some(by_code) = report.get("errors_by_code").and_then(Value::as_object) {
        for (code, count) in by_code {
            println!("    {code}: {count}");
        }
    }
    println!(
        "  latency p50 {}  p90 {}  p99 {}  max {}",
        ms("/latency_ms/p50"),
        ms("/latency_ms/p90"),
        ms("/latency_ms/p99"),
        ms("/latency_ms/max"),
    );
    println!(
        "  CPU per round trip: server {}, generator {}",
        ms("/server_cpu_ms_per_round_trip"),
        ms("/generator_cpu_ms_per_round_trip"),
    );
    if let Some(replicas) = report.get("replicas").and_then(Value::as_array) {
        for replica in replicas.iter().filter(|_| replicas.len() > 1) {
            println!(
                "    replica {}: {} round trips, server {}",
                replica
                    .get("url")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
                replica
                    .get("round_trips")
                    .and_then(Value::as_u64)
                    .unwrap_or_default(),
                replica
                    .get("server_cpu_ms_per_round_trip")
                    .and_then(Value::as_f64)
                    .map_or_else(|| "n/a".to_string(), |v| format!("{v:.3} ms")),
            );
        }
    }
    if let Some(bytes) = get("/database_bytes_per_attestation").as_f64() {
        println!("  database growth per attestation: {bytes:.0} bytes");
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let load = Arc::new(build(&args).await?);
    let report = run(Arc::clone(&load), &args).await?;
    if args.json {
        println!("{report}");
    } else {
        print_text(&report);
    }
    let failed = report.get("errors").and_then(Value::as_u64).unwrap_or(0) > 0;
    load.target.stop();
    if args.fail_on_error && failed {
        std::process::exit(1);
    }
    Ok(())
}
