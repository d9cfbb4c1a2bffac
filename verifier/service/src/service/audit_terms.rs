//! What an audit record says: the action decided and its code, as enum
//! variants rather than string literals at each call. Their text is what
//! the record stores, hashes into the chain and `GET /v1/admin/audit?action=`
//! filters on, so a variant's text never changes once released
//! (`docs/lifecycle.md` lists them; a test holds the list to this file).

use crate::error::{ErrorCode, ServiceCode, ServiceError};

/// Declares the actions with their stored text and what each records.
macro_rules! audit_actions {
    ($($variant:ident => $text:literal, $what:literal;)*) => {
        /// The decision an audit record is about.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum AuditAction {
            $(#[doc = $what] $variant,)*
        }

        impl AuditAction {
            /// Every action, in declaration order.
            #[cfg(test)]
            pub(crate) const ALL: &'static [Self] = &[$(Self::$variant,)*];

            /// The stored text.
            pub(crate) fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)*
                }
            }
        }
    };
}

audit_actions! {
    Attest => "attest", "An attestation: evidence appraised, credentials issued or refused.";
    Exchange => "exchange", "A token exchange (delegation to a sub-agent).";
    Introspect => "introspect", "A relying party's introspection of a token or JWT-SVID.";
    JwtSvid => "jwt_svid", "A JWT-SVID asked for with an access token.";
    SecretMetadata => "secret.metadata", "A secret's metadata asked for.";
    SecretRelease => "secret.release", "A secret's release asked for.";
    Reappraise => "reappraise", "A reappraisal of the live sessions.";
    ReappraiseRevoke => "reappraise.revoke", "A session reappraisal revoked.";
    AdminRevoke => "admin.revoke", "A revocation or quarantine.";
    AdminLift => "admin.lift", "A quarantine lifted.";
    AdminAddClient => "admin.add_client", "A relying party registered.";
    AdminReload => "admin.reload", "Reference values and policy reloaded.";
    AdminRotateSigningKey => "admin.rotate_signing_key", "A new token-signing key.";
    AdminSecretPut => "admin.secret_put", "A secret stored (a new version).";
    AdminSecretRetire => "admin.secret_retire", "A secret retired.";
    AdminPolicyDryRun => "admin.policy_dry_run", "A candidate policy tried against recorded sessions.";
}

/// How a decision ended, as its record's code. Only [`AuditCode::Ok`] is
/// an `allow`; everything else is recorded as a `deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuditCode {
    /// Done as asked.
    Ok,
    /// Introspection of a token that is expired or unknown.
    Inactive,
    /// Introspection of a quarantined token: answered active, flagged.
    QuarantinedUse,
    /// Refused (or, in a reappraisal, revoked) with this code: for a
    /// request, the one its caller was answered with.
    Refused(ErrorCode),
}

impl From<ErrorCode> for AuditCode {
    fn from(code: ErrorCode) -> Self {
        Self::Refused(code)
    }
}

impl From<ServiceCode> for AuditCode {
    fn from(code: ServiceCode) -> Self {
        Self::Refused(ErrorCode::Service(code))
    }
}

impl AuditCode {
    /// A decision's code from its outcome: `Ok`, or the refusal's.
    pub(crate) fn of<T>(outcome: &Result<T, ServiceError>) -> Self {
        ServiceError::refusal(outcome).map_or(Self::Ok, Self::Refused)
    }

    /// The stored text: a refusal's is its wire code.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Inactive => "inactive",
            Self::QuarantinedUse => "quarantined_use",
            Self::Refused(code) => code.as_str(),
        }
    }

    /// The record's `decision`.
    pub(crate) fn decision(self) -> &'static str {
        match self {
            Self::Ok => "allow",
            Self::Inactive | Self::QuarantinedUse | Self::Refused(_) => "deny",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_has_its_own_text_and_is_documented() {
        let docs = include_str!("../../../../docs/lifecycle.md");
        let mut seen = std::collections::HashSet::new();
        for action in AuditAction::ALL {
            let text = action.as_str();
            assert!(seen.insert(text), "{text} twice");
            assert!(
                docs.contains(&format!("| `{text}` |")),
                "docs/lifecycle.md does not list the audit action {text}"
            );
        }
    }

    #[test]
    fn only_ok_is_an_allow_and_no_code_of_our_own_is_a_wire_code() {
        assert_eq!(AuditCode::Ok.decision(), "allow");
        for own in [AuditCode::Inactive, AuditCode::QuarantinedUse] {
            assert_eq!(own.decision(), "deny");
            assert!(ErrorCode::all().all(|code| code.as_str() != own.as_str()));
        }
        for code in ErrorCode::all() {
            let refused = AuditCode::from(code);
            assert_eq!(
                (refused.as_str(), refused.decision()),
                (code.as_str(), "deny")
            );
            assert_ne!(code.as_str(), "ok");
        }
    }
}
