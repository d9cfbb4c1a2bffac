//! Writes the generated test data into a folder (the repository's `testdata/`).
//!
//! Usage: `cargo run -p attest-gate-forge -- <testdata-dir>`

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .ok_or("usage: forge-testdata <testdata-dir>")?;
    for (path, bytes) in attest_gate_forge::testdata::files()? {
        let target = dir.join(&path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, bytes)?;
        println!("wrote {}", target.display());
    }
    Ok(())
}
