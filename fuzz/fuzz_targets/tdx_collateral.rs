#![no_main]
//! TDX collateral: TCB info and QE identity JSON (signed bodies), CRLs and
//! issuer chains, fed one at a time into an otherwise valid forged set; and
//! dcap-qvl's QuoteCollateralV3 importer.
use attest_gate_core::tdx::{import, names};
use attest_gate_core::{Collateral, TeeKind, TrustAnchors, Verifier};
use libfuzzer_sys::fuzz_target;

const QUOTE: &[u8] = include_bytes!("../../testdata/tdx/valid/evidence.bin");
const ROOT: &[u8] = include_bytes!("../../testdata/roots/tdx-test-root.pem");

fn valid_item(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../testdata/tdx/valid/collateral/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap_or_default()
}

fuzz_target!(|data: &[u8]| {
    let _ = import::from_quote_collateral_v3(data);
    let Some((selector, item)) = data.split_first() else {
        return;
    };
    let fuzzed = names::ALL[usize::from(*selector) % names::ALL.len()];
    let items = names::ALL.iter().map(|name| {
        let bytes = if *name == fuzzed { item.to_vec() } else { valid_item(name) };
        (name.to_string(), bytes)
    });
    let root = pem::parse(ROOT).map(pem::Pem::into_contents).unwrap_or_default();
    let Ok(anchors) = TrustAnchors::test_roots(vec![root]) else {
        return;
    };
    let at = time::macros::datetime!(2025-01-01 00:00 UTC);
    let _ = Verifier::new(anchors).verify(TeeKind::Tdx, QUOTE, &Collateral::from_items(items), at);
});
