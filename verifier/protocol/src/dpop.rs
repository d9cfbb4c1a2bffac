//! DPoP proofs (RFC 9449): making them (the agent, with its attested key) and
//! checking them (relying parties, and the verifier's own token exchange).
//!
//! A proof is a JWS the agent signs per HTTP request with the key whose
//! thumbprint is the token's `cnf.jkt`, so a token copied off the wire is
//! useless without that key. Nothing here reads the clock: `now` and `iat`
//! are arguments. Replay protection needs state, so [`verify_proof`] only
//! returns the `jti`; [`ReplayCache`] is a bounded store for it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use attest_gate_core::AgentKey;
use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::signature::{
    UnparsedPublicKey, VerificationAlgorithm, ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED,
    ED25519,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::jws::{self, ct_eq};

/// The `typ` every DPoP proof carries (RFC 9449 §4.2), so that no other JWS
/// signed by the same key can pass as a proof.
pub const PROOF_TYPE: &str = "dpop+jwt";

/// Longest proof accepted, in bytes: a proof is a few hundred bytes, and
/// everything larger is refused before any decoding.
pub const MAX_PROOF_LEN: usize = 8 * 1024;

/// Longest `jti` accepted: it is stored in replay caches, so it is bounded.
pub const MAX_JTI_LEN: usize = 256;

/// Longest server `nonce` accepted, before it reaches the caller's check.
pub const MAX_NONCE_LEN: usize = 1024;

/// The default `iat` window, seconds either side of `now`: RFC 9449 leaves it
/// to the server; a minute tolerates ordinary clock skew.
pub const DEFAULT_IAT_WINDOW_SECONDS: i64 = 60;

/// The JWS `alg` for a key: ES256 for P-256, ES384 for P-384, EdDSA for
/// Ed25519. A proof must use exactly this one (no algorithm confusion).
pub fn jws_alg(key: &AgentKey) -> &'static str {
    match key {
        AgentKey::P256 { .. } => "ES256",
        AgentKey::P384 { .. } => "ES384",
        AgentKey::Ed25519 { .. } => "EdDSA",
    }
}

/// ECDSA signatures are the fixed-length r‖s of RFC 7518 §3.4.
fn verification_algorithm(key: &AgentKey) -> &'static dyn VerificationAlgorithm {
    match key {
        AgentKey::P256 { .. } => &ECDSA_P256_SHA256_FIXED,
        AgentKey::P384 { .. } => &ECDSA_P384_SHA384_FIXED,
        AgentKey::Ed25519 { .. } => &ED25519,
    }
}

/// The `ath` claim for an access token: base64url(SHA-256(token)), which ties
/// a proof to the one token it is presented with.
pub fn access_token_hash(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest(&SHA256, access_token.as_bytes()))
}

/// The form in which `htu` values are compared (RFC 9449 §4.3): an absolute
/// `http` or `https` URL, parsed and serialised by the WHATWG URL rules (so
/// scheme and host are lower-cased, a default port is dropped, an empty path
/// becomes `/`, and `.`/`..` segments are resolved), without query and
/// fragment. `None` for anything else, and for URLs with user info. Percent
/// escapes are compared as written (`%41` is not `A`).
pub fn normalize_htu(url: &str) -> Option<String> {
    if url.len() > MAX_PROOF_LEN {
        return None;
    }
    let mut parsed = url::Url::parse(url).ok()?;
    if !matches!(parsed.scheme(), "http" | "https")
        || !parsed.username().is_empty()
        || parsed.password().is_some()
        || parsed.host().is_none()
    {
        return None;
    }
    parsed.set_query(None);
    parsed.set_fragment(None);
    Some(parsed.into())
}

/// What one proof asserts: the request it is for, and when it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProofClaims<'a> {
    /// HTTP method, as sent (`GET`, `POST`).
    pub htm: &'a str,
    /// The request URL; query and fragment are dropped (RFC 9449 §4.2).
    pub htu: &'a str,
    /// The access token the proof accompanies (its hash becomes `ath`);
    /// `None` when asking for a token.
    pub access_token: Option<&'a str>,
    /// The server's `DPoP-Nonce`, when it asked for one.
    pub nonce: Option<&'a str>,
    /// Creation time, Unix seconds.
    pub iat: i64,
    /// Unique proof identifier: at least 96 random bits, at most
    /// [`MAX_JTI_LEN`] bytes.
    pub jti: &'a str,
}

/// Why no proof was made.
#[derive(Debug, thiserror::Error)]
pub enum MakeProofError<E> {
    /// The claims could not make a proof that any verifier would accept
    /// (empty or long `jti`, unusable `htu`, long nonce).
    #[error("unusable proof claims: {0}")]
    Claims(&'static str),
    /// The signer failed.
    #[error("signing the proof failed: {0}")]
    Sign(E),
    /// The signer's signature does not verify under `public`: wrong key,
    /// wrong algorithm, or a DER instead of a fixed r‖s signature.
    #[error("the signature does not verify under the given public key")]
    Signature,
}

/// Makes a DPoP proof for `public`'s key. `sign` signs the JWS signing input
/// with the private half (the key never has to be handed over): fixed r‖s for
/// ECDSA (ES256 for P-256, ES384 for P-384), a plain signature for Ed25519.
/// The result is checked against `public` before it is returned, so a signer
/// holding another key fails here, not at the relying party.
pub fn make_proof<E>(
    public: &AgentKey,
    claims: &ProofClaims<'_>,
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, E>,
) -> Result<String, MakeProofError<E>> {
    if claims.jti.is_empty() || claims.jti.len() > MAX_JTI_LEN {
        return Err(MakeProofError::Claims("`jti` must be 1 to 256 bytes"));
    }
    if claims.nonce.is_some_and(|n| n.len() > MAX_NONCE_LEN) {
        return Err(MakeProofError::Claims("`nonce` is too long"));
    }
    let htu = normalize_htu(claims.htu).ok_or(MakeProofError::Claims(
        "`htu` is not an absolute http(s) URL",
    ))?;
    let header = json!({"typ": PROOF_TYPE, "alg": jws_alg(public), "jwk": public.to_jwk()});
    let mut payload = json!({
        "jti": claims.jti,
        "htm": claims.htm,
        "htu": htu,
        "iat": claims.iat,
    });
    if let Some(map) = payload.as_object_mut() {
        if let Some(token) = claims.access_token {
            map.insert("ath".into(), Value::String(access_token_hash(token)));
        }
        if let Some(nonce) = claims.nonce {
            map.insert("nonce".into(), Value::String(nonce.to_string()));
        }
    }
    let encode = |v: &Value| {
        serde_json::to_vec(v)
            .map(|bytes| URL_SAFE_NO_PAD.encode(bytes))
            .map_err(|_| MakeProofError::Claims("not serialisable"))
    };
    let signing_input = format!("{}.{}", encode(&header)?, encode(&payload)?);
    let signature = sign(signing_input.as_bytes()).map_err(MakeProofError::Sign)?;
    UnparsedPublicKey::new(verification_algorithm(public), public.raw_public_key())
        .verify(signing_input.as_bytes(), &signature)
        .map_err(|_| MakeProofError::Signature)?;
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}

/// What the server knows about the request a proof must match.
#[derive(Clone, Copy)]
pub struct ProofExpectations<'a> {
    /// The request's method; compared case-sensitively (RFC 9110 methods are).
    pub htm: &'a str,
    /// The request's full URL as the client addressed it (see
    /// [`normalize_htu`] for how it is compared).
    pub htu: &'a str,
    /// The access token presented with the proof: `ath` must be its hash.
    /// `None` at a token endpoint, where no token accompanies the proof.
    pub access_token: Option<&'a str>,
    /// The thumbprint the proof's key must have: the token's `cnf.jkt`.
    pub jkt: Option<&'a str>,
    /// Server nonces (RFC 9449 §8): when set, the proof's `nonce` must be
    /// present and accepted by this check, else [`DpopError::UseNonce`].
    pub nonce: Option<&'a (dyn Fn(&str) -> bool + Sync)>,
    /// How far `iat` may be from `now`, either way, in seconds.
    pub iat_window_seconds: i64,
}

impl std::fmt::Debug for ProofExpectations<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProofExpectations")
            .field("htm", &self.htm)
            .field("htu", &self.htu)
            .field("access_token", &self.access_token.map(|_| "<redacted>"))
            .field("jkt", &self.jkt)
            .field("nonce", &self.nonce.map(|_| "<check>"))
            .field("iat_window_seconds", &self.iat_window_seconds)
            .finish()
    }
}

impl<'a> ProofExpectations<'a> {
    /// Expectations for a request with no token, no key pinned, no nonce and
    /// the default `iat` window; set the other fields as needed.
    pub fn new(htm: &'a str, htu: &'a str) -> Self {
        Self {
            htm,
            htu,
            access_token: None,
            jkt: None,
            nonce: None,
            iat_window_seconds: DEFAULT_IAT_WINDOW_SECONDS,
        }
    }
}

/// A proof that passed every check but replay, which is the caller's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    /// The proof key's RFC 7638 thumbprint.
    pub jkt: String,
    /// The proof's `jti`, for the replay check.
    pub jti: String,
    /// Its `iat`: the replay entry may expire at `iat` + the window.
    pub iat: i64,
}

/// Why a proof was refused. Every variant is `invalid_dpop_proof` except
/// [`DpopError::UseNonce`]; the details are for logs, not for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    /// Not a well-formed compact JWS with JSON header and claims.
    #[error("malformed DPoP proof: {0}")]
    Malformed(&'static str),
    /// `typ` is not `dpop+jwt`.
    #[error("the proof's typ is not dpop+jwt")]
    Type,
    /// `alg` is missing, `none`, unsupported, or not the JWK's algorithm.
    #[error("the proof's alg is missing, none, or not the algorithm of its key")]
    Algorithm,
    /// The header's JWK has a private part (`d`).
    #[error("the proof's JWK contains a private key")]
    PrivateKey,
    /// The header's JWK is missing, unsupported, or not a point on its curve.
    #[error("the proof's JWK is missing or unusable")]
    Jwk,
    /// The signature does not verify under the header's JWK.
    #[error("the proof's signature is invalid")]
    Signature,
    /// `jti` is missing, empty or too long.
    #[error("the proof's jti is missing, empty or too long")]
    Jti,
    /// `htm` is not the request's method.
    #[error("the proof's htm does not match the request method")]
    Method,
    /// `htu` is not the request's URL.
    #[error("the proof's htu does not match the request URL")]
    Uri,
    /// `iat` is missing, or outside the window around `now`.
    #[error("the proof's iat is missing or outside the accepted window")]
    Iat,
    /// `ath` is missing or is not the presented token's hash.
    #[error("the proof's ath does not match the access token")]
    AccessTokenHash,
    /// The proof's key is not the one the token is bound to.
    #[error("the proof's key is not the key the token is bound to")]
    KeyMismatch,
    /// A server nonce is required and the proof has none, or not a current one.
    #[error("a current server nonce is required")]
    UseNonce,
}

impl DpopError {
    /// The OAuth error code to answer with (RFC 9449 §7.1, §8, §9):
    /// `use_dpop_nonce` (send a fresh `DPoP-Nonce` header with it) or
    /// `invalid_dpop_proof`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UseNonce => "use_dpop_nonce",
            _ => "invalid_dpop_proof",
        }
    }
}

/// Checks a proof against the request it came with. Checks, in order: size
/// and shape; `typ`; `alg` (not `none`, and the JWK's own); the JWK (public,
/// supported, on its curve); the signature; `jti`; `htm`; `htu`; `iat` within
/// `expect.iat_window_seconds` of `now`; `ath`; the key thumbprint; the
/// nonce. Replay is left to the caller (see [`ReplayCache`]).
pub fn verify_proof(
    proof: &str,
    expect: &ProofExpectations<'_>,
    now: i64,
) -> Result<VerifiedProof, DpopError> {
    let jws = jws::split(proof, MAX_PROOF_LEN).map_err(DpopError::Malformed)?;
    if jws.header_str("typ") != Some(PROOF_TYPE) {
        return Err(DpopError::Type);
    }
    let alg = jws.header_str("alg").ok_or(DpopError::Algorithm)?;
    let jwk = jws.header.get("jwk").ok_or(DpopError::Jwk)?;
    if jwk.get("d").is_some() {
        return Err(DpopError::PrivateKey);
    }
    let key = AgentKey::from_jwk(jwk).map_err(|_| DpopError::Jwk)?;
    if alg != jws_alg(&key) {
        return Err(DpopError::Algorithm);
    }
    if !jws.verifies(verification_algorithm(&key), &key.raw_public_key()) {
        return Err(DpopError::Signature);
    }
    let claims: Map<String, Value> = serde_json::from_slice(&jws.payload)
        .map_err(|_| DpopError::Malformed("claims are not a JSON object"))?;
    let text = |name: &str| claims.get(name).and_then(Value::as_str);

    let jti = text("jti")
        .filter(|j| !j.is_empty() && j.len() <= MAX_JTI_LEN)
        .ok_or(DpopError::Jti)?;
    if text("htm") != Some(expect.htm) {
        return Err(DpopError::Method);
    }
    let htu_matches = match (
        text("htu").and_then(normalize_htu),
        normalize_htu(expect.htu),
    ) {
        (Some(claimed), Some(expected)) => claimed == expected,
        _ => false,
    };
    if !htu_matches {
        return Err(DpopError::Uri);
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or(DpopError::Iat)?;
    let window = expect.iat_window_seconds.max(0);
    if iat < now.saturating_sub(window) || iat > now.saturating_add(window) {
        return Err(DpopError::Iat);
    }
    if let Some(token) = expect.access_token {
        let ath_matches = text("ath").is_some_and(|ath| ct_eq(ath, &access_token_hash(token)));
        if !ath_matches {
            return Err(DpopError::AccessTokenHash);
        }
    }
    let jkt = key.jkt();
    if let Some(expected) = expect.jkt {
        if !ct_eq(&jkt, expected) {
            return Err(DpopError::KeyMismatch);
        }
    }
    if let Some(accept) = expect.nonce {
        let accepted = text("nonce").is_some_and(|n| n.len() <= MAX_NONCE_LEN && accept(n));
        if !accepted {
            return Err(DpopError::UseNonce);
        }
    }
    Ok(VerifiedProof {
        jkt,
        jti: jti.to_string(),
        iat,
    })
}

/// Why [`ReplayCache::insert`] refused a `jti`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The `jti` was seen and has not expired: a replayed proof.
    #[error("the proof's jti was already used")]
    Replayed,
    /// The cache is full of unexpired entries, so the `jti` cannot be
    /// remembered; the proof is refused rather than accepted unrecorded.
    #[error("the replay cache is full")]
    Full,
}

#[derive(Debug, Default)]
struct ReplayEntries {
    expiry_of: HashMap<String, i64>,
    by_expiry: BTreeSet<(i64, String)>,
}

impl ReplayEntries {
    fn remove(&mut self, jti: &str) {
        if let Some(expires_at) = self.expiry_of.remove(jti) {
            self.by_expiry.remove(&(expires_at, jti.to_string()));
        }
    }

    /// Drops every entry that expired before `now`.
    fn purge(&mut self, now: i64) {
        while let Some((expires_at, _)) = self.by_expiry.first() {
            if *expires_at >= now {
                break;
            }
            if let Some((_, jti)) = self.by_expiry.pop_first() {
                self.expiry_of.remove(&jti);
            }
        }
    }
}

/// A bounded in-memory store of recently seen proof `jti`s, for one server
/// process (replicas behind a load balancer need a shared store instead).
///
/// It holds at most `capacity` entries. An entry lives until its `expires_at`
/// (inclusive); when the cache is full, expired entries are dropped first,
/// and if it is still full the new `jti` is refused ([`ReplayError::Full`]):
/// the cache fails closed, because forgetting a live `jti` would let its
/// proof be replayed. Size `capacity` for the request rate times the window.
#[derive(Debug)]
pub struct ReplayCache {
    capacity: usize,
    entries: Mutex<ReplayEntries>,
}

impl ReplayCache {
    /// An empty cache holding at most `capacity` unexpired `jti`s.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new(ReplayEntries::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReplayEntries> {
        // Nothing panics while the lock is held; if something ever did, the
        // entries are still consistent enough to keep refusing replays.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records `jti` until `expires_at` unless it is already recorded and
    /// unexpired at `now` (a replay) or the cache is full (fail closed).
    pub fn insert(&self, jti: &str, expires_at: i64, now: i64) -> Result<(), ReplayError> {
        let mut entries = self.lock();
        match entries.expiry_of.get(jti) {
            Some(&seen_until) if seen_until >= now => return Err(ReplayError::Replayed),
            Some(_) => entries.remove(jti),
            None => {}
        }
        if entries.expiry_of.len() >= self.capacity {
            entries.purge(now);
            if entries.expiry_of.len() >= self.capacity {
                return Err(ReplayError::Full);
            }
        }
        entries.expiry_of.insert(jti.to_string(), expires_at);
        entries.by_expiry.insert((expires_at, jti.to_string()));
        Ok(())
    }

    /// [`ReplayCache::insert`] as a yes/no: `true` if the `jti` is new and
    /// now recorded, `false` for a replay or a full cache.
    pub fn check_and_insert(&self, jti: &str, expires_at: i64, now: i64) -> bool {
        self.insert(jti, expires_at, now).is_ok()
    }

    /// How many entries are held (expired ones included until purged).
    pub fn len(&self) -> usize {
        self.lock().expiry_of.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
