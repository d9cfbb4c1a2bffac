//! Secrets at rest: AES-256-GCM under a key-encryption key (KEK) kept in the
//! data directory's key folder (`secrets.kek`, 0600), with the secret's name
//! and version as additional data, so no stored row opens as another. The
//! database only ever holds sealed bytes. [`Sealer`] is the seam for an
//! external KMS later: the service needs only `seal`, `open` and an ID.

use std::path::Path;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::digest::{digest, SHA256};
use zeroize::Zeroizing;

use crate::secrets::{self, SecretError};

/// Domain separation for the additional data.
const AAD_DOMAIN: &[u8] = b"attest-gate/secret/v1\0";

/// Sealing or opening failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum VaultError {
    /// The random generator or the cipher failed.
    #[error("sealing failed")]
    Seal,
    /// The bytes do not open under this key for this name and version.
    #[error("a stored secret does not open under the key-encryption key")]
    Open,
}

/// Seals and opens secrets for one name and version.
pub(crate) trait Sealer: Send + Sync {
    /// Which key seals (stored beside each row).
    fn id(&self) -> &str;
    /// Nonce ‖ ciphertext ‖ tag.
    fn seal(&self, name: &str, version: i64, plaintext: &[u8]) -> Result<Vec<u8>, VaultError>;
    /// The plaintext, zeroized when dropped.
    fn open(
        &self,
        name: &str,
        version: i64,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError>;
}

/// A KEK in a local file.
pub(crate) struct LocalKek {
    key: LessSafeKey,
    id: String,
}

impl std::fmt::Debug for LocalKek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LocalKek({})", self.id)
    }
}

fn aad(name: &str, version: i64) -> Vec<u8> {
    [AAD_DOMAIN, name.as_bytes(), &[0], &version.to_be_bytes()].concat()
}

impl LocalKek {
    /// Loads `path`, creating 32 random bytes (0600) on first start.
    pub(crate) fn load_or_create(path: &Path) -> Result<Self, SecretError> {
        let (bytes, _) =
            secrets::load_or_create(path, || Ok(secrets::random_bytes::<32>()?.to_vec()))?;
        let bytes = Zeroizing::new(bytes);
        let key = UnboundKey::new(&AES_256_GCM, &bytes)
            .map(LessSafeKey::new)
            .map_err(|_| SecretError::Invalid {
                path: path.to_path_buf(),
                reason: "not a 32-byte key".into(),
            })?;
        // Names the key without revealing it: a hash under its own label.
        let id = hex::encode(digest(
            &SHA256,
            &[b"attest-gate/kek-id\0", &bytes[..]].concat(),
        ))
        .chars()
        .take(16)
        .collect();
        Ok(Self { key, id })
    }
}

impl Sealer for LocalKek {
    fn id(&self) -> &str {
        &self.id
    }

    fn seal(&self, name: &str, version: i64, plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
        let nonce: [u8; NONCE_LEN] = secrets::random_bytes().map_err(|_| VaultError::Seal)?;
        let mut out = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(name, version)),
                &mut out,
            )
            .map_err(|_| VaultError::Seal)?;
        Ok([&nonce[..], &out].concat())
    }

    fn open(
        &self,
        name: &str,
        version: i64,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let (nonce, body) = sealed.split_at_checked(NONCE_LEN).ok_or(VaultError::Open)?;
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| VaultError::Open)?;
        let mut body = Zeroizing::new(body.to_vec());
        let len = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(name, version)),
                &mut body,
            )
            .map_err(|_| VaultError::Open)?
            .len();
        body.truncate(len);
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn sealed_bytes_open_only_for_their_name_version_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.kek");
        let kek = LocalKek::load_or_create(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let sealed = kek.seal("db", 1, b"hunter2").unwrap();
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(&kek.open("db", 1, &sealed).unwrap()[..], b"hunter2");
        assert!(kek.open("db", 2, &sealed).is_err());
        assert!(kek.open("dc", 1, &sealed).is_err());
        assert!(kek.open("db", 1, &sealed[..5]).is_err());
        let mut edited = sealed.clone();
        edited[20] ^= 1;
        assert!(kek.open("db", 1, &edited).is_err());
        // The same file gives the same key; another file another.
        let again = LocalKek::load_or_create(&path).unwrap();
        assert_eq!(again.id(), kek.id());
        assert_eq!(&again.open("db", 1, &sealed).unwrap()[..], b"hunter2");
        let other = LocalKek::load_or_create(&dir.path().join("other.kek")).unwrap();
        assert_ne!(other.id(), kek.id());
        assert!(other.open("db", 1, &sealed).is_err());
    }
}
