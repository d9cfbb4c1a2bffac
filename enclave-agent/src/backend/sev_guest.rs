//! `/dev/sev-guest`, for SEV-SNP guests whose kernel has no configfs-tsm:
//! `SNP_GET_EXT_REPORT` (Linux `include/uapi/linux/sev-guest.h`) returns the
//! firmware's `MSG_REPORT_RSP` and the host's certificate table.
//!
//! The evidence is the same bytes configfs-tsm yields: the report followed by
//! the table cut where its last certificate ends (the kernel's own cut for
//! `auxblob`), which the verifier reads as one extended report. The table's
//! entries are interpreted only there (invariant 8). The report's
//! REPORT_DATA is checked against the request before it is returned.
//!
//! The report is asked for at a VMPL: 0 by default, `--vmpl` otherwise. A
//! guest under an SVSM or paravisor runs above VMPL 0 and the firmware
//! refuses it reports for VMPL 0; the device gives no way to read the
//! guest's level (configfs-tsm's `privlevel_floor` does), so such guests
//! pass `--vmpl` (or use configfs-tsm).

use attest_gate_core::snp::REPORT_LEN;
use attest_gate_core::TeeKind;

use super::{check, ioctl};
use super::{BackendError, Evidence, EvidenceSource, Request};

/// The sev-guest device.
pub const DEVICE: &str = "/dev/sev-guest";

/// The certificate buffer: `SEV_FW_BLOB_MAX_SIZE` (16 KiB), the most the
/// kernel accepts (it refuses a larger `certs_len` with `EINVAL`, so asking
/// again with the size a host wants cannot help) and what its configfs-tsm
/// path passes. A VCEK, ASK and ARK take about 5 KiB.
pub const CERTS_LEN: usize = 16 * 1024;
/// `SNP_GUEST_VMM_ERR_INVALID_LEN`, in `exitinfo2`'s upper 32 bits: the
/// certificate buffer was too small and `certs_len` now says how large.
const VMM_ERR_INVALID_LEN: u64 = 1;
/// The VMPL asked for when none is configured.
pub const DEFAULT_VMPL: u8 = 0;

/// `MSG_REPORT_RSP` (SEV-SNP Firmware ABI): `STATUS` (u32) at 0,
/// `REPORT_SIZE` (u32) at 4, reserved to 0x20, then the report.
const REPORT_OFFSET: usize = 0x20;
/// A certificate table entry: GUID (16) ‖ offset (u32) ‖ length (u32); an
/// all-zero entry ends the table.
const ENTRY_LEN: usize = 24;

/// The report or certificate table is not what the interface promises.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnpError {
    /// The device could not be opened.
    #[error("{DEVICE}: {0}")]
    Open(String),
    /// The ioctl failed for another reason than the certificate buffer.
    #[error("SNP_GET_EXT_REPORT: {error} (firmware error {firmware:#x}, VMM error {vmm:#x})")]
    Ioctl {
        /// The OS error.
        error: String,
        /// `exitinfo2`'s low 32 bits.
        firmware: u32,
        /// `exitinfo2`'s high 32 bits.
        vmm: u32,
    },
    /// `MSG_REPORT_RSP.STATUS` is not success.
    #[error("the firmware refused the report: status {0:#x}{name}", name = status_name(*.0))]
    Status(u32),
    /// `MSG_REPORT_RSP.REPORT_SIZE` is not that of an SNP report.
    #[error("the firmware returned a {0}-byte report, expected {REPORT_LEN}")]
    ReportSize(u32),
    /// The response is too short for its header or report.
    #[error("the response is shorter than its report")]
    Truncated,
    /// No all-zero entry ends the certificate table.
    #[error("the certificate table has no terminating entry")]
    TableUnterminated,
    /// An entry points past the buffer the table came in.
    #[error("the certificate table points past its {0}-byte buffer")]
    TableOutOfRange(usize),
    /// The host's certificate table does not fit the kernel's buffer.
    #[error(
        "the host's certificates need a {0}-byte buffer, more than the {CERTS_LEN} bytes \
         the kernel allows for SNP_GET_EXT_REPORT; the host must serve a smaller table"
    )]
    CertsTooLarge(u32),
    /// The host rejected the buffer as too small yet asks for no more than
    /// it (a host that cannot be believed).
    #[error("the host rejected the {CERTS_LEN}-byte certificate buffer as too small but asks for only {0} bytes")]
    CertsLenInconsistent(u32),
}

/// The SEV status codes a report request can return (`psp-sev.h`).
fn status_name(status: u32) -> &'static str {
    match status {
        0x16 => " (INVALID_PARAM)",
        0x27 => " (INVALID_KEY)",
        _ => "",
    }
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let word = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(word.try_into().ok()?))
}

/// The report inside `MSG_REPORT_RSP`, once its status and size check out.
pub fn report_from_response(response: &[u8]) -> Result<&[u8], SnpError> {
    let status = u32_at(response, 0).ok_or(SnpError::Truncated)?;
    if status != 0 {
        return Err(SnpError::Status(status));
    }
    let size = u32_at(response, 4).ok_or(SnpError::Truncated)?;
    if usize::try_from(size) != Ok(REPORT_LEN) {
        return Err(SnpError::ReportSize(size));
    }
    response
        .get(REPORT_OFFSET..REPORT_OFFSET + REPORT_LEN)
        .ok_or(SnpError::Truncated)
}

/// The certificate table in `buffer`, up to where its furthest certificate
/// ends; empty when the host supplied none (an all-zero buffer).
pub fn certificate_table(buffer: &[u8]) -> Result<&[u8], SnpError> {
    let out_of_range = || SnpError::TableOutOfRange(buffer.len());
    let mut end = 0usize;
    for entry in buffer.chunks_exact(ENTRY_LEN) {
        if entry.iter().all(|&b| b == 0) {
            return buffer.get(..end).ok_or_else(out_of_range);
        }
        let (offset, len) = (u32_at(entry, 16), u32_at(entry, 20));
        let entry_end = offset
            .zip(len)
            .and_then(|(o, l)| {
                usize::try_from(o)
                    .ok()?
                    .checked_add(usize::try_from(l).ok()?)
            })
            .ok_or_else(out_of_range)?;
        end = end.max(entry_end);
    }
    Err(SnpError::TableUnterminated)
}

/// Why a `SNP_GET_EXT_REPORT` failed: the host's table is larger than the
/// kernel's buffer (`exitinfo2` says so, `certs_len` says how large), or
/// the ioctl's own error with the firmware's and VMM's codes.
pub fn call_error(error: &std::io::Error, exitinfo2: u64, certs_len: u32) -> SnpError {
    let vmm = exitinfo2 >> 32;
    if vmm == VMM_ERR_INVALID_LEN {
        return if usize::try_from(certs_len).is_ok_and(|n| n > CERTS_LEN) {
            SnpError::CertsTooLarge(certs_len)
        } else {
            SnpError::CertsLenInconsistent(certs_len)
        };
    }
    SnpError::Ioctl {
        error: error.to_string(),
        firmware: (exitinfo2 & 0xffff_ffff) as u32,
        vmm: vmm as u32,
    }
}

/// The evidence: the report from `response` followed by the table in `certs`.
pub fn extended_report(response: &[u8], certs: &[u8]) -> Result<Vec<u8>, SnpError> {
    let report = report_from_response(response)?;
    let table = certificate_table(certs)?;
    Ok([report, table].concat())
}

/// What one `SNP_GET_EXT_REPORT` left, as evidence for `request`: the
/// call's error if it failed, else the extended report once its
/// REPORT_DATA is the one requested.
fn evidence_from(
    call: &ioctl::SnpExtReport,
    certs: &[u8],
    request: &Request<'_>,
) -> Result<Evidence, BackendError> {
    if let Err(e) = &call.result {
        return Err(BackendError::SevGuest(call_error(
            e,
            call.exitinfo2,
            call.certs_len,
        )));
    }
    let bytes = extended_report(&call.response, certs).map_err(BackendError::SevGuest)?;
    check::snp_report(&bytes, &request.report_data).map_err(BackendError::check("sev-guest"))?;
    Ok(Evidence {
        tee: TeeKind::Snp,
        bytes,
        collateral: Vec::new(),
    })
}

/// The sev-guest interface, asking for reports at one VMPL.
#[derive(Debug, Clone, Copy)]
pub struct SevGuest {
    vmpl: u8,
}

impl SevGuest {
    /// Reports at `vmpl` ([`DEFAULT_VMPL`] unless the guest runs higher).
    pub fn new(vmpl: u8) -> Self {
        Self { vmpl }
    }
}

impl EvidenceSource for SevGuest {
    fn evidence(&self, request: &Request<'_>) -> Result<Evidence, BackendError> {
        let device = ioctl::open_device(DEVICE)
            .map_err(|e| BackendError::SevGuest(SnpError::Open(e.to_string())))?;
        let mut certs = vec![0u8; CERTS_LEN];
        let call = ioctl::snp_get_ext_report(
            &device,
            &request.report_data,
            u32::from(self.vmpl),
            &mut certs,
        );
        evidence_from(&call, &certs, request)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// A `snp_report_resp.data` as the firmware fills it.
    fn response(status: u32, size: u32) -> Vec<u8> {
        let mut data = vec![0u8; 4000];
        data[..4].copy_from_slice(&status.to_le_bytes());
        data[4..8].copy_from_slice(&size.to_le_bytes());
        data[REPORT_OFFSET..REPORT_OFFSET + REPORT_LEN].fill(0x5a);
        data
    }

    fn entry(guid: u8, offset: u32, len: u32) -> Vec<u8> {
        let mut e = vec![guid; 16];
        e.extend_from_slice(&offset.to_le_bytes());
        e.extend_from_slice(&len.to_le_bytes());
        e
    }

    #[test]
    fn a_successful_response_yields_the_report() {
        let data = response(0, REPORT_LEN as u32);
        assert_eq!(
            report_from_response(&data).unwrap(),
            &[0x5a; REPORT_LEN][..]
        );
    }

    #[test]
    fn a_bad_status_report_size_or_short_response_is_refused() {
        let size = REPORT_LEN as u32;
        assert_eq!(
            report_from_response(&response(0x16, size)),
            Err(SnpError::Status(0x16))
        );
        assert!(SnpError::Status(0x27).to_string().contains("INVALID_KEY"));
        assert_eq!(
            report_from_response(&response(0, 1000)),
            Err(SnpError::ReportSize(1000))
        );
        assert_eq!(
            report_from_response(&response(0, u32::MAX)),
            Err(SnpError::ReportSize(u32::MAX))
        );
        let whole = response(0, size);
        assert_eq!(
            report_from_response(&whole[..REPORT_OFFSET + REPORT_LEN - 1]),
            Err(SnpError::Truncated)
        );
        assert_eq!(report_from_response(&whole[..6]), Err(SnpError::Truncated));
        assert_eq!(report_from_response(&[]), Err(SnpError::Truncated));
    }

    #[test]
    fn the_table_is_cut_where_its_last_certificate_ends() {
        // Two entries and the terminator (72 bytes), then 3 + 2 bytes of
        // certificates, then the zeros the rest of the buffer keeps.
        let mut buffer = entry(1, 75, 2);
        buffer.extend(entry(2, 72, 3));
        buffer.extend([0; ENTRY_LEN]);
        buffer.extend([0x30, 0x01, 0x02, 0x30, 0x03]);
        let cut = buffer.clone();
        buffer.resize(CERTS_LEN, 0);
        assert_eq!(certificate_table(&buffer).unwrap(), &cut[..]);
    }

    #[test]
    fn no_certificates_make_an_empty_table() {
        let table = certificate_table(&[0; CERTS_LEN]).unwrap();
        assert!(table.is_empty());
    }

    #[test]
    fn bad_tables_are_refused() {
        let mut past_end = entry(1, 48, 100);
        past_end.extend([0; ENTRY_LEN]);
        assert_eq!(
            certificate_table(&past_end),
            Err(SnpError::TableOutOfRange(48))
        );
        let mut huge = entry(1, u32::MAX, u32::MAX);
        huge.extend([0; ENTRY_LEN]);
        assert_eq!(certificate_table(&huge), Err(SnpError::TableOutOfRange(48)));
        assert_eq!(
            certificate_table(&[0xff; 4096]),
            Err(SnpError::TableUnterminated)
        );
        assert_eq!(certificate_table(&[]), Err(SnpError::TableUnterminated));
    }

    #[test]
    fn a_table_too_large_for_the_kernel_says_so_and_is_not_retried() {
        let eio = std::io::Error::from_raw_os_error(libc::EIO);
        // The host asks for more than the kernel's 16 KiB: the error says
        // that, not the EINVAL a larger retry would have earned.
        let error = call_error(&eio, 1 << 32, 20 * 1024);
        assert_eq!(error, SnpError::CertsTooLarge(20 * 1024));
        assert!(error.to_string().contains("16384"), "{error}");
        // A host asking for no more than it was given is not believed.
        assert_eq!(
            call_error(&eio, 1 << 32, 4096),
            SnpError::CertsLenInconsistent(4096)
        );
        // Any other failure: the ioctl's error and both codes.
        let error = call_error(&eio, (2 << 32) | 0x16, CERTS_LEN as u32);
        assert!(
            matches!(
                error,
                SnpError::Ioctl {
                    firmware: 0x16,
                    vmm: 2,
                    ..
                }
            ),
            "{error}"
        );
        // The ioctl's result decides: a failed call is never read as a report.
        let call = ioctl::SnpExtReport {
            result: Err(eio),
            exitinfo2: 1 << 32,
            certs_len: 20 * 1024,
            response: response_with([0xab; 64]),
        };
        assert!(matches!(
            evidence_from(&call, &[0; CERTS_LEN], &request()),
            Err(BackendError::SevGuest(SnpError::CertsTooLarge(20480)))
        ));
    }

    /// A successful `snp_report_resp.data` whose report carries `report_data`.
    fn response_with(report_data: [u8; 64]) -> [u8; 4000] {
        let mut data = [0u8; 4000];
        data.copy_from_slice(&response(0, REPORT_LEN as u32));
        data[REPORT_OFFSET + 0x50..REPORT_OFFSET + 0x90].copy_from_slice(&report_data);
        data
    }

    fn request() -> Request<'static> {
        Request {
            report_data: [0xab; 64],
            nonce: b"n",
            public_key: b"k",
        }
    }

    #[test]
    fn a_report_with_other_report_data_is_refused_before_sending() {
        let call = |report_data| ioctl::SnpExtReport {
            result: Ok(()),
            exitinfo2: 0,
            certs_len: CERTS_LEN as u32,
            response: response_with(report_data),
        };
        let certs = [0u8; CERTS_LEN];
        let evidence = evidence_from(&call([0xab; 64]), &certs, &request()).unwrap();
        assert_eq!(evidence.bytes.len(), REPORT_LEN);
        assert!(matches!(
            evidence_from(&call([0xcd; 64]), &certs, &request()),
            Err(BackendError::Check {
                check: check::CheckError::Mismatch(check::Bound::ReportData),
                ..
            })
        ));
    }

    #[test]
    fn the_evidence_is_the_report_then_the_table() {
        let mut certs = entry(1, 48, 2);
        certs.extend([0; ENTRY_LEN]);
        certs.extend([0x30, 0x00]);
        let table = certs.clone();
        certs.resize(CERTS_LEN, 0);
        let bytes = extended_report(&response(0, REPORT_LEN as u32), &certs).unwrap();
        assert_eq!(bytes.len(), REPORT_LEN + table.len());
        assert_eq!(&bytes[REPORT_LEN..], &table[..]);
        assert_eq!(
            extended_report(&response(1, REPORT_LEN as u32), &certs),
            Err(SnpError::Status(1))
        );
    }
}
