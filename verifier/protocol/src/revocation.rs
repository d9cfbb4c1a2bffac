//! Revocation: what a revocation names, how it takes effect, and the one
//! rule that decides how a credential stands against the revocations that
//! name it. The verifier's introspection and issuance checks and a relying
//! party's [revocation set] both use [`standing`], so they cannot disagree.
//!
//! Modes:
//! - `immediate`: the credential is dead now;
//! - `graceful`: credentials issued before it run to expiry, anything issued
//!   at or after its second is dead, and nothing new is issued for the target;
//! - `quarantine`: credentials stay active but are marked, so relying
//!   parties route them to a monitor.
//!
//! [revocation set]: https://docs.rs/attest-gate-relying-party

use serde::{Deserialize, Serialize};

/// What a revocation's `target` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A credential's `jti`, and every credential delegated from it.
    Jti,
    /// A session: the attested credential and its whole delegation tree.
    Session,
    /// Every credential of a workload (measurements file name).
    Workload,
    /// Every credential issued on evidence with this register value (hex),
    /// whatever the register.
    Measurement,
    /// Every credential of agents serving this model (SHA-384, hex).
    Model,
    /// Every credential bound to this agent key (RFC 7638 thumbprint), and
    /// what was delegated from them; the key never attests again.
    Key,
    /// A kind this build does not know (a newer verifier): it matches
    /// nothing, since what it targets is unknown. Never parsed from text.
    #[serde(other)]
    Unknown,
}

/// How a revocation takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Dead now.
    Immediate,
    /// Existing credentials run to expiry; no new ones.
    Graceful,
    /// Active but marked for monitoring.
    Quarantine,
    /// A mode this build does not know: treated as `immediate` (fail
    /// closed). Never parsed from text.
    #[serde(other)]
    Unknown,
}

/// Text that names no known kind or mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown revocation {what} `{text}`")]
pub struct UnknownName {
    what: &'static str,
    text: String,
}

macro_rules! names {
    ($ty:ident, $what:literal, $($variant:ident = $text:literal),+) => {
        impl $ty {
            /// Every known value.
            pub const KNOWN: &'static [Self] = &[$(Self::$variant),+];

            /// Its name in the API, the list and the database.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                    Self::Unknown => "unknown",
                }
            }
        }

        impl std::str::FromStr for $ty {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    other => Err(UnknownName { what: $what, text: other.chars().take(64).collect() }),
                }
            }
        }

        impl TryFrom<String> for $ty {
            type Error = UnknownName;
            fn try_from(s: String) -> Result<Self, UnknownName> {
                s.parse()
            }
        }
    };
}

names!(
    Kind,
    "kind",
    Jti = "jti",
    Session = "session",
    Workload = "workload",
    Measurement = "measurement",
    Model = "model",
    Key = "key"
);
names!(
    Mode,
    "mode",
    Immediate = "immediate",
    Graceful = "graceful",
    Quarantine = "quarantine"
);

/// `cascade_from` of a quarantine inherited from quarantine `origin` (a
/// renewal or delegation by a quarantined key keeps the mark).
pub fn inherited_from(origin: &str) -> String {
    format!("{INHERITED}{origin}")
}

const INHERITED: &str = "inherited:";

/// The revocation list's `typ`, so that no other JWS the verifier signs can
/// pass as one.
pub const REVOCATION_LIST_TYPE: &str = "revocation-list+jwt";

/// One revocation, as the verifier records and lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationEntry {
    /// The entry's stable ID; a later version of an entry has the same ID.
    pub id: String,
    /// What `target` names.
    pub kind: Kind,
    /// The revoked value: a `jti`, session ID, workload name, register value
    /// or model digest (hex), or key thumbprint.
    pub target: String,
    /// How matching credentials are treated.
    pub mode: Mode,
    /// Why, for logs and error messages.
    #[serde(default)]
    pub reason: String,
    /// When it was revoked, Unix seconds.
    pub revoked_at: i64,
    /// When this version of the entry was written, Unix seconds.
    pub updated_at: i64,
    /// True once lifted (quarantines only): the entry then matches nothing.
    #[serde(default)]
    pub lifted: bool,
    /// The entry this one was derived from: the revoked target for a
    /// cascaded row, `inherited:<id>` for an inherited quarantine.
    #[serde(default)]
    pub cascade_from: Option<String>,
}

impl Entry for RevocationEntry {
    fn id(&self) -> &str {
        &self.id
    }
    fn mode(&self) -> Mode {
        self.mode
    }
    fn reason(&self) -> &str {
        &self.reason
    }
    fn revoked_at(&self) -> i64 {
        self.revoked_at
    }
    fn lifted(&self) -> bool {
        self.lifted
    }
    fn cascade_from(&self) -> Option<&str> {
        self.cascade_from.as_deref()
    }
}

/// One revocation, as [`standing`] needs to see it.
pub trait Entry {
    /// Its stable ID.
    fn id(&self) -> &str;
    /// How it takes effect.
    fn mode(&self) -> Mode;
    /// Why.
    fn reason(&self) -> &str;
    /// When, Unix seconds.
    fn revoked_at(&self) -> i64;
    /// A lifted quarantine matches nothing.
    fn lifted(&self) -> bool;
    /// `cascade_from`, if the entry was derived from another.
    fn cascade_from(&self) -> Option<&str>;

    /// The quarantine this one comes from: itself, or the one it was
    /// inherited from. Lifting that one lifts this one.
    fn origin(&self) -> &str {
        self.cascade_from()
            .and_then(|c| c.strip_prefix(INHERITED))
            .unwrap_or(self.id())
    }
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
        /// The quarantine it comes from (see [`Entry::origin`]).
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

/// The one rule: how a credential issued at `issued_at` (Unix seconds)
/// stands against the revocations that name it. Lifted entries are ignored.
/// `immediate` (or an unknown mode) revokes; `graceful` revokes what was
/// issued at or after its second and marks older credentials graceful;
/// `quarantine` quarantines. Of several, revoked wins over quarantined over
/// graceful; among equals the earliest revocation, then the smallest ID,
/// decides, so the answer does not depend on the entries' order.
pub fn standing<'a, E: Entry + 'a>(
    naming: impl IntoIterator<Item = &'a E>,
    issued_at: i64,
) -> Standing {
    let mut decided: Option<(u8, i64, &str, Standing)> = None;
    for entry in naming.into_iter().filter(|e| !e.lifted()) {
        let reason = entry.reason().to_string();
        let standing = match entry.mode() {
            Mode::Immediate | Mode::Unknown => Standing::Revoked { reason },
            Mode::Graceful if issued_at >= entry.revoked_at() => Standing::Revoked { reason },
            Mode::Graceful => Standing::Graceful { reason },
            Mode::Quarantine => Standing::Quarantined {
                reason,
                origin: entry.origin().to_string(),
            },
        };
        let rank = standing.rank();
        let better = decided.as_ref().is_none_or(|(best, at, id, _)| {
            (
                rank,
                std::cmp::Reverse(entry.revoked_at()),
                std::cmp::Reverse(entry.id()),
            ) > (*best, std::cmp::Reverse(*at), std::cmp::Reverse(*id))
        });
        if better {
            decided = Some((rank, entry.revoked_at(), entry.id(), standing));
        }
    }
    decided.map_or(Standing::Clear, |(_, _, _, standing)| standing)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    struct E {
        id: &'static str,
        mode: Mode,
        at: i64,
        lifted: bool,
        from: Option<String>,
    }

    impl Entry for E {
        fn id(&self) -> &str {
            self.id
        }
        fn mode(&self) -> Mode {
            self.mode
        }
        fn reason(&self) -> &str {
            self.id
        }
        fn revoked_at(&self) -> i64 {
            self.at
        }
        fn lifted(&self) -> bool {
            self.lifted
        }
        fn cascade_from(&self) -> Option<&str> {
            self.from.as_deref()
        }
    }

    fn e(id: &'static str, mode: Mode, at: i64) -> E {
        E {
            id,
            mode,
            at,
            lifted: false,
            from: None,
        }
    }

    #[test]
    fn modes_rank_and_graceful_revokes_what_comes_after_it() {
        assert_eq!(standing::<E>([], 100), Standing::Clear);
        let graceful = e("g", Mode::Graceful, 150);
        assert!(matches!(
            standing([&graceful], 100),
            Standing::Graceful { .. }
        ));
        assert!(matches!(
            standing([&graceful], 150),
            Standing::Revoked { .. }
        ));
        let quarantine = e("q", Mode::Quarantine, 10);
        assert!(matches!(
            standing([&graceful, &quarantine], 100),
            Standing::Quarantined { .. }
        ));
        let immediate = e("i", Mode::Immediate, 10);
        assert!(matches!(
            standing([&quarantine, &immediate], 100),
            Standing::Revoked { .. }
        ));
        let unknown = e("u", Mode::Unknown, 10);
        assert!(matches!(
            standing([&unknown], 100),
            Standing::Revoked { .. }
        ));
        let lifted = E {
            lifted: true,
            ..e("l", Mode::Quarantine, 10)
        };
        assert_eq!(standing([&lifted], 100), Standing::Clear);
    }

    #[test]
    fn the_earliest_revocation_decides_among_equals_whatever_the_order() {
        let a = e("a", Mode::Immediate, 20);
        let b = e("b", Mode::Immediate, 10);
        for order in [[&a, &b], [&b, &a]] {
            assert_eq!(
                standing(order, 100),
                Standing::Revoked { reason: "b".into() }
            );
        }
    }

    #[test]
    fn an_inherited_quarantine_names_its_origin() {
        let own = e("own", Mode::Quarantine, 10);
        let Standing::Quarantined { origin, .. } = standing([&own], 100) else {
            panic!("not quarantined")
        };
        assert_eq!(origin, "own");
        let inherited = E {
            from: Some(inherited_from("root")),
            ..e("other", Mode::Quarantine, 10)
        };
        let Standing::Quarantined { origin, .. } = standing([&inherited], 100) else {
            panic!("not quarantined")
        };
        assert_eq!(origin, "root");
    }

    #[test]
    fn names_round_trip_and_unknown_is_never_parsed() {
        for kind in Kind::KNOWN {
            assert_eq!(kind.as_str().parse::<Kind>().unwrap(), *kind);
        }
        for mode in Mode::KNOWN {
            assert_eq!(mode.as_str().parse::<Mode>().unwrap(), *mode);
        }
        assert!("unknown".parse::<Kind>().is_err());
        assert!("unknown".parse::<Mode>().is_err());
        assert!("everything".parse::<Kind>().is_err());
        let kind: Kind = serde_json::from_str("\"from-the-future\"").unwrap();
        assert_eq!(kind, Kind::Unknown);
    }
}
