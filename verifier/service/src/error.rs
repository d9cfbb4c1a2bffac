//! The service's one error type: a typed code (the service's own, or the
//! core's verification and appraisal codes) and a message for people. The
//! HTTP status, whether an agent should retry and what triggers each code
//! are properties of the code, so `docs/error-codes.md` is generated from
//! this module and a test keeps the two equal.

use attest_gate_core::{Rejection, RejectionCode, VerifyCode, VerifyError};
use axum::http::StatusCode;

use crate::ca::CsrError;
use crate::challenge::NonceError;
use crate::store::StoreError;

/// Whether, and how, a client should try again after this code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The same request will fail the same way.
    No,
    /// Ask for a new challenge and attest again.
    NewChallenge,
    /// Send the proof again with the `DPoP-Nonce` this answer carries.
    NewDpopNonce,
    /// The service's own trouble: back off and try again.
    Later,
}

impl Retry {
    /// As the error-code page words it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::No => "no",
            Self::NewChallenge => "with a new challenge",
            Self::NewDpopNonce => "with the returned DPoP-Nonce",
            Self::Later => "later, with backoff",
        }
    }
}

/// Declares the service's own codes with status, retry advice and trigger.
macro_rules! service_codes {
    ($($variant:ident => $code:literal, $status:ident, $retry:ident, $trigger:literal;)*) => {
        /// A failure the service itself decides (not the core's verification
        /// or appraisal).
        #[non_exhaustive]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ServiceCode {
            $(#[doc = $trigger] $variant,)*
        }

        impl ServiceCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)*];

            /// The stable identifier.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $code,)*
                }
            }

            /// The HTTP status it is answered with.
            pub fn status(self) -> StatusCode {
                match self {
                    $(Self::$variant => StatusCode::$status,)*
                }
            }

            /// Whether a client should try again.
            pub fn retry(self) -> Retry {
                match self {
                    $(Self::$variant => Retry::$retry,)*
                }
            }

            /// What triggers it.
            pub fn trigger(self) -> &'static str {
                match self {
                    $(Self::$variant => $trigger,)*
                }
            }
        }
    };
}

service_codes! {
    MalformedRequest => "malformed_request", BAD_REQUEST, No, "The body is not the endpoint's JSON (or form), a field is missing, unknown, too long or not in its alphabet (base64, hex, principal syntax).";
    BodyTooLarge => "body_too_large", PAYLOAD_TOO_LARGE, No, "The body is larger than 256 KiB.";
    NotFound => "not_found", NOT_FOUND, No, "No such endpoint; the named quarantine does not exist (lift); or a revocation with `scope: key` names a jti or session no credential has.";
    MethodNotAllowed => "method_not_allowed", METHOD_NOT_ALLOWED, No, "The endpoint exists but not for this HTTP method.";
    Timeout => "timeout", REQUEST_TIMEOUT, Later, "The request took longer than 30 s.";
    BadRequest => "bad_request", BAD_REQUEST, No, "Another client error found by the HTTP layer before any handler ran (e.g. a wrong content type); the status is the layer's.";
    Unauthorized => "unauthorized", UNAUTHORIZED, No, "An admin endpoint was called without the admin bearer token, or with a wrong one.";
    InvalidClient => "invalid_client", UNAUTHORIZED, No, "Introspection without valid HTTP Basic credentials of a registered relying party.";
    InvalidToken => "invalid_token", UNAUTHORIZED, No, "The subject token of an exchange, or the `Authorization: DPoP` token of a secret or JWT-SVID request, is missing or not a current access token this service signed (signature, kid, typ, expiry).";
    InvalidDpopProof => "invalid_dpop_proof", UNAUTHORIZED, No, "The DPoP proof is missing, repeated, malformed, signed by another key, for another method or URL, out of its time window, replayed, or its ath does not match the token.";
    UseDpopNonce => "use_dpop_nonce", BAD_REQUEST, NewDpopNonce, "The DPoP proof carries no valid server nonce; the answer's DPoP-Nonce header has one.";
    UnsupportedGrantType => "unsupported_grant_type", BAD_REQUEST, No, "A token exchange whose grant_type or subject_token_type is not RFC 8693's token exchange of an access token.";
    InvalidPublicKey => "invalid_public_key", BAD_REQUEST, No, "The agent's or actor's JWK is not an EC P-256/P-384 public key on its curve or an OKP Ed25519 key (the `encryption_key` must be EC P-256 and not the signing key).";
    CsrInvalid => "csr_invalid", BAD_REQUEST, No, "The CSR is not a PEM or base64 DER PKCS#10 request with a valid self-signature.";
    CsrUnsupportedKey => "csr_unsupported_key", BAD_REQUEST, No, "The CSR's key is not P-256 or P-384.";
    CsrKeyMismatch => "csr_key_mismatch", FORBIDDEN, No, "The CSR's key is not the agent key the evidence binds.";
    PolicyInvalid => "policy_invalid", BAD_REQUEST, No, "A dry run's candidate Cedar policy does not parse or validate.";
    NonceUnknown => "nonce_unknown", FORBIDDEN, NewChallenge, "The nonce was not issued by this service (bad MAC, wrong length or version).";
    NonceExpired => "nonce_expired", FORBIDDEN, NewChallenge, "The nonce is past its expiry, or its expiry is further away than the nonce lifetime (the service's clock moved back since it was issued).";
    NonceReplayed => "nonce_replayed", FORBIDDEN, NewChallenge, "The nonce was already used by another attestation.";
    RevocationNotChecked => "revocation_not_checked", FORBIDDEN, No, "SEV-SNP evidence under the vendor roots was verified without AMD's CRL.";
    AudienceNotAllowed => "audience_not_allowed", FORBIDDEN, No, "The workload's grant does not name the audience asked for; for a JWT-SVID, also when the Cedar policy permits none of the token's scopes for that audience.";
    AudienceCount => "audience_count", BAD_REQUEST, No, "A JWT-SVID request names no audience, more than 8, the same one twice, or one that is empty, longer than 256 characters or has control characters.";
    JwtSvidNotDelegable => "jwt_svid_not_delegable", FORBIDDEN, No, "A delegated token asked for a JWT-SVID: its sub-agent was not attested, and a bearer JWT-SVID would hide that.";
    Quarantined => "quarantined", FORBIDDEN, No, "A JWT-SVID was asked for with a token whose session, key, workload, model or measurement is quarantined (a bearer token cannot carry the quarantine).";
    ScopeNotAllowed => "scope_not_allowed", FORBIDDEN, No, "No requested scope survives the workload's grant and the Cedar policy.";
    Revoked => "revoked", FORBIDDEN, No, "A revocation in force names the agent key, one of its earlier credentials or sessions, the workload, the model or a measurement; or, for a secret or a JWT-SVID, the token presented is revoked immediately or gracefully.";
    ParentRevoked => "parent_revoked", FORBIDDEN, No, "The token to exchange is revoked (immediately or gracefully); an expired or unknown one is `invalid_token`.";
    WorkloadUnknown => "workload_unknown", FORBIDDEN, No, "The token to exchange names a workload no longer in measurements/.";
    DelegationNotAllowed => "delegation_not_allowed", FORBIDDEN, No, "The workload's grant does not allow delegation.";
    DelegationTooDeep => "delegation_too_deep", FORBIDDEN, No, "The delegation chain would be deeper than the workload's max_delegation_depth.";
    SecretNotFound => "secret_not_found", NOT_FOUND, No, "No secret has this name, or its current version was retired or is past its `not_after`.";
    SecretDenied => "secret_denied", FORBIDDEN, No, "The Cedar policy does not permit `read_secret` on this secret for the token's workload and claims (the default policy permits none).";
    SecretsNotDelegable => "secrets_not_delegable", FORBIDDEN, No, "A delegated token asked for a secret and its workload's grant does not say `secrets_may_delegate = true`.";
    SecretQuarantined => "secret_quarantined", FORBIDDEN, No, "The token's session is quarantined and the secret was not stored with `release_in_quarantine: true`.";
    NoEncryptionKey => "no_encryption_key", FORBIDDEN, No, "The token's session bound no encryption key in its evidence (binding v1, or its record is gone): there is no key to release a secret to.";
    SecretTooLarge => "secret_too_large", PAYLOAD_TOO_LARGE, No, "A secret's value is empty or larger than 64 KiB.";
    ScopeWidening => "scope_widening", FORBIDDEN, No, "An exchange asks for a scope the parent token does not have.";
    ClientExists => "client_exists", FORBIDDEN, No, "A relying party with this client_id is already registered.";
    CascadeTooLarge => "cascade_too_large", INTERNAL_SERVER_ERROR, No, "Revoking this token would record more than 10,000 descendants in one request.";
    ReloadFailed => "reload_failed", INTERNAL_SERVER_ERROR, No, "A reload found reference values or a policy that do not load; the old ones stay in force.";
    InternalError => "internal_error", INTERNAL_SERVER_ERROR, Later, "The service failed (database, signing, a panicking handler); the detail is in its log only.";
    CollateralUnavailable => "collateral_unavailable", SERVICE_UNAVAILABLE, Later, "The service has a collateral source for this TEE but could not get current TCB info, QE identity or CRLs from it (the request's are never used then), its fetch queue is full, or it has none and `--collateral-policy service-only` is set; `Retry-After` says when to try again.";
    StorageUnavailable => "storage_unavailable", SERVICE_UNAVAILABLE, Later, "The database is unreachable, its connection was cut, it is out of space or stayed busy; nothing was issued or changed (a request whose commit outcome is unknown says so in the log). `Retry-After` says when to try again.";
    Busy => "busy", SERVICE_UNAVAILABLE, Later, "Every verification slot stayed busy for 10 s; `Retry-After` says when to try again.";
    RateLimited => "rate_limited", TOO_MANY_REQUESTS, Later, "Too many requests from this client address, agent key or relying party for this endpoint; `Retry-After` says when the next one is allowed.";
}

impl ServiceCode {
    /// The code of a failed store call: 503 `storage_unavailable` when the
    /// database is the trouble ([`StoreError::is_unavailable`]), else 500
    /// `internal_error`.
    pub fn of_store_error(e: &StoreError) -> Self {
        if e.is_unavailable() {
            Self::StorageUnavailable
        } else {
            Self::InternalError
        }
    }
}

/// `Retry-After` for a 429 or 503 that names no other wait.
const DEFAULT_RETRY_AFTER: u64 = 5;

/// Every code the service answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorCode {
    /// The service's own.
    Service(ServiceCode),
    /// The evidence failed verification (authenticity).
    Verify(VerifyCode),
    /// Authentic evidence failed appraisal.
    Rejection(RejectionCode),
}

impl ErrorCode {
    /// Every code: the service's, then verification's, then appraisal's.
    pub fn all() -> impl Iterator<Item = Self> {
        let service = ServiceCode::ALL.iter().copied().map(Self::Service);
        let verify = VerifyCode::ALL.iter().copied().map(Self::Verify);
        let rejection = RejectionCode::ALL.iter().copied().map(Self::Rejection);
        service.chain(verify).chain(rejection)
    }

    /// The stable identifier on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Service(c) => c.as_str(),
            Self::Verify(c) => c.as_str(),
            Self::Rejection(c) => c.as_str(),
        }
    }

    /// The HTTP status (evidence that fails verification or appraisal is a
    /// denial: 403).
    pub fn status(self) -> StatusCode {
        match self {
            Self::Service(c) => c.status(),
            Self::Verify(_) | Self::Rejection(_) => StatusCode::FORBIDDEN,
        }
    }

    /// Whether a client should try again.
    pub fn retry(self) -> Retry {
        match self {
            Self::Service(c) => c.retry(),
            Self::Verify(_) | Self::Rejection(_) => Retry::No,
        }
    }

    /// What triggers it.
    pub fn trigger(self) -> &'static str {
        match self {
            Self::Service(c) => c.trigger(),
            Self::Verify(c) => c.trigger(),
            Self::Rejection(c) => c.trigger(),
        }
    }

    /// A verdict on the request or its evidence (403), as opposed to a
    /// malformed request or the service's own trouble.
    pub fn is_denial(self) -> bool {
        self.status() == StatusCode::FORBIDDEN
    }

    /// About the state of collateral or of time rather than the evidence:
    /// collateral missing or past its window, a certificate outside its
    /// validity when evidence is verified again later, revocation not
    /// checkable. Reappraisal lists these as not judged instead of revoking.
    pub fn is_collateral_state(self) -> bool {
        matches!(
            self,
            Self::Verify(
                VerifyCode::CollateralExpired
                    | VerifyCode::CollateralMissing
                    | VerifyCode::CrlInvalid
                    | VerifyCode::CertificateExpired
                    | VerifyCode::CertificateNotYetValid
            ) | Self::Service(
                ServiceCode::RevocationNotChecked | ServiceCode::CollateralUnavailable
            )
        )
    }

    /// Which part of the system decides it, for the error-code page.
    pub fn origin(self) -> &'static str {
        match self {
            Self::Service(_) => "service",
            Self::Verify(_) => "verification",
            Self::Rejection(_) => "appraisal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<ServiceCode> for ErrorCode {
    fn from(c: ServiceCode) -> Self {
        Self::Service(c)
    }
}

/// A failed request: a stable code and a message for people (never a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    code: ErrorCode,
    message: String,
    /// Seconds until a retry may succeed (`Retry-After`), when known.
    retry_after: Option<u64>,
}

impl ServiceError {
    /// A failure with its code.
    pub fn new(code: impl Into<ErrorCode>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            retry_after: None,
        }
    }

    /// With a `Retry-After` of `seconds`.
    #[must_use]
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// Seconds until a retry may succeed: as given, else for a code the
    /// client should retry later (429, 503), a default of 5 s.
    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after.or_else(|| {
            let status = self.code.status();
            (status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE)
                .then_some(DEFAULT_RETRY_AFTER)
        })
    }

    /// The service's own failure (500); the detail goes to the log only.
    /// A [`StoreError`] that is the database being unavailable
    /// ([`StoreError::is_unavailable`]) is 503 `storage_unavailable`
    /// instead: every store call reports through here, so no caller can
    /// forget the distinction.
    pub fn internal<E: std::fmt::Display + 'static>(detail: E) -> Self {
        let code = (&detail as &dyn std::any::Any)
            .downcast_ref::<StoreError>()
            .map_or(ServiceCode::InternalError, ServiceCode::of_store_error);
        if code == ServiceCode::StorageUnavailable {
            tracing::warn!(%detail, "the database is unavailable");
            return Self::new(
                ServiceCode::StorageUnavailable,
                "the database is unavailable; try again later",
            );
        }
        tracing::error!(%detail, "internal error");
        Self::new(
            ServiceCode::InternalError,
            "the verifier failed; see its log",
        )
    }

    /// Which failure.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The code of a decision's refusal; `None` when it was made.
    pub(crate) fn refusal<T>(outcome: &Result<T, Self>) -> Option<ErrorCode> {
        outcome.as_ref().err().map(Self::code)
    }

    /// For people.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The JSON body: `{"error": {"code", "message"}}`.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code.as_str(), "message": self.message}})
    }
}

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ServiceError {}

impl From<&VerifyError> for ServiceError {
    fn from(e: &VerifyError) -> Self {
        Self::new(ErrorCode::Verify(e.kind()), e.to_string())
    }
}

impl From<&Rejection> for ServiceError {
    fn from(r: &Rejection) -> Self {
        Self::new(ErrorCode::Rejection(r.kind()), r.to_string())
    }
}

impl From<NonceError> for ServiceError {
    fn from(e: NonceError) -> Self {
        let code = match e {
            NonceError::Unknown => ServiceCode::NonceUnknown,
            NonceError::Expired => ServiceCode::NonceExpired,
            NonceError::Replayed => ServiceCode::NonceReplayed,
        };
        Self::new(code, e.to_string())
    }
}

impl From<&CsrError> for ServiceError {
    fn from(e: &CsrError) -> Self {
        let code = match e {
            CsrError::Invalid(_) => ServiceCode::CsrInvalid,
            CsrError::KeyMismatch => ServiceCode::CsrKeyMismatch,
            CsrError::UnsupportedKey => ServiceCode::CsrUnsupportedKey,
        };
        Self::new(code, e.to_string())
    }
}

/// `docs/error-codes.md`, rendered from the codes above.
pub fn error_code_page() -> String {
    let mut page = String::from(
        "# Error codes\n\n\
         For agents, relying parties and operators reading an error. Every error the \
         `verifier` service answers with is `{\"error\": {\"code\": \"...\", \"message\": \"...\"}}`; \
         the `verifier verify` command line prints the verification and appraisal codes in the \
         same shape. Codes are stable: one is never renamed, new ones are added.\n\n\
         This page is generated from `verifier/service/src/error.rs` and \
         `verifier/core/src/code.rs`; `cargo test -p attest-gate-verifier --test error_codes` \
         fails when they disagree, and `UPDATE_ERROR_CODES=1` with the same command rewrites it.\n\n\
         | code | from | HTTP | retry | what triggers it |\n\
         |---|---|---|---|---|\n",
    );
    for code in ErrorCode::all() {
        page.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            code.as_str(),
            code.origin(),
            code.status().as_u16(),
            code.retry().as_str(),
            code.trigger()
        ));
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_distinct() {
        let mut seen = std::collections::BTreeSet::new();
        for code in ErrorCode::all() {
            assert!(seen.insert(code.as_str()), "{code} twice");
        }
    }

    #[test]
    fn collateral_trouble_is_not_a_verdict_on_the_evidence() {
        for code in [
            VerifyCode::CollateralExpired,
            VerifyCode::CertificateExpired,
        ] {
            assert!(ErrorCode::Verify(code).is_collateral_state());
        }
        for code in [
            VerifyCode::SignatureInvalid,
            VerifyCode::CertificateRevoked,
            VerifyCode::ChainUntrusted,
        ] {
            assert!(!ErrorCode::Verify(code).is_collateral_state());
            assert!(ErrorCode::Verify(code).is_denial());
        }
    }

    #[test]
    fn csr_and_nonce_errors_keep_their_codes() {
        assert_eq!(
            ServiceError::from(&CsrError::KeyMismatch).code().as_str(),
            CsrError::KeyMismatch.code()
        );
        for e in [
            NonceError::Unknown,
            NonceError::Expired,
            NonceError::Replayed,
        ] {
            assert_eq!(ServiceError::from(e).code().as_str(), e.code());
        }
    }
}
