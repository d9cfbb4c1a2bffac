//! `enclave-agent`: what runs inside an AWS Nitro Enclave, an Intel TDX trust
//! domain or an AMD SEV-SNP VM to obtain key-bound credentials from the
//! Attest Gate verifier.
//!
//! Data flow of one attestation: `model` (SHA-384 of what is served) and
//! `key` (an ephemeral P-256 key, in memory only) → `client` asks the verifier
//! for a nonce → the binding (`attest_gate_core::Binding`) → `backend` asks
//! the hardware (or the simulator) for evidence carrying it → `client` sends
//! evidence, key, model, principal and intent → the verifier's credentials.
//! `enclave-agent run` adds `keeper` (renewal, revocation watch) and
//! `socket` (the token and DPoP proofs for the AI agent process, and
//! delegation to sub-agents), and `workload_api` (the SPIFFE Workload API:
//! the X.509-SVID, its key and bundles, JWT-SVIDs, over gRPC).

// `deny`, not `forbid`: backend/ioctl.rs, the guest-device ioctls, is the one
// module allowed `unsafe`.
#![deny(unsafe_code)]

pub mod backend;
pub mod client;
pub mod keeper;
pub mod key;
pub mod model;
pub mod socket;
pub mod workload_api;
