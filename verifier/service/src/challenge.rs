//! Challenge nonces that any replica can check without a lookup: random
//! bytes and an expiry, authenticated with a key the replicas share.
//!
//! ```text
//! nonce (40 bytes) = 0x03 ‖ expiry (u64 big-endian, Unix milliseconds) ‖ 15 random bytes
//!                    ‖ HMAC-SHA256(key, the 24 bytes before)[..16]
//! ```
//!
//! Checking one proves this service issued it and that it has not expired;
//! *single use* is the store's job (an atomic insert-if-absent of the nonce
//! until its expiry, under [`store_id`]), so two replicas cannot both
//! accept it. Version 2 (`0x02`, the same layout with the expiry in Unix
//! seconds) is still accepted, so a nonce issued just before an upgrade
//! can still be spent, under the ID it always had.

use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use time::{Duration, OffsetDateTime};

/// Nonces issued now: expiry in milliseconds; consumed under it, then their
/// hash.
const VERSION: u8 = 3;
/// Nonces issued before version 3: expiry in seconds, consumed the same
/// way. Their IDs sort before every version 3 ID, and a nonce has one
/// version only (the version byte is under the MAC), so none can be spent
/// once under each form.
const VERSION_SECONDS: u8 = 2;
const RANDOM_LEN: usize = 15;
const TAG_LEN: usize = 16;
/// Length of a nonce in bytes.
pub(crate) const NONCE_LEN: usize = 1 + 8 + RANDOM_LEN + TAG_LEN;

/// The key nonces are authenticated with (32 random bytes, shared by replicas).
pub struct NonceKey(hmac::Key);

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceKey(..)")
    }
}

impl NonceKey {
    /// The key from its 32 secret bytes.
    pub fn new(secret: &[u8; 32]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    fn tag(&self, body: &[u8]) -> [u8; TAG_LEN] {
        let full = hmac::sign(&self.0, body);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(full.as_ref().get(..TAG_LEN).unwrap_or_default());
        tag
    }
}

/// A nonce issued to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The nonce bytes.
    pub nonce: [u8; NONCE_LEN],
    /// When it stops being accepted.
    pub expires_at: OffsetDateTime,
}

impl Challenge {
    /// The nonce as base64url without padding (as the API sends it).
    pub fn encoded(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.nonce)
    }
}

/// Why a presented nonce is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NonceError {
    /// Not a nonce this service issued (wrong size, version or tag).
    #[error("the nonce was not issued by this verifier")]
    Unknown,
    /// Issued here, but past its expiry.
    #[error("the nonce has expired")]
    Expired,
    /// Issued here and current, but already used.
    #[error("the nonce has already been used")]
    Replayed,
}

impl NonceError {
    /// The stable error code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Unknown => "nonce_unknown",
            Self::Expired => "nonce_expired",
            Self::Replayed => "nonce_replayed",
        }
    }
}

/// A fresh nonce valid for `ttl` from `now`.
pub fn issue(
    key: &NonceKey,
    now: OffsetDateTime,
    ttl: Duration,
) -> Result<Challenge, aws_lc_rs::error::Unspecified> {
    let millis = ((now + ttl).unix_timestamp_nanos() / 1_000_000).max(0);
    let expires_at = OffsetDateTime::from_unix_timestamp_nanos(millis * 1_000_000)
        .map_err(|_| aws_lc_rs::error::Unspecified)?;
    let mut random = [0u8; RANDOM_LEN];
    SystemRandom::new().fill(&mut random)?;
    let expiry = u64::try_from(millis)
        .map_err(|_| aws_lc_rs::error::Unspecified)?
        .to_be_bytes();
    let body = [&[VERSION][..], &expiry, &random].concat();
    let mut nonce = [0u8; NONCE_LEN];
    for (out, b) in nonce.iter_mut().zip(body.iter().chain(&key.tag(&body))) {
        *out = *b;
    }
    Ok(Challenge { nonce, expires_at })
}

/// Checks that `nonce` was issued with `key` (for `ttl`) and is current at
/// `now`; returns its expiry (how long the store must remember it).
///
/// Current means `now < expiry <= now + ttl`. The second bound matters when
/// the clock moves back: a nonce issued before the move would otherwise
/// live up to the move's length longer than `ttl`. It is refused as
/// expired instead, and the agent asks for a new one.
pub(crate) fn check(
    key: &NonceKey,
    nonce: &[u8],
    now: OffsetDateTime,
    ttl: Duration,
) -> Result<OffsetDateTime, NonceError> {
    if nonce.len() != NONCE_LEN {
        return Err(NonceError::Unknown);
    }
    let (body, tag) = nonce.split_at(NONCE_LEN - TAG_LEN);
    // The tag is truncated, so hmac::verify (full tag) does not apply:
    // compare in constant time.
    aws_lc_rs::constant_time::verify_slices_are_equal(&key.tag(body), tag)
        .map_err(|_| NonceError::Unknown)?;
    let mut expiry = [0u8; 8];
    expiry.copy_from_slice(body.get(1..9).unwrap_or(&[0; 8]));
    let expiry = i128::from(u64::from_be_bytes(expiry));
    let nanos_per_unit = match body.first() {
        Some(&VERSION) => 1_000_000,
        Some(&VERSION_SECONDS) => 1_000_000_000,
        _ => return Err(NonceError::Unknown),
    };
    let expires_at = OffsetDateTime::from_unix_timestamp_nanos(expiry * nanos_per_unit)
        .map_err(|_| NonceError::Unknown)?;
    if now >= expires_at || expires_at > now + ttl {
        return Err(NonceError::Expired);
    }
    Ok(expires_at)
}

/// The ID a [`check`]ed nonce is consumed under: its expiry as it carries
/// it (16 hex digits), then its SHA-256 (hex). Nonces are spent in about
/// the order they were issued, so their IDs arrive in order and each
/// appends to the store's index; with the expiry in whole seconds, the
/// hash scattered a second's worth of them (thousands under load) over the
/// index's last pages. The hash makes the ID reveal nothing the nonce's
/// MAC would let anyone check.
pub(crate) fn store_id(nonce: &[u8]) -> String {
    let hash = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, nonce));
    format!("{}{hash}", hex::encode(nonce.get(1..9).unwrap_or_default()))
}

/// Until when (Unix seconds, rounded up) a consumed nonce expiring at
/// `expires_at` must be remembered: never a moment less than it is current.
pub(crate) fn remembered_until(expires_at: OffsetDateTime) -> i64 {
    let seconds = expires_at.unix_timestamp();
    if expires_at.nanosecond() > 0 {
        seconds.saturating_add(1)
    } else {
        seconds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> NonceKey {
        NonceKey::new(&[b; 32])
    }

    const TTL: Duration = Duration::seconds(60);

    fn t0() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_750_000_000).unwrap()
    }

    #[test]
    fn an_issued_nonce_checks_until_it_expires() {
        let c = issue(&key(1), t0(), Duration::seconds(60)).unwrap();
        assert_eq!(check(&key(1), &c.nonce, t0(), TTL), Ok(c.expires_at));
        assert_eq!(
            check(&key(1), &c.nonce, t0() + Duration::seconds(59), TTL),
            Ok(c.expires_at)
        );
        assert_eq!(
            check(&key(1), &c.nonce, t0() + Duration::seconds(60), TTL),
            Err(NonceError::Expired)
        );
        // The clock moved back: a nonce from "later" is not current either.
        assert_eq!(
            check(&key(1), &c.nonce, t0() - Duration::seconds(1), TTL),
            Err(NonceError::Expired)
        );
        assert_eq!(
            check(&key(1), &c.nonce, t0() - Duration::hours(1), TTL),
            Err(NonceError::Expired)
        );
        assert_eq!(URL_SAFE_NO_PAD.decode(c.encoded()).unwrap(), c.nonce);
        assert_ne!(
            issue(&key(1), t0(), Duration::seconds(60)).unwrap().nonce,
            c.nonce
        );
    }

    #[test]
    fn forged_edited_or_foreign_nonces_are_unknown() {
        let c = issue(&key(1), t0(), Duration::seconds(60)).unwrap();
        assert_eq!(
            check(&key(2), &c.nonce, t0(), TTL),
            Err(NonceError::Unknown)
        );
        for i in 0..NONCE_LEN {
            let mut edited = c.nonce;
            edited[i] ^= 1;
            assert_eq!(
                check(&key(1), &edited, t0(), TTL),
                Err(NonceError::Unknown),
                "byte {i}"
            );
        }
        assert_eq!(
            check(&key(1), &c.nonce[..39], t0(), TTL),
            Err(NonceError::Unknown)
        );
        assert_eq!(check(&key(1), b"", t0(), TTL), Err(NonceError::Unknown));
    }

    /// A nonce of `version` as the service would have issued it.
    fn issued_as(version: u8, key: &NonceKey, now: OffsetDateTime) -> [u8; NONCE_LEN] {
        let mut nonce = issue(key, now, TTL).unwrap().nonce;
        nonce[0] = version;
        let tag = key.tag(&nonce[..NONCE_LEN - TAG_LEN]);
        nonce[NONCE_LEN - TAG_LEN..].copy_from_slice(&tag);
        nonce
    }

    #[test]
    fn nonces_are_consumed_in_the_order_they_were_issued_to_the_millisecond() {
        let earlier = issue(&key(1), t0(), TTL).unwrap().nonce;
        let later = issue(&key(1), t0() + Duration::milliseconds(1), TTL)
            .unwrap()
            .nonce;
        assert_eq!(earlier[0], 3);
        assert!(store_id(&earlier) < store_id(&later));
        assert_eq!(store_id(&earlier).len(), 16 + 64);
        assert!(store_id(&earlier).starts_with(&hex::encode(&earlier[1..9])));
        let millis = (t0() + TTL).unix_timestamp() * 1000;
        assert_eq!(earlier[1..9], millis.to_be_bytes());
    }

    #[test]
    fn a_nonce_expires_to_the_millisecond_and_is_remembered_until_the_second_after() {
        let now = t0() + Duration::milliseconds(250);
        let c = issue(&key(1), now, TTL).unwrap();
        assert_eq!(c.expires_at, now + TTL);
        let just_before = c.expires_at - Duration::milliseconds(1);
        assert_eq!(check(&key(1), &c.nonce, just_before, TTL), Ok(c.expires_at));
        assert_eq!(
            check(&key(1), &c.nonce, c.expires_at, TTL),
            Err(NonceError::Expired)
        );
        assert_eq!(
            remembered_until(c.expires_at),
            (t0() + TTL).unix_timestamp() + 1
        );
        assert_eq!(remembered_until(t0()), t0().unix_timestamp());
    }

    #[test]
    fn version_2_nonces_are_current_for_their_seconds_and_others_unknown() {
        // Version 2, issued before the upgrade: its expiry is in seconds.
        let mut old = issued_as(2, &key(1), t0());
        let expiry = (t0() + TTL).unix_timestamp() as u64;
        old[1..9].copy_from_slice(&expiry.to_be_bytes());
        let tag = key(1).tag(&old[..NONCE_LEN - TAG_LEN]);
        old[NONCE_LEN - TAG_LEN..].copy_from_slice(&tag);
        assert_eq!(check(&key(1), &old, t0(), TTL), Ok(t0() + TTL));
        assert!(store_id(&old).starts_with(&hex::encode(expiry.to_be_bytes())));
        // Its ID sorts before any version 3 nonce's.
        let new = issue(&key(1), t0(), TTL).unwrap().nonce;
        assert!(store_id(&old) < store_id(&new));
        // The version decides how the expiry is read: a version 3 nonce's
        // milliseconds read as seconds lie past the year 9999.
        let relabelled = issued_as(3, &key(1), t0());
        assert_eq!(check(&key(1), &relabelled, t0(), TTL), Ok(t0() + TTL));
        let mut as_seconds = relabelled;
        as_seconds[0] = 2;
        let tag = key(1).tag(&as_seconds[..NONCE_LEN - TAG_LEN]);
        as_seconds[NONCE_LEN - TAG_LEN..].copy_from_slice(&tag);
        assert_eq!(
            check(&key(1), &as_seconds, t0(), TTL),
            Err(NonceError::Unknown)
        );
        // Any other version is not ours, even under a valid tag; version 1
        // (expired everywhere by now) included.
        for version in [0, 1, 4, 0xff] {
            let other = issued_as(version, &key(1), t0());
            assert_eq!(check(&key(1), &other, t0(), TTL), Err(NonceError::Unknown));
        }
    }
}
