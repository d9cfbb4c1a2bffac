//! Where the service finds TDX and SNP collateral: behind one trait, tried in
//! order (the request's own collateral first, then the service's collateral
//! directory). Sources do the I/O; verification stays free of it and checks
//! whatever a source returns (signatures, windows, FMSPC / chip binding), so
//! a source is trusted for availability only, never for correctness.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use attest_gate_core::{Collateral, TeeKind};

use crate::files;

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
pub type Pending<'a> =
    Pin<Box<dyn Future<Output = Result<Option<Collateral>, CollateralError>> + Send + 'a>>;

/// A place collateral can come from.
pub trait CollateralSource: Send + Sync + std::fmt::Debug {
    /// A short name for logs and errors.
    fn name(&self) -> &'static str;

    /// Collateral for this evidence, or `None` if this source has none.
    fn find<'a>(&'a self, tee: TeeKind, evidence: &'a [u8]) -> Pending<'a>;
}

/// A folder laid out like the CLI's `--collateral` folder, with one
/// subfolder per TEE (`tdx/`, `snp/`); files are read on each request so
/// an operator can replace them without a restart.
#[derive(Debug, Clone)]
pub struct DirectorySource {
    root: PathBuf,
}

impl DirectorySource {
    /// The source rooted at `root`.
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }
}

impl CollateralSource for DirectorySource {
    fn name(&self) -> &'static str {
        "directory"
    }

    fn find<'a>(&'a self, tee: TeeKind, _evidence: &'a [u8]) -> Pending<'a> {
        Box::pin(async move {
            if tee == TeeKind::Nitro {
                return Ok(None);
            }
            let dir = self.root.join(tee.to_string());
            if !dir.is_dir() {
                return Ok(None);
            }
            let read = tokio::task::spawn_blocking(move || files::read_collateral_dir(&dir))
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

    /// The request's collateral when it sent any, else the first source's
    /// that has some, else none (verification then says what is missing).
    pub async fn resolve(
        &self,
        tee: TeeKind,
        evidence: &[u8],
        from_request: Collateral,
    ) -> Result<Collateral, CollateralError> {
        if !from_request.is_empty() || tee == TeeKind::Nitro {
            return Ok(from_request);
        }
        for source in &self.sources {
            if let Some(found) = source.find(tee, evidence).await? {
                tracing::debug!(source = source.name(), %tee, "collateral found");
                return Ok(found);
            }
        }
        Ok(Collateral::empty())
    }
}
