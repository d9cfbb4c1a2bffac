//! The first steps of an endpoint an agent calls with its DPoP-bound
//! access token (`Authorization: DPoP <token>` and one proof by its key):
//! a JWT-SVID and a secret release. One place, so both check the same
//! things in the same order: the token's signature and expiry, then the
//! proof for this very request. Each caller then spends the proof and
//! counts the key's allowance in its own order (a release spends the
//! proof at once; a JWT-SVID spends it in the commit that records what it
//! bought), and reads the credential behind the token.

use time::OffsetDateTime;

use super::{read, Service, Trail};
use crate::error::{ServiceCode, ServiceError};
use crate::store::CredentialRecord;
use crate::token::VerifiedToken;

/// `what` (e.g. "a secret") needs a current access token of this verifier.
fn invalid_token(what: &str) -> ServiceError {
    ServiceError::new(
        ServiceCode::InvalidToken,
        format!("{what} needs `Authorization: DPoP <access token>` with a current token of this verifier"),
    )
}

/// A token that verified, and its proof for this request: the proof's
/// single-use ID and until when it is remembered, not yet spent.
pub(super) struct Presented {
    pub(super) token: VerifiedToken,
    pub(super) proof: (String, i64),
}

impl Service {
    /// The token verified and the proof checked for `request` (method,
    /// path), the trail naming the agent's key and the token; `what` names
    /// the thing asked for in the refusal.
    pub(super) fn presented(
        &self,
        what: &str,
        token: Option<&str>,
        proof: Option<&str>,
        request: (&str, &str),
        now: OffsetDateTime,
        trail: &mut Trail,
    ) -> Result<Presented, ServiceError> {
        let token_text = token.ok_or_else(|| invalid_token(what))?;
        let verified = read(&self.tokens)
            .verify_access(token_text)
            .ok_or_else(|| invalid_token(what))?;
        let claims = verified.claims();
        trail.actor = Some(format!("agent:{}", claims.cnf.jkt));
        trail.jti = Some(claims.jti.clone());
        let proof = self.check_proof(proof, request, token_text, &claims.cnf.jkt, now)?;
        Ok(Presented {
            token: verified,
            proof,
        })
    }

    /// The credential record behind a presented token, while it is
    /// unexpired (else the same refusal as a bad token), the trail naming
    /// its session, workload and subject.
    pub(super) async fn live_credential(
        &self,
        what: &str,
        token: &VerifiedToken,
        now: OffsetDateTime,
        trail: &mut Trail,
    ) -> Result<CredentialRecord, ServiceError> {
        let credential = self
            .store
            .credential(&token.claims().jti)
            .await
            .map_err(ServiceError::internal)?
            .filter(|c| c.expires_at > now.unix_timestamp())
            .ok_or_else(|| invalid_token(what))?;
        trail.session_id = Some(credential.session_id.clone());
        trail.workload = Some(credential.workload.clone());
        trail.subject = Some(credential.subject.clone());
        Ok(credential)
    }
}
