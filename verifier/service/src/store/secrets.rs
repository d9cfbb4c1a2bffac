//! What attested secret release needs from the database: the encryption key
//! each session bound, and the sealed, versioned secrets (never plaintext:
//! the vault seals before anything reaches here).

use super::{Store, StoreError};

/// One version of a secret, as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SecretRow {
    /// Its name.
    pub name: String,
    /// 1, 2, …: one more than the name's last.
    pub version: i64,
    /// The vault's sealed bytes, base64 (empty once superseded or retired).
    pub sealed: String,
    /// Which key-encryption key sealed it.
    pub kek_id: String,
    /// Whether a quarantined session may still have it.
    pub release_in_quarantine: bool,
    /// Not released after this instant (Unix seconds).
    pub not_after: Option<i64>,
    /// When it was stored.
    pub created_at: i64,
    /// When it was retired, if it was.
    pub retired_at: Option<i64>,
}

const SECRET_COLUMNS: &str =
    "name, version, sealed, kek_id, release_in_quarantine, not_after, created_at, retired_at";

impl Store {
    /// The encryption key (public JWK) a live session bound, if any.
    pub async fn session_key(&self, session_id: &str) -> Result<Option<String>, StoreError> {
        const SQL: &str = "SELECT jwk FROM session_encryption_keys WHERE session_id = $1";
        let row: Option<(String,)> = on_pool!(self, pool => sqlx::query_as(SQL).bind(session_id).fetch_optional(pool).await?);
        Ok(row.map(|(jwk,)| jwk))
    }

    /// Forgets the keys of sessions that ended before `horizon`.
    pub async fn prune_session_keys(&self, horizon: i64) -> Result<u64, StoreError> {
        const SQL: &str = "DELETE FROM session_encryption_keys WHERE expires_at < $1";
        Ok(on_pool!(self, pool => sqlx::query(SQL)
            .bind(horizon)
            .execute(pool)
            .await?
            .rows_affected()))
    }

    /// The highest version of `name`, retired or not.
    pub async fn latest_secret(&self, name: &str) -> Result<Option<SecretRow>, StoreError> {
        let sql = format!(
            "SELECT {SECRET_COLUMNS} FROM secrets WHERE name = $1 ORDER BY version DESC LIMIT 1"
        );
        Ok(on_pool!(self, pool => sqlx::query_as(&sql).bind(name).fetch_optional(pool).await?))
    }

    /// Stores a new version; `false` if that version already exists (a
    /// concurrent writer won: read the latest again and retry). Older
    /// versions' ciphertexts are wiped in the same transaction.
    pub async fn insert_secret(&self, row: &SecretRow) -> Result<bool, StoreError> {
        let insert = format!(
            "INSERT INTO secrets ({SECRET_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (name, version) DO NOTHING"
        );
        const WIPE: &str = "UPDATE secrets SET sealed = '' WHERE name = $1 AND version < $2";
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let inserted = sqlx::query(&insert)
                .bind(&row.name)
                .bind(row.version)
                .bind(&row.sealed)
                .bind(&row.kek_id)
                .bind(row.release_in_quarantine)
                .bind(row.not_after)
                .bind(row.created_at)
                .bind(row.retired_at)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            if inserted {
                sqlx::query(WIPE)
                    .bind(&row.name)
                    .bind(row.version)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(inserted)
        })
    }

    /// Retires `name`'s current version (and wipes its ciphertext); the
    /// version retired, or `None` if there was none in force.
    pub async fn retire_secret(&self, name: &str, at: i64) -> Result<Option<i64>, StoreError> {
        let Some(latest) = self.latest_secret(name).await? else {
            return Ok(None);
        };
        if latest.retired_at.is_some() {
            return Ok(None);
        }
        const SQL: &str = "UPDATE secrets SET retired_at = $1, sealed = '' \
                           WHERE name = $2 AND version = $3 AND retired_at IS NULL";
        let changed = on_pool!(self, pool => sqlx::query(SQL)
            .bind(at)
            .bind(name)
            .bind(latest.version)
            .execute(pool)
            .await?
            .rows_affected());
        Ok((changed == 1).then_some(latest.version))
    }

    /// Every name's highest version, by name (the ciphertexts left out).
    pub async fn secret_versions(&self) -> Result<Vec<SecretRow>, StoreError> {
        const SQL: &str = "SELECT name, version, '' AS sealed, kek_id, release_in_quarantine, \
             not_after, created_at, retired_at FROM secrets s WHERE version = \
             (SELECT MAX(version) FROM secrets t WHERE t.name = s.name) ORDER BY name LIMIT 10000";
        Ok(on_pool!(self, pool => sqlx::query_as(SQL).fetch_all(pool).await?))
    }
}
