//! The operator's commands besides `serve` (part of the `verifier` binary):
//! `reappraise`, `policy test` and `audit verify|export`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use attest_gate_core::EvidenceBundle;
use attest_gate_verifier::cli::{self as files, now};
use attest_gate_verifier::{
    Appraiser, AuditQuery, Decision, IntentRequest, RevocationMode as Mode, ServeArgs, ServiceCode,
    ServiceError, Store, Verification,
};
use attest_gate_verifier::{AuditError, AuditVerified, CheckpointKey, CollateralOrigin};
use clap::{Args, Subcommand, ValueEnum};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// How `reappraise` revokes what no longer passes.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ModeArg {
    /// Dead now.
    Immediate,
    /// Runs to expiry; no renewal.
    Graceful,
    /// Active but marked for monitoring.
    Quarantine,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Immediate => Self::Immediate,
            ModeArg::Graceful => Self::Graceful,
            ModeArg::Quarantine => Self::Quarantine,
        }
    }
}

/// `verifier reappraise`.
#[derive(Debug, Args)]
pub(crate) struct ReappraiseArgs {
    /// How sessions that no longer pass are revoked.
    #[arg(long, value_enum)]
    pub mode: ModeArg,
    /// The same flags as `serve` (data directory, database, measurements,
    /// policy, collateral sources, `--dev`).
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// `verifier policy ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Decide every `NAME.bundle.json` in DIR with the policy and workload
    /// files, and compare with `NAME.expect.json` beside it.
    Test(PolicyTestArgs),
}

/// `verifier policy test`.
#[derive(Debug, Args)]
pub(crate) struct PolicyTestArgs {
    /// The folder of bundles and expectations.
    pub dir: PathBuf,
    /// The reference-value files (default: ./measurements).
    #[arg(long, default_value = "measurements")]
    pub measurements: PathBuf,
    /// The Cedar policy (default: the built-in one).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Also trust the project's test roots (for forged evidence).
    #[arg(long)]
    pub dev: bool,
}

/// `verifier audit ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Check the whole hash chain (from its signed checkpoint, if pruned);
    /// names the first broken record.
    Verify(VerifyAuditArgs),
    /// Remove records dated before an instant, leaving a signed checkpoint
    /// the chain is then checked from.
    Prune(PruneArgs),
    /// Write records as JSON lines to stdout.
    Export(ExportArgs),
}

/// Which database.
#[derive(Debug, Args)]
pub(crate) struct StoreArgs {
    /// The data directory (its SQLite database is the default).
    #[arg(long = "data-dir", default_value = "./attest-gate-data")]
    pub data_dir: PathBuf,
    /// `sqlite:PATH` or `postgres://...`.
    #[arg(long)]
    pub database: Option<String>,
}

/// `verifier audit verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyAuditArgs {
    /// A record's position and hash as printed by an earlier `audit verify`
    /// (`SEQ:HASH`, kept outside the database): the chain must still hold
    /// it, so a rewrite of the records since is caught (repeatable).
    #[arg(long = "expect", value_name = "SEQ:HASH")]
    pub expect: Vec<String>,
    /// Which database.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `verifier audit prune`.
#[derive(Debug, Args)]
pub(crate) struct PruneArgs {
    /// Remove the records dated before this instant (RFC 3339).
    #[arg(long)]
    pub before: String,
    /// Which database.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `verifier audit export`.
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// Only records at or after this instant (RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Which database.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// One case of `policy test`: the request and the decision expected.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    model_digest: String,
    principal: String,
    intent: IntentRequest,
    expect: Decision,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

async fn open_store(args: &StoreArgs) -> anyhow::Result<Store> {
    let url = match &args.database {
        Some(url) => url.clone(),
        None => {
            let db = args.data_dir.join("attest-gate.db");
            if !db.exists() {
                bail!(
                    "no database at {} (use --data-dir or --database)",
                    db.display()
                );
            }
            format!("sqlite://{}", db.display())
        }
    };
    Store::open(&url).await.context("opening the database")
}

/// `verifier reappraise`: prints what was revoked.
pub(crate) fn reappraise(args: ReappraiseArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let (service, _) = attest_gate_verifier::open(&args.serve, args.serve.listen).await?;
        let outcome = Arc::new(service)
            .reappraise(args.mode.into(), now())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        println!("{}", serde_json::to_string_pretty(&outcome)?);
        Ok(ExitCode::SUCCESS)
    })
}

/// `verifier audit verify`: exit 0 intact, 1 broken.
pub(crate) fn audit_verify(args: &VerifyAuditArgs) -> anyhow::Result<ExitCode> {
    let expected = args
        .expect
        .iter()
        .map(|e| {
            e.split_once(':')
                .and_then(|(seq, hash)| Some((seq.parse::<i64>().ok()?, hash.to_string())))
                .with_context(|| format!("--expect {e:?}: not SEQ:HASH"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    runtime()?.block_on(async {
        let store = open_store(&args.store).await?;
        let verified = match attest_gate_verifier::verify_audit_log(&store, &args.store.data_dir)
            .await
        {
            Ok(verified) => verified,
            Err(AuditError::Broken(broken)) => {
                println!(
                    "{}",
                    serde_json::json!({"intact": false, "first_broken": broken})
                );
                return Ok(ExitCode::from(1));
            }
            Err(e @ (AuditError::BadCheckpoint(_) | AuditError::NoKey(_))) => {
                println!(
                    "{}",
                    serde_json::json!({"intact": false, "checkpoint_invalid": e.to_string()})
                );
                return Ok(ExitCode::from(1));
            }
            Err(e) => return Err(e.into()),
        };
        for (seq, hash) in &expected {
            if let Some(problem) = expected_record(&store, &verified, *seq, hash).await? {
                println!(
                    "{}",
                    serde_json::json!({"intact": false, "expected_record": {"seq": seq, "problem": problem}})
                );
                return Ok(ExitCode::from(1));
            }
        }
        println!(
            "{}",
            serde_json::json!({
                "intact": true,
                "records": verified.records,
                "head": verified.head,
                "checkpoint": verified.checkpoint,
                "expected_checked": expected.len(),
            })
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// Why record `seq` of an intact chain is not the one with `hash`, if it
/// is not: rewritten since, or pruned (its hash is then known only if the
/// checkpoint is at it).
async fn expected_record(
    store: &Store,
    verified: &AuditVerified,
    seq: i64,
    hash: &str,
) -> anyhow::Result<Option<String>> {
    if let Some(checkpoint) = verified.checkpoint.as_ref().filter(|c| seq <= c.seq) {
        return Ok(match (seq == checkpoint.seq, checkpoint.hash == hash) {
            (true, true) => None,
            (true, false) => Some("the checkpoint at this record names another hash".into()),
            (false, _) => Some("pruned: before the checkpoint, so it cannot be checked".into()),
        });
    }
    let records = store
        .audit_records(&AuditQuery {
            after_seq: Some(seq - 1),
            limit: 1,
            ..AuditQuery::default()
        })
        .await?;
    Ok(match records.first() {
        Some(r) if r.seq == seq && r.hash == hash => None,
        Some(r) if r.seq == seq => Some("its hash changed: the chain was rewritten".into()),
        _ => Some("no such record".into()),
    })
}

/// `verifier audit prune`: prints how many records went and the checkpoint.
pub(crate) fn audit_prune(args: &PruneArgs) -> anyhow::Result<ExitCode> {
    let before = OffsetDateTime::parse(&args.before, &Rfc3339)
        .with_context(|| format!("--before {:?}", args.before))?
        .unix_timestamp();
    let now = now().unix_timestamp();
    if before > now {
        bail!(
            "--before {:?} is in the future: records not yet written cannot be pruned",
            args.before
        );
    }
    runtime()?.block_on(async {
        let store = open_store(&args.store).await?;
        let key = CheckpointKey::load_or_create(&args.store.data_dir)?;
        match attest_gate_verifier::prune_audit_log(&store, &key, &args.store.data_dir, before, now)
            .await
        {
            Ok(pruned) => {
                println!("{}", serde_json::to_value(&pruned)?);
                Ok(ExitCode::SUCCESS)
            }
            Err(AuditError::Broken(broken)) => {
                println!(
                    "{}",
                    serde_json::json!({"pruned": false, "first_broken": broken})
                );
                Ok(ExitCode::from(1))
            }
            Err(e) => Err(e.into()),
        }
    })
}

/// `verifier audit export`: JSON lines, oldest first.
pub(crate) fn audit_export(args: &ExportArgs) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let since = args
        .since
        .as_deref()
        .map(|s| OffsetDateTime::parse(s, &Rfc3339).with_context(|| format!("--since {s:?}")))
        .transpose()?
        .map(OffsetDateTime::unix_timestamp);
    runtime()?.block_on(async {
        let store = open_store(&args.store).await?;
        let mut out = std::io::stdout().lock();
        let mut after = 0;
        loop {
            let page = store
                .audit_records(&AuditQuery {
                    since,
                    after_seq: Some(after),
                    action: None,
                    limit: 1000,
                })
                .await?;
            for record in &page {
                writeln!(out, "{}", serde_json::to_string(record)?)?;
                after = record.seq;
            }
            if page.len() < 1000 {
                return Ok(ExitCode::SUCCESS);
            }
        }
    })
}

fn judge(
    verification: &Verification,
    appraiser: &Appraiser,
    bundle: &EvidenceBundle,
    case: &Case,
) -> Decision {
    let Some(model) = attest_gate_core::ModelDigest::from_hex(&case.model_digest) else {
        return Decision::of(Err(ServiceError::new(
            ServiceCode::MalformedRequest,
            "model_digest",
        )));
    };
    Decision::of(
        verification
            .verify(
                bundle.tee,
                &bundle.evidence,
                &bundle.collateral,
                bundle.verify_at,
            )
            .and_then(|claims| {
                // The bundle's collateral is the operator's own recording:
                // decided as the service decides on its own sources.
                let collateral = if bundle.tee == attest_gate_core::TeeKind::Nitro {
                    CollateralOrigin::None
                } else {
                    CollateralOrigin::Service
                };
                appraiser
                    .decide(
                        &claims,
                        collateral,
                        &model,
                        &case.principal,
                        &case.intent,
                        bundle.verify_at,
                    )
                    .map(|g| g.scopes)
            }),
    )
}

fn matches(expected: &Decision, got: &Decision) -> bool {
    expected.decision == got.decision
        && (expected.scopes.is_empty() || expected.scopes == got.scopes)
        && (expected.code.is_none() || expected.code == got.code)
}

/// `verifier policy test DIR`: exit 0 when every case decides as expected.
pub(crate) fn policy_test(args: &PolicyTestArgs) -> anyhow::Result<ExitCode> {
    let appraiser = Appraiser::load(&args.measurements, args.policy.as_deref())?;
    let verification = Verification::new(args.dev)?;
    let mut bundles: Vec<PathBuf> = std::fs::read_dir(&args.dir)
        .with_context(|| format!("{}", args.dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".bundle.json"))
        .collect();
    bundles.sort();
    if bundles.is_empty() {
        bail!("no *.bundle.json in {}", args.dir.display());
    }
    let mut differ = 0;
    for path in &bundles {
        let name = path
            .to_string_lossy()
            .trim_end_matches(".bundle.json")
            .to_string();
        let expect_path = PathBuf::from(format!("{name}.expect.json"));
        let bundle = EvidenceBundle::from_json(&files::read_evidence(path)?)
            .with_context(|| format!("{}", path.display()))?;
        let case: Case = serde_json::from_slice(&read(&expect_path)?)
            .with_context(|| format!("{}", expect_path.display()))?;
        let got = judge(&verification, &appraiser, &bundle, &case);
        let ok = matches(&case.expect, &got);
        if !ok {
            differ += 1;
        }
        println!(
            "{}",
            serde_json::json!({
                "case": Path::new(&name).file_name().map(|n| n.to_string_lossy()),
                "ok": ok,
                "expected": case.expect,
                "got": got,
            })
        );
    }
    eprintln!(
        "verifier: {} cases, {} as expected, {differ} differ (policy {})",
        bundles.len(),
        bundles.len() - differ,
        appraiser.policy_version
    );
    Ok(if differ == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}
