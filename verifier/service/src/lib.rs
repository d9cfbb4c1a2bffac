//! The Attest Gate verifier's I/O side: files, the clock, JSON output, and the
//! `verifier` command line. Verification itself lives in `attest-gate-core`.

#![forbid(unsafe_code)]

pub mod challenge;
pub mod clock;
pub mod files;
pub mod wire;
