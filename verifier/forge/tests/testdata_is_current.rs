//! The committed `testdata/` is exactly what the generator produces: the
//! generator is deterministic, and nobody edited a file by hand.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

#[test]
fn committed_testdata_matches_the_generator() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata");
    for (path, bytes) in attest_gate_forge::testdata::files().unwrap() {
        let committed = std::fs::read(dir.join(&path)).unwrap_or_else(|e| {
            panic!("testdata/{path}: {e}; run `cargo run -p attest-gate-forge -- testdata`")
        });
        assert!(
            committed == bytes,
            "testdata/{path} differs from the generator's output; run `cargo run -p attest-gate-forge -- testdata`"
        );
    }
}
