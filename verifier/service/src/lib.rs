//! The Attest Gate verifier's I/O side: the `verifier` command line and the
//! HTTPS service. Verification itself lives in `attest-gate-core` (pure);
//! this crate reads files and the clock, keeps state and speaks HTTP.
//!
//! Data flow of `verifier serve`: `http` (routes) → `service` (the decision:
//! `challenge` freshness, core verification with collateral from
//! `collateral_source`, binding, reference values, `policy`) →
//! `credentials` + `token` + `ca` (what is issued) → `store` (single use,
//! credentials, audit). `serve` starts it all; `secrets` keeps keys at rest.

#![forbid(unsafe_code)]

pub mod api;
pub mod ca;
pub mod challenge;
pub mod clock;
pub mod collateral_source;
pub mod credentials;
pub mod decision;
pub mod error;
pub mod fetch;
pub mod files;
pub mod http;
pub mod metrics;
pub mod policy;
pub mod revocation;
pub mod secrets;
pub mod serve;
pub mod service;
pub mod store;
pub mod token;
pub mod wire;
