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

use serde::{Deserialize, Serialize};

/// What a revocation names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// One credential (`jti`), and every credential delegated from it.
    Jti,
    /// A session: the attested credential and its whole delegation tree.
    Session,
    /// Every credential of a workload (measurements file name).
    Workload,
    /// Every credential issued on evidence with this measurement value (hex).
    Measurement,
    /// Every credential of agents serving this model (SHA-384, hex).
    Model,
    /// Every credential bound to this agent key (RFC 7638 thumbprint) and
    /// everything delegated from them; the key can never attest again.
    Key,
}

/// How it takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Dead now.
    Immediate,
    /// Existing credentials run to expiry; no new ones.
    Graceful,
    /// Active but marked for monitoring.
    Quarantine,
}

macro_rules! text_enum {
    ($ty:ident, $what:literal, $($variant:ident = $text:literal),+) => {
        impl $ty {
            /// Its name in the API and the database.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }
        impl std::str::FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    other => Err(format!(concat!("unknown ", $what, " `{}`"), other)),
                }
            }
        }
        impl TryFrom<String> for $ty {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                s.parse()
            }
        }
    };
}

text_enum!(
    Kind,
    "revocation kind",
    Jti = "jti",
    Session = "session",
    Workload = "workload",
    Measurement = "measurement",
    Model = "model",
    Key = "key"
);
text_enum!(
    Mode,
    "revocation mode",
    Immediate = "immediate",
    Graceful = "graceful",
    Quarantine = "quarantine"
);

/// One revocation as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Revocation {
    /// Random identifier.
    pub id: String,
    /// What it names.
    #[sqlx(try_from = "String")]
    pub kind: Kind,
    /// The `jti`, session ID, workload name, measurement or model digest.
    pub target: String,
    /// How it takes effect.
    #[sqlx(try_from = "String")]
    pub mode: Mode,
    /// Why (free text from the administrator, or the reappraisal's code).
    pub reason: String,
    /// For a row made by cascading: the revoked ancestor's `jti`.
    pub cascade_from: Option<String>,
    /// When, Unix seconds.
    pub revoked_at: i64,
    /// Last change (creation or lifting), Unix seconds: the list's cursor.
    pub updated_at: i64,
    /// A lifted quarantine.
    pub lifted: bool,
}

/// A credential (issued or about to be), as revocations see it.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
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

/// How a credential stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// No revocation applies.
    Clear,
    /// Issued before a graceful revocation: runs to expiry, begets nothing.
    Graceful {
        /// The revocation's reason.
        reason: String,
    },
    /// Active, but to be monitored.
    Quarantined {
        /// The revocation's reason.
        reason: String,
        /// The ID of the quarantine this one comes from: lifting it lifts
        /// every quarantine inherited from it.
        origin: String,
    },
    /// Dead.
    Revoked {
        /// The revocation's reason.
        reason: String,
    },
}

impl Standing {
    fn rank(&self) -> u8 {
        match self {
            Self::Clear => 0,
            Self::Graceful { .. } => 1,
            Self::Quarantined { .. } => 2,
            Self::Revoked { .. } => 3,
        }
    }

    /// Whether nothing new may be issued on it (re-attestation, exchange).
    pub fn blocks_issuance(&self) -> bool {
        matches!(self, Self::Revoked { .. } | Self::Graceful { .. })
    }

    /// The mode name relying parties see (`None` when clear).
    pub fn label(&self) -> Option<&'static str> {
        match self {
            Self::Clear => None,
            Self::Graceful { .. } => Some("graceful"),
            Self::Quarantined { .. } => Some("quarantined"),
            Self::Revoked { .. } => Some("revoked"),
        }
    }
}

fn names(r: &Revocation, s: &Subject<'_>) -> bool {
    let any = |list: &[String]| list.contains(&r.target);
    match r.kind {
        Kind::Jti => any(s.jtis),
        Kind::Session => any(s.sessions),
        Kind::Workload => r.target == s.workload,
        Kind::Model => r.target.eq_ignore_ascii_case(s.model),
        Kind::Measurement => s
            .measurements
            .iter()
            .any(|m| m.eq_ignore_ascii_case(&r.target)),
        Kind::Key => any(s.keys),
    }
}

/// The strongest effect of the un-lifted revocations naming `subject`:
/// revoked over quarantined over graceful. A graceful revocation revokes
/// whatever is issued at or after it.
pub fn standing(revocations: &[Revocation], subject: &Subject<'_>) -> Standing {
    revocations
        .iter()
        .filter(|r| !r.lifted && names(r, subject))
        .map(|r| {
            let reason = r.reason.clone();
            match r.mode {
                Mode::Immediate => Standing::Revoked { reason },
                Mode::Graceful if subject.issued_at >= r.revoked_at => Standing::Revoked { reason },
                Mode::Graceful => Standing::Graceful { reason },
                Mode::Quarantine => Standing::Quarantined {
                    reason,
                    origin: quarantine_origin(r).to_string(),
                },
            }
        })
        .fold(Standing::Clear, |best, s| {
            if s.rank() > best.rank() {
                s
            } else {
                best
            }
        })
}

/// `cascade_from` of a quarantine inherited from quarantine `origin`.
pub fn inherited_from(origin: &str) -> String {
    format!("{INHERITED}{origin}")
}

const INHERITED: &str = "inherited:";

/// The quarantine a quarantine row comes from: itself, or the one it was
/// inherited from.
fn quarantine_origin(r: &Revocation) -> &str {
    r.cascade_from
        .as_deref()
        .and_then(|c| c.strip_prefix(INHERITED))
        .unwrap_or(&r.id)
}

/// Why nothing new may be issued for `subject`: any un-lifted immediate or
/// graceful revocation naming it, whatever else also names it (a quarantine
/// outranks graceful for a credential's standing, never for issuance).
pub fn issuance_blocked(revocations: &[Revocation], subject: &Subject<'_>) -> Option<String> {
    revocations
        .iter()
        .filter(|r| !r.lifted && r.mode != Mode::Quarantine && names(r, subject))
        .map(|r| r.reason.clone())
        .next()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
    fn an_inherited_quarantine_names_its_origin() {
        let sessions = vec!["s".to_string()];
        let s = subject(&[], &sessions, &[]);
        let own = revocation(Kind::Session, "s", Mode::Quarantine, 10);
        let Standing::Quarantined { origin, .. } = standing(std::slice::from_ref(&own), &s) else {
            panic!("not quarantined")
        };
        assert_eq!(origin, own.id);
        let mut inherited = own.clone();
        inherited.id = "other".into();
        inherited.cascade_from = Some(inherited_from("root"));
        let Standing::Quarantined { origin, .. } = standing(&[inherited], &s) else {
            panic!("not quarantined")
        };
        assert_eq!(origin, "root");
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

    #[test]
    fn names_round_trip() {
        for kind in [
            Kind::Jti,
            Kind::Session,
            Kind::Workload,
            Kind::Measurement,
            Kind::Model,
            Kind::Key,
        ] {
            assert_eq!(kind.as_str().parse::<Kind>().unwrap(), kind);
        }
        for mode in [Mode::Immediate, Mode::Graceful, Mode::Quarantine] {
            assert_eq!(mode.as_str().parse::<Mode>().unwrap(), mode);
        }
        assert!("everything".parse::<Kind>().is_err());
    }
}
