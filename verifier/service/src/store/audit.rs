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

const COLUMNS: &str = "seq, id, at, action, actor, decision, code, tee, workload, \
                       workload_version, policy_version, subject, jti, session_id, \
                       evidence_sha384, detail, prev_hash, hash";

impl Store {
    /// Appends `event` to the chain; returns its sequence number.
    pub async fn audit(&self, e: &AuditEvent) -> Result<i64, StoreError> {
        const BUMP: &str = "UPDATE audit_head SET seq = seq + 1 WHERE id = 1";
        const HEAD: &str = "SELECT seq, hash FROM audit_head WHERE id = 1";
        const SET_HEAD: &str = "UPDATE audit_head SET hash = $1 WHERE id = 1";
        let insert = format!(
            "INSERT INTO audit_events ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
             $10, $11, $12, $13, $14, $15, $16, $17, $18)"
        );
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(BUMP).execute(&mut *tx).await?;
            let (seq, prev): (i64, String) = sqlx::query_as(HEAD).fetch_one(&mut *tx).await?;
            let hash = record_hash(seq, e, &prev);
            sqlx::query(&insert)
                .bind(seq)
                .bind(&e.id)
                .bind(e.at)
                .bind(&e.action)
                .bind(&e.actor)
                .bind(&e.decision)
                .bind(&e.code)
                .bind(&e.tee)
                .bind(&e.workload)
                .bind(&e.workload_version)
                .bind(&e.policy_version)
                .bind(&e.subject)
                .bind(&e.jti)
                .bind(&e.session_id)
                .bind(&e.evidence_sha384)
                .bind(&e.detail)
                .bind(&prev)
                .bind(&hash)
                .execute(&mut *tx)
                .await?;
            sqlx::query(SET_HEAD).bind(&hash).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(seq)
        })
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

    /// Checks the whole chain, a page at a time. `Ok(None)`: intact, and
    /// returns the head so it can be kept elsewhere; `Ok(Some(break))`: the
    /// first record that does not check.
    pub async fn verify_audit(&self) -> Result<Result<(i64, String), AuditBreak>, StoreError> {
        const PAGE: i64 = 1000;
        // The head first: records appended while this runs lie beyond it and
        // are not judged (nor mistaken for a tail that was cut off).
        let (head_seq, head_hash) = self.audit_head().await?;
        let mut expected_seq = 1;
        let mut prev = GENESIS.to_string();
        loop {
            let page = self
                .audit_records(&AuditQuery {
                    after_seq: Some(expected_seq - 1),
                    limit: PAGE,
                    ..AuditQuery::default()
                })
                .await?;
            let done = (page.len() as i64) < PAGE;
            for record in page {
                if record.seq > head_seq {
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
            if done || expected_seq > head_seq {
                break;
            }
        }
        let last = expected_seq - 1;
        if head_seq != last || head_hash != prev {
            return Ok(Err(AuditBreak {
                seq: last + 1,
                id: None,
                problem: format!(
                    "the chain ends at record {last} but its head says {head_seq}: \
                     the newest records were deleted or replaced"
                ),
            }));
        }
        Ok(Ok((head_seq, head_hash)))
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
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("audit.db").display());
        let store = Store::open(&url).await.unwrap();
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
        let Store::Sqlite(pool) = store.clone() else {
            panic!("sqlite")
        };
        (dir, store, pool)
    }

    async fn first_break(store: &Store) -> Option<AuditBreak> {
        store.verify_audit().await.unwrap().err()
    }

    async fn exec(pool: &SqlitePool, sql: &str) {
        sqlx::query(sql).execute(pool).await.unwrap();
    }

    #[tokio::test]
    async fn an_intact_chain_verifies_and_reports_its_head() {
        let (_dir, store, _) = chain(5).await;
        let (seq, head) = store.verify_audit().await.unwrap().unwrap();
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
