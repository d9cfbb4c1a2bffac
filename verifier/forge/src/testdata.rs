//! The files this crate keeps in the repository's `testdata/` folder.

use crate::cases::{nitro_cases, snp_cases, tdx_cases, Case};
use crate::nitro::{self, ForgeError};
use crate::pki::pem_encode;
use crate::{intel, snp};

/// The example "model" whose SHA-384 the example reference values in
/// `measurements/` allow (what enclave-agent hashes in the examples).
pub const EXAMPLE_MODEL: &[u8] = b"Attest Gate example model: not a real model, a fixed file whose SHA-384 the example reference values in measurements/ allow.\n";

/// (relative path, contents) of every generated test-data file.
pub fn files() -> Result<Vec<(String, Vec<u8>)>, ForgeError> {
    let mut files = vec![
        (
            "roots/nitro-test-root.pem".to_string(),
            pem_encode("CERTIFICATE", &nitro::test_root()?).into_bytes(),
        ),
        (
            "roots/snp-test-ark.pem".to_string(),
            [snp::test_ark()?, snp::test_ark_for("Turin")?]
                .iter()
                .map(|der| pem_encode("CERTIFICATE", der))
                .collect::<String>()
                .into_bytes(),
        ),
        (
            "roots/tdx-test-root.pem".to_string(),
            pem_encode("CERTIFICATE", &intel::test_root()?).into_bytes(),
        ),
    ];
    files.push((
        "models/example-model.txt".to_string(),
        EXAMPLE_MODEL.to_vec(),
    ));
    let nitro = nitro_cases()?;
    for case in &nitro {
        files.push((format!("nitro/{}.cose", case.name), case.evidence.clone()));
    }
    files.push(("nitro/cases.tsv".to_string(), index(&nitro)));
    for (tee, cases) in [("snp", snp_cases()?), ("tdx", tdx_cases()?)] {
        for case in &cases {
            files.push((
                format!("{tee}/{}/evidence.bin", case.name),
                case.evidence.clone(),
            ));
            for (name, bytes) in &case.collateral {
                files.push((
                    format!("{tee}/{}/collateral/{name}", case.name),
                    bytes.clone(),
                ));
            }
        }
        files.push((format!("{tee}/cases.tsv"), index(&cases)));
    }
    Ok(files)
}

/// `name, expected, --nonce, --report-data, description`, tab-separated.
fn index(cases: &[Case]) -> Vec<u8> {
    let mut out = String::from("# name\texpected\tnonce\treport_data\tdescription\n");
    for case in cases {
        let opt = |v: &Option<Vec<u8>>| v.as_deref().map(hex).unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\n",
            case.name,
            case.expected,
            opt(&case.expected_nonce),
            opt(&case.expected_report_data),
            case.description
        ));
    }
    out.into_bytes()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
