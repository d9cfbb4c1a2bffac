//! JWT-SVIDs on the Workload API: the trust domain's JWT bundle (the
//! verifier's JWKS) and `ValidateJWTSVID`'s checks, fail closed: an ES256
//! signature by a bundle key named by `kid`, `typ` absent, `JWT` or `JOSE`
//! (not the verifier's `at+jwt` access tokens, signed by the same keys),
//! `aud` holding the audience,
//! `exp` not passed, `sub` a well-formed SPIFFE ID in the trust domain.
//! The claims go back as a `google.protobuf.Struct`.

use std::collections::BTreeMap;

use attest_gate_core::AgentKey;
use attest_gate_protocol::jws;
use aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED;
use serde_json::Value;

use super::identity::trust_domain_of;

/// Longest JWT-SVID or JWKS accepted, bytes.
const MAX_LEN: usize = 16 * 1024;
/// Most keys a JWT bundle may hold.
const MAX_KEYS: usize = 64;

/// Why a JWT-SVID (or a JWT bundle) was refused. The messages are fixed:
/// the token is the caller's input and never echoed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not a compact JWS, or too large.
    #[error("not a JWT: {0}")]
    Malformed(&'static str),
    /// `alg` is not ES256.
    #[error("unsupported `alg` (ES256 only)")]
    Algorithm,
    /// `typ` is neither absent, `JWT` nor `JOSE` (e.g. an `at+jwt` access
    /// token, which is key-bound and must not pass as a bearer JWT-SVID).
    #[error("not a JWT-SVID (`typ` must be JWT or JOSE)")]
    Type,
    /// No `kid`, or one the bundle does not hold.
    #[error("signed by a key not in the trust domain's JWT bundle")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the signature does not verify")]
    Signature,
    /// The payload is not a JSON object.
    #[error("the claims are not a JSON object")]
    Claims,
    /// `aud` missing or without the audience.
    #[error("the audience is not in `aud`")]
    Audience,
    /// `exp` missing or passed.
    #[error("expired (or no `exp`)")]
    Expired,
    /// `sub` missing, not a SPIFFE ID, or of another trust domain.
    #[error("`sub` is not a SPIFFE ID of this trust domain")]
    Subject,
    /// The JWKS document cannot be used.
    #[error("unusable JWT bundle: {0}")]
    Bundle(&'static str),
}

/// A trust domain's JWT bundle: the JWKS document as published (what
/// `FetchJWTBundles` sends) and its ES256 keys by `kid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtBundle {
    document: Vec<u8>,
    keys: BTreeMap<String, AgentKey>,
}

impl JwtBundle {
    /// Reads a JWKS. EC P-256 keys with a `kid` are kept (others are
    /// skipped, RFC 7517 §5); a private key, a repeated `kid`, too many keys
    /// or none usable refuse the document.
    pub fn parse(document: &[u8]) -> Result<Self, JwtError> {
        if document.len() > MAX_LEN {
            return Err(JwtError::Bundle("too large"));
        }
        let doc: Value =
            serde_json::from_slice(document).map_err(|_| JwtError::Bundle("not JSON"))?;
        let listed = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(JwtError::Bundle("no `keys` array"))?;
        if listed.len() > MAX_KEYS {
            return Err(JwtError::Bundle("too many keys"));
        }
        let mut keys = BTreeMap::new();
        for jwk in listed {
            if jwk.get("d").is_some() {
                return Err(JwtError::Bundle("a private key is published"));
            }
            let member = |name: &str| jwk.get(name).and_then(Value::as_str);
            let (Some("EC"), Some("P-256"), Some(kid)) =
                (member("kty"), member("crv"), member("kid"))
            else {
                continue;
            };
            if kid.is_empty() || jwk.get("alg").is_some_and(|a| a != "ES256") {
                continue;
            }
            let key = AgentKey::from_jwk(jwk).map_err(|_| JwtError::Bundle("an invalid key"))?;
            if keys.insert(kid.to_string(), key).is_some() {
                return Err(JwtError::Bundle("a repeated `kid`"));
            }
        }
        if keys.is_empty() {
            return Err(JwtError::Bundle("no ES256 key"));
        }
        Ok(Self {
            document: document.to_vec(),
            keys,
        })
    }

    /// The JWKS document, as published.
    pub fn document(&self) -> &[u8] {
        &self.document
    }
}

/// Validates `token` as a JWT-SVID of `trust_domain` (`spiffe://<td>`)
/// for `audience` at `now` (Unix seconds): its SPIFFE ID and claims.
pub fn validate(
    token: &str,
    audience: &str,
    bundle: &JwtBundle,
    trust_domain: &str,
    now: i64,
) -> Result<(String, serde_json::Map<String, Value>), JwtError> {
    let jws = jws::split(token, MAX_LEN).map_err(JwtError::Malformed)?;
    if jws.header_str("alg") != Some("ES256") {
        return Err(JwtError::Algorithm);
    }
    // JWT-SVID §3: `typ`, if present, is JWT or JOSE. The verifier signs its
    // access tokens (`at+jwt`, DPoP-bound) with the same keys: one must not
    // validate here as a bearer JWT-SVID.
    match jws.header.get("typ") {
        None => {}
        Some(Value::String(t)) if t == "JWT" || t == "JOSE" => {}
        Some(_) => return Err(JwtError::Type),
    }
    let key = jws
        .header_str("kid")
        .and_then(|kid| bundle.keys.get(kid))
        .ok_or(JwtError::UnknownKey)?;
    if !jws.verifies(&ECDSA_P256_SHA256_FIXED, &key.raw_public_key()) {
        return Err(JwtError::Signature);
    }
    let claims: serde_json::Map<String, Value> =
        serde_json::from_slice(&jws.payload).map_err(|_| JwtError::Claims)?;
    let audience_ok = !audience.is_empty()
        && match claims.get("aud") {
            Some(Value::String(one)) => one == audience,
            Some(Value::Array(many)) => many.iter().any(|a| a.as_str() == Some(audience)),
            _ => false,
        };
    if !audience_ok {
        return Err(JwtError::Audience);
    }
    match claims.get("exp").and_then(Value::as_f64) {
        Some(exp) if exp.is_finite() && (now as f64) < exp => {}
        _ => return Err(JwtError::Expired),
    }
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|sub| trust_domain_of(sub).as_deref() == Some(trust_domain))
        .ok_or(JwtError::Subject)?
        .to_string();
    Ok((subject, claims))
}

/// JSON claims as a `google.protobuf.Struct`.
pub(crate) fn to_struct(claims: serde_json::Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: claims
            .into_iter()
            .map(|(name, value)| (name, to_value(value)))
            .collect(),
    }
}

fn to_value(value: Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => Kind::StringValue(s),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.into_iter().map(to_value).collect(),
        }),
        Value::Object(map) => Kind::StructValue(to_struct(map)),
    };
    prost_types::Value { kind: Some(kind) }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use serde_json::json;

    const TD: &str = "spiffe://attest-gate.test";
    const NOW: i64 = 1_800_000_000;

    struct Signer(EcdsaKeyPair, String);

    impl Signer {
        fn new(kid: &str) -> Self {
            let doc = EcdsaKeyPair::generate_pkcs8(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                &SystemRandom::new(),
            )
            .unwrap();
            let pair =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap();
            Self(pair, kid.to_string())
        }

        fn jwk(&self) -> Value {
            let point = self.0.public_key().as_ref();
            let key = AgentKey::P256 {
                x: point[1..33].try_into().unwrap(),
                y: point[33..65].try_into().unwrap(),
            };
            let mut jwk = key.to_jwk();
            jwk["kid"] = json!(self.1);
            jwk["use"] = json!("sig");
            jwk
        }

        fn sign(&self, header: &Value, claims: &Value) -> String {
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
            let sig = self.0.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
        }

        fn svid(&self, claims: &Value) -> String {
            self.sign(
                &json!({"alg": "ES256", "kid": self.1, "typ": "JWT"}),
                claims,
            )
        }
    }

    fn bundle(signers: &[&Signer]) -> JwtBundle {
        let keys: Vec<Value> = signers.iter().map(|s| s.jwk()).collect();
        JwtBundle::parse(json!({ "keys": keys }).to_string().as_bytes()).unwrap()
    }

    fn good() -> Value {
        json!({"sub": "spiffe://attest-gate.test/inference/k", "aud": ["a", "b"],
               "exp": NOW + 60, "iat": NOW, "iss": "https://verifier.test"})
    }

    #[test]
    fn a_good_svid_validates_and_its_claims_come_back() {
        let s = Signer::new("k1");
        let (sub, claims) = validate(&s.svid(&good()), "b", &bundle(&[&s]), TD, NOW).unwrap();
        assert_eq!(sub, "spiffe://attest-gate.test/inference/k");
        let st = to_struct(claims);
        assert_eq!(
            st.fields["exp"].kind,
            Some(prost_types::value::Kind::NumberValue((NOW + 60) as f64))
        );
        // One audience as a string is fine too.
        let mut one = good();
        one["aud"] = json!("a");
        assert!(validate(&s.svid(&one), "a", &bundle(&[&s]), TD, NOW).is_ok());
    }

    #[test]
    fn every_check_rejects() {
        let s = Signer::new("k1");
        let other = Signer::new("k1");
        let b = bundle(&[&s]);
        let check = |token: &str, audience: &str| validate(token, audience, &b, TD, NOW);
        let with = |name: &str, value: Value| {
            let mut c = good();
            c[name] = value;
            s.svid(&c)
        };
        let without = |name: &str| {
            let mut c = good();
            c.as_object_mut().unwrap().remove(name);
            s.svid(&c)
        };
        assert_eq!(check(&s.svid(&good()), "c"), Err(JwtError::Audience));
        assert_eq!(check(&s.svid(&good()), ""), Err(JwtError::Audience));
        assert_eq!(check(&without("aud"), "a"), Err(JwtError::Audience));
        assert_eq!(check(&with("aud", json!(7)), "a"), Err(JwtError::Audience));
        assert_eq!(check(&with("exp", json!(NOW)), "a"), Err(JwtError::Expired));
        assert_eq!(
            check(&with("exp", json!("soon")), "a"),
            Err(JwtError::Expired)
        );
        assert_eq!(check(&without("exp"), "a"), Err(JwtError::Expired));
        assert_eq!(check(&without("sub"), "a"), Err(JwtError::Subject));
        assert_eq!(
            check(&with("sub", json!("spiffe://other.test/inference/k")), "a"),
            Err(JwtError::Subject)
        );
        assert_eq!(
            check(&with("sub", json!("https://attest-gate.test/x")), "a"),
            Err(JwtError::Subject)
        );
        // A same-kid key outside the bundle: the signature fails.
        assert_eq!(check(&other.svid(&good()), "a"), Err(JwtError::Signature));
        // An unknown kid, no kid, another alg, alg none.
        let unknown = s.sign(&json!({"alg": "ES256", "kid": "k2"}), &good());
        assert_eq!(check(&unknown, "a"), Err(JwtError::UnknownKey));
        let no_kid = s.sign(&json!({"alg": "ES256"}), &good());
        assert_eq!(check(&no_kid, "a"), Err(JwtError::UnknownKey));
        let hs = s.sign(&json!({"alg": "HS256", "kid": "k1"}), &good());
        assert_eq!(check(&hs, "a"), Err(JwtError::Algorithm));
        // An access token (at+jwt) signed by the same key is not a JWT-SVID.
        let at = s.sign(
            &json!({"alg": "ES256", "kid": "k1", "typ": "at+jwt"}),
            &good(),
        );
        assert_eq!(check(&at, "a"), Err(JwtError::Type));
        let jose = s.sign(
            &json!({"alg": "ES256", "kid": "k1", "typ": "JOSE"}),
            &good(),
        );
        assert!(check(&jose, "a").is_ok());
        let token = s.svid(&good());
        let unsigned = format!("{}.", &token[..token.rfind('.').unwrap()]);
        assert_eq!(check(&unsigned, "a"), Err(JwtError::Signature));
        // A payload edited after signing.
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged_payload = with("aud", json!(["a", "z"]));
        parts[1] = forged_payload.split('.').nth(1).unwrap();
        assert_eq!(check(&parts.join("."), "z"), Err(JwtError::Signature));
        // Not a JWS at all; too large; claims not an object.
        assert!(matches!(check("abc", "a"), Err(JwtError::Malformed(_))));
        assert!(matches!(
            check(&"a".repeat(MAX_LEN + 1), "a"),
            Err(JwtError::Malformed(_))
        ));
        let array = s.sign(&json!({"alg": "ES256", "kid": "k1"}), &json!([1]));
        assert_eq!(check(&array, "a"), Err(JwtError::Claims));
    }

    #[test]
    fn bundles_without_usable_keys_or_with_private_ones_are_refused() {
        let s = Signer::new("k1");
        let mut private = s.jwk();
        private["d"] = json!("AAAA");
        for doc in [
            json!({}),
            json!({"keys": []}),
            json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "kid": "x"}]}),
            json!({"keys": [private]}),
            json!({"keys": [s.jwk(), s.jwk()]}),
        ] {
            assert!(
                JwtBundle::parse(doc.to_string().as_bytes()).is_err(),
                "{doc}"
            );
        }
        assert!(JwtBundle::parse(b"not json").is_err());
    }
}
