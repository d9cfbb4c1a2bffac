//! A bounded, least-recently-used cache whose entries are valid only inside a
//! time window (the validity of the certificates they vouch for). Looking an
//! entry up takes the verification instant, never the clock.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use aws_lc_rs::digest::SHA256;
use lru::LruCache;
use time::OffsetDateTime;

/// Verified results keyed by a hash of exactly what was verified.
#[derive(Debug)]
pub(crate) struct WindowCache<V> {
    entries: Mutex<LruCache<[u8; 32], (OffsetDateTime, OffsetDateTime, V)>>,
}

impl<V: Clone> WindowCache<V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    /// The entry for `key` if `at` lies in its window (inclusive).
    pub(crate) fn get(&self, key: &[u8; 32], at: OffsetDateTime) -> Option<V> {
        let mut entries = self.entries.lock().ok()?;
        let (not_before, not_after, value) = entries.get(key)?;
        (at >= *not_before && at <= *not_after).then(|| value.clone())
    }

    /// Remembers `value` for `key`, valid from `not_before` to `not_after`.
    pub(crate) fn put(
        &self,
        key: [u8; 32],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        value: V,
    ) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.put(key, (not_before, not_after, value));
        }
    }

    /// How many entries it holds (expired ones included).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().map_or(0, |entries| entries.len())
    }

    pub(crate) fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}

/// A cheap cache key for large inputs: the anchors' fingerprints, and each
/// part's length, head and tail (where signatures sit). Two different sets
/// may share it, so a hit counts only if the stored parts equal the given
/// ones byte for byte.
pub(crate) fn fingerprint<'a>(
    anchors: impl IntoIterator<Item = &'a [u8; 32]>,
    parts: &[&[u8]],
) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&SHA256);
    for anchor in anchors {
        ctx.update(anchor);
    }
    for part in parts {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part.get(..64).unwrap_or(part));
        ctx.update(part.get(part.len().saturating_sub(64)..).unwrap_or(part));
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}
