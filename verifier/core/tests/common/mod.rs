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

/// A differential check's verdict: accepted (with what must agree), or
/// refused (with why).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Accepted(String),
    Refused(String),
}

/// SplitMix64: a small deterministic generator, so every differential run
/// (and any failure) is reproducible from its seed.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// A byte other than zero: XORed in, it always changes the byte.
    pub(crate) fn flip(&mut self) -> u8 {
        (self.below(255) + 1) as u8
    }
}

/// How many mutations a differential run makes and from which seed:
/// `ATTEST_GATE_DIFFERENTIAL_MUTATIONS` (default `default`, what CI runs)
/// and `ATTEST_GATE_DIFFERENTIAL_SEED`.
pub(crate) fn differential_run(default: usize, default_seed: u64) -> (usize, u64) {
    let mutations = std::env::var("ATTEST_GATE_DIFFERENTIAL_MUTATIONS")
        .ok()
        .map(|n| n.parse().expect("a number of mutations"))
        .unwrap_or(default);
    let seed = std::env::var("ATTEST_GATE_DIFFERENTIAL_SEED")
        .ok()
        .map(|n| n.parse().expect("a seed"))
        .unwrap_or(default_seed);
    (mutations, seed)
}

/// Fails with the first unexplained disagreements, after printing the tally
/// of every class.
pub(crate) fn assert_all_explained(
    what: &str,
    mutations: usize,
    seed: u64,
    tally: &std::collections::BTreeMap<&str, usize>,
    unexplained: &[String],
) {
    eprintln!("{what} differential, {mutations} mutations (seed {seed}): {tally:#?}");
    assert!(
        unexplained.is_empty(),
        "{} unexplained disagreements, e.g.:\n{}",
        unexplained.len(),
        unexplained
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
