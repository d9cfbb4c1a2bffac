//! What the Workload API serves, as one snapshot: the keeper's credential
//! (token, X.509-SVID chain, SPIFFE ID), the key the SVID certifies, and the
//! trust domain's bundles as the verifier publishes them (`GET /v1/bundle`,
//! the SVID root; `GET /.well-known/jwks.json`, the JWT signing keys).
//!
//! The feeder rebuilds the snapshot whenever the keeper's credential
//! changes (renewal, quarantine, withdrawal) and refreshes the bundles
//! every few minutes; a snapshot is only published whole, so a stream never
//! sends an SVID with another run's bundle. While nothing is served (not yet
//! issued, expired, revoked) the snapshot is `None`.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::sync::watch;
use zeroize::Zeroizing;

use crate::client::VerifierClient;
use crate::keeper::{Current, Served};
use crate::key::EphemeralKey;

use super::jwt::JwtBundle;

/// How often the bundles are fetched again while the credential is unchanged
/// (a rotated signing key or SVID CA reaches the streams within this).
const BUNDLE_REFRESH: Duration = Duration::from_secs(300);

/// How soon a failed bundle fetch is tried again while none is held.
const BUNDLE_RETRY: Duration = Duration::from_secs(2);

/// The attested workload's identity, as served on the Workload API.
pub struct Identity {
    /// The SPIFFE ID (`spiffe://<trust domain>/<workload>/<jkt>`).
    pub spiffe_id: String,
    /// Its trust domain as a SPIFFE ID (`spiffe://<trust domain>`): the key
    /// of the bundle maps.
    pub trust_domain: String,
    /// The X.509-SVID chain, leaf first, as concatenated DER certificates.
    pub svid_chain: Vec<u8>,
    /// The SVID's private key, PKCS#8 DER (zeroized when dropped).
    pub svid_key: Zeroizing<Vec<u8>>,
    /// The trust domain's X.509 bundle (the SVID root), concatenated DER.
    pub x509_bundle: Vec<u8>,
    /// The trust domain's JWT bundle.
    pub jwt_bundle: JwtBundle,
    /// The access token the SVIDs were issued with (for JWT-SVID requests).
    pub token: String,
    /// The credential's expiry, Unix seconds.
    pub expires_at: i64,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("spiffe_id", &self.spiffe_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// The trust domain of a SPIFFE ID, as `spiffe://<trust domain>`, if the ID
/// is well formed (SPIFFE-ID §2: lower-case letters, digits, `.`, `-`,
/// `_` in the trust domain; a path of non-empty segments, no `.`/`..`).
pub(crate) fn trust_domain_of(spiffe_id: &str) -> Option<String> {
    let rest = spiffe_id.strip_prefix("spiffe://")?;
    let (domain, path) = match rest.find('/') {
        Some(i) => (rest.get(..i)?, rest.get(i..)?),
        None => (rest, ""),
    };
    let domain_ok = !domain.is_empty()
        && domain.len() <= 255
        && domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-_".contains(&b));
    let path_ok = path.is_empty()
        || path.split('/').skip(1).all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b))
        });
    (domain_ok && path_ok && spiffe_id.len() <= 2048).then(|| format!("spiffe://{domain}"))
}

/// PEM certificates as concatenated DER; `None` if there are none or one is
/// not a certificate block.
fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut any = false;
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        out.extend_from_slice(cert.ok()?.as_ref());
        any = true;
    }
    any.then_some(out)
}

fn say(line: &str) {
    eprintln!("enclave-agent: workload API: {line}");
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The bundles as last fetched.
struct Bundles {
    x509: Vec<u8>,
    jwt: JwtBundle,
}

async fn fetch_bundles(client: &VerifierClient) -> Result<Bundles, String> {
    let root = client
        .get_text("/v1/bundle")
        .await
        .map_err(|e| e.to_string())?;
    let x509 = pem_to_der(&root).ok_or("GET /v1/bundle holds no certificate")?;
    let jwks = client
        .get_text("/.well-known/jwks.json")
        .await
        .map_err(|e| e.to_string())?;
    let jwt = JwtBundle::parse(jwks.as_bytes()).map_err(|e| e.to_string())?;
    Ok(Bundles { x509, jwt })
}

/// The snapshot for `current`, or why there is none.
fn identity_of(
    current: &Current,
    key: &EphemeralKey,
    bundles: &Bundles,
) -> Result<Identity, &'static str> {
    let spiffe_id = current
        .spiffe_id
        .as_deref()
        .ok_or("the verifier's answer names no SPIFFE ID")?;
    let trust_domain =
        trust_domain_of(spiffe_id).ok_or("the verifier's SPIFFE ID is not well formed")?;
    let svid = current
        .svid
        .as_deref()
        .ok_or("the verifier's answer has no X.509-SVID")?;
    let svid_chain = pem_to_der(svid).ok_or("the X.509-SVID chain is not PEM certificates")?;
    let svid_key = key
        .svid_key_pkcs8()
        .ok_or("the agent's key was not made exportable")?;
    Ok(Identity {
        spiffe_id: spiffe_id.to_string(),
        trust_domain,
        svid_chain,
        svid_key: Zeroizing::new(svid_key.to_vec()),
        x509_bundle: bundles.x509.clone(),
        jwt_bundle: bundles.jwt.clone(),
        token: current.token.clone(),
        expires_at: current.expires_at,
    })
}

/// Keeps `out` in step with `served` until the process ends.
pub(super) async fn feed(
    served: Arc<Served>,
    key: Arc<EphemeralKey>,
    client: VerifierClient,
    out: watch::Sender<Option<Arc<Identity>>>,
) {
    let mut changes = served.subscribe();
    let mut bundles: Option<Bundles> = None;
    let mut fetched_for: Option<String> = None;
    let mut last_error: Option<String> = None;
    loop {
        let now = now_unix();
        let current = served.get(now);
        let mut wake = BUNDLE_REFRESH;
        match &current {
            None => {
                if out.borrow().is_some() {
                    say("no identity served any more (withdrawn or expired): streams end");
                }
                out.send_replace(None);
            }
            Some(current) => {
                // A new credential (renewal) fetches the bundles again, so a
                // rotated CA or signing key arrives with the new SVID.
                if bundles.is_none() || fetched_for.as_deref() != Some(current.token.as_str()) {
                    match fetch_bundles(&client).await {
                        Ok(b) => {
                            bundles = Some(b);
                            fetched_for = Some(current.token.clone());
                        }
                        Err(e) => {
                            say(&format!("cannot fetch the trust bundles: {e}"));
                            wake = BUNDLE_RETRY;
                        }
                    }
                }
                let made = match &bundles {
                    Some(b) => identity_of(current, &key, b).map(Arc::new),
                    None => Err("no trust bundle yet"),
                };
                match made {
                    Ok(identity) => {
                        let renewed = out
                            .borrow()
                            .as_ref()
                            .is_none_or(|old| old.svid_chain != identity.svid_chain);
                        if renewed {
                            say(&format!("serving the X.509-SVID of {}", identity.spiffe_id));
                        }
                        last_error = None;
                        out.send_replace(Some(identity));
                    }
                    Err(e) => {
                        if last_error.as_deref() != Some(e) {
                            say(&format!("no identity to serve: {e}"));
                        }
                        last_error = Some(e.to_string());
                        out.send_replace(None);
                    }
                }
                // Re-evaluate at expiry too: an expired SVID is not served.
                let left = u64::try_from(current.expires_at.saturating_sub(now)).unwrap_or(0);
                wake = wake.min(Duration::from_secs(left.max(1)));
            }
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    out.send_replace(None);
                    return;
                }
            }
            () = tokio::time::sleep(wake) => {
                if wake == BUNDLE_REFRESH {
                    fetched_for = None;
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn trust_domains_of_well_formed_ids_only() {
        assert_eq!(
            trust_domain_of("spiffe://attest-gate.test/inference/abc_-.1").as_deref(),
            Some("spiffe://attest-gate.test")
        );
        assert_eq!(
            trust_domain_of("spiffe://example.org").as_deref(),
            Some("spiffe://example.org")
        );
        for bad in [
            "",
            "https://example.org/a",
            "spiffe://",
            "spiffe:///a",
            "spiffe://Example.org/a",
            "spiffe://example.org/",
            "spiffe://example.org//a",
            "spiffe://example.org/a/../b",
            "spiffe://example.org/a?b",
            "spiffe://user@example.org/a",
            "spiffe://example.org:443/a",
        ] {
            assert_eq!(trust_domain_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn pem_certificates_become_concatenated_der() {
        let a = rcgen::generate_simple_self_signed(vec!["a".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b".into()]).unwrap();
        let pem = format!("{}{}", a.cert.pem(), b.cert.pem());
        let der = pem_to_der(&pem).unwrap();
        assert_eq!(der, [a.cert.der().to_vec(), b.cert.der().to_vec()].concat());
        assert_eq!(pem_to_der(""), None);
        assert_eq!(
            pem_to_der("-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n"),
            None
        );
    }
}
