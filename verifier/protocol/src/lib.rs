//! Attest Gate's wire protocol, shared by the verifier (which issues and
//! judges), relying parties (which accept) and the in-enclave agent (which
//! proves possession), so that each rule exists once:
//!
//! - [`claims`]: the access token's claims, typed both ways;
//! - [`jws`]: compact JWS splitting and checking;
//! - [`dpop`]: DPoP proofs (RFC 9449), made and verified, and a replay cache;
//! - [`jwe`]: compact JWE (`ECDH-ES+A256KW` / `A256GCM`), how attested
//!   secrets are released to the agent's bound encryption key;
//! - [`revocation`]: what a revocation names, its modes, and the one rule
//!   that decides how a credential stands.
//!
//! Sans-I/O and clock-free: `now` is always an argument.

pub mod claims;
pub mod dpop;
pub mod jwe;
pub mod jws;
pub mod revocation;

pub use claims::{
    AccessClaims, Actor, CollateralOrigin, Confirmation, Ear, EarAppraisal, Intent, Provenance,
    Session,
};
pub use revocation::{Kind, Mode, Standing};
