//! Access-token validation: the verifier's ES256 JWTs (RFC 9068 `at+jwt`),
//! checked against its published JWKS, issuer, audience and lifetime, and
//! decoded into the claims a relying party acts on. Nothing here reads the
//! clock; `now` is an argument.

use std::collections::BTreeMap;

use attest_gate_core::AgentKey;
use aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use attest_gate_protocol::jws;
pub use attest_gate_protocol::{Actor, Confirmation, Provenance, Session};

pub use attest_gate_protocol::claims::ACCESS_TOKEN_TYPE;

/// Longest token accepted, in bytes; larger ones are refused undecoded.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Most keys a JWKS may list: the verifier publishes two (current and
/// previous), and a larger document is not worth parsing.
pub const MAX_JWKS_KEYS: usize = 64;

/// The default clock-skew allowance for `exp` and `nbf`, seconds.
pub const DEFAULT_LEEWAY_SECONDS: i64 = 30;

/// A JWKS document that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unusable JWKS: {0}")]
pub struct JwksError(&'static str);

/// The verifier's token-signing keys, by `kid`: ES256 (P-256) only, since
/// that is all the verifier signs with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Jwks {
    keys: BTreeMap<String, AgentKey>,
}

impl Jwks {
    /// Reads a JWKS (RFC 7517) as `/.well-known/jwks.json` serves it. Keys
    /// that are not EC P-256, or are marked for another `alg` or `use`, or
    /// have no `kid`, are skipped (RFC 7517 §5: ignore what you cannot use).
    /// A document with a private key, an invalid P-256 key, a repeated `kid`,
    /// more than [`MAX_JWKS_KEYS`] keys or no usable key is refused whole.
    pub fn from_json(document: &Value) -> Result<Self, JwksError> {
        let listed = document
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(JwksError("no `keys` array"))?;
        if listed.len() > MAX_JWKS_KEYS {
            return Err(JwksError("too many keys"));
        }
        let mut keys = BTreeMap::new();
        for jwk in listed {
            let member = |name: &str| jwk.get(name).and_then(Value::as_str);
            if jwk.get("d").is_some() {
                return Err(JwksError("a private key is published"));
            }
            let usable = member("kty") == Some("EC")
                && member("crv") == Some("P-256")
                && jwk.get("alg").is_none_or(|a| a == "ES256")
                && jwk.get("use").is_none_or(|u| u == "sig");
            let Some(kid) = member("kid").filter(|k| !k.is_empty() && k.len() <= 256) else {
                continue;
            };
            if !usable {
                continue;
            }
            let key = AgentKey::from_jwk(jwk).map_err(|_| JwksError("an invalid P-256 key"))?;
            if keys.insert(kid.to_string(), key).is_some() {
                return Err(JwksError("a repeated `kid`"));
            }
        }
        if keys.is_empty() {
            return Err(JwksError("no ES256 signing key"));
        }
        Ok(Self { keys })
    }

    /// Whether `kid` is known: an unknown one means the verifier rotated its
    /// key, and the JWKS should be fetched again.
    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is held (never true for a parsed JWKS).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn key(&self, kid: &str) -> Option<&AgentKey> {
        self.keys.get(kid)
    }
}

/// Why a JWS signed by the verifier was refused, before its claims were read.
pub(crate) enum JwsFailure {
    Malformed(&'static str),
    Algorithm,
    Type,
    UnknownKid,
    Signature,
}

/// Checks a verifier-signed compact JWS (header `alg` ES256, `typ` one of
/// `types`, `kid` in `jwks`, valid signature) and returns its payload.
pub(crate) fn verify_signed(
    jwks: &Jwks,
    compact: &str,
    max_len: usize,
    types: &[&str],
) -> Result<Vec<u8>, JwsFailure> {
    let jws = jws::split(compact, max_len).map_err(JwsFailure::Malformed)?;
    if jws.header_str("alg") != Some("ES256") {
        return Err(JwsFailure::Algorithm);
    }
    if !jws.header_str("typ").is_some_and(|t| types.contains(&t)) {
        return Err(JwsFailure::Type);
    }
    let key = jws
        .header_str("kid")
        .and_then(|kid| jwks.key(kid))
        .ok_or(JwsFailure::UnknownKid)?;
    if !jws.verifies(&ECDSA_P256_SHA256_FIXED, &key.raw_public_key()) {
        return Err(JwsFailure::Signature);
    }
    Ok(jws.payload)
}

/// Why an access token was refused. All of them answer `invalid_token`; the
/// variants are for logs and for [`TokenError::UnknownKid`], which is the
/// cue to re-fetch the JWKS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a well-formed compact JWS, or too large.
    #[error("malformed access token: {0}")]
    Malformed(&'static str),
    /// The header's `alg` is not ES256.
    #[error("the token's alg is not ES256")]
    Algorithm,
    /// The header's `typ` is not `at+jwt`.
    #[error("the token's typ is not at+jwt")]
    Type,
    /// The header's `kid` is missing or not in the JWKS.
    #[error("the token's kid is not in the verifier's JWKS")]
    UnknownKid,
    /// The signature does not verify.
    #[error("the token's signature is invalid")]
    Signature,
    /// A claim is missing or has the wrong type.
    #[error("the token's claims are incomplete: {0}")]
    Claims(String),
    /// `iss` is not the expected issuer.
    #[error("the token was issued by another issuer")]
    Issuer,
    /// `aud` does not name this relying party.
    #[error("the token is for another audience")]
    Audience,
    /// `exp` has passed (beyond the leeway).
    #[error("the token has expired")]
    Expired,
    /// `nbf` is still ahead (beyond the leeway).
    #[error("the token is not valid yet")]
    NotYetValid,
}

impl TokenError {
    /// The OAuth error code (RFC 6750 §3.1): always `invalid_token`.
    pub fn code(&self) -> &'static str {
        "invalid_token"
    }
}

impl From<JwsFailure> for TokenError {
    fn from(failure: JwsFailure) -> Self {
        match failure {
            JwsFailure::Malformed(why) => Self::Malformed(why),
            JwsFailure::Algorithm => Self::Algorithm,
            JwsFailure::Type => Self::Type,
            JwsFailure::UnknownKid => Self::UnknownKid,
            JwsFailure::Signature => Self::Signature,
        }
    }
}

/// A validated access token's claims. Built by [`Validator::validate`]; the
/// typed fields are the ones relying parties decide on, [`AccessToken::claims`]
/// has everything (`intent`, `ear`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AccessToken {
    /// The verifier's issuer URL.
    pub iss: String,
    /// The agent's SPIFFE ID.
    pub sub: String,
    /// The audiences (a single string in the token becomes one element).
    #[serde(deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Issue time, Unix seconds; graceful revocations compare it.
    pub iat: i64,
    /// Not before, Unix seconds.
    #[serde(default)]
    pub nbf: Option<i64>,
    /// The token's unique ID.
    pub jti: String,
    /// The workload the agent runs (RFC 9068 `client_id`).
    pub client_id: String,
    /// Granted scopes, space-separated; see [`AccessToken::has_scope`].
    pub scope: String,
    /// The key binding.
    pub cnf: Confirmation,
    /// The principal the agent acts for (the agent's claim, not attested).
    pub act_for: String,
    /// Session and delegation chain.
    pub session: Session,
    /// What was attested.
    pub provenance: Provenance,
    /// RFC 8693 `act`: the actor chain of a delegated token.
    #[serde(default)]
    pub act: Option<Actor>,
    /// Every claim as sent. Filled in by [`Validator::validate`]; `Null` when
    /// the struct is deserialised directly.
    #[serde(skip)]
    pub claims: Value,
}

/// A claim-decoding error, cut short: serde's messages may quote the value,
/// which is attacker-chosen.
pub(crate) fn claims_error(error: serde_json::Error) -> String {
    error.to_string().chars().take(120).collect()
}

fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

impl AccessToken {
    /// Whether `scope` is one of the granted scopes (exact, case-sensitive
    /// match of one space-separated item).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes().any(|granted| granted == scope)
    }

    /// The granted scopes.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split(' ').filter(|s| !s.is_empty())
    }
}

/// What a relying party requires of every token: its issuer, its own
/// audience, and a clock-skew allowance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validator {
    /// The verifier's issuer URL, compared exactly with `iss`.
    pub issuer: String,
    /// This relying party's identifier, which `aud` must be or contain.
    pub audience: String,
    /// Seconds of clock skew allowed on `exp` and `nbf` (negative counts as 0).
    pub leeway_seconds: i64,
}

impl Validator {
    /// A validator with [`DEFAULT_LEEWAY_SECONDS`].
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            leeway_seconds: DEFAULT_LEEWAY_SECONDS,
        }
    }

    /// Validates `token` at `now`: size (≤ [`MAX_TOKEN_LEN`]), compact JWS,
    /// `alg` ES256, `typ` `at+jwt` (or `application/at+jwt`, RFC 9068 §4),
    /// `kid` in `jwks`, signature, the claims' types, `iss`, `aud`,
    /// `exp` > now − leeway, `nbf` ≤ now + leeway. It does not check the DPoP
    /// binding, scopes or revocation: see [`crate::RelyingParty`].
    pub fn validate(&self, jwks: &Jwks, token: &str, now: i64) -> Result<AccessToken, TokenError> {
        let payload = verify_signed(
            jwks,
            token,
            MAX_TOKEN_LEN,
            &[ACCESS_TOKEN_TYPE, "application/at+jwt"],
        )?;
        let claims: Value = serde_json::from_slice(&payload)
            .map_err(|_| TokenError::Malformed("claims are not JSON"))?;
        let mut parsed =
            AccessToken::deserialize(&claims).map_err(|e| TokenError::Claims(claims_error(e)))?;
        if parsed.cnf.jkt.is_empty() {
            return Err(TokenError::Claims("`cnf.jkt` is empty".into()));
        }
        if parsed.iss != self.issuer {
            return Err(TokenError::Issuer);
        }
        if !parsed.aud.contains(&self.audience) {
            return Err(TokenError::Audience);
        }
        let leeway = self.leeway_seconds.max(0);
        if parsed.exp <= now.saturating_sub(leeway) {
            return Err(TokenError::Expired);
        }
        if parsed
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(leeway))
        {
            return Err(TokenError::NotYetValid);
        }
        parsed.claims = claims;
        Ok(parsed)
    }
}
