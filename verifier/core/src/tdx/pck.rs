//! Intel's SGX extension of a PCK certificate (OID 1.2.840.113741.1.13.1):
//! the platform's FMSPC, PCE-ID and the SGX TCB it was certified at, which
//! TCB-info matching compares against.

use x509_parser::der_parser::ber::{BerObject, BerObjectContent};
use x509_parser::der_parser::parse_der;
use x509_parser::prelude::X509Certificate;

use crate::error::VerifyError;

/// DER body of OID 1.2.840.113741.1.13.1 (the SGX extension and the arc of its fields).
const SGX_EXTENSION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d, 0x01, 0x0d, 0x01];

/// What the PCK certificate says of the platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PckExtension {
    /// SGX TCB component SVNs (the CPUSVN split into its 16 components).
    pub(crate) sgx_components: [u8; 16],
    /// The PCE's security version.
    pub(crate) pce_svn: u16,
    /// CPUSVN as certified.
    pub(crate) cpu_svn: [u8; 16],
    /// PCE identifier.
    pub(crate) pce_id: [u8; 2],
    /// Family-Model-Stepping-Platform-CustomSKU: selects the TCB info.
    pub(crate) fmspc: [u8; 6],
}

fn bad(what: &str) -> VerifyError {
    VerifyError::malformed(format!("PCK certificate SGX extension: {what}"))
}

/// The field number `n` of an OID `1.2.840.113741.1.13.1.<prefix>.n`, if the OID is under `prefix`.
fn arc_under(oid: &[u8], prefix: &[u8]) -> Option<u8> {
    match oid.strip_prefix(SGX_EXTENSION)?.strip_prefix(prefix)? {
        // Field numbers are single-byte arcs (1..=127).
        [n] if *n < 0x80 => Some(*n),
        _ => None,
    }
}

/// Each element of a SEQUENCE OF SEQUENCE { OID, value } as (OID bytes, value).
fn fields<'a>(seq: &'a BerObject<'a>) -> Result<Vec<(&'a [u8], &'a BerObject<'a>)>, VerifyError> {
    seq.as_sequence()
        .map_err(|_| bad("not a SEQUENCE"))?
        .iter()
        .map(|item| match item.as_sequence().map(Vec::as_slice) {
            Ok([oid, value]) => oid
                .as_oid()
                .map(|o| (o.as_bytes(), value))
                .map_err(|_| bad("field without an OID")),
            _ => Err(bad("field is not an (OID, value) pair")),
        })
        .collect()
}

fn octets<const N: usize>(value: &BerObject<'_>, what: &str) -> Result<[u8; N], VerifyError> {
    match &value.content {
        BerObjectContent::OctetString(bytes) => <[u8; N]>::try_from(AsRef::<[u8]>::as_ref(bytes))
            .map_err(|_| bad(&format!("{what} is not {N} bytes"))),
        _ => Err(bad(&format!("{what} is not an OCTET STRING"))),
    }
}

fn integer<T: TryFrom<u64>>(value: &BerObject<'_>, what: &str) -> Result<T, VerifyError> {
    value
        .as_u64()
        .ok()
        .and_then(|v| T::try_from(v).ok())
        .ok_or_else(|| bad(&format!("{what} is not a small non-negative INTEGER")))
}

/// Sets `slot` once; a second value for the same field is malformed.
fn once<T>(slot: &mut Option<T>, value: T, what: &str) -> Result<(), VerifyError> {
    if slot.replace(value).is_some() {
        return Err(bad(&format!("{what} appears twice")));
    }
    Ok(())
}

impl PckExtension {
    /// Reads the SGX extension of `cert`; exactly one must be present.
    pub(crate) fn parse(cert: &X509Certificate<'_>) -> Result<Self, VerifyError> {
        let mut found = cert
            .extensions()
            .iter()
            .filter(|e| e.oid.as_bytes() == SGX_EXTENSION);
        let ext = found.next().ok_or_else(|| bad("missing"))?;
        if found.next().is_some() {
            return Err(bad("present twice"));
        }
        let (rest, value) = parse_der(ext.value).map_err(|_| bad("not DER"))?;
        if !rest.is_empty() {
            return Err(bad("trailing bytes"));
        }

        let (mut tcb, mut pce_id, mut fmspc) = (None, None, None);
        for (oid, value) in fields(&value)? {
            match arc_under(oid, &[]) {
                Some(2) => once(&mut tcb, value, "TCB")?,
                Some(3) => once(&mut pce_id, octets::<2>(value, "PCE-ID")?, "PCE-ID")?,
                Some(4) => once(&mut fmspc, octets::<6>(value, "FMSPC")?, "FMSPC")?,
                // PPID, SGX type and the platform-instance fields are not used.
                _ => {}
            }
        }
        let tcb = tcb.ok_or_else(|| bad("no TCB"))?;

        let mut components: [Option<u8>; 16] = [None; 16];
        let (mut pce_svn, mut cpu_svn) = (None, None);
        for (oid, value) in fields(tcb)? {
            match arc_under(oid, &[0x02]) {
                Some(n @ 1..=16) => {
                    let slot = components
                        .get_mut(usize::from(n) - 1)
                        .ok_or_else(|| bad("component index"))?;
                    once(slot, integer(value, "TCB component SVN")?, "TCB component")?;
                }
                Some(17) => once(&mut pce_svn, integer(value, "PCESVN")?, "PCESVN")?,
                Some(18) => once(&mut cpu_svn, octets::<16>(value, "CPUSVN")?, "CPUSVN")?,
                _ => return Err(bad("unknown TCB field")),
            }
        }
        let mut sgx_components = [0u8; 16];
        for (out, c) in sgx_components.iter_mut().zip(components) {
            *out = c.ok_or_else(|| bad("a TCB component SVN is missing"))?;
        }
        Ok(Self {
            sgx_components,
            pce_svn: pce_svn.ok_or_else(|| bad("no PCESVN"))?,
            cpu_svn: cpu_svn.ok_or_else(|| bad("no CPUSVN"))?,
            pce_id: pce_id.ok_or_else(|| bad("no PCE-ID"))?,
            fmspc: fmspc.ok_or_else(|| bad("no FMSPC"))?,
        })
    }
}
