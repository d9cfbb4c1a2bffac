//! Collateral fetched over HTTPS: Intel PCS (or a PCCS) for TDX, AMD KDS for
//! SEV-SNP. Each is a [`CollateralSource`]: cached per platform, refreshed a
//! while before the collateral's own `nextUpdate`, served from cache while
//! still valid if a refresh fails, retried with exponential backoff, and (for
//! KDS, which rate-limits) spaced out. What is fetched is never trusted:
//! verification checks every signature, window and binding.
//!
//! Under attack: one fetch per key at a time (single flight), a bounded
//! number of fetches per source in flight (past it, fail fast: 503), a
//! vendor's `Retry-After` obeyed (no request to it until then), bodies
//! capped while they stream, and "not found" remembered apart from good
//! sets, so a flood of made-up platforms evicts only other "not found"s.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use attest_gate_core::snp::{Product, Tcb};
use attest_gate_core::tdx::PckCa;
use attest_gate_core::{Collateral, TeeKind};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::collateral_source::{CollateralError, CollateralSource, Lookup, Pending};

/// Largest response accepted from a collateral server.
const MAX_RESPONSE: usize = 1024 * 1024;
/// Collateral is refreshed this long before its `nextUpdate`.
const REFRESH_MARGIN: Duration = Duration::hours(1);
/// And at least this often whatever its `nextUpdate` says (Intel's run a
/// month): a TCB recovery or a new CRL entry reaches verdicts within this.
const MAX_CACHE_AGE: Duration = Duration::hours(1);
/// What has no `nextUpdate` (VCEKs, AMD's certificate chain) is re-fetched
/// this often.
const STATIC_REFRESH: Duration = Duration::hours(24);
/// A "not found" answer is remembered this long, so made-up chip IDs or TCB
/// values in forged reports cannot make every request go to the vendor.
const NEGATIVE_TTL: Duration = Duration::minutes(10);
/// Most good sets one fetcher remembers (least recently used goes first;
/// only another good set can push one out).
const MAX_ENTRIES: usize = 4096;
/// Most "not found" answers one fetcher remembers, apart from the good sets.
const MAX_NEGATIVE: usize = 4096;
/// Most distinct fetches one source runs at once; past it a request fails at
/// once with 503 instead of queueing behind the vendor.
pub const MAX_FETCHES_IN_FLIGHT: usize = 4;
/// The longest `Retry-After` obeyed as given (a longer one is capped here).
const MAX_RETRY_AFTER: StdDuration = StdDuration::from_secs(600);

pub(crate) use crate::clock::Clock;

/// How a fetcher talks HTTP. Clones share their pacing and `Retry-After`
/// state: give each vendor its own (`Http::new`).
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    /// Tries per request (1 = no retry).
    pub attempts: u32,
    /// First retry delay; doubles each time.
    pub backoff: StdDuration,
    /// At least this long between two requests (KDS's rate limit).
    pub min_interval: StdDuration,
    /// When the next request may start (pacing), shared by clones.
    next_slot: Arc<std::sync::Mutex<Option<tokio::time::Instant>>>,
    /// No request before this instant: the vendor said `Retry-After`.
    blocked_until: Arc<std::sync::Mutex<Option<tokio::time::Instant>>>,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("attempts", &self.attempts)
            .field("min_interval", &self.min_interval)
            .finish()
    }
}

/// One fetch failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    /// The server has no such item (404).
    #[error("{0}: not found")]
    NotFound(String),
    /// Anything else, after the retries.
    #[error("{url}: {reason}")]
    Failed {
        /// What was fetched.
        url: String,
        /// Why it failed.
        reason: String,
        /// How long the server (or our own queue) says to wait.
        retry_after: Option<StdDuration>,
    },
}

impl FetchError {
    fn retry_after(&self) -> Option<StdDuration> {
        match self {
            Self::NotFound(_) => None,
            Self::Failed { retry_after, .. } => *retry_after,
        }
    }
}

fn failed(url: &str, reason: impl std::fmt::Display) -> FetchError {
    FetchError::Failed {
        url: url.to_string(),
        reason: reason.to_string(),
        retry_after: None,
    }
}

/// `Retry-After` in seconds (RFC 9110 §10.2.3; an HTTP date is not used by
/// PCS or KDS and counts as a minute).
fn retry_after_header(headers: &reqwest::header::HeaderMap) -> Option<StdDuration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    let seconds = value.trim().parse::<u64>().unwrap_or(60);
    Some(StdDuration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

/// A rustls client configuration trusting the system's roots plus `extra`
/// (PEM certificates, e.g. a PCCS's own CA).
pub fn tls_client(extra: &[u8], system_roots: bool) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    if system_roots {
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
    }
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(extra) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

impl Http {
    /// A client with `tls`, `timeout` per try (connect, TLS and answer),
    /// three tries, 250 ms first backoff, no spacing.
    pub fn new(tls: rustls::ClientConfig, timeout: StdDuration) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            client,
            attempts: 3,
            backoff: StdDuration::from_millis(250),
            min_interval: StdDuration::ZERO,
            next_slot: Arc::default(),
            blocked_until: Arc::default(),
        })
    }

    /// Waits for this request's turn: each request reserves the next slot
    /// `min_interval` after the previous one and sleeps without holding any
    /// lock (how many wait is bounded by the sources' in-flight limit).
    async fn pace(&self) {
        if self.min_interval.is_zero() {
            return;
        }
        let now = tokio::time::Instant::now();
        let mine = {
            let mut next = self
                .next_slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mine = next.map_or(now, |slot| slot.max(now));
            *next = Some(mine + self.min_interval);
            mine
        };
        tokio::time::sleep_until(mine).await;
    }

    /// Fails at once while the vendor's `Retry-After` runs.
    fn check_not_blocked(&self, url: &str) -> Result<(), FetchError> {
        let blocked = *self
            .blocked_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = tokio::time::Instant::now();
        match blocked {
            Some(until) if until > now => Err(FetchError::Failed {
                url: url.to_string(),
                reason: "the server asked us to wait (Retry-After)".into(),
                retry_after: Some(until - now),
            }),
            _ => Ok(()),
        }
    }

    fn block_for(&self, wait: StdDuration) {
        *self
            .blocked_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(tokio::time::Instant::now() + wait);
    }

    /// The body, refused as soon as it grows past [`MAX_RESPONSE`] (a
    /// length header is not trusted to say so).
    async fn capped_body(
        url: &str,
        mut response: reqwest::Response,
    ) -> Result<Vec<u8>, FetchError> {
        if response
            .content_length()
            .is_some_and(|n| n > MAX_RESPONSE as u64)
        {
            return Err(failed(url, "response too large"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| failed(url, e))? {
            if body.len() + chunk.len() > MAX_RESPONSE {
                return Err(failed(url, "response too large"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// GETs `url`: the body and the response headers. Retries network
    /// errors, 429 and 5xx; a 404 is `NotFound` at once; a 429 or 503 with
    /// `Retry-After` stops the retries and holds every request to this
    /// server until then.
    pub async fn get(
        &self,
        url: &str,
    ) -> Result<(Vec<u8>, reqwest::header::HeaderMap), FetchError> {
        let mut delay = self.backoff;
        let mut last_error = failed(url, "no attempt made");
        for attempt in 0..self.attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2);
            }
            self.check_not_blocked(url)?;
            self.pace().await;
            let response = match self.client.get(url).send().await {
                Ok(r) => r,
                Err(e) => {
                    last_error = failed(url, e);
                    continue;
                }
            };
            let status = response.status();
            if status == reqwest::StatusCode::NOT_FOUND {
                return Err(FetchError::NotFound(url.to_string()));
            }
            if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                if let Some(wait) = retry_after_header(response.headers()) {
                    tracing::warn!(%url, ?wait, "collateral server asked us to wait");
                    self.block_for(wait);
                    return Err(FetchError::Failed {
                        url: url.to_string(),
                        reason: status.to_string(),
                        retry_after: Some(wait),
                    });
                }
                last_error = failed(url, status);
                continue;
            }
            if !status.is_success() {
                return Err(failed(url, status));
            }
            let headers = response.headers().clone();
            let body = Self::capped_body(url, response).await?;
            return Ok((body, headers));
        }
        Err(last_error)
    }
}

/// A percent-encoded PEM issuer chain from a PCS response header.
fn issuer_chain(
    url: &str,
    headers: &reqwest::header::HeaderMap,
    name: &str,
) -> Result<Vec<u8>, FetchError> {
    let raw = headers
        .get(name)
        .ok_or_else(|| failed(url, format!("no {name} header")))?
        .as_bytes();
    percent_decode(raw).ok_or_else(|| failed(url, format!("{name} is not percent-encoded PEM")))
}

fn percent_decode(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&b) = bytes.next() {
        if b == b'%' {
            let hi = (*bytes.next()? as char).to_digit(16)?;
            let lo = (*bytes.next()? as char).to_digit(16)?;
            out.push(u8::try_from(hi * 16 + lo).ok()?);
        } else {
            out.push(b);
        }
    }
    Some(out)
}

/// `nextUpdate` of a signed Intel JSON document (unverified: cache timing only).
fn json_next_update(body: &[u8]) -> Option<OffsetDateTime> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let inner = value
        .get("tcbInfo")
        .or_else(|| value.get("enclaveIdentity"))?;
    OffsetDateTime::parse(inner.get("nextUpdate")?.as_str()?, &Rfc3339).ok()
}

/// `nextUpdate` of a DER CRL (unverified: cache timing only).
fn crl_next_update(der: &[u8]) -> Option<OffsetDateTime> {
    use x509_parser::prelude::FromDer;
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(der).ok()?;
    Some(crl.next_update()?.to_datetime())
}

/// A cached collateral set and when to refresh it / stop serving it.
#[derive(Debug, Clone)]
struct Cached {
    collateral: Collateral,
    refresh_at: OffsetDateTime,
    valid_until: OffsetDateTime,
}

/// The cache's state: good sets and "not found" answers kept apart.
struct Entries {
    good: lru::LruCache<String, Cached>,
    /// Key → until when "not found" is believed.
    missing: lru::LruCache<String, OffsetDateTime>,
}

/// A per-key cache with refresh-ahead, stale-while-valid, single flight and
/// a bound on fetches in flight.
struct Cache {
    clock: Clock,
    entries: std::sync::Mutex<Entries>,
    /// One lock per key being fetched: later callers wait for the first
    /// fetch and then read its result from the cache.
    in_flight: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Distinct fetches running.
    fetches: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cache(..)")
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A key's place in the single-flight map, given up on drop.
struct InFlightEntry<'a> {
    map: &'a std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    key: &'a str,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for InFlightEntry<'_> {
    fn drop(&mut self) {
        let mut map = lock(self.map);
        // Only our own entry: a later caller may have made a new one.
        if map
            .get(self.key)
            .is_some_and(|l| Arc::ptr_eq(l, &self.lock))
        {
            map.remove(self.key);
        }
    }
}

/// What the cache holds for a key at an instant.
enum Held {
    Fresh(Option<Collateral>),
    Stale(Option<Cached>),
}

impl Cache {
    fn new(clock: Clock) -> Self {
        let cap = |n: usize| NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN);
        Self {
            clock,
            entries: std::sync::Mutex::new(Entries {
                good: lru::LruCache::new(cap(MAX_ENTRIES)),
                missing: lru::LruCache::new(cap(MAX_NEGATIVE)),
            }),
            in_flight: std::sync::Mutex::default(),
            fetches: Arc::new(tokio::sync::Semaphore::new(MAX_FETCHES_IN_FLIGHT)),
        }
    }

    fn held(&self, key: &str, now: OffsetDateTime) -> Held {
        let mut entries = lock(&self.entries);
        if let Some(c) = entries.good.get(key) {
            if now < c.refresh_at {
                return Held::Fresh(Some(c.collateral.clone()));
            }
            return Held::Stale(Some(c.clone()));
        }
        match entries.missing.get(key) {
            Some(until) if now < *until => Held::Fresh(None),
            _ => Held::Stale(None),
        }
    }

    /// The cached set if fresh; else `fetch` (valid until the instant it
    /// returns); on failure the stale set while it is still valid. A 404 is
    /// remembered as "none" for a while.
    async fn get_or_fetch<F>(&self, key: &str, fetch: F) -> Result<Option<Collateral>, FetchError>
    where
        F: std::future::Future<Output = Result<(Collateral, OffsetDateTime), FetchError>>,
    {
        if let Held::Fresh(found) = self.held(key, (self.clock)()) {
            return Ok(found);
        }
        let (key_lock, inserted) = {
            let mut map = lock(&self.in_flight);
            match map.get(key) {
                Some(existing) => (Arc::clone(existing), false),
                None => {
                    let new = Arc::new(tokio::sync::Mutex::new(()));
                    map.insert(key.to_string(), Arc::clone(&new));
                    (new, true)
                }
            }
        };
        // The caller that made the key's entry removes it however its call
        // ends (a dropped request included), so the map holds only fetches
        // in progress; a waiter that gives up leaves it alone.
        let _entry = inserted.then(|| InFlightEntry {
            map: &self.in_flight,
            key,
            lock: Arc::clone(&key_lock),
        });
        let _turn = key_lock.lock().await;
        // Whoever held the key's lock before us may have fetched it.
        let now = (self.clock)();
        let cached = match self.held(key, now) {
            Held::Fresh(found) => return Ok(found),
            Held::Stale(cached) => cached,
        };
        match Arc::clone(&self.fetches).try_acquire_owned() {
            Ok(_permit) => self.fetch_into(key, now, cached, fetch).await,
            // Too busy to refresh: a set still valid is served as it is.
            Err(_) if cached.as_ref().is_some_and(|c| now < c.valid_until) => {
                Ok(cached.map(|c| c.collateral))
            }
            Err(_) => Err(FetchError::Failed {
                url: key.to_string(),
                reason: "too many collateral fetches in flight".into(),
                retry_after: Some(StdDuration::from_secs(1)),
            }),
        }
    }

    async fn fetch_into<F>(
        &self,
        key: &str,
        now: OffsetDateTime,
        cached: Option<Cached>,
        fetch: F,
    ) -> Result<Option<Collateral>, FetchError>
    where
        F: std::future::Future<Output = Result<(Collateral, OffsetDateTime), FetchError>>,
    {
        match fetch.await {
            Ok((collateral, valid_until)) => {
                let refresh_at = (valid_until - REFRESH_MARGIN)
                    .min(now + MAX_CACHE_AGE)
                    .max(now);
                let mut entries = lock(&self.entries);
                entries.missing.pop(key);
                entries.good.put(
                    key.to_string(),
                    Cached {
                        collateral: collateral.clone(),
                        refresh_at,
                        valid_until,
                    },
                );
                Ok(Some(collateral))
            }
            Err(FetchError::NotFound(url)) => {
                tracing::debug!(%url, "collateral not found; remembered for a while");
                let mut entries = lock(&self.entries);
                entries.good.pop(key);
                entries.missing.put(key.to_string(), now + NEGATIVE_TTL);
                Ok(None)
            }
            Err(e) => match cached {
                Some(c) if now < c.valid_until => {
                    tracing::warn!(error = %e, key, "collateral refresh failed; serving the cached set");
                    Ok(Some(c.collateral))
                }
                _ => Err(e),
            },
        }
    }

    #[cfg(test)]
    fn sizes(&self) -> (usize, usize) {
        let entries = lock(&self.entries);
        (entries.good.len(), entries.missing.len())
    }
}

fn source_error(source_name: &'static str, e: &FetchError) -> CollateralError {
    CollateralError {
        source_name,
        reason: e.to_string(),
        retry_after: e.retry_after(),
    }
}

/// Intel PCS v4 (or a PCCS with the same API) for TDX.
#[derive(Debug)]
pub struct PcsSource {
    base: String,
    root_ca_crl_url: String,
    http: Http,
    cache: Cache,
}

/// Where Intel publishes its root CA's CRL.
pub(crate) const INTEL_ROOT_CA_CRL_URL: &str =
    "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der";
/// Intel's PCS.
pub const INTEL_PCS_URL: &str = "https://api.trustedservices.intel.com";

impl PcsSource {
    /// `base` like `https://api.trustedservices.intel.com`; the root CA CRL
    /// from `root_ca_crl_url`.
    pub fn new(base: &str, root_ca_crl_url: &str, http: Http, clock: Clock) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            root_ca_crl_url: root_ca_crl_url.to_string(),
            http,
            cache: Cache::new(clock),
        }
    }

    async fn fetch(
        &self,
        fmspc: &str,
        ca: PckCa,
    ) -> Result<(Collateral, OffsetDateTime), FetchError> {
        let base = &self.base;
        let url = format!("{base}/tdx/certification/v4/tcb?fmspc={fmspc}");
        let (tcb_info, headers) = self.http.get(&url).await?;
        let tcb_chain = issuer_chain(&url, &headers, "TCB-Info-Issuer-Chain")?;
        let url = format!("{base}/tdx/certification/v4/qe/identity");
        let (qe_identity, headers) = self.http.get(&url).await?;
        let qe_chain = issuer_chain(&url, &headers, "SGX-Enclave-Identity-Issuer-Chain")?;
        let url = format!(
            "{base}/sgx/certification/v4/pckcrl?ca={}&encoding=der",
            ca.as_str()
        );
        let (pck_crl, headers) = self.http.get(&url).await?;
        let crl_chain = issuer_chain(&url, &headers, "SGX-PCK-CRL-Issuer-Chain")?;
        let (root_crl, _) = self.http.get(&self.root_ca_crl_url).await?;
        // A PCCS may answer with the DER hex-encoded.
        let root_crl = hex_or_raw(root_crl);
        let valid_until = [
            json_next_update(&tcb_info),
            json_next_update(&qe_identity),
            crl_next_update(&pck_crl),
            crl_next_update(&root_crl),
        ]
        .into_iter()
        .map(|t| t.ok_or_else(|| failed(base, "collateral without a readable nextUpdate")))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .min()
        .ok_or_else(|| failed(base, "no collateral"))?;
        let collateral = Collateral::from_items([
            ("tcb_info.json".to_string(), tcb_info),
            ("tcb_info_issuer_chain.pem".to_string(), tcb_chain),
            ("qe_identity.json".to_string(), qe_identity),
            ("qe_identity_issuer_chain.pem".to_string(), qe_chain),
            ("pck_crl.der".to_string(), pck_crl),
            ("pck_crl_issuer_chain.pem".to_string(), crl_chain),
            ("root_ca_crl.der".to_string(), root_crl),
        ]);
        Ok((collateral, valid_until))
    }
}

fn hex_or_raw(body: Vec<u8>) -> Vec<u8> {
    let text = String::from_utf8_lossy(&body);
    match hex::decode(text.trim()) {
        Ok(der) if !der.is_empty() => der,
        _ => body,
    }
}

impl CollateralSource for PcsSource {
    fn name(&self) -> &'static str {
        "intel-pcs"
    }

    fn serves(&self, tee: TeeKind) -> bool {
        tee == TeeKind::Tdx
    }

    /// Only for an authenticated platform ([`Lookup::Tdx`] is built from a
    /// verified PCK certificate), so forged quotes cannot make it fetch.
    fn find<'a>(&'a self, lookup: &'a Lookup) -> Pending<'a> {
        Box::pin(async move {
            let Lookup::Tdx { fmspc, ca } = *lookup else {
                return Ok(None);
            };
            let fmspc = hex::encode_upper(fmspc);
            let key = format!("{fmspc}/{}", ca.as_str());
            self.cache
                .get_or_fetch(&key, self.fetch(&fmspc, ca))
                .await
                .map_err(|e| source_error("intel-pcs", &e))
        })
    }
}

/// AMD KDS for SEV-SNP VCEKs, the ASK/ARK chain and the CRL.
#[derive(Debug)]
pub struct KdsSource {
    base: String,
    http: Http,
    cache: Cache,
}

/// AMD's KDS.
pub const AMD_KDS_URL: &str = "https://kdsintf.amd.com";

impl KdsSource {
    /// `base` like `https://kdsintf.amd.com`. Set `http.min_interval` to
    /// stay within KDS's rate limit.
    pub fn new(base: &str, http: Http, clock: Clock) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            http,
            cache: Cache::new(clock),
        }
    }

    /// The VCEK URL for a chip at a TCB (AMD KDS spec: hwID is the whole
    /// CHIP_ID before Turin, its first 8 bytes from Turin on; SPLs decimal).
    pub fn vcek_url(&self, product: Product, chip_id: &[u8; 64], tcb: &Tcb) -> String {
        let hwid = match product {
            Product::Turin => hex::encode(chip_id.get(..8).unwrap_or_default()),
            _ => hex::encode(chip_id),
        };
        let mut url = format!(
            "{}/vcek/v1/{}/{hwid}?blSPL={:02}&teeSPL={:02}&snpSPL={:02}&ucodeSPL={:02}",
            self.base, product, tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode
        );
        if let Some(fmc) = tcb.fmc {
            url.push_str(&format!("&fmcSPL={fmc:02}"));
        }
        url
    }

    /// AMD's certificate chain and CRL for a product's VCEKs or VLEKs
    /// (shared by every chip of the product).
    async fn fetch_product(
        &self,
        product: Product,
        family: &str,
    ) -> Result<(Collateral, OffsetDateTime), FetchError> {
        let now = (self.cache.clock)();
        let chain_url = format!("{}/{family}/v1/{product}/cert_chain", self.base);
        let (chain, _) = self.http.get(&chain_url).await?;
        let crl_url = format!("{}/{family}/v1/{product}/crl", self.base);
        let (crl, _) = self.http.get(&crl_url).await?;
        let valid_until = crl_next_update(&crl)
            .unwrap_or(now + STATIC_REFRESH)
            .min(now + STATIC_REFRESH);
        Ok((
            Collateral::from_items([
                ("cert_chain.pem".to_string(), chain),
                ("crl.der".to_string(), crl),
            ]),
            valid_until,
        ))
    }

    /// One chip's VCEK at one TCB.
    async fn fetch_vcek(
        &self,
        chip_id: [u8; 64],
        reported_tcb: u64,
        product: Product,
    ) -> Result<(Collateral, OffsetDateTime), FetchError> {
        let now = (self.cache.clock)();
        let tcb = Tcb::decode(reported_tcb, product);
        let (vcek, _) = self
            .http
            .get(&self.vcek_url(product, &chip_id, &tcb))
            .await?;
        Ok((
            Collateral::from_items([("vcek.der".to_string(), vcek)]),
            now + STATIC_REFRESH,
        ))
    }
}

impl CollateralSource for KdsSource {
    fn name(&self) -> &'static str {
        "amd-kds"
    }

    fn serves(&self, tee: TeeKind) -> bool {
        tee == TeeKind::Snp
    }

    /// The product's chain and CRL (VLEK ones for a VLEK-signed report), and
    /// for a VCEK-signed report naming a chip that brings no VCEK, its VCEK. A report whose
    /// product cannot be told gets nothing (and then no CRL: refused).
    fn find<'a>(&'a self, lookup: &'a Lookup) -> Pending<'a> {
        Box::pin(async move {
            let Lookup::Snp {
                report,
                product,
                endorsement_supplied,
            } = lookup
            else {
                return Ok(None);
            };
            let Some(product) = *product else {
                return Ok(None);
            };
            let family = if report.signed_by_vlek {
                "vlek"
            } else {
                "vcek"
            };
            let key = format!("{product}/{family}");
            let shared = self
                .cache
                .get_or_fetch(&key, self.fetch_product(product, family))
                .await
                .map_err(|e| source_error("amd-kds", &e))?;
            // A VLEK is the cloud provider's, not KDS's per-chip key; a
            // masked (all-zero) chip ID names no chip; a VCEK the request
            // brings needs no fetch (a forged report cannot make us fetch
            // for it then).
            let chip = if *endorsement_supplied
                || report.signed_by_vlek
                || report.chip_id.iter().all(|b| *b == 0)
            {
                None
            } else {
                let key = format!(
                    "{product}/{}/{:016x}",
                    hex::encode(report.chip_id),
                    report.reported_tcb
                );
                self.cache
                    .get_or_fetch(
                        &key,
                        self.fetch_vcek(report.chip_id, report.reported_tcb, product),
                    )
                    .await
                    .map_err(|e| source_error("amd-kds", &e))?
            };
            let items: Vec<(String, Vec<u8>)> = shared
                .iter()
                .chain(chip.iter())
                .flat_map(|c| c.iter().map(|(n, b)| (n.to_string(), b.to_vec())))
                .collect();
            Ok((!items.is_empty()).then(|| Collateral::from_items(items)))
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn issuer_chain_headers_are_percent_decoded() {
        assert_eq!(
            percent_decode(b"-----BEGIN%20CERTIFICATE-----%0AAB%2Fc").unwrap(),
            b"-----BEGIN CERTIFICATE-----\nAB/c"
        );
        assert!(percent_decode(b"%4").is_none());
        assert!(percent_decode(b"%zz").is_none());
    }

    fn fixed_clock() -> (Clock, OffsetDateTime) {
        let now = OffsetDateTime::from_unix_timestamp(1_750_000_000).unwrap();
        (Arc::new(move || now), now)
    }

    #[tokio::test]
    async fn a_flood_of_not_found_never_evicts_a_good_set() {
        let (clock, now) = fixed_clock();
        let cache = Cache::new(clock);
        let good = Collateral::from_items([("tcb_info.json".to_string(), vec![1, 2, 3])]);
        let fetched = cache
            .get_or_fetch("90C06F000000/platform", async {
                Ok((good.clone(), now + Duration::days(30)))
            })
            .await
            .unwrap();
        assert!(fetched.is_some());
        // 5,000 made-up platforms, each "not found" at the vendor.
        for i in 0..5000 {
            let found = cache
                .get_or_fetch(&format!("{i:012X}/platform"), async {
                    Err(FetchError::NotFound(format!("fmspc {i}")))
                })
                .await
                .unwrap();
            assert!(found.is_none());
        }
        assert_eq!(
            cache.sizes(),
            (1, MAX_NEGATIVE),
            "negatives evict negatives only"
        );
        // The good set is served with no fetch at all.
        let served = cache
            .get_or_fetch("90C06F000000/platform", async {
                Err(failed("nowhere", "must not be fetched"))
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(served.get("tcb_info.json"), Some(&[1u8, 2, 3][..]));
    }

    #[tokio::test]
    async fn one_fetch_per_key_however_many_ask_at_once() {
        let (clock, now) = fixed_clock();
        let cache = Arc::new(Cache::new(clock));
        let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (cache, fetches) = (Arc::clone(&cache), Arc::clone(&fetches));
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_fetch("Milan/vcek", async {
                        fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        tokio::time::sleep(StdDuration::from_millis(50)).await;
                        Ok((Collateral::empty(), now + Duration::days(1)))
                    })
                    .await
            }));
        }
        for task in tasks {
            assert!(task.await.unwrap().unwrap().is_some());
        }
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn past_the_in_flight_bound_a_fetch_fails_at_once() {
        let (clock, now) = fixed_clock();
        let cache = Arc::new(Cache::new(clock));
        let release = Arc::new(tokio::sync::Notify::new());
        let mut slow = Vec::new();
        for i in 0..MAX_FETCHES_IN_FLIGHT {
            let (cache, release) = (Arc::clone(&cache), Arc::clone(&release));
            slow.push(tokio::spawn(async move {
                cache
                    .get_or_fetch(&format!("chip-{i}"), async {
                        release.notified().await;
                        Ok((Collateral::empty(), now + Duration::days(1)))
                    })
                    .await
            }));
        }
        // Let the slow ones take every place.
        while Arc::clone(&cache.fetches).available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let started = std::time::Instant::now();
        let refused = cache
            .get_or_fetch("one-more", async {
                Ok((Collateral::empty(), now + Duration::days(1)))
            })
            .await
            .unwrap_err();
        assert!(started.elapsed() < StdDuration::from_secs(1));
        assert_eq!(refused.retry_after(), Some(StdDuration::from_secs(1)));
        release.notify_waiters();
        for task in slow {
            task.await.unwrap().unwrap();
        }
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_capped() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after_header(&headers), None);
        headers.insert(reqwest::header::RETRY_AFTER, "120".parse().unwrap());
        assert_eq!(
            retry_after_header(&headers),
            Some(StdDuration::from_secs(120))
        );
        headers.insert(reqwest::header::RETRY_AFTER, "99999".parse().unwrap());
        assert_eq!(retry_after_header(&headers), Some(MAX_RETRY_AFTER));
        headers.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(
            retry_after_header(&headers),
            Some(StdDuration::from_secs(60))
        );
    }

    #[test]
    fn a_pccs_hex_crl_is_decoded_and_der_is_kept() {
        assert_eq!(hex_or_raw(b"3082".to_vec()), vec![0x30, 0x82]);
        assert_eq!(hex_or_raw(vec![0x30, 0x82]), vec![0x30, 0x82]);
    }
}
