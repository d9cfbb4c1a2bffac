//! A deterministic AMD-shaped PKI for SEV-SNP tests: RSA test ARK and ASK
//! signing with RSASSA-PSS/SHA-384 under AMD's exact AlgorithmIdentifier, a
//! P-384 VCEK carrying AMD's extensions, and ARK-signed CRLs.

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rsa::pkcs8::EncodePublicKey;
use rsa::signature::RandomizedSigner;
use rsa::RsaPrivateKey;
use sha2::{Digest, Sha256, Sha384};
use time::OffsetDateTime;
use x509_cert::der::asn1::{BitString, GeneralizedTime, Ia5String, OctetString, UtcTime};
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, ObjectIdentifier, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};
use x509_cert::{Certificate, TbsCertificate, Version};

use crate::keys::TestKey;

/// AMD's PSS AlgorithmIdentifier (SHA-384, MGF1-SHA-384, salt 48, explicit trailer).
const PSS_SHA384_WITH_TRAILER: &[u8] = &[
    0x30, 0x46, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a, 0x30, 0x39, 0xa0,
    0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00,
    0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08, 0x30,
    0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0xa2, 0x03,
    0x02, 0x01, 0x30, 0xa3, 0x03, 0x02, 0x01, 0x01,
];

/// Forging failed (a generator defect, not an input problem).
#[derive(Debug, thiserror::Error)]
#[error("AMD test PKI: {0}")]
pub struct AmdPkiError(String);

fn err(e: impl std::fmt::Display) -> AmdPkiError {
    AmdPkiError(e.to_string())
}

/// A deterministic RSA-2048 key for `label` (2048 keeps tests fast; AMD uses 4096).
pub fn rsa_key(label: &str) -> Result<RsaPrivateKey, AmdPkiError> {
    let seed: [u8; 32] = Sha256::digest(format!("attest-gate test rsa key\0{label}")).into();
    RsaPrivateKey::new(&mut ChaCha20Rng::from_seed(seed), 2048).map_err(err)
}

/// RSASSA-PSS SHA-384 salt 48, with the salt derived from the message (deterministic).
fn pss_sign(key: &RsaPrivateKey, msg: &[u8]) -> Vec<u8> {
    let seed: [u8; 32] = Sha256::digest(msg).into();
    let signer = rsa::pss::SigningKey::<Sha384>::new_with_salt_len(key.clone(), 48);
    let sig: rsa::pss::Signature = signer.sign_with_rng(&mut ChaCha20Rng::from_seed(seed), msg);
    Box::<[u8]>::from(sig).to_vec()
}

fn pss_alg() -> Result<AlgorithmIdentifierOwned, AmdPkiError> {
    AlgorithmIdentifierOwned::from_der(PSS_SHA384_WITH_TRAILER).map_err(err)
}

/// `OU=Engineering, C=US, L=Santa Clara, ST=CA, O=Advanced Micro Devices, CN=<cn>`.
pub fn amd_name(cn: &str) -> Result<Name, AmdPkiError> {
    // RFC 4514 strings list the most specific RDN first.
    format!("CN={cn},O=Advanced Micro Devices,ST=CA,L=Santa Clara,C=US,OU=Engineering")
        .parse()
        .map_err(err)
}

pub(crate) fn time(t: OffsetDateTime) -> Result<Time, AmdPkiError> {
    let since = std::time::Duration::from_secs(u64::try_from(t.unix_timestamp()).map_err(err)?);
    if t.year() < 2050 {
        UtcTime::from_unix_duration(since)
            .map(Time::UtcTime)
            .map_err(err)
    } else {
        GeneralizedTime::from_unix_duration(since)
            .map(Time::GeneralTime)
            .map_err(err)
    }
}

pub(crate) fn ext(oid: &str, critical: bool, value: Vec<u8>) -> Result<Extension, AmdPkiError> {
    Ok(Extension {
        extn_id: ObjectIdentifier::new(oid).map_err(err)?,
        critical,
        extn_value: OctetString::new(value).map_err(err)?,
    })
}

/// Extensions of an AMD CA (ARK, ASK): CA, keyCertSign + cRLSign.
pub fn ca_extensions(is_ca: bool) -> Result<Vec<Extension>, AmdPkiError> {
    let bc = BasicConstraints {
        ca: is_ca,
        path_len_constraint: None,
    }
    .to_der()
    .map_err(err)?;
    let ku = KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign)
        .to_der()
        .map_err(err)?;
    Ok(vec![
        ext("2.5.29.19", true, bc)?,
        ext("2.5.29.15", true, ku)?,
    ])
}

/// What a VCEK certifies, as AMD's extensions encode it.
#[derive(Debug, Clone)]
pub struct VcekExtensions {
    /// productName1, e.g. `Milan-B0`.
    pub product_name: String,
    /// blSPL, teeSPL, snpSPL, ucodeSPL.
    pub bootloader: u8,
    /// teeSPL.
    pub tee: u8,
    /// snpSPL.
    pub snp: u8,
    /// ucodeSPL.
    pub microcode: u8,
    /// hwID (the chip's CHIP_ID; 8 bytes on Turin), raw as AMD ships it.
    pub hw_id: Vec<u8>,
    /// fmcSPL (Turin and later).
    pub fmc: Option<u8>,
}

fn der_int(v: u8) -> Vec<u8> {
    if v < 0x80 {
        vec![0x02, 0x01, v]
    } else {
        vec![0x02, 0x02, 0x00, v]
    }
}

impl VcekExtensions {
    /// The extensions in AMD's encoding.
    pub fn encode(&self) -> Result<Vec<Extension>, AmdPkiError> {
        let arc = "1.3.6.1.4.1.3704.1";
        let name = Ia5String::new(&self.product_name)
            .map_err(err)?
            .to_der()
            .map_err(err)?;
        let mut out = vec![
            ext(&format!("{arc}.1"), false, der_int(0))?,
            ext(&format!("{arc}.2"), false, name)?,
        ];
        for (sub, v) in [
            (1, self.bootloader),
            (2, self.tee),
            (3, self.snp),
            (4, 0),
            (5, 0),
            (6, 0),
            (7, 0),
            (8, self.microcode),
        ] {
            out.push(ext(&format!("{arc}.3.{sub}"), false, der_int(v))?);
        }
        if let Some(fmc) = self.fmc {
            out.push(ext(&format!("{arc}.3.9"), false, der_int(fmc))?);
        }
        out.push(ext(&format!("{arc}.4"), false, self.hw_id.clone())?);
        Ok(out)
    }
}

/// One certificate: subject, issuer, serial, window, subject key, extensions,
/// signed with RSA-PSS by `signer`.
#[allow(clippy::too_many_arguments)]
pub fn issue(
    subject: &str,
    issuer: &str,
    serial: u32,
    window: (OffsetDateTime, OffsetDateTime),
    subject_spki_der: &[u8],
    extensions: Vec<Extension>,
    signer: &RsaPrivateKey,
) -> Result<Vec<u8>, AmdPkiError> {
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&serial.to_be_bytes()).map_err(err)?,
        signature: pss_alg()?,
        issuer: amd_name(issuer)?,
        validity: Validity {
            not_before: time(window.0)?,
            not_after: time(window.1)?,
        },
        subject: amd_name(subject)?,
        subject_public_key_info: SubjectPublicKeyInfoOwned::from_der(subject_spki_der)
            .map_err(err)?,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    let tbs_der = tbs.to_der().map_err(err)?;
    let signature = pss_sign(signer, &tbs_der);
    Certificate {
        tbs_certificate: tbs,
        signature_algorithm: pss_alg()?,
        signature: BitString::from_bytes(&signature).map_err(err)?,
    }
    .to_der()
    .map_err(err)
}

/// The DER SubjectPublicKeyInfo of an RSA key.
pub fn rsa_spki(key: &RsaPrivateKey) -> Result<Vec<u8>, AmdPkiError> {
    Ok(key
        .to_public_key()
        .to_public_key_der()
        .map_err(err)?
        .as_bytes()
        .to_vec())
}

/// A VCEK's subject key.
pub fn ec_spki(key: &TestKey) -> Vec<u8> {
    key.spki_der()
}

/// An ARK-signed CRL revoking `serials`, valid over `window`.
pub fn crl(
    ark_cn: &str,
    ark: &RsaPrivateKey,
    window: (OffsetDateTime, OffsetDateTime),
    serials: &[u32],
) -> Result<Vec<u8>, AmdPkiError> {
    use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
    let revoked = serials
        .iter()
        .map(|s| {
            Ok(RevokedCert {
                serial_number: SerialNumber::new(&s.to_be_bytes()).map_err(err)?,
                revocation_date: time(window.0)?,
                crl_entry_extensions: None,
            })
        })
        .collect::<Result<Vec<_>, AmdPkiError>>()?;
    let tbs = TbsCertList {
        version: Version::V2,
        signature: pss_alg()?,
        issuer: amd_name(ark_cn)?,
        this_update: time(window.0)?,
        next_update: Some(time(window.1)?),
        revoked_certificates: (!revoked.is_empty()).then_some(revoked),
        crl_extensions: None,
    };
    let tbs_der = tbs.to_der().map_err(err)?;
    let signature = pss_sign(ark, &tbs_der);
    CertificateList {
        tbs_cert_list: tbs,
        signature_algorithm: pss_alg()?,
        signature: BitString::from_bytes(&signature).map_err(err)?,
    }
    .to_der()
    .map_err(err)
}
