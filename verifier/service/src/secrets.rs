//! The data directory's secret files: created once, mode 0600 (the directory
//! 0700), never logged. Replicas that share these files share identity: the
//! nonce key (so any replica checks any nonce), the token-signing keys and the
//! CA.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// A data-directory failure.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file exists but does not hold what it should.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The system random generator failed.
    #[error("the system random generator failed")]
    Random,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SecretError + '_ {
    move |source| SecretError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `n` bytes from the system CSPRNG.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], SecretError> {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| SecretError::Random)?;
    Ok(out)
}

/// A random identifier (128 bits, base64url).
pub(crate) fn random_id() -> Result<String, SecretError> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<16>()?))
}

/// An identifier that sorts by when it was made: the instant in
/// milliseconds as 12 hex digits, then 128 random bits (base64url). Rows
/// keyed by it (credentials, sessions, audit records) are appended at the
/// end of their indexes rather than scattered through them, so a commit
/// dirties a few pages however large the store has grown. It says when it
/// was made, which the records it names say anyway.
pub(crate) fn ordered_id(at: time::OffsetDateTime) -> Result<String, SecretError> {
    const MAX_MILLIS: i128 = (1 << 48) - 1;
    let millis = (at.unix_timestamp_nanos() / 1_000_000).clamp(0, MAX_MILLIS);
    Ok(format!("{millis:012x}{}", random_id()?))
}

/// Creates `dir` (and parents) with mode 0700.
pub(crate) fn private_dir(dir: &Path) -> Result<(), SecretError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))
}

/// Writes a new secret file, mode 0600 from the first byte; refuses to
/// overwrite (two replicas starting at once must not clobber each other).
pub(crate) fn write_new_secret(path: &Path, bytes: &[u8]) -> Result<(), SecretError> {
    if let Some(parent) = path.parent() {
        private_dir(parent)?;
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    file.write_all(bytes).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

/// Replaces a secret file atomically (write to a sibling, then rename),
/// and fsyncs the directory so the rename itself survives a crash: a
/// rotated key is never lost to a power cut after the rotation answered.
pub(crate) fn replace_secret(path: &Path, bytes: &[u8]) -> Result<(), SecretError> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    write_new_secret(&tmp, bytes)?;
    fs::rename(&tmp, path).map_err(io(path))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// Creates `path` empty with mode 0600 if it does not exist (the SQLite
/// database, whose WAL and shared-memory files then take the same mode),
/// and tightens an existing one that others may read.
pub(crate) fn create_private_file(path: &Path) -> Result<(), SecretError> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    let mode = fs::metadata(path).map_err(io(path))?.permissions().mode();
    if mode & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io(path))?;
    }
    Ok(())
}

/// Reads a secret file, refusing one that others may read.
pub(crate) fn read_secret(path: &Path) -> Result<Vec<u8>, SecretError> {
    let meta = fs::metadata(path).map_err(io(path))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(SecretError::Invalid {
            path: path.to_path_buf(),
            reason: "readable by group or others; chmod 600 it".into(),
        });
    }
    fs::read(path).map_err(io(path))
}

/// Reads the secret at `path`, or makes one with `generate` and stores it.
/// Returns the bytes and whether they were just generated.
pub(crate) fn load_or_create(
    path: &Path,
    generate: impl FnOnce() -> Result<Vec<u8>, SecretError>,
) -> Result<(Vec<u8>, bool), SecretError> {
    if path.exists() {
        return Ok((read_secret(path)?, false));
    }
    let bytes = generate()?;
    match write_new_secret(path, &bytes) {
        Ok(()) => Ok((bytes, true)),
        // Another process created it first: use theirs.
        Err(SecretError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::AlreadyExists =>
        {
            Ok((read_secret(path)?, false))
        }
        Err(e) => Err(e),
    }
}

/// A bearer secret's SHA-256, as stored (the admin token, relying parties'
/// secrets); the secret itself is shown once, at creation, and never stored.
#[derive(Clone)]
pub(crate) struct SecretHash([u8; 32]);

impl std::fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretHash(..)")
    }
}

impl SecretHash {
    /// The hash of `token`.
    pub(crate) fn of(token: &str) -> Self {
        let mut out = [0u8; 32];
        out.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
        Self(out)
    }

    /// Parses the stored form (64 hex digits).
    pub(crate) fn from_hex(text: &str) -> Option<Self> {
        hex::decode(text.trim())
            .ok()
            .and_then(|v| <[u8; 32]>::try_from(v).ok())
            .map(Self)
    }

    /// The stored form.
    pub(crate) fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Whether `presented` is the secret (constant-time on the hashes).
    pub(crate) fn matches(&self, presented: &str) -> bool {
        verify_slices_are_equal(&Self::of(presented).0, &self.0).is_ok()
    }

    /// Loads `path`, or creates a new token and stores its hash there; a new
    /// token is returned so the caller can show it once.
    pub(crate) fn load_or_create(path: &Path) -> Result<(Self, Option<String>), SecretError> {
        let mut fresh = None;
        let (bytes, _) = load_or_create(path, || {
            let token = format!("agadm_{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()?));
            let hash = hex::encode(Self::of(&token).0);
            fresh = Some(token);
            Ok(hash.into_bytes())
        })?;
        let text = String::from_utf8_lossy(&bytes);
        let hash = Self::from_hex(&text).ok_or_else(|| SecretError::Invalid {
            path: path.to_path_buf(),
            reason: "expected the admin token's SHA-256 as 64 hex digits".into(),
        })?;
        Ok((hash, fresh))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn ordered_ids_sort_by_their_instant_and_never_repeat() {
        let t = time::macros::datetime!(2026-12-06 12:00:00.001 UTC);
        let later = t + time::Duration::milliseconds(1);
        let (a, b, c) = (
            ordered_id(t).unwrap(),
            ordered_id(t).unwrap(),
            ordered_id(later).unwrap(),
        );
        assert_ne!(a, b, "128 random bits follow the instant");
        assert_eq!(a.len(), 34);
        assert!(a < c && b < c, "a later instant sorts after");
        assert!(a.starts_with(&format!("{:012x}", 1_796_558_400_001_u64)));
        // Out-of-range instants clamp rather than wrap.
        let before_epoch = ordered_id(time::macros::datetime!(1969-01-01 0:00 UTC)).unwrap();
        assert!(before_epoch.starts_with("000000000000"));
    }

    #[test]
    fn secrets_are_created_0600_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/one.key");
        let (first, created) = load_or_create(&path, || Ok(b"first".to_vec())).unwrap();
        assert!(created);
        assert_eq!(first, b"first");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        let (again, created) = load_or_create(&path, || Ok(b"second".to_vec())).unwrap();
        assert!(!created);
        assert_eq!(again, b"first");
        assert!(write_new_secret(&path, b"x").is_err());
    }

    #[test]
    fn a_secret_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leaky.key");
        fs::write(&path, b"secret").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            read_secret(&path),
            Err(SecretError::Invalid { .. })
        ));
    }

    #[test]
    fn the_admin_token_is_shown_once_and_only_its_hash_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin-token.sha256");
        let (hash, token) = SecretHash::load_or_create(&path).unwrap();
        let token = token.unwrap();
        assert!(hash.matches(&token));
        assert!(!hash.matches("agadm_wrong"));
        assert!(!fs::read_to_string(&path).unwrap().contains(&token));
        let (again, shown) = SecretHash::load_or_create(&path).unwrap();
        assert!(shown.is_none());
        assert!(again.matches(&token));
    }
}
