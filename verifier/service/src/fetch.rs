//! Collateral fetched over HTTPS: Intel PCS (or a PCCS) for TDX, AMD KDS for
//! SEV-SNP. Each is a [`CollateralSource`]: cached per platform, refreshed a
//! while before the collateral's own `nextUpdate`, served from cache while
//! still valid if a refresh fails, retried with exponential backoff, and (for
//! KDS, which rate-limits) spaced out. What is fetched is never trusted:
//! verification checks every signature, window and binding.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use attest_gate_core::snp::{self, Product, Tcb};
use attest_gate_core::tdx::{self, PckCa};
use attest_gate_core::{Collateral, TeeKind};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::collateral_source::{CollateralError, CollateralSource, Pending};

/// Largest response accepted from a collateral server.
const MAX_RESPONSE: usize = 1024 * 1024;
/// Collateral is refreshed this long before its `nextUpdate`.
const REFRESH_MARGIN: Duration = Duration::hours(1);
/// What has no `nextUpdate` (VCEKs, AMD's certificate chain) is re-fetched
/// this often.
const STATIC_REFRESH: Duration = Duration::hours(24);
/// A "not found" answer is remembered this long, so made-up chip IDs or TCB
/// values in forged reports cannot make every request go to the vendor.
const NEGATIVE_TTL: Duration = Duration::minutes(10);
/// Most platforms one fetcher remembers; past it, lapsed entries go first,
/// then the cache is cleared.
const MAX_ENTRIES: usize = 4096;

pub(crate) use crate::clock::Clock;

/// How a fetcher talks HTTP.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    /// Tries per request (1 = no retry).
    pub attempts: u32,
    /// First retry delay; doubles each time.
    pub backoff: StdDuration,
    /// At least this long between two requests (KDS's rate limit).
    pub min_interval: StdDuration,
    last: Arc<tokio::sync::Mutex<Option<tokio::time::Instant>>>,
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
    },
}

fn failed(url: &str, reason: impl std::fmt::Display) -> FetchError {
    FetchError::Failed {
        url: url.to_string(),
        reason: reason.to_string(),
    }
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
    /// A client with `tls`, three tries, 250 ms first backoff, no spacing.
    pub fn new(tls: rustls::ClientConfig) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(StdDuration::from_secs(20))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            client,
            attempts: 3,
            backoff: StdDuration::from_millis(250),
            min_interval: StdDuration::ZERO,
            last: Arc::default(),
        })
    }

    async fn pace(&self) {
        if self.min_interval.is_zero() {
            return;
        }
        let mut last = self.last.lock().await;
        if let Some(previous) = *last {
            tokio::time::sleep_until(previous + self.min_interval).await;
        }
        *last = Some(tokio::time::Instant::now());
    }

    /// GETs `url`: the body and the response headers. Retries network
    /// errors, 429 and 5xx; a 404 is `NotFound` at once.
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
                last_error = failed(url, status);
                continue;
            }
            if !status.is_success() {
                return Err(failed(url, status));
            }
            if response
                .content_length()
                .is_some_and(|n| n > MAX_RESPONSE as u64)
            {
                return Err(failed(url, "response too large"));
            }
            let headers = response.headers().clone();
            let body = response.bytes().await.map_err(|e| failed(url, e))?;
            if body.len() > MAX_RESPONSE {
                return Err(failed(url, "response too large"));
            }
            return Ok((body.to_vec(), headers));
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

/// A cached collateral set (or a remembered "not found") and when to
/// refresh it / stop serving it.
#[derive(Debug, Clone)]
struct Cached {
    collateral: Option<Collateral>,
    refresh_at: OffsetDateTime,
    valid_until: OffsetDateTime,
}

/// A per-key cache with refresh-ahead and stale-while-valid.
struct Cache {
    clock: Clock,
    entries: tokio::sync::Mutex<HashMap<String, Cached>>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cache(..)")
    }
}

impl Cache {
    fn new(clock: Clock) -> Self {
        Self {
            clock,
            entries: tokio::sync::Mutex::default(),
        }
    }

    /// The cached set if fresh; else `fetch` (valid until the instant it
    /// returns); on failure the stale set while it is still valid. A 404 is
    /// remembered as "none" for a while.
    async fn get_or_fetch<F>(&self, key: &str, fetch: F) -> Result<Option<Collateral>, FetchError>
    where
        F: std::future::Future<Output = Result<(Collateral, OffsetDateTime), FetchError>>,
    {
        let now = (self.clock)();
        let cached = self.entries.lock().await.get(key).cloned();
        if let Some(c) = &cached {
            if now < c.refresh_at {
                return Ok(c.collateral.clone());
            }
        }
        let (entry, result) = match fetch.await {
            Ok((collateral, valid_until)) => {
                let refresh_at = (valid_until - REFRESH_MARGIN).max(now);
                let entry = Cached {
                    collateral: Some(collateral.clone()),
                    refresh_at,
                    valid_until,
                };
                (Some(entry), Ok(Some(collateral)))
            }
            Err(FetchError::NotFound(url)) => {
                tracing::debug!(%url, "collateral not found; remembered for a while");
                let entry = Cached {
                    collateral: None,
                    refresh_at: now + NEGATIVE_TTL,
                    valid_until: now + NEGATIVE_TTL,
                };
                (Some(entry), Ok(None))
            }
            Err(e) => match cached {
                Some(c) if now < c.valid_until && c.collateral.is_some() => {
                    tracing::warn!(error = %e, key, "collateral refresh failed; serving the cached set");
                    (None, Ok(c.collateral))
                }
                _ => (None, Err(e)),
            },
        };
        if let Some(entry) = entry {
            let mut entries = self.entries.lock().await;
            if entries.len() >= MAX_ENTRIES {
                entries.retain(|_, c| now < c.valid_until);
                if entries.len() >= MAX_ENTRIES {
                    entries.clear();
                }
            }
            entries.insert(key.to_string(), entry);
        }
        result
    }
}

fn source_error(source_name: &'static str, e: &FetchError) -> CollateralError {
    CollateralError {
        source_name,
        reason: e.to_string(),
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

    fn find<'a>(&'a self, tee: TeeKind, evidence: &'a [u8]) -> Pending<'a> {
        Box::pin(async move {
            if tee != TeeKind::Tdx {
                return Ok(None);
            }
            let Ok((fmspc, ca)) = tdx::unverified_pck_lookup(evidence) else {
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

    async fn fetch(
        &self,
        lookup: snp::VcekLookup,
        product: Product,
    ) -> Result<(Collateral, OffsetDateTime), FetchError> {
        let now = (self.cache.clock)();
        let tcb = Tcb::decode(lookup.reported_tcb, product);
        let (vcek, _) = self
            .http
            .get(&self.vcek_url(product, &lookup.chip_id, &tcb))
            .await?;
        let chain_url = format!("{}/vcek/v1/{product}/cert_chain", self.base);
        let (chain, _) = self.http.get(&chain_url).await?;
        let crl_url = format!("{}/vcek/v1/{product}/crl", self.base);
        let (crl, _) = self.http.get(&crl_url).await?;
        let valid_until = crl_next_update(&crl)
            .unwrap_or(now + STATIC_REFRESH)
            .min(now + STATIC_REFRESH);
        Ok((
            Collateral::from_items([
                ("vcek.der".to_string(), vcek),
                ("cert_chain.pem".to_string(), chain),
                ("crl.der".to_string(), crl),
            ]),
            valid_until,
        ))
    }
}

impl CollateralSource for KdsSource {
    fn name(&self) -> &'static str {
        "amd-kds"
    }

    fn find<'a>(&'a self, tee: TeeKind, evidence: &'a [u8]) -> Pending<'a> {
        Box::pin(async move {
            if tee != TeeKind::Snp {
                return Ok(None);
            }
            let Ok(lookup) = snp::unverified_vcek_lookup(evidence) else {
                return Ok(None);
            };
            // Version 2 reports name no product; a VLEK is the cloud
            // provider's, not KDS's per-chip key; a masked (all-zero) chip ID
            // names no chip. KDS cannot help with any of them.
            let Some(product) = lookup.product else {
                return Ok(None);
            };
            if lookup.signed_by_vlek || lookup.chip_id.iter().all(|b| *b == 0) {
                return Ok(None);
            }
            let key = format!(
                "{product}/{}/{:016x}",
                hex::encode(lookup.chip_id),
                lookup.reported_tcb
            );
            self.cache
                .get_or_fetch(&key, self.fetch(lookup, product))
                .await
                .map_err(|e| source_error("amd-kds", &e))
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
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

    #[test]
    fn a_pccs_hex_crl_is_decoded_and_der_is_kept() {
        assert_eq!(hex_or_raw(b"3082".to_vec()), vec![0x30, 0x82]);
        assert_eq!(hex_or_raw(vec![0x30, 0x82]), vec![0x30, 0x82]);
    }
}
