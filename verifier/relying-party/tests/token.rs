//! Access-token validation and JWKS parsing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use attest_gate_relying_party::token::{Jwks, TokenError, Validator, MAX_TOKEN_LEN};
use common::{b64, replace_payload, tamper_signature, token_claims, Issuer, AUDIENCE, ISSUER, NOW};
use serde_json::json;

fn validator() -> Validator {
    Validator::new(ISSUER, AUDIENCE)
}

#[test]
fn a_valid_token_decodes_into_typed_claims() {
    let issuer = Issuer::new();
    let claims = token_claims("the-jkt", "jti-1");
    let token = issuer.sign("at+jwt", &claims);
    let parsed = validator()
        .validate(&issuer.jwks(), &token, NOW + 10)
        .unwrap();
    assert_eq!(parsed.iss, ISSUER);
    assert_eq!(parsed.aud, [AUDIENCE]);
    assert_eq!(parsed.jti, "jti-1");
    assert_eq!(parsed.cnf.jkt, "the-jkt");
    assert_eq!(parsed.client_id, "example-snp-agent");
    assert_eq!(parsed.act_for, "user:alice");
    assert_eq!(parsed.session.id, "session-1");
    assert_eq!(parsed.session.parent, None);
    assert_eq!(parsed.provenance.tee, "snp");
    assert_eq!(
        parsed.provenance.measurements["measurement"],
        "ab".repeat(48)
    );
    assert!(parsed.provenance.test_root);
    assert_eq!(parsed.nbf, Some(NOW));
    assert_eq!(parsed.act, None);
    assert!(parsed.has_scope("inference:invoke"));
    assert!(parsed.has_scope("tools:search"));
    assert!(!parsed.has_scope("inference"));
    assert!(!parsed.has_scope(""));
    assert_eq!(parsed.claims, claims);
    assert_eq!(parsed.claims["intent"]["task_id"], "task-42");
}

#[test]
fn an_audience_array_and_an_act_claim_are_read() {
    let issuer = Issuer::new();
    let mut claims = token_claims("k", "j");
    claims["aud"] = json!(["https://other.test", AUDIENCE]);
    claims["act"] = json!({"sub": "spiffe://attest-gate.test/parent", "act": {"sub": "root"}});
    claims["session"]["parent"] = json!("parent-jti");
    let token = issuer.sign("at+jwt", &claims);
    let parsed = validator().validate(&issuer.jwks(), &token, NOW).unwrap();
    assert_eq!(parsed.aud.len(), 2);
    assert_eq!(parsed.act.unwrap().act.unwrap().sub, "root");
    assert_eq!(parsed.session.parent.as_deref(), Some("parent-jti"));
}

#[test]
fn expired_and_not_yet_valid_tokens_are_refused_outside_the_leeway() {
    let issuer = Issuer::new();
    let token = issuer.sign("at+jwt", &token_claims("k", "j"));
    let v = validator();
    let jwks = issuer.jwks();
    // exp = NOW + 300, leeway 30.
    v.validate(&jwks, &token, NOW + 329).unwrap();
    assert_eq!(
        v.validate(&jwks, &token, NOW + 330),
        Err(TokenError::Expired)
    );
    // nbf = NOW.
    v.validate(&jwks, &token, NOW - 30).unwrap();
    assert_eq!(
        v.validate(&jwks, &token, NOW - 31),
        Err(TokenError::NotYetValid)
    );
    let strict = Validator {
        leeway_seconds: 0,
        ..validator()
    };
    assert_eq!(
        strict.validate(&jwks, &token, NOW + 300),
        Err(TokenError::Expired)
    );
    assert_eq!(
        v.validate(&jwks, &token, i64::MAX),
        Err(TokenError::Expired)
    );
    assert_eq!(
        v.validate(&jwks, &token, i64::MIN),
        Err(TokenError::NotYetValid)
    );
}

#[test]
fn wrong_audience_is_refused() {
    let issuer = Issuer::new();
    let token = issuer.sign("at+jwt", &token_claims("k", "j"));
    let v = Validator::new(ISSUER, "https://another-rp.test");
    let err = v.validate(&issuer.jwks(), &token, NOW).unwrap_err();
    assert_eq!(err, TokenError::Audience);
    assert_eq!(err.code(), "invalid_token");
}

#[test]
fn wrong_issuer_is_refused() {
    let issuer = Issuer::new();
    let token = issuer.sign("at+jwt", &token_claims("k", "j"));
    let v = Validator::new("https://127.0.0.1:9999", AUDIENCE);
    assert_eq!(
        v.validate(&issuer.jwks(), &token, NOW),
        Err(TokenError::Issuer)
    );
}

#[test]
fn unknown_kid_is_refused() {
    let issuer = Issuer::new();
    let other = Issuer::new();
    let token = other.sign("at+jwt", &token_claims("k", "j"));
    let jwks = issuer.jwks();
    assert!(!jwks.contains(&other.kid));
    assert_eq!(
        validator().validate(&jwks, &token, NOW),
        Err(TokenError::UnknownKid)
    );
    // A token that names the known kid but was signed by another key.
    let forged = other.sign_with_header(
        &json!({"alg": "ES256", "typ": "at+jwt", "kid": issuer.kid}),
        &token_claims("k", "j"),
    );
    assert_eq!(
        validator().validate(&jwks, &forged, NOW),
        Err(TokenError::Signature)
    );
    let no_kid = issuer.sign_with_header(
        &json!({"alg": "ES256", "typ": "at+jwt"}),
        &token_claims("k", "j"),
    );
    assert_eq!(
        validator().validate(&jwks, &no_kid, NOW),
        Err(TokenError::UnknownKid)
    );
}

#[test]
fn wrong_typ_or_alg_is_refused() {
    let issuer = Issuer::new();
    let jwks = issuer.jwks();
    let claims = token_claims("k", "j");
    for typ in ["dpop+jwt", "revocation-list+jwt", "JWT", "AT+JWT"] {
        let token = issuer.sign(typ, &claims);
        assert_eq!(
            validator().validate(&jwks, &token, NOW),
            Err(TokenError::Type),
            "{typ}"
        );
    }
    let long_form = issuer.sign("application/at+jwt", &claims);
    validator().validate(&jwks, &long_form, NOW).unwrap();
    let no_typ = issuer.sign_with_header(&json!({"alg": "ES256", "kid": issuer.kid}), &claims);
    assert_eq!(
        validator().validate(&jwks, &no_typ, NOW),
        Err(TokenError::Type)
    );
    for alg in ["none", "HS256", "ES384"] {
        let token = issuer.sign_with_header(
            &json!({"alg": alg, "typ": "at+jwt", "kid": issuer.kid}),
            &claims,
        );
        assert_eq!(
            validator().validate(&jwks, &token, NOW),
            Err(TokenError::Algorithm),
            "{alg}"
        );
    }
}

#[test]
fn tampered_tokens_are_refused() {
    let issuer = Issuer::new();
    let jwks = issuer.jwks();
    let token = issuer.sign("at+jwt", &token_claims("k", "j"));
    assert_eq!(
        validator().validate(&jwks, &tamper_signature(&token), NOW),
        Err(TokenError::Signature)
    );
    let mut claims = token_claims("k", "j");
    claims["scope"] = json!("admin:everything");
    assert_eq!(
        validator().validate(&jwks, &replace_payload(&token, &claims), NOW),
        Err(TokenError::Signature)
    );
    for end in 0..token.len() {
        assert!(validator().validate(&jwks, &token[..end], NOW).is_err());
    }
    let huge = format!("{token}{}", "A".repeat(MAX_TOKEN_LEN));
    assert!(matches!(
        validator().validate(&jwks, &huge, NOW),
        Err(TokenError::Malformed(_))
    ));
}

#[test]
fn signed_tokens_missing_claims_are_refused() {
    let issuer = Issuer::new();
    let jwks = issuer.jwks();
    for missing in ["cnf", "session", "provenance", "jti", "exp", "sub"] {
        let mut claims = token_claims("k", "j");
        claims.as_object_mut().unwrap().remove(missing);
        let token = issuer.sign("at+jwt", &claims);
        assert!(
            matches!(
                validator().validate(&jwks, &token, NOW),
                Err(TokenError::Claims(_))
            ),
            "{missing}"
        );
    }
    let mut claims = token_claims("", "j");
    claims["exp"] = json!(NOW + 10);
    let token = issuer.sign("at+jwt", &claims);
    assert!(matches!(
        validator().validate(&jwks, &token, NOW),
        Err(TokenError::Claims(_))
    ));
    // Correctly signed under a valid header, so the JSON check is what refuses.
    let not_json = issuer.sign_payload(
        &json!({"alg": "ES256", "typ": "at+jwt", "kid": issuer.kid}),
        b"[1,2",
    );
    assert_eq!(
        validator().validate(&jwks, &not_json, NOW),
        Err(TokenError::Malformed("claims are not JSON"))
    );
}

#[test]
fn jwks_skips_foreign_keys_and_refuses_broken_documents() {
    let issuer = Issuer::new();
    let good = issuer.public_jwk();
    let rsa = json!({"kty": "RSA", "kid": "r", "n": "AQAB", "e": "AQAB"});
    let p384_marked = json!({"kty": "EC", "crv": "P-256", "kid": "x", "alg": "ES384", "x": good["x"], "y": good["y"]});
    let enc = json!({"kty": "EC", "crv": "P-256", "kid": "e", "use": "enc", "x": good["x"], "y": good["y"]});
    let no_kid = json!({"kty": "EC", "crv": "P-256", "x": good["x"], "y": good["y"]});
    let jwks = Jwks::from_json(&json!({"keys": [rsa, p384_marked, enc, no_kid, good]})).unwrap();
    assert_eq!(jwks.len(), 1);
    assert!(jwks.contains(&issuer.kid));

    let mut private = good.clone();
    private["d"] = json!(b64(&[1u8; 32]));
    let one = b64(&[1u8; 32]);
    let off_curve = json!({"kty": "EC", "crv": "P-256", "kid": "z", "x": one, "y": one});
    for bad in [
        json!({}),
        json!({"keys": "no"}),
        json!({"keys": []}),
        json!({"keys": [rsa]}),
        json!({"keys": [private]}),
        json!({"keys": [off_curve]}),
        json!({"keys": [good, good]}),
        json!({"keys": vec![rsa; 65]}),
    ] {
        assert!(Jwks::from_json(&bad).is_err(), "{bad:.80}");
    }
}
