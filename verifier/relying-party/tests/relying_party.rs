//! `RelyingParty::authorize`: the whole decision for one request, and the
//! stolen-token cases it exists for.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use attest_gate_relying_party::{
    AuthError, DpopError, RelyingParty, ReplayCache, Request, RevocationList, RevocationSet,
    TokenError, Validator,
};
use common::{token_claims, Agent, Issuer, AUDIENCE, ISSUER, NOW};
use serde_json::json;

const URL: &str = "http://127.0.0.1:8080/hello";

struct World {
    issuer: Issuer,
    agent: Agent,
    token: String,
    rp: RelyingParty,
    revocations: RevocationSet,
    replay: ReplayCache,
}

/// A set refreshed at `iat` with an empty (complete) list.
fn fresh_set(iat: i64) -> RevocationSet {
    let mut set = RevocationSet::new();
    set.apply(empty_list(iat, false)).unwrap();
    set
}

fn empty_list(iat: i64, more: bool) -> RevocationList {
    serde_json::from_value(
        json!({"iss": ISSUER, "iat": iat, "since": 0, "cursor": iat, "more": more, "entries": []}),
    )
    .unwrap()
}

impl World {
    fn new() -> Self {
        let issuer = Issuer::new();
        let agent = Agent::p256();
        let token = issuer.sign("at+jwt", &token_claims(&agent.jkt(), "tok-jti"));
        Self {
            issuer,
            agent,
            token,
            rp: RelyingParty::new(Validator::new(ISSUER, AUDIENCE)),
            revocations: fresh_set(NOW),
            replay: ReplayCache::new(100),
        }
    }

    fn proof(&self, jti: &str) -> String {
        self.agent
            .proof("GET", URL, Some(&self.token), None, NOW, jti)
    }

    fn authorize(
        &self,
        authorization: Option<&str>,
        dpop: Option<&str>,
        scope: &str,
    ) -> Result<attest_gate_relying_party::Authorized, AuthError> {
        let request = Request {
            authorization,
            dpop,
            method: "GET",
            url: URL,
            required_scope: Some(scope),
            nonce: None,
            now: NOW + 1,
        };
        self.rp.authorize(
            &request,
            &self.issuer.jwks(),
            &self.revocations,
            &self.replay,
        )
    }

    fn dpop_header(&self) -> String {
        format!("DPoP {}", self.token)
    }
}

#[test]
fn a_bound_token_with_its_proof_is_authorized_once() {
    let w = World::new();
    let proof = w.proof("p1");
    let ok = w
        .authorize(Some(&w.dpop_header()), Some(&proof), "inference:invoke")
        .unwrap();
    assert!(!ok.quarantined);
    assert_eq!(ok.token.jti, "tok-jti");
    // The scheme is case-insensitive.
    let lower = format!("dpop {}", w.token);
    w.authorize(Some(&lower), Some(&w.proof("p2")), "inference:invoke")
        .unwrap();
    // The same proof again is a replay.
    let err = w
        .authorize(Some(&w.dpop_header()), Some(&proof), "inference:invoke")
        .unwrap_err();
    assert_eq!(err, AuthError::ProofReplayed);
    assert_eq!(err.code(), "invalid_dpop_proof");
}

#[test]
fn a_stolen_token_without_a_proof_is_refused() {
    let w = World::new();
    let err = w
        .authorize(Some(&w.dpop_header()), None, "inference:invoke")
        .unwrap_err();
    assert_eq!(err, AuthError::MissingProof);
    assert_eq!((err.code(), err.http_status()), ("invalid_dpop_proof", 401));
}

#[test]
fn a_stolen_token_with_a_proof_from_another_key_is_refused() {
    let w = World::new();
    let thief = Agent::p256();
    let proof = thief.proof("GET", URL, Some(&w.token), None, NOW, "p1");
    let err = w
        .authorize(Some(&w.dpop_header()), Some(&proof), "inference:invoke")
        .unwrap_err();
    assert_eq!(err, AuthError::InvalidProof(DpopError::KeyMismatch));
    assert_eq!(err.code(), "invalid_dpop_proof");
}

#[test]
fn a_stolen_token_presented_as_bearer_is_refused() {
    let w = World::new();
    let bearer = format!("Bearer {}", w.token);
    for dpop in [None, Some(w.proof("p1"))] {
        let err = w
            .authorize(Some(&bearer), dpop.as_deref(), "inference:invoke")
            .unwrap_err();
        assert_eq!(err, AuthError::WrongScheme);
        assert_eq!((err.code(), err.http_status()), ("invalid_token", 401));
    }
}

#[test]
fn a_proof_for_another_token_or_request_is_refused() {
    let w = World::new();
    let other_token = w
        .issuer
        .sign("at+jwt", &token_claims(&w.agent.jkt(), "other-jti"));
    let proof_for_other = w
        .agent
        .proof("GET", URL, Some(&other_token), None, NOW, "p1");
    assert_eq!(
        w.authorize(
            Some(&w.dpop_header()),
            Some(&proof_for_other),
            "inference:invoke"
        ),
        Err(AuthError::InvalidProof(DpopError::AccessTokenHash))
    );
    let for_post = w.agent.proof("POST", URL, Some(&w.token), None, NOW, "p2");
    assert_eq!(
        w.authorize(Some(&w.dpop_header()), Some(&for_post), "inference:invoke"),
        Err(AuthError::InvalidProof(DpopError::Method))
    );
}

#[test]
fn missing_or_invalid_tokens_and_scopes_are_refused() {
    let w = World::new();
    let proof = w.proof("p1");
    for header in [None, Some(""), Some("DPoP"), Some("DPoP   ")] {
        assert_eq!(
            w.authorize(header, Some(&proof), "inference:invoke"),
            Err(AuthError::MissingToken)
        );
    }
    assert_eq!(
        w.authorize(Some("Basic dXNlcjpwdw=="), Some(&proof), "inference:invoke"),
        Err(AuthError::WrongScheme)
    );
    let err = w
        .authorize(Some("DPoP not.a.token"), Some(&proof), "inference:invoke")
        .unwrap_err();
    assert!(matches!(
        err,
        AuthError::InvalidToken(TokenError::Malformed(_))
    ));
    assert_eq!(err.code(), "invalid_token");

    let err = w
        .authorize(Some(&w.dpop_header()), Some(&proof), "admin:all")
        .unwrap_err();
    assert_eq!(
        err,
        AuthError::InsufficientScope {
            required: "admin:all".into()
        }
    );
    assert_eq!((err.code(), err.http_status()), ("insufficient_scope", 403));
}

#[test]
fn revoked_tokens_are_refused_and_quarantined_ones_flagged() {
    let mut w = World::new();
    let quarantine = json!({"iss": ISSUER, "iat": NOW, "since": 0, "cursor": NOW, "entries": [
        {"id": "q", "kind": "workload", "target": "example-snp-agent", "mode": "quarantine",
         "reason": "under investigation", "revoked_at": NOW - 1, "updated_at": NOW - 1,
         "lifted": false, "cascade_from": null}
    ]});
    let jws = w.issuer.sign("revocation-list+jwt", &quarantine);
    let list = RevocationList::verify(&jws, &w.issuer.jwks(), ISSUER).unwrap();
    w.revocations.apply(list).unwrap();
    let ok = w
        .authorize(
            Some(&w.dpop_header()),
            Some(&w.proof("p1")),
            "inference:invoke",
        )
        .unwrap();
    assert!(ok.quarantined);

    let revoke = json!({"iss": ISSUER, "iat": NOW, "since": NOW, "cursor": NOW, "entries": [
        {"id": "r", "kind": "jti", "target": "tok-jti", "mode": "immediate",
         "reason": "key compromised", "revoked_at": NOW, "updated_at": NOW,
         "lifted": false, "cascade_from": null}
    ]});
    let jws = w.issuer.sign("revocation-list+jwt", &revoke);
    let list = RevocationList::verify(&jws, &w.issuer.jwks(), ISSUER).unwrap();
    w.revocations.apply(list).unwrap();
    let err = w
        .authorize(
            Some(&w.dpop_header()),
            Some(&w.proof("p2")),
            "inference:invoke",
        )
        .unwrap_err();
    assert_eq!(
        err,
        AuthError::Revoked {
            reason: "key compromised".into()
        }
    );
    assert_eq!((err.code(), err.http_status()), ("token_revoked", 401));
}

#[test]
fn a_full_replay_cache_refuses_requests() {
    let mut w = World::new();
    w.replay = ReplayCache::new(1);
    w.authorize(
        Some(&w.dpop_header()),
        Some(&w.proof("p1")),
        "inference:invoke",
    )
    .unwrap();
    let err = w
        .authorize(
            Some(&w.dpop_header()),
            Some(&w.proof("p2")),
            "inference:invoke",
        )
        .unwrap_err();
    assert_eq!(err, AuthError::ReplayCacheFull);
    assert_eq!(
        (err.code(), err.http_status()),
        ("temporarily_unavailable", 503)
    );
}

#[test]
fn a_nonce_requirement_surfaces_as_use_dpop_nonce() {
    let w = World::new();
    let accept = |n: &str| n == "n-1";
    let proof = w.proof("p1");
    let header = w.dpop_header();
    let request = Request {
        authorization: Some(&header),
        dpop: Some(&proof),
        method: "GET",
        url: URL,
        required_scope: None,
        nonce: Some(&accept),
        now: NOW,
    };
    let err =
        w.rp.authorize(&request, &w.issuer.jwks(), &w.revocations, &w.replay)
            .unwrap_err();
    assert_eq!(err.code(), "use_dpop_nonce");
    assert!(w.replay.is_empty(), "a refused proof is not recorded");
}

#[test]
fn a_stale_or_never_refreshed_revocation_list_refuses_every_token() {
    let mut w = World::new();
    // Never refreshed: fail closed.
    w.revocations = RevocationSet::new();
    let err = w
        .authorize(
            Some(&w.dpop_header()),
            Some(&w.proof("s1")),
            "inference:invoke",
        )
        .unwrap_err();
    assert_eq!(
        err,
        AuthError::RevocationListStale {
            last_refreshed: None,
            max_age_seconds: 300
        }
    );
    assert_eq!(
        (err.code(), err.http_status()),
        ("temporarily_unavailable", 503)
    );

    // Refreshed 301 s before the request (now is NOW + 1): too old.
    w.revocations = fresh_set(NOW - 300);
    let err = w
        .authorize(
            Some(&w.dpop_header()),
            Some(&w.proof("s2")),
            "inference:invoke",
        )
        .unwrap_err();
    assert!(
        matches!(err, AuthError::RevocationListStale { last_refreshed: Some(t), .. } if t == NOW - 300),
        "{err:?}"
    );

    // A page with more to come does not make the set current.
    w.revocations = fresh_set(NOW - 300);
    w.revocations.apply(empty_list(NOW, true)).unwrap();
    assert_eq!(w.revocations.refreshed_at(), Some(NOW - 300));
    assert!(w
        .authorize(
            Some(&w.dpop_header()),
            Some(&w.proof("s3")),
            "inference:invoke"
        )
        .is_err());

    // Exactly at the maximum age it is still accepted; the maximum is the RP's to set.
    w.revocations = fresh_set(NOW + 1 - 300);
    w.authorize(
        Some(&w.dpop_header()),
        Some(&w.proof("s4")),
        "inference:invoke",
    )
    .unwrap();
    // A list dated well ahead of the RP's clock would never grow stale.
    w.revocations = fresh_set(NOW + 3600);
    assert!(w
        .authorize(
            Some(&w.dpop_header()),
            Some(&w.proof("s6")),
            "inference:invoke"
        )
        .is_err());
    w.revocations = fresh_set(NOW + 30);
    w.authorize(
        Some(&w.dpop_header()),
        Some(&w.proof("s7")),
        "inference:invoke",
    )
    .unwrap();
    w.revocations = fresh_set(NOW + 1 - 300);
    w.rp.max_revocation_age_seconds = 10;
    let err = w
        .authorize(
            Some(&w.dpop_header()),
            Some(&w.proof("s5")),
            "inference:invoke",
        )
        .unwrap_err();
    assert_eq!(err.code(), "temporarily_unavailable");
}
