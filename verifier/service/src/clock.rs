//! The one place the verifier reads the wall clock. Verification code takes
//! the instant as an argument; the service and the collateral fetchers take
//! a [`Clock`] at start (the system clock in production, a fixed or moving
//! one in tests), so no request handler reads the wall clock itself.

use std::sync::Arc;

use time::OffsetDateTime;

/// A source of "now", injected into the service and the fetchers.
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// The system clock, UTC.
pub(crate) fn system() -> Clock {
    Arc::new(now)
}

/// The current time, UTC: for the command line, the outermost layer.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}
