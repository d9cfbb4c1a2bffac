//! Reading evidence, collateral folders and root certificates from disk,
//! with bounded sizes so that no file can exhaust memory.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use attest_gate_core::tdx::import;
use attest_gate_core::{Collateral, MAX_EVIDENCE_FILE_LEN};

/// At most this many files are read from a collateral folder.
const MAX_COLLATERAL_FILES: usize = 64;
/// A single collateral file may be at most this large.
const MAX_COLLATERAL_FILE_LEN: usize = 4 * 1024 * 1024;

/// A file could not be read (exit code 2 territory: not a verdict on evidence).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// A collateral file could not be translated.
    #[error("collateral {path}: {reason}")]
    Collateral {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file could not be opened or read.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than allowed.
    #[error("{path} is larger than {limit} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        limit: usize,
    },
    /// A root certificate file holds no certificate.
    #[error("{path} holds no PEM or DER certificate")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The collateral folder has too many files.
    #[error("{path} has more than {limit} files")]
    TooManyFiles {
        /// The folder.
        path: PathBuf,
        /// The limit.
        limit: usize,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |source| FileError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads at most `limit` bytes; a longer file is an error.
pub(crate) fn read_bounded(path: &Path, limit: usize) -> Result<Vec<u8>, FileError> {
    let file = File::open(path).map_err(io(path))?;
    let mut bytes = Vec::new();
    file.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io(path))?;
    if bytes.len() > limit {
        return Err(FileError::TooLarge {
            path: path.to_owned(),
            limit,
        });
    }
    Ok(bytes)
}

/// Reads an evidence file (raw, hex, base64 or a bundle).
pub fn read_evidence(path: &Path) -> Result<Vec<u8>, FileError> {
    read_bounded(path, MAX_EVIDENCE_FILE_LEN)
}

/// Reads every regular file of a collateral folder, by file name.
///
/// Intel collateral in other common shapes is translated to the canonical
/// TDX names: the file names of Intel's QVL samples (`tcbInfo.json`,
/// `rootCaCrl.der`...) and `dcap-qvl`'s `*QuoteCollateralV3.json`. A file
/// under its canonical name wins over a translated one.
pub fn read_collateral_dir(dir: &Path) -> Result<Collateral, FileError> {
    if dir.is_file() {
        let json = read_bounded(dir, MAX_COLLATERAL_FILE_LEN)?;
        return import::from_quote_collateral_v3(&json)
            .map(Collateral::from_items)
            .map_err(|e| FileError::Collateral {
                path: dir.to_owned(),
                reason: e.to_string(),
            });
    }
    let mut items = Vec::new();
    let mut translated = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        if items.len() == MAX_COLLATERAL_FILES {
            return Err(FileError::TooManyFiles {
                path: dir.to_owned(),
                limit: MAX_COLLATERAL_FILES,
            });
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let bytes = read_bounded(&path, MAX_COLLATERAL_FILE_LEN)?;
        if name.ends_with("QuoteCollateralV3.json") {
            let imported =
                import::from_quote_collateral_v3(&bytes).map_err(|e| FileError::Collateral {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            translated.extend(imported);
        }
        for canonical in import::canonical_names(&name) {
            if *canonical != name {
                translated.push((canonical.to_string(), bytes.clone()));
            }
        }
        items.push((name, bytes));
    }
    // Canonical names are inserted last, so they win.
    Ok(Collateral::from_items(translated.into_iter().chain(items)))
}

/// Reads every certificate of a PEM file (or one DER certificate).
pub fn read_certificates(path: &Path) -> Result<Vec<Vec<u8>>, FileError> {
    let bytes = read_bounded(path, MAX_COLLATERAL_FILE_LEN)?;
    let certs: Vec<Vec<u8>> = pem::parse_many(&bytes)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(pem::Pem::into_contents)
        .collect();
    if !certs.is_empty() {
        return Ok(certs);
    }
    if bytes.first() == Some(&0x30) {
        return Ok(vec![bytes]);
    }
    Err(FileError::NoCertificate {
        path: path.to_owned(),
    })
}
