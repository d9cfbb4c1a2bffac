//! The model digest: SHA-384 of what the agent serves, streamed.
//!
//! - A file: SHA-384 of its bytes (the same as `sha384sum FILE`).
//! - A directory: SHA-384 over its regular files in byte order of their
//!   relative paths (`/`-separated, UTF-8), each entry
//!   `u32 BE path length ‖ path ‖ SHA-384 of the file`, after the domain
//!   `"attest-gate/model-dir/v1\0"`. Symbolic links (also racing ones: files
//!   are opened with `O_NOFOLLOW`), special files and an empty directory are
//!   refused, and so is a *file* that starts with that domain string, so no
//!   file can have a directory's digest.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use attest_gate_core::ModelDigest;
use aws_lc_rs::digest::{Context, SHA384};

/// Domain separation for directory digests.
pub const DIR_DOMAIN: &[u8] = b"attest-gate/model-dir/v1\0";
/// Files at least this large show progress on a terminal.
const PROGRESS_FROM: u64 = 256 * 1024 * 1024;

/// The model could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Reading failed.
    #[error("{path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Something other than a regular file or a directory.
    #[error("{0}: not a regular file or directory (links and devices are refused)")]
    NotRegular(PathBuf),
    /// A file that could pass for a directory digest's input, or an empty tree.
    #[error("{0}: {1}")]
    Ambiguous(PathBuf, &'static str),
    /// A path that is not UTF-8 cannot be ordered portably.
    #[error("{0}: path is not UTF-8")]
    NotUtf8(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ModelError + '_ {
    move |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The digest of a model file or directory.
pub fn digest(path: &Path) -> Result<ModelDigest, ModelError> {
    let meta = std::fs::symlink_metadata(path).map_err(io(path))?;
    if meta.is_file() {
        hash_file(path)
    } else if meta.is_dir() {
        hash_dir(path)
    } else {
        Err(ModelError::NotRegular(path.to_path_buf()))
    }
}

fn hash_file(path: &Path) -> Result<ModelDigest, ModelError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io(path))?;
    let meta = file.metadata().map_err(io(path))?;
    if !meta.is_file() {
        return Err(ModelError::NotRegular(path.to_path_buf()));
    }
    let len = meta.len();
    let mut ctx = Context::new(&SHA384);
    let mut buf = vec![0u8; 1 << 20];
    let progress = len >= PROGRESS_FROM && std::io::stderr().is_terminal();
    let (mut done, mut shown) = (0u64, 0u64);
    loop {
        let n = file.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        let chunk = buf.get(..n).unwrap_or_default();
        if done == 0 && chunk.starts_with(DIR_DOMAIN) {
            return Err(ModelError::Ambiguous(
                path.to_path_buf(),
                "a model file may not start with the directory-digest domain string",
            ));
        }
        ctx.update(chunk);
        done += n as u64;
        let percent = done.saturating_mul(100) / len.max(1);
        if progress && percent != shown {
            shown = percent;
            let _ = write!(
                std::io::stderr(),
                "\rhashing {}: {percent:3}%",
                path.display()
            );
        }
    }
    if progress {
        let _ = writeln!(std::io::stderr());
    }
    Ok(finish(ctx))
}

fn finish(ctx: Context) -> ModelDigest {
    let mut out = [0u8; 48];
    out.copy_from_slice(ctx.finish().as_ref());
    ModelDigest(out)
}

/// Every regular file below `root`, as (relative path, full path), sorted.
fn files(root: &Path) -> Result<Vec<(String, PathBuf)>, ModelError> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let path = entry.map_err(io(&dir))?.path();
            let meta = std::fs::symlink_metadata(&path).map_err(io(&path))?;
            if meta.is_dir() {
                pending.push(path);
            } else if meta.is_file() {
                let relative = path
                    .strip_prefix(root)
                    .ok()
                    .and_then(Path::to_str)
                    .ok_or_else(|| ModelError::NotUtf8(path.clone()))?
                    .replace(std::path::MAIN_SEPARATOR, "/");
                out.push((relative, path));
            } else {
                return Err(ModelError::NotRegular(path));
            }
        }
    }
    out.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(out)
}

fn hash_dir(root: &Path) -> Result<ModelDigest, ModelError> {
    let mut ctx = Context::new(&SHA384);
    ctx.update(DIR_DOMAIN);
    let files = files(root)?;
    if files.is_empty() {
        return Err(ModelError::Ambiguous(
            root.to_path_buf(),
            "the directory holds no file",
        ));
    }
    for (relative, path) in files {
        let file_digest = hash_file(&path)?;
        let path_len = u32::try_from(relative.len()).unwrap_or(u32::MAX);
        ctx.update(&path_len.to_be_bytes());
        ctx.update(relative.as_bytes());
        ctx.update(&file_digest.0);
    }
    Ok(finish(ctx))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_file_digest_is_plain_sha384() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.bin");
        std::fs::write(&path, b"abc").unwrap();
        // FIPS 180-2 test vector for "abc".
        assert_eq!(
            digest(&path).unwrap().to_hex(),
            "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed\
             8086072ba1e7cc2358baeca134c825a7"
        );
    }

    #[test]
    fn a_directory_digest_depends_on_names_order_and_contents_only() {
        let a = tempfile::tempdir().unwrap();
        std::fs::create_dir(a.path().join("sub")).unwrap();
        std::fs::write(a.path().join("sub/w.bin"), b"weights").unwrap();
        std::fs::write(a.path().join("config.json"), b"{}").unwrap();
        let b = tempfile::tempdir().unwrap();
        // Created in the other order: same digest.
        std::fs::write(b.path().join("config.json"), b"{}").unwrap();
        std::fs::create_dir(b.path().join("sub")).unwrap();
        std::fs::write(b.path().join("sub/w.bin"), b"weights").unwrap();
        assert_eq!(digest(a.path()).unwrap(), digest(b.path()).unwrap());
        // A renamed file or changed byte changes it.
        std::fs::rename(b.path().join("sub/w.bin"), b.path().join("sub/v.bin")).unwrap();
        assert_ne!(digest(a.path()).unwrap(), digest(b.path()).unwrap());
        std::fs::rename(b.path().join("sub/v.bin"), b.path().join("sub/w.bin")).unwrap();
        std::fs::write(b.path().join("sub/w.bin"), b"weightz").unwrap();
        assert_ne!(digest(a.path()).unwrap(), digest(b.path()).unwrap());
    }

    const DIR_VECTOR: &str = "3247353bb5969bde67367773cbc7d9d916fe729c2c7620fa\
                              89aad7936211bd62e7ca767838df8fa2c08757556f681d49";

    /// A fixed vector for the directory format, computed independently
    /// (Python `hashlib`) over `a.txt` = "alpha", `sub/b.bin` = "beta".
    #[test]
    fn the_directory_format_matches_its_test_vector() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a.txt"), b"alpha").unwrap();
        std::fs::write(dir.path().join("sub/b.bin"), b"beta").unwrap();
        assert_eq!(digest(dir.path()).unwrap().to_hex(), DIR_VECTOR);
    }

    #[test]
    fn ambiguous_inputs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(digest(dir.path()), Err(ModelError::Ambiguous(..))));
        let file = dir.path().join("m");
        std::fs::write(&file, [DIR_DOMAIN, b"rest"].concat()).unwrap();
        assert!(matches!(digest(&file), Err(ModelError::Ambiguous(..))));
    }

    #[test]
    fn links_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("real"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("link")).unwrap();
        assert!(matches!(digest(dir.path()), Err(ModelError::NotRegular(_))));
        assert!(matches!(
            digest(&dir.path().join("link")),
            Err(ModelError::NotRegular(_))
        ));
    }
}
