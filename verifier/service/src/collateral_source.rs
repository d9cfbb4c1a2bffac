//! Where the service finds TDX and SNP collateral: behind one trait, the
//! service's own sources (its collateral directory, keyed by FMSPC and by
//! chip ID + TCB; Intel PCS; AMD KDS). Sources do the I/O; verification stays
//! free of it and checks whatever a source returns (signatures, windows,
//! FMSPC / chip binding), so a source is trusted for availability only.
//!
//! The rule ([`CollateralSources::resolve`]): when the service has any source
//! for a TEE, TCB info, QE identity and CRLs come only from the service — an
//! agent could otherwise bring real but older collateral, still inside its
//! `nextUpdate`, from before a TCB recovery or before its own chip was
//! revoked — and when the service cannot get them, nothing is issued (503
//! `collateral_unavailable`). The request may add only certificates that
//! endorse one chip. Only a service with no source at all for a TEE uses the
//! request's collateral, which `--collateral-policy service-only` forbids,
//! and every credential says which it was ([`CollateralOrigin`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;

use attest_gate_core::snp::{self, Product, VcekLookup};
use attest_gate_core::tdx::{names, PckCa};
use attest_gate_core::{Collateral, TeeKind, VerifyError};
pub use attest_gate_protocol::CollateralOrigin;

use crate::files::{self, FileError};

/// A source failed (not "has nothing": that is `Ok(None)`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("collateral source {source_name}: {reason}")]
pub struct CollateralError {
    /// Which source.
    pub source_name: &'static str,
    /// What went wrong.
    pub reason: String,
    /// How long the source asked us to wait (a vendor's `Retry-After`, or a
    /// full fetch queue), when it said.
    pub retry_after: Option<std::time::Duration>,
}

impl CollateralError {
    /// A failure without retry advice.
    pub fn new(source_name: &'static str, reason: impl std::fmt::Display) -> Self {
        Self {
            source_name,
            reason: reason.to_string(),
            retry_after: None,
        }
    }
}

/// What a source looks collateral up by, built by the service before any
/// fetch: for TDX the platform proven by the quote's own signatures and PCK
/// chain, so only a genuine Intel platform can cause a PCS fetch; for SNP
/// the report's parsed, range-checked fields (the VCEK that would prove
/// them is itself what is fetched).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Nitro needs no collateral.
    Nitro,
    /// A TDX platform, authenticated.
    Tdx {
        /// FMSPC, from the verified PCK certificate.
        fmspc: [u8; 6],
        /// Which PCK CA issued it.
        ca: PckCa,
    },
    /// An SEV-SNP report, unverified.
    Snp {
        /// CHIP_ID, REPORTED_TCB, signing key and CPUID product.
        report: VcekLookup,
        /// The product (CPUID, else the endorsement certificate's issuer).
        product: Option<Product>,
        /// The request or the extended report brings the VCEK / VLEK (a
        /// chip certificate it may add), so none need be fetched.
        endorsement_supplied: bool,
    },
}

impl Lookup {
    /// An SEV-SNP report's lookup: its fields parsed (unverified), its
    /// product, and whether the request (`sent`) or the extended report's
    /// certificate table brings the endorsement certificate.
    pub fn snp(evidence: &[u8], sent: &Collateral) -> Result<Self, VerifyError> {
        Ok(Self::Snp {
            report: snp::unverified_vcek_lookup(evidence)?,
            product: snp::unverified_product(evidence, sent),
            endorsement_supplied: evidence.len() > snp::REPORT_LEN
                || ENDORSEMENTS.iter().any(|name| sent.get(name).is_some()),
        })
    }

    /// The TEE it is for.
    pub fn tee(&self) -> TeeKind {
        match self {
            Self::Nitro => TeeKind::Nitro,
            Self::Tdx { .. } => TeeKind::Tdx,
            Self::Snp { .. } => TeeKind::Snp,
        }
    }
}

/// A boxed future (the trait is used as `dyn`).
pub(crate) type Pending<'a> =
    Pin<Box<dyn Future<Output = Result<Option<Collateral>, CollateralError>> + Send + 'a>>;

/// A place collateral can come from.
pub trait CollateralSource: Send + Sync + std::fmt::Debug {
    /// A short name for logs and errors.
    fn name(&self) -> &'static str;

    /// Whether this source is configured for `tee` at all (a fetcher for its
    /// vendor, a folder with files for it). A TEE that any source serves
    /// never takes TCB info, QE identity or CRLs from a request.
    fn serves(&self, tee: TeeKind) -> bool;

    /// Collateral for this lookup, or `None` if this source has none.
    fn find<'a>(&'a self, lookup: &'a Lookup) -> Pending<'a>;
}

/// A folder with one subfolder per TEE, each laid out like the CLI's
/// `--collateral` folder:
///
/// ```text
/// <root>/tdx/               shared: pck_crl.der, root_ca_crl.der, qe_identity.json, ...
/// <root>/tdx/<fmspc>/       per platform type: tcb_info.json, ... (12 hex digits)
/// <root>/snp/               shared: cert_chain.pem (ASK, ARK), crl.der
/// <root>/snp/<chip_id>-<reported_tcb>/   per chip and TCB: vcek.der
///                           (128 and 16 hex digits, lower case)
/// ```
///
/// A file in the keyed folder wins over the shared one of the same name.
/// Files are read again once a read is [`REREAD_AFTER`] old, so an operator
/// can replace them without a restart while requests do not go to the disk
/// each; a TEE's folder with any entry in it, now or when the service
/// started, makes the folder a source for that TEE.
#[derive(Debug, Clone)]
pub struct DirectorySource {
    root: PathBuf,
    /// Recent reads by folder pair (bounded: an SEV-SNP lookup's chip comes
    /// from a report not yet verified).
    recent: Arc<Mutex<LruCache<FolderPair, (Instant, Collateral)>>>,
    /// The TEEs whose folder had files when the source was made: they stay
    /// served whatever happens to the folder later (a read error, files
    /// being swapped, descriptors exhausted), so a moment's absence can
    /// never turn the service into one that takes agents' collateral.
    at_start: [bool; 2],
}

/// How long a read of the folder serves requests.
const REREAD_AFTER: Duration = Duration::from_secs(1);

/// Folder pairs whose reads are remembered.
const RECENT_READS: usize = 64;

/// A lookup's shared folder and its keyed one.
type FolderPair = (PathBuf, Option<PathBuf>);

fn has_files(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some())
}

impl DirectorySource {
    /// The source rooted at `root`.
    pub fn new(root: PathBuf) -> Self {
        let at_start = [
            has_files(&root.join(TeeKind::Tdx.to_string())),
            has_files(&root.join(TeeKind::Snp.to_string())),
        ];
        let capacity = NonZeroUsize::new(RECENT_READS).unwrap_or(NonZeroUsize::MIN);
        Self {
            root,
            at_start,
            recent: Arc::new(Mutex::new(LruCache::new(capacity))),
        }
    }

    /// The read of `folders` if it is younger than [`REREAD_AFTER`].
    fn recent_read(&self, folders: &FolderPair) -> Option<Collateral> {
        let mut recent = self.recent.lock().ok()?;
        let (read_at, collateral) = recent.get(folders)?;
        (read_at.elapsed() < REREAD_AFTER).then(|| collateral.clone())
    }

    /// The keyed subfolder's name for this lookup.
    fn key(lookup: &Lookup) -> Option<String> {
        match lookup {
            Lookup::Nitro => None,
            Lookup::Tdx { fmspc, .. } => Some(hex::encode(fmspc)),
            Lookup::Snp { report, .. } => Some(format!(
                "{}-{:016x}",
                hex::encode(report.chip_id),
                report.reported_tcb
            )),
        }
    }

    fn read(shared: &Path, keyed: Option<&Path>) -> Result<Collateral, FileError> {
        let mut items: Vec<(String, Vec<u8>)> = Vec::new();
        for dir in std::iter::once(shared).chain(keyed) {
            if dir.is_dir() {
                let found = files::read_collateral_dir(dir)?;
                items.extend(found.iter().map(|(n, b)| (n.to_string(), b.to_vec())));
            }
        }
        // Later (keyed) items win in `from_items`.
        Ok(Collateral::from_items(items))
    }
}

impl CollateralSource for DirectorySource {
    fn name(&self) -> &'static str {
        "directory"
    }

    fn serves(&self, tee: TeeKind) -> bool {
        let at_start = match tee {
            TeeKind::Nitro => return false,
            TeeKind::Tdx => self.at_start[0],
            TeeKind::Snp => self.at_start[1],
        };
        at_start || has_files(&self.root.join(tee.to_string()))
    }

    fn find<'a>(&'a self, lookup: &'a Lookup) -> Pending<'a> {
        Box::pin(async move {
            let tee = lookup.tee();
            if tee == TeeKind::Nitro {
                return Ok(None);
            }
            let shared = self.root.join(tee.to_string());
            let keyed = Self::key(lookup).map(|k| shared.join(k));
            let folders: FolderPair = (shared, keyed);
            let read = match self.recent_read(&folders) {
                Some(collateral) => Ok(collateral),
                None => {
                    let (shared, keyed) = folders.clone();
                    let read_at = Instant::now();
                    let read =
                        tokio::task::spawn_blocking(move || Self::read(&shared, keyed.as_deref()))
                            .await
                            .map_err(|e| CollateralError::new("directory", e))?;
                    if let (Ok(collateral), Ok(mut recent)) = (&read, self.recent.lock()) {
                        recent.put(folders, (read_at, collateral.clone()));
                    }
                    read
                }
            };
            match read {
                Ok(c) if c.is_empty() => Ok(None),
                Ok(c) => Ok(Some(c)),
                Err(e) => Err(CollateralError::new("directory", e)),
            }
        })
    }
}

/// Collateral items a request may add to the service's own: certificates
/// that endorse one chip and verify to a pinned root, so no older version of
/// them changes a verdict.
fn chip_certificate(name: &str) -> bool {
    ENDORSEMENTS.contains(&name) || name == "cert_chain.pem"
}

/// The names an SEV-SNP endorsement certificate (VCEK or VLEK) goes by.
const ENDORSEMENTS: [&str; 4] = ["vcek.der", "vcek.pem", "vlek.der", "vlek.pem"];

/// Whether `collateral` holds every signed, time-bounded document a TEE's
/// verification needs from the service (TDX: TCB info, QE identity, both
/// CRLs; SNP: AMD's CRL), so later sources need not be asked.
fn complete(tee: TeeKind, collateral: &BTreeMap<String, Vec<u8>>) -> bool {
    match tee {
        TeeKind::Nitro => true,
        TeeKind::Tdx => [
            names::TCB_INFO,
            names::QE_IDENTITY,
            names::PCK_CRL,
            names::ROOT_CA_CRL,
        ]
        .iter()
        .all(|name| collateral.contains_key(*name)),
        TeeKind::Snp => collateral.contains_key("crl.der") || collateral.contains_key("crl.pem"),
    }
}

/// Whether a request's collateral may stand in for a TEE the service has no
/// source for (`--collateral-policy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum CollateralPolicy {
    /// Use the request's collateral for a TEE the service has no source for
    /// (warned at start; credentials say `collateral: agent-supplied`).
    #[default]
    AllowAgentSupplied,
    /// Never: a TEE without a service source cannot attest.
    ServiceOnly,
}

/// Why no collateral could be settled on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ResolveError {
    /// A service source failed and the service's set is incomplete.
    #[error(transparent)]
    Unavailable(#[from] CollateralError),
    /// No service source for this TEE and `--collateral-policy service-only`.
    #[error("the verifier has no collateral source for {0} and accepts none from agents")]
    NoSource(TeeKind),
}

/// Collateral as settled for one verification, and where it came from.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// What verification gets.
    pub collateral: Collateral,
    /// Where its TCB info, QE identity and CRLs came from.
    pub origin: CollateralOrigin,
}

/// Sources in order of preference.
#[derive(Debug, Default)]
pub struct CollateralSources {
    sources: Vec<Box<dyn CollateralSource>>,
    policy: CollateralPolicy,
}

impl CollateralSources {
    /// No sources (collateral must come with the request).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a source after the existing ones.
    pub fn with(mut self, source: impl CollateralSource + 'static) -> Self {
        self.sources.push(Box::new(source));
        self
    }

    /// Sets whether a request's collateral may stand in where the service
    /// has no source.
    pub fn with_policy(mut self, policy: CollateralPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Whether any source is configured for `tee`.
    pub fn serves(&self, tee: TeeKind) -> bool {
        tee == TeeKind::Nitro || self.sources.iter().any(|s| s.serves(tee))
    }

    /// The policy in force.
    pub fn policy(&self) -> CollateralPolicy {
        self.policy
    }

    /// For a TEE no source serves: the request's collateral as sent, unless
    /// `--collateral-policy service-only` forbids it.
    pub fn agent_supplied(
        &self,
        tee: TeeKind,
        from_request: Collateral,
    ) -> Result<Resolved, ResolveError> {
        if tee == TeeKind::Nitro {
            return Ok(Resolved {
                collateral: from_request,
                origin: CollateralOrigin::None,
            });
        }
        match self.policy {
            CollateralPolicy::ServiceOnly => Err(ResolveError::NoSource(tee)),
            CollateralPolicy::AllowAgentSupplied => Ok(Resolved {
                collateral: from_request,
                origin: CollateralOrigin::AgentSupplied,
            }),
        }
    }

    /// The collateral to verify with (see the module's rule). Sources that
    /// serve the TEE are asked in order until the set is complete (the
    /// folder first, so a fetcher is asked only for what it lacks), and
    /// earlier sources win file by file. A source's failure with the set
    /// still incomplete is an error: the request's TCB info, QE identity or
    /// CRLs never fill the gap. An incomplete set without a failure goes to
    /// verification, which rejects it as missing collateral.
    pub async fn resolve(
        &self,
        lookup: &Lookup,
        from_request: Collateral,
    ) -> Result<Resolved, ResolveError> {
        let tee = lookup.tee();
        if tee == TeeKind::Nitro {
            return Ok(Resolved {
                collateral: from_request,
                origin: CollateralOrigin::None,
            });
        }
        let serving: Vec<&dyn CollateralSource> = self
            .sources
            .iter()
            .map(|s| s.as_ref())
            .filter(|s| s.serves(tee))
            .collect();
        if serving.is_empty() {
            return self.agent_supplied(tee, from_request);
        }
        let mut merged: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut failure = None;
        for source in serving {
            if complete(tee, &merged) {
                break;
            }
            match source.find(lookup).await {
                Ok(Some(found)) => {
                    tracing::debug!(source = source.name(), %tee, "collateral found");
                    for (name, bytes) in found.iter() {
                        merged
                            .entry(name.to_string())
                            .or_insert_with(|| bytes.to_vec());
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, source = source.name(), "collateral source failed");
                    failure = Some(e);
                }
            }
        }
        if let Some(e) = failure {
            if !complete(tee, &merged) {
                return Err(ResolveError::Unavailable(e));
            }
        }
        for (name, bytes) in from_request.iter() {
            if chip_certificate(name) {
                merged
                    .entry(name.to_string())
                    .or_insert_with(|| bytes.to_vec());
            }
        }
        Ok(Resolved {
            collateral: Collateral::from_items(merged),
            origin: CollateralOrigin::Service,
        })
    }
}
