//! The revocations in force, held in memory and read again only when they
//! change, so no request reads the revocations table.
//!
//! A change made here (a revocation, a lift, an inherited quarantine)
//! invalidates the copy once it is committed. A change made by another
//! replica reaches this one through PostgreSQL `LISTEN/NOTIFY`: every
//! transaction that writes `revocations` also sends a notification on
//! [`REVOCATIONS_CHANNEL`], delivered when it commits. While the listener is not
//! connected (starting, or after losing its connection) nothing is cached:
//! every request reads the table, as if there were no cache; and a
//! connection that delivers nothing is caught by the listener's own
//! heartbeat (a notification to itself every two seconds; seven seconds of
//! silence ends the trust), so a lost notification hides a revocation for
//! seconds at most, never for good. SQLite is one process,
//! so its own invalidations are the whole story.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sqlx::postgres::PgListener;

use crate::revocation::RevocationIndex;
use crate::store::{Store, StoreError, REVOCATIONS_CHANNEL};

/// The in-memory copy and what keeps it current.
#[derive(Debug)]
pub(crate) struct RevocationCache {
    /// Bumped by every invalidation; a copy read under an older value is
    /// not used.
    generation: AtomicU64,
    copy: RwLock<Option<(u64, Arc<RevocationIndex>)>>,
    /// Held while the table is read.
    reading: tokio::sync::Mutex<()>,
    /// Whether invalidations are known to arrive (always for SQLite; for
    /// PostgreSQL while the listener is connected).
    trusted: AtomicBool,
}

impl RevocationCache {
    /// A cache for `store`; for PostgreSQL, its listener starts on the
    /// current runtime and the cache is used once it listens.
    pub(crate) fn start(store: &Store) -> Arc<Self> {
        let cache = Arc::new(Self {
            generation: AtomicU64::new(0),
            copy: RwLock::new(None),
            reading: tokio::sync::Mutex::new(()),
            trusted: AtomicBool::new(matches!(store, Store::Sqlite(_))),
        });
        if let Store::Postgres(pool) = store {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(listen(pool.clone(), Arc::downgrade(&cache)));
            }
        }
        cache
    }

    /// The revocations in force (from memory when current).
    pub(crate) async fn get(&self, store: &Store) -> Result<Arc<RevocationIndex>, StoreError> {
        let generation = self.generation.load(Ordering::Acquire);
        let trusted = self.trusted.load(Ordering::Acquire);
        if let Some(index) = self.current(trusted, generation) {
            return Ok(index);
        }
        // One reader at a time: requests that miss together wait for the
        // first one's copy instead of each reading the whole table.
        let _reading = self.reading.lock().await;
        if let Some(index) = self.current(trusted, generation) {
            return Ok(index);
        }
        let index = RevocationIndex::new(store.revocations_in_force().await?);
        // Read after the revocations: a credential a `jti` revocation names
        // was committed before it, so every key named then is in this set
        // (session revocations are not bounded so: see the index).
        let index = Arc::new(if index.names_credentials() {
            index.with_named_keys(store.keys_named_by_revocations().await?)
        } else {
            index
        });
        tracing::debug!(
            rows = index.rows().len(),
            generation,
            trusted,
            "revocations in force read"
        );
        if trusted {
            // Read after `generation` was: if a change came since, the copy
            // is already stale and the next request reads again.
            *self
                .copy
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some((generation, Arc::clone(&index)));
        }
        Ok(index)
    }

    /// The copy, if it may be used and was read under `generation`.
    fn current(&self, trusted: bool, generation: u64) -> Option<Arc<RevocationIndex>> {
        if !trusted {
            return None;
        }
        let copy = self
            .copy
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        copy.as_ref()
            .filter(|(at, _)| *at == generation)
            .map(|(_, index)| Arc::clone(index))
    }

    /// The revocations changed (call after the change committed).
    pub(crate) fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn set_trusted(&self, trusted: bool) {
        self.trusted.store(trusted, Ordering::Release);
        self.invalidate();
    }
}

/// How often the listener notifies itself.
const HEARTBEAT: Duration = Duration::from_secs(2);
/// Silence after which the listener is not trusted.
const SILENCE: Duration = Duration::from_secs(7);
/// The payload of the listener's own heartbeat (not a change).
const HEARTBEAT_PAYLOAD: &str = "heartbeat";

/// Listens for other replicas' changes until the cache is dropped;
/// reconnects after a lost connection.
async fn listen(pool: sqlx::PgPool, cache: std::sync::Weak<RevocationCache>) {
    const RETRY: Duration = Duration::from_secs(1);
    loop {
        let connected = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(REVOCATIONS_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        let mut listener = match connected {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(error = %e, "revocation listener could not connect; reading revocations per request");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        match cache.upgrade() {
            Some(cache) => cache.set_trusted(true),
            None => return,
        }
        // A connection can look alive and deliver nothing (half-open TCP, a
        // pooler that drops notifications): the listener notifies itself
        // every HEARTBEAT, and silence for SILENCE ends the trust.
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        let mut last_heard = tokio::time::Instant::now();
        loop {
            tokio::select! {
                received = listener.try_recv() => {
                    let Some(cache) = cache.upgrade() else {
                        return;
                    };
                    match received {
                        Ok(Some(n)) if n.payload() == HEARTBEAT_PAYLOAD => {
                            last_heard = tokio::time::Instant::now();
                        }
                        Ok(Some(_)) => {
                            last_heard = tokio::time::Instant::now();
                            cache.invalidate();
                        }
                        // The connection was lost (and notifications with it).
                        Ok(None) | Err(_) => {
                            tracing::warn!("revocation listener lost its connection; reading revocations per request until it is back");
                            cache.set_trusted(false);
                            break;
                        }
                    }
                }
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > SILENCE {
                        tracing::warn!("revocation listener heard nothing, not even its own heartbeat; reading revocations per request until it reconnects");
                        if let Some(cache) = cache.upgrade() {
                            cache.set_trusted(false);
                        }
                        break;
                    }
                    let sent = sqlx::query("SELECT pg_notify($1, $2)")
                        .bind(REVOCATIONS_CHANNEL)
                        .bind(HEARTBEAT_PAYLOAD)
                        .execute(&pool)
                        .await;
                    if let Err(e) = sent {
                        tracing::warn!(error = %e, "revocation listener could not send its heartbeat");
                    }
                }
            }
        }
    }
}
