//! `enclave-agent run`: keeps a credential fresh and stops serving it the
//! moment the verifier revokes it.
//!
//! - Re-attests at two thirds of the token's lifetime, less up to a tenth
//!   of it at random (so a fleet started together does not renew together).
//! - On the verifier's trouble (network, 5xx, 408, 429), retries with
//!   exponential backoff and jitter; the token is served until it expires,
//!   then withdrawn. On the verifier's verdict (any other 4xx: revoked,
//!   measurement not allowed...), withdraws the token and stops.
//! - Polls the verifier's signed revocation list; a revocation naming the
//!   token withdraws it at once (then re-attestation decides whether the
//!   agent may go on, which for a revoked key it may not).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use attest_gate_core::ModelDigest;
use attest_gate_relying_party::{Jwks, RevocationList, RevocationSet, Status, Validator};
use serde_json::Value;

use crate::backend::EvidenceSource;
use crate::client::{Ask, ClientError, VerifierClient};
use crate::key::EphemeralKey;

/// The credential being served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    /// The access token.
    pub token: String,
    /// Its expiry, Unix seconds.
    pub expires_at: i64,
    /// Granted scopes, space-separated.
    pub scope: String,
    /// Set when a quarantine names it (still served).
    pub quarantined: bool,
    /// The X.509-SVID chain (PEM, leaf first) issued with it, when asked
    /// for (`--csr`).
    pub svid: Option<String>,
    /// The SPIFFE ID the verifier named the workload.
    pub spiffe_id: Option<String>,
}

/// What the sockets serve from: the current credential, if any, and a
/// counter bumped on every change (the Workload API's streams watch it).
#[derive(Debug)]
pub struct Served(RwLock<Option<Current>>, tokio::sync::watch::Sender<u64>);

impl Default for Served {
    fn default() -> Self {
        Self(RwLock::default(), tokio::sync::watch::Sender::new(0))
    }
}

impl Served {
    /// Told of every change (a new credential, a quarantine, a withdrawal).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.1.subscribe()
    }

    fn changed(&self) {
        self.1.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The credential, if one is being served and has not expired at `now`.
    pub fn get(&self, now: i64) -> Option<Current> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .filter(|c| c.expires_at > now)
    }

    fn set(&self, current: Option<Current>) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = current;
        self.changed();
    }

    fn update(&self, f: impl FnOnce(&mut Current)) {
        if let Some(c) = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_mut()
        {
            f(c);
        }
        self.changed();
    }
}

/// How the keeper paces itself.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    /// How often the revocation list is polled.
    pub revocation_poll: Duration,
    /// First retry delay after the verifier's trouble.
    pub backoff_min: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
}

impl Default for Pacing {
    fn default() -> Self {
        Self {
            revocation_poll: Duration::from_secs(10),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        }
    }
}

/// Why the keeper stopped.
#[derive(Debug, thiserror::Error)]
pub enum Stopped {
    /// The verifier refused this agent: the token is withdrawn for good.
    #[error("the verifier refused this agent ({code}): {message}")]
    Refused {
        /// Its error code.
        code: String,
        /// Its message.
        message: String,
    },
    /// The agent could not attest (evidence, network) until its token ran out.
    #[error("cannot attest: {0}")]
    CannotAttest(String),
}

/// Told of each new token, and of `None` when it is withdrawn.
pub type OnChange = Box<dyn Fn(Option<&str>) + Send + Sync>;

/// Everything the keeper needs.
pub struct Keeper {
    /// The verifier.
    pub client: VerifierClient,
    /// Where evidence comes from (shared with the blocking task that asks it).
    pub source: Arc<dyn EvidenceSource>,
    /// The agent's key (for the process's lifetime).
    pub key: Arc<EphemeralKey>,
    /// The model digest.
    pub model: ModelDigest,
    /// What it asks for.
    pub ask: Ask,
    /// Pacing.
    pub pacing: Pacing,
    /// Called with each new token (e.g. to write the token file), and with
    /// `None` when the token is withdrawn.
    pub on_change: OnChange,
}

/// One line on stderr (the agent's log; never a token or key).
fn say(line: &str) {
    eprintln!("enclave-agent: {line}");
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A random fraction in [0, 1) from the system CSPRNG (0 if it fails).
fn random_fraction() -> f64 {
    use aws_lc_rs::rand::SecureRandom;
    let mut bytes = [0u8; 4];
    if aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .is_err()
    {
        return 0.0;
    }
    f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0)
}

/// When to renew a token of `lifetime` seconds: at two thirds of it, less
/// up to a tenth of it (`jitter` in [0, 1)).
pub fn renew_after(lifetime: i64, jitter: f64) -> Duration {
    let lifetime = lifetime.max(0) as f64;
    let seconds = lifetime * 2.0 / 3.0 - lifetime * 0.1 * jitter.clamp(0.0, 1.0);
    Duration::from_secs_f64(seconds.max(1.0))
}

/// The `attempt`-th retry delay: doubling from `min`, capped at `max`, with
/// "full jitter" between half and all of it.
pub fn backoff(pacing: &Pacing, attempt: u32, jitter: f64) -> Duration {
    let base = pacing
        .backoff_min
        .saturating_mul(2u32.saturating_pow(attempt.min(16)))
        .min(pacing.backoff_max);
    base.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

impl Keeper {
    /// Runs until the verifier refuses the agent or it cannot attest before
    /// its token expires. `served` is what the socket reads.
    pub async fn run(&self, served: &Served) -> Result<(), Stopped> {
        let mut revocations = RevocationSet::new();
        let mut jwks: Option<Jwks> = None;
        let mut failures = 0u32;
        loop {
            match self
                .client
                .attest(&self.source, &self.key, self.model, &self.ask)
                .await
            {
                Ok(answer) => {
                    failures = 0;
                    let current = current_of(&answer).ok_or_else(|| {
                        Stopped::CannotAttest("the verifier's answer has no token".into())
                    })?;
                    let lifetime = current.expires_at - now_unix();
                    say(&format!(
                        "credential issued: expires in {lifetime} s, scope {}",
                        current.scope
                    ));
                    (self.on_change)(Some(&current.token));
                    served.set(Some(current));
                    let renew =
                        tokio::time::Instant::now() + renew_after(lifetime, random_fraction());
                    self.watch(served, &mut revocations, &mut jwks, renew).await;
                }
                Err(e) if e.is_verdict() => {
                    self.withdraw(served);
                    return Err(match e {
                        ClientError::Refused { code, message, .. } => {
                            Stopped::Refused { code, message }
                        }
                        other => Stopped::CannotAttest(other.to_string()),
                    });
                }
                Err(e) => {
                    // Serve what is still valid; once nothing is (never had a
                    // token, or it ran out while retrying), give up after a
                    // few tries rather than hang.
                    if served.get(now_unix()).is_none() {
                        self.withdraw(served);
                        if failures >= 3 {
                            return Err(Stopped::CannotAttest(e.to_string()));
                        }
                    }
                    let delay = backoff(&self.pacing, failures, random_fraction());
                    failures = failures.saturating_add(1);
                    say(&format!(
                        "attestation failed ({e}); retrying in {} ms",
                        delay.as_millis()
                    ));
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    fn withdraw(&self, served: &Served) {
        if served.get(i64::MIN).is_some() {
            say("credential withdrawn: no longer served");
        }
        served.set(None);
        (self.on_change)(None);
    }

    /// Until `renew`, polls the revocation list; returns early when the
    /// token is revoked (after withdrawing it) or expires.
    async fn watch(
        &self,
        served: &Served,
        revocations: &mut RevocationSet,
        jwks: &mut Option<Jwks>,
        renew: tokio::time::Instant,
    ) {
        loop {
            let next = (tokio::time::Instant::now() + self.pacing.revocation_poll).min(renew);
            tokio::time::sleep_until(next).await;
            if tokio::time::Instant::now() >= renew {
                return;
            }
            let Some(current) = served.get(now_unix()) else {
                return;
            };
            match self.check_revocation(&current, revocations, jwks).await {
                Ok(Status::Revoked { reason }) => {
                    say(&format!("the verifier revoked this credential: {reason}"));
                    self.withdraw(served);
                    return;
                }
                Ok(Status::Quarantined { reason }) if !current.quarantined => {
                    say(&format!(
                        "this credential is quarantined (still served): {reason}"
                    ));
                    served.update(|c| c.quarantined = true);
                }
                Ok(_) => {}
                Err(e) => say(&format!("cannot read the revocation list: {e}")),
            }
        }
    }

    async fn check_revocation(
        &self,
        current: &Current,
        revocations: &mut RevocationSet,
        jwks: &mut Option<Jwks>,
    ) -> Result<Status, String> {
        let keys = match jwks {
            Some(k) => k,
            None => {
                let text = self
                    .client
                    .get_text("/.well-known/jwks.json")
                    .await
                    .map_err(|e| e.to_string())?;
                let doc: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
                jwks.insert(Jwks::from_json(&doc).map_err(|e| e.to_string())?)
            }
        };
        let path = format!("/v1/revocations?since={}", revocations.cursor());
        let jws = self
            .client
            .get_text(&path)
            .await
            .map_err(|e| e.to_string())?;
        let issuer = self.client.base().to_string();
        let list = match RevocationList::verify(&jws, keys, &issuer) {
            Ok(list) => list,
            Err(e) => {
                // A rotated signing key: fetch the keys again next time.
                *jwks = None;
                return Err(e.to_string());
            }
        };
        revocations.apply(list).map_err(|e| e.to_string())?;
        let validator = Validator::new(issuer, self.ask.audience.clone());
        let token = validator
            .validate(keys, &current.token, now_unix())
            .map_err(|e| e.to_string())?;
        Ok(revocations.status(&token))
    }
}

/// Resolves on the first SIGTERM or SIGINT (never, if the handlers cannot
/// be installed). `run` races the keeper against it; since evidence is
/// gathered on the blocking pool, a signal is seen even while a device or
/// the QGS is slow.
pub async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        }
        _ => std::future::pending().await,
    }
}

fn current_of(answer: &Value) -> Option<Current> {
    let token = answer.get("access_token")?.as_str()?.to_string();
    let expires_in = answer.get("expires_in")?.as_i64()?;
    Some(Current {
        token,
        expires_at: now_unix().saturating_add(expires_in),
        scope: answer
            .get("scope")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        quarantined: false,
        svid: answer
            .get("svid")
            .and_then(Value::as_str)
            .map(str::to_string),
        spiffe_id: answer
            .get("spiffe_id")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_comes_at_two_thirds_less_jitter() {
        assert_eq!(renew_after(600, 0.0), Duration::from_secs(400));
        assert_eq!(renew_after(600, 0.999_999).as_secs(), 340);
        assert_eq!(renew_after(0, 0.5), Duration::from_secs(1));
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_with_jitter() {
        let p = Pacing::default();
        assert_eq!(backoff(&p, 0, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(&p, 3, 1.0), Duration::from_secs(8));
        assert_eq!(backoff(&p, 30, 1.0), Duration::from_secs(60));
        assert_eq!(backoff(&p, 30, 0.0), Duration::from_secs(30));
    }

    #[test]
    fn an_expired_credential_is_not_served() {
        let served = Served::default();
        served.set(Some(Current {
            token: "t".into(),
            expires_at: 100,
            scope: String::new(),
            quarantined: false,
            svid: None,
            spiffe_id: None,
        }));
        assert!(served.get(99).is_some());
        assert!(served.get(100).is_none());
    }
}
