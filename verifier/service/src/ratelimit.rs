//! Per-client token buckets for the endpoints anyone can call: challenge,
//! attest, exchange, introspection and the revocation list, counted per client address, per agent
//! key (JWK thumbprint) and per relying party (`client_id`). A refused
//! request gets 429 with `Retry-After` and costs no database write.
//!
//! Buckets refill by the injected clock (so tests decide time) and live in a
//! bounded LRU map per limiter: an attacker with many addresses or keys can
//! only push out other idle buckets, never grow memory. Behind a load
//! balancer the client address is read from `Forwarded` / `X-Forwarded-For`
//! only when the peer is a configured trusted proxy ([`client_address`]).

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::str::FromStr;
use std::sync::Mutex;

use time::OffsetDateTime;

use crate::clock::Clock;

/// Buckets one limiter remembers (least recently used go first).
const MAX_BUCKETS: usize = 65_536;

/// A bucket's refill rate and size: `RATE/BURST`, e.g. `5/10` (five a
/// second, ten at once).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens added per second.
    pub per_second: f64,
    /// Most tokens held (the largest burst).
    pub burst: u32,
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (rate, burst) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?}: expected RATE/BURST, e.g. 5/10"))?;
        let per_second: f64 = rate
            .trim()
            .parse()
            .map_err(|_| format!("{s:?}: the rate is not a number"))?;
        let burst: u32 = burst
            .trim()
            .parse()
            .map_err(|_| format!("{s:?}: the burst is not a whole number"))?;
        if !(per_second.is_finite() && per_second > 0.0) || burst == 0 {
            return Err(format!("{s:?}: rate and burst must be above zero"));
        }
        Ok(Self { per_second, burst })
    }
}

/// The limits the service runs with (flags `--rate-limit-*`).
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitConfig {
    /// Whether limits apply at all (`--no-rate-limits` turns them off, e.g.
    /// for a load test from one address).
    pub enabled: bool,
    /// Per client address, for each endpoint.
    pub per_address: Rate,
    /// Per agent key, for attest and exchange.
    pub per_key: Rate,
    /// Per relying party, for introspection.
    pub per_client: Rate,
}

impl Default for RateLimitConfig {
    /// Generous for real agents (one attests every few minutes), tight for a
    /// flood: 20/s and bursts of 40 per address, 1/s and bursts of 10 per
    /// agent key, 50/s and bursts of 100 per relying party.
    fn default() -> Self {
        Self {
            enabled: true,
            per_address: Rate {
                per_second: 20.0,
                burst: 40,
            },
            per_key: Rate {
                per_second: 1.0,
                burst: 10,
            },
            per_client: Rate {
                per_second: 50.0,
                burst: 100,
            },
        }
    }
}

/// The endpoints that are limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/challenge`.
    Challenge,
    /// `POST /v1/attest`.
    Attest,
    /// `POST /v1/token/exchange`.
    Exchange,
    /// `POST /v1/introspect`.
    Introspect,
    /// `GET /v1/revocations` (a database read and a signature each).
    Revocations,
    /// `POST` / `GET /v1/secrets/{name}` (a token, a proof, a policy
    /// decision and an audit record each).
    Secrets,
    /// `POST /v1/jwt-svid` (a token, a proof, a policy decision, a
    /// signature and a credential record each).
    JwtSvid,
}

impl Endpoint {
    const ALL: [Self; 7] = [
        Self::Challenge,
        Self::Attest,
        Self::Exchange,
        Self::Introspect,
        Self::Revocations,
        Self::Secrets,
        Self::JwtSvid,
    ];

    fn index(self) -> usize {
        match self {
            Self::Challenge => 0,
            Self::Attest => 1,
            Self::Exchange => 2,
            Self::Introspect => 3,
            Self::Revocations => 4,
            Self::Secrets => 5,
            Self::JwtSvid => 6,
        }
    }

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Challenge => "challenge",
            Self::Attest => "attest",
            Self::Exchange => "exchange",
            Self::Introspect => "introspect",
            Self::Revocations => "revocations",
            Self::Secrets => "secrets",
            Self::JwtSvid => "jwt_svid",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: OffsetDateTime,
}

/// One rate over many keys.
struct Limiter<K: std::hash::Hash + Eq> {
    rate: Rate,
    buckets: Mutex<lru::LruCache<K, Bucket>>,
}

impl<K: std::hash::Hash + Eq> Limiter<K> {
    fn new(rate: Rate) -> Self {
        Self {
            rate,
            buckets: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(MAX_BUCKETS).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    /// Takes a token for `key` at `now`; `Err(seconds)` until one is due.
    fn take(&self, key: K, now: OffsetDateTime) -> Result<(), u64> {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let burst = f64::from(self.rate.burst);
        let bucket = buckets.get_or_insert_mut(key, || Bucket {
            tokens: burst,
            at: now,
        });
        // A clock that steps back refills nothing (and takes nothing away).
        let elapsed = (now - bucket.at).as_seconds_f64().max(0.0);
        bucket.tokens = (bucket.tokens + elapsed * self.rate.per_second).min(burst);
        bucket.at = bucket.at.max(now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.rate.per_second;
            // `as` saturates; a wait is at least a second.
            Err((wait.ceil() as u64).max(1))
        }
    }
}

/// Who was over a limit, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limited {
    /// What the limit counts by: `address`, `key` or `client`.
    pub by: &'static str,
    /// The endpoint.
    pub endpoint: Endpoint,
    /// Seconds until the next request may pass.
    pub retry_after: u64,
}

/// Every limiter of the service.
pub(crate) struct RateLimits {
    enabled: bool,
    clock: Clock,
    by_address: [Limiter<IpAddr>; 7],
    by_key: [Limiter<String>; 7],
    by_client: Limiter<String>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

impl RateLimits {
    pub(crate) fn new(config: &RateLimitConfig, clock: Clock) -> Self {
        Self {
            enabled: config.enabled,
            clock,
            by_address: Endpoint::ALL.map(|_| Limiter::new(config.per_address)),
            by_key: Endpoint::ALL.map(|_| Limiter::new(config.per_key)),
            by_client: Limiter::new(config.per_client),
        }
    }

    fn check<K: std::hash::Hash + Eq>(
        &self,
        limiter: Option<&Limiter<K>>,
        key: K,
        by: &'static str,
        endpoint: Endpoint,
    ) -> Result<(), Limited> {
        if !self.enabled {
            return Ok(());
        }
        let Some(limiter) = limiter else {
            return Ok(());
        };
        limiter
            .take(key, (self.clock)())
            .map_err(|retry_after| Limited {
                by,
                endpoint,
                retry_after,
            })
    }

    /// One request from `address` to `endpoint`.
    pub(crate) fn address(&self, endpoint: Endpoint, address: IpAddr) -> Result<(), Limited> {
        self.check(
            self.by_address.get(endpoint.index()),
            bucket_key(address),
            "address",
            endpoint,
        )
    }

    /// One request by the agent key `jkt` to `endpoint`.
    pub(crate) fn key(&self, endpoint: Endpoint, jkt: &str) -> Result<(), Limited> {
        self.check(
            self.by_key.get(endpoint.index()),
            jkt.to_string(),
            "key",
            endpoint,
        )
    }

    /// One introspection by the relying party `client_id`.
    pub(crate) fn client(&self, client_id: &str) -> Result<(), Limited> {
        self.check(
            Some(&self.by_client),
            client_id.to_string(),
            "client",
            Endpoint::Introspect,
        )
    }
}

/// Which header a trusted proxy names the client in (`--forwarded-header`):
/// only the one the proxy itself writes, or a client could send the other
/// through it and choose its own address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For` (nginx, HAProxy, AWS ALB, most others).
    #[default]
    XForwardedFor,
    /// `Forwarded` (RFC 7239), `for=`.
    Forwarded,
}

/// The client's address: the TCP peer, unless the peer is a trusted proxy;
/// then the right-most address in the proxy's header (`header`) that is not
/// itself a trusted proxy. Without trusted proxies the headers are ignored:
/// anyone can send them. IPv4-mapped IPv6 addresses count as IPv4.
pub(crate) fn client_address(
    peer: IpAddr,
    headers: &axum::http::HeaderMap,
    trusted: &[ipnet::IpNet],
    header: ForwardedHeader,
) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::to_string)
            .collect()
    };
    let hops: Vec<IpAddr> = match header {
        ForwardedHeader::Forwarded => values("forwarded")
            .iter()
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (name, value) = pair.trim().split_once('=')?;
                    name.eq_ignore_ascii_case("for")
                        .then(|| parse_node(value))
                        .flatten()
                })
            })
            .collect(),
        ForwardedHeader::XForwardedFor => values("x-forwarded-for")
            .iter()
            .filter_map(|v| parse_node(v))
            .collect(),
    };
    hops.into_iter()
        .map(|ip| ip.to_canonical())
        .rev()
        .find(|ip| !is_trusted(ip))
        .unwrap_or(peer)
}

/// What an address is counted as: IPv4 as it is, IPv6 by its /64 (one
/// subscriber's allocation, which it can fill with addresses at will).
fn bucket_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

/// An address as `Forwarded` or `X-Forwarded-For` write it: bare, quoted,
/// `[v6]`, with or without a port.
fn parse_node(text: &str) -> Option<IpAddr> {
    let text = text.trim().trim_matches('"');
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    text.rsplit_once(':')?.0.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};
    use std::sync::Arc;

    fn fixed() -> Clock {
        let at = OffsetDateTime::from_unix_timestamp(1_750_000_000).unwrap();
        Arc::new(move || at)
    }

    fn limits(burst: u32) -> RateLimits {
        let rate = Rate {
            per_second: 1.0,
            burst,
        };
        RateLimits::new(
            &RateLimitConfig {
                enabled: true,
                per_address: rate,
                per_key: rate,
                per_client: rate,
            },
            fixed(),
        )
    }

    #[test]
    fn the_eleventh_of_a_burst_of_ten_waits_and_others_do_not() {
        let limits = limits(10);
        for _ in 0..10 {
            limits.key(Endpoint::Attest, "a").unwrap();
        }
        let limited = limits.key(Endpoint::Attest, "a").unwrap_err();
        assert_eq!(limited.retry_after, 1);
        assert_eq!(limited.by, "key");
        // Another key, and the same key at another endpoint, are not affected.
        limits.key(Endpoint::Attest, "b").unwrap();
        limits.key(Endpoint::Exchange, "a").unwrap();
    }

    #[test]
    fn buckets_refill_with_time_and_not_when_the_clock_steps_back() {
        let limiter = Limiter::new(Rate {
            per_second: 2.0,
            burst: 2,
        });
        let t0 = OffsetDateTime::from_unix_timestamp(1_750_000_000).unwrap();
        limiter.take(1u8, t0).unwrap();
        limiter.take(1u8, t0).unwrap();
        assert_eq!(limiter.take(1u8, t0), Err(1));
        assert_eq!(limiter.take(1u8, t0 - time::Duration::hours(1)), Err(1));
        limiter.take(1u8, t0 + time::Duration::seconds(1)).unwrap();
    }

    #[test]
    fn disabled_limits_pass_everything() {
        let limits = RateLimits::new(
            &RateLimitConfig {
                enabled: false,
                ..RateLimitConfig::default()
            },
            fixed(),
        );
        for _ in 0..1000 {
            limits.client("rp").unwrap();
        }
    }

    #[test]
    fn rates_parse_and_nonsense_is_refused() {
        assert_eq!(
            "5/10".parse::<Rate>().unwrap(),
            Rate {
                per_second: 5.0,
                burst: 10
            }
        );
        assert_eq!("0.5/1".parse::<Rate>().unwrap().per_second, 0.5);
        for bad in ["5", "0/10", "5/0", "x/1", "1/x", "-1/3", "inf/3", "NaN/3"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_headers_count_only_behind_a_trusted_proxy() {
        let peer: IpAddr = "10.0.0.5".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.9, 198.51.100.7"),
        );
        headers.insert(
            "forwarded",
            HeaderValue::from_static("for=192.0.2.60;proto=https, for=\"[2001:db8::1]:4711\""),
        );
        let xff = ForwardedHeader::XForwardedFor;
        assert_eq!(
            client_address(peer, &headers, &[], xff),
            peer,
            "no trusted proxy"
        );
        let proxy: ipnet::IpNet = "10.0.0.0/8".parse().unwrap();
        assert_eq!(
            client_address(peer, &headers, &[proxy], xff),
            "198.51.100.7".parse::<IpAddr>().unwrap(),
            "the right-most untrusted hop; a client's own Forwarded is not read"
        );
        assert_eq!(
            client_address(peer, &headers, &[proxy], ForwardedHeader::Forwarded),
            "2001:db8::1".parse::<IpAddr>().unwrap(),
            "a Forwarded-writing proxy's header, X-Forwarded-For ignored"
        );
        let mut junk = HeaderMap::new();
        junk.insert(
            "x-forwarded-for",
            HeaderValue::from_static("not an address"),
        );
        assert_eq!(client_address(peer, &junk, &[proxy], xff), peer);
        // An IPv4-mapped peer matches an IPv4 trusted network.
        let mapped: IpAddr = "::ffff:10.0.0.5".parse().unwrap();
        assert_eq!(
            client_address(mapped, &headers, &[proxy], xff),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn one_ipv6_slash_64_is_one_client() {
        let limits = limits(2);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        limits.address(Endpoint::Challenge, a).unwrap();
        limits.address(Endpoint::Challenge, b).unwrap();
        assert!(limits.address(Endpoint::Challenge, a).is_err());
        limits
            .address(Endpoint::Challenge, "2001:db8:1:3::1".parse().unwrap())
            .unwrap();
    }
}
