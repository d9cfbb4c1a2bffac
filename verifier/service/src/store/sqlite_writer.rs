//! The group-commit writer's own SQLite connection, driven on the writer's
//! own thread. Through sqlx, every statement of a batch is a round trip to
//! the connection's worker thread and back (about a dozen thread wake-ups
//! per batch); here the whole batch runs on the thread that holds the
//! connection, with cached prepared statements, and one wake-up brings the
//! batch in. What it writes is [`plan_writes`]'s, as through sqlx: the two
//! differ only in how a statement is bound and run.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params_from_iter, Connection, OpenFlags, ToSql, TransactionBehavior};

use super::batch::{
    claim_nonces, first_claims, plan_writes, Committed, Insert, Value, WriteSet, CHUNK, LOCK_HEAD,
    SET_HEAD,
};
use super::StoreError;

/// Prepared statements kept per connection: one per statement text, and a
/// batch's multi-row inserts differ by their number of rows.
const STATEMENT_CACHE: usize = 256;

impl ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Text(Some(s)) => ValueRef::Text(s.as_bytes()),
            Value::Text(None) => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(*i),
            // As sqlx stores a bool in SQLite, so either reads it back.
            Value::Bool(b) => ValueRef::Integer(i64::from(*b)),
            Value::Bytes(b) => ValueRef::Blob(b),
        }))
    }
}

/// The writer's connection to one SQLite file, opened when first needed
/// and again after any failure.
#[derive(Debug)]
pub(crate) struct SqliteWriter {
    path: PathBuf,
    connection: Option<Connection>,
}

impl SqliteWriter {
    /// A writer for the database at `path` (already created and migrated
    /// by the store's pool).
    pub(crate) fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            connection: None,
        }
    }

    /// The connection with the settings the store's pool gives its own:
    /// every commit synced (`synchronous = FULL` in WAL mode), foreign keys
    /// enforced, a 5 s wait for another writer (a CLI, an admin task); but
    /// a 2 MiB page cache, not the readers' 16 MiB. The writer touches the
    /// last leaves of append-ordered indexes, and SQLite scans the cache's
    /// hash table at every commit: the larger cache cost 5–6% of the
    /// server's CPU per round trip (docs/benchmarks.md), and a store of
    /// 10^6 sessions stays within 10% of an empty one without it.
    fn open(path: &Path) -> Result<Connection, StoreError> {
        let connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        connection.pragma_update(None, "temp_store", "MEMORY")?;
        connection.pragma_update(None, "cache_size", "-2048")?;
        connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(connection)
    }

    /// Lets the connection go (a pause in the writes): the next batch
    /// opens a fresh one.
    pub(crate) fn release(&mut self) {
        self.connection = None;
    }

    /// Writes `sets` in one transaction; what became of each, in order.
    /// After any failure the connection is closed (which ends a
    /// transaction a failed COMMIT left open, and its write lock).
    pub(crate) fn commit_batch(&mut self, sets: &[WriteSet]) -> Result<Vec<Committed>, StoreError> {
        let mut connection = match self.connection.take() {
            Some(connection) => connection,
            None => Self::open(&self.path)?,
        };
        let committed = commit(&mut connection, sets);
        if committed.is_ok() {
            self.connection = Some(connection);
        }
        committed
    }
}

fn commit(connection: &mut Connection, sets: &[WriteSet]) -> Result<Vec<Committed>, StoreError> {
    // IMMEDIATE: the write lock from the start, as the head's update would
    // take it anyway; a batch never has to upgrade a read.
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let head = tx
        .prepare_cached(LOCK_HEAD)?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    let mut inserted = HashSet::new();
    for chunk in first_claims(sets).chunks(CHUNK) {
        let claim = claim_nonces(chunk);
        let mut statement = tx.prepare_cached(&claim.sql(chunk.len(), false))?;
        let ids = statement.query_map(params_from_iter(claim.rows.iter().flatten()), |row| {
            row.get::<_, String>(0)
        })?;
        for id in ids {
            inserted.insert(id?);
        }
    }
    let writes = plan_writes(sets, &inserted, head);
    for insert in &writes.inserts {
        run(&tx, insert)?;
    }
    let (seq, hash) = &writes.head;
    tx.prepare_cached(SET_HEAD)?
        .execute(rusqlite::params![seq, hash])?;
    tx.commit()
        .map_err(|e| StoreError::uncertain(StoreError::Sqlite(e)))?;
    Ok(writes.outcomes)
}

fn run(tx: &rusqlite::Transaction<'_>, insert: &Insert) -> Result<(), StoreError> {
    for chunk in insert.rows.chunks(CHUNK) {
        tx.prepare_cached(&insert.sql(chunk.len(), false))?
            .execute(params_from_iter(chunk.iter().flatten()))?;
    }
    Ok(())
}
