//! The collateral set that endorses a platform: TCB info, QE identity, the
//! PCK CRL and the root CA CRL, each signed and current, all from the root
//! the PCK chain ended at; with the window in which the whole set holds (its
//! cache window). Apart from the verify flow because it depends only on the
//! collateral and the verified PCK chain, never on the quote's body.

use std::sync::Arc;

use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
use time::OffsetDateTime;

use crate::cache::{fingerprint, WindowCache};
use crate::chain::{parse, ChainValidator};
use crate::collateral::Collateral;
use crate::crl::RevocationList;
use crate::error::VerifyError;
use crate::trust::TrustAnchors;

use super::collateral::{Document, QeIdentity, TcbInfo};
use super::names;
use super::pck_chain::VerifiedPck;
use super::signer::{verify_signed, Signer};

/// A collateral set whose signatures, chains and CRLs have all checked.
#[derive(Debug)]
pub(crate) struct Endorsements {
    pub(crate) tcb_info: TcbInfo,
    pub(crate) qe_identity: QeIdentity,
    pub(crate) pck_crl: RevocationList,
    pub(crate) root_crl: RevocationList,
    /// The TCB signing certificates (of TCB info, of QE identity): their
    /// validity bounds the window too.
    signers: [Signer; 2],
    /// The exact bytes this set was verified from, to confirm a cache hit.
    inputs: Vec<Vec<u8>>,
}

impl Endorsements {
    /// The window in which every part is current (documents' nextUpdate
    /// exclusive; a signer's notAfter is inclusive, so one second is added).
    pub(crate) fn window(&self) -> (OffsetDateTime, OffsetDateTime) {
        let [a, b] = &self.signers;
        let from = [
            self.tcb_info.window.issued,
            self.qe_identity.window.issued,
            self.pck_crl.this_update,
            self.root_crl.this_update,
            a.not_before,
            b.not_before,
        ];
        let until = [
            self.tcb_info.window.next_update,
            self.qe_identity.window.next_update,
            self.pck_crl.next_update,
            self.root_crl.next_update,
            a.not_after + time::Duration::seconds(1),
            b.not_after + time::Duration::seconds(1),
        ];
        (
            from.into_iter().max().unwrap_or(OffsetDateTime::UNIX_EPOCH),
            until
                .into_iter()
                .min()
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        )
    }
}

/// The first item present under any of `names`.
fn item<'a>(collateral: &'a Collateral, names: &[&str]) -> Option<&'a [u8]> {
    names.iter().find_map(|n| collateral.get(n))
}

/// Verifies the collateral set (cached by its exact bytes and the PCK's issuer).
pub(crate) fn verify_endorsements(
    collateral: &Collateral,
    pck: &VerifiedPck,
    anchors: &TrustAnchors,
    chains: &ChainValidator,
    cache: &WindowCache<Arc<Endorsements>>,
    at: OffsetDateTime,
) -> Result<Arc<Endorsements>, VerifyError> {
    let missing = |what| VerifyError::CollateralMissing { what };
    let tcb_info =
        item(collateral, &[names::TCB_INFO]).ok_or(missing("TCB info (tcb_info.json)"))?;
    let qe_identity =
        item(collateral, &[names::QE_IDENTITY]).ok_or(missing("QE identity (qe_identity.json)"))?;
    let pck_crl = item(collateral, &[names::PCK_CRL, "pck_crl.pem"])
        .ok_or(missing("the PCK CRL (pck_crl.der)"))?;
    let root_crl = item(collateral, &[names::ROOT_CA_CRL, "root_ca_crl.pem"])
        .ok_or(missing("the root CA CRL (root_ca_crl.der)"))?;
    let tcb_chain = item(collateral, &[names::TCB_INFO_ISSUER_CHAIN]);
    let qe_chain = item(collateral, &[names::QE_IDENTITY_ISSUER_CHAIN]);

    // Absent and empty issuer chains differ (absent selects the compiled-in
    // signers), so their presence is part of what the verdict depends on.
    let present = [u8::from(tcb_chain.is_some()), u8::from(qe_chain.is_some())];
    let parts = [
        &present[..],
        tcb_info,
        tcb_chain.unwrap_or_default(),
        qe_identity,
        qe_chain.unwrap_or_default(),
        pck_crl,
        root_crl,
        &pck.issuer_der,
        &pck.root_der,
    ];
    let key = fingerprint(anchors.intel().iter().map(|a| &a.sha256), &parts);
    if let Some(hit) = cache.get(&key, at) {
        if hit.inputs.iter().map(Vec::as_slice).eq(parts) {
            return Ok(hit);
        }
    }

    // TCB info, QE identity and CRLs must come from the root the PCK chain
    // ended at, never from another anchor.
    let root_anchor = anchors
        .intel()
        .iter()
        .find(|a| a.der.as_ref() == pck.root_der.as_slice())
        .ok_or(VerifyError::ChainIncomplete)?;
    let (tcb_info, tcb_signer) = verify_signed(
        Document::TcbInfo,
        tcb_chain,
        root_anchor,
        anchors,
        chains,
        at,
        |k| TcbInfo::verify(tcb_info, k),
    )?;
    tcb_info.window.check(Document::TcbInfo, at)?;
    let (qe_identity, qe_signer) = verify_signed(
        Document::QeIdentity,
        qe_chain,
        root_anchor,
        anchors,
        chains,
        at,
        |k| QeIdentity::verify(qe_identity, k),
    )?;
    qe_identity.window.check(Document::QeIdentity, at)?;

    let issuer = parse(&pck.issuer_der)?;
    let pck_crl = RevocationList::verify(pck_crl, &issuer, at, |crl| {
        ecdsa_p256_signed(crl, &issuer.public_key().subject_public_key.data)
    })?;
    let root = parse(&pck.root_der)?;
    let root_crl = RevocationList::verify(root_crl, &root, at, |crl| {
        ecdsa_p256_signed(crl, &root.public_key().subject_public_key.data)
    })?;
    // A revoked TCB signer vouches for nothing.
    root_crl.check(&[&tcb_signer.serial, &qe_signer.serial])?;

    let endorsements = Arc::new(Endorsements {
        tcb_info,
        qe_identity,
        pck_crl,
        root_crl,
        signers: [tcb_signer, qe_signer],
        inputs: parts.iter().map(|p| p.to_vec()).collect(),
    });
    let (from, until) = endorsements.window();
    // The cache window is inclusive; the documents' nextUpdate is not.
    cache.put(
        key,
        from,
        until - time::Duration::nanoseconds(1),
        Arc::clone(&endorsements),
    );
    Ok(endorsements)
}

/// ecdsa-with-SHA256 (1.2.840.10045.4.3.2), as Intel signs its CRLs.
const ECDSA_WITH_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];

fn ecdsa_p256_signed(
    crl: &x509_parser::prelude::CertificateRevocationList<'_>,
    issuer_key: &[u8],
) -> bool {
    crl.signature_algorithm.algorithm.as_bytes() == ECDSA_WITH_SHA256
        && crl.tbs_cert_list.signature == crl.signature_algorithm
        && UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, issuer_key)
            .verify(crl.tbs_cert_list.as_ref(), &crl.signature_value.data)
            .is_ok()
}
