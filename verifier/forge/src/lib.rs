//! Deterministic test PKI and evidence forger for Attest Gate.
//!
//! Everything here is for tests and simulation: the roots it makes are test
//! roots, and a verifier accepts what it forges only when explicitly told to
//! trust them. The same inputs always produce the same bytes.

#![forbid(unsafe_code)]

pub mod amd;
pub mod cases;
pub mod intel;
pub mod keys;
pub mod live;
pub mod nitro;
pub mod pki;
pub mod snp;
pub mod tdx;
pub mod template;
pub mod testdata;
