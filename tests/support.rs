//! Shared helpers for the end-to-end tests: where the shared fixtures and the
//! built binaries are.

use std::path::PathBuf;

/// The recorded-evidence fixtures: `$ATTEST_GATE_FIXTURES`, else
/// `../shared/fixtures` beside the checkout. `None` (and a SKIPPED line) when absent.
pub fn fixtures_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("ATTEST_GATE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/fixtures"));
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
