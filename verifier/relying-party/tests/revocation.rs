//! Revocation lists: verification, merging, and the matching rules.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use attest_gate_relying_party::revocation::{
    RevocationError, RevocationKind, RevocationList, RevocationMode, RevocationSet, Status,
};
use attest_gate_relying_party::{AccessToken, Validator};
use common::{tamper_signature, token_claims, Issuer, AUDIENCE, ISSUER, NOW};
use serde_json::{json, Value};

fn entry(id: &str, kind: &str, target: &str, mode: &str, revoked_at: i64) -> Value {
    json!({
        "id": id, "kind": kind, "target": target, "mode": mode,
        "reason": format!("reason {id}"), "revoked_at": revoked_at,
        "updated_at": revoked_at, "lifted": false, "cascade_from": null
    })
}

fn list_json(since: i64, cursor: i64, entries: Vec<Value>) -> Value {
    json!({"iss": ISSUER, "iat": cursor, "since": since, "cursor": cursor, "entries": entries})
}

fn list(since: i64, cursor: i64, entries: Vec<Value>) -> RevocationList {
    serde_json::from_value(list_json(since, cursor, entries)).unwrap()
}

fn token_with(edit: impl FnOnce(&mut Value)) -> AccessToken {
    let issuer = Issuer::new();
    let mut claims = token_claims("k", "tok-jti");
    edit(&mut claims);
    let jwt = issuer.sign("at+jwt", &claims);
    Validator::new(ISSUER, AUDIENCE)
        .validate(&issuer.jwks(), &jwt, NOW)
        .unwrap()
}

fn token() -> AccessToken {
    token_with(|_| {})
}

fn status_with(entries: Vec<Value>, token: &AccessToken) -> Status {
    let mut set = RevocationSet::new();
    set.apply(list(0, NOW, entries)).unwrap();
    set.status(token)
}

fn revoked(id: &str) -> Status {
    Status::Revoked {
        reason: format!("reason {id}"),
    }
}

#[test]
fn a_signed_list_verifies_and_parses() {
    let issuer = Issuer::new();
    let body = list_json(0, NOW, vec![entry("r1", "jti", "x", "immediate", NOW)]);
    let jws = issuer.sign("revocation-list+jwt", &body);
    let parsed = RevocationList::verify(&format!("{jws}\n"), &issuer.jwks(), ISSUER).unwrap();
    assert_eq!(parsed.cursor, NOW);
    assert_eq!(parsed.entries.len(), 1);
    assert_eq!(parsed.entries[0].kind, RevocationKind::Jti);
    assert_eq!(parsed.entries[0].mode, RevocationMode::Immediate);
    assert_eq!(parsed.entries[0].cascade_from, None);
    assert!(!parsed.more);
    let mut paged = list_json(0, NOW, vec![]);
    paged["more"] = json!(true);
    let jws = issuer.sign("revocation-list+jwt", &paged);
    assert!(
        RevocationList::verify(&jws, &issuer.jwks(), ISSUER)
            .unwrap()
            .more
    );
}

#[test]
fn tampered_wrong_typ_wrong_issuer_and_unknown_kid_lists_are_refused() {
    let issuer = Issuer::new();
    let jwks = issuer.jwks();
    let body = list_json(0, NOW, vec![entry("r1", "jti", "x", "immediate", NOW)]);
    let jws = issuer.sign("revocation-list+jwt", &body);
    assert_eq!(
        RevocationList::verify(&tamper_signature(&jws), &jwks, ISSUER),
        Err(RevocationError::Signature)
    );
    let emptied = common::replace_payload(&jws, &list_json(0, NOW, vec![]));
    assert_eq!(
        RevocationList::verify(&emptied, &jwks, ISSUER),
        Err(RevocationError::Signature)
    );
    for typ in ["at+jwt", "JWT", "revocation-list"] {
        assert_eq!(
            RevocationList::verify(&issuer.sign(typ, &body), &jwks, ISSUER),
            Err(RevocationError::Type)
        );
    }
    assert_eq!(
        RevocationList::verify(&jws, &jwks, "https://elsewhere"),
        Err(RevocationError::Issuer)
    );
    assert_eq!(
        RevocationList::verify(
            &Issuer::new().sign("revocation-list+jwt", &body),
            &jwks,
            ISSUER
        ),
        Err(RevocationError::UnknownKid)
    );
    let not_a_list = issuer.sign("revocation-list+jwt", &json!({"iss": ISSUER}));
    assert!(matches!(
        RevocationList::verify(&not_a_list, &jwks, ISSUER),
        Err(RevocationError::Claims(_))
    ));
    // An access token is not a revocation list.
    let access = issuer.sign("at+jwt", &token_claims("k", "j"));
    assert_eq!(
        RevocationList::verify(&access, &jwks, ISSUER),
        Err(RevocationError::Type)
    );
}

#[test]
fn each_kind_matches_its_claim() {
    let t = token_with(|c| {
        c["session"]["parent"] = json!("parent-jti");
        c["provenance"]["measurements"] = json!({"pcr0": "aa".repeat(48), "pcr8": "bb".repeat(48)});
    });
    let cases = [
        ("jti", "tok-jti".to_string()),
        ("jti", "parent-jti".to_string()),
        ("session", "session-1".to_string()),
        ("workload", "example-snp-agent".to_string()),
        ("model", "cd".repeat(48)),
        ("model", "CD".repeat(48)),
        ("measurement", "bb".repeat(48)),
        ("measurement", "AA".repeat(48)),
    ];
    for (kind, target) in cases {
        assert_eq!(
            status_with(vec![entry("e", kind, &target, "immediate", NOW - 100)], &t),
            revoked("e"),
            "{kind} {target}"
        );
    }
    let misses = [
        ("jti", "other"),
        ("session", "tok-jti"),
        ("workload", "session-1"),
        ("model", "ab"),
        ("measurement", "pcr0"),
        ("unknown-kind", "tok-jti"),
        ("jti", ""),
    ];
    for (kind, target) in misses {
        assert_eq!(
            status_with(vec![entry("e", kind, target, "immediate", NOW - 100)], &t),
            Status::Clear,
            "{kind} {target}"
        );
    }
}

#[test]
fn graceful_revokes_tokens_issued_at_or_after_it_and_spares_older_ones() {
    let t = token(); // iat = NOW
    assert_eq!(
        status_with(
            vec![entry("g", "session", "session-1", "graceful", NOW + 1)],
            &t
        ),
        Status::Graceful
    );
    assert_eq!(
        status_with(
            vec![entry("g", "session", "session-1", "graceful", NOW)],
            &t
        ),
        revoked("g")
    );
    assert_eq!(
        status_with(
            vec![entry("g", "session", "session-1", "graceful", NOW - 1)],
            &t
        ),
        revoked("g")
    );
}

#[test]
fn quarantine_and_unknown_modes() {
    let t = token();
    assert_eq!(
        status_with(
            vec![entry(
                "q",
                "workload",
                "example-snp-agent",
                "quarantine",
                NOW
            )],
            &t
        ),
        Status::Quarantined {
            reason: "reason q".into()
        }
    );
    // An unknown mode fails closed.
    assert_eq!(
        status_with(
            vec![entry(
                "u",
                "workload",
                "example-snp-agent",
                "obliterate",
                NOW
            )],
            &t
        ),
        revoked("u")
    );
}

#[test]
fn immediate_wins_over_quarantine_wins_over_graceful() {
    let t = token();
    let graceful_old = entry("g", "session", "session-1", "graceful", NOW + 10);
    let quarantine = entry("q", "workload", "example-snp-agent", "quarantine", NOW - 5);
    let immediate = entry("i", "model", &"cd".repeat(48), "immediate", NOW - 1);
    assert_eq!(
        status_with(
            vec![graceful_old.clone(), quarantine.clone(), immediate.clone()],
            &t
        ),
        revoked("i")
    );
    assert_eq!(
        status_with(
            vec![immediate, quarantine.clone(), graceful_old.clone()],
            &t
        ),
        revoked("i")
    );
    assert_eq!(
        status_with(vec![graceful_old.clone(), quarantine.clone()], &t),
        Status::Quarantined {
            reason: "reason q".into()
        }
    );
    // A graceful revocation the token postdates is a revocation: it beats quarantine.
    let graceful_new = entry("g2", "jti", "tok-jti", "graceful", NOW - 10);
    assert_eq!(
        status_with(vec![quarantine, graceful_new, graceful_old], &t),
        revoked("g2")
    );
    // Of two revocations, the earliest gives the reason.
    let early = entry("z-early", "jti", "tok-jti", "immediate", NOW - 50);
    let late = entry("a-late", "session", "session-1", "immediate", NOW - 5);
    assert_eq!(status_with(vec![late, early], &t), revoked("z-early"));
}

#[test]
fn lifting_and_later_versions_replace_by_id() {
    let t = token();
    let mut set = RevocationSet::new();
    set.apply(list(
        0,
        NOW,
        vec![entry("r", "jti", "tok-jti", "immediate", NOW - 10)],
    ))
    .unwrap();
    assert_eq!(set.status(&t), revoked("r"));
    assert_eq!(set.cursor(), NOW);

    let mut lifted = entry("r", "jti", "tok-jti", "immediate", NOW - 10);
    lifted["lifted"] = json!(true);
    lifted["updated_at"] = json!(NOW + 5);
    // Inclusive queries repeat entries: the same version again changes nothing.
    assert_eq!(
        set.apply(list(NOW, NOW + 5, vec![lifted.clone(), lifted]))
            .unwrap(),
        2
    );
    assert_eq!(set.status(&t), Status::Clear);
    assert_eq!(set.len(), 1);
    assert_eq!(set.cursor(), NOW + 5);

    // A late copy of the older version does not undo the lift.
    set.apply(list(
        0,
        NOW,
        vec![entry("r", "jti", "tok-jti", "immediate", NOW - 10)],
    ))
    .unwrap();
    assert_eq!(set.status(&t), Status::Clear);
    assert_eq!(set.cursor(), NOW + 5);

    // A newer version can retarget the entry; the old target stops matching.
    let mut moved = entry("r", "session", "session-2", "immediate", NOW - 10);
    moved["updated_at"] = json!(NOW + 9);
    set.apply(list(NOW + 5, NOW + 9, vec![moved])).unwrap();
    assert_eq!(set.status(&t), Status::Clear);
    let t2 = token_with(|c| c["session"]["id"] = json!("session-2"));
    assert_eq!(set.status(&t2), revoked("r"));
}

#[test]
fn a_list_starting_after_the_cursor_is_a_gap() {
    let mut set = RevocationSet::new();
    set.apply(list(0, NOW, vec![])).unwrap();
    assert_eq!(
        set.apply(list(
            NOW + 1,
            NOW + 2,
            vec![entry("x", "jti", "tok-jti", "immediate", NOW)]
        )),
        Err(RevocationError::Gap {
            since: NOW + 1,
            cursor: NOW
        })
    );
    assert!(set.is_empty());
    assert_eq!(set.cursor(), NOW);
}
