//! Where the service finds TDX and SNP collateral: behind one trait, the
//! service's own sources first (its collateral directory, keyed by FMSPC and
//! by chip ID + TCB), and the request's collateral only when they have none —
//! so an agent cannot swap in older, still-valid TCB info that predates a TCB
//! recovery. Sources do the I/O; verification stays free of it and checks
//! whatever a source returns (signatures, windows, FMSPC / chip binding), so a
//! source is trusted for availability only, never for correctness.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use attest_gate_core::{snp, tdx, Collateral, TeeKind};

use crate::files::{self, FileError};

/// A source failed (not "has nothing": that is `Ok(None)`).
#[derive(Debug, thiserror::Error)]
#[error("collateral source {source_name}: {reason}")]
pub struct CollateralError {
    /// Which source.
    pub source_name: &'static str,
    /// What went wrong.
    pub reason: String,
}

/// A boxed future (the trait is used as `dyn`).
pub(crate) type Pending<'a> =
    Pin<Box<dyn Future<Output = Result<Option<Collateral>, CollateralError>> + Send + 'a>>;

/// A place collateral can come from.
pub trait CollateralSource: Send + Sync + std::fmt::Debug {
    /// A short name for logs and errors.
    fn name(&self) -> &'static str;

    /// Collateral for this evidence, or `None` if this source has none.
    fn find<'a>(&'a self, tee: TeeKind, evidence: &'a [u8]) -> Pending<'a>;
}

/// A folder with one subfolder per TEE, each laid out like the CLI's
/// `--collateral` folder (the service's files win over a request's):
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
/// Files are read on each request, so an operator can replace them without a
/// restart.
#[derive(Debug, Clone)]
pub struct DirectorySource {
    root: PathBuf,
}

impl DirectorySource {
    /// The source rooted at `root`.
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// The keyed subfolder's name for this evidence, if its key can be read
    /// (unverified: the key only chooses files; verification checks them).
    fn key(tee: TeeKind, evidence: &[u8]) -> Option<String> {
        match tee {
            TeeKind::Nitro => None,
            TeeKind::Tdx => tdx::unverified_pck_lookup(evidence)
                .ok()
                .map(|(fmspc, _)| hex::encode(fmspc)),
            TeeKind::Snp => snp::unverified_vcek_lookup(evidence)
                .ok()
                .map(|l| format!("{}-{:016x}", hex::encode(l.chip_id), l.reported_tcb)),
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

    fn find<'a>(&'a self, tee: TeeKind, evidence: &'a [u8]) -> Pending<'a> {
        Box::pin(async move {
            if tee == TeeKind::Nitro {
                return Ok(None);
            }
            let shared = self.root.join(tee.to_string());
            let keyed = Self::key(tee, evidence).map(|k| shared.join(k));
            let read = tokio::task::spawn_blocking(move || Self::read(&shared, keyed.as_deref()))
                .await
                .map_err(|e| CollateralError {
                    source_name: "directory",
                    reason: e.to_string(),
                })?;
            match read {
                Ok(c) if c.is_empty() => Ok(None),
                Ok(c) => Ok(Some(c)),
                Err(e) => Err(CollateralError {
                    source_name: "directory",
                    reason: e.to_string(),
                }),
            }
        })
    }
}

/// Collateral items a request may add to the service's own: certificates
/// that endorse one chip and verify to a pinned root, so no older version of
/// them changes a verdict.
fn chip_certificate(name: &str) -> bool {
    matches!(
        name,
        "vcek.der" | "vcek.pem" | "vlek.der" | "vlek.pem" | "cert_chain.pem"
    )
}

/// Sources in order of preference.
#[derive(Debug, Default)]
pub struct CollateralSources {
    sources: Vec<Box<dyn CollateralSource>>,
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

    /// Every service source's collateral, merged file by file (earlier
    /// sources win; the folder comes first, fetchers fill what it lacks).
    /// When they supply anything, the request may only add certificates
    /// bound to one chip (VCEK / VLEK, SNP's ASK/ARK chain): never TCB info,
    /// QE identity or a CRL, whose older still-valid versions could roll a
    /// platform back past a TCB recovery. When the service has nothing for
    /// this TEE, the request's collateral is used as sent (verification
    /// still checks every signature and window).
    pub async fn resolve(
        &self,
        tee: TeeKind,
        evidence: &[u8],
        from_request: Collateral,
    ) -> Result<Collateral, CollateralError> {
        if tee == TeeKind::Nitro {
            return Ok(from_request);
        }
        let mut merged: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut failure = None;
        for source in &self.sources {
            match source.find(tee, evidence).await {
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
        if merged.is_empty() {
            return match failure {
                Some(e) if from_request.is_empty() => Err(e),
                _ => Ok(from_request),
            };
        }
        for (name, bytes) in from_request.iter() {
            if chip_certificate(name) {
                merged
                    .entry(name.to_string())
                    .or_insert_with(|| bytes.to_vec());
            }
        }
        Ok(Collateral::from_items(merged))
    }
}
