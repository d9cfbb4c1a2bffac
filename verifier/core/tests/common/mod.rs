//! Helpers shared by the core's fixture tests.
#![allow(clippy::unwrap_used, dead_code)]

use std::path::Path;

use attest_gate_core::tdx::import;

/// A TDX collateral folder's items under their canonical names, read as
/// the CLI reads one.
pub(crate) fn tdx_folder(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut items = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        for canonical in import::canonical_names(&name) {
            items.push((canonical.to_string(), std::fs::read(&path).unwrap()));
        }
    }
    items
}
