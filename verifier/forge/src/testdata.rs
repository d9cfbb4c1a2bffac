//! The files this crate keeps in the repository's `testdata/` folder.

use crate::cases::nitro_cases;
use crate::nitro::{self, ForgeError};

/// (relative path, contents) of every generated test-data file.
pub fn files() -> Result<Vec<(String, Vec<u8>)>, ForgeError> {
    let root = nitro::test_root()?;
    let mut files = vec![(
        "roots/nitro-test-root.pem".to_string(),
        pem_encode("CERTIFICATE", &root).into_bytes(),
    )];
    let cases = nitro_cases()?;
    let mut index = String::from("# name\texpected\tnonce\tdescription\n");
    for case in cases {
        files.push((format!("nitro/{}.cose", case.name), case.evidence.clone()));
        index.push_str(&format!(
            "{}\t{}\t{}\t{}\n",
            case.name,
            case.expected,
            case.expected_nonce
                .as_deref()
                .map(hex)
                .unwrap_or_else(|| "-".into()),
            case.description
        ));
    }
    files.push(("nitro/cases.tsv".to_string(), index.into_bytes()));
    Ok(files)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(label, der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}
