//! Accepting Attest Gate access tokens at a relying party (RP).
//!
//! The verifier issues ES256 JWTs (`typ: at+jwt`) bound to the attested
//! agent's key (`cnf.jkt`, RFC 9449). An RP accepts one only with a DPoP
//! proof signed by that key for the very request, and only while no
//! revocation the verifier published applies to it. This crate has the
//! pieces, all sans-I/O and clock-free (`now` is always an argument):
//!
//! - [`dpop`]: make and verify DPoP proofs, and a bounded replay cache;
//! - [`token`]: the verifier's JWKS and access-token validation;
//! - [`revocation`]: signed revocation lists and the matching rules;
//! - [`RelyingParty`]: all of them for one HTTP request.
//!
//! The `example-rp` binary (feature `example`, on by default) is a small
//! HTTP server that uses them.

pub use attest_gate_protocol::dpop;
pub use attest_gate_protocol::revocation::{Kind as RevocationKind, Mode as RevocationMode};
pub mod revocation;
pub mod token;

pub use dpop::{
    make_proof, verify_proof, DpopError, MakeProofError, ProofClaims, ProofExpectations,
    ReplayCache, ReplayError, VerifiedProof,
};
pub use revocation::{RevocationError, RevocationList, RevocationSet, Status};
pub use token::{AccessToken, Jwks, JwksError, TokenError, Validator};

/// One HTTP request as the relying party received it.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    /// The `Authorization` header's value (`DPoP <token>`), if any.
    pub authorization: Option<&'a str>,
    /// The `DPoP` header's value, if any. A request with more than one
    /// `DPoP` header must be refused by the caller before this point
    /// (RFC 9449 §4.3).
    pub dpop: Option<&'a str>,
    /// The request method, as received (`GET`).
    pub method: &'a str,
    /// The full URL the client addressed (scheme, host, port, path; any
    /// query is ignored), as the proof's `htu` must name it. Behind a proxy
    /// this is the public URL, not the backend's.
    pub url: &'a str,
    /// The scope this endpoint requires; `None` for any granted scope.
    pub required_scope: Option<&'a str>,
    /// Server-nonce check, when the RP issues `DPoP-Nonce`s (RFC 9449 §8).
    pub nonce: Option<&'a (dyn Fn(&str) -> bool + Sync)>,
    /// The current time, Unix seconds.
    pub now: i64,
}

impl std::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("authorization", &self.authorization.map(|_| "<redacted>"))
            .field("dpop", &self.dpop.map(|_| "<redacted>"))
            .field("method", &self.method)
            .field("url", &self.url)
            .field("required_scope", &self.required_scope)
            .field("nonce", &self.nonce.map(|_| "<check>"))
            .field("now", &self.now)
            .finish()
    }
}

/// A request that may proceed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized {
    /// The validated token.
    pub token: AccessToken,
    /// A quarantine revocation applies: serve it, but route it to monitoring.
    pub quarantined: bool,
}

/// Why a request was refused. [`AuthError::code`] is the stable OAuth-style
/// code to put in `WWW-Authenticate: DPoP error="..."` and error bodies;
/// [`AuthError::http_status`] the status to answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header, or no token in it.
    #[error("no access token: send `Authorization: DPoP <token>`")]
    MissingToken,
    /// The token came with another scheme (`Bearer`): a DPoP-bound token is
    /// only accepted with `DPoP` and a proof, or a stolen token would do.
    #[error("a DPoP-bound token must be sent with the DPoP scheme and a DPoP proof")]
    WrongScheme,
    /// The token is invalid.
    #[error(transparent)]
    InvalidToken(#[from] TokenError),
    /// No `DPoP` header.
    #[error("no DPoP proof: send a `DPoP` header")]
    MissingProof,
    /// The proof is invalid (or a server nonce is needed).
    #[error(transparent)]
    InvalidProof(#[from] DpopError),
    /// The proof's `jti` was used before.
    #[error("the DPoP proof was replayed")]
    ProofReplayed,
    /// The replay cache is full: requests are refused until entries expire.
    #[error("the replay cache is full; try again later")]
    ReplayCacheFull,
    /// The token lacks the endpoint's scope.
    #[error("the token lacks the scope `{required}`")]
    InsufficientScope {
        /// The scope required.
        required: String,
    },
    /// A revocation applies to the token.
    #[error("the token was revoked: {reason}")]
    Revoked {
        /// The revocation's reason.
        reason: String,
    },
    /// The revocation list has not been refreshed within the maximum age
    /// (or never): no token is accepted until it is.
    #[error("the revocation list is stale (last refreshed {last_refreshed:?}, maximum age {max_age_seconds} s)")]
    RevocationListStale {
        /// The verifier's `iat` of the last complete list, if any.
        last_refreshed: Option<i64>,
        /// The maximum age allowed.
        max_age_seconds: i64,
    },
}

impl AuthError {
    /// The stable error code: `invalid_request`, `invalid_token`,
    /// `invalid_dpop_proof`, `use_dpop_nonce`, `insufficient_scope`,
    /// `token_revoked` or `temporarily_unavailable`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingToken => "invalid_request",
            Self::WrongScheme => "invalid_token",
            Self::InvalidToken(e) => e.code(),
            Self::MissingProof | Self::ProofReplayed => "invalid_dpop_proof",
            Self::InvalidProof(e) => e.code(),
            Self::ReplayCacheFull | Self::RevocationListStale { .. } => "temporarily_unavailable",
            Self::InsufficientScope { .. } => "insufficient_scope",
            Self::Revoked { .. } => "token_revoked",
        }
    }

    /// The HTTP status for it: 403 for `insufficient_scope` (RFC 6750 §3.1),
    /// 503 for a full replay cache or a stale revocation list, 401 otherwise (with
    /// `WWW-Authenticate: DPoP error="<code>"`, and a fresh `DPoP-Nonce`
    /// header for `use_dpop_nonce`, RFC 9449 §9).
    pub fn http_status(&self) -> u16 {
        match self {
            Self::InsufficientScope { .. } => 403,
            Self::ReplayCacheFull | Self::RevocationListStale { .. } => 503,
            _ => 401,
        }
    }
}

/// The token from `Authorization: DPoP <token>` (scheme case-insensitive).
fn dpop_token(authorization: Option<&str>) -> Result<&str, AuthError> {
    let value = authorization.map(str::trim).unwrap_or_default();
    if value.is_empty() {
        return Err(AuthError::MissingToken);
    }
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("DPoP") {
        return Err(AuthError::WrongScheme);
    }
    let token = token.trim_start_matches(' ');
    if token.is_empty() {
        return Err(AuthError::MissingToken);
    }
    Ok(token)
}

/// A relying party's acceptance rules: which issuer and audience, and how
/// much clock skew proofs may have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelyingParty {
    /// Issuer, audience and leeway for tokens.
    pub validator: Validator,
    /// How far a proof's `iat` may be from `now`, seconds; a proof's `jti` is
    /// remembered for this long after its `iat`.
    pub iat_window_seconds: i64,
    /// The oldest revocation list accepted ([`RevocationSet::refreshed_at`]),
    /// seconds; past it every request is refused.
    pub max_revocation_age_seconds: i64,
}

/// The default [`RelyingParty::max_revocation_age_seconds`]: five minutes.
pub const DEFAULT_MAX_REVOCATION_AGE_SECONDS: i64 = 300;

impl RelyingParty {
    /// An RP for tokens `validator` accepts, with the default proof window.
    pub fn new(validator: Validator) -> Self {
        Self {
            validator,
            iat_window_seconds: dpop::DEFAULT_IAT_WINDOW_SECONDS,
            max_revocation_age_seconds: DEFAULT_MAX_REVOCATION_AGE_SECONDS,
        }
    }

    /// Decides one request: the token (DPoP scheme only; signature, issuer,
    /// audience, lifetime), then the proof (bound to this token by `ath` and
    /// to its key by `cnf.jkt`, for this method and URL, fresh), then the
    /// scope, then `revocations` (refused outright while the list is older
    /// than [`RelyingParty::max_revocation_age_seconds`]), then the proof's
    /// `jti` against `replay`. Revoked tokens are refused; quarantined ones
    /// are authorized with [`Authorized::quarantined`] set.
    pub fn authorize(
        &self,
        request: &Request<'_>,
        jwks: &Jwks,
        revocations: &RevocationSet,
        replay: &ReplayCache,
    ) -> Result<Authorized, AuthError> {
        let raw_token = dpop_token(request.authorization)?;
        let token = self.validator.validate(jwks, raw_token, request.now)?;
        let proof = request.dpop.ok_or(AuthError::MissingProof)?;
        let expect = ProofExpectations {
            htm: request.method,
            htu: request.url,
            access_token: Some(raw_token),
            jkt: Some(&token.cnf.jkt),
            nonce: request.nonce,
            iat_window_seconds: self.iat_window_seconds,
        };
        let proof = verify_proof(proof, &expect, request.now)?;
        // Scope and revocation before the replay cache: a revoked or
        // under-scoped token must not be able to fill it.
        if let Some(required) = request.required_scope {
            if !token.has_scope(required) {
                return Err(AuthError::InsufficientScope {
                    required: required.to_string(),
                });
            }
        }
        if !revocations.is_fresh(request.now, self.max_revocation_age_seconds) {
            return Err(AuthError::RevocationListStale {
                last_refreshed: revocations.refreshed_at(),
                max_age_seconds: self.max_revocation_age_seconds,
            });
        }
        let quarantined = match revocations.status(&token) {
            Status::Revoked { reason } => return Err(AuthError::Revoked { reason }),
            Status::Quarantined { .. } => true,
            Status::Clear | Status::Graceful => false,
        };
        let window = self.iat_window_seconds.max(0);
        replay
            .insert(&proof.jti, proof.iat.saturating_add(window), request.now)
            .map_err(|e| match e {
                ReplayError::Replayed => AuthError::ProofReplayed,
                ReplayError::Full => AuthError::ReplayCacheFull,
            })?;
        Ok(Authorized { token, quarantined })
    }
}
