//! The certificate table that SNP_GET_EXT_REPORT returns after the report
//! (GHCB specification, "SNP extended guest request"): 24-byte entries of
//! GUID ‖ offset (u32 LE) ‖ length (u32 LE), ended by an all-zero entry;
//! offsets count from the start of the table. Unknown GUIDs are ignored.

use crate::error::VerifyError;

/// A table larger than this is not a certificate table.
const MAX_TABLE_LEN: usize = 64 * 1024;
const ENTRY_LEN: usize = 24;

const GUID_VCEK: [u8; 16] = guid(
    0x63da758d,
    0xe664,
    0x4564,
    [0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd],
);
const GUID_VLEK: [u8; 16] = guid(
    0xa8074bc2,
    0xa25a,
    0x483e,
    [0xaa, 0xe6, 0x39, 0xc0, 0x45, 0xa0, 0xb8, 0xa1],
);
const GUID_ASK: [u8; 16] = guid(
    0x4ab7b379,
    0xbbac,
    0x4fe4,
    [0xa0, 0x2f, 0x05, 0xae, 0xf3, 0x27, 0xc7, 0x82],
);
const GUID_ARK: [u8; 16] = guid(
    0xc0b406a4,
    0xa803,
    0x4952,
    [0x97, 0x43, 0x3f, 0xb6, 0x01, 0x4c, 0xd0, 0xae],
);

/// A GUID in the byte order the table uses (that of its string form).
const fn guid(a: u32, b: u16, c: u16, d: [u8; 8]) -> [u8; 16] {
    let a = a.to_be_bytes();
    let b = b.to_be_bytes();
    let c = c.to_be_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6],
        d[7],
    ]
}

/// The certificates a table carries.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct CertTable {
    pub(crate) vcek: Option<Vec<u8>>,
    pub(crate) vlek: Option<Vec<u8>>,
    pub(crate) ask: Option<Vec<u8>>,
    pub(crate) ark: Option<Vec<u8>>,
}

impl CertTable {
    pub(crate) fn parse(table: &[u8]) -> Result<Self, VerifyError> {
        let bad = |what: &str| {
            VerifyError::malformed(format!("extended report certificate table: {what}"))
        };
        if table.len() > MAX_TABLE_LEN {
            return Err(bad("too large"));
        }
        // First pass: the entries up to the all-zero terminator.
        let mut entries = Vec::new();
        for chunk in table.chunks_exact(ENTRY_LEN) {
            let mut id = [0u8; 16];
            id.copy_from_slice(chunk.get(..16).unwrap_or(&[0; 16]));
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk.get(16..24).unwrap_or(&[0; 8]));
            let (offset, len) = (
                u32::from_le_bytes([word[0], word[1], word[2], word[3]]) as usize,
                u32::from_le_bytes([word[4], word[5], word[6], word[7]]) as usize,
            );
            if id == [0; 16] {
                if offset != 0 || len != 0 {
                    return Err(bad("terminating entry is not all zero"));
                }
                break;
            }
            entries.push((id, offset, len));
        }
        let header_len = (entries.len() + 1) * ENTRY_LEN;
        if header_len > table.len() {
            return Err(bad("no terminating entry"));
        }
        // Second pass: every entry must point into the data after the header.
        let mut out = Self::default();
        for (id, offset, len) in entries {
            let end = offset
                .checked_add(len)
                .ok_or_else(|| bad("entry out of range"))?;
            if offset < header_len || end > table.len() || len == 0 {
                return Err(bad("entry points outside the table's data"));
            }
            let der = table
                .get(offset..end)
                .ok_or_else(|| bad("entry out of range"))?
                .to_vec();
            let slot = match id {
                GUID_VCEK => &mut out.vcek,
                GUID_VLEK => &mut out.vlek,
                GUID_ASK => &mut out.ask,
                GUID_ARK => &mut out.ark,
                _ => continue,
            };
            if slot.replace(der).is_some() {
                return Err(bad("a certificate appears twice"));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: [u8; 16], offset: u32, len: u32) -> Vec<u8> {
        let mut e = id.to_vec();
        e.extend_from_slice(&offset.to_le_bytes());
        e.extend_from_slice(&len.to_le_bytes());
        e
    }

    #[test]
    fn parses_entries_and_ignores_unknown_guids() {
        let mut t = entry(GUID_VCEK, 72, 2);
        t.extend(entry([7; 16], 74, 1));
        t.extend([0; ENTRY_LEN]);
        t.extend([0x30, 0x00, 0x99]);
        let table = CertTable::parse(&t).unwrap();
        assert_eq!(table.vcek, Some(vec![0x30, 0x00]));
        assert_eq!(table.ask, None);
    }

    #[test]
    fn rejects_bad_tables() {
        let code = |t: &[u8]| CertTable::parse(t).unwrap_err().code();
        assert_eq!(code(&[]), "malformed_evidence", "no terminator");
        assert_eq!(
            code(&entry(GUID_VCEK, 48, 1)),
            "malformed_evidence",
            "no terminator"
        );
        let mut into_header = entry(GUID_VCEK, 0, 24);
        into_header.extend([0; ENTRY_LEN]);
        assert_eq!(
            code(&into_header),
            "malformed_evidence",
            "points into the header"
        );
        let mut twice = entry(GUID_ARK, 72, 1);
        twice.extend(entry(GUID_ARK, 72, 1));
        twice.extend([0; ENTRY_LEN]);
        twice.push(0x30);
        assert_eq!(code(&twice), "malformed_evidence", "duplicate");
        let mut dirty_end = entry(GUID_ARK, 48, 1);
        dirty_end.extend(entry([0; 16], 1, 0));
        dirty_end.push(0x30);
        assert_eq!(
            code(&dirty_end),
            "malformed_evidence",
            "terminator not zero"
        );
        assert_eq!(
            code(&vec![0; MAX_TABLE_LEN + 1]),
            "malformed_evidence",
            "too large"
        );
    }
}
