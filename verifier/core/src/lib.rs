//! Attest Gate's verification core: sans-I/O, clock-free verification of TEE
//! evidence and appraisal of the resulting claims.
//!
//! Data flow: bytes → [`decode_text_encoding`] / [`resolve_tee`] →
//! [`Verifier::verify`] (per-TEE parsing, signature and chain checks to pinned
//! roots) → [`VerifiedClaims`] → [`appraise`] → [`Appraisal`].
//!
//! Invariants (see ARCHITECTURE.md): no I/O, no clock reads (the caller passes
//! the instant), no panics on any input, authenticity separate from policy.

#![forbid(unsafe_code)]

mod appraisal;
mod authenticated;
mod binding;
mod bundle;
mod cache;
mod chain;
mod claims;
mod code;
mod collateral;
mod crl;
mod error;
mod evidence;
mod jwk;
pub mod nitro;
mod reference;
pub mod snp;
pub mod tdx;
mod trust;
mod verifier;

pub use appraisal::{appraise, Appraisal, AppraisalPolicy};
pub use binding::{Binding, ModelDigest, BINDING_DOMAIN, BINDING_DOMAIN_V2, MAX_NONCE_LEN};
pub use bundle::{BundleError, EvidenceBundle, BUNDLE_FORMAT, BUNDLE_VERSION};
pub use claims::{
    BoundData, CertificateSummary, Measurement, NamedMeasurement, PlatformClaims, TcbStatus,
    TeeKind, TrustKind, UnknownTcbStatus, UnknownTee, VerifiedClaims,
};
pub use code::{RejectionCode, VerifyCode};
pub use collateral::Collateral;
pub use error::{Rejection, VerifyError};
pub use evidence::{decode_text_encoding, detect_tee, resolve_tee, MAX_EVIDENCE_FILE_LEN};
pub use jwk::{AgentKey, JwkError};
pub use reference::{
    is_register_length, verified_registers, Grant, ReferenceError, ReferenceValues, SnpBounds,
    Workload, MAX_DELEGATION_DEPTH, SCHEMA_VERSION,
};
pub use trust::{TrustAnchors, TrustError};
pub use verifier::{AuthenticatedQuote, Verifier};
