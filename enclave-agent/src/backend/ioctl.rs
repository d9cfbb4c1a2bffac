//! The crate's only `unsafe`: the two guest-device ioctls, with the kernel's
//! structures mirrored exactly (sizes and offsets asserted at compile time).
//!
//! Layouts are those of the Linux uapi headers:
//! - `include/uapi/linux/sev-guest.h` (`SNP_GET_EXT_REPORT`);
//! - `arch/x86/include/uapi/asm/tdx.h`, later `include/uapi/linux/tdx-guest.h`
//!   (`TDX_CMD_GET_REPORT0`).
//!
//! Callers get safe functions; every address handed to the kernel points
//! into a buffer borrowed for the duration of the call. The one `ioctl`
//! call is an `unsafe fn` whose `# Safety` section lists what its two
//! callers uphold, each in an `unsafe` block that says how.

#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::mem::{offset_of, size_of};

/// `_IOWR(ty, nr, size)` as `include/uapi/asm-generic/ioctl.h` builds it:
/// `dir << 30 | size << 16 | type << 8 | nr`, dir = read | write = 3.
/// The size field is 14 bits wide; the sizes asserted below all fit.
pub(super) const fn iowr(ty: u8, nr: u8, size: usize) -> u32 {
    (3 << 30) | ((size as u32) << 16) | ((ty as u32) << 8) | nr as u32
}

/// `struct snp_report_req`: what goes into the report.
#[repr(C)]
struct SnpReportReq {
    user_data: [u8; 64],
    vmpl: u32,
    rsvd: [u8; 28],
}

/// `struct snp_report_resp`: the decrypted `MSG_REPORT_RSP` payload.
#[repr(C)]
struct SnpReportResp {
    data: [u8; SNP_RESPONSE_LEN],
}

/// `struct snp_guest_request_ioctl`, the argument of every sev-guest ioctl.
/// The padding after `msg_version` is spelled out so no byte is uninitialised.
#[repr(C)]
struct SnpGuestRequestIoctl {
    msg_version: u8,
    pad: [u8; 7],
    req_data: u64,
    resp_data: u64,
    /// `union { __u64 exitinfo2; struct { __u32 fw_error; __u32 vmm_error; } }`:
    /// bits 63..32 are the VMM's error, bits 31..0 the firmware's.
    exitinfo2: u64,
}

/// `struct snp_ext_report_req`; the kernel rewrites `certs_len` when the
/// buffer is too small. Trailing padding spelled out, as above.
#[repr(C)]
struct SnpExtReportReq {
    data: SnpReportReq,
    certs_address: u64,
    certs_len: u32,
    pad: [u8; 4],
}

/// `struct tdx_report_req`.
#[repr(C)]
struct TdxReportReq {
    reportdata: [u8; 64],
    tdreport: [u8; TDREPORT_LEN],
}

/// Size of `snp_report_resp.data`.
pub(super) const SNP_RESPONSE_LEN: usize = 4000;
/// Size of a TDREPORT (`TDX_REPORT_LEN`).
pub(super) const TDREPORT_LEN: usize = 1024;

const _: () = assert!(size_of::<SnpReportReq>() == 96);
const _: () = assert!(offset_of!(SnpReportReq, user_data) == 0);
const _: () = assert!(offset_of!(SnpReportReq, vmpl) == 64);
const _: () = assert!(offset_of!(SnpReportReq, rsvd) == 68);
const _: () = assert!(size_of::<SnpReportResp>() == 4000);
const _: () = assert!(size_of::<SnpGuestRequestIoctl>() == 32);
const _: () = assert!(offset_of!(SnpGuestRequestIoctl, msg_version) == 0);
const _: () = assert!(offset_of!(SnpGuestRequestIoctl, req_data) == 8);
const _: () = assert!(offset_of!(SnpGuestRequestIoctl, resp_data) == 16);
const _: () = assert!(offset_of!(SnpGuestRequestIoctl, exitinfo2) == 24);
const _: () = assert!(size_of::<SnpExtReportReq>() == 112);
const _: () = assert!(offset_of!(SnpExtReportReq, data) == 0);
const _: () = assert!(offset_of!(SnpExtReportReq, certs_address) == 96);
const _: () = assert!(offset_of!(SnpExtReportReq, certs_len) == 104);
const _: () = assert!(size_of::<TdxReportReq>() == 1088);
const _: () = assert!(offset_of!(TdxReportReq, reportdata) == 0);
const _: () = assert!(offset_of!(TdxReportReq, tdreport) == 64);

/// `SNP_GET_EXT_REPORT = _IOWR('S', 0x2, struct snp_guest_request_ioctl)`.
pub(super) const SNP_GET_EXT_REPORT: u32 = iowr(b'S', 2, size_of::<SnpGuestRequestIoctl>());
/// `TDX_CMD_GET_REPORT0 = _IOWR('T', 1, struct tdx_report_req)`.
pub(super) const TDX_CMD_GET_REPORT0: u32 = iowr(b'T', 1, size_of::<TdxReportReq>());

/// Ties each argument structure to its one request number, so [`ioctl`]
/// cannot pass a structure the kernel would read with another layout.
trait Request {
    const NUMBER: u32;
}

impl Request for SnpGuestRequestIoctl {
    const NUMBER: u32 = SNP_GET_EXT_REPORT;
}

impl Request for TdxReportReq {
    const NUMBER: u32 = TDX_CMD_GET_REPORT0;
}

/// The `T::NUMBER` ioctl on `device` with `arg`.
///
/// `device` is an open descriptor for as long as it is borrowed, and `arg`
/// an exclusively borrowed, fully initialised `T` whose layout is the
/// kernel's structure for `T::NUMBER` (asserted above), so the kernel reads
/// and writes only inside `arg` itself. What it cannot know is where the
/// addresses stored *inside* `arg` point.
///
/// # Safety
///
/// Every address stored in `arg` (e.g. `req_data`, `resp_data`,
/// `certs_address`) must point to a live buffer of at least the length the
/// kernel will use for it (the structure's own size, or the length stored
/// beside the address), which the caller owns or borrows mutably and does
/// not touch until this call returns.
#[cfg(target_os = "linux")]
unsafe fn ioctl<T: Request>(device: &File, arg: &mut T) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // `libc::Ioctl` is `c_ulong` on glibc and `c_int` on musl: the cast keeps
    // the request's bit pattern either way.
    let request = T::NUMBER as libc::Ioctl;
    // SAFETY: `device` is open while borrowed; `arg` is an exclusive borrow
    // of the structure `request` expects; the addresses inside it are valid
    // by this function's own contract, which its caller upholds.
    let rc = unsafe { libc::ioctl(device.as_raw_fd(), request, std::ptr::from_mut(arg)) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Elsewhere there are no guest devices.
///
/// # Safety
///
/// None needed (nothing is called); `unsafe` to keep one signature.
#[cfg(not(target_os = "linux"))]
unsafe fn ioctl<T: Request>(_device: &File, _arg: &mut T) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// What one `SNP_GET_EXT_REPORT` call left behind, failed or not.
pub(super) struct SnpExtReport {
    /// The ioctl's own result (`EIO` when the certificate buffer was short).
    pub(super) result: io::Result<()>,
    /// Firmware (low 32 bits) and VMM (high 32 bits) error codes.
    pub(super) exitinfo2: u64,
    /// `certs_len` after the call: the size the host asks for when the
    /// buffer was too small.
    pub(super) certs_len: u32,
    /// `snp_report_resp.data`.
    pub(super) response: [u8; SNP_RESPONSE_LEN],
}

/// `SNP_GET_EXT_REPORT` at `vmpl` with `user_data`; the host's certificate
/// table lands in `certs`, whose length must be a multiple of the page size.
/// The firmware refuses a VMPL more privileged (lower) than the guest's.
pub(super) fn snp_get_ext_report(
    device: &File,
    user_data: &[u8; 64],
    vmpl: u32,
    certs: &mut [u8],
) -> SnpExtReport {
    let mut response = SnpReportResp {
        data: [0; SNP_RESPONSE_LEN],
    };
    let Ok(certs_len) = u32::try_from(certs.len()) else {
        return SnpExtReport {
            result: Err(io::Error::from(io::ErrorKind::InvalidInput)),
            exitinfo2: 0,
            certs_len: 0,
            response: response.data,
        };
    };
    let mut request = SnpExtReportReq {
        data: SnpReportReq {
            user_data: *user_data,
            vmpl,
            rsvd: [0; 28],
        },
        certs_address: certs.as_mut_ptr().expose_provenance() as u64,
        certs_len,
        pad: [0; 4],
    };
    let mut arg = SnpGuestRequestIoctl {
        // Version 1, as the kernel's own configfs-tsm path sends.
        msg_version: 1,
        pad: [0; 7],
        req_data: std::ptr::from_mut(&mut request).expose_provenance() as u64,
        resp_data: std::ptr::from_mut(&mut response).expose_provenance() as u64,
        exitinfo2: 0,
    };
    // SAFETY: `req_data` points to `request` and `resp_data` to `response`,
    // locals of exactly the kernel's `snp_ext_report_req` and
    // `snp_report_resp`; `certs_address` to `certs`, exclusively borrowed,
    // with its true length in `certs_len`. All three outlive the call and
    // nothing else touches them meanwhile.
    let result = unsafe { ioctl(device, &mut arg) };
    SnpExtReport {
        result,
        exitinfo2: arg.exitinfo2,
        certs_len: request.certs_len,
        response: response.data,
    }
}

/// `TDX_CMD_GET_REPORT0`: the TDREPORT carrying `report_data`.
pub(super) fn tdx_get_report0(
    device: &File,
    report_data: &[u8; 64],
) -> io::Result<[u8; TDREPORT_LEN]> {
    let mut request = TdxReportReq {
        reportdata: *report_data,
        tdreport: [0; TDREPORT_LEN],
    };
    // SAFETY: `tdx_report_req` holds its buffers inline: no address is
    // stored inside `request`.
    unsafe { ioctl(device, &mut request) }?;
    Ok(request.tdreport)
}

/// Opens a guest device for ioctls (read and write, as the drivers require).
pub(super) fn open_device(path: &str) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_numbers_match_the_kernel() {
        assert_eq!(SNP_GET_EXT_REPORT, 0xc020_5302);
        assert_eq!(TDX_CMD_GET_REPORT0, 0xc440_5401);
        // The other sev-guest requests, as a check of `iowr` itself.
        assert_eq!(iowr(b'S', 0, 32), 0xc020_5300); // SNP_GET_REPORT
        assert_eq!(iowr(b'S', 1, 32), 0xc020_5301); // SNP_GET_DERIVED_KEY
    }
}
