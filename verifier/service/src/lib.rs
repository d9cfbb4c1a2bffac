//! The Attest Gate verifier's I/O side: the `verifier` command line and the
//! HTTPS service. Verification itself lives in `attest-gate-core` (pure);
//! this crate reads files and the clock, keeps state and speaks HTTP.
//!
//! Data flow of `verifier serve`: `http` (routes) → `service` (challenge
//! freshness, collateral, then `decision`: verification with exactly the
//! configured trust, binding, reference values and the one Cedar scope rule,
//! which alone builds a `Grant`) → `credentials` + `token` + `ca` (what the
//! grant says is signed) → `store` (single use, credentials, audit). `serve`
//! starts it all with the system clock; `secrets` keeps keys at rest.
//!
//! Modules are private: what is public is the list below, so the compiler's
//! `unreachable_pub` lint keeps the surface honest.

#![forbid(unsafe_code)]

mod api;
mod audit_checkpoint;
mod ca;
mod challenge;
mod clock;
mod collateral_source;
mod credentials;
mod decision;
mod error;
mod fetch;
mod files;
mod http;
mod metrics;
mod policy;
mod ratelimit;
mod revocation;
mod revocation_cache;
mod secrets;
mod serve;
mod service;
mod store;
mod token;
mod vault;
mod wire;

pub use api::check_request_body;
pub use api::{Decision, IntentRequest};
pub use attest_gate_protocol::revocation::Mode as RevocationMode;
pub use audit_checkpoint::{
    key_path as audit_checkpoint_key_path, prune_audit_log, verify_audit_log, AuditError,
    CheckpointKey, Pruned,
};
pub use challenge::{issue as issue_nonce, Challenge, NonceKey};
pub use clock::Clock;
pub use collateral_source::{
    CollateralError, CollateralOrigin, CollateralPolicy, CollateralSource, CollateralSources,
    DirectorySource, Lookup, ResolveError, Resolved,
};
pub use decision::{Appraiser, Verification};
pub use error::{error_code_page, ErrorCode, Retry, ServiceCode, ServiceError};
pub use fetch::{
    tls_client, Http, KdsSource, PcsSource, AMD_KDS_URL, INTEL_PCS_URL, MAX_FETCHES_IN_FLIGHT,
};
pub use http::{router, OPENAPI_DOCUMENT};
pub use ratelimit::{Endpoint, ForwardedHeader, Rate, RateLimitConfig};
pub use serve::{open, run, ServeArgs};
pub use service::{Service, ServiceConfig, StartError};
pub use store::{AuditBreak, AuditCheckpoint, AuditQuery, AuditVerified, Store};

/// What the `verifier` command line reads and prints: bounded file reads,
/// the JSON output shapes, and the one wall-clock read of the CLI.
pub mod cli {
    pub use crate::clock::now;
    pub use crate::files::{read_certificates, read_collateral_dir, read_evidence, FileError};
    pub use crate::wire::{failure, rejected, verified, verify_failed};
}
