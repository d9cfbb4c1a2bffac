//! The entry point: dispatch evidence to its TEE's verifier, then stamp the
//! common claims (instant, trust kind, evidence hash) on the result.

use time::OffsetDateTime;

use crate::chain::ChainValidator;
use crate::claims::{TeeKind, Verified, VerifiedClaims};
use crate::collateral::Collateral;
use crate::error::VerifyError;
use crate::nitro;
use crate::snp::{self, EndorsementCache};
use crate::tdx::{self, TdxCache};
use crate::trust::TrustAnchors;

/// Verifies evidence against a fixed set of trust anchors.
///
/// Holds caches of verified issuer chains, so keep one per process and share
/// it; it is `Send + Sync`. It performs no I/O and never reads the clock.
#[derive(Debug)]
pub struct Verifier {
    anchors: TrustAnchors,
    chains: ChainValidator,
    endorsements: EndorsementCache,
    tdx: TdxCache,
}

impl Verifier {
    /// A verifier that trusts exactly `anchors`.
    pub fn new(anchors: TrustAnchors) -> Self {
        Self {
            anchors,
            chains: ChainValidator::default(),
            endorsements: EndorsementCache::default(),
            tdx: TdxCache::default(),
        }
    }

    /// The anchors this verifier trusts.
    pub fn anchors(&self) -> &TrustAnchors {
        &self.anchors
    }

    /// Checks that `evidence` is authentic evidence from `tee`, as of `at`.
    ///
    /// Authenticity only: debug mode, TCB status and measurements come back as
    /// claims for [`crate::appraise`] to judge.
    pub fn verify(
        &self,
        tee: TeeKind,
        evidence: &[u8],
        collateral: &Collateral,
        at: OffsetDateTime,
    ) -> Result<VerifiedClaims, VerifyError> {
        let authenticated = match tee {
            TeeKind::Nitro => nitro::verify(evidence, &self.anchors, &self.chains, at)?,
            TeeKind::Snp => {
                snp::verify(evidence, collateral, &self.anchors, &self.endorsements, at)?
            }
            TeeKind::Tdx => tdx::verify(
                evidence,
                collateral,
                &self.anchors,
                &self.chains,
                &self.tdx,
                at,
            )?,
        };
        Ok(VerifiedClaims {
            tee: authenticated.tee,
            measurements: authenticated.measurements,
            bound: authenticated.bound,
            debug: authenticated.debug,
            tcb_status: authenticated.tcb_status,
            platform: authenticated.platform,
            chain: authenticated.chain,
            verified_at: at,
            trust: self.anchors.kind(),
            evidence_sha384: sha384(evidence),
            _verified: Verified,
        })
    }

    /// The TDX platform a quote proves by its own signatures and PCK chain
    /// (no collateral needed): see [`tdx::AuthenticatedPlatform`]. A
    /// [`Verifier::verify`] of the same bytes at the same instant that
    /// follows does not check those signatures again (a bounded memo by the
    /// bytes' SHA-256); at any other instant, or for other bytes, it does.
    pub fn authenticate_tdx_platform(
        &self,
        evidence: &[u8],
        at: OffsetDateTime,
    ) -> Result<tdx::AuthenticatedPlatform, VerifyError> {
        tdx::authenticate_platform(evidence, &self.anchors, &self.chains, &self.tdx, at)
    }

    /// Drops cached verification results, so the next call takes the cold path.
    pub fn clear_cache(&self) {
        self.chains.clear();
        self.endorsements.clear();
        self.tdx.clear();
    }
}

fn sha384(bytes: &[u8]) -> [u8; 48] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA384, bytes);
    let mut out = [0u8; 48];
    out.copy_from_slice(d.as_ref());
    out
}
