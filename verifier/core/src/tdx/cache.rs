//! The TDX verifier's memory: verified PCK chains and verified collateral
//! sets, each kept inside its validity window. One struct so the
//! `Verifier` holds (and clears) them as one; the checks that fill them
//! live in `pck_chain`, `endorsement` and `mod.rs`, which know nothing of
//! this struct.

use std::sync::Arc;

use crate::cache::WindowCache;

use super::endorsement::Endorsements;
use super::pck_chain::PckCaches;

/// Caches of verified PCK chains and verified collateral sets.
#[derive(Debug)]
pub(crate) struct TdxCache {
    pub(crate) pcks: PckCaches,
    pub(crate) endorsements: WindowCache<Arc<Endorsements>>,
}

impl Default for TdxCache {
    fn default() -> Self {
        Self {
            pcks: PckCaches::new(256),
            endorsements: WindowCache::new(64),
        }
    }
}

impl TdxCache {
    pub(crate) fn clear(&self) {
        self.pcks.clear();
        self.endorsements.clear();
    }
}
