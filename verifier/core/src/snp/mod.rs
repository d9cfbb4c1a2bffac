//! AMD SEV-SNP: verify an attestation report to a pinned AMD root key (ARK).
//!
//! Steps: parse the report exactly (`abi`); find the endorsement certificate
//! (VCEK or VLEK) in the collateral and check it matches the report's
//! SIGNING_KEY; determine the product from the chain and, for version ≥ 3,
//! from CPUID (they must agree); check VCEK ← ASK/ASVK ← ARK with RSA-PSS,
//! validity at the instant, CA constraints, the ARK pinned by fingerprint and
//! the optional CRL; verify the report's ECDSA P-384 signature; then require
//! the certificate's TCB extensions to equal REPORTED_TCB and its hwID to equal
//! CHIP_ID. Verified chains are cached by the hash of exactly what was checked.

mod abi;
mod cert_table;
mod certs;

use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P384_SHA384_FIXED};
use time::OffsetDateTime;
use x509_parser::prelude::X509Certificate;

use crate::authenticated::Authenticated;
use crate::cache::WindowCache;
use crate::chain::{parse, summarize};
use crate::claims::{
    BoundData, CertificateSummary, Measurement, NamedMeasurement, PlatformClaims, TeeKind,
};
use crate::collateral::Collateral;
use crate::error::VerifyError;
use crate::trust::{sha256, Anchor, TrustAnchors};

pub use crate::claims::snp::{
    Product, SigningKey, SnpClaims, Tcb, PLATFORM_INFO_BITS, POLICY_BITS,
};
pub use abi::REPORT_LEN;

use abi::Report;
use cert_table::CertTable;
use certs::AmdExtensions;

/// A chain that verified, remembered until its certificates (or CRL) lapse.
#[derive(Debug, Clone)]
struct VerifiedEndorsement {
    summaries: Vec<CertificateSummary>,
}

/// Verified endorsement chains, keyed by anchors + VCEK + ASK (+ CRL) bytes.
#[derive(Debug)]
pub(crate) struct EndorsementCache(WindowCache<VerifiedEndorsement>);

impl Default for EndorsementCache {
    fn default() -> Self {
        Self(WindowCache::new(256))
    }
}

impl EndorsementCache {
    pub(crate) fn clear(&self) {
        self.0.clear();
    }
}

/// Reads the first certificate from DER or PEM bytes.
fn first_certificate(bytes: &[u8]) -> Vec<u8> {
    certificates(bytes).into_iter().next().unwrap_or_default()
}

/// Every certificate in PEM bytes, or the bytes themselves if DER.
fn certificates(bytes: &[u8]) -> Vec<Vec<u8>> {
    if bytes.first() == Some(&0x30) {
        return vec![bytes.to_vec()];
    }
    pem::parse_many(bytes)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.tag() == "CERTIFICATE" || p.tag() == "X509 CRL")
        .map(pem::Pem::into_contents)
        .collect()
}

fn endorsement_from(collateral: &Collateral) -> Option<(SigningKey, Vec<u8>)> {
    [
        ("vcek.der", SigningKey::Vcek),
        ("vcek.pem", SigningKey::Vcek),
        ("vlek.der", SigningKey::Vlek),
        ("vlek.pem", SigningKey::Vlek),
    ]
    .into_iter()
    .find_map(|(name, kind)| collateral.get(name).map(|b| (kind, first_certificate(b))))
}

fn common_name(cert: &X509Certificate<'_>, issuer: bool) -> String {
    let name = if issuer {
        cert.issuer()
    } else {
        cert.subject()
    };
    name.iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// What finds a report's VCEK (in a folder or at AMD KDS), read *unverified*
/// from the report: verification later checks that the VCEK's hwID, TCB
/// extensions and product match the signed report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VcekLookup {
    /// The product, from CPUID (reports of version 3 and later).
    pub product: Option<Product>,
    /// CHIP_ID.
    pub chip_id: [u8; 64],
    /// REPORTED_TCB, raw.
    pub reported_tcb: u64,
    /// Signed by a VLEK (then no VCEK applies).
    pub signed_by_vlek: bool,
}

/// The product a report is for, *unverified*, only to choose which of AMD's
/// CRLs and certificate chains to fetch: from CPUID (version 3 reports and
/// later), else from the issuer of the endorsement certificate the request
/// or the extended report's table carries. Verification later checks the
/// chain to the pinned ARK of that product and that CPUID agrees.
pub fn unverified_product(bytes: &[u8], collateral: &Collateral) -> Option<Product> {
    let (report_bytes, table) = bytes.split_at(bytes.len().min(REPORT_LEN));
    let report = Report::parse(report_bytes).ok()?;
    if let Some(product) = report
        .cpuid
        .and_then(|(family, model, _)| Product::from_cpuid(family, model))
    {
        return Some(product);
    }
    let table = if table.is_empty() {
        CertTable::default()
    } else {
        CertTable::parse(table).ok()?
    };
    let der = endorsement_from(collateral)
        .map(|(_, der)| der)
        .or(table.vcek)
        .or(table.vlek)?;
    Product::from_ca_name(&common_name(&parse(&der).ok()?, true))
}

/// See [`VcekLookup`].
pub fn unverified_vcek_lookup(bytes: &[u8]) -> Result<VcekLookup, VerifyError> {
    let report = Report::parse(bytes.get(..REPORT_LEN).unwrap_or(bytes))?;
    Ok(VcekLookup {
        product: report
            .cpuid
            .and_then(|(family, model, _)| Product::from_cpuid(family, model)),
        chip_id: report.chip_id,
        reported_tcb: report.reported_tcb,
        signed_by_vlek: report.signing_key == SigningKey::Vlek,
    })
}

pub(crate) fn verify(
    bytes: &[u8],
    collateral: &Collateral,
    anchors: &TrustAnchors,
    cache: &EndorsementCache,
    at: OffsetDateTime,
) -> Result<Authenticated, VerifyError> {
    // An extended report carries its certificate table after the report.
    let (report_bytes, table) = bytes.split_at(bytes.len().min(REPORT_LEN));
    let report = Report::parse(report_bytes)?;
    let table = if table.is_empty() {
        CertTable::default()
    } else {
        CertTable::parse(table)?
    };

    // Collateral files take precedence over what the evidence carries.
    let (file_kind, vcek_der) = endorsement_from(collateral)
        .or_else(|| table.vcek.clone().map(|d| (SigningKey::Vcek, d)))
        .or_else(|| table.vlek.clone().map(|d| (SigningKey::Vlek, d)))
        .ok_or(VerifyError::CollateralMissing {
            what: "the endorsement certificate (vcek.der/.pem, vlek.der/.pem, or an extended report's table)",
        })?;
    let vcek = parse(&vcek_der)?;
    let cert_kind = match common_name(&vcek, false).as_str() {
        "SEV-VCEK" => SigningKey::Vcek,
        "SEV-VLEK" => SigningKey::Vlek,
        _ => {
            return Err(VerifyError::malformed(
                "the endorsement certificate is neither SEV-VCEK nor SEV-VLEK",
            ))
        }
    };
    if cert_kind != report.signing_key || cert_kind != file_kind {
        return Err(VerifyError::SigningKeyMismatch {
            report: report.signing_key.as_str(),
            certificate: cert_kind.as_str(),
        });
    }

    // The product: from the chain, and from CPUID where the report has it.
    let issuer_cn = common_name(&vcek, true);
    let product = Product::from_ca_name(&issuer_cn).ok_or_else(|| VerifyError::ChainUntrusted {
        reason: format!("{issuer_cn:?} is not an AMD SEV CA"),
    })?;
    if let Some((family, model, _)) = report.cpuid {
        match Product::from_cpuid(family, model) {
            Some(p) if p == product => {}
            found => {
                return Err(VerifyError::ProductMismatch {
                    reason: format!(
                    "CPUID family {family:#x} model {model:#x} is {} but the chain is {product}",
                    found.map_or("an unknown product", Product::as_str)
                ),
                })
            }
        }
    }

    let chain = match collateral.get("cert_chain.pem") {
        Some(pem) => certificates(pem),
        // The table's ARK is only useful after its ASK; without one, fall back
        // to the compiled-in intermediates.
        None => match &table.ask {
            Some(ask) => std::iter::once(ask)
                .chain(table.ark.iter())
                .cloned()
                .collect(),
            None => Vec::new(),
        },
    };
    let ask_der = match chain.first() {
        Some(ask) => ask.clone(),
        None => anchors
            .amd_intermediate_named(vcek.issuer().as_raw())
            .map(<[u8]>::to_vec)
            .ok_or(VerifyError::ChainIncomplete)?,
    };
    // An ARK in the collateral must be a pinned one; the pinned one is used either way.
    if let Some(ark_der) = chain.get(1) {
        let fingerprint = sha256(ark_der);
        if !anchors.amd_arks().iter().any(|a| a.sha256 == fingerprint) {
            return Err(VerifyError::ChainUntrusted {
                reason: format!(
                    "collateral ARK {} is not a pinned AMD root",
                    hex::encode(fingerprint)
                ),
            });
        }
    }
    let crl = collateral
        .get("crl.der")
        .or_else(|| collateral.get("crl.pem"))
        .map(first_certificate);

    let key = cache_key(anchors.amd_arks(), &vcek_der, &ask_der, crl.as_deref());
    let summaries = match cache.0.get(&key, at) {
        Some(hit) => hit.summaries,
        None => {
            let (summaries, window) = verify_chain(
                anchors.amd_arks(),
                &vcek_der,
                &vcek,
                &ask_der,
                crl.as_deref(),
                at,
            )?;
            cache.0.put(
                key,
                window.0,
                window.1,
                VerifiedEndorsement {
                    summaries: summaries.clone(),
                },
            );
            summaries
        }
    };

    UnparsedPublicKey::new(
        &ECDSA_P384_SHA384_FIXED,
        &vcek.public_key().subject_public_key.data,
    )
    .verify(report.signed(), &report.signature)
    .map_err(|_| VerifyError::SignatureInvalid)?;

    check_tcb_reserved_bytes(&report, product)?;
    let ext = AmdExtensions::parse(&vcek)?;
    check_endorsement_matches_report(&report, &ext, product, cert_kind)?;

    Ok(authenticated(
        &report,
        product,
        ext.csp_id,
        crl.is_some(),
        summaries,
    ))
}

fn cache_key(arks: &[Anchor], vcek: &[u8], ask: &[u8], crl: Option<&[u8]>) -> [u8; 32] {
    let mut material = Vec::new();
    for ark in arks {
        material.extend_from_slice(&ark.sha256);
    }
    for part in [vcek, ask, crl.unwrap_or_default()] {
        material.extend_from_slice(&sha256(part));
    }
    sha256(&material)
}

/// VCEK ← ASK ← pinned ARK, validity, CA constraints, optional CRL. Returns the
/// chain summaries (ARK first) and the window in which the verdict holds.
fn verify_chain(
    arks: &[Anchor],
    vcek_der: &[u8],
    vcek: &X509Certificate<'_>,
    ask_der: &[u8],
    crl: Option<&[u8]>,
    at: OffsetDateTime,
) -> Result<(Vec<CertificateSummary>, (OffsetDateTime, OffsetDateTime)), VerifyError> {
    let ask = parse(ask_der)?;
    certs::verify_link(vcek_der, vcek, &ask)?;

    // The pinned ARK whose name issued the ASK and whose key signed it.
    let mut last_error = VerifyError::ChainUntrusted {
        reason: "no pinned AMD root issued this ASK".into(),
    };
    let mut found = None;
    for anchor in arks {
        let ark = parse(anchor.der.as_ref())?;
        if ark.subject().as_raw() != ask.issuer().as_raw() {
            continue;
        }
        match certs::verify_link(ask_der, &ask, &ark) {
            Ok(()) => {
                found = Some((anchor, ark));
                break;
            }
            Err(VerifyError::CertificateSignatureInvalid) => {
                last_error = VerifyError::ChainUntrusted {
                    reason: "the ASK is not signed by the pinned AMD root of its name".into(),
                }
            }
            Err(e) => last_error = e,
        }
    }
    let (anchor, ark) = found.ok_or(last_error)?;

    for cert in [&ark, &ask, vcek] {
        certs::check_validity(cert, at)?;
    }
    certs::check_ca(&ask)?;
    certs::check_ca(&ark)?;

    let mut not_before = [&ark, &ask, vcek]
        .iter()
        .map(|c| c.validity().not_before.to_datetime())
        .max()
        .unwrap_or(at);
    let mut not_after = [&ark, &ask, vcek]
        .iter()
        .map(|c| c.validity().not_after.to_datetime())
        .min()
        .unwrap_or(at);
    if let Some(crl) = crl {
        certs::check_crl(crl, &ark, at, &[ask.raw_serial(), vcek.raw_serial()])?;
        // The CRL verdict holds only at this instant's side of its update times.
        not_before = not_before.max(at);
        not_after = not_after.min(at);
    }
    let summaries = vec![
        summarize(anchor.der.as_ref(), &ark),
        summarize(ask_der, &ask),
        summarize(vcek_der, vcek),
    ];
    Ok((summaries, (not_before, not_after)))
}

/// The reserved bytes inside each TCB_VERSION are zero, like every other
/// reserved range of the report (the layout, and so which bytes are
/// reserved, depends on the product the chain names).
fn check_tcb_reserved_bytes(report: &Report<'_>, product: Product) -> Result<(), VerifyError> {
    let fields = [
        ("CURRENT_TCB", report.current_tcb),
        ("REPORTED_TCB", report.reported_tcb),
        ("COMMITTED_TCB", report.committed_tcb),
        ("LAUNCH_TCB", report.launch_tcb),
    ];
    match fields
        .iter()
        .find(|(_, raw)| !Tcb::reserved_is_zero(*raw, product))
    {
        Some((field, raw)) => Err(VerifyError::malformed(format!(
            "reserved bytes of {field} ({raw:#018x}) are not zero"
        ))),
        None => Ok(()),
    }
}

/// The certificate's TCB extensions must equal REPORTED_TCB; a VCEK's hwID must
/// equal CHIP_ID (Turin: the first 8 bytes, the rest zero) unless MASK_CHIP_KEY.
fn check_endorsement_matches_report(
    report: &Report<'_>,
    ext: &AmdExtensions,
    product: Product,
    kind: SigningKey,
) -> Result<(), VerifyError> {
    if let Some(name) = &ext.product_name {
        if !name.starts_with(product.as_str()) {
            return Err(VerifyError::ProductMismatch {
                reason: format!("certificate productName {name:?} under a {product} chain"),
            });
        }
    }
    let reported = Tcb::decode(report.reported_tcb, product);
    for (component, value) in reported.components() {
        let certified = ext.component(component).ok_or_else(|| {
            VerifyError::malformed(format!(
                "the endorsement certificate lacks the {component} SPL"
            ))
        })?;
        if certified != value {
            return Err(VerifyError::TcbMismatch {
                component,
                reported: value,
                certified,
            });
        }
    }
    if kind == SigningKey::Vcek && !report.mask_chip_key {
        let hw_id = ext
            .hw_id
            .as_deref()
            .ok_or_else(|| VerifyError::malformed("the VCEK has no hwID"))?;
        let matches = match product {
            Product::Turin => {
                hw_id.len() == 8
                    && report.chip_id.get(..8) == Some(hw_id)
                    && report.chip_id.iter().skip(8).all(|b| *b == 0)
            }
            Product::Milan | Product::Genoa => hw_id == report.chip_id,
        };
        if !matches {
            return Err(VerifyError::ChipIdMismatch);
        }
    }
    Ok(())
}

fn authenticated(
    report: &Report<'_>,
    product: Product,
    csp_id: Option<String>,
    revocation_checked: bool,
    chain: Vec<CertificateSummary>,
) -> Authenticated {
    let claims = SnpClaims {
        product,
        report_version: report.version,
        signing_key: report.signing_key,
        guest_svn: report.guest_svn,
        policy: report.policy,
        vmpl: report.vmpl,
        platform_info: report.platform_info,
        current_tcb: Tcb::decode(report.current_tcb, product),
        reported_tcb: Tcb::decode(report.reported_tcb, product),
        committed_tcb: Tcb::decode(report.committed_tcb, product),
        launch_tcb: Tcb::decode(report.launch_tcb, product),
        host_data: report.host_data,
        id_key_digest: report.id_key_digest,
        author_key_digest: report.author_key_digest,
        author_key_en: report.author_key_en,
        family_id: report.family_id,
        image_id: report.image_id,
        report_id: report.report_id,
        chip_id: report.chip_id,
        cpuid: report.cpuid,
        current_firmware: report.current_version,
        committed_firmware: report.committed_version,
        mitigation_vectors: report.mit_vectors,
        csp_id,
        revocation_checked,
    };
    Authenticated {
        tee: TeeKind::Snp,
        measurements: vec![NamedMeasurement {
            name: "measurement".into(),
            value: Measurement::new(report.measurement.to_vec()),
        }],
        bound: BoundData {
            report_data: Some(report.report_data.to_vec()),
            ..BoundData::default()
        },
        debug: report.debug_allowed(),
        tcb_status: None,
        platform: PlatformClaims::Snp(Box::new(claims)),
        chain,
    }
}
