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

use crate::credentials;
use crate::decision::Grant;
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
