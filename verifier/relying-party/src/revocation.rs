//! Revocation lists: the verifier publishes what it revoked as a signed list
//! (`GET /v1/revocations?since=<unix seconds>`, a compact JWS with `typ`
//! `revocation-list+jwt`); a relying party verifies each list, merges it into
//! a [`RevocationSet`], and asks the set about every token it accepts.
//!
//! An entry names what it revokes by `kind` and `target`, and how by `mode`:
//! `immediate` (refuse now), `graceful` (refuse tokens issued at or after the
//! revocation, let older ones run to expiry) or `quarantine` (accept, but
//! route to monitoring). See [`RevocationSet::status`] for the matching rules.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::token::{claims_error, verify_signed, AccessToken, Jwks, JwsFailure};

/// Longest list accepted, in bytes.
pub const MAX_REVOCATION_LIST_LEN: usize = 8 * 1024 * 1024;

/// Most entries a [`RevocationSet`] holds; past it, lists are refused (the
/// caller should alert), never silently truncated.
pub const MAX_REVOCATION_ENTRIES: usize = 1_000_000;

use attest_gate_protocol::revocation::{self as rule, Standing};
pub use attest_gate_protocol::revocation::{Kind as RevocationKind, Mode as RevocationMode};
pub use attest_gate_protocol::revocation::{RevocationEntry, REVOCATION_LIST_TYPE};

/// How far ahead of the relying party's clock a list's `iat` may be and
/// still count as fresh (clock skew).
pub const MAX_FUTURE_IAT_SECONDS: i64 = 60;

/// A verified revocation list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationList {
    /// The verifier's issuer URL.
    pub iss: String,
    /// When the list was made, Unix seconds.
    pub iat: i64,
    /// The list holds the entries updated at or after this instant.
    pub since: i64,
    /// Ask for `since=cursor` next time.
    pub cursor: i64,
    /// The verifier cut the list at a page limit: ask again with
    /// `since=cursor` right away. Absent means `false`.
    #[serde(default)]
    pub more: bool,
    /// The entries.
    pub entries: Vec<RevocationEntry>,
}

/// Why a revocation list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevocationError {
    /// Not a well-formed compact JWS, or too large.
    #[error("malformed revocation list: {0}")]
    Malformed(&'static str),
    /// The header's `alg` is not ES256.
    #[error("the revocation list's alg is not ES256")]
    Algorithm,
    /// The header's `typ` is not `revocation-list+jwt`.
    #[error("the revocation list's typ is not revocation-list+jwt")]
    Type,
    /// The header's `kid` is missing or not in the JWKS (re-fetch it).
    #[error("the revocation list's kid is not in the verifier's JWKS")]
    UnknownKid,
    /// The signature does not verify.
    #[error("the revocation list's signature is invalid")]
    Signature,
    /// The payload is not the list format.
    #[error("the revocation list's payload is malformed: {0}")]
    Claims(String),
    /// `iss` is not the expected issuer.
    #[error("the revocation list was issued by another issuer")]
    Issuer,
    /// The list starts after the set's cursor, so entries in between would be
    /// missed: ask again with `since` = the set's cursor.
    #[error("the revocation list starts at {since}, after the cursor {cursor}")]
    Gap {
        /// The list's `since`.
        since: i64,
        /// The set's cursor.
        cursor: i64,
    },
    /// The set would exceed [`MAX_REVOCATION_ENTRIES`].
    #[error("too many revocation entries")]
    TooManyEntries,
}

impl From<JwsFailure> for RevocationError {
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

impl RevocationList {
    /// Verifies a list as the verifier serves it: compact JWS of at most
    /// [`MAX_REVOCATION_LIST_LEN`] bytes, `alg` ES256, `typ`
    /// `revocation-list+jwt`, `kid` in `jwks` (the verifier's token keys),
    /// a valid signature, the list format, and `iss` == `issuer`.
    pub fn verify(jws: &str, jwks: &Jwks, issuer: &str) -> Result<Self, RevocationError> {
        let payload = verify_signed(
            jwks,
            jws.trim_ascii(),
            MAX_REVOCATION_LIST_LEN,
            &[REVOCATION_LIST_TYPE],
        )?;
        let list: Self = serde_json::from_slice(&payload)
            .map_err(|e| RevocationError::Claims(claims_error(e)))?;
        if list.iss != issuer {
            return Err(RevocationError::Issuer);
        }
        Ok(list)
    }
}

/// What the revocations say about one token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Nothing applies.
    Clear,
    /// Refuse the token.
    Revoked {
        /// The deciding entry's reason.
        reason: String,
    },
    /// A graceful revocation applies, but the token predates it: accept it
    /// until it expires.
    Graceful,
    /// Accept, but route the request to monitoring.
    Quarantined {
        /// The deciding entry's reason.
        reason: String,
    },
}

/// Measurement and model targets are hex: compared without regard to case.
fn index_key(kind: RevocationKind, target: &str) -> (RevocationKind, String) {
    match kind {
        RevocationKind::Measurement | RevocationKind::Model => (kind, target.to_ascii_lowercase()),
        _ => (kind, target.to_string()),
    }
}

/// Every revocation seen so far, merged from successive lists, indexed by
/// what it targets.
#[derive(Debug, Clone, Default)]
pub struct RevocationSet {
    entries: HashMap<String, RevocationEntry>,
    by_target: HashMap<(RevocationKind, String), BTreeSet<String>>,
    cursor: i64,
    /// The verifier's `iat` of the newest complete list applied.
    refreshed_at: Option<i64>,
}

impl RevocationSet {
    /// An empty set; its cursor is 0, so the first request gets everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// The `since` to ask with next (the highest `cursor` applied). Queries
    /// are inclusive, so the next list repeats entries at the cursor; that
    /// is harmless.
    pub fn cursor(&self) -> i64 {
        self.cursor
    }

    /// When the set was last known complete: the verifier-signed `iat` of the
    /// newest list applied that had no `more` pages after it. `None` until
    /// one is applied. [`crate::RelyingParty::authorize`] refuses every
    /// token while this is older than its maximum age: a relying party that
    /// cannot learn of revocations must not keep accepting tokens.
    pub fn refreshed_at(&self) -> Option<i64> {
        self.refreshed_at
    }

    /// Whether the set was refreshed within `max_age_seconds` of `now`. A
    /// list dated more than [`MAX_FUTURE_IAT_SECONDS`] ahead of `now` (a
    /// verifier clock gone wrong) does not count as fresh: nothing would
    /// ever make it stale.
    pub fn is_fresh(&self, now: i64, max_age_seconds: i64) -> bool {
        self.refreshed_at.is_some_and(|at| {
            let age = now.saturating_sub(at);
            (-MAX_FUTURE_IAT_SECONDS..=max_age_seconds).contains(&age)
        })
    }

    /// How many entries are held (lifted ones included: they keep an older
    /// copy of the entry from coming back).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries held, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = &RevocationEntry> {
        self.entries.values()
    }

    /// Merges a verified list. An entry replaces the held one with the same
    /// `id` unless the held one has a later `updated_at` (so a list that
    /// arrives late cannot undo a lift, or a lift a re-revocation). Refused,
    /// with nothing changed, if the list starts after the cursor (a gap) or
    /// the set would exceed [`MAX_REVOCATION_ENTRIES`]. Returns how many
    /// entries were added or replaced.
    pub fn apply(&mut self, list: RevocationList) -> Result<usize, RevocationError> {
        if list.since > self.cursor {
            return Err(RevocationError::Gap {
                since: list.since,
                cursor: self.cursor,
            });
        }
        let new_ids: BTreeSet<&str> = list
            .entries
            .iter()
            .map(|e| e.id.as_str())
            .filter(|id| !self.entries.contains_key(*id))
            .collect();
        if self.entries.len().saturating_add(new_ids.len()) > MAX_REVOCATION_ENTRIES {
            return Err(RevocationError::TooManyEntries);
        }
        let mut changed = 0;
        for entry in list.entries {
            if let Some(held) = self.entries.get(&entry.id) {
                if held.updated_at > entry.updated_at {
                    continue;
                }
                let old_key = index_key(held.kind, &held.target);
                if let Some(ids) = self.by_target.get_mut(&old_key) {
                    ids.remove(&entry.id);
                    if ids.is_empty() {
                        self.by_target.remove(&old_key);
                    }
                }
            }
            self.by_target
                .entry(index_key(entry.kind, &entry.target))
                .or_default()
                .insert(entry.id.clone());
            self.entries.insert(entry.id.clone(), entry);
            changed += 1;
        }
        self.cursor = self.cursor.max(list.cursor);
        if !list.more {
            self.refreshed_at = Some(self.refreshed_at.unwrap_or(i64::MIN).max(list.iat));
        }
        Ok(changed)
    }

    /// What the revocations say about `token`. An un-lifted entry matches
    /// when its target is, by kind: `jti` — the token's `jti` or its
    /// `session.parent`; `session` — `session.id`; `workload` — `client_id`;
    /// `model` — `provenance.model_digest`; `measurement` — any value of
    /// `provenance.measurements` (hex compared case-insensitively); `key` —
    /// `cnf.jkt`. (The verifier also lists, by `jti`, every credential a key
    /// or measurement revocation covers, so registers a token does not carry
    /// are matched too.)
    ///
    /// The matching entries decide by the verifier's own rule,
    /// [`attest_gate_protocol::revocation::standing`]: `immediate` (or an
    /// unknown mode) → revoked; `graceful` → revoked if `token.iat >=
    /// revoked_at`, else graceful; `quarantine` → quarantined. Of several,
    /// revoked wins over quarantined over graceful; the reason is the
    /// earliest deciding entry's.
    pub fn status(&self, token: &AccessToken) -> Status {
        let mut candidates: Vec<(RevocationKind, &str)> = vec![
            (RevocationKind::Jti, &token.jti),
            (RevocationKind::Session, &token.session.id),
            (RevocationKind::Workload, &token.client_id),
            (RevocationKind::Model, &token.provenance.model_digest),
            (RevocationKind::Key, &token.cnf.jkt),
        ];
        if let Some(parent) = &token.session.parent {
            candidates.push((RevocationKind::Jti, parent));
        }
        for value in token.provenance.measurements.values() {
            candidates.push((RevocationKind::Measurement, value));
        }
        let matching: BTreeSet<&String> = candidates
            .into_iter()
            .filter(|(_, target)| !target.is_empty())
            .filter_map(|(kind, target)| self.by_target.get(&index_key(kind, target)))
            .flatten()
            .collect();
        let naming = matching.into_iter().filter_map(|id| self.entries.get(id));
        match rule::standing(naming, token.iat) {
            Standing::Clear => Status::Clear,
            Standing::Graceful { .. } => Status::Graceful,
            Standing::Quarantined { reason, .. } => Status::Quarantined { reason },
            Standing::Revoked { reason } => Status::Revoked { reason },
        }
    }
}
