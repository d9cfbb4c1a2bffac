//! Token-signing keys and JWT (RFC 7519) signing: ES256 keys kept as PKCS#8
//! files in `<data-dir>/keys/jwt/`, a `kid` that is the key's RFC 7638
//! thumbprint, and a JWKS with the current and the previous key so tokens
//! signed before a rotation keep verifying until they expire.

use std::path::{Path, PathBuf};

use attest_gate_core::AgentKey;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;
use serde_json::{json, Value};

use attest_gate_protocol::claims::ACCESS_TOKEN_TYPE;
use attest_gate_protocol::{jws, AccessClaims};
use aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED;

use crate::credentials::{self, JwtSvidClaims};
use crate::decision::{Grant, JwtSvidGrant};
use crate::revocation::{RevocationListClaims, REVOCATION_LIST_TYPE};
use crate::secrets::{self, SecretError};

/// One ES256 signing key.
pub(crate) struct SigningKey {
    kid: String,
    pair: EcdsaKeyPair,
    public: AgentKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.kid)
    }
}

/// A key file that does not hold a usable P-256 PKCS#8 key.
#[derive(Debug, thiserror::Error)]
#[error("not a P-256 PKCS#8 signing key")]
pub(crate) struct BadKey;

impl SigningKey {
    /// The key from its PKCS#8 DER.
    pub(crate) fn from_pkcs8(der: &[u8]) -> Result<Self, BadKey> {
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).map_err(|_| BadKey)?;
        let point = pair.public_key().as_ref();
        let (Some(x), Some(y)) = (point.get(1..33), point.get(33..65)) else {
            return Err(BadKey);
        };
        let public = AgentKey::P256 {
            x: x.try_into().map_err(|_| BadKey)?,
            y: y.try_into().map_err(|_| BadKey)?,
        };
        Ok(Self {
            kid: public.jkt(),
            pair,
            public,
        })
    }

    /// A fresh key's PKCS#8 DER.
    pub(crate) fn generate_pkcs8() -> Result<Vec<u8>, SecretError> {
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .map(|doc| doc.as_ref().to_vec())
            .map_err(|_| SecretError::Random)
    }

    /// Its key ID.
    pub(crate) fn kid(&self) -> &str {
        &self.kid
    }

    /// Its public JWK with `kid`, `alg` and `use`.
    pub(crate) fn public_jwk(&self) -> Value {
        let mut jwk = self.public.to_jwk();
        if let Some(map) = jwk.as_object_mut() {
            map.insert("kid".into(), json!(self.kid));
            map.insert("alg".into(), json!("ES256"));
            map.insert("use".into(), json!("sig"));
        }
        jwk
    }

    /// The access token for `grant` (`typ: at+jwt`): the only way to sign
    /// a credential, so only what the decision module granted is signed.
    pub(crate) fn sign_access(&self, grant: &Grant, issuer: &str) -> Result<String, SignError> {
        self.sign_jwt(
            ACCESS_TOKEN_TYPE,
            &credentials::access_claims(grant, issuer),
        )
    }

    /// The JWT-SVID for `grant` (`typ: JWT`, SPIFFE JWT-SVID §2): the only
    /// way to sign one, so only what the decision module granted is signed.
    /// The access token's `typ` (`at+jwt`) differs, so neither passes as
    /// the other here or at a relying party that checks `typ`.
    pub(crate) fn sign_jwt_svid(
        &self,
        grant: &JwtSvidGrant,
        issuer: &str,
    ) -> Result<String, SignError> {
        self.sign_jwt(JWT_SVID_TYPE, &credentials::jwt_svid_claims(grant, issuer))
    }

    /// The signed revocation list (`typ: revocation-list+jwt`).
    pub(crate) fn sign_revocation_list(
        &self,
        list: &RevocationListClaims<'_>,
    ) -> Result<String, SignError> {
        self.sign_jwt(REVOCATION_LIST_TYPE, list)
    }

    /// Whether `jws` is signed by this key (ES256, its `kid`).
    pub(crate) fn signed(&self, jws: &jws::Compact<'_>) -> bool {
        jws.header_str("alg") == Some("ES256")
            && jws.header_str("kid") == Some(self.kid.as_str())
            && jws.verifies(&ECDSA_P256_SHA256_FIXED, &self.public.raw_public_key())
    }

    /// A compact JWS of `claims` with header `typ`.
    pub(crate) fn sign_jwt<C: Serialize>(
        &self,
        typ: &str,
        claims: &C,
    ) -> Result<String, SignError> {
        let header = json!({"alg": "ES256", "typ": typ, "kid": self.kid});
        let header = serde_json::to_vec(&header).map_err(|_| SignError)?;
        let payload = serde_json::to_vec(claims).map_err(|_| SignError)?;
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let signature = self
            .pair
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .map_err(|_| SignError)?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }
}

/// The `typ` of a JWT-SVID.
pub(crate) const JWT_SVID_TYPE: &str = "JWT";

/// Signing failed (the random generator or serialisation failed).
#[derive(Debug, thiserror::Error)]
#[error("signing a token failed")]
pub(crate) struct SignError;

/// An access token this service signed, its signature checked: only
/// [`TokenKeys::verify_access`] makes one, so a delegation is granted only
/// from a parent the service issued.
#[derive(Debug, Clone)]
pub struct VerifiedToken(AccessClaims);

impl VerifiedToken {
    /// Its claims.
    pub fn claims(&self) -> &AccessClaims {
        &self.0
    }
}

/// The current signing key and the one before it.
#[derive(Debug)]
pub(crate) struct TokenKeys {
    /// Signs new tokens.
    pub current: SigningKey,
    /// Still published, so its unexpired tokens verify.
    pub previous: Option<SigningKey>,
}

/// Where the keys live: `current.p8`, `previous.p8`.
fn paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("current.p8"), dir.join("previous.p8"))
}

fn parse(path: &Path, der: &[u8]) -> Result<SigningKey, SecretError> {
    SigningKey::from_pkcs8(der).map_err(|e| SecretError::Invalid {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

impl TokenKeys {
    /// Loads the keys in `dir`, generating the current one on first start.
    pub(crate) fn load_or_create(dir: &Path) -> Result<Self, SecretError> {
        let (current_path, previous_path) = paths(dir);
        let (der, _) = secrets::load_or_create(&current_path, SigningKey::generate_pkcs8)?;
        let current = parse(&current_path, &der)?;
        let previous = if previous_path.exists() {
            let der = secrets::read_secret(&previous_path)?;
            Some(parse(&previous_path, &der)?)
        } else {
            None
        };
        Ok(Self { current, previous })
    }

    /// Makes a new current key; the current one becomes the previous one and
    /// the previous one is dropped. Returns the reloaded keys.
    pub(crate) fn rotate(dir: &Path) -> Result<Self, SecretError> {
        let (current_path, previous_path) = paths(dir);
        let old = secrets::read_secret(&current_path)?;
        secrets::replace_secret(&previous_path, &old)?;
        secrets::replace_secret(&current_path, &SigningKey::generate_pkcs8()?)?;
        Self::load_or_create(dir)
    }

    /// An access token signed by one of these keys, or `None`: too large,
    /// bad shape, another `typ` (a revocation list is signed by the same key
    /// and must never pass as an access token), unknown `kid`, wrong `alg`,
    /// a bad signature, or claims that are not an access token's.
    pub(crate) fn verify_access(&self, jwt: &str) -> Option<VerifiedToken> {
        const MAX_TOKEN: usize = 16 * 1024;
        let jws = jws::split(jwt, MAX_TOKEN).ok()?;
        if jws.header_str("alg") != Some("ES256")
            || jws.header_str("typ") != Some(ACCESS_TOKEN_TYPE)
        {
            return None;
        }
        let kid = jws.header_str("kid")?;
        let key = std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .find(|k| k.kid == kid)?;
        if !jws.verifies(&ECDSA_P256_SHA256_FIXED, &key.public.raw_public_key()) {
            return None;
        }
        serde_json::from_slice(&jws.payload).ok().map(VerifiedToken)
    }

    /// A JWT-SVID signed by one of these keys, or `None` (the same checks
    /// as [`TokenKeys::verify_access`], for `typ: JWT` and its claims).
    pub(crate) fn verify_jwt_svid(&self, jwt: &str) -> Option<JwtSvidClaims> {
        const MAX_TOKEN: usize = 16 * 1024;
        let jws = jws::split(jwt, MAX_TOKEN).ok()?;
        if jws.header_str("alg") != Some("ES256") || jws.header_str("typ") != Some(JWT_SVID_TYPE) {
            return None;
        }
        let kid = jws.header_str("kid")?;
        let key = std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .find(|k| k.kid == kid)?;
        if !jws.verifies(&ECDSA_P256_SHA256_FIXED, &key.public.raw_public_key()) {
            return None;
        }
        serde_json::from_slice(&jws.payload).ok()
    }

    /// The JWKS document (RFC 7517): current key first.
    pub(crate) fn jwks(&self) -> Value {
        let keys: Vec<Value> = std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .map(SigningKey::public_jwk)
            .collect();
        json!({ "keys": keys })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::UnparsedPublicKey;

    #[test]
    fn a_signed_jwt_verifies_under_its_published_key() {
        let dir = tempfile::tempdir().unwrap();
        let keys = TokenKeys::load_or_create(dir.path()).unwrap();
        let jwt = keys
            .current
            .sign_jwt("at+jwt", &json!({"sub": "x"}))
            .unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["typ"], "at+jwt");
        assert_eq!(header["alg"], "ES256");
        let jwks = keys.jwks();
        let jwk = &jwks["keys"][0];
        assert_eq!(header["kid"], jwk["kid"]);
        let point = [
            &[4u8][..],
            &URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap(),
            &URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap(),
        ]
        .concat();
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        let input = format!("{}.{}", parts[0], parts[1]);
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
            .verify(input.as_bytes(), &signature)
            .unwrap();
        let mut tampered = signature.clone();
        tampered[0] ^= 1;
        assert!(UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
            .verify(input.as_bytes(), &tampered)
            .is_err());
    }

    /// Claims of the shape the service signs into an access token.
    fn access_claims() -> Value {
        json!({
            "iss": "https://verifier.test", "sub": "spiffe://attest-gate.test/w/k",
            "aud": "https://rp.test", "iat": 1, "nbf": 1, "exp": 2, "jti": "j",
            "client_id": "w", "scope": "inference:invoke", "cnf": {"jkt": "k"},
            "act_for": "system",
            "intent": {"task_id": "t", "requested_scopes": [], "audience": "https://rp.test"},
            "provenance": {
                "tee": "tdx", "workload": "w", "workload_version": "1",
                "measurements": {"mrtd": "00"}, "model_digest": "00",
                "evidence_sha384": "00", "test_root": true
            },
            "session": {"id": "s", "parent": null, "chain": ["spiffe://attest-gate.test/w/k"]},
            "ear": {
                "eat_profile": "tag:github.com,2023:veraison/ear",
                "ear.verifier-id": {"developer": "attest-gate"},
                "submods": {}
            }
        })
    }

    /// Re-encodes one part (0 header, 1 payload) of a compact JWS.
    fn with_part(jwt: &str, part: usize, value: &[u8]) -> String {
        let mut parts: Vec<String> = jwt.split('.').map(str::to_string).collect();
        parts[part] = URL_SAFE_NO_PAD.encode(value);
        parts.join(".")
    }

    #[test]
    fn only_an_access_token_signed_by_a_published_key_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let keys = TokenKeys::load_or_create(dir.path()).unwrap();
        let good = keys.current.sign_jwt("at+jwt", &access_claims()).unwrap();
        let verified = keys.verify_access(&good).expect("a genuine token");
        assert_eq!(verified.claims().jti, "j");

        let mut signature = URL_SAFE_NO_PAD
            .decode(good.rsplit('.').next().unwrap())
            .unwrap();
        signature[0] ^= 1;
        let tampered_signature = with_part(&good, 2, &signature);
        let mut widened = access_claims();
        widened["scope"] = json!("admin:everything");
        let tampered_claims = with_part(&good, 1, &serde_json::to_vec(&widened).unwrap());
        let other_dir = tempfile::tempdir().unwrap();
        let other = TokenKeys::load_or_create(other_dir.path()).unwrap();
        let unknown_kid = other.current.sign_jwt("at+jwt", &access_claims()).unwrap();
        // A known kid named on another key's signature.
        let header = |alg: &str, typ: &str, kid: &str| {
            serde_json::to_vec(&json!({"alg": alg, "typ": typ, "kid": kid})).unwrap()
        };
        let borrowed_kid = with_part(
            &unknown_kid,
            0,
            &header("ES256", "at+jwt", &keys.current.kid),
        );
        let mut not_access = access_claims();
        not_access.as_object_mut().unwrap().remove("cnf");
        for (why, jwt) in [
            ("tampered signature", tampered_signature),
            ("tampered claims", tampered_claims),
            ("unknown kid", unknown_kid),
            ("kid of a published key, signed by another", borrowed_kid),
            // The revocation list is signed by the same key.
            (
                "revocation-list typ",
                keys.current
                    .sign_jwt("revocation-list+jwt", &access_claims())
                    .unwrap(),
            ),
            (
                "JWT typ",
                keys.current.sign_jwt("JWT", &access_claims()).unwrap(),
            ),
            (
                "dpop typ",
                keys.current.sign_jwt("dpop+jwt", &access_claims()).unwrap(),
            ),
            (
                "alg none",
                with_part(&good, 0, &header("none", "at+jwt", &keys.current.kid)),
            ),
            (
                "alg ES384",
                with_part(&good, 0, &header("ES384", "at+jwt", &keys.current.kid)),
            ),
            (
                "claims not an access token's",
                keys.current.sign_jwt("at+jwt", &not_access).unwrap(),
            ),
            (
                "claims a JSON string",
                keys.current.sign_jwt("at+jwt", &json!("x")).unwrap(),
            ),
            ("two parts", good.rsplit_once('.').unwrap().0.to_string()),
            ("oversized", format!("{good}{}", "A".repeat(16 * 1024))),
            ("empty", String::new()),
        ] {
            assert!(keys.verify_access(&jwt).is_none(), "{why} verified");
        }

        // After one rotation the old key's tokens still verify; after two
        // they do not.
        let once = TokenKeys::rotate(dir.path()).unwrap();
        assert!(once.verify_access(&good).is_some());
        let twice = TokenKeys::rotate(dir.path()).unwrap();
        assert!(twice.verify_access(&good).is_none());
    }

    #[test]
    fn rotation_keeps_the_previous_key_published() {
        let dir = tempfile::tempdir().unwrap();
        let first = TokenKeys::load_or_create(dir.path()).unwrap();
        let again = TokenKeys::load_or_create(dir.path()).unwrap();
        assert_eq!(first.current.kid(), again.current.kid());
        let rotated = TokenKeys::rotate(dir.path()).unwrap();
        assert_ne!(rotated.current.kid(), first.current.kid());
        assert_eq!(
            rotated.previous.as_ref().unwrap().kid(),
            first.current.kid()
        );
        let kids: Vec<String> = rotated.jwks()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(kids, [rotated.current.kid(), first.current.kid()]);
    }
}
