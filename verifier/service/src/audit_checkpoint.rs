//! Audit retention: removing old records without losing the chain. The
//! records up to some sequence number go, and a checkpoint takes their
//! place: that record's number and hash, signed by the data directory's
//! checkpoint key (`audit-checkpoint.p8`, ES256, 0600, never rotated; the
//! database never holds it). `audit verify` then checks the chain from the
//! checkpoint, and the checkpoint's signature, so whoever can write the
//! database can neither cut records from the start of the chain nor forge
//! a later start. Before a prefix is removed it is itself verified: a
//! checkpoint never blesses a broken chain.

use std::path::{Path, PathBuf};

use serde_json::json;

use attest_gate_protocol::jws;

use crate::secrets::{self, SecretError};
use crate::store::{AuditBreak, AuditCheckpoint, AuditVerified, Store, StoreError};
use crate::token::SigningKey;

/// The checkpoint JWS's `typ`.
const CHECKPOINT_TYPE: &str = "audit-checkpoint+jwt";
/// Longest checkpoint signature read.
const MAX_SIGNATURE: usize = 2048;

/// The key file in the data directory.
pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("audit-checkpoint.p8")
}

/// The key checkpoints are signed with.
#[derive(Debug)]
pub struct CheckpointKey(SigningKey);

/// Why an audit operation could not go ahead.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The chain does not verify (nothing was removed).
    #[error("the audit chain is broken at record {}: {}", .0.seq, .0.problem)]
    Broken(AuditBreak),
    /// The latest checkpoint's signature does not verify under the key.
    #[error(
        "the audit checkpoint at record {0} is not signed by this data directory's checkpoint key"
    )]
    BadCheckpoint(i64),
    /// There is a checkpoint but no key to check it with.
    #[error("the log starts at a checkpoint, but {} is missing, so it cannot be checked", .0.display())]
    NoKey(PathBuf),
    /// The key file.
    #[error(transparent)]
    Key(#[from] SecretError),
    /// Signing failed.
    #[error("signing the checkpoint failed")]
    Sign,
    /// The database.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn claims(seq: i64, hash: &str, pruned_before: i64, created_at: i64) -> serde_json::Value {
    json!({"seq": seq, "hash": hash, "pruned_before": pruned_before, "created_at": created_at})
}

impl CheckpointKey {
    /// The data directory's key, made on first use.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, AuditError> {
        let path = key_path(data_dir);
        let (der, _) = secrets::load_or_create(&path, SigningKey::generate_pkcs8)?;
        Self::parse(&path, &der)
    }

    /// The data directory's key, if it has one.
    pub fn load(data_dir: &Path) -> Result<Option<Self>, AuditError> {
        let path = key_path(data_dir);
        if !path.exists() {
            return Ok(None);
        }
        let der = secrets::read_secret(&path)?;
        Self::parse(&path, &der).map(Some)
    }

    fn parse(path: &Path, der: &[u8]) -> Result<Self, AuditError> {
        SigningKey::from_pkcs8(der).map(Self).map_err(|e| {
            AuditError::Key(SecretError::Invalid {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
        })
    }

    fn sign(
        &self,
        seq: i64,
        hash: String,
        pruned_before: i64,
        created_at: i64,
    ) -> Result<AuditCheckpoint, AuditError> {
        let signature = self
            .0
            .sign_jwt(
                CHECKPOINT_TYPE,
                &claims(seq, &hash, pruned_before, created_at),
            )
            .map_err(|_| AuditError::Sign)?;
        Ok(AuditCheckpoint {
            seq,
            hash,
            pruned_before,
            created_at,
            signature,
        })
    }

    /// Whether `checkpoint` is signed by this key and says what its row says.
    pub fn verifies(&self, checkpoint: &AuditCheckpoint) -> bool {
        let Ok(jws) = jws::split(&checkpoint.signature, MAX_SIGNATURE) else {
            return false;
        };
        let expected = claims(
            checkpoint.seq,
            &checkpoint.hash,
            checkpoint.pruned_before,
            checkpoint.created_at,
        );
        jws.header_str("typ") == Some(CHECKPOINT_TYPE)
            && self.0.signed(&jws)
            && serde_json::from_slice::<serde_json::Value>(&jws.payload).ok() == Some(expected)
    }
}

/// The whole chain, checked from its checkpoint, and the checkpoint's
/// signature checked with the key in `data_dir`.
pub async fn verify_audit_log(store: &Store, data_dir: &Path) -> Result<AuditVerified, AuditError> {
    let verified = store.verify_audit().await?.map_err(AuditError::Broken)?;
    check_start(&verified, data_dir)?;
    Ok(verified)
}

fn check_start(verified: &AuditVerified, data_dir: &Path) -> Result<(), AuditError> {
    let Some(checkpoint) = &verified.checkpoint else {
        return Ok(());
    };
    let key =
        CheckpointKey::load(data_dir)?.ok_or_else(|| AuditError::NoKey(key_path(data_dir)))?;
    if key.verifies(checkpoint) {
        Ok(())
    } else {
        Err(AuditError::BadCheckpoint(checkpoint.seq))
    }
}

/// What a prune did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Pruned {
    /// Records removed.
    pub removed: u64,
    /// The checkpoint the chain now starts from (`None`: nothing was old enough).
    pub checkpoint: Option<AuditCheckpoint>,
}

/// Removes the records dated before `before` (the longest such prefix),
/// once the chain up to them and its current checkpoint verify, and
/// records a new signed checkpoint in their place.
pub async fn prune_audit_log(
    store: &Store,
    key: &CheckpointKey,
    data_dir: &Path,
    before: i64,
    now: i64,
) -> Result<Pruned, AuditError> {
    let Some((seq, hash)) = store.audit_prefix_before(before).await? else {
        return Ok(Pruned {
            removed: 0,
            checkpoint: None,
        });
    };
    let verified = store
        .verify_audit_to(Some(seq))
        .await?
        .map_err(AuditError::Broken)?;
    check_start(&verified, data_dir)?;
    if verified.records != seq || verified.head != hash {
        return Err(AuditError::Broken(AuditBreak {
            seq,
            id: None,
            problem: "the record to checkpoint is not the chain's".into(),
        }));
    }
    let checkpoint = key.sign(seq, hash, before, now)?;
    let removed = store.prune_audit(&checkpoint).await?;
    Ok(Pruned {
        removed,
        checkpoint: Some(checkpoint),
    })
}
