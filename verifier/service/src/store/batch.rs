//! Many requests' writes in one transaction (group commit). Each request
//! brings a [`WriteSet`]: the nonce it consumes, the rows its decision
//! creates, and its audit record. One transaction takes a batch of them:
//! it locks the audit head once, consumes the batch's nonces in one
//! statement, inserts every row, extends the audit chain by the whole
//! batch, moves the head once, and commits — so a commit (and its fsync)
//! and the head's lock are paid per batch, not per request, while each
//! request's rows are still committed with its audit record and its nonce,
//! or not at all.

use std::collections::{BTreeMap, HashSet};

use super::audit::{record_hash, COLUMNS as AUDIT_COLUMNS};
use super::lifecycle::{content_address, NewSession};
use super::{AuditEvent, CredentialRecord, Store, StoreError};
use crate::revocation::Revocation;

/// Rows per multi-row `INSERT` (well under SQLite's and PostgreSQL's
/// limits on bound parameters: 18 columns × 100).
const CHUNK: usize = 100;

/// A collateral file's stored expiry runs this long past the session that
/// wrote it, and is moved forward only when a session would outlive it by
/// then: at most one update an hour per file, however many sessions name it.
const FILE_EXPIRY_SLACK: i64 = 3600;

/// A collateral file as stored: content address, bytes, expiry.
type StoredFile<'a> = (String, &'a [u8], i64);

/// How a session's row stores it: its evidence up to the shared tail, the
/// tail's content address (a TDX quote's PCK chain, stored once per
/// platform), and its `collateral_refs` (file name → content address, JSON).
struct StoredSession<'a> {
    head: &'a [u8],
    tail: Option<String>,
    refs: String,
}

/// What `sessions` store, each file hashed once: every session's row
/// parts, and the distinct files (collateral and evidence tails) with the
/// expiry to store (the latest session's, plus the slack).
fn address_sessions<'a>(
    sessions: &[&'a NewSession],
) -> (Vec<StoredSession<'a>>, Vec<StoredFile<'a>>) {
    let mut files: BTreeMap<String, (&'a [u8], i64)> = BTreeMap::new();
    let mut store = |bytes: &'a [u8], expires_at: i64| {
        let hash = content_address(bytes);
        let entry = files.entry(hash.clone()).or_insert((bytes, expires_at));
        entry.1 = entry.1.max(expires_at);
        hash
    };
    let rows = sessions
        .iter()
        .map(|session| {
            let expires_at = session.expires_at.saturating_add(FILE_EXPIRY_SLACK);
            let named: BTreeMap<&str, String> = session
                .collateral
                .iter()
                .map(|(name, bytes)| (name.as_str(), store(bytes, expires_at)))
                .collect();
            let split = session
                .shared_tail_at
                .and_then(|at| session.evidence.split_at_checked(at));
            let (head, tail) = match split {
                Some((head, tail)) => (head, Some(store(tail, expires_at))),
                None => (session.evidence.as_slice(), None),
            };
            StoredSession {
                head,
                tail,
                refs: serde_json::to_string(&named).unwrap_or_default(),
            }
        })
        .collect();
    let files = files
        .into_iter()
        .map(|(hash, (bytes, expires_at))| (hash, bytes, expires_at))
        .collect();
    (rows, files)
}

/// What one request writes.
#[derive(Debug, Clone)]
pub(crate) struct WriteSet {
    /// A nonce (attestation challenge) or proof `jti` to consume, and what
    /// to record if it was already used.
    pub consume: Option<Consume>,
    /// The decision's rows.
    pub rows: Vec<Row>,
    /// The decision's audit record.
    pub audit: AuditEvent,
}

/// A single-use value a decision spends. If it was already used (by any
/// request, on any replica, or earlier in the same batch), none of the
/// decision's rows is written and `refusal` is recorded in place of its
/// audit record: a replayed decision can never be logged as allowed.
#[derive(Debug, Clone)]
pub(crate) struct Consume {
    /// Its ID in `consumed_nonces`.
    pub id: String,
    /// Until when it is remembered, Unix seconds.
    pub until: i64,
    /// The record of the refusal when it was already used.
    pub refusal: AuditEvent,
}

impl WriteSet {
    /// Only an audit record.
    pub(crate) fn audit(event: AuditEvent) -> Self {
        Self {
            consume: None,
            rows: Vec::new(),
            audit: event,
        }
    }
}

/// A row a decision creates.
#[derive(Debug, Clone)]
pub(crate) enum Row {
    /// An issued credential.
    Credential(CredentialRecord),
    /// The evidence a session was issued on.
    Session(NewSession),
    /// The encryption key a session bound: session, JWK, expiry.
    SessionKey(String, String, i64),
    /// A revocation or quarantine (an inherited quarantine).
    Revocation(Revocation),
}

/// What became of one request's writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Committed {
    /// Everything was written; its audit record is at this sequence number.
    Written(i64),
    /// Its nonce was already used: only the refusal was recorded.
    Replayed(i64),
}

/// The batch as it will be written: which sets consumed their nonce.
struct Plan<'a> {
    sets: &'a [WriteSet],
    replayed: Vec<bool>,
}

impl Plan<'_> {
    fn written(&self) -> impl Iterator<Item = &WriteSet> {
        self.sets
            .iter()
            .zip(&self.replayed)
            .filter(|(_, replayed)| !**replayed)
            .map(|(set, _)| set)
    }

    fn rows(&self) -> impl Iterator<Item = &Row> {
        self.written().flat_map(|set| &set.rows)
    }

    fn events(&self) -> impl Iterator<Item = &AuditEvent> {
        self.sets
            .iter()
            .zip(&self.replayed)
            .map(|(set, replayed)| match (&set.consume, replayed) {
                (Some(consume), true) => &consume.refusal,
                _ => &set.audit,
            })
    }
}

/// Nonces inserted by this batch: those not yet consumed; within the batch
/// only the first request naming a nonce may have it.
fn first_claims(sets: &[WriteSet]) -> Vec<(usize, &str, i64)> {
    let mut seen = HashSet::new();
    sets.iter()
        .enumerate()
        .filter_map(|(i, set)| set.consume.as_ref().map(|c| (i, c.id.as_str(), c.until)))
        .filter(|(_, id, _)| seen.insert(*id))
        .collect()
}

/// Runs the same statements on whichever connection a writer holds.
macro_rules! match_connection {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            WriterConnection::Sqlite($c) => $body,
            WriterConnection::Postgres($c) => $body,
        }
    };
}

/// Binds every column of a record to a multi-row `INSERT`, for whichever
/// database the builder is for.
macro_rules! insert_rows {
    ($tx:expr, $table:literal, $columns:expr, $rows:expr, |$b:ident, $r:ident| $bind:block) => {{
        let rows: Vec<_> = $rows.collect();
        for chunk in rows.chunks(CHUNK) {
            let mut q = sqlx::QueryBuilder::new(format!("INSERT INTO {} ({}) ", $table, $columns));
            q.push_values(chunk, |mut $b, $r| $bind);
            q.build().execute(&mut *$tx).await?;
        }
    }};
}

/// A connection a writer keeps between batches: its page cache stays warm
/// and no batch waits for the pool.
#[derive(Debug)]
pub(crate) enum WriterConnection {
    Sqlite(sqlx::pool::PoolConnection<sqlx::Sqlite>),
    Postgres(sqlx::pool::PoolConnection<sqlx::Postgres>),
}

impl Store {
    async fn writer_connection(&self) -> Result<WriterConnection, StoreError> {
        Ok(match self {
            Store::Sqlite(pool) => WriterConnection::Sqlite(pool.acquire().await?),
            Store::Postgres(pool) => WriterConnection::Postgres(pool.acquire().await?),
        })
    }

    /// Writes `sets` in one transaction; what became of each, in order.
    /// Any failure rolls the whole batch back (the caller may retry its
    /// sets one by one, so one bad set does not fail the others).
    pub(crate) async fn commit_batch(
        &self,
        sets: &[WriteSet],
    ) -> Result<Vec<Committed>, StoreError> {
        self.commit_batch_on(&mut None, sets).await
    }

    /// [`Store::commit_batch`] on `held`, the writer's connection (taken
    /// from the pool when there is none). After a failure the connection
    /// is let go: the next batch starts on a fresh one.
    pub(crate) async fn commit_batch_on(
        &self,
        held: &mut Option<WriterConnection>,
        sets: &[WriteSet],
    ) -> Result<Vec<Committed>, StoreError> {
        let mut conn = match held.take() {
            Some(conn) => conn,
            None => self.writer_connection().await?,
        };
        let committed = self.commit_batch_with(&mut conn, sets).await;
        if committed.is_ok() {
            *held = Some(conn);
        }
        committed
    }

    async fn commit_batch_with(
        &self,
        conn: &mut WriterConnection,
        sets: &[WriteSet],
    ) -> Result<Vec<Committed>, StoreError> {
        const LOCK_HEAD: &str = "UPDATE audit_head SET seq = seq WHERE id = 1 RETURNING seq, hash";
        const SET_HEAD: &str = "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1";
        let claims = first_claims(sets);
        match_connection!(conn, conn => {
            let mut tx = sqlx::Connection::begin(&mut **conn).await?;
            // The head first: concurrent batches (any replica) queue here
            // rather than fork the chain.
            let (mut seq, mut prev): (i64, String) =
                sqlx::query_as(LOCK_HEAD).fetch_one(&mut *tx).await?;

            let mut inserted = HashSet::new();
            for chunk in claims.chunks(CHUNK) {
                let mut q = sqlx::QueryBuilder::new("INSERT INTO consumed_nonces (nonce_id, expires_at) ");
                q.push_values(chunk, |mut b, (_, id, exp)| {
                    b.push_bind(id.to_string()).push_bind(*exp);
                });
                q.push(" ON CONFLICT (nonce_id) DO NOTHING RETURNING nonce_id");
                let ids: Vec<(String,)> = q.build_query_as().fetch_all(&mut *tx).await?;
                inserted.extend(ids.into_iter().map(|(id,)| id));
            }
            let claimed: BTreeMap<usize, bool> = claims
                .iter()
                .map(|(i, id, _)| (*i, inserted.contains(*id)))
                .collect();
            let replayed = sets
                .iter()
                .enumerate()
                .map(|(i, set)| set.consume.is_some() && !claimed.get(&i).copied().unwrap_or(false))
                .collect();
            let plan = Plan { sets, replayed };

            let credentials: Vec<&CredentialRecord> = plan
                .rows()
                .filter_map(|r| match r { Row::Credential(c) => Some(c), _ => None })
                .collect();
            let sets: BTreeMap<String, &str> = credentials
                .iter()
                .map(|c| (content_address(c.measurements.as_bytes()), c.measurements.as_str()))
                .collect();
            let sets: Vec<(String, &str)> = sets.into_iter().collect();
            for chunk in sets.chunks(CHUNK) {
                let mut q = sqlx::QueryBuilder::new("INSERT INTO register_sets (sha256, registers) ");
                q.push_values(chunk, |mut b, (hash, registers)| {
                    b.push_bind(hash.clone()).push_bind(registers.to_string());
                });
                q.push(" ON CONFLICT (sha256) DO NOTHING");
                q.build().execute(&mut *tx).await?;
            }
            insert_rows!(tx, "credentials", super::lifecycle::CREDENTIAL_INSERT_COLUMNS,
                credentials.iter(),
                |b, c| {
                    b.push_bind(c.jti.clone()).push_bind(c.subject.clone())
                        .push_bind(c.session_id.clone()).push_bind(c.parent_jti.clone())
                        .push_bind(c.workload.clone()).push_bind(c.jkt.clone())
                        .push_bind(c.scope.clone()).push_bind(c.audience.clone())
                        .push_bind(c.issued_at).push_bind(c.expires_at)
                        .push_bind(c.test_root).push_bind(c.model_digest.clone())
                        .push_bind(String::new()).push_bind(c.depth)
                        .push_bind(content_address(c.measurements.as_bytes()));
                });
            let sessions: Vec<&NewSession> = plan
                .rows()
                .filter_map(|r| match r { Row::Session(s) => Some(s), _ => None })
                .collect();
            let (stored, files) = address_sessions(&sessions);
            for chunk in files.chunks(CHUNK) {
                let mut q = sqlx::QueryBuilder::new("INSERT INTO collateral_files (sha256, bytes, expires_at) ");
                q.push_values(chunk, |mut b, (hash, bytes, expires_at)| {
                    b.push_bind(hash.clone()).push_bind(bytes.to_vec()).push_bind(*expires_at);
                });
                q.push(" ON CONFLICT (sha256) DO UPDATE SET expires_at = excluded.expires_at \
                        WHERE collateral_files.expires_at < excluded.expires_at - ");
                q.push(FILE_EXPIRY_SLACK.to_string());
                q.build().execute(&mut *tx).await?;
            }
            insert_rows!(tx, "session_evidence", super::lifecycle::SESSION_INSERT_COLUMNS,
                sessions.iter().zip(&stored),
                |b, row| {
                    let (s, stored) = row;
                    b.push_bind(s.session_id.clone()).push_bind(s.tee.clone())
                        .push_bind(String::new()).push_bind(String::new())
                        .push_bind(stored.head.to_vec()).push_bind(stored.refs.clone())
                        .push_bind(stored.tail.clone())
                        .push_bind(s.model_digest.clone()).push_bind(s.expires_at)
                        .push_bind(s.principal.clone()).push_bind(s.task_id.clone())
                        .push_bind(s.scopes.clone()).push_bind(s.audience.clone());
                });
            insert_rows!(tx, "session_encryption_keys", "session_id, jwk, expires_at",
                plan.rows().filter_map(|r| match r { Row::SessionKey(s, k, e) => Some((s, k, e)), _ => None }),
                |b, row| {
                    b.push_bind(row.0.clone()).push_bind(row.1.clone()).push_bind(*row.2);
                });
            insert_rows!(tx, "revocations", super::lifecycle::REVOCATION_COLUMNS,
                plan.rows().filter_map(|r| match r { Row::Revocation(v) => Some(v), _ => None }),
                |b, r| {
                    b.push_bind(r.id.clone()).push_bind(r.kind.as_str())
                        .push_bind(r.target.clone()).push_bind(r.mode.as_str())
                        .push_bind(r.reason.clone()).push_bind(r.cascade_from.clone())
                        .push_bind(r.revoked_at).push_bind(r.updated_at).push_bind(r.lifted);
                });

            let mut chained = Vec::with_capacity(sets.len());
            for event in plan.events() {
                seq += 1;
                let hash = record_hash(seq, event, &prev);
                chained.push((seq, event, prev, hash.clone()));
                prev = hash;
            }
            insert_rows!(tx, "audit_events", AUDIT_COLUMNS, chained.iter(),
                |b, r| {
                    let (seq, e, prev_hash, hash) = r;
                    b.push_bind(*seq).push_bind(e.id.clone()).push_bind(e.at)
                        .push_bind(e.action.clone()).push_bind(e.actor.clone())
                        .push_bind(e.decision.clone()).push_bind(e.code.clone())
                        .push_bind(e.tee.clone()).push_bind(e.workload.clone())
                        .push_bind(e.workload_version.clone()).push_bind(e.policy_version.clone())
                        .push_bind(e.subject.clone()).push_bind(e.jti.clone())
                        .push_bind(e.session_id.clone()).push_bind(e.evidence_sha384.clone())
                        .push_bind(e.detail.clone()).push_bind(prev_hash.clone())
                        .push_bind(hash.clone());
                });
            let revokes = plan.rows().any(|r| matches!(r, Row::Revocation(_)));
            if revokes && self.is_postgres() {
                sqlx::query(super::NOTIFY_REVOCATIONS)
                    .bind(super::REVOCATIONS_CHANNEL)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(SET_HEAD).bind(seq).bind(&prev).execute(&mut *tx).await?;
            if let Err(e) = tx.commit().await {
                // A failed COMMIT can leave the transaction open (SQLite
                // keeps it, and its write lock, after SQLITE_FULL): this
                // connection never goes back to the pool, so closing it
                // ends the transaction and every later batch can write.
                conn.close_on_drop();
                return Err(StoreError::CommitUncertain(e));
            }
            Ok(chained
                .iter()
                .zip(&plan.replayed)
                .map(|((seq, ..), replayed)| if *replayed { Committed::Replayed(*seq) } else { Committed::Written(*seq) })
                .collect())
        })
    }
}
