//! The audit log as a hash chain. Each record carries the previous record's
//! hash and its own: SHA-256 over a domain string and the JSON array of its
//! fields (prev hash included), so editing a record breaks its hash, and
//! deleting or reordering records breaks the links. `audit_head` holds the
//! last sequence number and hash; appending updates it first, which locks
//! it, so concurrent appends (any replica) queue rather than fork the chain.
//! Deleting the newest records is caught by comparing the head.

use aws_lc_rs::digest::{digest, SHA256};
use serde::Serialize;

use super::{Store, StoreError};
#[cfg(test)]
use sqlx::SqlitePool;

/// Hashes are of this, then the record's JSON array.
const DOMAIN: &[u8] = b"attest-gate/audit/v1\0";
/// The chain's first `prev_hash`.
pub(super) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One decision to record (never a secret: no token, key, nonce or evidence).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct AuditEvent {
    /// Random identifier.
    pub id: String,
    /// When, Unix seconds.
    pub at: i64,
    /// What was asked (`attest`, `exchange`, `introspect`, `admin.revoke`, ...).
    pub action: String,
    /// Who asked: `agent:<jkt>`, `rp:<client>`, `admin`, `cli`.
    pub actor: Option<String>,
    /// `allow` or `deny`.
    pub decision: String,
    /// `ok` or the rejection code.
    pub code: String,
    /// The TEE, when known.
    pub tee: Option<String>,
    /// The workload, when appraised.
    pub workload: Option<String>,
    /// Its version.
    pub workload_version: Option<String>,
    /// SHA-256 (hex, first 16 digits) of the policy in force.
    pub policy_version: Option<String>,
    /// The SPIFFE ID concerned.
    pub subject: Option<String>,
    /// The credential concerned.
    pub jti: Option<String>,
    /// Its session.
    pub session_id: Option<String>,
    /// SHA-384 of the evidence judged, hex.
    pub evidence_sha384: Option<String>,
    /// The reasons, human-readable (never a secret).
    pub detail: String,
}

/// A record in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct AuditRecord {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// The event.
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub event: AuditEvent,
    /// The previous record's hash (`GENESIS` for the first).
    pub prev_hash: String,
    /// This record's hash.
    pub hash: String,
}

/// Where the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditBreak {
    /// The first record (sequence number) that does not check.
    pub seq: i64,
    /// Its ID, when the record exists.
    pub id: Option<String>,
    /// What is wrong.
    pub problem: String,
}

/// Where the chain starts after pruning: the sequence number and hash of
/// the last record removed, and a signature over them by the data
/// directory's checkpoint key (`audit-checkpoint.p8`), so whoever can write
/// the database cannot cut the chain's start unnoticed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct AuditCheckpoint {
    /// The last record removed.
    pub seq: i64,
    /// Its hash: the next record's `prev_hash`.
    pub hash: String,
    /// Records dated before this instant were removed (Unix seconds).
    pub pruned_before: i64,
    /// When the checkpoint was made (Unix seconds).
    pub created_at: i64,
    /// Compact JWS (`typ: audit-checkpoint+jwt`) over the fields above.
    #[serde(skip)]
    pub signature: String,
}

/// An intact chain: its head, and the checkpoint it was checked from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditVerified {
    /// The last record's sequence number.
    pub records: i64,
    /// The last record's hash.
    pub head: String,
    /// Where checking started (`None`: from the first record).
    pub checkpoint: Option<AuditCheckpoint>,
}

/// A filter for reading the log.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only records at or after this Unix time.
    pub since: Option<i64>,
    /// Only records after this sequence number (paging).
    pub after_seq: Option<i64>,
    /// Only this action.
    pub action: Option<String>,
    /// At most this many (oldest first).
    pub limit: i64,
}

/// The hash of `event` at `seq` after `prev_hash`.
pub(super) fn record_hash(seq: i64, event: &AuditEvent, prev_hash: &str) -> String {
    let fields = serde_json::json!([
        seq,
        event.id,
        event.at,
        event.action,
        event.actor,
        event.decision,
        event.code,
        event.tee,
        event.workload,
        event.workload_version,
        event.policy_version,
        event.subject,
        event.jti,
        event.session_id,
        event.evidence_sha384,
        event.detail,
        prev_hash,
    ]);
    let mut input = DOMAIN.to_vec();
    input.extend_from_slice(fields.to_string().as_bytes());
    hex::encode(digest(&SHA256, &input))
}

pub(super) const COLUMNS: &str = "seq, id, at, action, actor, decision, code, tee, workload, \
                       workload_version, policy_version, subject, jti, session_id, \
                       evidence_sha384, detail, prev_hash, hash";

impl Store {
    /// Appends `event` to the chain on its own (the service appends through
    /// its group-commit writer); returns its sequence number.
    pub async fn audit(&self, e: &AuditEvent) -> Result<i64, StoreError> {
        let committed = self
            .commit_batch(&[super::WriteSet::audit(e.clone())])
            .await?;
        match committed.first() {
            Some(super::Committed::Written(seq) | super::Committed::Replayed(seq)) => Ok(*seq),
            None => Err(StoreError::Corrupt("no audit record was written".into())),
        }
    }

    /// Records matching `q`, oldest first.
    pub async fn audit_records(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_events WHERE seq IS NOT NULL AND at >= $1 AND seq > $2 \
             AND ($3 = '' OR action = $3) ORDER BY seq LIMIT $4"
        );
        Ok(on_pool!(self, pool => sqlx::query_as(&sql)
            .bind(q.since.unwrap_or(i64::MIN))
            .bind(q.after_seq.unwrap_or(0))
            .bind(q.action.clone().unwrap_or_default())
            .bind(q.limit)
            .fetch_all(pool)
            .await?))
    }

    /// The head: last sequence number and hash.
    pub async fn audit_head(&self) -> Result<(i64, String), StoreError> {
        const SQL: &str = "SELECT seq, hash FROM audit_head WHERE id = 1";
        Ok(on_pool!(self, pool => sqlx::query_as(SQL).fetch_one(pool).await?))
    }

    /// The latest checkpoint, if the log was ever pruned.
    pub async fn audit_checkpoint(&self) -> Result<Option<AuditCheckpoint>, StoreError> {
        const SQL: &str =
            "SELECT seq, hash, pruned_before, created_at, signature FROM audit_checkpoints \
                           ORDER BY seq DESC LIMIT 1";
        Ok(on_pool!(self, pool => sqlx::query_as(SQL).fetch_optional(pool).await?))
    }

    /// The longest prefix of the chain dated before `before`: the last
    /// record such that it and every record before it are older (records
    /// from replicas with skewed clocks are never skipped over), and its
    /// hash. `None` if the first remaining record is not older.
    pub async fn audit_prefix_before(
        &self,
        before: i64,
    ) -> Result<Option<(i64, String)>, StoreError> {
        const FIRST_KEPT: &str = "SELECT MIN(seq) FROM audit_events WHERE at >= $1";
        const LAST: &str = "SELECT seq, hash FROM audit_events WHERE seq < $1 \
                            ORDER BY seq DESC LIMIT 1";
        let (first_kept,): (Option<i64>,) =
            on_pool!(self, pool => sqlx::query_as(FIRST_KEPT).bind(before).fetch_one(pool).await?);
        let bound = first_kept.unwrap_or(i64::MAX);
        Ok(on_pool!(self, pool => sqlx::query_as(LAST).bind(bound).fetch_optional(pool).await?))
    }

    /// Removes every record up to `checkpoint.seq` and records the
    /// checkpoint, in one transaction under the head's lock; returns how
    /// many records went (none if a checkpoint at or past it exists). Refused
    /// (nothing changes) if it does not name the record's real hash.
    pub async fn prune_audit(&self, checkpoint: &AuditCheckpoint) -> Result<u64, StoreError> {
        const LOCK_HEAD: &str = "UPDATE audit_head SET seq = seq WHERE id = 1";
        const LATEST: &str = "SELECT MAX(seq) FROM audit_checkpoints";
        const HASH: &str = "SELECT hash FROM audit_events WHERE seq = $1";
        const INSERT: &str =
            "INSERT INTO audit_checkpoints (seq, hash, pruned_before, created_at, \
                              signature) VALUES ($1, $2, $3, $4, $5)";
        const DELETE: &str = "DELETE FROM audit_events WHERE seq <= $1";
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(LOCK_HEAD).execute(&mut *tx).await?;
            let (latest,): (Option<i64>,) = sqlx::query_as(LATEST).fetch_one(&mut *tx).await?;
            let hash: Option<(String,)> = sqlx::query_as(HASH)
                .bind(checkpoint.seq)
                .fetch_optional(&mut *tx)
                .await?;
            // Another replica pruned this far already.
            if latest.is_some_and(|l| l >= checkpoint.seq) {
                return Ok(0);
            }
            if hash.is_none_or(|(h,)| h != checkpoint.hash) {
                return Err(StoreError::Corrupt(
                    "the checkpoint does not name its record's hash".into(),
                ));
            }
            sqlx::query(INSERT)
                .bind(checkpoint.seq)
                .bind(&checkpoint.hash)
                .bind(checkpoint.pruned_before)
                .bind(checkpoint.created_at)
                .bind(&checkpoint.signature)
                .execute(&mut *tx)
                .await?;
            let removed = sqlx::query(DELETE)
                .bind(checkpoint.seq)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok(removed)
        })
    }

    /// Checks the chain from its latest checkpoint (or its first record), a
    /// page at a time: `Ok(Ok(..))` intact, with its head and the checkpoint
    /// it started from (whose signature the caller checks, holding the
    /// key); `Ok(Err(break))` the first record that does not check.
    pub async fn verify_audit(&self) -> Result<Result<AuditVerified, AuditBreak>, StoreError> {
        self.verify_audit_to(None).await
    }

    /// As [`Self::verify_audit`], stopping after record `last` when given.
    pub async fn verify_audit_to(
        &self,
        last: Option<i64>,
    ) -> Result<Result<AuditVerified, AuditBreak>, StoreError> {
        const PAGE: i64 = 1000;
        // The head first: records appended while this runs lie beyond it and
        // are not judged (nor mistaken for a tail that was cut off).
        let (head_seq, head_hash) = self.audit_head().await?;
        let checkpoint = self.audit_checkpoint().await?;
        let (mut expected_seq, mut prev) = match &checkpoint {
            Some(c) => (c.seq + 1, c.hash.clone()),
            None => (1, GENESIS.to_string()),
        };
        let stop = last.map_or(head_seq, |l| l.min(head_seq));
        while expected_seq <= stop {
            let page = self
                .audit_records(&AuditQuery {
                    after_seq: Some(expected_seq - 1),
                    limit: PAGE,
                    ..AuditQuery::default()
                })
                .await?;
            let done = (page.len() as i64) < PAGE;
            for record in page {
                if record.seq > stop {
                    break;
                }
                if let Some(problem) = check_record(&record, expected_seq, &prev) {
                    return Ok(Err(AuditBreak {
                        seq: expected_seq,
                        id: Some(record.event.id),
                        problem,
                    }));
                }
                prev = record.hash;
                expected_seq += 1;
            }
            if done {
                break;
            }
        }
        let reached = expected_seq - 1;
        if last.is_none() && (head_seq != reached || head_hash != prev) {
            return Ok(Err(AuditBreak {
                seq: reached + 1,
                id: None,
                problem: format!(
                    "the chain ends at record {reached} but its head says {head_seq}: \
                     the newest records were deleted or replaced"
                ),
            }));
        }
        if reached < stop {
            return Ok(Err(AuditBreak {
                seq: reached + 1,
                id: None,
                problem: format!("record {} is missing: deleted", reached + 1),
            }));
        }
        Ok(Ok(AuditVerified {
            records: reached,
            head: prev,
            checkpoint,
        }))
    }
}

fn check_record(record: &AuditRecord, expected_seq: i64, prev: &str) -> Option<String> {
    if record.seq != expected_seq {
        return Some(format!(
            "record {expected_seq} is missing (next is {}): deleted",
            record.seq
        ));
    }
    if record.prev_hash != prev {
        return Some("does not follow the record before it: deleted or reordered records".into());
    }
    if record_hash(record.seq, &record.event, &record.prev_hash) != record.hash {
        return Some("its contents do not match its hash: edited".into());
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    async fn chain(n: i64) -> (tempfile::TempDir, Store, SqlitePool) {
        let (dir, store, pool) = super::super::sqlite_store_on_disk().await;
        for i in 0..n {
            let event = AuditEvent {
                id: format!("e{i}"),
                at: 1_700_000_000 + i,
                action: "attest".into(),
                decision: "allow".into(),
                code: "ok".into(),
                detail: format!("event {i}"),
                ..AuditEvent::default()
            };
            assert_eq!(store.audit(&event).await.unwrap(), i + 1);
        }
        (dir, store, pool)
    }

    async fn first_break(store: &Store) -> Option<AuditBreak> {
        // `verify_audit` stops at the head; a broken record before it is
        // named whichever way it was broken.
        store.verify_audit().await.unwrap().err()
    }

    async fn exec(pool: &SqlitePool, sql: &str) {
        sqlx::query(sql).execute(pool).await.unwrap();
    }

    #[tokio::test]
    async fn an_intact_chain_verifies_and_reports_its_head() {
        let (_dir, store, _) = chain(5).await;
        let verified = store.verify_audit().await.unwrap().unwrap();
        let (seq, head) = (verified.records, verified.head);
        assert_eq!(seq, 5);
        let records = store
            .audit_records(&AuditQuery {
                limit: 10,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(records.last().unwrap().hash, head);
        assert_eq!(records.first().unwrap().prev_hash, GENESIS);
    }

    #[tokio::test]
    async fn an_edited_record_is_named() {
        let (_dir, store, pool) = chain(5).await;
        exec(
            &pool,
            "UPDATE audit_events SET decision = 'deny' WHERE seq = 3",
        )
        .await;
        let broken = first_break(&store).await.unwrap();
        assert_eq!((broken.seq, broken.id.as_deref()), (3, Some("e2")));
        assert!(broken.problem.contains("edited"), "{}", broken.problem);
    }

    #[tokio::test]
    async fn a_deleted_record_is_named() {
        let (_dir, store, pool) = chain(5).await;
        exec(&pool, "DELETE FROM audit_events WHERE seq = 2").await;
        let broken = first_break(&store).await.unwrap();
        assert_eq!(broken.seq, 2);
        assert!(broken.problem.contains("deleted"), "{}", broken.problem);
    }

    #[tokio::test]
    async fn reordered_records_are_caught() {
        let (_dir, store, pool) = chain(5).await;
        exec(&pool, "UPDATE audit_events SET seq = -1 WHERE seq = 2").await;
        exec(&pool, "UPDATE audit_events SET seq = 2 WHERE seq = 4").await;
        exec(&pool, "UPDATE audit_events SET seq = 4 WHERE seq = -1").await;
        let broken = first_break(&store).await.unwrap();
        assert_eq!(broken.seq, 2);
    }

    #[tokio::test]
    async fn deleting_the_newest_records_is_caught_by_the_head() {
        let (_dir, store, pool) = chain(5).await;
        exec(&pool, "DELETE FROM audit_events WHERE seq >= 4").await;
        let broken = first_break(&store).await.unwrap();
        assert_eq!((broken.seq, broken.id), (4, None));
    }
}
