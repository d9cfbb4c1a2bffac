//! What credentials' lives need from the database: looking credentials up
//! (by `jti`, key, parent), revocations, relying-party clients, and the
//! evidence of live sessions for reappraisal.

use std::collections::{BTreeMap, HashMap, HashSet};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::{CredentialRecord, Store, StoreError};
use crate::revocation::Revocation;

/// The evidence a session was issued on, as reappraisal reads it (the
/// evidence and each collateral file in standard base64, whichever form
/// the row is stored in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEvidence {
    /// The session.
    pub session_id: String,
    /// `nitro`, `tdx` or `snp`.
    pub tee: String,
    /// The evidence, base64.
    pub evidence: String,
    /// The request's collateral: JSON object, file name → base64 (empty if
    /// a file it names is missing: the row is then unreadable).
    pub collateral: String,
    /// The model digest, hex.
    pub model_digest: String,
    /// When the session's credential expires, Unix seconds.
    pub expires_at: i64,
    /// On whose behalf the agent acts (empty: recorded before it was kept).
    pub principal: String,
    /// The declared task.
    pub task_id: String,
    /// The scopes asked for, space-separated.
    pub scopes: String,
    /// The audience asked for.
    pub audience: String,
}

/// A session's evidence as issuance writes it: bytes, and collateral files
/// stored once each by content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewSession {
    /// The session.
    pub session_id: String,
    /// `nitro`, `tdx` or `snp`.
    pub tee: String,
    /// The evidence as verified.
    pub evidence: Vec<u8>,
    /// Where the bytes alike in every evidence of the platform start (a
    /// TDX quote's PCK chain), stored once apart from the rest.
    pub shared_tail_at: Option<usize>,
    /// The collateral the request carried, by file name.
    pub collateral: Vec<(String, Vec<u8>)>,
    /// The model digest, hex.
    pub model_digest: String,
    /// When the session's credential expires, Unix seconds.
    pub expires_at: i64,
    /// On whose behalf the agent acts.
    pub principal: String,
    /// The declared task.
    pub task_id: String,
    /// The scopes asked for, space-separated.
    pub scopes: String,
    /// The audience asked for.
    pub audience: String,
}

/// A `session_evidence` row in either form.
#[derive(sqlx::FromRow)]
struct SessionRow {
    session_id: String,
    tee: String,
    evidence: String,
    collateral: String,
    evidence_bytes: Option<Vec<u8>>,
    collateral_refs: Option<String>,
    evidence_tail: Option<String>,
    model_digest: String,
    expires_at: i64,
    principal: String,
    task_id: String,
    scopes: String,
    audience: String,
}

/// The SHA-256 (hex) a collateral file is stored under.
pub(super) fn content_address(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes))
}

/// The columns a credential is written with (its registers by reference).
pub(super) const CREDENTIAL_INSERT_COLUMNS: &str =
    "jti, subject, session_id, parent_jti, workload, jkt, scope, audience, issued_at, \
     expires_at, test_root, model_digest, measurements, depth, register_set";

/// The credentials delegated directly from one: found through the parent
/// index, which holds delegated credentials only (migration 0007).
const CHILDREN: &str = "SELECT jti FROM credentials WHERE parent_jti = $1";

/// A credential as read: its registers from their set (or, for rows from
/// before register sets, from the row).
const CREDENTIAL_SELECT: &str = "SELECT c.jti, c.subject, c.session_id, c.parent_jti, \
     c.workload, c.jkt, c.scope, c.audience, c.issued_at, c.expires_at, c.test_root, \
     c.model_digest, COALESCE(r.registers, c.measurements) AS measurements, c.depth \
     FROM credentials c LEFT JOIN register_sets r ON r.sha256 = c.register_set";

/// The columns a session's evidence is written with.
pub(super) const SESSION_INSERT_COLUMNS: &str = "session_id, tee, evidence, collateral, \
                                                 evidence_bytes, collateral_refs, evidence_tail, \
                                                 model_digest, expires_at, principal, task_id, \
                                                 scopes, audience";

pub(super) const REVOCATION_COLUMNS: &str =
    "id, kind, target, mode, reason, cascade_from, revoked_at, updated_at, lifted";

/// A `revocations` row as the database returns it.
#[derive(sqlx::FromRow)]
struct RevocationRow {
    id: String,
    kind: String,
    target: String,
    mode: String,
    reason: String,
    cascade_from: Option<String>,
    revoked_at: i64,
    updated_at: i64,
    lifted: bool,
}

impl TryFrom<RevocationRow> for Revocation {
    type Error = StoreError;
    /// A kind or mode this build does not know is a corrupt row, refused
    /// rather than read as something that matches nothing.
    fn try_from(row: RevocationRow) -> Result<Self, StoreError> {
        let corrupt =
            |e: attest_gate_protocol::revocation::UnknownName| StoreError::Corrupt(e.to_string());
        Ok(Self {
            id: row.id,
            kind: row.kind.parse().map_err(corrupt)?,
            target: row.target,
            mode: row.mode.parse().map_err(corrupt)?,
            reason: row.reason,
            cascade_from: row.cascade_from,
            revoked_at: row.revoked_at,
            updated_at: row.updated_at,
            lifted: row.lifted,
        })
    }
}

impl Store {
    /// The credential with this `jti`.
    pub async fn credential(&self, jti: &str) -> Result<Option<CredentialRecord>, StoreError> {
        let sql = format!("{CREDENTIAL_SELECT} WHERE c.jti = $1");
        Ok(on_pool!(self, pool => sqlx::query_as(&sql).bind(jti).fetch_optional(pool).await?))
    }

    /// The `jti`s and sessions of credentials issued for an agent key that
    /// a revocation in force names: (`jti`s, sessions). Joined in the
    /// database, so however many credentials the key had, only the few
    /// that matter leave it.
    pub async fn revoked_history_of_key(
        &self,
        jkt: &str,
    ) -> Result<(Vec<String>, Vec<String>), StoreError> {
        // `CROSS JOIN` keeps SQLite's loop over this key's credentials
        // (index on `jkt`) outside, probing `revocations (kind, target)`;
        // left to itself it may walk every revocation instead.
        const SQL: &str = "SELECT r.kind, r.target FROM credentials c CROSS JOIN revocations r \
                           WHERE c.jkt = $1 AND r.kind = 'jti' AND r.target = c.jti \
                           AND r.lifted = FALSE \
                           UNION SELECT r.kind, r.target FROM credentials c CROSS JOIN revocations r \
                           WHERE c.jkt = $1 AND r.kind = 'session' AND r.target = c.session_id \
                           AND r.lifted = FALSE";
        let rows: Vec<(String, String)> =
            on_pool!(self, pool => sqlx::query_as(SQL).bind(jkt).fetch_all(pool).await?);
        let (jtis, sessions): (Vec<_>, Vec<_>) = rows.into_iter().partition(|(k, _)| k == "jti");
        Ok((
            jtis.into_iter().map(|(_, t)| t).collect(),
            sessions.into_iter().map(|(_, t)| t).collect(),
        ))
    }

    /// `jti`s of the unexpired credentials bound to an agent key.
    pub(crate) async fn live_credentials_for_key(
        &self,
        jkt: &str,
        now: i64,
    ) -> Result<Vec<String>, StoreError> {
        const SQL: &str = "SELECT jti FROM credentials WHERE jkt = $1 AND expires_at > $2";
        let rows: Vec<(String,)> =
            on_pool!(self, pool => sqlx::query_as(SQL).bind(jkt).bind(now).fetch_all(pool).await?);
        Ok(rows.into_iter().map(|(j,)| j).collect())
    }

    /// `jti`s of a session's unexpired credentials (its tokens, delegated
    /// tokens and JWT-SVIDs).
    pub(crate) async fn live_credentials_of_session(
        &self,
        session_id: &str,
        now: i64,
    ) -> Result<Vec<String>, StoreError> {
        const SQL: &str = "SELECT jti FROM credentials WHERE session_id = $1 AND expires_at > $2";
        let rows: Vec<(String,)> = on_pool!(self, pool => sqlx::query_as(SQL)
            .bind(session_id)
            .bind(now)
            .fetch_all(pool)
            .await?);
        Ok(rows.into_iter().map(|(j,)| j).collect())
    }

    /// `jti`s of unexpired credentials issued on evidence with this register
    /// value (hex, lower case).
    pub async fn credentials_with_register(
        &self,
        value: &str,
        now: i64,
    ) -> Result<Vec<String>, StoreError> {
        const SQL: &str = "SELECT c.jti FROM credentials c \
                           LEFT JOIN register_sets r ON r.sha256 = c.register_set \
                           WHERE c.expires_at > $2 \
                           AND (' ' || COALESCE(r.registers, c.measurements) || ' ') LIKE $1";
        let pattern = format!("% {value} %");
        let rows: Vec<(String,)> = on_pool!(self, pool => sqlx::query_as(SQL)
            .bind(pattern)
            .bind(now)
            .fetch_all(pool)
            .await?);
        Ok(rows.into_iter().map(|(j,)| j).collect())
    }

    /// The scopes held by a session's attested (not delegated) credentials.
    pub(crate) async fn session_scopes(&self, session_id: &str) -> Result<Vec<String>, StoreError> {
        const SQL: &str =
            "SELECT scope FROM credentials WHERE session_id = $1 AND parent_jti IS NULL";
        let rows: Vec<(String,)> =
            on_pool!(self, pool => sqlx::query_as(SQL).bind(session_id).fetch_all(pool).await?);
        let mut scopes: Vec<String> = rows
            .iter()
            .flat_map(|(s,)| s.split_whitespace().map(str::to_string))
            .collect();
        scopes.sort();
        scopes.dedup();
        Ok(scopes)
    }

    /// The agent key(s) of a session's attested (not delegated) credentials.
    pub async fn session_keys(&self, session_id: &str) -> Result<Vec<String>, StoreError> {
        const SQL: &str =
            "SELECT DISTINCT jkt FROM credentials WHERE session_id = $1 AND parent_jti IS NULL";
        let rows: Vec<(String,)> =
            on_pool!(self, pool => sqlx::query_as(SQL).bind(session_id).fetch_all(pool).await?);
        Ok(rows.into_iter().map(|(k,)| k).collect())
    }

    /// `jti`s delegated directly from `jti`.
    pub async fn children(&self, jti: &str) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> =
            on_pool!(self, pool => sqlx::query_as(CHILDREN).bind(jti).fetch_all(pool).await?);
        Ok(rows.into_iter().map(|(j,)| j).collect())
    }

    /// How many credentials are unexpired at `now`.
    pub async fn live_credentials(&self, now: i64) -> Result<i64, StoreError> {
        const SQL: &str = "SELECT COUNT(*) FROM credentials WHERE expires_at > $1";
        let (n,): (i64,) =
            on_pool!(self, pool => sqlx::query_as(SQL).bind(now).fetch_one(pool).await?);
        Ok(n)
    }

    /// Records revocations (a revocation and its cascade) at once.
    pub async fn insert_revocations(&self, rows: &[Revocation]) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO revocations ({REVOCATION_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        );
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for r in rows {
                sqlx::query(&sql)
                    .bind(&r.id)
                    .bind(r.kind.as_str())
                    .bind(&r.target)
                    .bind(r.mode.as_str())
                    .bind(&r.reason)
                    .bind(&r.cascade_from)
                    .bind(r.revoked_at)
                    .bind(r.updated_at)
                    .bind(r.lifted)
                    .execute(&mut *tx)
                    .await?;
            }
            if self.is_postgres() {
                sqlx::query(super::NOTIFY_REVOCATIONS)
                    .bind(super::REVOCATIONS_CHANNEL)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Lifts the quarantine `id`, the rows its cascade recorded (same
    /// target as `cascade_from`, same instant), and every quarantine
    /// inherited from any of them (`cascade_from = 'inherited:<id>'`).
    /// False if no un-lifted quarantine has that ID.
    pub async fn lift_quarantine(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE revocations SET lifted = TRUE, updated_at = $2 \
            WHERE mode = 'quarantine' AND lifted = FALSE AND (id = $1 \
            OR (cascade_from, revoked_at) IN (SELECT target, revoked_at FROM revocations \
                WHERE id = $1 AND mode = 'quarantine' AND lifted = FALSE) \
            OR cascade_from IN (SELECT 'inherited:' || r.id FROM revocations r \
                WHERE r.mode = 'quarantine' AND r.lifted = FALSE AND (r.id = $1 \
                OR (r.cascade_from, r.revoked_at) IN (SELECT target, revoked_at \
                    FROM revocations WHERE id = $1 AND mode = 'quarantine' AND lifted = FALSE))))";
        let n = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let n = sqlx::query(SQL)
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if self.is_postgres() {
                sqlx::query(super::NOTIFY_REVOCATIONS)
                    .bind(super::REVOCATIONS_CHANNEL)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            n
        });
        Ok(n >= 1)
    }

    /// Every revocation in force (not lifted).
    pub async fn revocations_in_force(&self) -> Result<Vec<Revocation>, StoreError> {
        let sql = format!("SELECT {REVOCATION_COLUMNS} FROM revocations WHERE lifted = FALSE");
        let rows: Vec<RevocationRow> =
            on_pool!(self, pool => sqlx::query_as(&sql).fetch_all(pool).await?);
        rows.into_iter().map(Revocation::try_from).collect()
    }

    /// The agent keys (thumbprints) of credentials that a `jti`
    /// revocation in force names: only for these can
    /// [`Store::revoked_history_of_key`] find a `jti`.
    pub async fn keys_named_by_revocations(&self) -> Result<HashSet<String>, StoreError> {
        const SQL: &str = "SELECT DISTINCT c.jkt FROM revocations r CROSS JOIN credentials c \
                           WHERE r.kind = 'jti' AND r.lifted = FALSE AND c.jti = r.target";
        let rows: Vec<(String,)> =
            on_pool!(self, pool => sqlx::query_as(SQL).fetch_all(pool).await?);
        Ok(rows.into_iter().map(|(jkt,)| jkt).collect())
    }

    /// Revocations created or changed at or after `since`, oldest change first.
    pub async fn revocations_since(
        &self,
        since: i64,
        limit: i64,
    ) -> Result<Vec<Revocation>, StoreError> {
        let sql = format!(
            "SELECT {REVOCATION_COLUMNS} FROM revocations WHERE updated_at >= $1 \
             ORDER BY updated_at, id LIMIT $2"
        );
        let rows: Vec<RevocationRow> = on_pool!(self, pool => sqlx::query_as(&sql)
            .bind(since)
            .bind(limit)
            .fetch_all(pool)
            .await?);
        rows.into_iter().map(Revocation::try_from).collect()
    }

    /// Registers a relying party that may introspect; `false` when one with
    /// this ID exists (nothing is changed then).
    pub async fn add_client(
        &self,
        client_id: &str,
        secret_sha256: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "INSERT INTO rp_clients (client_id, secret_sha256, created_at) \
                           VALUES ($1, $2, $3) ON CONFLICT (client_id) DO NOTHING";
        let inserted = on_pool!(self, pool => sqlx::query(SQL)
            .bind(client_id)
            .bind(secret_sha256)
            .bind(now)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())?);
        Ok(inserted == 1)
    }

    /// A relying party's secret hash.
    pub async fn client_secret_hash(&self, client_id: &str) -> Result<Option<String>, StoreError> {
        const SQL: &str = "SELECT secret_sha256 FROM rp_clients WHERE client_id = $1";
        let row: Option<(String,)> =
            on_pool!(self, pool => sqlx::query_as(SQL).bind(client_id).fetch_optional(pool).await?);
        Ok(row.map(|(h,)| h))
    }

    /// Evidence of every session still live at `now`.
    pub async fn live_session_evidence(
        &self,
        now: i64,
    ) -> Result<Vec<SessionEvidence>, StoreError> {
        const SQL: &str = "SELECT session_id, tee, evidence, collateral, evidence_bytes, \
                           collateral_refs, evidence_tail, model_digest, expires_at, principal, \
                           task_id, scopes, audience FROM session_evidence WHERE expires_at > $1 \
                           ORDER BY session_id";
        let rows: Vec<SessionRow> =
            on_pool!(self, pool => sqlx::query_as(SQL).bind(now).fetch_all(pool).await?);
        let mut files = HashMap::new();
        let mut sessions = Vec::with_capacity(rows.len());
        for row in rows {
            let (evidence, collateral) = match (&row.evidence_bytes, &row.collateral_refs) {
                (Some(bytes), Some(refs)) => {
                    let collateral = match serde_json::from_str::<BTreeMap<String, String>>(refs) {
                        Ok(refs) => self.resolve_collateral(refs, &mut files).await?,
                        Err(_) => None,
                    };
                    let evidence = match &row.evidence_tail {
                        None => STANDARD.encode(bytes),
                        Some(tail) => {
                            STANDARD.encode([bytes.as_slice(), &self.file(tail).await?].concat())
                        }
                    };
                    (evidence, collateral.unwrap_or_default())
                }
                _ => (row.evidence, row.collateral),
            };
            sessions.push(SessionEvidence {
                session_id: row.session_id,
                tee: row.tee,
                evidence,
                collateral,
                model_digest: row.model_digest,
                expires_at: row.expires_at,
                principal: row.principal,
                task_id: row.task_id,
                scopes: row.scopes,
                audience: row.audience,
            });
        }
        Ok(sessions)
    }

    /// A stored file's bytes by content address, if it is there.
    async fn find_file(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError> {
        const FILE: &str = "SELECT bytes FROM collateral_files WHERE sha256 = $1";
        let found: Option<(Vec<u8>,)> = on_pool!(self, pool => sqlx::query_as(FILE)
            .bind(hash)
            .fetch_optional(pool)
            .await?);
        Ok(found.map(|(bytes,)| bytes))
    }

    /// A stored file's bytes by content address. Missing is corruption:
    /// the file outlives every session naming it.
    async fn file(&self, hash: &str) -> Result<Vec<u8>, StoreError> {
        self.find_file(hash)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("stored file {hash} is missing")))
    }

    /// A session's collateral as a JSON object of base64 files, read by
    /// content address (each file once per call, through `files`); `None`
    /// if a file it names is missing.
    async fn resolve_collateral(
        &self,
        refs: BTreeMap<String, String>,
        files: &mut HashMap<String, Option<String>>,
    ) -> Result<Option<String>, StoreError> {
        let mut resolved = serde_json::Map::new();
        for (name, hash) in refs {
            if !files.contains_key(&hash) {
                let found = self.find_file(&hash).await?;
                files.insert(hash.clone(), found.map(|b| STANDARD.encode(b)));
            }
            match files.get(&hash) {
                Some(Some(b64)) => resolved.insert(name, b64.clone().into()),
                _ => return Ok(None),
            };
        }
        Ok(Some(serde_json::Value::Object(resolved).to_string()))
    }

    /// Forgets collateral files no session live after `horizon` names.
    pub async fn prune_collateral_files(&self, horizon: i64) -> Result<u64, StoreError> {
        const SQL: &str = "DELETE FROM collateral_files WHERE expires_at < $1";
        Ok(on_pool!(self, pool => sqlx::query(SQL)
            .bind(horizon)
            .execute(pool)
            .await?
            .rows_affected()))
    }

    /// Forgets credentials that expired before `horizon`, but for those a
    /// revocation names (by `jti` or session): those stay, so a revoked
    /// agent key cannot come back by attesting again however long ago it
    /// was revoked ([`Store::revoked_history_of_key`]); and for those whose
    /// session still has a credential unexpired at `horizon`, so revoking
    /// a live session or parent still reaches every key in it. In slices,
    /// so the group-commit writer never waits long behind a prune.
    pub async fn prune_credentials(&self, horizon: i64) -> Result<u64, StoreError> {
        const SLICE: i64 = 5000;
        // On PostgreSQL a slice holds `revocations` in SHARE mode, and a
        // batch that inserts a revocation waits for it while holding the
        // audit head (so every batch waits): smaller slices, and a prune
        // that gives up rather than queue behind a revocation being
        // written (its queued lock request would hold later ones back).
        const PG_SLICE: i64 = 500;
        const PG_LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '200ms'";
        const SQL: &str = "DELETE FROM credentials WHERE jti IN (\
                           SELECT c.jti FROM credentials c WHERE c.expires_at < $1 \
                           AND NOT EXISTS (SELECT 1 FROM revocations r \
                               WHERE r.kind = 'jti' AND r.target = c.jti) \
                           AND NOT EXISTS (SELECT 1 FROM revocations r \
                               WHERE r.kind = 'session' AND r.target = c.session_id) \
                           AND NOT EXISTS (SELECT 1 FROM credentials live \
                               WHERE live.session_id = c.session_id AND live.expires_at >= $1) \
                           LIMIT $2)";
        let slice = match self {
            Store::Sqlite(_) => SLICE,
            Store::Postgres(_) => PG_SLICE,
        };
        let mut total = 0;
        loop {
            let removed = match self {
                // One writer at a time: the DELETE sees every committed
                // revocation.
                Store::Sqlite(pool) => sqlx::query(SQL)
                    .bind(horizon)
                    .bind(slice)
                    .execute(pool)
                    .await?
                    .rows_affected(),
                // READ COMMITTED would let a slice miss a revocation that
                // commits while it runs, and delete the very credential it
                // names (its key would then be refused by nothing). SHARE
                // mode waits for revocations being written and holds new
                // ones back until the slice commits.
                Store::Postgres(pool) => {
                    let mut tx = pool.begin().await?;
                    for statement in [PG_LOCK_TIMEOUT, "LOCK TABLE revocations IN SHARE MODE"] {
                        sqlx::query(statement).execute(&mut *tx).await?;
                    }
                    let removed = sqlx::query(SQL)
                        .bind(horizon)
                        .bind(slice)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    tx.commit().await?;
                    removed
                }
            };
            total += removed;
            if removed < slice as u64 {
                return Ok(total);
            }
        }
    }

    /// Forgets the evidence of sessions that ended before `horizon`.
    pub async fn prune_session_evidence(&self, horizon: i64) -> Result<u64, StoreError> {
        const SQL: &str = "DELETE FROM session_evidence WHERE expires_at < $1";
        Ok(on_pool!(self, pool => sqlx::query(SQL)
            .bind(horizon)
            .execute(pool)
            .await?
            .rows_affected()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The parent index leaves attested credentials out (no batch of
    /// attestations writes to it), and the cascade's query still finds
    /// delegated ones through it, not by scanning the table.
    #[tokio::test]
    async fn children_are_found_through_an_index_of_delegated_credentials_only() {
        let (_dir, store, pool) = super::super::sqlite_store_on_disk().await;
        let pool = &pool;
        for (jti, parent) in [
            ("root", None),
            ("child-1", Some("root")),
            ("child-2", Some("root")),
        ] {
            sqlx::query(
                "INSERT INTO credentials (jti, subject, session_id, parent_jti, workload, jkt, \
                 scope, audience, issued_at, expires_at, test_root) \
                 VALUES ($1, 's', 'session', $2, 'w', 'k', 'x', 'a', 0, 1, 0)",
            )
            .bind(jti)
            .bind(parent)
            .execute(pool)
            .await
            .unwrap();
        }
        let mut children = store.children("root").await.unwrap();
        children.sort();
        assert_eq!(children, ["child-1", "child-2"]);
        assert!(store.children("child-1").await.unwrap().is_empty());

        let plan: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(&format!("EXPLAIN QUERY PLAN {CHILDREN}"))
                .bind("root")
                .fetch_all(pool)
                .await
                .unwrap();
        assert!(
            plan.iter()
                .any(|(.., detail)| detail.contains("USING INDEX credentials_parent")),
            "{plan:?}"
        );
        let entries: (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM credentials INDEXED BY credentials_parent \
             WHERE parent_jti IS NOT NULL",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(entries.0, 2);
        let (definition,): (String,) =
            sqlx::query_as("SELECT sql FROM sqlite_master WHERE name = 'credentials_parent'")
                .fetch_one(pool)
                .await
                .unwrap();
        assert!(
            definition.ends_with("WHERE parent_jti IS NOT NULL"),
            "{definition}"
        );
    }
}
