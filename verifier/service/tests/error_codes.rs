//! `docs/error-codes.md` is generated from the code: this test fails when the
//! page and the codes disagree. `UPDATE_ERROR_CODES=1 cargo test -p
//! attest-gate-verifier --test error_codes` rewrites the page.
#![allow(clippy::unwrap_used, clippy::expect_used)]

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

/// Every test source of the workspace: files under a `tests/` folder, and
/// the `#[cfg(test)]` part of every source file.
fn test_sources() -> Vec<(PathBuf, String)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut found = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().map(Result::unwrap) {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !matches!(name.as_str(), "target" | ".git" | "fuzz" | "node_modules") {
                    stack.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let in_tests_dir = path.components().any(|c| c.as_os_str() == "tests");
            let tested = if in_tests_dir {
                text
            } else {
                match text.find("#[cfg(test)]") {
                    Some(at) => text[at..].to_string(),
                    None => continue,
                }
            };
            found.push((path, tested));
        }
    }
    found
}

/// Whether `source` asserts `code`: its wire string as a literal that is not
/// a JSON key, or its enum variant by path.
fn asserts(source: &str, wire: &str, variant: &str) -> bool {
    let literal = format!("\"{wire}\"");
    let by_literal = source.lines().any(|line| {
        line.match_indices(&literal)
            .any(|(at, _)| !line[at + literal.len()..].trim_start().starts_with(':'))
    });
    let by_variant = ["ServiceCode::", "VerifyCode::", "RejectionCode::", "C::"]
        .iter()
        .any(|prefix| {
            source
                .match_indices(&format!("{prefix}{variant}"))
                .any(|(at, m)| {
                    !source[at + m.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
                })
        });
    by_literal || by_variant
}

/// The variant name of a wire code (`csr_invalid` → `CsrInvalid`).
fn variant_of(wire: &str) -> String {
    wire.split('_')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// A code no test asserts is a refusal nobody has seen happen: every code
/// on the generated page must be asserted by some test, by name.
#[test]
fn every_error_code_is_asserted_by_a_test() {
    let sources = test_sources();
    assert!(
        sources.len() > 20,
        "found only {} test sources",
        sources.len()
    );
    // The forged-evidence catalogue's expected codes, each asserted by
    // `core/tests/forged_evidence.rs` and the CLI and service tests over it.
    let mut catalogued = Vec::new();
    for cases in [
        attest_gate_forge::cases::nitro_cases(),
        attest_gate_forge::cases::snp_cases(),
        attest_gate_forge::cases::tdx_cases(),
    ] {
        catalogued.extend(cases.unwrap().into_iter().map(|case| case.expected));
    }
    let untested: Vec<&str> = attest_gate_verifier::ErrorCode::all()
        .map(|code| code.as_str())
        .filter(|wire| {
            let variant = variant_of(wire);
            !catalogued.contains(wire)
                && !sources
                    .iter()
                    .filter(|(path, _)| !path.ends_with("error_codes.rs"))
                    .any(|(_, text)| asserts(text, wire, &variant))
        })
        .collect();
    assert!(
        untested.is_empty(),
        "no test asserts these codes: {untested:?}"
    );
}
