//! The service's state that must survive restarts and be shared by replicas:
//! consumed nonces, issued credentials, revocations (`lifecycle`) and the
//! hash-chained audit log (`audit`), sealed secrets and sessions'
//! encryption keys (`secrets`). SQLite (embedded, the default) or
//! PostgreSQL (multi-replica), one schema and one set of migrations
//! (`migrations/`, portable SQL) for both.

pub use audit::{AuditBreak, AuditCheckpoint, AuditQuery, AuditVerified};
pub(crate) use audit::{AuditEvent, AuditRecord};
pub(crate) use lifecycle::{NewSession, SessionEvidence};
pub(crate) use secrets::SecretRow;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};
use std::str::FromStr;

/// The PostgreSQL notification channel on which every transaction that
/// writes `revocations` tells the replicas' caches (delivered on commit).
pub(crate) const REVOCATIONS_CHANNEL: &str = "attest_gate_revocations";
const NOTIFY_REVOCATIONS: &str = "SELECT pg_notify($1, '')";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A storage failure (the database is unreachable, or refused a statement).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no supported database.
    #[error("unsupported database URL (use sqlite:PATH or postgres://...)")]
    UnsupportedUrl,
    /// The database refused or failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The SQLite writer's own connection refused or failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Migrating the schema failed.
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A stored row holds what no code of this build wrote.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// `COMMIT` itself failed: the batch may or may not have been written
    /// (a connection lost mid-commit), so it is not retried.
    #[error("committing failed, outcome unknown: {0}")]
    CommitUncertain(Box<StoreError>),
    /// The batch this request was in failed (the cause is in the log).
    #[error("the batch this write was in failed: {reason}")]
    BatchFailed {
        /// The cause, in words.
        reason: String,
        /// Whether the cause was the database being unavailable
        /// ([`StoreError::is_unavailable`]).
        unavailable: bool,
    },
    /// The group-commit writer is not running (no runtime, or shutting down).
    #[error("the store's writer is not running")]
    WriterStopped,
}

impl StoreError {
    /// A COMMIT that failed with `e`: whether it took effect is unknown.
    pub(crate) fn uncertain(e: StoreError) -> Self {
        Self::CommitUncertain(Box::new(e))
    }

    /// Whether the database, not the request or this build, is the trouble:
    /// unreachable, its connection cut (an operator's `pg_terminate_backend`,
    /// a restart), out of space, or busy past the pool's wait. Such a
    /// failure is 503 `storage_unavailable`: trying again later can succeed.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Database(e) => sqlx_unavailable(e),
            Self::Sqlite(e) => sqlite_unavailable(e),
            Self::CommitUncertain(e) => e.is_unavailable(),
            Self::BatchFailed { unavailable, .. } => *unavailable,
            Self::WriterStopped => true,
            Self::UnsupportedUrl | Self::Migration(_) | Self::Corrupt(_) => false,
        }
    }
}

/// SQLite primary result codes (the low byte of an extended one) that say
/// the database, not the request, is the trouble: 5 BUSY, 6 LOCKED,
/// 10 IOERR, 13 FULL, 14 CANTOPEN.
fn sqlite_code_unavailable(code: i32) -> bool {
    matches!(code & 0xff, 5 | 6 | 10 | 13 | 14)
}

/// [`StoreError::is_unavailable`] for the SQLite writer's errors.
fn sqlite_unavailable(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(failure, _)
        if sqlite_code_unavailable(failure.extended_code))
}

/// [`StoreError::is_unavailable`] for one sqlx error.
fn sqlx_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            if db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some()
            {
                // SQLSTATE classes 08 (connection exception), 53
                // (insufficient resources: disk full, out of memory, too
                // many connections) and 57P (operator intervention:
                // terminated, shutting down, cannot connect now).
                code.starts_with("08") || code.starts_with("53") || code.starts_with("57P")
            } else {
                code.parse::<i32>().is_ok_and(sqlite_code_unavailable)
            }
        }
        _ => false,
    }
}

/// Runs the same statement on whichever pool `$store` holds: sqlx's drivers
/// are distinct types, so each arm is compiled for its own.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            Store::Sqlite($pool) => $body,
            Store::Postgres($pool) => $body,
        }
    };
}

mod audit;
mod batch;
mod lifecycle;
mod secrets;
mod sqlite_writer;
mod writer;

pub(crate) use batch::{Committed, Consume, Row, WriteSet};
pub(crate) use writer::Writer;

/// The database behind the service.
#[derive(Debug, Clone)]
pub enum Store {
    /// Embedded SQLite (one process).
    Sqlite(SqlitePool),
    /// PostgreSQL (any number of replicas).
    Postgres(PgPool),
}

/// One issued credential, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CredentialRecord {
    /// The token's `jti`.
    pub jti: String,
    /// The SPIFFE ID it names.
    pub subject: String,
    /// The session it belongs to.
    pub session_id: String,
    /// The credential it was delegated from, if any.
    pub parent_jti: Option<String>,
    /// The workload (measurements file) name.
    pub workload: String,
    /// The agent key's thumbprint.
    pub jkt: String,
    /// Granted scopes, space-separated.
    pub scope: String,
    /// The audience.
    pub audience: String,
    /// Issued at, Unix seconds.
    pub issued_at: i64,
    /// Expires at, Unix seconds.
    pub expires_at: i64,
    /// Whether test roots anchored the evidence.
    pub test_root: bool,
    /// The model digest it was issued on, hex.
    pub model_digest: String,
    /// The measured register values, hex, space-separated.
    pub measurements: String,
    /// Delegation hops from the attested credential (0 for it).
    pub depth: i32,
}

impl Store {
    /// Connects to `url` (`sqlite:PATH` or `postgres://...`) and migrates it.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let store = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // Every commit reaches the disk before it is answered: the
                // group commit amortises the fsync, never weakens it.
                .synchronous(SqliteSynchronous::Full)
                // Statement journals (a multi-row insert that may conflict)
                // in memory rather than in temporary files.
                .pragma("temp_store", "MEMORY")
                // The hot indexes stay in memory: 16 MiB per connection.
                .pragma("cache_size", "-16384")
                .busy_timeout(std::time::Duration::from_secs(5));
            Self::Sqlite(
                SqlitePoolOptions::new()
                    // One of them is held by the group-commit writer.
                    .max_connections(5)
                    .connect_with(options)
                    .await?,
            )
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)?;
            Self::Postgres(
                PgPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(std::time::Duration::from_secs(5))
                    .connect_with(options)
                    .await?,
            )
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        on_pool!(&store, pool => MIGRATOR.run(pool).await?);
        Ok(store)
    }

    /// Whether this is PostgreSQL (replicas: changes are announced).
    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }

    /// Which database this is, for the log (never the URL: it may hold a password).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    /// Records `nonce_id` as used until `expires_at`. True if this call is the
    /// first use; false if it was already used (by any replica).
    pub async fn consume_nonce(&self, nonce_id: &str, expires_at: i64) -> Result<bool, StoreError> {
        const SQL: &str = "INSERT INTO consumed_nonces (nonce_id, expires_at) VALUES ($1, $2) \
                           ON CONFLICT (nonce_id) DO NOTHING";
        let affected = on_pool!(self, pool => sqlx::query(SQL)
            .bind(nonce_id)
            .bind(expires_at)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(affected == 1)
    }

    /// Rows per table, for the metrics. Counting scans each table (a few
    /// milliseconds per million rows), so the pruner does it once a minute,
    /// never a request.
    pub async fn table_rows(&self) -> Result<Vec<(&'static str, i64)>, StoreError> {
        const TABLES: [(&str, &str); 8] = [
            ("consumed_nonces", "SELECT COUNT(*) FROM consumed_nonces"),
            ("credentials", "SELECT COUNT(*) FROM credentials"),
            ("session_evidence", "SELECT COUNT(*) FROM session_evidence"),
            ("collateral_files", "SELECT COUNT(*) FROM collateral_files"),
            (
                "session_encryption_keys",
                "SELECT COUNT(*) FROM session_encryption_keys",
            ),
            ("revocations", "SELECT COUNT(*) FROM revocations"),
            ("audit_events", "SELECT COUNT(*) FROM audit_events"),
            ("secrets", "SELECT COUNT(*) FROM secrets"),
        ];
        let mut counts = Vec::with_capacity(TABLES.len());
        for (table, sql) in TABLES {
            let (n,): (i64,) = on_pool!(self, pool => sqlx::query_as(sql).fetch_one(pool).await?);
            counts.push((table, n));
        }
        Ok(counts)
    }

    /// Forgets nonces that expired before `horizon` (Unix seconds).
    pub async fn prune_nonces(&self, horizon: i64) -> Result<u64, StoreError> {
        const SQL: &str = "DELETE FROM consumed_nonces WHERE expires_at < $1";
        Ok(on_pool!(self, pool => sqlx::query(SQL)
            .bind(horizon)
            .execute(pool)
            .await?
            .rows_affected()))
    }
}

/// A store in a SQLite file of its own (`s.db` in a fresh directory, kept
/// as long as the directory is), and its pool: for the store's own tests.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) async fn sqlite_store_on_disk() -> (tempfile::TempDir, Store, SqlitePool) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
    let store = Store::open(&url).await.unwrap();
    let Store::Sqlite(pool) = store.clone() else {
        panic!("not SQLite")
    };
    (dir, store, pool)
}
