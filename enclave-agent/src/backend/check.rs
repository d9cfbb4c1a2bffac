//! The evidence carries what was asked for: checked here, inside the TEE,
//! before anything is sent.
//!
//! The host relays or fills part of every piece of evidence (the TDX Quote
//! Generation Service turns the TDREPORT into a quote, the SNP hypervisor
//! forwards the firmware's answer, the NSM driver returns a document) and is
//! not trusted. Evidence that binds other REPORT_DATA would be refused by the
//! verifier anyway, but only after a round trip and under a code that blames
//! the agent; refusing it here names the host as the culprit and never hands
//! a substituted quote to anyone.
//!
//! Offsets are those the verifier reads: the SEV-SNP firmware ABI's report
//! table (REPORT_DATA at 0x50), Intel's TDX module ABI (`REPORTMACSTRUCT`:
//! REPORTDATA at 128 in the TDREPORT), and the quote through the core's own
//! parser (`attest_gate_core::tdx::Quote`: version 4, or 5 with its body
//! descriptor), so there is one reading of the quote format (invariant 9).
//! Comparisons are constant-time (invariant 11).

use std::fmt;
use std::ops::Range;

use aws_lc_rs::constant_time::verify_slices_are_equal;

use super::Request;

/// REPORT_DATA in an SEV-SNP attestation report (SEV-SNP firmware ABI,
/// `ATTESTATION_REPORT`, offsets 0x50..0x90).
pub const SNP_REPORT_DATA: Range<usize> = 0x50..0x90;
/// REPORTDATA in a TDREPORT (`REPORTMACSTRUCT`: REPORTTYPE 4, reserved 12,
/// CPUSVN 16, TEE_TCB_INFO_HASH 48, TEE_INFO_HASH 48, then REPORTDATA 64).
pub const TDREPORT_REPORT_DATA: Range<usize> = 128..192;
/// A field the evidence must carry as requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// REPORT_DATA (SNP, TDX): the binding.
    ReportData,
    /// Nitro `user_data`: the binding.
    UserData,
    /// Nitro `nonce`: the verifier's nonce.
    Nonce,
    /// Nitro `public_key`: the agent's key.
    PublicKey,
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ReportData => "REPORT_DATA",
            Self::UserData => "user_data",
            Self::Nonce => "nonce",
            Self::PublicKey => "public_key",
        })
    }
}

/// The evidence does not carry what was requested, or cannot be read far
/// enough to tell.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The field differs from (or, in a Nitro document, lacks) the value
    /// requested.
    #[error(
        "the evidence's {0} is not the one requested (the host is not trusted \
         to fill it; nothing was sent)"
    )]
    Mismatch(Bound),
    /// Too short to hold the field.
    #[error("the {what} is {len} bytes, too short to hold REPORT_DATA")]
    TooShort {
        /// TDREPORT or SNP report.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// The TDX quote does not parse (the verifier would refuse it too).
    #[error("the TDX quote cannot be read: {0}")]
    Quote(attest_gate_core::VerifyError),
    /// The Nitro document is not a COSE_Sign1 with a CBOR map payload.
    #[error("the attestation document cannot be read: {0}")]
    Document(&'static str),
}

/// `actual` is `expected` (constant time), else `Mismatch(field)`.
fn same(actual: Option<&[u8]>, expected: &[u8], field: Bound) -> Result<(), CheckError> {
    match actual {
        Some(actual) if verify_slices_are_equal(actual, expected).is_ok() => Ok(()),
        _ => Err(CheckError::Mismatch(field)),
    }
}

/// REPORT_DATA at `range` of `bytes` (`what` names them in errors).
fn report_data_at(
    bytes: &[u8],
    range: Range<usize>,
    what: &'static str,
    expected: &[u8; 64],
) -> Result<(), CheckError> {
    let actual = bytes.get(range).ok_or(CheckError::TooShort {
        what,
        len: bytes.len(),
    })?;
    same(Some(actual), expected, Bound::ReportData)
}

/// An SEV-SNP report (or extended report: the report comes first).
pub fn snp_report(report: &[u8], expected: &[u8; 64]) -> Result<(), CheckError> {
    report_data_at(report, SNP_REPORT_DATA, "SNP report", expected)
}

/// A TDREPORT, as `TDX_CMD_GET_REPORT0` returns it.
pub fn tdreport(tdreport: &[u8], expected: &[u8; 64]) -> Result<(), CheckError> {
    report_data_at(tdreport, TDREPORT_REPORT_DATA, "TDREPORT", expected)
}

/// A TDX quote (v4, or v5 with a TD 1.0 or 1.5 body), read by the core's
/// parser.
pub fn tdx_quote(quote: &[u8], expected: &[u8; 64]) -> Result<(), CheckError> {
    let parsed = attest_gate_core::tdx::Quote::parse(quote).map_err(CheckError::Quote)?;
    same(
        Some(&parsed.td_report.report_data),
        expected,
        Bound::ReportData,
    )
}

/// A Nitro attestation document: `user_data`, `nonce` and `public_key` must
/// equal the request's (all three were requested, so an absent or null one
/// is a mismatch too). The document is read by the verifier core's own
/// parser (unauthenticated: the NSM is trusted to sign, not to answer what
/// was asked), which refuses a field given twice.
pub fn nitro_document(document: &[u8], request: &Request<'_>) -> Result<(), CheckError> {
    let bound = attest_gate_core::nitro::unverified_bound_data(document)
        .map_err(|_| CheckError::Document("not a Nitro attestation document"))?;
    let fields = [
        (
            Bound::UserData,
            bound.user_data.as_deref(),
            &request.report_data[..],
        ),
        (Bound::Nonce, bound.nonce.as_deref(), request.nonce),
        (
            Bound::PublicKey,
            bound.public_key.as_deref(),
            request.public_key,
        ),
    ];
    for (field, actual, expected) in fields {
        same(actual, expected, field)?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use attest_gate_forge::nitro::DocSpec;
    use attest_gate_forge::tdx::{QuoteSpec, TdxSpec};
    use ciborium::Value;

    fn request(report_data: [u8; 64]) -> Request<'static> {
        Request {
            report_data,
            nonce: b"the verifier's nonce",
            public_key: b"the agent's key",
        }
    }

    fn quote(spec: QuoteSpec, report_data: [u8; 64]) -> Vec<u8> {
        TdxSpec {
            quote: QuoteSpec {
                report_data,
                ..spec
            },
            ..TdxSpec::default()
        }
        .forge()
        .unwrap()
        .0
    }

    #[test]
    fn a_tdx_quote_must_carry_the_requested_report_data_v4_and_v5() {
        for (spec, offset) in [(QuoteSpec::valid(), 568), (QuoteSpec::v5(), 574)] {
            let bytes = quote(spec, [0x11; 64]);
            // The offsets of the layout (48-byte header, v5's 6-byte body
            // descriptor, 520 bytes of body before REPORTDATA).
            assert_eq!(&bytes[offset..offset + 64], &[0x11; 64]);
            tdx_quote(&bytes, &[0x11; 64]).unwrap();
            assert!(matches!(
                tdx_quote(&bytes, &[0x22; 64]),
                Err(CheckError::Mismatch(Bound::ReportData))
            ));
        }
    }

    #[test]
    fn an_unreadable_tdx_quote_is_refused() {
        let bytes = quote(QuoteSpec::valid(), [0x11; 64]);
        for bad in [&bytes[..600], &[][..], b"QUOTE"] {
            assert!(matches!(
                tdx_quote(bad, &[0x11; 64]),
                Err(CheckError::Quote(_))
            ));
        }
        // Another version: the report data may sit elsewhere.
        let mut v3 = bytes.clone();
        v3[0] = 3;
        assert!(matches!(
            tdx_quote(&v3, &[0x11; 64]),
            Err(CheckError::Quote(_))
        ));
    }

    #[test]
    fn snp_and_tdreport_report_data_offsets() {
        let mut report = vec![0u8; 1184];
        report[0x50..0x90].fill(0x33);
        snp_report(&report, &[0x33; 64]).unwrap();
        report[0x8f] ^= 1;
        assert!(matches!(
            snp_report(&report, &[0x33; 64]),
            Err(CheckError::Mismatch(Bound::ReportData))
        ));
        assert!(matches!(
            snp_report(&report[..0x8f], &[0x33; 64]),
            Err(CheckError::TooShort { len: 0x8f, .. })
        ));

        let mut td = vec![0u8; 1024];
        td[128..192].fill(0x44);
        tdreport(&td, &[0x44; 64]).unwrap();
        td[128] ^= 1;
        assert!(matches!(
            tdreport(&td, &[0x44; 64]),
            Err(CheckError::Mismatch(Bound::ReportData))
        ));
        assert!(matches!(
            tdreport(&[], &[0x44; 64]),
            Err(CheckError::TooShort { len: 0, .. })
        ));
    }

    fn document(user_data: Option<[u8; 64]>, nonce: Option<&[u8]>, key: Option<&[u8]>) -> Vec<u8> {
        DocSpec {
            user_data: user_data.map(|u| u.to_vec()),
            nonce: nonce.map(<[u8]>::to_vec),
            public_key: key.map(<[u8]>::to_vec),
            ..DocSpec::default()
        }
        .forge()
        .unwrap()
    }

    #[test]
    fn a_nitro_document_must_carry_user_data_nonce_and_key_as_requested() {
        let asked = request([0x55; 64]);
        let good = document(Some([0x55; 64]), Some(asked.nonce), Some(asked.public_key));
        nitro_document(&good, &asked).unwrap();
        let tagged = DocSpec {
            tagged: true,
            user_data: Some(vec![0x55; 64]),
            nonce: Some(asked.nonce.to_vec()),
            public_key: Some(asked.public_key.to_vec()),
            ..DocSpec::default()
        }
        .forge()
        .unwrap();
        nitro_document(&tagged, &asked).unwrap();

        let cases = [
            (
                document(Some([0x66; 64]), Some(asked.nonce), Some(asked.public_key)),
                Bound::UserData,
            ),
            (
                document(None, Some(asked.nonce), Some(asked.public_key)),
                Bound::UserData,
            ),
            (
                document(Some([0x55; 64]), Some(b"other"), Some(asked.public_key)),
                Bound::Nonce,
            ),
            (
                document(Some([0x55; 64]), None, Some(asked.public_key)),
                Bound::Nonce,
            ),
            (
                document(Some([0x55; 64]), Some(asked.nonce), Some(b"other key")),
                Bound::PublicKey,
            ),
            (
                document(Some([0x55; 64]), Some(asked.nonce), None),
                Bound::PublicKey,
            ),
        ];
        for (doc, field) in cases {
            match nitro_document(&doc, &asked) {
                Err(CheckError::Mismatch(f)) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    /// A COSE_Sign1 around `payload` (unsigned: only the shape matters here).
    fn sign1(payload: &Value) -> Vec<u8> {
        let mut payload_bytes = Vec::new();
        ciborium::ser::into_writer(payload, &mut payload_bytes).unwrap();
        let envelope = Value::Array(vec![
            Value::Bytes(vec![0xa1, 0x01, 0x38, 0x22]),
            Value::Map(vec![]),
            Value::Bytes(payload_bytes),
            Value::Bytes(vec![0; 96]),
        ]);
        let mut bytes = Vec::new();
        ciborium::ser::into_writer(&envelope, &mut bytes).unwrap();
        bytes
    }

    /// The payload map of a forged document.
    fn payload_map(document: &[u8]) -> Vec<(Value, Value)> {
        let Value::Array(parts) = ciborium::de::from_reader(document).unwrap() else {
            panic!("a COSE_Sign1 array")
        };
        let Value::Map(map) =
            ciborium::de::from_reader(parts[2].as_bytes().unwrap().as_slice()).unwrap()
        else {
            panic!("a payload map")
        };
        map
    }

    #[test]
    fn a_field_given_twice_is_refused() {
        let asked = request([0x55; 64]);
        let fields = payload_map(&document(
            Some([0x55; 64]),
            Some(asked.nonce),
            Some(asked.public_key),
        ));
        nitro_document(&sign1(&Value::Map(fields.clone())), &asked).unwrap();
        // A second nonce, whichever one a reader would pick.
        let mut twice = fields.clone();
        twice.push((Value::Text("nonce".into()), Value::Bytes(b"other".to_vec())));
        assert!(matches!(
            nitro_document(&sign1(&Value::Map(twice)), &asked),
            Err(CheckError::Document(_))
        ));
        // A null field matches nothing requested.
        let mut null = fields;
        let nonce = null
            .iter()
            .position(|(k, _)| k.as_text() == Some("nonce"))
            .unwrap();
        null[nonce].1 = Value::Null;
        assert!(matches!(
            nitro_document(&sign1(&Value::Map(null)), &asked),
            Err(CheckError::Mismatch(Bound::Nonce))
        ));
        // Not a map.
        assert!(matches!(
            nitro_document(&sign1(&Value::Array(vec![])), &asked),
            Err(CheckError::Document(_))
        ));
    }

    #[test]
    fn an_unreadable_nitro_document_is_refused() {
        let asked = request([0x55; 64]);
        let good = document(Some([0x55; 64]), Some(asked.nonce), Some(asked.public_key));
        let mut trailing = good.clone();
        trailing.push(0);
        let huge = vec![0u8; attest_gate_core::nitro::MAX_DOCUMENT_LEN + 1];
        for bad in [
            &good[..good.len() - 1],
            &trailing,
            &huge,
            &[][..],
            &[0x80][..],
        ] {
            assert!(
                matches!(nitro_document(bad, &asked), Err(CheckError::Document(_))),
                "{:?}",
                nitro_document(bad, &asked)
            );
        }
    }
}
