//! Helpers shared by the service's integration tests.

use std::path::{Path, PathBuf};

/// The recorded-evidence fixtures: `$ATTEST_GATE_FIXTURES`, else
/// `../shared/fixtures` beside the checkout. `None` (and a SKIPPED line) when absent.
pub(crate) fn fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("ATTEST_GATE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures"));
    if dir.join("manifest.json").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: no fixtures at {} (set ATTEST_GATE_FIXTURES)",
            dir.display()
        );
        None
    }
}
