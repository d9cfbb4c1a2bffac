//! DPoP proofs: round trips for every key kind, and one test per refusal.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use attest_gate_relying_party::dpop::{
    access_token_hash, make_proof, normalize_htu, verify_proof, DpopError, MakeProofError,
    ProofClaims, ProofExpectations, ReplayCache, ReplayError, MAX_JTI_LEN,
};
use common::{b64, decode, tamper_signature, Agent, NOW};
use serde_json::json;

const HTU: &str = "https://rp.example/hello";
const TOKEN: &str = "header.payload.signature";

fn expect_for(agent: &Agent) -> (String, ProofExpectations<'static>) {
    let mut expect = ProofExpectations::new("GET", HTU);
    expect.access_token = Some(TOKEN);
    (agent.jkt(), expect)
}

fn good_proof(agent: &Agent) -> String {
    agent.proof("GET", HTU, Some(TOKEN), None, NOW, "jti-1")
}

#[test]
fn round_trip_for_every_key_kind() {
    for (agent, alg) in [
        (Agent::p256(), "ES256"),
        (Agent::p384(), "ES384"),
        (Agent::ed25519(), "EdDSA"),
    ] {
        let proof = good_proof(&agent);
        let (header, claims) = decode(&proof);
        assert_eq!(header["typ"], "dpop+jwt");
        assert_eq!(header["alg"], alg);
        assert_eq!(header["jwk"], agent.public().to_jwk());
        assert_eq!(claims["ath"], access_token_hash(TOKEN));
        assert_eq!(claims["htu"], HTU);
        assert!(claims.get("nonce").is_none());

        let (jkt, mut expect) = expect_for(&agent);
        expect.jkt = Some(&jkt);
        let verified = verify_proof(&proof, &expect, NOW + 30).unwrap();
        assert_eq!(verified.jkt, jkt);
        assert_eq!(verified.jti, "jti-1");
        assert_eq!(verified.iat, NOW);
    }
}

#[test]
fn a_proof_without_token_verifies_where_none_is_expected() {
    let agent = Agent::p256();
    let proof = agent.proof("POST", HTU, None, None, NOW, "j");
    assert!(decode(&proof).1.get("ath").is_none());
    verify_proof(&proof, &ProofExpectations::new("POST", HTU), NOW).unwrap();
    // ...but not where a token is presented with it.
    let (_, expect) = expect_for(&agent);
    let expect = ProofExpectations {
        htm: "POST",
        ..expect
    };
    assert_eq!(
        verify_proof(&proof, &expect, NOW),
        Err(DpopError::AccessTokenHash)
    );
}

#[test]
fn make_proof_refuses_a_signer_with_another_key_and_bad_claims() {
    let agent = Agent::p256();
    let other = Agent::p256();
    let claims = ProofClaims {
        htm: "GET",
        htu: HTU,
        access_token: None,
        nonce: None,
        iat: NOW,
        jti: "j",
    };
    assert!(matches!(
        make_proof(&agent.public(), &claims, |m| other.sign(m)),
        Err(MakeProofError::Signature)
    ));
    assert!(matches!(
        make_proof(&agent.public(), &claims, |_| Err("hsm offline")),
        Err(MakeProofError::Sign("hsm offline"))
    ));
    for bad in [
        ProofClaims { jti: "", ..claims },
        ProofClaims {
            jti: &"j".repeat(MAX_JTI_LEN + 1),
            ..claims
        },
        ProofClaims {
            htu: "/relative",
            ..claims
        },
    ] {
        assert!(matches!(
            make_proof(&agent.public(), &bad, |m| agent.sign(m)),
            Err(MakeProofError::Claims(_))
        ));
    }
}

#[test]
fn htu_comparison_ignores_query_fragment_case_and_default_port() {
    let agent = Agent::p256();
    let proof = agent.proof(
        "GET",
        "https://RP.Example:443/hello?x=1#f",
        None,
        None,
        NOW,
        "j",
    );
    assert_eq!(decode(&proof).1["htu"], "https://rp.example/hello");
    for same in [
        "https://rp.example/hello",
        "HTTPS://rp.EXAMPLE:443/hello?other=2",
        "https://rp.example/./hello#frag",
    ] {
        verify_proof(&proof, &ProofExpectations::new("GET", same), NOW).unwrap();
    }
    for different in [
        "http://rp.example/hello",
        "https://rp.example:8443/hello",
        "https://rp.example/Hello",
        "https://rp.example/hello/",
        "https://other.example/hello",
        "not a url",
    ] {
        assert_eq!(
            verify_proof(&proof, &ProofExpectations::new("GET", different), NOW),
            Err(DpopError::Uri),
            "{different}"
        );
    }
    assert_eq!(normalize_htu("https://user:pw@rp.example/"), None);
    assert_eq!(normalize_htu("ftp://rp.example/"), None);
    assert_eq!(
        normalize_htu("http://rp.example").as_deref(),
        Some("http://rp.example/")
    );
}

#[test]
fn wrong_method_is_refused_case_sensitively() {
    let agent = Agent::p256();
    let proof = good_proof(&agent);
    let (_, expect) = expect_for(&agent);
    for htm in ["POST", "get"] {
        let expect = ProofExpectations { htm, ..expect };
        assert_eq!(verify_proof(&proof, &expect, NOW), Err(DpopError::Method));
    }
}

#[test]
fn wrong_htu_is_refused() {
    let agent = Agent::p256();
    let proof = good_proof(&agent);
    let (_, expect) = expect_for(&agent);
    let expect = ProofExpectations {
        htu: "https://rp.example/other",
        ..expect
    };
    assert_eq!(verify_proof(&proof, &expect, NOW), Err(DpopError::Uri));
}

#[test]
fn stale_and_future_iat_are_refused_at_the_window_edge() {
    let agent = Agent::p256();
    let proof = good_proof(&agent);
    let (_, expect) = expect_for(&agent);
    verify_proof(&proof, &expect, NOW + 60).unwrap();
    verify_proof(&proof, &expect, NOW - 60).unwrap();
    assert_eq!(verify_proof(&proof, &expect, NOW + 61), Err(DpopError::Iat));
    assert_eq!(verify_proof(&proof, &expect, NOW - 61), Err(DpopError::Iat));
    let narrow = ProofExpectations {
        iat_window_seconds: 5,
        ..expect
    };
    assert_eq!(verify_proof(&proof, &narrow, NOW + 6), Err(DpopError::Iat));
    // Extreme clocks neither overflow nor pass.
    assert_eq!(verify_proof(&proof, &expect, i64::MAX), Err(DpopError::Iat));
    assert_eq!(verify_proof(&proof, &expect, i64::MIN), Err(DpopError::Iat));
}

#[test]
fn a_non_integer_iat_is_refused() {
    let agent = Agent::p256();
    let (_, expect) = expect_for(&agent);
    for iat in [json!(1.7e9), json!("1700000000"), json!(null)] {
        let proof = agent.sign_raw(
            &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": agent.public().to_jwk()}),
            &json!({"jti": "j", "htm": "GET", "htu": HTU, "iat": iat, "ath": access_token_hash(TOKEN)}),
        );
        assert_eq!(verify_proof(&proof, &expect, NOW), Err(DpopError::Iat));
    }
}

#[test]
fn wrong_ath_is_refused() {
    let agent = Agent::p256();
    let proof = agent.proof("GET", HTU, Some("another.token.value"), None, NOW, "j");
    let (_, expect) = expect_for(&agent);
    assert_eq!(
        verify_proof(&proof, &expect, NOW),
        Err(DpopError::AccessTokenHash)
    );
}

#[test]
fn wrong_jkt_is_refused() {
    let agent = Agent::p256();
    let other = Agent::p256();
    let proof = good_proof(&agent);
    let (_, mut expect) = expect_for(&agent);
    let other_jkt = other.jkt();
    expect.jkt = Some(&other_jkt);
    assert_eq!(
        verify_proof(&proof, &expect, NOW),
        Err(DpopError::KeyMismatch)
    );
}

#[test]
fn missing_or_rejected_nonce_asks_for_a_nonce() {
    let agent = Agent::p256();
    let (_, mut expect) = expect_for(&agent);
    let current = |n: &str| n == "server-nonce-1";
    expect.nonce = Some(&current);

    let without = good_proof(&agent);
    let err = verify_proof(&without, &expect, NOW).unwrap_err();
    assert_eq!(err, DpopError::UseNonce);
    assert_eq!(err.code(), "use_dpop_nonce");

    let old = agent.proof("GET", HTU, Some(TOKEN), Some("server-nonce-0"), NOW, "j");
    assert_eq!(verify_proof(&old, &expect, NOW), Err(DpopError::UseNonce));

    let fresh = agent.proof("GET", HTU, Some(TOKEN), Some("server-nonce-1"), NOW, "j");
    verify_proof(&fresh, &expect, NOW).unwrap();
}

#[test]
fn typ_other_than_dpop_jwt_is_refused() {
    let agent = Agent::p256();
    let (_, expect) = expect_for(&agent);
    let payload = decode(&good_proof(&agent)).1;
    for typ in [
        json!("at+jwt"),
        json!("JWT"),
        json!("DPOP+JWT"),
        json!(null),
    ] {
        let proof = agent.sign_raw(
            &json!({"typ": typ, "alg": "ES256", "jwk": agent.public().to_jwk()}),
            &payload,
        );
        let err = verify_proof(&proof, &expect, NOW).unwrap_err();
        assert_eq!(err, DpopError::Type, "{typ}");
        assert_eq!(err.code(), "invalid_dpop_proof");
    }
}

#[test]
fn alg_none_and_mismatched_alg_are_refused() {
    let agent = Agent::p256();
    let (_, expect) = expect_for(&agent);
    let payload = decode(&good_proof(&agent)).1;
    let jwk = agent.public().to_jwk();
    let header = |alg: &str| json!({"typ": "dpop+jwt", "alg": alg, "jwk": jwk});
    let unsigned = format!(
        "{}.{}.",
        b64(&serde_json::to_vec(&header("none")).unwrap()),
        b64(&serde_json::to_vec(&payload).unwrap())
    );
    assert_eq!(
        verify_proof(&unsigned, &expect, NOW),
        Err(DpopError::Algorithm)
    );
    for alg in ["none", "ES384", "EdDSA", "HS256", "RS256"] {
        let proof = agent.sign_raw(&header(alg), &payload);
        assert_eq!(
            verify_proof(&proof, &expect, NOW),
            Err(DpopError::Algorithm),
            "{alg}"
        );
    }
}

#[test]
fn a_private_key_in_the_jwk_is_refused() {
    let agent = Agent::p256();
    let (_, expect) = expect_for(&agent);
    let payload = decode(&good_proof(&agent)).1;
    let mut jwk = agent.public().to_jwk();
    jwk["d"] = json!(b64(&[7u8; 32]));
    let proof = agent.sign_raw(
        &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}),
        &payload,
    );
    assert_eq!(
        verify_proof(&proof, &expect, NOW),
        Err(DpopError::PrivateKey)
    );
}

#[test]
fn missing_or_off_curve_jwk_is_refused() {
    let agent = Agent::p256();
    let (_, expect) = expect_for(&agent);
    let payload = decode(&good_proof(&agent)).1;
    let one = b64(&[1u8; 32]);
    for header in [
        json!({"typ": "dpop+jwt", "alg": "ES256"}),
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": {"kty": "EC", "crv": "P-256", "x": one, "y": one}}),
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": "not an object"}),
    ] {
        let proof = agent.sign_raw(&header, &payload);
        assert_eq!(verify_proof(&proof, &expect, NOW), Err(DpopError::Jwk));
    }
}

#[test]
fn tampered_signature_claims_and_other_keys_signature_are_refused() {
    let agent = Agent::p256();
    let (_, expect) = expect_for(&agent);
    let proof = good_proof(&agent);
    assert_eq!(
        verify_proof(&tamper_signature(&proof), &expect, NOW),
        Err(DpopError::Signature)
    );
    let mut payload = decode(&proof).1;
    payload["htu"] = json!("https://rp.example/admin");
    assert_eq!(
        verify_proof(&common::replace_payload(&proof, &payload), &expect, NOW),
        Err(DpopError::Signature)
    );
    // The header names this key, but another key signed.
    let other = Agent::p256();
    let forged = other.sign_raw(&decode(&proof).0, &decode(&proof).1);
    assert_eq!(
        verify_proof(&forged, &expect, NOW),
        Err(DpopError::Signature)
    );
}

#[test]
fn jti_is_required_and_bounded() {
    let agent = Agent::p256();
    let (_, expect) = expect_for(&agent);
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": agent.public().to_jwk()});
    for jti in [
        json!(null),
        json!(""),
        json!(7),
        json!("j".repeat(MAX_JTI_LEN + 1)),
    ] {
        let proof = agent.sign_raw(
            &header,
            &json!({"jti": jti, "htm": "GET", "htu": HTU, "iat": NOW, "ath": access_token_hash(TOKEN)}),
        );
        assert_eq!(verify_proof(&proof, &expect, NOW), Err(DpopError::Jti));
    }
}

#[test]
fn malformed_input_is_refused_without_panicking() {
    let agent = Agent::p256();
    let (_, expect) = expect_for(&agent);
    let proof = good_proof(&agent);
    let huge = "a".repeat(9000);
    let with_crit = agent.sign_raw(
        &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": agent.public().to_jwk(), "crit": ["x"]}),
        &decode(&proof).1,
    );
    for bad in [
        "",
        ".",
        "..",
        "a.b.c.d",
        "e30.e30.",
        "!!!.e30.e30",
        &format!("{proof}="),
        &format!("{proof}.x"),
        &huge,
        &with_crit,
    ] {
        assert!(
            matches!(
                verify_proof(bad, &expect, NOW),
                Err(DpopError::Malformed(_) | DpopError::Type)
            ),
            "{bad:.40}"
        );
    }
    // Every truncation fails cleanly.
    for end in 0..proof.len() {
        assert!(verify_proof(&proof[..end], &expect, NOW).is_err());
    }
}

#[test]
fn replayed_jti_is_refused_until_it_expires() {
    let cache = ReplayCache::new(10);
    assert!(cache.check_and_insert("a", NOW + 60, NOW));
    assert!(!cache.check_and_insert("a", NOW + 60, NOW + 1));
    assert_eq!(
        cache.insert("a", NOW + 60, NOW + 60),
        Err(ReplayError::Replayed)
    );
    // Past its expiry the entry is gone, and the jti may be recorded again
    // (its old proof would fail the iat window anyway).
    assert!(cache.check_and_insert("a", NOW + 200, NOW + 61));
    assert_eq!(cache.len(), 1);
}

#[test]
fn a_full_cache_evicts_expired_entries_then_fails_closed() {
    let cache = ReplayCache::new(3);
    assert!(cache.check_and_insert("a", NOW + 10, NOW));
    assert!(cache.check_and_insert("b", NOW + 20, NOW));
    assert!(cache.check_and_insert("c", NOW + 30, NOW));
    // Full of live entries: refused, not recorded, nothing evicted.
    assert_eq!(cache.insert("d", NOW + 40, NOW + 5), Err(ReplayError::Full));
    assert!(!cache.check_and_insert("d", NOW + 40, NOW + 5));
    assert_eq!(
        cache.insert("a", NOW + 10, NOW + 5),
        Err(ReplayError::Replayed)
    );
    // Once "a" has expired it makes room.
    assert!(cache.check_and_insert("d", NOW + 40, NOW + 11));
    assert_eq!(
        cache.insert("b", NOW + 20, NOW + 11),
        Err(ReplayError::Replayed)
    );
    assert_eq!(cache.len(), 3);
    let empty = ReplayCache::new(0);
    assert!(empty.is_empty());
    assert_eq!(empty.insert("x", NOW, NOW), Err(ReplayError::Full));
}
