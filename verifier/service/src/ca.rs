//! The verifier's own PKI: an SVID root and intermediate CA (the intermediate
//! signs X.509-SVIDs; `GET /v1/bundle` publishes the root), and the TLS
//! server certificate it generates when none is given. Keys are PEM files,
//! mode 0600, in the data directory.

use crate::decision::Grant;
use std::path::Path;

use attest_gate_core::AgentKey;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
    SanType, SerialNumber, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384,
};
use rustls_pki_types::CertificateSigningRequestDer;
use time::{Duration, OffsetDateTime};

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
    intermediate_pem: String,
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
    /// Loads the CA in `dir`, creating root and intermediate on first start.
    pub(crate) fn load_or_create(dir: &Path, now: OffsetDateTime) -> Result<Self, PkiError> {
        let root_key = load_key(&dir.join("root.key.pem"))?;
        let root_params = ca_params("Attest Gate SVID root", 1, now, 10);
        let root_pem = load_or_create_cert(&dir.join("root.pem"), || {
            Ok(root_params.self_signed(&root_key)?.pem())
        })?;
        let root = Issuer::from_ca_cert_pem(&root_pem, root_key)?;
        let key = load_key(&dir.join("intermediate.key.pem"))?;
        let intermediate_pem = load_or_create_cert(&dir.join("intermediate.pem"), || {
            let params = ca_params("Attest Gate SVID intermediate", 0, now, 5);
            Ok(params.signed_by(&key, &root)?.pem())
        })?;
        let issuer = Issuer::from_ca_cert_pem(&intermediate_pem, key)?;
        Ok(Self {
            issuer,
            root_pem,
            intermediate_pem,
        })
    }

    /// The trust bundle relying parties pin (the root, PEM).
    pub(crate) fn bundle_pem(&self) -> &str {
        &self.root_pem
    }

    /// Issues the X.509-SVID of `grant` for `csr`'s key (checked to be the
    /// key the grant is bound to): the SPIFFE ID as the only URI SAN, the
    /// same lifetime as the token, client and server auth, a random serial.
    /// Evidence under a test root (`--dev`) is said so in the subject
    /// (`OU=attest-gate test-root evidence`), since the SVID has no other
    /// place for it. Returns the chain (SVID, then intermediate) as PEM.
    pub(crate) fn issue(&self, csr: &CheckedCsr, grant: &Grant) -> Result<String, PkiError> {
        let spiffe_id = grant.subject();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        if grant.test_root() {
            params
                .distinguished_name
                .push(DnType::OrganizationalUnitName, TEST_ROOT_MARK);
        }
        let mut serial = secrets::random_bytes::<16>()?;
        if let Some(first) = serial.first_mut() {
            *first &= 0x7f; // positive, as RFC 5280 requires
        }
        params.serial_number = Some(SerialNumber::from_slice(&serial));
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
