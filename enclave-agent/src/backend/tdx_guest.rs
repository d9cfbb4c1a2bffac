//! `/dev/tdx_guest`, for TDX guests whose kernel has no configfs-tsm.
//! `TDX_CMD_GET_REPORT0` (Linux `include/uapi/linux/tdx-guest.h`) makes the
//! TDREPORT, which only this machine can check; the host's Quote Generation
//! Service (Intel DCAP's QGS) turns it into a quote anyone can verify.
//!
//! The QGS is reached over vsock, as Intel's `libtdx_attest` does: each
//! message is framed by its length (4 bytes, big-endian) and laid out as in
//! Intel's `qgs_msg_lib.h` (packed, little-endian): a header `major_version`
//! u16 = 1, `minor_version` u16 = 1, `type` u32, `size` u32 (whole message),
//! `error_code` u32; then `GET_QUOTE_REQ` (0) carries `report_size` u32,
//! `id_list_size` u32, the report; `GET_QUOTE_RESP` (1) carries
//! `selected_id_size` u32, `quote_size` u32, the id, the quote.
//!
//! Neither the QGS nor the host is trusted to keep the REPORT_DATA: the
//! TDREPORT is checked before it goes out and the quote when it comes back,
//! so a substituted quote is refused here, not sent.

use std::io::{self, Read, Write};
use std::time::Duration;

use attest_gate_core::TeeKind;

use super::ioctl::{self, TDREPORT_LEN};
use super::{check, BackendError, Evidence, EvidenceSource, Request};

/// The tdx-guest device.
pub const DEVICE: &str = "/dev/tdx_guest";
/// `libtdx_attest`'s configuration: a `port = N` line names the QGS port.
pub const CONFIG: &str = "/etc/tdx-attest.conf";

/// `VMADDR_CID_HOST`: the QGS runs on the host.
pub const DEFAULT_CID: u32 = 2;
/// The QGS's default vsock port.
pub const DEFAULT_PORT: u32 = 4050;

/// A quote is about 5 KiB with its PCK chain; `libtdx_attest` allows 16 KiB
/// for a whole message. Four times that leaves room and bounds the read.
pub const MAX_RESPONSE_LEN: usize = 64 * 1024;
/// Quote generation is quick, but the QGS may first fetch the PCK
/// certificate from a caching service.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

const MAJOR_VERSION: u16 = 1;
const MINOR_VERSION: u16 = 1;
const GET_QUOTE_REQ: u32 = 0;
const GET_QUOTE_RESP: u32 = 1;
/// Header (16 bytes) and the two sizes that follow it, in both messages.
const FIXED_LEN: usize = 24;
/// The request's `size`: fixed part and TDREPORT.
const REQUEST_LEN: u32 = (FIXED_LEN + TDREPORT_LEN) as u32;

/// Talking to the QGS failed, or it answered with something other than a
/// quote.
#[derive(Debug, thiserror::Error)]
pub enum QgsError {
    /// The socket failed (including a response cut short).
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The length prefix announces more than [`MAX_RESPONSE_LEN`].
    #[error("the response announces {0} bytes, more than {MAX_RESPONSE_LEN}")]
    Oversized(u32),
    /// Too short for the fixed part of a response.
    #[error("the {0}-byte response is shorter than its header")]
    Truncated(usize),
    /// A major version other than 1.
    #[error("unsupported message version {0}")]
    Version(u16),
    /// Not a `GET_QUOTE_RESP`.
    #[error("expected a GET_QUOTE_RESP (1), got message type {0}")]
    WrongType(u32),
    /// The QGS reports an error (`qgs_msg_error_t` or a quote library code).
    #[error("the QGS failed with error code {0:#x}")]
    Service(u32),
    /// `size`, `selected_id_size` and `quote_size` disagree with the length.
    #[error("the response's sizes do not add up to its length")]
    SizeMismatch,
    /// Success with no quote.
    #[error("the QGS returned an empty quote")]
    EmptyQuote,
}

/// The framed `GET_QUOTE_REQ` for `tdreport`, with no attestation key id
/// list (the QGS then uses Intel's TD quoting enclave).
pub fn quote_request(tdreport: &[u8; TDREPORT_LEN]) -> Vec<u8> {
    let mut message = Vec::with_capacity(4 + FIXED_LEN + TDREPORT_LEN);
    message.extend_from_slice(&REQUEST_LEN.to_be_bytes());
    message.extend_from_slice(&MAJOR_VERSION.to_le_bytes());
    message.extend_from_slice(&MINOR_VERSION.to_le_bytes());
    message.extend_from_slice(&GET_QUOTE_REQ.to_le_bytes());
    message.extend_from_slice(&REQUEST_LEN.to_le_bytes());
    message.extend_from_slice(&0u32.to_le_bytes()); // error_code
    message.extend_from_slice(&(TDREPORT_LEN as u32).to_le_bytes());
    message.extend_from_slice(&0u32.to_le_bytes()); // id_list_size
    message.extend_from_slice(tdreport);
    message
}

/// The u32 at `at`; callers have checked that the fixed part is there.
fn u32_at(bytes: &[u8], at: usize) -> u32 {
    bytes
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

/// The quote in a `GET_QUOTE_RESP` (without its length prefix), with the
/// checks `qgs_msg_inflate_get_quote_resp` makes; the minor version is not
/// checked, as there.
pub fn quote_from_response(message: &[u8]) -> Result<&[u8], QgsError> {
    if message.len() < FIXED_LEN {
        return Err(QgsError::Truncated(message.len()));
    }
    let major = message
        .get(..2)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u16::from_le_bytes);
    if major != MAJOR_VERSION {
        return Err(QgsError::Version(major));
    }
    let kind = u32_at(message, 4);
    if kind != GET_QUOTE_RESP {
        return Err(QgsError::WrongType(kind));
    }
    let error_code = u32_at(message, 12);
    if error_code != 0 {
        return Err(QgsError::Service(error_code));
    }
    let (size, id_len, quote_len) = (
        u64::from(u32_at(message, 8)),
        u64::from(u32_at(message, 16)),
        u64::from(u32_at(message, 20)),
    );
    let len = message.len() as u64;
    if size != len || FIXED_LEN as u64 + id_len + quote_len != len {
        return Err(QgsError::SizeMismatch);
    }
    if quote_len == 0 {
        return Err(QgsError::EmptyQuote);
    }
    // The sizes add up to the length, so the quote is the message's tail.
    let start = usize::try_from(FIXED_LEN as u64 + id_len).map_err(|_| QgsError::SizeMismatch)?;
    message.get(start..).ok_or(QgsError::SizeMismatch)
}

/// Sends the framed `request` and reads one framed response (its body).
pub fn exchange(stream: &mut (impl Read + Write), request: &[u8]) -> Result<Vec<u8>, QgsError> {
    stream.write_all(request)?;
    stream.flush()?;
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix)?;
    let announced = u32::from_be_bytes(prefix);
    let len = usize::try_from(announced)
        .ok()
        .filter(|&n| n <= MAX_RESPONSE_LEN)
        .ok_or(QgsError::Oversized(announced))?;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body)?;
    Ok(body)
}

#[cfg(target_os = "linux")]
fn exchange_over_vsock(qgs: Qgs, request: &[u8]) -> Result<Vec<u8>, QgsError> {
    use socket2::{Domain, SockAddr, Socket, Type};
    let mut socket = Socket::new(Domain::VSOCK, Type::STREAM, None)?;
    socket.set_read_timeout(Some(IO_TIMEOUT))?;
    socket.set_write_timeout(Some(IO_TIMEOUT))?;
    socket.connect_timeout(&SockAddr::vsock(qgs.cid, qgs.port), CONNECT_TIMEOUT)?;
    exchange(&mut socket, request)
}

#[cfg(not(target_os = "linux"))]
fn exchange_over_vsock(_qgs: Qgs, _request: &[u8]) -> Result<Vec<u8>, QgsError> {
    Err(QgsError::Io(io::Error::from(io::ErrorKind::Unsupported)))
}

/// Where the QGS listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qgs {
    /// vsock context id ([`DEFAULT_CID`]: the host).
    pub cid: u32,
    /// vsock port ([`DEFAULT_PORT`]).
    pub port: u32,
}

impl Default for Qgs {
    fn default() -> Self {
        Self {
            cid: DEFAULT_CID,
            port: DEFAULT_PORT,
        }
    }
}

impl Qgs {
    /// The default address with the port a `libtdx_attest` configuration
    /// names (`port = N`; `#` starts a comment line), so a guest set up for
    /// Intel's library reaches the same QGS.
    pub fn from_config(config: &str) -> Result<Self, String> {
        for line in config.lines().map(str::trim) {
            if line.starts_with('#') {
                continue;
            }
            let Some(("port", value)) = line.split_once('=').map(|(k, v)| (k.trim(), v.trim()))
            else {
                continue;
            };
            return match value.parse::<u32>() {
                Ok(port) if port != 0 => Ok(Self {
                    port,
                    ..Self::default()
                }),
                _ => Err(format!("invalid port {value:?}")),
            };
        }
        Ok(Self::default())
    }
}

/// The tdx-guest interface and the QGS it asks for quotes.
#[derive(Debug, Clone, Copy)]
pub struct TdxGuest {
    qgs: Qgs,
}

fn failed(reason: impl std::fmt::Display) -> BackendError {
    BackendError::Failed {
        interface: "tdx-guest",
        reason: reason.to_string(),
    }
}

impl TdxGuest {
    /// The interface, asking the QGS at `qgs`.
    pub fn new(qgs: Qgs) -> Self {
        Self { qgs }
    }

    /// The interface with the QGS address [`CONFIG`] gives, if it exists.
    pub fn configured() -> Result<Self, BackendError> {
        // Any real configuration is a few lines.
        let mut config = String::new();
        match std::fs::File::open(CONFIG) {
            Ok(file) => {
                file.take(64 * 1024)
                    .read_to_string(&mut config)
                    .map_err(|e| failed(format!("{CONFIG}: {e}")))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(failed(format!("{CONFIG}: {e}"))),
        }
        let qgs = Qgs::from_config(&config).map_err(|e| failed(format!("{CONFIG}: {e}")))?;
        Ok(Self::new(qgs))
    }
}

/// From a TDREPORT to evidence for `request`: the TDREPORT's REPORTDATA is
/// checked, `ask` sends the QGS the framed request and returns its answer's
/// body, and the quote in it must carry the same REPORTDATA.
pub fn quote_evidence(
    tdreport: &[u8; TDREPORT_LEN],
    request: &Request<'_>,
    qgs: Qgs,
    ask: impl FnOnce(&[u8]) -> Result<Vec<u8>, QgsError>,
) -> Result<Evidence, BackendError> {
    check::tdreport(tdreport, &request.report_data).map_err(BackendError::check("tdx-guest"))?;
    let qgs_failed = |e: QgsError| failed(format!("QGS at vsock {}:{}: {e}", qgs.cid, qgs.port));
    let body = ask(&quote_request(tdreport)).map_err(qgs_failed)?;
    let quote = quote_from_response(&body).map_err(qgs_failed)?;
    check::tdx_quote(quote, &request.report_data).map_err(BackendError::check("TDX QGS"))?;
    Ok(Evidence {
        tee: TeeKind::Tdx,
        bytes: quote.to_vec(),
        collateral: Vec::new(),
    })
}

impl EvidenceSource for TdxGuest {
    fn evidence(&self, request: &Request<'_>) -> Result<Evidence, BackendError> {
        let device = ioctl::open_device(DEVICE).map_err(|e| failed(format!("{DEVICE}: {e}")))?;
        let tdreport = ioctl::tdx_get_report0(&device, &request.report_data)
            .map_err(|e| failed(format!("TDX_CMD_GET_REPORT0: {e}")))?;
        drop(device);
        let qgs = self.qgs;
        quote_evidence(&tdreport, request, qgs, |message| {
            exchange_over_vsock(qgs, message)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::check::{Bound, CheckError};
    use attest_gate_forge::tdx::{QuoteSpec, TdxSpec};

    fn request() -> Request<'static> {
        Request {
            report_data: [0xab; 64],
            nonce: b"n",
            public_key: b"k",
        }
    }

    /// A TDREPORT carrying `report_data` (REPORTMACSTRUCT's REPORTDATA).
    fn tdreport(report_data: [u8; 64]) -> [u8; TDREPORT_LEN] {
        let mut report = [0x11; TDREPORT_LEN];
        report[128..192].copy_from_slice(&report_data);
        report
    }

    /// A QGS that answers every request with a quote for `report_data`
    /// (through the real framing), recording what it was sent.
    fn fake_qgs(
        report_data: [u8; 64],
        sent: &mut Vec<u8>,
    ) -> impl FnOnce(&[u8]) -> Result<Vec<u8>, QgsError> + '_ {
        move |message| {
            let quote = TdxSpec {
                quote: QuoteSpec {
                    report_data,
                    ..QuoteSpec::v5()
                },
                ..TdxSpec::default()
            }
            .forge()
            .map_err(|e| QgsError::Io(io::Error::other(e.to_string())))?
            .0;
            let mut stream =
                Duplex::answering(framed(&response(GET_QUOTE_RESP, 0, &[7; 16], &quote)));
            let body = exchange(&mut stream, message);
            *sent = stream.output;
            body
        }
    }

    #[test]
    fn the_quote_of_an_honest_qgs_is_the_evidence() {
        let mut sent = Vec::new();
        let evidence = quote_evidence(
            &tdreport([0xab; 64]),
            &request(),
            Qgs::default(),
            fake_qgs([0xab; 64], &mut sent),
        )
        .unwrap();
        assert_eq!(evidence.tee, TeeKind::Tdx);
        assert_eq!(&evidence.bytes[574..638], &[0xab; 64]);
        assert_eq!(sent, quote_request(&tdreport([0xab; 64])));
    }

    #[test]
    fn a_qgs_quote_with_other_report_data_is_refused_before_sending() {
        let mut sent = Vec::new();
        let result = quote_evidence(
            &tdreport([0xab; 64]),
            &request(),
            Qgs::default(),
            fake_qgs([0xcd; 64], &mut sent),
        );
        assert!(
            matches!(
                result,
                Err(BackendError::Check {
                    interface: "TDX QGS",
                    check: CheckError::Mismatch(Bound::ReportData),
                })
            ),
            "{result:?}"
        );
    }

    #[test]
    fn a_tdreport_with_other_report_data_never_reaches_the_qgs() {
        let result = quote_evidence(&tdreport([0xcd; 64]), &request(), Qgs::default(), |_| {
            panic!("the QGS was asked")
        });
        assert!(matches!(
            result,
            Err(BackendError::Check {
                interface: "tdx-guest",
                check: CheckError::Mismatch(Bound::ReportData),
            })
        ));
    }

    /// A socket stand-in: reads from `input`, records what is written.
    struct Duplex {
        input: io::Cursor<Vec<u8>>,
        output: Vec<u8>,
    }

    impl Duplex {
        fn answering(bytes: Vec<u8>) -> Self {
            Self {
                input: io::Cursor::new(bytes),
                output: Vec::new(),
            }
        }
    }

    impl Read for Duplex {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.input.read(buf)
        }
    }

    impl Write for Duplex {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A `GET_QUOTE_RESP` as `qgs_msg_gen_get_quote_resp` builds it.
    fn response(kind: u32, error_code: u32, id: &[u8], quote: &[u8]) -> Vec<u8> {
        let size = (FIXED_LEN + id.len() + quote.len()) as u32;
        let mut m = Vec::new();
        m.extend_from_slice(&1u16.to_le_bytes());
        m.extend_from_slice(&1u16.to_le_bytes());
        m.extend_from_slice(&kind.to_le_bytes());
        m.extend_from_slice(&size.to_le_bytes());
        m.extend_from_slice(&error_code.to_le_bytes());
        m.extend_from_slice(&(id.len() as u32).to_le_bytes());
        m.extend_from_slice(&(quote.len() as u32).to_le_bytes());
        m.extend_from_slice(id);
        m.extend_from_slice(quote);
        m
    }

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut m = (body.len() as u32).to_be_bytes().to_vec();
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn the_request_is_a_framed_get_quote_req() {
        let request = quote_request(&[0xcd; TDREPORT_LEN]);
        assert_eq!(request.len(), 4 + 1048);
        assert_eq!(&request[..4], &1048u32.to_be_bytes()); // frame, big-endian
        assert_eq!(&request[4..8], &[1, 0, 1, 0]); // version 1.1
        assert_eq!(&request[8..12], &[0; 4]); // GET_QUOTE_REQ
        assert_eq!(&request[12..16], &1048u32.to_le_bytes()); // size
        assert_eq!(&request[16..20], &[0; 4]); // error_code
        assert_eq!(&request[20..24], &1024u32.to_le_bytes()); // report_size
        assert_eq!(&request[24..28], &[0; 4]); // id_list_size
        assert_eq!(&request[28..], &[0xcd; TDREPORT_LEN][..]);
    }

    #[test]
    fn a_response_yields_its_quote_after_the_selected_id() {
        let body = response(GET_QUOTE_RESP, 0, &[9; 16], b"QUOTE");
        assert_eq!(quote_from_response(&body).unwrap(), b"QUOTE");
        let body = response(GET_QUOTE_RESP, 0, &[], b"Q");
        assert_eq!(quote_from_response(&body).unwrap(), b"Q");
    }

    #[test]
    fn bad_responses_are_refused() {
        let good = response(GET_QUOTE_RESP, 0, &[], b"QUOTE");
        let check = |body: &[u8]| quote_from_response(body).unwrap_err();

        assert!(matches!(check(&good[..23]), QgsError::Truncated(23)));
        assert!(matches!(check(&[]), QgsError::Truncated(0)));
        // Cut inside the quote, or with bytes after it.
        assert!(matches!(
            check(&good[..good.len() - 1]),
            QgsError::SizeMismatch
        ));
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(check(&long), QgsError::SizeMismatch));
        // `size` agrees with the length but the parts do not.
        let mut parts = good.clone();
        parts[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(check(&parts), QgsError::SizeMismatch));

        let mut version = good.clone();
        version[0] = 2;
        assert!(matches!(check(&version), QgsError::Version(2)));
        let request_echo = response(GET_QUOTE_REQ, 0, &[], b"QUOTE");
        assert!(matches!(check(&request_echo), QgsError::WrongType(0)));
        let error = response(GET_QUOTE_RESP, 0x0001_2001, &[], &[]);
        assert!(matches!(check(&error), QgsError::Service(0x0001_2001)));
        assert!(matches!(
            check(&response(GET_QUOTE_RESP, 0, &[], &[])),
            QgsError::EmptyQuote
        ));
    }

    #[test]
    fn exchange_sends_the_request_and_reads_one_framed_response() {
        let body = response(GET_QUOTE_RESP, 0, &[], b"QUOTE");
        let mut qgs = Duplex::answering(framed(&body));
        let request = quote_request(&[0; TDREPORT_LEN]);
        assert_eq!(exchange(&mut qgs, &request).unwrap(), body);
        assert_eq!(qgs.output, request);
    }

    #[test]
    fn exchange_refuses_oversized_and_truncated_responses() {
        let request = quote_request(&[0; TDREPORT_LEN]);
        // Announces more than the bound: refused before reading the body.
        let mut huge = Duplex::answering(u32::MAX.to_be_bytes().to_vec());
        assert!(matches!(
            exchange(&mut huge, &request),
            Err(QgsError::Oversized(u32::MAX))
        ));
        let over = (MAX_RESPONSE_LEN as u32 + 1).to_be_bytes().to_vec();
        assert!(matches!(
            exchange(&mut Duplex::answering(over), &request),
            Err(QgsError::Oversized(_))
        ));
        // The connection closes before the announced body, or the prefix, ends.
        let mut cut = framed(&response(GET_QUOTE_RESP, 0, &[], b"QUOTE"));
        cut.pop();
        for short in [cut, vec![0, 0]] {
            match exchange(&mut Duplex::answering(short), &request) {
                Err(QgsError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn the_port_comes_from_a_libtdx_attest_configuration() {
        assert_eq!(Qgs::from_config("").unwrap(), Qgs::default());
        assert_eq!(Qgs::default().cid, 2);
        assert_eq!(Qgs::default().port, 4050);
        let config = "# port = 1\n\n  port =  4051 \nport = 4052\n";
        assert_eq!(Qgs::from_config(config).unwrap().port, 4051);
        assert!(Qgs::from_config("port = 0").is_err());
        assert!(Qgs::from_config("port = -1").is_err());
        assert!(Qgs::from_config("port = 99999999999").is_err());
    }
}
