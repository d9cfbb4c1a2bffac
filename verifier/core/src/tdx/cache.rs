//! The TDX verifier's memory: verified PCK chains, verified collateral
//! sets, each kept inside its validity window, and quotes whose signatures
//! were just checked at one instant. One struct so the `Verifier` holds (and
//! clears) them as one; the checks that fill them live in `pck_chain`,
//! `endorsement` and `mod.rs`, which know nothing of this struct.

use std::sync::Arc;

use crate::cache::WindowCache;

use super::endorsement::Endorsements;
use super::pck_chain::{PckCaches, VerifiedPck};

/// Caches of verified PCK chains and verified collateral sets.
#[derive(Debug)]
pub(crate) struct TdxCache {
    pub(crate) pcks: PckCaches,
    pub(crate) endorsements: WindowCache<Arc<Endorsements>>,
    /// Quotes `authenticate_platform` accepted, by the SHA-256 of their
    /// exact bytes, valid only at the instant they were checked at: the
    /// `verify` that follows for the same bytes and instant (a service
    /// authenticates the platform before it fetches collateral) does not
    /// check the same three signatures again.
    pub(crate) authenticated: WindowCache<Arc<VerifiedPck>>,
}

impl Default for TdxCache {
    fn default() -> Self {
        Self {
            pcks: PckCaches::new(256),
            endorsements: WindowCache::new(64),
            authenticated: WindowCache::new(64),
        }
    }
}

impl TdxCache {
    pub(crate) fn clear(&self) {
        self.pcks.clear();
        self.endorsements.clear();
        self.authenticated.clear();
    }
}
