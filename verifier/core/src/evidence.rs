//! Recognising evidence: text encodings (hex, base64) and which TEE made it.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;

use crate::claims::TeeKind;
use crate::error::VerifyError;

/// Evidence files larger than this are refused before decoding.
pub const MAX_EVIDENCE_FILE_LEN: usize = 8 * 1024 * 1024;

/// Decodes hex or base64 text to bytes; anything else is taken as raw binary.
///
/// Hex is tried first (every hex string is also valid base64). Whitespace
/// (line breaks in pasted text) is ignored in both.
pub fn decode_text_encoding(input: &[u8]) -> Vec<u8> {
    let compact: Vec<u8> = input
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if compact.is_empty() {
        return input.to_vec();
    }
    if compact.len().is_multiple_of(2) && compact.iter().all(u8::is_ascii_hexdigit) {
        if let Ok(bytes) = hex::decode(&compact) {
            return bytes;
        }
    }
    let base64_alphabet =
        |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_' | b'=');
    if compact.iter().all(base64_alphabet) {
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            if let Ok(bytes) = engine.decode(&compact) {
                return bytes;
            }
        }
    }
    input.to_vec()
}

/// Which TEE's format these bytes are in, judged from their fixed headers.
pub fn detect_tee(bytes: &[u8]) -> Option<TeeKind> {
    match bytes {
        // COSE_Sign1: tag 18 then a 4-array, or the bare 4-array whose first
        // element (the protected header) is a byte string.
        [0xd2, 0x84, ..] | [0x84, 0x40..=0x5b, ..] => Some(TeeKind::Nitro),
        // DCAP quote header: version 4|5 (u16), key type 2 (ECDSA-256), TEE type 0x81 (TDX).
        [4 | 5, 0, 2, 0, 0x81, 0, 0, 0, ..] => Some(TeeKind::Tdx),
        // SNP attestation report: a small version number (u32 LE) and at least
        // a report's length. Any version is taken, so that the SNP parser can
        // name an unsupported one precisely.
        [1..=15, 0, 0, 0, ..] if bytes.len() >= SNP_REPORT_LEN => Some(TeeKind::Snp),
        _ => None,
    }
}

/// The size of an SEV-SNP attestation report.
const SNP_REPORT_LEN: usize = 1184;

/// Resolves the TEE: detected from the bytes, and equal to `requested` if given.
pub fn resolve_tee(bytes: &[u8], requested: Option<TeeKind>) -> Result<TeeKind, VerifyError> {
    match (detect_tee(bytes), requested) {
        (Some(detected), Some(requested)) if detected != requested => {
            Err(VerifyError::TeeMismatch {
                requested,
                detected,
            })
        }
        (Some(detected), _) => Ok(detected),
        // The caller insists: let that TEE's parser say what is wrong.
        (None, Some(requested)) => Ok(requested),
        (None, None) => Err(VerifyError::malformed(
            "not recognisable as Nitro, TDX or SNP evidence",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_hex_base64_and_raw() {
        assert_eq!(decode_text_encoding(b"d284\n4a"), vec![0xd2, 0x84, 0x4a]);
        assert_eq!(decode_text_encoding(b"0oRD"), vec![0xd2, 0x84, 0x43]);
        assert_eq!(decode_text_encoding(&[0xd2, 0x84]), vec![0xd2, 0x84]);
        assert_eq!(decode_text_encoding(b""), Vec::<u8>::new());
    }

    #[test]
    fn detects_formats_and_refuses_mismatch() {
        assert_eq!(detect_tee(&[0xd2, 0x84, 0x44]), Some(TeeKind::Nitro));
        assert_eq!(detect_tee(&[4, 0, 2, 0, 0x81, 0, 0, 0]), Some(TeeKind::Tdx));
        assert_eq!(detect_tee(&[0u8; 10]), None);
        let mut v4_report = vec![0u8; SNP_REPORT_LEN];
        v4_report[0] = 4;
        assert_eq!(detect_tee(&v4_report), Some(TeeKind::Snp));
        let err = resolve_tee(&[0xd2, 0x84, 0x44], Some(TeeKind::Tdx)).unwrap_err();
        assert_eq!(err.code(), "tee_mismatch");
        assert_eq!(
            resolve_tee(b"junk", None).unwrap_err().code(),
            "malformed_evidence"
        );
    }
}
