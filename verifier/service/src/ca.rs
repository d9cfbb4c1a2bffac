//! The verifier's own PKI: an SVID root and intermediate CA (the intermediate
//! signs X.509-SVIDs; `GET /v1/bundle` publishes the root, and
//! `GET /v1/bundle/spiffe` the SPIFFE bundle), and the TLS server
//! certificate it generates when none is given. Keys are PEM files, mode
//! 0600, in the data directory.
//!
//! Every certificate follows RFC 5280 (`openssl verify -x509_strict` passes:
//! subject and authority key identifiers, critical key usage and basic
//! constraints) and the SPIFFE X.509-SVID profile: a leaf has exactly one
//! URI SAN (its SPIFFE ID; critical, since its subject names no one),
//! `digitalSignature` only and is not a CA; the CAs have `keyCertSign` and
//! `cRLSign`; and the intermediate carries a critical name constraint that
//! permits only URIs in the trust domains `measurements/` names, so even a
//! stolen intermediate key cannot mint an identity another trust domain's
//! relying parties accept. When those trust domains change (a reload, a
//! new workload file) the intermediate is issued again, same key.

use crate::decision::Grant;
use std::collections::BTreeSet;
use std::path::Path;

use attest_gate_core::AgentKey;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, CustomExtension,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PublicKeyData, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384,
};
use rustls_pki_types::CertificateSigningRequestDer;
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::{GeneralName, ParsedExtension};

use crate::secrets::{self, SecretError};

/// Why a CSR was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    /// Not a PKCS#10 request, or its self-signature does not verify.
    #[error("the CSR is not a valid, self-signed PKCS#10 request: {0}")]
    Invalid(String),
    /// Its key is not the agent key the evidence binds.
    #[error("the CSR's public key is not the agent key bound in the evidence")]
    KeyMismatch,
    /// Its key is not P-256 or P-384.
    #[error("X.509-SVIDs are issued for P-256 and P-384 keys only")]
    UnsupportedKey,
}

impl CsrError {
    /// The stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "csr_invalid",
            Self::KeyMismatch => "csr_key_mismatch",
            Self::UnsupportedKey => "csr_unsupported_key",
        }
    }
}

/// A checked CSR: its signature verified, its key the agent's.
pub(crate) struct CheckedCsr(CertificateSigningRequestParams);

impl std::fmt::Debug for CheckedCsr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CheckedCsr(..)")
    }
}

/// Parses a CSR (DER) and checks that it is self-signed by the agent's key.
/// Only the key is used: names come from the appraisal. rcgen labels the key
/// by the CSR's signature algorithm, so the label must match the JWK's curve
/// too (a P-384 key signing with SHA-256 would otherwise be called P-256).
pub(crate) fn check_csr(der: &[u8], agent_key: &AgentKey) -> Result<CheckedCsr, CsrError> {
    let csr = CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(der))
        .map_err(|e| CsrError::Invalid(e.to_string()))?;
    let alg = csr.public_key.algorithm();
    if alg != &PKCS_ECDSA_P256_SHA256 && alg != &PKCS_ECDSA_P384_SHA384 {
        return Err(CsrError::UnsupportedKey);
    }
    let curve_matches = match agent_key {
        AgentKey::P256 { .. } => alg == &PKCS_ECDSA_P256_SHA256,
        AgentKey::P384 { .. } => alg == &PKCS_ECDSA_P384_SHA384,
        AgentKey::Ed25519 { .. } => return Err(CsrError::UnsupportedKey),
    };
    if !curve_matches || csr.public_key.der_bytes() != agent_key.raw_public_key().as_slice() {
        return Err(CsrError::KeyMismatch);
    }
    Ok(CheckedCsr(csr))
}

/// The subject OU of an SVID issued for test-root evidence.
pub(crate) const TEST_ROOT_MARK: &str = "attest-gate test-root evidence";

/// The SVID CA.
pub(crate) struct SvidCa {
    issuer: Issuer<'static, KeyPair>,
    root_pem: String,
    /// The root as a SPIFFE bundle entry (`use: x509-svid`, `x5c`).
    root_jwk: serde_json::Value,
    intermediate_pem: String,
    /// The trust domains the intermediate's name constraint permits.
    trust_domains: BTreeSet<String>,
}

impl std::fmt::Debug for SvidCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SvidCa(..)")
    }
}

/// A PKI failure.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A key or certificate file.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// Certificate generation or parsing.
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// A CA certificate on disk that does not parse as one.
    #[error("CA certificate: {0}")]
    Unreadable(String),
    /// A grant for a trust domain the intermediate may not issue for (its
    /// name constraint would make the SVID fail validation): refused.
    #[error("the SVID intermediate is not constrained to trust domain {0}")]
    OutsideTrustDomains(String),
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Attest Gate");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn ca_params(
    common_name: &str,
    path_len: u8,
    now: OffsetDateTime,
    years: i64,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(365 * years);
    params
}

/// A random positive 128-bit serial. rcgen's default is a hash of the
/// subject key, which would repeat when the intermediate is issued again
/// with the same key (RFC 5280 §4.1.2.2: unique per issuer).
fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut serial = secrets::random_bytes::<16>()?;
    if let Some(first) = serial.first_mut() {
        *first &= 0x7f; // positive, as RFC 5280 requires
    }
    Ok(SerialNumber::from_slice(&serial))
}

/// The OID of the name constraints extension (RFC 5280 §4.2.1.10).
const NAME_CONSTRAINTS: [u64; 4] = [2, 5, 29, 30];

/// A DER TLV (definite length, short or long form).
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let significant = bytes
            .get(len.leading_zeros() as usize / 8..)
            .unwrap_or_default();
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
    out
}

/// `NameConstraints ::= SEQUENCE { permittedSubtrees [0] GeneralSubtrees }`
/// with one `uniformResourceIdentifier [6]` subtree per trust domain, as
/// the X.509-SVID profile (§4.2) puts it. rcgen has no URI subtree, so the
/// extension is encoded here; RFC 5280 says a URI constraint is a host
/// name, matched against the URI's host: `attest-gate.test` permits
/// `spiffe://attest-gate.test/...` and nothing else (no subdomain, since
/// the name does not start with a period).
fn name_constraints(trust_domains: &BTreeSet<String>) -> CustomExtension {
    let subtrees: Vec<u8> = trust_domains
        .iter()
        .flat_map(|domain| der(0x30, &der(0x86, domain.as_bytes())))
        .collect();
    let content = der(0x30, &der(0xa0, &subtrees));
    let mut extension = CustomExtension::from_oid_content(&NAME_CONSTRAINTS, content);
    extension.set_criticality(true);
    extension
}

/// Whether `pem` is an intermediate of today's profile: an authority key
/// identifier, and with `constrained_to` a critical name constraint
/// permitting exactly those trust domains' URIs (and excluding nothing),
/// without it no name constraint.
fn intermediate_conforms(pem: &str, constrained_to: Option<&BTreeSet<String>>) -> bool {
    let Ok((_, block)) = x509_parser::pem::parse_x509_pem(pem.as_bytes()) else {
        return false;
    };
    let Ok(cert) = block.parse_x509() else {
        return false;
    };
    let mut has_aki = false;
    let mut permitted = None;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                has_aki = aki.key_identifier.is_some();
            }
            ParsedExtension::NameConstraints(nc) if ext.critical => {
                if nc.excluded_subtrees.is_some() {
                    return false;
                }
                let mut uris = BTreeSet::new();
                for subtree in nc.permitted_subtrees.iter().flatten() {
                    match subtree.base {
                        GeneralName::URI(uri) => uris.insert(uri.to_string()),
                        _ => return false,
                    };
                }
                permitted = Some(uris);
            }
            _ => {}
        }
    }
    has_aki && permitted.as_ref() == constrained_to
}

/// The root's public key as a SPIFFE bundle entry (SPIFFE X.509-SVID §6.1):
/// `use: x509-svid`, no `kid`, and the certificate itself in `x5c`.
fn bundle_entry(root_pem: &str) -> Result<serde_json::Value, PkiError> {
    let unreadable = |what: &str| PkiError::Unreadable(format!("the SVID root: {what}"));
    let (_, block) =
        x509_parser::pem::parse_x509_pem(root_pem.as_bytes()).map_err(|_| unreadable("PEM"))?;
    let cert = block.parse_x509().map_err(|_| unreadable("DER"))?;
    let point = &cert.public_key().subject_public_key.data;
    let key = match (point.len(), point.first()) {
        (65, Some(4)) => AgentKey::P256 {
            x: point
                .get(1..33)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| unreadable("key"))?,
            y: point
                .get(33..65)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| unreadable("key"))?,
        },
        _ => return Err(unreadable("not a P-256 key")),
    };
    let mut jwk = key.to_jwk();
    if let Some(map) = jwk.as_object_mut() {
        map.insert("use".into(), serde_json::json!("x509-svid"));
        map.insert(
            "x5c".into(),
            serde_json::json!([STANDARD.encode(&block.contents)]),
        );
    }
    Ok(jwk)
}

fn key_pem() -> Result<Vec<u8>, SecretError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map(|k| k.serialize_pem().into_bytes())
        .map_err(|_| SecretError::Random)
}

fn load_key(path: &Path) -> Result<KeyPair, PkiError> {
    let (pem, _) = secrets::load_or_create(path, key_pem)?;
    Ok(KeyPair::from_pem(&String::from_utf8_lossy(&pem))?)
}

/// Reads a public certificate file, or makes and writes one (mode 0644 is
/// fine for certificates, but one writer helper keeps creation race-free).
fn load_or_create_cert(
    path: &Path,
    make: impl FnOnce() -> Result<String, PkiError>,
) -> Result<String, PkiError> {
    if path.exists() {
        return Ok(
            std::fs::read_to_string(path).map_err(|source| SecretError::Io {
                path: path.to_path_buf(),
                source,
            })?,
        );
    }
    let pem = make()?;
    let (bytes, _) = secrets::load_or_create(path, || Ok(pem.into_bytes()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

impl SvidCa {
    /// Loads the CA in `dir`, creating root and intermediate on first
    /// start. An intermediate that is not of today's profile for exactly
    /// `trust_domains` (an older one without an authority key identifier or
    /// name constraint, or one for other trust domains) is issued again,
    /// with the same key, and replaces the file.
    pub(crate) fn load_or_create(
        dir: &Path,
        trust_domains: &BTreeSet<String>,
        name_constraint: bool,
        now: OffsetDateTime,
    ) -> Result<Self, PkiError> {
        let root_key = load_key(&dir.join("root.key.pem"))?;
        let root_params = ca_params("Attest Gate SVID root", 1, now, 10);
        let root_pem = load_or_create_cert(&dir.join("root.pem"), || {
            let mut root_params = root_params;
            root_params.serial_number = Some(random_serial()?);
            Ok(root_params.self_signed(&root_key)?.pem())
        })?;
        let root_jwk = bundle_entry(&root_pem)?;
        let root = Issuer::from_ca_cert_pem(&root_pem, root_key)?;
        let key = load_key(&dir.join("intermediate.key.pem"))?;
        let make = || -> Result<String, PkiError> {
            let mut params = ca_params("Attest Gate SVID intermediate", 0, now, 5);
            params.serial_number = Some(random_serial()?);
            params.use_authority_key_identifier_extension = true;
            if name_constraint {
                params.custom_extensions = vec![name_constraints(trust_domains)];
            }
            Ok(params.signed_by(&key, &root)?.pem())
        };
        let path = dir.join("intermediate.pem");
        let mut intermediate_pem = load_or_create_cert(&path, make)?;
        let constrained_to = name_constraint.then_some(trust_domains);
        if !intermediate_conforms(&intermediate_pem, constrained_to) {
            intermediate_pem = make()?;
            secrets::replace_secret(&path, intermediate_pem.as_bytes())?;
            tracing::info!(
                ?trust_domains,
                "issued the SVID intermediate again for these trust domains"
            );
        }
        let issuer = Issuer::from_ca_cert_pem(&intermediate_pem, key)?;
        Ok(Self {
            issuer,
            root_pem,
            root_jwk,
            intermediate_pem,
            trust_domains: trust_domains.clone(),
        })
    }

    /// The trust bundle relying parties pin (the root, PEM).
    pub(crate) fn bundle_pem(&self) -> &str {
        &self.root_pem
    }

    /// The root as a SPIFFE bundle JWK (`use: x509-svid`, `x5c`).
    pub(crate) fn bundle_jwk(&self) -> &serde_json::Value {
        &self.root_jwk
    }

    /// Issues the X.509-SVID of `grant` for `csr`'s key (checked to be the
    /// key the grant is bound to): the SPIFFE ID as the only URI SAN, the
    /// same lifetime as the token, client and server auth, a random serial.
    /// Evidence under a test root (`--dev`) is said so in the subject
    /// (`OU=attest-gate test-root evidence`), since the SVID has no other
    /// place for it. Returns the chain (SVID, then intermediate) as PEM.
    pub(crate) fn issue(&self, csr: &CheckedCsr, grant: &Grant) -> Result<String, PkiError> {
        let domain = &grant.workload().grant.trust_domain;
        if !self.trust_domains.contains(domain) {
            return Err(PkiError::OutsideTrustDomains(domain.clone()));
        }
        let spiffe_id = grant.subject();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        if grant.test_root() {
            params
                .distinguished_name
                .push(DnType::OrganizationalUnitName, TEST_ROOT_MARK);
        }
        params.serial_number = Some(random_serial()?);
        params.subject_alt_names = vec![SanType::URI(spiffe_id.as_str().try_into()?)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        params.not_before = grant.issued_at();
        params.not_after = grant.expires_at();
        params.use_authority_key_identifier_extension = true;
        let svid = params.signed_by(&csr.0.public_key, &self.issuer)?;
        Ok(format!("{}{}", svid.pem(), self.intermediate_pem))
    }
}

/// The TLS server certificate and key (PEM), generated on first start for
/// `localhost`, 127.0.0.1, ::1 and `extra_names`.
pub(crate) fn load_or_create_tls(
    dir: &Path,
    extra_names: &[String],
    now: OffsetDateTime,
) -> Result<(String, String), PkiError> {
    let key_path = dir.join("key.pem");
    let key = load_key(&key_path)?;
    let cert = load_or_create_cert(&dir.join("cert.pem"), || {
        let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
        names.extend(extra_names.iter().cloned());
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name = name("Attest Gate verifier");
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(365);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        Ok(params.self_signed(&key)?.pem())
    })?;
    Ok((cert, key.serialize_pem()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths_take_the_short_and_long_forms() {
        assert_eq!(der(0x04, &[7; 3]), [0x04, 3, 7, 7, 7]);
        assert_eq!(&der(0x04, &[0; 200])[..3], [0x04, 0x81, 200]);
        assert_eq!(&der(0x04, &[0; 300])[..4], [0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(der(0x04, &[0; 70_000]).len(), 70_000 + 5);
    }

    /// Many long trust domains (an extension well past 255 bytes) encode
    /// and parse back exactly; another set does not conform, and loading
    /// with it issues the intermediate again.
    #[test]
    fn the_name_constraint_round_trips_and_follows_the_domains() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let many: BTreeSet<String> = (0..40)
            .map(|i| format!("{i}.{}.example", "d".repeat(60)))
            .collect();
        let ca = SvidCa::load_or_create(dir.path(), &many, true, now).unwrap();
        assert!(intermediate_conforms(&ca.intermediate_pem, Some(&many)));
        let fewer: BTreeSet<String> = many.iter().skip(1).cloned().collect();
        assert!(!intermediate_conforms(&ca.intermediate_pem, Some(&fewer)));
        assert!(!intermediate_conforms(&ca.intermediate_pem, None));
        let again = SvidCa::load_or_create(dir.path(), &fewer, true, now).unwrap();
        assert_ne!(again.intermediate_pem, ca.intermediate_pem);
        assert!(intermediate_conforms(&again.intermediate_pem, Some(&fewer)));
        assert_eq!(again.root_pem, ca.root_pem, "the root stays");
        // Unchanged domains: the file is reused as it is.
        let same = SvidCa::load_or_create(dir.path(), &fewer, true, now).unwrap();
        assert_eq!(same.intermediate_pem, again.intermediate_pem);
        // The constraint turned off: issued again without it, and still
        // refusing SVIDs outside the trust domains.
        let plain = SvidCa::load_or_create(dir.path(), &fewer, false, now).unwrap();
        assert_ne!(plain.intermediate_pem, same.intermediate_pem);
        assert!(intermediate_conforms(&plain.intermediate_pem, None));
        assert!(!intermediate_conforms(
            &plain.intermediate_pem,
            Some(&fewer)
        ));
        assert_eq!(plain.root_pem, ca.root_pem);
    }
}
