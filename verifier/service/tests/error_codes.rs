//! `docs/error-codes.md` is generated from the code: this test fails when the
//! page and the codes disagree. `UPDATE_ERROR_CODES=1 cargo test -p
//! attest-gate-verifier --test error_codes` rewrites the page.

use std::path::PathBuf;

use attest_gate_verifier::error_code_page;

fn page_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/error-codes.md")
}

#[test]
fn error_code_page_matches_the_code() {
    let generated = error_code_page();
    let path = page_path();
    if std::env::var_os("UPDATE_ERROR_CODES").is_some() {
        std::fs::write(&path, &generated).expect("write docs/error-codes.md");
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "docs/error-codes.md is stale: run `UPDATE_ERROR_CODES=1 cargo test -p attest-gate-verifier --test error_codes`"
    );
}
