//! Linux configfs-tsm (`Documentation/ABI/testing/configfs-tsm`): one report
//! per directory under `/sys/kernel/config/tsm/report/`. Write the 64 bytes
//! to `inblob`, read `outblob` (the TDX quote or SNP report) and, for SNP,
//! `auxblob` (the certificate table); `provider` names the TEE. `generation`
//! counts the writes to the directory: after reading the blobs it must equal
//! the number of writes this process made (`privlevel` when the provider has
//! privilege levels, then `inblob`, in a directory it just created with a
//! random name), or another writer raced on it.
//!
//! SEV-SNP privilege levels (VMPLs): a guest under an SVSM or paravisor runs
//! above VMPL 0, and the firmware refuses reports for a more privileged
//! level than the guest's. The provider's `privlevel_floor` is the lowest
//! level it may ask for; `privlevel` is written (the floor, or `--vmpl`,
//! which may not be below it) before `outblob` is read.
//!
//! With configfs-tsm but no TEE driver behind it, making a report entry
//! fails with ENXIO (the kernel's `tsm_report_make_item`), and so do the
//! attributes of an entry whose driver went away since:
//! [`TsmError::NoProvider`], which detection passes over.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use attest_gate_core::snp::REPORT_LEN;
use attest_gate_core::TeeKind;

use super::check;
use super::{BackendError, Evidence, EvidenceSource, Request};

/// Where configfs-tsm lives.
pub const ROOT: &str = "/sys/kernel/config/tsm/report";
/// Largest blob read (a TDX quote is ~5 KiB, SNP certificates a few KiB).
const MAX_BLOB: u64 = 1024 * 1024;
/// `TSM_PRIVLEVEL_MAX`: SEV-SNP has VMPLs 0 to 3.
pub const MAX_PRIVLEVEL: u8 = 3;
/// This interface's name in errors.
const INTERFACE: &str = "configfs-tsm";

/// configfs-tsm failed, or gave something other than a report.
#[derive(Debug, thiserror::Error)]
pub enum TsmError {
    /// configfs-tsm is there but no TEE driver provides reports (ENXIO).
    #[error("no provider is registered (ENXIO): the kernel has configfs-tsm but no TEE driver behind it")]
    NoProvider,
    /// A report entry could not be made (`mkdir`).
    #[error("cannot create a report entry under {root}: {error}")]
    Entry {
        /// The configfs-tsm root.
        root: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// Reading or writing an attribute failed.
    #[error("{file}: {error}")]
    Io {
        /// The attribute.
        file: &'static str,
        /// Why.
        error: io::Error,
    },
    /// An attribute is larger than any report.
    #[error("{0} is larger than {MAX_BLOB} bytes")]
    TooLarge(&'static str),
    /// The random generator failed (for the entry's name).
    #[error("the random generator failed")]
    Random,
    /// A `provider` this agent does not know.
    #[error("unknown provider {0:?}")]
    UnknownProvider(String),
    /// `--tee` names another TEE than the provider.
    #[error("--tee {forced}, but the provider is {provider}")]
    WrongProvider {
        /// What was forced.
        forced: TeeKind,
        /// What the provider is.
        provider: String,
    },
    /// `privlevel_floor` is not a privilege level.
    #[error("privlevel_floor {0:?} is not a privilege level (0 to {MAX_PRIVLEVEL})")]
    BadFloor(String),
    /// `--vmpl` asks for a level the provider refuses.
    #[error("--vmpl {asked} is below the provider's privlevel_floor {floor}")]
    BelowFloor {
        /// What was asked for.
        asked: u8,
        /// The provider's floor.
        floor: u8,
    },
    /// `--vmpl` was given but the SNP provider offers no privilege levels.
    #[error("--vmpl {0}, but the provider offers no privilege levels (no privlevel_floor)")]
    NoPrivlevels(u8),
    /// `generation` is not the number of writes made: another writer raced.
    #[error("another process wrote to the same report while it was read (generation {found:?}, {expected} writes made)")]
    Raced {
        /// What `generation` says.
        found: String,
        /// The writes this process made.
        expected: u32,
    },
    /// `outblob` is empty.
    #[error("the provider returned an empty report")]
    Empty,
    /// An SNP `outblob` is not exactly one report (the certificate table
    /// is appended to it, so its end must be where the report ends).
    #[error("the SNP report (outblob) is {0} bytes, expected {REPORT_LEN}")]
    ReportLength(usize),
}

fn tsm(error: TsmError) -> BackendError {
    BackendError::Tsm(error)
}

/// configfs-tsm's ENXIO is "no provider"; any other error is `otherwise`'s.
fn classify(error: io::Error, otherwise: impl FnOnce(io::Error) -> TsmError) -> BackendError {
    tsm(if error.raw_os_error() == Some(libc::ENXIO) {
        TsmError::NoProvider
    } else {
        otherwise(error)
    })
}

/// An attribute's I/O error.
fn io_error(file: &'static str) -> impl FnOnce(io::Error) -> BackendError {
    move |error| classify(error, |error| TsmError::Io { file, error })
}

/// A report entry's `mkdir` error.
fn entry_error(root: &Path) -> impl FnOnce(io::Error) -> BackendError + '_ {
    move |error| {
        classify(error, |error| TsmError::Entry {
            root: root.to_path_buf(),
            error,
        })
    }
}

/// The configfs-tsm interface.
#[derive(Debug, Clone)]
pub struct Tsm {
    root: PathBuf,
    forced: Option<TeeKind>,
    vmpl: Option<u8>,
}

/// The TEE a configfs-tsm `provider` names.
pub fn provider_tee(provider: &str) -> Option<TeeKind> {
    match provider.trim() {
        "tdx_guest" => Some(TeeKind::Tdx),
        "sev_guest" => Some(TeeKind::Snp),
        _ => None,
    }
}

/// Reads at most `MAX_BLOB` bytes of `entry/file` (configfs reports no real
/// size, so the bound is on what is read, not on `st_size`).
fn read_bounded(entry: &Path, file: &'static str) -> Result<Vec<u8>, BackendError> {
    use std::io::Read;
    let handle = fs::File::open(entry.join(file)).map_err(io_error(file))?;
    let mut bytes = Vec::new();
    handle
        .take(MAX_BLOB + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error(file))?;
    if bytes.len() as u64 > MAX_BLOB {
        return Err(tsm(TsmError::TooLarge(file)));
    }
    Ok(bytes)
}

fn read_text(entry: &Path, file: &'static str) -> Result<String, BackendError> {
    Ok(String::from_utf8_lossy(&read_bounded(entry, file)?)
        .trim()
        .to_string())
}

fn write(entry: &Path, file: &'static str, bytes: &[u8]) -> Result<(), BackendError> {
    // configfs attributes exist already: open for writing, never create.
    use std::io::Write;
    fs::OpenOptions::new()
        .write(true)
        .open(entry.join(file))
        .and_then(|mut f| f.write_all(bytes))
        .map_err(io_error(file))
}

/// The TEE `entry`'s `provider` names.
fn provider_of(entry: &Path) -> Result<(TeeKind, String), BackendError> {
    let provider = read_text(entry, "provider")?;
    match provider_tee(&provider) {
        Some(tee) => Ok((tee, provider)),
        None => Err(tsm(TsmError::UnknownProvider(provider))),
    }
}

impl Tsm {
    /// The interface rooted at `root` (normally [`ROOT`]); `forced` is the
    /// TEE the user named, checked against each report's `provider`;
    /// `vmpl` the SEV-SNP privilege level asked for (default: the floor).
    pub fn new(root: &Path, forced: Option<TeeKind>, vmpl: Option<u8>) -> Self {
        Self {
            root: root.to_path_buf(),
            forced,
            vmpl,
        }
    }

    /// Makes a report directory once to read its `provider`.
    pub fn detect_tee(&self) -> Result<TeeKind, BackendError> {
        let entry = self.create_entry()?;
        let result = provider_of(&entry).map(|(tee, _)| tee);
        let _ = fs::remove_dir(&entry);
        result
    }

    fn create_entry(&self) -> Result<PathBuf, BackendError> {
        let mut random = [0u8; 8];
        aws_lc_rs::rand::fill(&mut random).map_err(|_| tsm(TsmError::Random))?;
        let entry = self.root.join(format!(
            "attest-gate-{}-{}",
            std::process::id(),
            hex::encode(random)
        ));
        fs::create_dir(&entry).map_err(entry_error(&self.root))?;
        Ok(entry)
    }

    /// The privilege level to write for a `tee` report, if it has levels
    /// (SEV-SNP's VMPLs; TDX has none, and `--vmpl` means nothing there, as
    /// on the TDX device): `--vmpl` if given (not below the floor), else the
    /// floor. An SNP provider without `privlevel_floor` (older kernels)
    /// reports at VMPL 0 and cannot honour another `--vmpl`.
    fn privlevel(&self, entry: &Path, tee: TeeKind) -> Result<Option<u8>, BackendError> {
        if tee != TeeKind::Snp {
            return Ok(None);
        }
        if !entry.join("privlevel_floor").exists() {
            return match self.vmpl {
                Some(asked) if asked != 0 => Err(tsm(TsmError::NoPrivlevels(asked))),
                _ => Ok(None),
            };
        }
        let text = read_text(entry, "privlevel_floor")?;
        let floor = text
            .parse::<u8>()
            .ok()
            .filter(|&f| f <= MAX_PRIVLEVEL)
            .ok_or(tsm(TsmError::BadFloor(text)))?;
        match self.vmpl {
            Some(asked) if asked < floor => Err(tsm(TsmError::BelowFloor { asked, floor })),
            Some(asked) => Ok(Some(asked)),
            None => Ok(Some(floor)),
        }
    }

    /// One report from an existing report directory `entry` (what configfs
    /// creates on `mkdir`): the steps, without the `mkdir` / `rmdir`.
    pub fn report_at(&self, entry: &Path, request: &Request<'_>) -> Result<Evidence, BackendError> {
        let (tee, provider) = provider_of(entry)?;
        if let Some(forced) = self.forced {
            if forced != tee {
                return Err(tsm(TsmError::WrongProvider { forced, provider }));
            }
        }
        let mut writes = 0u32;
        if let Some(level) = self.privlevel(entry, tee)? {
            write(entry, "privlevel", level.to_string().as_bytes())?;
            writes += 1;
        }
        write(entry, "inblob", &request.report_data)?;
        writes += 1;
        let mut bytes = read_bounded(entry, "outblob")?;
        let certificates = if tee == TeeKind::Snp && entry.join("auxblob").exists() {
            read_bounded(entry, "auxblob")?
        } else {
            Vec::new()
        };
        let generation = read_text(entry, "generation")?;
        if generation != writes.to_string() {
            return Err(tsm(TsmError::Raced {
                found: generation,
                expected: writes,
            }));
        }
        if bytes.is_empty() {
            return Err(tsm(TsmError::Empty));
        }
        let checked = match tee {
            TeeKind::Snp if bytes.len() != REPORT_LEN => {
                return Err(tsm(TsmError::ReportLength(bytes.len())))
            }
            TeeKind::Snp => check::snp_report(&bytes, &request.report_data),
            TeeKind::Tdx => check::tdx_quote(&bytes, &request.report_data),
            // `provider_tee` names no other TEE.
            TeeKind::Nitro => return Err(tsm(TsmError::UnknownProvider(provider))),
        };
        checked.map_err(BackendError::check(INTERFACE))?;
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
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::backend::check::{Bound, CheckError};
    use attest_gate_forge::tdx::{QuoteSpec, TdxSpec};

    /// A report directory as configfs presents it after `mkdir`: the
    /// attributes exist (empty `inblob`), `generation` as it will read after
    /// the agent's one write.
    fn fake_entry(provider: &str, outblob: &[u8], auxblob: Option<&[u8]>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("provider"), format!("{provider}\n")).unwrap();
        fs::write(dir.path().join("generation"), "1\n").unwrap();
        fs::write(dir.path().join("inblob"), b"").unwrap();
        fs::write(dir.path().join("outblob"), outblob).unwrap();
        if let Some(aux) = auxblob {
            fs::write(dir.path().join("auxblob"), aux).unwrap();
        }
        dir
    }

    /// What an SEV-SNP provider adds: `privlevel_floor` and `privlevel`
    /// (and `generation` then counts two writes).
    fn with_floor(entry: &tempfile::TempDir, floor: &str) {
        fs::write(entry.path().join("privlevel_floor"), format!("{floor}\n")).unwrap();
        fs::write(entry.path().join("privlevel"), b"").unwrap();
        fs::write(entry.path().join("generation"), "2\n").unwrap();
    }

    fn request() -> Request<'static> {
        Request {
            report_data: [0xab; 64],
            nonce: b"n",
            public_key: b"k",
        }
    }

    fn quote(report_data: [u8; 64]) -> Vec<u8> {
        TdxSpec {
            quote: QuoteSpec {
                report_data,
                ..QuoteSpec::valid()
            },
            ..TdxSpec::default()
        }
        .forge()
        .unwrap()
        .0
    }

    /// An SNP report with `report_data` and `len` bytes.
    fn snp_report(report_data: [u8; 64], len: usize) -> Vec<u8> {
        let mut report = vec![0x5a; len];
        if let Some(field) = report.get_mut(check::SNP_REPORT_DATA) {
            field.copy_from_slice(&report_data);
        }
        report
    }

    fn tsm_error(result: Result<Evidence, BackendError>) -> TsmError {
        match result {
            Err(BackendError::Tsm(e)) => e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_tdx_report_writes_inblob_and_reads_the_quote() {
        let bytes = quote([0xab; 64]);
        let entry = fake_entry("tdx_guest", &bytes, None);
        let tsm = Tsm::new(Path::new("/nonexistent"), None, None);
        let evidence = tsm.report_at(entry.path(), &request()).unwrap();
        assert_eq!(evidence.tee, TeeKind::Tdx);
        assert_eq!(evidence.bytes, bytes);
        assert_eq!(fs::read(entry.path().join("inblob")).unwrap(), [0xab; 64]);
    }

    #[test]
    fn an_snp_report_carries_its_certificate_table() {
        let report = snp_report([0xab; 64], REPORT_LEN);
        let entry = fake_entry("sev_guest", &report, Some(b"CERTS"));
        with_floor(&entry, "0");
        let tsm = Tsm::new(Path::new("/nonexistent"), Some(TeeKind::Snp), None);
        let evidence = tsm.report_at(entry.path(), &request()).unwrap();
        assert_eq!(evidence.tee, TeeKind::Snp);
        assert_eq!(evidence.bytes, [&report[..], b"CERTS"].concat());
    }

    #[test]
    fn a_report_with_other_report_data_is_refused_before_sending() {
        let tsm = Tsm::new(Path::new("/nonexistent"), None, None);
        let entry = fake_entry("tdx_guest", &quote([0xcd; 64]), None);
        assert!(matches!(
            tsm.report_at(entry.path(), &request()),
            Err(BackendError::Check {
                check: CheckError::Mismatch(Bound::ReportData),
                ..
            })
        ));
        let entry = fake_entry("sev_guest", &snp_report([0xcd; 64], REPORT_LEN), None);
        with_floor(&entry, "0");
        assert!(matches!(
            tsm.report_at(entry.path(), &request()),
            Err(BackendError::Check {
                check: CheckError::Mismatch(Bound::ReportData),
                ..
            })
        ));
        // Not a quote at all.
        let entry = fake_entry("tdx_guest", b"QUOTE", None);
        assert!(matches!(
            tsm.report_at(entry.path(), &request()),
            Err(BackendError::Check {
                check: CheckError::Quote(_),
                ..
            })
        ));
    }

    #[test]
    fn an_snp_outblob_must_be_exactly_one_report() {
        let tsm = Tsm::new(Path::new("/nonexistent"), None, None);
        for len in [REPORT_LEN - 1, REPORT_LEN + 1, 0x90] {
            let entry = fake_entry("sev_guest", &snp_report([0xab; 64], len), Some(b"CERTS"));
            with_floor(&entry, "0");
            let error = tsm_error(tsm.report_at(entry.path(), &request()));
            assert!(
                matches!(error, TsmError::ReportLength(n) if n == len),
                "{error}"
            );
        }
    }

    #[test]
    fn privlevel_is_written_as_the_floor_before_outblob_is_read() {
        let report = snp_report([0xab; 64], REPORT_LEN);
        for floor in ["0", "2"] {
            let entry = fake_entry("sev_guest", &report, None);
            with_floor(&entry, floor);
            let tsm = Tsm::new(Path::new("/nonexistent"), None, None);
            tsm.report_at(entry.path(), &request()).unwrap();
            assert_eq!(
                fs::read_to_string(entry.path().join("privlevel")).unwrap(),
                floor
            );
        }
        // --vmpl above the floor is written as asked; below it, refused
        // before anything is written.
        let entry = fake_entry("sev_guest", &report, None);
        with_floor(&entry, "2");
        let tsm = Tsm::new(Path::new("/nonexistent"), None, Some(3));
        tsm.report_at(entry.path(), &request()).unwrap();
        assert_eq!(
            fs::read_to_string(entry.path().join("privlevel")).unwrap(),
            "3"
        );
        let entry = fake_entry("sev_guest", &report, None);
        with_floor(&entry, "2");
        let tsm = Tsm::new(Path::new("/nonexistent"), None, Some(1));
        let error = tsm_error(tsm.report_at(entry.path(), &request()));
        assert!(matches!(error, TsmError::BelowFloor { asked: 1, floor: 2 }));
        assert_eq!(fs::read(entry.path().join("privlevel")).unwrap(), b"");
        assert_eq!(fs::read(entry.path().join("inblob")).unwrap(), b"");
    }

    #[test]
    fn without_privilege_levels_privlevel_is_not_written() {
        // TDX has no privilege levels: one write, `inblob`, whatever --vmpl
        // says (it is SEV-SNP's).
        for vmpl in [None, Some(2)] {
            let entry = fake_entry("tdx_guest", &quote([0xab; 64]), None);
            let tsm = Tsm::new(Path::new("/nonexistent"), None, vmpl);
            tsm.report_at(entry.path(), &request()).unwrap();
            assert!(!entry.path().join("privlevel").exists());
        }
        // An SNP provider without privlevel_floor reports at VMPL 0...
        let report = snp_report([0xab; 64], REPORT_LEN);
        let entry = fake_entry("sev_guest", &report, None);
        let tsm = Tsm::new(Path::new("/nonexistent"), None, Some(0));
        tsm.report_at(entry.path(), &request()).unwrap();
        assert!(!entry.path().join("privlevel").exists());
        // ...and cannot honour another --vmpl.
        let tsm = Tsm::new(Path::new("/nonexistent"), None, Some(2));
        let error = tsm_error(tsm.report_at(entry.path(), &request()));
        assert!(matches!(error, TsmError::NoPrivlevels(2)), "{error}");
    }

    #[test]
    fn a_bad_floor_is_refused() {
        for floor in ["4", "-1", "x", ""] {
            let entry = fake_entry("sev_guest", &snp_report([0xab; 64], REPORT_LEN), None);
            with_floor(&entry, floor);
            let tsm = Tsm::new(Path::new("/nonexistent"), None, None);
            let error = tsm_error(tsm.report_at(entry.path(), &request()));
            assert!(matches!(error, TsmError::BadFloor(_)), "{floor}: {error}");
        }
    }

    #[test]
    fn enxio_on_mkdir_is_no_provider() {
        // What `mkdir` under /sys/kernel/config/tsm/report returns when no
        // TEE driver is registered.
        let root = Path::new(ROOT);
        let enxio = io::Error::from_raw_os_error(libc::ENXIO);
        assert!(matches!(
            entry_error(root)(enxio),
            BackendError::Tsm(TsmError::NoProvider)
        ));
        let eacces = io::Error::from_raw_os_error(libc::EACCES);
        assert!(matches!(
            entry_error(root)(eacces),
            BackendError::Tsm(TsmError::Entry { .. })
        ));
        // A root where mkdir fails otherwise (here: it does not exist) is
        // not "no provider": detection does not pass over it.
        let tsm = Tsm::new(Path::new("/nonexistent/tsm/report"), None, None);
        assert!(matches!(
            tsm.detect_tee(),
            Err(BackendError::Tsm(TsmError::Entry { .. }))
        ));
    }

    #[test]
    fn no_provider_is_its_own_error() {
        // configfs answers ENXIO on the attributes of an entry whose TEE
        // driver went away; opening a Unix socket gives the same errno, so
        // one stands in for the attribute.
        let entry = fake_entry("tdx_guest", &quote([0xab; 64]), None);
        fs::remove_file(entry.path().join("provider")).unwrap();
        let _provider =
            std::os::unix::net::UnixListener::bind(entry.path().join("provider")).unwrap();
        let tsm = Tsm::new(Path::new("/nonexistent"), None, None);
        let error = tsm_error(tsm.report_at(entry.path(), &request()));
        assert!(matches!(error, TsmError::NoProvider), "{error}");
        assert!(matches!(
            provider_of(entry.path()),
            Err(BackendError::Tsm(TsmError::NoProvider))
        ));
        // Writing `inblob` too.
        let entry = fake_entry("tdx_guest", &quote([0xab; 64]), None);
        fs::remove_file(entry.path().join("inblob")).unwrap();
        let _inblob = std::os::unix::net::UnixListener::bind(entry.path().join("inblob")).unwrap();
        let error = tsm_error(tsm.report_at(entry.path(), &request()));
        assert!(matches!(error, TsmError::NoProvider), "{error}");
    }

    #[test]
    fn a_racing_writer_is_detected_by_the_generation_count() {
        let entry = fake_entry("tdx_guest", &quote([0xab; 64]), None);
        fs::write(entry.path().join("generation"), "2\n").unwrap();
        let tsm = Tsm::new(Path::new("/nonexistent"), None, None);
        let error = tsm_error(tsm.report_at(entry.path(), &request()));
        assert!(
            matches!(error, TsmError::Raced { expected: 1, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("generation"), "{error}");
    }

    #[test]
    fn wrong_provider_unknown_provider_and_empty_report_are_errors() {
        let entry = fake_entry("tdx_guest", &quote([0xab; 64]), None);
        let forced_snp = Tsm::new(Path::new("/nonexistent"), Some(TeeKind::Snp), None);
        assert!(matches!(
            tsm_error(forced_snp.report_at(entry.path(), &request())),
            TsmError::WrongProvider { .. }
        ));
        let entry = fake_entry("arm_cca_guest", b"X", None);
        let tsm = Tsm::new(Path::new("/nonexistent"), None, None);
        assert!(matches!(
            tsm_error(tsm.report_at(entry.path(), &request())),
            TsmError::UnknownProvider(_)
        ));
        let entry = fake_entry("tdx_guest", b"", None);
        assert!(matches!(
            tsm_error(tsm.report_at(entry.path(), &request())),
            TsmError::Empty
        ));
    }

    #[test]
    fn the_report_directory_is_made_and_removed() {
        // A plain directory stands in for configfs: mkdir succeeds, but no
        // attributes appear, so the report fails — and the entry is removed.
        let root = tempfile::tempdir().unwrap();
        let tsm = Tsm::new(root.path(), None, None);
        assert!(tsm.evidence(&request()).is_err());
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 0);
    }
}
