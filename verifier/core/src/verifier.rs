//! The entry point: dispatch evidence to its TEE's verifier, then stamp the
//! common claims (instant, trust kind, evidence hash) on the result.

use time::OffsetDateTime;

use crate::authenticated::Authenticated;
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
        Ok(self.claims(authenticated, evidence, at))
    }

    /// The verified claims for what `evidence` proved at `at` under this
    /// verifier's anchors.
    fn claims(
        &self,
        authenticated: Authenticated,
        evidence: &[u8],
        at: OffsetDateTime,
    ) -> VerifiedClaims {
        VerifiedClaims {
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
        }
    }

    /// Checks everything about a TDX quote that needs no collateral (the
    /// quote's signature, the QE report's binding of the attestation key
    /// and its signature by the PCK key, the PCK chain to this verifier's
    /// Intel root) at `at`, and returns the quote so checked: the platform
    /// it proves, for a service to fetch collateral for *before* it spends
    /// anything on an unauthenticated platform, and
    /// [`AuthenticatedQuote::verify`] to finish the verification with that
    /// collateral without checking the signatures again.
    pub fn authenticate_tdx_quote<'a>(
        &'a self,
        evidence: &'a [u8],
        at: OffsetDateTime,
    ) -> Result<AuthenticatedQuote<'a>, VerifyError> {
        let signed = tdx::authenticate(evidence, &self.anchors, &self.chains, &self.tdx, at)?;
        Ok(AuthenticatedQuote {
            verifier: self,
            evidence,
            signed,
            at,
        })
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

/// A TDX quote one [`Verifier`] authenticated at one instant
/// ([`Verifier::authenticate_tdx_quote`]), holding the very bytes it
/// checked and that verifier: only it can finish the verification, with
/// collateral, at that instant. The proof is the value, so no other bytes,
/// instant or anchors can be slipped in between the two steps, and
/// nothing is looked up again by a hash of the bytes. The instant is the
/// one given to the authentication: hold the value for one decision, not
/// for later ones (CRLs and TCB info are judged at that instant).
#[derive(Debug)]
pub struct AuthenticatedQuote<'a> {
    verifier: &'a Verifier,
    evidence: &'a [u8],
    signed: tdx::SignedQuote<'a>,
    at: OffsetDateTime,
}

impl AuthenticatedQuote<'_> {
    /// The platform the quote proves.
    pub fn platform(&self) -> tdx::AuthenticatedPlatform {
        self.signed.platform()
    }

    /// The rest of [`Verifier::verify`] for this quote: the CRLs, TCB info
    /// and QE identity in `collateral`, and the TCB matching, at the
    /// instant it was authenticated, under the same verifier's anchors.
    pub fn verify(&self, collateral: &Collateral) -> Result<VerifiedClaims, VerifyError> {
        let verifier = self.verifier;
        let authenticated = tdx::endorse(
            &self.signed,
            collateral,
            &verifier.anchors,
            &verifier.chains,
            &verifier.tdx,
            self.at,
        )?;
        Ok(verifier.claims(authenticated, self.evidence, self.at))
    }
}
