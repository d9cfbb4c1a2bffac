//! The one place the verifier reads the clock. Verification code takes the
//! instant as an argument; only the outermost layer decides it is "now".

use time::OffsetDateTime;

/// The current time, UTC.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}
