//! Test helpers: an issuer that signs like `verifier/service/src/token.rs`
//! (ES256, `kid` = RFC 7638 thumbprint, JWKS with `kid`/`alg`/`use`), agent
//! keys of every supported kind, and raw JWS building for malformed cases.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    dead_code,
    unreachable_pub,
    missing_docs
)]

use attest_gate_core::AgentKey;
use attest_gate_relying_party::dpop::{make_proof, ProofClaims};
use attest_gate_relying_party::Jwks;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    ECDSA_P384_SHA384_FIXED_SIGNING,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

pub const ISSUER: &str = "https://127.0.0.1:8443";
pub const AUDIENCE: &str = "https://rp.attest-gate.test";
pub const NOW: i64 = 1_700_000_000;

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn p256_public(pair: &EcdsaKeyPair) -> AgentKey {
    let point = pair.public_key().as_ref();
    AgentKey::P256 {
        x: point[1..33].try_into().unwrap(),
        y: point[33..65].try_into().unwrap(),
    }
}

/// The verifier's token-signing key.
pub struct Issuer {
    pair: EcdsaKeyPair,
    public: AgentKey,
    pub kid: String,
}

impl Issuer {
    pub fn new() -> Self {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap();
        let public = p256_public(&pair);
        Self {
            kid: public.jkt(),
            pair,
            public,
        }
    }

    pub fn public_jwk(&self) -> Value {
        let mut jwk = self.public.to_jwk();
        let map = jwk.as_object_mut().unwrap();
        map.insert("kid".into(), json!(self.kid));
        map.insert("alg".into(), json!("ES256"));
        map.insert("use".into(), json!("sig"));
        jwk
    }

    pub fn jwks_json(&self) -> Value {
        json!({"keys": [self.public_jwk()]})
    }

    pub fn jwks(&self) -> Jwks {
        Jwks::from_json(&self.jwks_json()).unwrap()
    }

    /// Signs `claims` under an arbitrary header.
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        self.sign_payload(header, &serde_json::to_vec(claims).unwrap())
    }

    /// Signs arbitrary payload bytes (not necessarily JSON) under `header`.
    pub fn sign_payload(&self, header: &Value, payload: &[u8]) -> String {
        let input = format!(
            "{}.{}",
            b64(&serde_json::to_vec(header).unwrap()),
            b64(payload)
        );
        let signature = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", b64(signature.as_ref()))
    }

    /// Signs like the service's `SigningKey::sign_jwt`.
    pub fn sign(&self, typ: &str, claims: &Value) -> String {
        self.sign_with_header(
            &json!({"alg": "ES256", "typ": typ, "kid": self.kid}),
            claims,
        )
    }
}

/// The claims the service puts in an access token.
pub fn token_claims(jkt: &str, jti: &str) -> Value {
    json!({
        "iss": ISSUER,
        "sub": format!("spiffe://attest-gate.test/example-snp-agent/{jkt}"),
        "aud": AUDIENCE,
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + 300,
        "jti": jti,
        "client_id": "example-snp-agent",
        "scope": "inference:invoke tools:search",
        "cnf": {"jkt": jkt},
        "act_for": "user:alice",
        "intent": {"task_id": "task-42", "requested_scopes": ["inference:invoke"], "audience": AUDIENCE},
        "provenance": {
            "tee": "snp",
            "workload": "example-snp-agent",
            "workload_version": "1",
            "measurements": {"measurement": "ab".repeat(48)},
            "model_digest": "cd".repeat(48),
            "evidence_sha384": "ef".repeat(48),
            "test_root": true
        },
        "session": {"id": "session-1", "parent": null, "chain": ["spiffe://attest-gate.test/example-snp-agent/x"]},
        "ear": {"eat_profile": "tag:github.com,2023:veraison/ear"}
    })
}

/// An agent key of one of the supported kinds.
pub enum Agent {
    P256(EcdsaKeyPair),
    P384(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl Agent {
    pub fn p256() -> Self {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        Self::P256(
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap(),
        )
    }

    pub fn p384() -> Self {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        Self::P384(
            EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, doc.as_ref()).unwrap(),
        )
    }

    pub fn ed25519() -> Self {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Self::Ed25519(Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap())
    }

    pub fn public(&self) -> AgentKey {
        match self {
            Self::P256(pair) => p256_public(pair),
            Self::P384(pair) => {
                let point = pair.public_key().as_ref();
                AgentKey::P384 {
                    x: point[1..49].try_into().unwrap(),
                    y: point[49..97].try_into().unwrap(),
                }
            }
            Self::Ed25519(pair) => AgentKey::Ed25519 {
                x: pair.public_key().as_ref().try_into().unwrap(),
            },
        }
    }

    pub fn jkt(&self) -> String {
        self.public().jkt()
    }

    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        match self {
            Self::P256(pair) | Self::P384(pair) => pair
                .sign(&SystemRandom::new(), message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|e| e.to_string()),
            Self::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }

    /// A proof made with the library.
    pub fn proof(
        &self,
        htm: &str,
        htu: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
        iat: i64,
        jti: &str,
    ) -> String {
        let claims = ProofClaims {
            htm,
            htu,
            access_token,
            nonce,
            iat,
            jti,
        };
        make_proof(&self.public(), &claims, |m| self.sign(m)).unwrap()
    }

    /// A JWS with exactly this header and payload, signed by this key.
    pub fn sign_raw(&self, header: &Value, payload: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(&serde_json::to_vec(header).unwrap()),
            b64(&serde_json::to_vec(payload).unwrap())
        );
        let signature = self.sign(input.as_bytes()).unwrap();
        format!("{input}.{}", b64(&signature))
    }
}

/// Decodes a compact JWS's header and payload.
pub fn decode(jws: &str) -> (Value, Value) {
    let parts: Vec<&str> = jws.split('.').collect();
    let part =
        |i: usize| serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[i]).unwrap()).unwrap();
    (part(0), part(1))
}

/// The same JWS with one signature bit flipped.
pub fn tamper_signature(jws: &str) -> String {
    let (input, signature) = jws.rsplit_once('.').unwrap();
    let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
    bytes[5] ^= 1;
    format!("{input}.{}", b64(&bytes))
}

/// The same JWS with its payload replaced (signature kept).
pub fn replace_payload(jws: &str, payload: &Value) -> String {
    let parts: Vec<&str> = jws.split('.').collect();
    format!(
        "{}.{}.{}",
        parts[0],
        b64(&serde_json::to_vec(payload).unwrap()),
        parts[2]
    )
}
