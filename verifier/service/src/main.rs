//! `verifier`: verify recorded TEE evidence offline, record it in a bundle,
//! or serve the attestation API over HTTPS (`verifier serve`).
//!
//! Exit codes: 0 verified; 1 evidence rejected (for any reason, including not
//! parsing), with a JSON verdict on stdout; 2 usage error or unreadable file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use attest_gate_core::{
    appraise, decode_text_encoding, nitro, resolve_tee, AppraisalPolicy, Collateral,
    EvidenceBundle, TcbStatus, TeeKind, TrustAnchors, UnknownTcbStatus, Verifier, VerifyError,
};
use attest_gate_verifier::cli::{self as wire, now};
use attest_gate_verifier::{cli as files, ServeArgs};
use clap::{Args, Parser, Subcommand, ValueEnum};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

mod ops;

/// The service allocates and frees many small buffers per request (JSON,
/// base64, SQL rows): mimalloc's per-thread free lists cost less than
/// glibc's arenas there (measured in docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "verifier",
    version,
    about = "Attest Gate: verify TEE attestation evidence"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify an evidence file (raw, hex, base64, or an evidence bundle).
    Verify(VerifyArgs),
    /// Record evidence and its collateral in a portable bundle file.
    Bundle(BundleArgs),
    /// Run the HTTPS attestation service.
    Serve(ServeArgs),
    /// Judge every live session again (new reference values or collateral);
    /// revoke those that no longer pass.
    Reappraise(ops::ReappraiseArgs),
    /// Test a policy and workload files against recorded bundles.
    #[command(subcommand)]
    Policy(ops::PolicyCommand),
    /// Check or export the tamper-evident audit log.
    #[command(subcommand)]
    Audit(ops::AuditCommand),
    /// Settings files for `serve --config FILE`.
    #[command(subcommand)]
    Config(attest_gate_config::ConfigCommand),
}

/// The subcommand whose flags a settings file may set.
const LAYERED: &[&str] = &["serve"];
/// Settings shown with any URL password hidden.
const SECRET_SETTINGS: &[&str] = &["database"];

#[derive(Clone, Copy, ValueEnum)]
enum TeeArg {
    Auto,
    Nitro,
    Tdx,
    Snp,
}

impl TeeArg {
    fn kind(self) -> Option<TeeKind> {
        match self {
            Self::Auto => None,
            Self::Nitro => Some(TeeKind::Nitro),
            Self::Tdx => Some(TeeKind::Tdx),
            Self::Snp => Some(TeeKind::Snp),
        }
    }
}

#[derive(Args)]
struct VerifyArgs {
    /// The evidence file.
    evidence: PathBuf,
    /// Which TEE produced it; `auto` detects it from the bytes.
    #[arg(long, value_enum, default_value = "auto")]
    tee: TeeArg,
    /// Verify as of this instant (RFC 3339), or `doc` for a Nitro document's own
    /// timestamp. Default: a bundle's `verify_at`, else now.
    #[arg(long)]
    at: Option<String>,
    /// Folder of collateral files (default: a bundle's collateral).
    #[arg(long)]
    collateral: Option<PathBuf>,
    /// Trust these root certificates (PEM or DER) instead of the built-in vendor roots.
    #[arg(long = "trust-root")]
    trust_root: Vec<PathBuf>,
    /// The Nitro `nonce` must equal this (hex).
    #[arg(long, value_parser = parse_hex)]
    nonce: Option<HexBytes>,
    /// The TDX / SNP `REPORT_DATA` must equal this (hex).
    #[arg(long = "report-data", value_parser = parse_hex)]
    report_data: Option<HexBytes>,
    /// Accept a debug-mode TEE (Nitro all-zero PCR0-2, TDX DEBUG, SNP policy DEBUG).
    #[arg(long = "allow-debug")]
    allow_debug: bool,
    /// Also accept this TCB status besides UpToDate (repeatable), e.g.
    /// SWHardeningNeeded, ConfigurationNeeded, ConfigurationAndSWHardeningNeeded.
    #[arg(long = "accept-tcb-status", value_parser = parse_tcb_status)]
    accept_tcb_status: Vec<TcbStatus>,
}

/// A TCB status to accept besides UpToDate. Revoked is never acceptable:
/// the platform's keys are no longer Intel's word for anything.
fn parse_tcb_status(s: &str) -> Result<TcbStatus, String> {
    match s.parse().map_err(|e: UnknownTcbStatus| e.to_string())? {
        TcbStatus::Revoked => Err("a Revoked TCB is never accepted".into()),
        status => Ok(status),
    }
}

#[derive(Args)]
struct BundleArgs {
    /// The evidence file (raw, hex or base64).
    evidence: PathBuf,
    /// Which TEE produced it; `auto` detects it from the bytes.
    #[arg(long, value_enum, default_value = "auto")]
    tee: TeeArg,
    /// Folder of collateral files to include.
    #[arg(long)]
    collateral: Option<PathBuf>,
    /// The instant the evidence should verify at (RFC 3339, or `doc` for Nitro).
    /// Default: `doc` for Nitro, else now.
    #[arg(long)]
    at: Option<String>,
    /// Free-text provenance note.
    #[arg(long, default_value = "")]
    note: String,
    /// Where to write the bundle.
    #[arg(short = 'o', long = "output")]
    output: PathBuf,
}

/// Bytes given as hex on the command line (a newtype: clap would read a bare
/// `Vec<u8>` as a list of numbers).
#[derive(Clone)]
struct HexBytes(Vec<u8>);

fn parse_hex(s: &str) -> Result<HexBytes, String> {
    hex::decode(s.trim())
        .map(HexBytes)
        .map_err(|e| format!("not hex: {e}"))
}

/// When to verify: an explicit instant, or "the document's own timestamp".
enum At {
    Instant(OffsetDateTime),
    Document,
}

fn parse_at(s: &str) -> anyhow::Result<At> {
    if s == "doc" {
        return Ok(At::Document);
    }
    OffsetDateTime::parse(s, &Rfc3339)
        .map(At::Instant)
        .with_context(|| format!("--at {s:?} is neither RFC 3339 nor `doc`"))
}

fn resolve_at(at: At, tee: TeeKind, evidence: &[u8]) -> Result<OffsetDateTime, VerifyError> {
    match (at, tee) {
        (At::Instant(t), _) => Ok(t),
        (At::Document, TeeKind::Nitro) => nitro::unverified_timestamp(evidence),
        (At::Document, _) => Err(VerifyError::Malformed {
            what: "`--at doc` needs a Nitro document (only it carries a timestamp)".into(),
        }),
    }
}

fn main() -> ExitCode {
    let cli: Cli = attest_gate_config::parse_or_exit(LAYERED);
    let result = match cli.command {
        Command::Verify(args) => verify(args),
        Command::Bundle(args) => bundle(args),
        Command::Serve(args) => serve_forever(args),
        Command::Reappraise(args) => ops::reappraise(args),
        Command::Policy(ops::PolicyCommand::Test(args)) => ops::policy_test(&args),
        Command::Audit(ops::AuditCommand::Verify(args)) => ops::audit_verify(&args),
        Command::Audit(ops::AuditCommand::Export(args)) => ops::audit_export(&args),
        Command::Audit(ops::AuditCommand::Prune(args)) => ops::audit_prune(&args),
        Command::Config(config) => config
            .run::<Cli>(LAYERED, SECRET_SETTINGS)
            .map(|()| ExitCode::SUCCESS)
            .map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end())),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("verifier: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the service on a multi-threaded runtime until it is told to stop.
fn serve_forever(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(attest_gate_verifier::run(args))?;
    Ok(ExitCode::SUCCESS)
}

/// Prints the verdict. A closed stdout (e.g. `| head`) is not worth a panic:
/// the exit code still carries the verdict.
fn print(value: &serde_json::Value) {
    use std::io::Write;
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

fn reject(value: serde_json::Value) -> anyhow::Result<ExitCode> {
    print(&value);
    Ok(ExitCode::from(1))
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let at_arg = args.at.as_deref().map(parse_at).transpose()?;
    let anchors = if args.trust_root.is_empty() {
        TrustAnchors::vendor().context("built-in vendor roots")?
    } else {
        let mut roots = Vec::new();
        for path in &args.trust_root {
            roots.extend(files::read_certificates(path)?);
        }
        eprintln!(
            "verifier: WARNING: trusting test roots from --trust-root instead of the vendor roots; \
             results say \"trust\": \"test-root\" and are not production attestations"
        );
        TrustAnchors::test_roots(roots).context("--trust-root")?
    };
    let mut collateral = match &args.collateral {
        Some(dir) => Some(files::read_collateral_dir(dir)?),
        None => None,
    };

    let raw = files::read_evidence(&args.evidence)?;
    let (tee, evidence, default_at) = if EvidenceBundle::looks_like_bundle(&raw) {
        let bundle = match EvidenceBundle::from_json(&raw) {
            Ok(b) => b,
            Err(e) => return reject(wire::failure("malformed_evidence", &e.to_string(), vec![])),
        };
        if let Some(requested) = args.tee.kind() {
            if requested != bundle.tee {
                return reject(wire::verify_failed(&VerifyError::TeeMismatch {
                    requested,
                    detected: bundle.tee,
                }));
            }
        }
        collateral.get_or_insert(bundle.collateral);
        (bundle.tee, bundle.evidence, Some(bundle.verify_at))
    } else {
        let bytes = decode_text_encoding(&raw);
        match resolve_tee(&bytes, args.tee.kind()) {
            Ok(tee) => (tee, bytes, None),
            Err(e) => return reject(wire::verify_failed(&e)),
        }
    };

    let at = match at_arg {
        Some(at) => match resolve_at(at, tee, &evidence) {
            Ok(t) => t,
            Err(e) => return reject(wire::verify_failed(&e)),
        },
        None => default_at.unwrap_or_else(now),
    };

    let verifier = Verifier::new(anchors);
    let collateral = collateral.unwrap_or_else(Collateral::empty);
    let claims = match verifier.verify(tee, &evidence, &collateral, at) {
        Ok(c) => c,
        Err(e) => return reject(wire::verify_failed(&e)),
    };
    let mut policy = AppraisalPolicy {
        allow_debug: args.allow_debug,
        expected_nonce: args.nonce.map(|h| h.0),
        expected_report_data: args.report_data.map(|h| h.0),
        ..AppraisalPolicy::default()
    };
    policy.accepted_tcb_statuses.extend(args.accept_tcb_status);
    let judged = claims.clone();
    match appraise(claims, &policy) {
        Ok(appraisal) => {
            print(&wire::verified(appraisal.claims()));
            Ok(ExitCode::SUCCESS)
        }
        Err(reasons) => reject(wire::rejected(&reasons, &judged)),
    }
}

fn bundle(args: BundleArgs) -> anyhow::Result<ExitCode> {
    let raw = files::read_evidence(&args.evidence)?;
    if EvidenceBundle::looks_like_bundle(&raw) {
        bail!("{} is already a bundle", args.evidence.display());
    }
    let evidence = decode_text_encoding(&raw);
    let tee = resolve_tee(&evidence, args.tee.kind()).context("cannot tell which TEE made it")?;
    let at = match args.at.as_deref().map(parse_at).transpose()? {
        Some(at) => resolve_at(at, tee, &evidence)?,
        None if tee == TeeKind::Nitro => nitro::unverified_timestamp(&evidence)?,
        None => now(),
    };
    let collateral = match &args.collateral {
        Some(dir) => files::read_collateral_dir(dir)?,
        None => Collateral::empty(),
    };
    let bundle = EvidenceBundle {
        tee,
        evidence,
        collateral,
        verify_at: at,
        provenance: args.note,
    };
    let json = bundle.to_json()?;
    std::fs::write(&args.output, json + "\n")
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    eprintln!(
        "verifier: wrote {} bundle to {}",
        tee,
        args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}
