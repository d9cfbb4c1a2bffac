#![no_main]
//! TDX collateral: TCB info and QE identity JSON (signed bodies), CRLs and
//! issuer chains, fed one at a time into an otherwise valid forged set; and
//! dcap-qvl's QuoteCollateralV3 importer.
use attest_gate_core::tdx::{import, names};
use attest_gate_core::{Collateral, TeeKind, TrustAnchors, Verifier};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const QUOTE: &[u8] = include_bytes!("../../testdata/tdx/valid/evidence.bin");
const ROOT: &[u8] = include_bytes!("../../testdata/roots/tdx-test-root.pem");

/// The valid forged set, read once.
fn valid_items() -> &'static Vec<(&'static str, Vec<u8>)> {
    static ITEMS: OnceLock<Vec<(&'static str, Vec<u8>)>> = OnceLock::new();
    ITEMS.get_or_init(|| {
        names::ALL
            .iter()
            .map(|name| {
                let path = format!(
                    "{}/../testdata/tdx/valid/collateral/{name}",
                    env!("CARGO_MANIFEST_DIR")
                );
                (*name, std::fs::read(path).expect("the forged TDX collateral"))
            })
            .collect()
    })
}

fn verifier() -> &'static Verifier {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let root = pem::parse(ROOT).expect("the test root").into_contents();
        Verifier::new(TrustAnchors::test_roots(vec![root]).expect("a test root"))
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = import::from_quote_collateral_v3(data);
    // `[which item][its bytes]`: one item replaced in the valid set.
    let Some((selector, item)) = data.split_first() else {
        return;
    };
    let fuzzed = names::ALL[usize::from(*selector) % names::ALL.len()];
    let items = valid_items().iter().map(|(name, valid)| {
        let bytes = if *name == fuzzed { item.to_vec() } else { valid.clone() };
        (name.to_string(), bytes)
    });
    let at = time::macros::datetime!(2025-01-01 00:00 UTC);
    let _ = verifier().verify(TeeKind::Tdx, QUOTE, &Collateral::from_items(items), at);
});
