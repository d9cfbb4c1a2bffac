//! Revocation: what an administrator (or `verifier reappraise`) can revoke,
//! in which mode, and how a credential stands against the revocations in
//! force. Pure: the store keeps the records, this decides.
//!
//! Modes:
//! - `immediate`: the credential is dead now (introspection says inactive);
//! - `graceful`: credentials issued before it run to expiry; nothing new is
//!   issued for the target (no re-attestation, no exchange);
//! - `quarantine`: credentials stay active but are marked, so relying
//!   parties route them to a monitor; every use the verifier sees is audited.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use attest_gate_protocol::revocation as rule;
pub(crate) use attest_gate_protocol::revocation::{
    inherited_from, Kind, Mode, RevocationEntry, Standing, REVOCATION_LIST_TYPE,
};

/// `GET /v1/revocations`' signed payload.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RevocationListClaims<'a> {
    /// The verifier's issuer URL.
    pub iss: &'a str,
    /// When the list was made, Unix seconds.
    pub iat: i64,
    /// The list holds the entries updated at or after this instant.
    pub since: i64,
    /// Ask for `since=cursor` next time.
    pub cursor: i64,
    /// The list was cut at its page limit: ask again right away.
    pub more: bool,
    /// The entries.
    pub entries: &'a [Revocation],
}

/// One revocation as recorded: the protocol's entry, so the list the
/// service signs and the entries relying parties read are one type.
pub(crate) type Revocation = RevocationEntry;

/// A credential (issued or about to be), as revocations see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Subject<'a> {
    /// Its own `jti` (if issued), its ancestors', and for a new attestation
    /// those of earlier credentials for the same agent key.
    pub jtis: &'a [String],
    /// Its session(s): for a new attestation, earlier sessions of the key.
    pub sessions: &'a [String],
    /// Workload name.
    pub workload: &'a str,
    /// Model digest, hex.
    pub model: &'a str,
    /// Every verified register value, hex.
    pub measurements: &'a [String],
    /// The agent key(s) it is (or would be) bound to.
    pub keys: &'a [String],
    /// When it was (or would be) issued, Unix seconds.
    pub issued_at: i64,
}

/// The revocations in force, indexed by what they name: a credential's
/// standing costs a handful of lookups however many revocations there are.
#[derive(Debug, Default)]
pub(crate) struct RevocationIndex {
    rows: Vec<Revocation>,
    by_target: HashMap<(&'static str, String), Vec<usize>>,
    names_credentials: bool,
    names_sessions: bool,
    /// The agent keys whose credentials a `jti` revocation names, when
    /// known (`None`: any key may be named).
    named_keys: Option<HashSet<String>>,
}

/// The index key: kind and target, register values and model digests in
/// lower case (they are hex, matched without regard to case).
fn key(kind: Kind, target: &str) -> (&'static str, String) {
    let target = match kind {
        Kind::Model | Kind::Measurement => target.to_ascii_lowercase(),
        _ => target.to_string(),
    };
    (kind.as_str(), target)
}

impl RevocationIndex {
    /// Indexes `rows` (a kind this build does not know names nothing).
    pub(crate) fn new(rows: Vec<Revocation>) -> Self {
        let mut by_target: HashMap<_, Vec<usize>> = HashMap::new();
        for (i, r) in rows.iter().enumerate() {
            if r.kind != Kind::Unknown {
                by_target.entry(key(r.kind, &r.target)).or_default().push(i);
            }
        }
        let names_credentials = rows
            .iter()
            .any(|r| matches!(r.kind, Kind::Jti | Kind::Session));
        let names_sessions = rows.iter().any(|r| r.kind == Kind::Session);
        Self {
            rows,
            by_target,
            names_credentials,
            names_sessions,
            named_keys: None,
        }
    }

    /// The same, knowing which agent keys' credentials the `jti`
    /// revocations name (read after the revocations).
    pub(crate) fn with_named_keys(mut self, keys: HashSet<String>) -> Self {
        self.named_keys = Some(keys);
        self
    }

    /// Whether a revocation may name an earlier credential or session of
    /// the agent key `jkt`; only when not may issuance skip reading the
    /// key's history. A `jti` revocation names credentials that existed
    /// when it was made, whose keys the set read after it holds. A session
    /// revocation is not so bounded: an exchange that raced it may still
    /// add a credential with a new key to the session, whose history must
    /// then be read however old the set is.
    pub(crate) fn may_name_credentials_of(&self, jkt: &str) -> bool {
        self.names_sessions
            || (self.names_credentials
                && self
                    .named_keys
                    .as_ref()
                    .is_none_or(|keys| keys.contains(jkt)))
    }

    /// Whether no revocation is in force.
    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Whether any revocation names a `jti` or a session.
    pub(crate) fn names_credentials(&self) -> bool {
        self.names_credentials
    }

    /// Every revocation in force.
    pub(crate) fn rows(&self) -> &[Revocation] {
        &self.rows
    }

    /// The revocations naming `s`, in the order they were read.
    fn naming(&self, s: &Subject<'_>) -> Vec<&Revocation> {
        let single = [(Kind::Workload, s.workload), (Kind::Model, s.model)];
        let lists = [
            (Kind::Jti, s.jtis),
            (Kind::Session, s.sessions),
            (Kind::Measurement, s.measurements),
            (Kind::Key, s.keys),
        ];
        let wanted = single.into_iter().chain(
            lists
                .into_iter()
                .flat_map(|(kind, list)| list.iter().map(move |t| (kind, t.as_str()))),
        );
        let mut hits: Vec<usize> = wanted
            .filter_map(|(kind, target)| self.by_target.get(&key(kind, target)))
            .flatten()
            .copied()
            .collect();
        hits.sort_unstable();
        hits.dedup();
        hits.into_iter().filter_map(|i| self.rows.get(i)).collect()
    }

    /// How `subject` stands: the protocol's one rule
    /// ([`attest_gate_protocol::revocation::standing`]) over the
    /// revocations naming it.
    pub(crate) fn standing(&self, subject: &Subject<'_>) -> Standing {
        rule::standing(self.naming(subject), subject.issued_at)
    }

    /// Why nothing new may be issued for `subject`: any un-lifted immediate
    /// or graceful revocation naming it, whatever else also names it (a
    /// quarantine outranks graceful for a credential's standing, never for
    /// issuance).
    pub(crate) fn issuance_blocked(&self, subject: &Subject<'_>) -> Option<String> {
        self.naming(subject)
            .into_iter()
            .find(|r| !r.lifted && r.mode != Mode::Quarantine)
            .map(|r| r.reason.clone())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn standing(rows: &[Revocation], s: &Subject<'_>) -> Standing {
        RevocationIndex::new(rows.to_vec()).standing(s)
    }

    fn issuance_blocked(rows: &[Revocation], s: &Subject<'_>) -> Option<String> {
        RevocationIndex::new(rows.to_vec()).issuance_blocked(s)
    }

    fn revocation(kind: Kind, target: &str, mode: Mode, at: i64) -> Revocation {
        Revocation {
            id: format!("{target}-{}", mode.as_str()),
            kind,
            target: target.into(),
            mode,
            reason: format!("{} {}", kind.as_str(), mode.as_str()),
            cascade_from: None,
            revoked_at: at,
            updated_at: at,
            lifted: false,
        }
    }

    fn subject<'a>(jtis: &'a [String], sessions: &'a [String], m: &'a [String]) -> Subject<'a> {
        Subject {
            jtis,
            sessions,
            workload: "w",
            model: "AB",
            measurements: m,
            keys: &KEYS,
            issued_at: 100,
        }
    }

    static KEYS: [String; 1] = [String::new()];

    #[test]
    fn a_key_history_is_read_only_when_a_revocation_may_name_it() {
        let workload = revocation(Kind::Workload, "w", Mode::Immediate, 50);
        let none = RevocationIndex::new(vec![workload.clone()]);
        assert!(
            !none.may_name_credentials_of("k1"),
            "no jti or session revocation"
        );
        let jti = revocation(Kind::Jti, "j1", Mode::Immediate, 50);
        let unknown = RevocationIndex::new(vec![workload, jti.clone()]);
        assert!(
            unknown.may_name_credentials_of("k1"),
            "keys not known: any may be named"
        );
        let known = unknown.with_named_keys(HashSet::from(["k1".to_string()]));
        assert!(known.may_name_credentials_of("k1"));
        assert!(!known.may_name_credentials_of("k2"));
        // A session revocation: every key's history is read.
        let session = revocation(Kind::Session, "s1", Mode::Quarantine, 50);
        let sessions = RevocationIndex::new(vec![jti, session])
            .with_named_keys(HashSet::from(["k1".to_string()]));
        assert!(sessions.may_name_credentials_of("k2"));
    }

    #[test]
    fn a_key_revocation_names_the_key() {
        let keys = vec!["k1".to_string()];
        let s = Subject {
            keys: &keys,
            ..subject(&[], &[], &[])
        };
        let hit = revocation(Kind::Key, "k1", Mode::Immediate, 50);
        assert!(matches!(standing(&[hit], &s), Standing::Revoked { .. }));
        let miss = revocation(Kind::Key, "k2", Mode::Immediate, 50);
        assert_eq!(standing(&[miss], &s), Standing::Clear);
    }

    #[test]
    fn each_kind_names_what_it_says_and_nothing_else() {
        let jtis = vec!["j1".to_string(), "parent".to_string()];
        let sessions = vec!["s1".to_string()];
        let measurements = vec!["cafe".to_string()];
        let s = subject(&jtis, &sessions, &measurements);
        for (kind, hit, miss) in [
            (Kind::Jti, "parent", "j2"),
            (Kind::Session, "s1", "s2"),
            (Kind::Workload, "w", "v"),
            (Kind::Model, "ab", "cd"),
            (Kind::Measurement, "CAFE", "beef"),
        ] {
            let r = revocation(kind, hit, Mode::Immediate, 50);
            assert!(
                matches!(standing(&[r], &s), Standing::Revoked { .. }),
                "{kind:?}"
            );
            let r = revocation(kind, miss, Mode::Immediate, 50);
            assert_eq!(standing(&[r], &s), Standing::Clear, "{kind:?}");
        }
    }

    #[test]
    fn modes_rank_and_graceful_revokes_what_comes_after_it() {
        let jtis = vec!["j".to_string()];
        let s = subject(&jtis, &[], &[]);
        let graceful_before = revocation(Kind::Jti, "j", Mode::Graceful, 150);
        assert!(matches!(
            standing(std::slice::from_ref(&graceful_before), &s),
            Standing::Graceful { .. }
        ));
        assert!(standing(std::slice::from_ref(&graceful_before), &s).blocks_issuance());
        let graceful_after_issue = revocation(Kind::Jti, "j", Mode::Graceful, 100);
        assert!(matches!(
            standing(&[graceful_after_issue], &s),
            Standing::Revoked { .. }
        ));
        let quarantine = revocation(Kind::Workload, "w", Mode::Quarantine, 10);
        let both = [graceful_before.clone(), quarantine.clone()];
        assert!(matches!(standing(&both, &s), Standing::Quarantined { .. }));
        // ...but a quarantine never lifts the graceful block on issuance.
        assert!(issuance_blocked(&both, &s).is_some());
        assert!(issuance_blocked(std::slice::from_ref(&quarantine), &s).is_none());
        let immediate = revocation(Kind::Model, "ab", Mode::Immediate, 10);
        assert!(matches!(
            standing(&[quarantine.clone(), immediate], &s),
            Standing::Revoked { .. }
        ));
        let mut lifted = quarantine;
        lifted.lifted = true;
        assert_eq!(standing(&[lifted], &s), Standing::Clear);
    }
}
