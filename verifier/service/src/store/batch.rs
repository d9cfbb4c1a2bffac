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
pub(super) const CHUNK: usize = 100;

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
pub(super) fn first_claims(sets: &[WriteSet]) -> Vec<(usize, &str, i64)> {
    let mut seen = HashSet::new();
    sets.iter()
        .enumerate()
        .filter_map(|(i, set)| set.consume.as_ref().map(|c| (i, c.id.as_str(), c.until)))
        .filter(|(_, id, _)| seen.insert(*id))
        .collect()
}

/// A value a batch binds: the few types its columns hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Value {
    /// TEXT (NULL when absent).
    Text(Option<String>),
    /// INTEGER / BIGINT.
    Int(i64),
    /// BOOLEAN (an INTEGER 0 or 1 in SQLite).
    Bool(bool),
    /// BLOB / BYTEA.
    Bytes(Vec<u8>),
}

fn text(s: &str) -> Value {
    Value::Text(Some(s.to_owned()))
}

fn maybe(s: &Option<String>) -> Value {
    Value::Text(s.clone())
}

/// One multi-row `INSERT INTO {table} ({columns}) VALUES … {tail}`, its
/// rows in order: what a batch writes once its nonces are claimed and its
/// audit head is locked, the same for either database.
#[derive(Debug)]
pub(super) struct Insert {
    pub table: &'static str,
    pub columns: &'static str,
    /// What follows the values (a conflict clause), or nothing.
    pub tail: &'static str,
    pub rows: Vec<Vec<Value>>,
}

impl Insert {
    /// The statement for `rows` rows, with `?` or `$n` placeholders.
    pub(super) fn sql(&self, rows: usize, numbered: bool) -> String {
        let width = self.rows.first().map_or(0, Vec::len);
        let mut sql = format!("INSERT INTO {} ({}) VALUES ", self.table, self.columns);
        let mut n = 0;
        for row in 0..rows {
            sql.push_str(if row == 0 { "(" } else { ", (" });
            for column in 0..width {
                n += 1;
                if column > 0 {
                    sql.push_str(", ");
                }
                if numbered {
                    sql.push('$');
                    sql.push_str(&n.to_string());
                } else {
                    sql.push('?');
                }
            }
            sql.push(')');
        }
        sql.push_str(self.tail);
        sql
    }
}

/// The statement that claims nonces: those already consumed come back
/// missing from its `RETURNING`.
pub(super) fn claim_nonces(chunk: &[(usize, &str, i64)]) -> Insert {
    Insert {
        table: "consumed_nonces",
        columns: "nonce_id, expires_at",
        tail: " ON CONFLICT (nonce_id) DO NOTHING RETURNING nonce_id",
        rows: chunk
            .iter()
            .map(|(_, id, until)| vec![text(id), Value::Int(*until)])
            .collect(),
    }
}

/// Locks the audit head (concurrent batches, on any replica, queue here
/// rather than fork the chain) and reads it.
pub(super) const LOCK_HEAD: &str =
    "UPDATE audit_head SET seq = seq WHERE id = 1 RETURNING seq, hash";
/// Moves the head to the batch's last record.
pub(super) const SET_HEAD: &str = "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1";

/// Everything a batch writes after its claims, decided from what they
/// found: the inserts in order, the new head, whether to notify replicas of
/// a revocation, and each set's outcome.
#[derive(Debug)]
pub(super) struct Writes {
    pub inserts: Vec<Insert>,
    pub head: (i64, String),
    pub revokes: bool,
    pub outcomes: Vec<Committed>,
}

/// What `sets` write, given the audit `head` and the nonces this batch
/// `inserted` (claimed first). The one description of a batch's rows,
/// whichever database and connection write them.
pub(super) fn plan_writes(
    sets: &[WriteSet],
    inserted: &HashSet<String>,
    head: (i64, String),
) -> Writes {
    let claims = first_claims(sets);
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

    // Each credential's register set by content address, hashed once.
    let credentials: Vec<(&CredentialRecord, String)> = plan
        .rows()
        .filter_map(|r| match r {
            Row::Credential(c) => Some((c, content_address(c.measurements.as_bytes()))),
            _ => None,
        })
        .collect();
    let register_sets: BTreeMap<&str, &str> = credentials
        .iter()
        .map(|(c, hash)| (hash.as_str(), c.measurements.as_str()))
        .collect();
    let mut inserts = vec![
        Insert {
            table: "register_sets",
            columns: "sha256, registers",
            tail: " ON CONFLICT (sha256) DO NOTHING",
            rows: register_sets
                .into_iter()
                .map(|(hash, registers)| vec![text(hash), text(registers)])
                .collect(),
        },
        Insert {
            table: "credentials",
            columns: super::lifecycle::CREDENTIAL_INSERT_COLUMNS,
            tail: "",
            rows: credentials
                .iter()
                .map(|(c, register_set)| {
                    vec![
                        text(&c.jti),
                        text(&c.subject),
                        text(&c.session_id),
                        maybe(&c.parent_jti),
                        text(&c.workload),
                        text(&c.jkt),
                        text(&c.scope),
                        text(&c.audience),
                        Value::Int(c.issued_at),
                        Value::Int(c.expires_at),
                        Value::Bool(c.test_root),
                        text(&c.model_digest),
                        text(""),
                        Value::Int(i64::from(c.depth)),
                        text(register_set),
                    ]
                })
                .collect(),
        },
    ];

    let sessions: Vec<&NewSession> = plan
        .rows()
        .filter_map(|r| match r {
            Row::Session(s) => Some(s),
            _ => None,
        })
        .collect();
    let (stored, files) = address_sessions(&sessions);
    inserts.push(Insert {
        table: "collateral_files",
        columns: "sha256, bytes, expires_at",
        tail: FILE_EXPIRY_UPSERT,
        rows: files
            .into_iter()
            .map(|(hash, bytes, expires_at)| {
                vec![
                    Value::Text(Some(hash)),
                    Value::Bytes(bytes.to_vec()),
                    Value::Int(expires_at),
                ]
            })
            .collect(),
    });
    inserts.push(Insert {
        table: "session_evidence",
        columns: super::lifecycle::SESSION_INSERT_COLUMNS,
        tail: "",
        rows: sessions
            .iter()
            .zip(stored)
            .map(|(s, stored)| {
                vec![
                    text(&s.session_id),
                    text(&s.tee),
                    text(""),
                    text(""),
                    Value::Bytes(stored.head.to_vec()),
                    Value::Text(Some(stored.refs)),
                    Value::Text(stored.tail),
                    text(&s.model_digest),
                    Value::Int(s.expires_at),
                    text(&s.principal),
                    text(&s.task_id),
                    text(&s.scopes),
                    text(&s.audience),
                ]
            })
            .collect(),
    });
    inserts.push(Insert {
        table: "session_encryption_keys",
        columns: "session_id, jwk, expires_at",
        tail: "",
        rows: plan
            .rows()
            .filter_map(|r| match r {
                Row::SessionKey(session, jwk, expires_at) => {
                    Some(vec![text(session), text(jwk), Value::Int(*expires_at)])
                }
                _ => None,
            })
            .collect(),
    });
    let revocations: Vec<Vec<Value>> = plan
        .rows()
        .filter_map(|r| match r {
            Row::Revocation(v) => Some(vec![
                text(&v.id),
                text(v.kind.as_str()),
                text(&v.target),
                text(v.mode.as_str()),
                text(&v.reason),
                maybe(&v.cascade_from),
                Value::Int(v.revoked_at),
                Value::Int(v.updated_at),
                Value::Bool(v.lifted),
            ]),
            _ => None,
        })
        .collect();
    let revokes = !revocations.is_empty();
    inserts.push(Insert {
        table: "revocations",
        columns: super::lifecycle::REVOCATION_COLUMNS,
        tail: "",
        rows: revocations,
    });

    let (mut seq, mut prev) = head;
    let mut audit = Vec::with_capacity(sets.len());
    let mut outcomes = Vec::with_capacity(sets.len());
    for (e, replayed) in plan.events().zip(&plan.replayed) {
        seq += 1;
        let hash = record_hash(seq, e, &prev);
        audit.push(vec![
            Value::Int(seq),
            text(&e.id),
            Value::Int(e.at),
            text(&e.action),
            maybe(&e.actor),
            text(&e.decision),
            text(&e.code),
            maybe(&e.tee),
            maybe(&e.workload),
            maybe(&e.workload_version),
            maybe(&e.policy_version),
            maybe(&e.subject),
            maybe(&e.jti),
            maybe(&e.session_id),
            maybe(&e.evidence_sha384),
            text(&e.detail),
            Value::Text(Some(prev)),
            Value::Text(Some(hash.clone())),
        ]);
        outcomes.push(if *replayed {
            Committed::Replayed(seq)
        } else {
            Committed::Written(seq)
        });
        prev = hash;
    }
    inserts.push(Insert {
        table: "audit_events",
        columns: AUDIT_COLUMNS,
        tail: "",
        rows: audit,
    });
    inserts.retain(|insert| !insert.rows.is_empty());
    Writes {
        inserts,
        head: (seq, prev),
        revokes,
        outcomes,
    }
}

/// A collateral file already stored keeps its row; its expiry moves only
/// when a session would outlive it by more than [`FILE_EXPIRY_SLACK`].
const FILE_EXPIRY_UPSERT: &str =
    " ON CONFLICT (sha256) DO UPDATE SET expires_at = excluded.expires_at \
     WHERE collateral_files.expires_at < excluded.expires_at - 3600";
const _: () = assert!(
    FILE_EXPIRY_SLACK == 3600,
    "FILE_EXPIRY_UPSERT spells the slack out"
);

/// Runs the same statements on whichever connection a writer holds.
macro_rules! match_connection {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            WriterConnection::Sqlite($c) => $body,
            WriterConnection::Postgres($c) => $body,
        }
    };
}

/// Binds `insert`'s values, in order, to `$q` (a sqlx query of either
/// database).
macro_rules! bind_values {
    ($q:expr, $chunk:expr) => {{
        let mut q = $q;
        for value in $chunk.iter().flatten() {
            q = match value {
                Value::Text(v) => q.bind(v.as_deref()),
                Value::Int(v) => q.bind(*v),
                Value::Bool(v) => q.bind(*v),
                Value::Bytes(v) => q.bind(v.as_slice()),
            };
        }
        q
    }};
}

/// Runs `$insert` on `$tx` in statements of at most [`CHUNK`] rows; with
/// `=> $row`, collects what its `RETURNING` gave.
macro_rules! run_insert {
    ($tx:expr, $insert:expr, $numbered:expr) => {{
        for chunk in $insert.rows.chunks(CHUNK) {
            let sql = $insert.sql(chunk.len(), $numbered);
            bind_values!(sqlx::query(&sql), chunk)
                .execute(&mut *$tx)
                .await?;
        }
    }};
    ($tx:expr, $insert:expr, $numbered:expr => $row:ty) => {{
        let mut returned: Vec<$row> = Vec::new();
        for chunk in $insert.rows.chunks(CHUNK) {
            let sql = $insert.sql(chunk.len(), $numbered);
            returned.extend(
                bind_values!(sqlx::query_as::<_, $row>(&sql), chunk)
                    .fetch_all(&mut *$tx)
                    .await?,
            );
        }
        returned
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
        let numbered = self.is_postgres();
        let claims = first_claims(sets);
        match_connection!(conn, conn => {
            let mut tx = sqlx::Connection::begin(&mut **conn).await?;
            let head: (i64, String) = sqlx::query_as(LOCK_HEAD).fetch_one(&mut *tx).await?;
            let mut inserted = HashSet::new();
            for chunk in claims.chunks(CHUNK) {
                let ids = run_insert!(tx, claim_nonces(chunk), numbered => (String,));
                inserted.extend(ids.into_iter().map(|(id,)| id));
            }
            let writes = plan_writes(sets, &inserted, head);
            for insert in &writes.inserts {
                run_insert!(tx, insert, numbered);
            }
            if writes.revokes && numbered {
                sqlx::query(super::NOTIFY_REVOCATIONS)
                    .bind(super::REVOCATIONS_CHANNEL)
                    .execute(&mut *tx)
                    .await?;
            }
            let (seq, hash) = &writes.head;
            sqlx::query(SET_HEAD).bind(seq).bind(hash).execute(&mut *tx).await?;
            if let Err(e) = tx.commit().await {
                // A failed COMMIT can leave the transaction open (SQLite
                // keeps it, and its write lock, after SQLITE_FULL): this
                // connection never goes back to the pool, so closing it
                // ends the transaction and every later batch can write.
                conn.close_on_drop();
                return Err(StoreError::uncertain(StoreError::Database(e)));
            }
            Ok(writes.outcomes)
        })
    }
}
