//! Recorded evidence bundles: one portable, versioned JSON file holding the
//! evidence, every collateral item needed to verify it offline, the instant
//! it is meant to verify at, and a provenance note. Record once, test forever.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::claims::TeeKind;
use crate::collateral::Collateral;

/// The `format` field's value, identifying a bundle.
pub const BUNDLE_FORMAT: &str = "attest-gate-evidence-bundle";
/// The only bundle version this build reads and writes.
pub const BUNDLE_VERSION: u32 = 1;

/// A recorded piece of evidence with everything needed to verify it offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceBundle {
    /// The TEE that produced the evidence.
    pub tee: TeeKind,
    /// The evidence bytes, exactly as produced.
    pub evidence: Vec<u8>,
    /// Collateral items by file name (same names as a `--collateral` folder).
    pub collateral: Collateral,
    /// The instant the evidence is meant to verify at.
    pub verify_at: OffsetDateTime,
    /// Free text: where the evidence came from.
    pub provenance: String,
}

/// A bundle file could not be read.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// Not JSON of the bundle's shape.
    #[error("not an evidence bundle: {0}")]
    Json(String),
    /// A bundle of another format or version.
    #[error("unsupported bundle format {format:?} version {version}")]
    UnsupportedVersion {
        /// The `format` field found.
        format: String,
        /// The `version` field found.
        version: u32,
    },
    /// A field's value is invalid.
    #[error("invalid bundle field {field}: {reason}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    format: String,
    version: u32,
    tee: String,
    evidence: String,
    #[serde(default)]
    collateral: BTreeMap<String, String>,
    verify_at: String,
    #[serde(default)]
    provenance: String,
}

impl EvidenceBundle {
    /// True if `bytes` look like a bundle (a JSON object) rather than raw evidence.
    pub fn looks_like_bundle(bytes: &[u8]) -> bool {
        bytes
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'{')
    }

    /// Parses a bundle file.
    pub fn from_json(bytes: &[u8]) -> Result<Self, BundleError> {
        let wire: Wire =
            serde_json::from_slice(bytes).map_err(|e| BundleError::Json(e.to_string()))?;
        if wire.format != BUNDLE_FORMAT || wire.version != BUNDLE_VERSION {
            return Err(BundleError::UnsupportedVersion {
                format: wire.format,
                version: wire.version,
            });
        }
        let tee = wire.tee.parse().map_err(|_| BundleError::InvalidField {
            field: "tee",
            reason: format!("{:?} is not nitro, tdx or snp", wire.tee),
        })?;
        let evidence = STANDARD
            .decode(&wire.evidence)
            .map_err(|e| BundleError::InvalidField {
                field: "evidence",
                reason: e.to_string(),
            })?;
        let collateral = wire
            .collateral
            .into_iter()
            .map(|(name, b64)| {
                STANDARD
                    .decode(&b64)
                    .map(|bytes| (name, bytes))
                    .map_err(|e| BundleError::InvalidField {
                        field: "collateral",
                        reason: e.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let verify_at = OffsetDateTime::parse(&wire.verify_at, &Rfc3339).map_err(|e| {
            BundleError::InvalidField {
                field: "verify_at",
                reason: e.to_string(),
            }
        })?;
        Ok(Self {
            tee,
            evidence,
            collateral: Collateral::from_items(collateral),
            verify_at,
            provenance: wire.provenance,
        })
    }

    /// Serializes the bundle as pretty JSON.
    pub fn to_json(&self) -> Result<String, BundleError> {
        let wire = Wire {
            format: BUNDLE_FORMAT.into(),
            version: BUNDLE_VERSION,
            tee: self.tee.as_str().into(),
            evidence: STANDARD.encode(&self.evidence),
            collateral: self
                .collateral
                .iter()
                .map(|(name, bytes)| (name.to_owned(), STANDARD.encode(bytes)))
                .collect(),
            verify_at: self
                .verify_at
                .format(&Rfc3339)
                .map_err(|e| BundleError::InvalidField {
                    field: "verify_at",
                    reason: e.to_string(),
                })?,
            provenance: self.provenance.clone(),
        };
        serde_json::to_string_pretty(&wire).map_err(|e| BundleError::Json(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_other_versions() {
        let bundle = EvidenceBundle {
            tee: TeeKind::Nitro,
            evidence: vec![1, 2, 3],
            collateral: Collateral::from_items([("crl.der".to_string(), vec![9])]),
            verify_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
            provenance: "unit test".into(),
        };
        let json = bundle.to_json().unwrap();
        assert!(EvidenceBundle::looks_like_bundle(json.as_bytes()));
        assert_eq!(EvidenceBundle::from_json(json.as_bytes()).unwrap(), bundle);

        let v2 = json.replace("\"version\": 1", "\"version\": 2");
        assert!(matches!(
            EvidenceBundle::from_json(v2.as_bytes()),
            Err(BundleError::UnsupportedVersion { version: 2, .. })
        ));
        let unknown = json.replacen('{', "{\"extra\": 1,", 1);
        assert!(matches!(
            EvidenceBundle::from_json(unknown.as_bytes()),
            Err(BundleError::Json(_))
        ));
    }
}
