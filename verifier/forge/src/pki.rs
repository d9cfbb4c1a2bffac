//! Deterministic certificate chains shaped like the vendors', with knobs to
//! forge every kind of bad chain a verifier must refuse.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyIdMethod,
    KeyUsagePurpose, SerialNumber,
};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::keys::TestKey;

/// One certificate to issue.
#[derive(Debug, Clone)]
pub struct CertSpec {
    /// Common name; other name attributes follow the vendor's pattern.
    pub common_name: String,
    /// Key label (see [`TestKey::p384`]).
    pub key_label: String,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// `Some(n)`: a CA with path length `n`; `None`: an end entity.
    pub ca_path_len: Option<u8>,
    /// Key usages. CA default: keyCertSign, cRLSign, digitalSignature; leaf: digitalSignature.
    pub key_usages: Vec<KeyUsagePurpose>,
    /// Add a critical extension no path validator knows (RFC 5280 §4.2:
    /// such a certificate must be refused).
    pub unknown_critical_extension: bool,
}

impl CertSpec {
    /// A CA certificate with the usual key usages.
    pub fn ca(
        cn: &str,
        key_label: &str,
        path_len: Option<u8>,
        window: (OffsetDateTime, OffsetDateTime),
    ) -> Self {
        Self {
            common_name: cn.into(),
            key_label: key_label.into(),
            not_before: window.0,
            not_after: window.1,
            ca_path_len: Some(path_len.unwrap_or(u8::MAX)),
            key_usages: vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ],
            unknown_critical_extension: false,
        }
    }

    /// An end-entity (signing) certificate.
    pub fn leaf(cn: &str, key_label: &str, window: (OffsetDateTime, OffsetDateTime)) -> Self {
        Self {
            common_name: cn.into(),
            key_label: key_label.into(),
            not_before: window.0,
            not_after: window.1,
            ca_path_len: None,
            key_usages: vec![KeyUsagePurpose::DigitalSignature],
            unknown_critical_extension: false,
        }
    }

    fn params(&self, org: &str) -> CertificateParams {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, "US");
        dn.push(DnType::OrganizationName, org);
        dn.push(DnType::OrganizationalUnitName, "Attest Gate test PKI");
        dn.push(DnType::CommonName, self.common_name.as_str());
        params.distinguished_name = dn;
        params.not_before = self.not_before;
        params.not_after = self.not_after;
        params.is_ca = match self.ca_path_len {
            Some(u8::MAX) => IsCa::Ca(BasicConstraints::Unconstrained),
            Some(n) => IsCa::Ca(BasicConstraints::Constrained(n)),
            None => IsCa::ExplicitNoCa,
        };
        params.key_usages = self.key_usages.clone();
        let id = Sha256::digest(format!("{}|{}", self.common_name, self.key_label));
        params.serial_number = Some(SerialNumber::from_slice(id.get(..16).unwrap_or_default()));
        params.key_identifier_method = KeyIdMethod::PreSpecified(
            Sha256::digest(self.key_label.as_bytes())
                .get(..20)
                .unwrap_or_default()
                .to_vec(),
        );
        params.use_authority_key_identifier_extension = false;
        if self.unknown_critical_extension {
            // 1.3.6.1.4.1.32473 is the documentation arc (RFC 5612).
            let mut extension =
                rcgen::CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 32473, 1], vec![5, 0]);
            extension.set_criticality(true);
            params.custom_extensions.push(extension);
        }
        params
    }
}

/// PEM with LF line endings.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(label, der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// A chain root → intermediates → leaf, DER-encoded, and the leaf's key.
#[derive(Debug, Clone)]
pub struct Chain {
    /// The self-signed root.
    pub root: Vec<u8>,
    /// Intermediates, root side first.
    pub intermediates: Vec<Vec<u8>>,
    /// The end-entity certificate.
    pub leaf: Vec<u8>,
    /// The leaf's signing key.
    pub leaf_key: TestKey,
}

/// What to issue and which defects to build in.
#[derive(Debug, Clone)]
pub struct ChainSpec {
    /// Organization name in every subject.
    pub organization: String,
    /// The root.
    pub root: CertSpec,
    /// Intermediates, root side first.
    pub intermediates: Vec<CertSpec>,
    /// The leaf.
    pub leaf: CertSpec,
    /// Sign the leaf with this key label instead of its issuer's key.
    pub leaf_signed_by: Option<String>,
}

/// Errors from certificate generation (a generator defect, never input-driven).
#[derive(Debug, thiserror::Error)]
#[error("certificate generation failed: {0}")]
pub struct PkiError(#[from] rcgen::Error);

impl ChainSpec {
    /// Issues the chain.
    pub fn issue(&self) -> Result<Chain, PkiError> {
        let org = self.organization.as_str();
        let root_key = TestKey::p384(&self.root.key_label);
        let root_params = self.root.params(org);
        let root = root_params.self_signed(&root_key)?.der().to_vec();
        let mut issuer = Issuer::new(root_params, root_key);

        let mut intermediates = Vec::new();
        for spec in &self.intermediates {
            let key = TestKey::p384(&spec.key_label);
            let params = spec.params(org);
            intermediates.push(params.signed_by(&key, &issuer)?.der().to_vec());
            issuer = Issuer::new(params, key);
        }

        let leaf_key = TestKey::p384(&self.leaf.key_label);
        let leaf_params = self.leaf.params(org);
        let leaf = match &self.leaf_signed_by {
            None => leaf_params.signed_by(&leaf_key, &issuer)?,
            Some(wrong) => {
                // Same issuer name, different key: the signature cannot verify.
                let impostor = Issuer::new(
                    self.intermediates.last().unwrap_or(&self.root).params(org),
                    TestKey::p384(wrong),
                );
                leaf_params.signed_by(&leaf_key, &impostor)?
            }
        }
        .der()
        .to_vec();
        Ok(Chain {
            root,
            intermediates,
            leaf,
            leaf_key,
        })
    }
}
