//! A deterministic Intel-shaped SGX/TDX test PKI: a self-signed test root, a
//! PCK Platform CA, a PCK leaf carrying Intel's SGX extension, a TCB signing
//! certificate, and the PCK and root CA CRLs. Everything is ECDSA P-256 /
//! ecdsa-with-SHA256, with Intel's name order (CN, O, L, ST, C), 20-byte
//! serials and Intel's extension set and order, as in Intel's own
//! certificates.

use sha2::{Digest, Sha256};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
use x509_cert::der::asn1::BitString;
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, ObjectIdentifier, SubjectPublicKeyInfoOwned};
use x509_cert::time::Validity;
use x509_cert::{Certificate, TbsCertificate, Version};

use crate::amd;
use crate::keys::TestKeyP256;
use crate::nitro::FORGE_INSTANT;
use crate::pki::pem_encode;

/// Common name of the test root (Intel's is `Intel SGX Root CA`).
pub const ROOT_COMMON_NAME: &str = "Attest Gate Test SGX Root CA";
/// Common name of the foreign (untrusted) root of [`PlatformSpec::foreign_root`].
pub const FOREIGN_ROOT_COMMON_NAME: &str = "Attest Gate Foreign SGX Root CA";
/// Common name of the PCK Platform CA (Intel's: `Intel SGX PCK Platform CA`).
pub const PLATFORM_CA_COMMON_NAME: &str = "Attest Gate Test SGX PCK Platform CA";
/// Common name of the PCK leaf (Intel's: `Intel SGX PCK Certificate`).
pub const PCK_COMMON_NAME: &str = "Attest Gate Test SGX PCK Certificate";
/// Common name of the TCB signing certificate (Intel's: `Intel SGX TCB Signing`).
pub const TCB_SIGNING_COMMON_NAME: &str = "Attest Gate Test SGX TCB Signing";
/// Organization of every test name (Intel's: `Intel Corporation`).
pub const ORGANIZATION: &str = "Attest Gate test PKI";
/// Key-label namespace of the standard test PKI.
pub const TEST_NAMESPACE: &str = "tdx-test";
/// Key-label namespace of the foreign PKI.
pub const FOREIGN_NAMESPACE: &str = "tdx-foreign";
/// Intel's SGX extension in PCK certificates.
pub const SGX_EXTENSION_OID: &str = "1.2.840.113741.1.13.1";
/// ecdsa-with-SHA256.
const ECDSA_WITH_SHA256: &str = "1.2.840.10045.4.3.2";
/// Where the test PCK CRL "lives" (the CRL distribution point of PCK leaves).
pub const PCK_CRL_URL: &str =
    "https://example.invalid/attest-gate/sgx/certification/v4/pckcrl?ca=platform&encoding=der";
/// Where the test root CA CRL "lives".
pub const ROOT_CRL_URL: &str =
    "https://example.invalid/attest-gate/sgx/AttestGateTestSGXRootCA.der";
/// A serial that every PCK CRL revokes: a decoy, so an unrevoked chain is
/// checked against a non-empty list.
pub const DECOY_REVOKED_SERIAL: [u8; 20] = [
    0x5e, 0xc0, 0x7e, 0x57, 0xde, 0xc0, 0x15, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x01,
];

/// Forging failed (a generator defect, not an input problem).
#[derive(Debug, thiserror::Error)]
#[error("Intel test PKI: {0}")]
pub struct IntelPkiError(String);

pub(crate) fn err(e: impl std::fmt::Display) -> IntelPkiError {
    IntelPkiError(e.to_string())
}

/// The platform a PCK certificate certifies, and the shape of its PKI.
#[derive(Debug, Clone)]
pub struct PlatformSpec {
    /// Key-label namespace: the keys are `<namespace>-root`,
    /// `-platform-ca`, `-pck` and `-tcb-signing`.
    pub namespace: String,
    /// Common name of the self-signed root.
    pub root_common_name: String,
    /// PPID (SGX extension `.1`).
    pub ppid: [u8; 16],
    /// FMSPC (`.4`).
    pub fmspc: [u8; 6],
    /// PCE-ID (`.3`).
    pub pce_id: [u8; 2],
    /// The 16 SGX TCB component SVNs (`.2.1`–`.2.16`).
    pub sgx_svns: [u8; 16],
    /// PCESVN (`.2.17`).
    pub pcesvn: u16,
    /// CPUSVN (`.2.18`); Intel's equals the component SVNs as bytes.
    pub cpusvn: [u8; 16],
    /// Root validity.
    pub root_window: (OffsetDateTime, OffsetDateTime),
    /// PCK Platform CA validity.
    pub platform_ca_window: (OffsetDateTime, OffsetDateTime),
    /// PCK leaf validity.
    pub pck_window: (OffsetDateTime, OffsetDateTime),
    /// TCB signing certificate validity.
    pub tcb_signing_window: (OffsetDateTime, OffsetDateTime),
    /// thisUpdate / nextUpdate of the PCK CRL.
    pub pck_crl_window: (OffsetDateTime, OffsetDateTime),
    /// thisUpdate / nextUpdate of the root CA CRL.
    pub root_crl_window: (OffsetDateTime, OffsetDateTime),
    /// The PCK CRL revokes the PCK leaf.
    pub revoke_pck: bool,
    /// The root CA CRL revokes the PCK Platform CA.
    pub revoke_platform_ca: bool,
    /// Put the TCB signing certificate on the root CA CRL.
    pub revoke_tcb_signing: bool,
}

/// The default platform's SGX TCB component SVNs.
pub const DEFAULT_SGX_SVNS: [u8; 16] = [3, 3, 2, 2, 4, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0];
/// The default platform's PCESVN.
pub const DEFAULT_PCESVN: u16 = 13;
/// The default platform's FMSPC.
pub const DEFAULT_FMSPC: [u8; 6] = [0x90, 0xc0, 0x6f, 0x00, 0x00, 0x00];

/// Every collateral's validity (issueDate / nextUpdate, CRL thisUpdate /
/// nextUpdate): a day before to 29 days after [`FORGE_INSTANT`].
pub fn collateral_window() -> (OffsetDateTime, OffsetDateTime) {
    (
        FORGE_INSTANT - Duration::days(1),
        FORGE_INSTANT + Duration::days(29),
    )
}

impl Default for PlatformSpec {
    /// The standard test platform under the standard test root; CRLs revoke
    /// nothing of it.
    fn default() -> Self {
        let mut ppid = [0u8; 16];
        for (o, b) in ppid
            .iter_mut()
            .zip(Sha256::digest(b"attest-gate test ppid"))
        {
            *o = b;
        }
        Self {
            namespace: TEST_NAMESPACE.into(),
            root_common_name: ROOT_COMMON_NAME.into(),
            ppid,
            fmspc: DEFAULT_FMSPC,
            pce_id: [0, 0],
            sgx_svns: DEFAULT_SGX_SVNS,
            pcesvn: DEFAULT_PCESVN,
            cpusvn: DEFAULT_SGX_SVNS,
            root_window: (
                datetime!(2020-01-01 00:00:00 UTC),
                datetime!(2049-12-31 23:59:59 UTC),
            ),
            platform_ca_window: (
                datetime!(2020-01-01 00:00:00 UTC),
                datetime!(2035-01-01 00:00:00 UTC),
            ),
            pck_window: (
                FORGE_INSTANT - Duration::days(30),
                FORGE_INSTANT + Duration::days(7 * 365),
            ),
            tcb_signing_window: (
                FORGE_INSTANT - Duration::days(365),
                FORGE_INSTANT + Duration::days(7 * 365),
            ),
            pck_crl_window: collateral_window(),
            root_crl_window: (
                FORGE_INSTANT - Duration::days(180),
                FORGE_INSTANT + Duration::days(200),
            ),
            revoke_pck: false,
            revoke_platform_ca: false,
            revoke_tcb_signing: false,
        }
    }
}

impl PlatformSpec {
    /// The same platform under a different self-signed root (other name,
    /// other keys throughout): a chain no test trust store accepts.
    pub fn foreign_root() -> Self {
        Self {
            namespace: FOREIGN_NAMESPACE.into(),
            root_common_name: FOREIGN_ROOT_COMMON_NAME.into(),
            ..Self::default()
        }
    }

    /// This platform with other SGX component SVNs (CPUSVN follows) and PCESVN.
    pub fn with_svns(self, sgx_svns: [u8; 16], pcesvn: u16) -> Self {
        Self {
            sgx_svns,
            cpusvn: sgx_svns,
            pcesvn,
            ..self
        }
    }

    /// The key label of `role` (`root`, `platform-ca`, `pck`, `tcb-signing`).
    pub fn key_label(&self, role: &str) -> String {
        format!("{}-{role}", self.namespace)
    }

    /// The PCK leaf's signing key.
    pub fn pck_key(&self) -> TestKeyP256 {
        TestKeyP256::new(&self.key_label("pck"))
    }

    /// The TCB signing key (signs TCB info and QE identity).
    pub fn tcb_signing_key(&self) -> TestKeyP256 {
        TestKeyP256::new(&self.key_label("tcb-signing"))
    }

    /// The certificate serial of `common_name` issued to `role`'s key (20
    /// bytes, positive, like Intel's).
    pub fn serial(&self, common_name: &str, role: &str) -> [u8; 20] {
        let h = Sha256::digest(format!(
            "attest-gate tdx serial\0{common_name}\0{}",
            self.key_label(role)
        ));
        let mut serial = [0u8; 20];
        for (o, b) in serial.iter_mut().zip(h) {
            *o = b;
        }
        serial[0] = (serial[0] & 0x3f) | 0x40;
        serial
    }

    /// The SGX extension's value (DER), as in Intel's PCK certificates.
    pub fn sgx_extension(&self) -> Result<Vec<u8>, IntelPkiError> {
        let sub = |path: &str| oid(&format!("{SGX_EXTENSION_OID}.{path}"));
        let mut tcb = Vec::new();
        for (i, svn) in (1..).zip(self.sgx_svns) {
            tcb.push(seq(&[sub(&format!("2.{i}"))?, integer(svn.into())]));
        }
        tcb.push(seq(&[sub("2.17")?, integer(self.pcesvn.into())]));
        tcb.push(seq(&[sub("2.18")?, tlv(0x04, &self.cpusvn)]));
        Ok(seq(&[
            seq(&[sub("1")?, tlv(0x04, &self.ppid)]),
            seq(&[sub("2")?, seq(&tcb)]),
            seq(&[sub("3")?, tlv(0x04, &self.pce_id)]),
            seq(&[sub("4")?, tlv(0x04, &self.fmspc)]),
            // SGX Type: Standard (0).
            seq(&[sub("5")?, tlv(0x0a, &[0])]),
        ]))
    }

    /// Issues the PKI: certificates, keys and CRLs.
    pub fn issue(&self) -> Result<Pki, IntelPkiError> {
        let root_key = TestKeyP256::new(&self.key_label("root"));
        let ca_key = TestKeyP256::new(&self.key_label("platform-ca"));
        let pck_key = self.pck_key();
        let tcb_key = self.tcb_signing_key();
        let root_cn = self.root_common_name.as_str();

        let root_serial = self.serial(root_cn, "root");
        let root = issue(&CertParams {
            subject: root_cn,
            issuer: root_cn,
            serial: &root_serial,
            window: self.root_window,
            subject_key: &root_key,
            issuer_key: &root_key,
            crl_url: ROOT_CRL_URL,
            kind: Kind::Ca(1),
            sgx: None,
        })?;
        let ca_serial = self.serial(PLATFORM_CA_COMMON_NAME, "platform-ca");
        let platform_ca = issue(&CertParams {
            subject: PLATFORM_CA_COMMON_NAME,
            issuer: root_cn,
            serial: &ca_serial,
            window: self.platform_ca_window,
            subject_key: &ca_key,
            issuer_key: &root_key,
            crl_url: ROOT_CRL_URL,
            kind: Kind::Ca(0),
            sgx: None,
        })?;
        let pck_serial = self.serial(PCK_COMMON_NAME, "pck");
        let pck = issue(&CertParams {
            subject: PCK_COMMON_NAME,
            issuer: PLATFORM_CA_COMMON_NAME,
            serial: &pck_serial,
            window: self.pck_window,
            subject_key: &pck_key,
            issuer_key: &ca_key,
            crl_url: PCK_CRL_URL,
            kind: Kind::Leaf,
            sgx: Some(self.sgx_extension()?),
        })?;
        let tcb_serial = self.serial(TCB_SIGNING_COMMON_NAME, "tcb-signing");
        let tcb_signing = issue(&CertParams {
            subject: TCB_SIGNING_COMMON_NAME,
            issuer: root_cn,
            serial: &tcb_serial,
            window: self.tcb_signing_window,
            subject_key: &tcb_key,
            issuer_key: &root_key,
            crl_url: ROOT_CRL_URL,
            kind: Kind::Leaf,
            sgx: None,
        })?;

        let mut pck_revoked = vec![DECOY_REVOKED_SERIAL];
        if self.revoke_pck {
            pck_revoked.push(pck_serial);
        }
        let pck_crl = crl(
            PLATFORM_CA_COMMON_NAME,
            &ca_key,
            self.pck_crl_window,
            &pck_revoked,
        )?;
        let mut root_revoked: Vec<[u8; 20]> = Vec::new();
        if self.revoke_platform_ca {
            root_revoked.push(ca_serial);
        }
        if self.revoke_tcb_signing {
            root_revoked.push(tcb_serial);
        }
        let root_ca_crl = crl(root_cn, &root_key, self.root_crl_window, &root_revoked)?;
        Ok(Pki {
            root,
            platform_ca,
            pck,
            tcb_signing,
            pck_key,
            tcb_signing_key: tcb_key,
            pck_crl,
            root_ca_crl,
        })
    }
}

/// An issued Intel-shaped PKI.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The self-signed root (DER).
    pub root: Vec<u8>,
    /// The PCK Platform CA (DER).
    pub platform_ca: Vec<u8>,
    /// The PCK leaf (DER).
    pub pck: Vec<u8>,
    /// The TCB signing certificate (DER).
    pub tcb_signing: Vec<u8>,
    /// The PCK leaf's key: signs QE reports.
    pub pck_key: TestKeyP256,
    /// The TCB signing key: signs TCB info and QE identity.
    pub tcb_signing_key: TestKeyP256,
    /// The PCK CRL (DER), signed by the Platform CA.
    pub pck_crl: Vec<u8>,
    /// The root CA CRL (DER), signed by the root.
    pub root_ca_crl: Vec<u8>,
}

impl Pki {
    /// The quote's PCK chain: PCK leaf, Platform CA, root (PEM, LF).
    pub fn pck_chain_pem(&self) -> String {
        [&self.pck, &self.platform_ca, &self.root]
            .iter()
            .map(|der| pem_encode("CERTIFICATE", der))
            .collect()
    }

    /// `tcb_info_issuer_chain.pem` / `qe_identity_issuer_chain.pem`: TCB
    /// signing certificate, root.
    pub fn tcb_issuer_chain_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.tcb_signing) + &pem_encode("CERTIFICATE", &self.root)
    }

    /// `pck_crl_issuer_chain.pem`: Platform CA, root.
    pub fn pck_crl_issuer_chain_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.platform_ca) + &pem_encode("CERTIFICATE", &self.root)
    }
}

/// The standard test root certificate (DER): the root to trust with `--trust-root`.
pub fn test_root() -> Result<Vec<u8>, IntelPkiError> {
    Ok(PlatformSpec::default().issue()?.root)
}

/// What a certificate is: a CA with a path length, or an end entity.
enum Kind {
    Ca(u8),
    Leaf,
}

struct CertParams<'a> {
    subject: &'a str,
    issuer: &'a str,
    serial: &'a [u8],
    window: (OffsetDateTime, OffsetDateTime),
    subject_key: &'a TestKeyP256,
    issuer_key: &'a TestKeyP256,
    crl_url: &'a str,
    kind: Kind,
    sgx: Option<Vec<u8>>,
}

/// The key identifier of a key: the first 20 bytes of SHA-256 of its point.
fn key_id(key: &TestKeyP256) -> Vec<u8> {
    Sha256::digest(key.public_point())
        .into_iter()
        .take(20)
        .collect()
}

fn ecdsa_sha256() -> Result<AlgorithmIdentifierOwned, IntelPkiError> {
    Ok(AlgorithmIdentifierOwned {
        oid: ObjectIdentifier::new(ECDSA_WITH_SHA256).map_err(err)?,
        parameters: None,
    })
}

fn ext(oid: &str, critical: bool, value: Vec<u8>) -> Result<Extension, IntelPkiError> {
    amd::ext(oid, critical, value).map_err(err)
}

fn validity(window: (OffsetDateTime, OffsetDateTime)) -> Result<Validity, IntelPkiError> {
    Ok(Validity {
        not_before: amd::time(window.0).map_err(err)?,
        not_after: amd::time(window.1).map_err(err)?,
    })
}

/// Authority key identifier: `SEQUENCE { [0] keyIdentifier }`.
fn aki(key: &TestKeyP256) -> Vec<u8> {
    seq(&[tlv(0x80, &key_id(key))])
}

/// One certificate, in Intel's extension order: AKI, CRL distribution
/// points, SKI, key usage (critical), basic constraints (critical), SGX.
fn issue(p: &CertParams<'_>) -> Result<Vec<u8>, IntelPkiError> {
    // keyCertSign + cRLSign, or digitalSignature + nonRepudiation.
    let (key_usage, basic) = match p.kind {
        Kind::Ca(path_len) => (
            tlv(0x03, &[0x01, 0x06]),
            seq(&[tlv(0x01, &[0xff]), integer(path_len.into())]),
        ),
        Kind::Leaf => (tlv(0x03, &[0x06, 0xc0]), seq(&[])),
    };
    let crl_dp = seq(&[seq(&[tlv(
        0xa0,
        &tlv(0xa0, &tlv(0x86, p.crl_url.as_bytes())),
    )])]);
    let mut extensions = vec![
        ext("2.5.29.35", false, aki(p.issuer_key))?,
        ext("2.5.29.31", false, crl_dp)?,
        ext("2.5.29.14", false, tlv(0x04, &key_id(p.subject_key)))?,
        ext("2.5.29.15", true, key_usage)?,
        ext("2.5.29.19", true, basic)?,
    ];
    if let Some(sgx) = &p.sgx {
        extensions.push(ext(SGX_EXTENSION_OID, false, sgx.clone())?);
    }
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(p.serial).map_err(err)?,
        signature: ecdsa_sha256()?,
        issuer: intel_name(p.issuer)?,
        validity: validity(p.window)?,
        subject: intel_name(p.subject)?,
        subject_public_key_info: SubjectPublicKeyInfoOwned::from_der(&p.subject_key.spki_der())
            .map_err(err)?,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    let signature = p.issuer_key.sign_der(&tbs.to_der().map_err(err)?);
    Certificate {
        tbs_certificate: tbs,
        signature_algorithm: ecdsa_sha256()?,
        signature: BitString::from_bytes(&signature).map_err(err)?,
    }
    .to_der()
    .map_err(err)
}

/// A v2 CRL by `issuer_cn`'s `key` over `window`, revoking `serials`
/// (reason keyCompromise), with Intel's CRL number and AKI extensions.
pub fn crl(
    issuer_cn: &str,
    key: &TestKeyP256,
    window: (OffsetDateTime, OffsetDateTime),
    serials: &[[u8; 20]],
) -> Result<Vec<u8>, IntelPkiError> {
    let revoked = serials
        .iter()
        .map(|s| {
            Ok(RevokedCert {
                serial_number: SerialNumber::new(s).map_err(err)?,
                revocation_date: amd::time(window.0).map_err(err)?,
                crl_entry_extensions: Some(vec![ext("2.5.29.21", false, tlv(0x0a, &[1]))?]),
            })
        })
        .collect::<Result<Vec<_>, IntelPkiError>>()?;
    let tbs = TbsCertList {
        version: Version::V2,
        signature: ecdsa_sha256()?,
        issuer: intel_name(issuer_cn)?,
        this_update: amd::time(window.0).map_err(err)?,
        next_update: Some(amd::time(window.1).map_err(err)?),
        revoked_certificates: (!revoked.is_empty()).then_some(revoked),
        crl_extensions: Some(vec![
            ext("2.5.29.20", false, integer(1))?,
            ext("2.5.29.35", false, aki(key))?,
        ]),
    };
    let signature = key.sign_der(&tbs.to_der().map_err(err)?);
    CertificateList {
        tbs_cert_list: tbs,
        signature_algorithm: ecdsa_sha256()?,
        signature: BitString::from_bytes(&signature).map_err(err)?,
    }
    .to_der()
    .map_err(err)
}

/// `CN=<cn>, O=<ORGANIZATION>, L=Santa Clara, ST=CA, C=US` in Intel's DER
/// order (CN first), UTF8String except the PrintableString country.
pub fn intel_name(cn: &str) -> Result<Name, IntelPkiError> {
    let rdn = |oid_str: &str, tag: u8, value: &str| -> Result<Vec<u8>, IntelPkiError> {
        Ok(tlv(
            0x31,
            &seq(&[oid(oid_str)?, tlv(tag, value.as_bytes())]),
        ))
    };
    let name = seq(&[
        rdn("2.5.4.3", 0x0c, cn)?,
        rdn("2.5.4.10", 0x0c, ORGANIZATION)?,
        rdn("2.5.4.7", 0x0c, "Santa Clara")?,
        rdn("2.5.4.8", 0x0c, "CA")?,
        rdn("2.5.4.6", 0x13, "US")?,
    ]);
    Name::from_der(&name).map_err(err)
}

/// A DER tag-length-value.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

fn oid(dotted: &str) -> Result<Vec<u8>, IntelPkiError> {
    Ok(tlv(
        0x06,
        ObjectIdentifier::new(dotted).map_err(err)?.as_bytes(),
    ))
}

/// A non-negative DER INTEGER.
fn integer(v: u64) -> Vec<u8> {
    let mut bytes: Vec<u8> = v
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    if bytes.first().is_none_or(|b| b & 0x80 != 0) {
        bytes.insert(0, 0);
    }
    tlv(0x02, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_helpers_encode_minimally() {
        assert_eq!(integer(0), [2, 1, 0]);
        assert_eq!(integer(13), [2, 1, 13]);
        assert_eq!(integer(0x80), [2, 2, 0, 0x80]);
        assert_eq!(integer(0x1234), [2, 2, 0x12, 0x34]);
        assert_eq!(tlv(4, &[0; 200])[..3], [4, 0x81, 200]);
        assert_eq!(tlv(4, &[0; 300])[..4], [4, 0x82, 1, 44]);
    }

    #[test]
    fn chain_signatures_verify_and_shapes_match_intel() {
        use p256::ecdsa::signature::Verifier;
        let pki = PlatformSpec::default().issue().unwrap();
        let parse = |der: &[u8]| Certificate::from_der(der).unwrap();
        let (root, ca, pck, tcb) = (
            parse(&pki.root),
            parse(&pki.platform_ca),
            parse(&pki.pck),
            parse(&pki.tcb_signing),
        );
        let verify = |cert: &Certificate, issuer: &Certificate| {
            let point = issuer
                .tbs_certificate
                .subject_public_key_info
                .subject_public_key
                .raw_bytes();
            let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(point).unwrap();
            let sig = p256::ecdsa::Signature::from_der(cert.signature.raw_bytes()).unwrap();
            vk.verify(&cert.tbs_certificate.to_der().unwrap(), &sig)
                .unwrap();
            assert_eq!(cert.tbs_certificate.issuer, issuer.tbs_certificate.subject);
        };
        verify(&root, &root);
        verify(&ca, &root);
        verify(&pck, &ca);
        verify(&tcb, &root);
        assert_eq!(
            pck.tbs_certificate.subject.to_string(),
            format!("C=US,ST=CA,L=Santa Clara,O={ORGANIZATION},CN={PCK_COMMON_NAME}")
        );
        assert_eq!(pck.tbs_certificate.serial_number.as_bytes().len(), 20);
        let ext_ids = |c: &Certificate| -> Vec<String> {
            c.tbs_certificate
                .extensions
                .as_ref()
                .unwrap()
                .iter()
                .map(|e| e.extn_id.to_string())
                .collect()
        };
        assert_eq!(
            ext_ids(&pck),
            [
                "2.5.29.35",
                "2.5.29.31",
                "2.5.29.14",
                "2.5.29.15",
                "2.5.29.19",
                SGX_EXTENSION_OID
            ]
        );
        assert_eq!(ext_ids(&root).len(), 5);

        // The CRLs verify under their issuers and revoke what they should.
        let crl_check = |der: &[u8], issuer: &Certificate| -> Vec<Vec<u8>> {
            let crl = CertificateList::from_der(der).unwrap();
            let point = issuer
                .tbs_certificate
                .subject_public_key_info
                .subject_public_key
                .raw_bytes();
            let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(point).unwrap();
            let sig = p256::ecdsa::Signature::from_der(crl.signature.raw_bytes()).unwrap();
            vk.verify(&crl.tbs_cert_list.to_der().unwrap(), &sig)
                .unwrap();
            crl.tbs_cert_list
                .revoked_certificates
                .unwrap_or_default()
                .iter()
                .map(|r| r.serial_number.as_bytes().to_vec())
                .collect()
        };
        assert_eq!(
            crl_check(&pki.pck_crl, &ca),
            vec![DECOY_REVOKED_SERIAL.to_vec()]
        );
        assert!(crl_check(&pki.root_ca_crl, &root).is_empty());
        let revoked = PlatformSpec {
            revoke_pck: true,
            revoke_platform_ca: true,
            ..PlatformSpec::default()
        }
        .issue()
        .unwrap();
        assert!(crl_check(&revoked.pck_crl, &ca)
            .contains(&pck.tbs_certificate.serial_number.as_bytes().to_vec()));
        assert_eq!(
            crl_check(&revoked.root_ca_crl, &root),
            vec![ca.tbs_certificate.serial_number.as_bytes().to_vec()]
        );
    }

    #[test]
    fn sgx_extension_decodes_back() {
        use x509_cert::attr::AttributeTypeAndValue as Entry;
        use x509_cert::der::asn1::{Any, OctetString};
        use x509_cert::der::{Tag, Tagged};
        let spec = PlatformSpec::default();
        let pki = spec.issue().unwrap();
        let pck = Certificate::from_der(&pki.pck).unwrap();
        let ext = pck
            .tbs_certificate
            .extensions
            .unwrap()
            .into_iter()
            .find(|e| e.extn_id.to_string() == SGX_EXTENSION_OID)
            .unwrap();
        assert!(!ext.critical);
        // SEQUENCE OF SEQUENCE { OID, value }.
        let entries = Vec::<Entry>::from_der(ext.extn_value.as_bytes()).unwrap();
        let ids: Vec<String> = entries.iter().map(|e| e.oid.to_string()).collect();
        assert_eq!(
            ids,
            ["1", "2", "3", "4", "5"].map(|s| format!("{SGX_EXTENSION_OID}.{s}"))
        );
        let octets = |a: &Any| a.decode_as::<OctetString>().unwrap().as_bytes().to_vec();
        assert_eq!(octets(&entries[0].value), spec.ppid);
        assert_eq!(octets(&entries[2].value), spec.pce_id);
        assert_eq!(octets(&entries[3].value), spec.fmspc);
        assert_eq!(entries[4].value.tag(), Tag::Enumerated);
        assert_eq!(entries[4].value.value(), [0]);
        let tcb = Vec::<Entry>::from_der(&entries[1].value.to_der().unwrap()).unwrap();
        assert_eq!(tcb.len(), 18);
        for (i, e) in tcb.iter().take(16).enumerate() {
            assert_eq!(
                e.oid.to_string(),
                format!("{SGX_EXTENSION_OID}.2.{}", i + 1)
            );
            assert_eq!(e.value.decode_as::<u8>().unwrap(), spec.sgx_svns[i]);
        }
        assert_eq!(tcb[16].value.decode_as::<u16>().unwrap(), spec.pcesvn);
        assert_eq!(octets(&tcb[17].value), spec.cpusvn);
    }

    #[test]
    fn foreign_root_differs_in_name_and_key() {
        let ours = PlatformSpec::default().issue().unwrap();
        let foreign = PlatformSpec::foreign_root().issue().unwrap();
        assert_ne!(ours.root, foreign.root);
        assert_ne!(ours.pck_key.public_point(), foreign.pck_key.public_point());
        assert_eq!(test_root().unwrap(), ours.root);
    }
}
