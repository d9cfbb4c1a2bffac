//! `/dev/sev-guest`, for SEV-SNP guests whose kernel has no configfs-tsm:
//! `SNP_GET_EXT_REPORT` (Linux `include/uapi/linux/sev-guest.h`) returns the
//! firmware's `MSG_REPORT_RSP` and the host's certificate table.
//!
//! The evidence is the same bytes configfs-tsm yields: the report followed by
//! the table cut where its last certificate ends (the kernel's own cut for
//! `auxblob`), which the verifier reads as one extended report. The table's
//! entries are interpreted only there (invariant 8).

use attest_gate_core::snp::REPORT_LEN;
use attest_gate_core::TeeKind;

use super::ioctl;
use super::{BackendError, Evidence, EvidenceSource, Request};

/// The sev-guest device.
pub const DEVICE: &str = "/dev/sev-guest";

/// First certificate buffer: `SEV_FW_BLOB_MAX_SIZE` (16 KiB), the most the
/// kernel accepts today and what its configfs-tsm path passes. A VCEK, ASK
/// and ARK take about 5 KiB.
pub const INITIAL_CERTS_LEN: usize = 16 * 1024;
/// Largest buffer a retry may ask for: the verifier refuses certificate
/// tables above 64 KiB, so a larger one could not verify anyway. (Kernels
/// that keep the 16 KiB cap refuse a larger retry themselves, with `EINVAL`.)
pub const MAX_CERTS_LEN: usize = 64 * 1024;
/// The kernel wants whole pages of certificate buffer.
const PAGE_LEN: usize = 4096;
/// `SNP_GUEST_VMM_ERR_INVALID_LEN`, in `exitinfo2`'s upper 32 bits: the
/// certificate buffer was too small and `certs_len` now says how large.
const VMM_ERR_INVALID_LEN: u64 = 1;

/// `MSG_REPORT_RSP` (SEV-SNP Firmware ABI): `STATUS` (u32) at 0,
/// `REPORT_SIZE` (u32) at 4, reserved to 0x20, then the report.
const REPORT_OFFSET: usize = 0x20;
/// A certificate table entry: GUID (16) ‖ offset (u32) ‖ length (u32); an
/// all-zero entry ends the table.
const ENTRY_LEN: usize = 24;

/// The report or certificate table is not what the interface promises.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnpError {
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
    /// The host wants a larger certificate buffer than [`MAX_CERTS_LEN`].
    #[error("the host needs a {0}-byte certificate buffer, more than {MAX_CERTS_LEN}")]
    CertsTooLarge(u32),
    /// The host says the buffer is too small but asks for no more.
    #[error("the host rejected a {had}-byte certificate buffer but asks for {asked} bytes")]
    CertsNotLarger {
        /// What the host asked for.
        asked: u32,
        /// What it was given.
        had: usize,
    },
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

/// After a failed `SNP_GET_EXT_REPORT`: the certificate buffer length to
/// retry with, if the host said the `had` bytes were too few and asked for
/// `asked` (rounded up to whole pages, at most [`MAX_CERTS_LEN`]).
pub fn certs_retry_len(exitinfo2: u64, asked: u32, had: usize) -> Result<Option<usize>, SnpError> {
    if exitinfo2 >> 32 != VMM_ERR_INVALID_LEN {
        return Ok(None);
    }
    let want = usize::try_from(asked)
        .ok()
        .and_then(|n| n.checked_next_multiple_of(PAGE_LEN))
        .filter(|&n| n <= MAX_CERTS_LEN)
        .ok_or(SnpError::CertsTooLarge(asked))?;
    if want <= had {
        return Err(SnpError::CertsNotLarger { asked, had });
    }
    Ok(Some(want))
}

/// The evidence: the report from `response` followed by the table in `certs`.
pub fn extended_report(response: &[u8], certs: &[u8]) -> Result<Vec<u8>, SnpError> {
    let report = report_from_response(response)?;
    let table = certificate_table(certs)?;
    Ok([report, table].concat())
}

/// The sev-guest interface.
#[derive(Debug, Clone, Copy)]
pub struct SevGuest;

fn failed(reason: impl std::fmt::Display) -> BackendError {
    BackendError::Failed {
        interface: "sev-guest",
        reason: reason.to_string(),
    }
}

impl EvidenceSource for SevGuest {
    fn evidence(&self, request: &Request<'_>) -> Result<Evidence, BackendError> {
        let device = ioctl::open_device(DEVICE).map_err(|e| failed(format!("{DEVICE}: {e}")))?;
        let mut certs = vec![0u8; INITIAL_CERTS_LEN];
        let mut call = ioctl::snp_get_ext_report(&device, &request.report_data, &mut certs);
        if call.result.is_err() {
            // Once: a host whose table keeps growing is not worth chasing.
            if let Some(len) =
                certs_retry_len(call.exitinfo2, call.certs_len, certs.len()).map_err(failed)?
            {
                certs = vec![0u8; len];
                call = ioctl::snp_get_ext_report(&device, &request.report_data, &mut certs);
            }
        }
        if let Err(e) = call.result {
            return Err(failed(format!(
                "SNP_GET_EXT_REPORT: {e} (firmware error {:#x}, VMM error {:#x}, {}-byte certificate buffer)",
                call.exitinfo2 & 0xffff_ffff,
                call.exitinfo2 >> 32,
                certs.len()
            )));
        }
        Ok(Evidence {
            tee: TeeKind::Snp,
            bytes: extended_report(&call.response, &certs).map_err(failed)?,
            collateral: Vec::new(),
        })
    }
}

#[cfg(test)]
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
        buffer.resize(INITIAL_CERTS_LEN, 0);
        assert_eq!(certificate_table(&buffer).unwrap(), &cut[..]);
    }

    #[test]
    fn no_certificates_make_an_empty_table() {
        let table = certificate_table(&[0; INITIAL_CERTS_LEN]).unwrap();
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
    fn a_short_buffer_is_retried_once_with_the_size_the_host_asks_for() {
        let invalid_len = 1u64 << 32;
        // Not a length problem: no retry.
        assert_eq!(certs_retry_len(0x16, 0, INITIAL_CERTS_LEN), Ok(None));
        assert_eq!(certs_retry_len(2 << 32, 0, INITIAL_CERTS_LEN), Ok(None));
        // Rounded up to whole pages.
        assert_eq!(
            certs_retry_len(invalid_len, 20 * 1024 + 1, INITIAL_CERTS_LEN),
            Ok(Some(24 * 1024))
        );
        assert_eq!(
            certs_retry_len(invalid_len, MAX_CERTS_LEN as u32, INITIAL_CERTS_LEN),
            Ok(Some(MAX_CERTS_LEN))
        );
        // Bounded.
        assert_eq!(
            certs_retry_len(invalid_len, MAX_CERTS_LEN as u32 + 1, INITIAL_CERTS_LEN),
            Err(SnpError::CertsTooLarge(MAX_CERTS_LEN as u32 + 1))
        );
        assert_eq!(
            certs_retry_len(invalid_len, u32::MAX, INITIAL_CERTS_LEN),
            Err(SnpError::CertsTooLarge(u32::MAX))
        );
        // Asking for no more than was given would loop.
        assert_eq!(
            certs_retry_len(invalid_len, 4096, INITIAL_CERTS_LEN),
            Err(SnpError::CertsNotLarger {
                asked: 4096,
                had: INITIAL_CERTS_LEN
            })
        );
    }

    #[test]
    fn the_evidence_is_the_report_then_the_table() {
        let mut certs = entry(1, 48, 2);
        certs.extend([0; ENTRY_LEN]);
        certs.extend([0x30, 0x00]);
        let table = certs.clone();
        certs.resize(INITIAL_CERTS_LEN, 0);
        let bytes = extended_report(&response(0, REPORT_LEN as u32), &certs).unwrap();
        assert_eq!(bytes.len(), REPORT_LEN + table.len());
        assert_eq!(&bytes[REPORT_LEN..], &table[..]);
        assert_eq!(
            extended_report(&response(1, REPORT_LEN as u32), &certs),
            Err(SnpError::Status(1))
        );
    }
}
