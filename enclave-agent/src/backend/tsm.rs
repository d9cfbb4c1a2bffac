//! Linux configfs-tsm (`Documentation/ABI/testing/configfs-tsm`): one report
//! per directory under `/sys/kernel/config/tsm/report/`. Write the 64 bytes
//! to `inblob`, read `outblob` (the TDX quote or SNP report) and, for SNP,
//! `auxblob` (the certificate table); `provider` names the TEE. `generation`
//! counts the writes to the directory: after reading the blobs it must equal
//! the number of writes this process made (one, `inblob`, in a directory it
//! just created with a random name), or another writer raced on it.

use std::fs;
use std::path::{Path, PathBuf};

use attest_gate_core::TeeKind;

use super::{BackendError, Evidence, EvidenceSource, Request};

/// Where configfs-tsm lives.
pub const ROOT: &str = "/sys/kernel/config/tsm/report";
/// `generation` after this process's one write (`inblob`).
const WRITES_MADE: &str = "1";
/// Largest blob read (a TDX quote is ~5 KiB, SNP certificates a few KiB).
const MAX_BLOB: u64 = 1024 * 1024;

fn failed(reason: impl std::fmt::Display) -> BackendError {
    BackendError::Failed {
        interface: "configfs-tsm",
        reason: reason.to_string(),
    }
}

/// The configfs-tsm interface.
#[derive(Debug, Clone)]
pub struct Tsm {
    root: PathBuf,
    forced: Option<TeeKind>,
}

/// The TEE a configfs-tsm `provider` names.
pub fn provider_tee(provider: &str) -> Option<TeeKind> {
    match provider.trim() {
        "tdx_guest" => Some(TeeKind::Tdx),
        "sev_guest" => Some(TeeKind::Snp),
        _ => None,
    }
}

/// Reads at most `MAX_BLOB` bytes (configfs reports no real size, so the
/// bound is on what is read, not on `st_size`).
fn read_bounded(path: &Path) -> Result<Vec<u8>, BackendError> {
    use std::io::Read;
    let file = fs::File::open(path).map_err(|e| failed(format!("{}: {e}", path.display())))?;
    let mut bytes = Vec::new();
    file.take(MAX_BLOB + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| failed(format!("{}: {e}", path.display())))?;
    if bytes.len() as u64 > MAX_BLOB {
        return Err(failed(format!(
            "{} is larger than {MAX_BLOB} bytes",
            path.display()
        )));
    }
    Ok(bytes)
}

fn read_text(path: &Path) -> Result<String, BackendError> {
    Ok(String::from_utf8_lossy(&read_bounded(path)?)
        .trim()
        .to_string())
}

impl Tsm {
    /// The interface rooted at `root` (normally [`ROOT`]); `forced` is the
    /// TEE the user named, checked against each report's `provider`.
    pub fn new(root: &Path, forced: Option<TeeKind>) -> Self {
        Self {
            root: root.to_path_buf(),
            forced,
        }
    }

    /// Makes a report directory once to read its `provider`.
    pub fn detect_tee(&self) -> Result<TeeKind, BackendError> {
        let entry = self.create_entry()?;
        let result = read_text(&entry.join("provider")).and_then(|p| {
            provider_tee(&p).ok_or_else(|| failed(format!("unknown provider {p:?}")))
        });
        let _ = fs::remove_dir(&entry);
        result
    }

    fn create_entry(&self) -> Result<PathBuf, BackendError> {
        let mut random = [0u8; 8];
        aws_lc_rs::rand::fill(&mut random).map_err(|_| failed("random generator failed"))?;
        let entry = self.root.join(format!(
            "attest-gate-{}-{}",
            std::process::id(),
            hex::encode(random)
        ));
        fs::create_dir(&entry).map_err(|e| failed(format!("{}: {e}", entry.display())))?;
        Ok(entry)
    }

    /// One report from an existing report directory `entry` (what configfs
    /// creates on `mkdir`): the steps, without the `mkdir` / `rmdir`.
    pub fn report_at(&self, entry: &Path, request: &Request<'_>) -> Result<Evidence, BackendError> {
        let provider = read_text(&entry.join("provider"))?;
        let tee = provider_tee(&provider)
            .ok_or_else(|| failed(format!("unknown provider {provider:?}")))?;
        if let Some(forced) = self.forced {
            if forced != tee {
                return Err(failed(format!(
                    "--tee {forced}, but the provider is {provider}"
                )));
            }
        }
        fs::write(entry.join("inblob"), request.report_data)
            .map_err(|e| failed(format!("inblob: {e}")))?;
        let mut bytes = read_bounded(&entry.join("outblob"))?;
        let aux = entry.join("auxblob");
        let certificates = if tee == TeeKind::Snp && aux.exists() {
            read_bounded(&aux)?
        } else {
            Vec::new()
        };
        let generation = read_text(&entry.join("generation"))?;
        if generation != WRITES_MADE {
            return Err(failed(
                "another process wrote to the same report while it was read (generation changed)",
            ));
        }
        if bytes.is_empty() {
            return Err(failed("the provider returned an empty report"));
        }
        // The verifier reads an SNP report followed by its certificate table
        // as one extended report.
        bytes.extend_from_slice(&certificates);
        Ok(Evidence {
            tee,
            bytes,
            collateral: Vec::new(),
        })
    }
}

impl EvidenceSource for Tsm {
    fn evidence(&self, request: &Request<'_>) -> Result<Evidence, BackendError> {
        let entry = self.create_entry()?;
        let result = self.report_at(&entry, request);
        // configfs reports are removed with rmdir (their attributes go with it).
        let _ = fs::remove_dir(&entry);
        result
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A report directory as configfs presents it after `mkdir`.
    fn fake_entry(provider: &str, outblob: &[u8], auxblob: Option<&[u8]>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("provider"), format!("{provider}\n")).unwrap();
        fs::write(dir.path().join("generation"), "1\n").unwrap();
        fs::write(dir.path().join("outblob"), outblob).unwrap();
        if let Some(aux) = auxblob {
            fs::write(dir.path().join("auxblob"), aux).unwrap();
        }
        dir
    }

    fn request() -> Request<'static> {
        Request {
            report_data: [0xab; 64],
            nonce: b"n",
            public_key: b"k",
        }
    }

    #[test]
    fn a_tdx_report_writes_inblob_and_reads_the_quote() {
        let entry = fake_entry("tdx_guest", b"QUOTE", None);
        let tsm = Tsm::new(Path::new("/nonexistent"), None);
        let evidence = tsm.report_at(entry.path(), &request()).unwrap();
        assert_eq!(evidence.tee, TeeKind::Tdx);
        assert_eq!(evidence.bytes, b"QUOTE");
        assert_eq!(fs::read(entry.path().join("inblob")).unwrap(), [0xab; 64]);
    }

    #[test]
    fn an_snp_report_carries_its_certificate_table() {
        let entry = fake_entry("sev_guest", b"REPORT", Some(b"CERTS"));
        let tsm = Tsm::new(Path::new("/nonexistent"), Some(TeeKind::Snp));
        let evidence = tsm.report_at(entry.path(), &request()).unwrap();
        assert_eq!(evidence.tee, TeeKind::Snp);
        assert_eq!(evidence.bytes, b"REPORTCERTS");
    }

    #[test]
    fn a_racing_writer_is_detected_by_the_generation_count() {
        let entry = fake_entry("tdx_guest", b"QUOTE", None);
        fs::write(entry.path().join("generation"), "2\n").unwrap();
        let tsm = Tsm::new(Path::new("/nonexistent"), None);
        let error = tsm.report_at(entry.path(), &request()).unwrap_err();
        assert!(error.to_string().contains("generation"), "{error}");
    }

    #[test]
    fn wrong_provider_unknown_provider_and_empty_report_are_errors() {
        let entry = fake_entry("tdx_guest", b"QUOTE", None);
        let forced_snp = Tsm::new(Path::new("/nonexistent"), Some(TeeKind::Snp));
        assert!(forced_snp.report_at(entry.path(), &request()).is_err());
        let entry = fake_entry("arm_cca_guest", b"X", None);
        let tsm = Tsm::new(Path::new("/nonexistent"), None);
        assert!(tsm.report_at(entry.path(), &request()).is_err());
        let entry = fake_entry("tdx_guest", b"", None);
        assert!(tsm.report_at(entry.path(), &request()).is_err());
    }

    #[test]
    fn the_report_directory_is_made_and_removed() {
        // A plain directory stands in for configfs: mkdir succeeds, but no
        // attributes appear, so the report fails — and the entry is removed.
        let root = tempfile::tempdir().unwrap();
        let tsm = Tsm::new(root.path(), None);
        assert!(tsm.evidence(&request()).is_err());
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 0);
    }
}
