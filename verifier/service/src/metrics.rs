//! Prometheus metrics (`GET /metrics`, OpenMetrics text): attestations by
//! TEE and outcome, rejections by code, issuance latency, revocations by
//! mode, secret requests and JWT-SVID requests by outcome, rows per table (counted when the store
//! is pruned); active sessions are counted from the store at scrape time.

use std::sync::atomic::AtomicI64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::error::ErrorCode;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    tee: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Code {
    code: String,
}

impl Code {
    /// `ok`, or the refusal's code.
    fn of(refused: Option<ErrorCode>) -> Self {
        Self {
            code: refused.map_or("ok", ErrorCode::as_str).to_string(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModeLabel {
    mode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Table {
    table: String,
}

/// The service's metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    attestations: Family<Outcome, Counter>,
    rejections: Family<Code, Counter>,
    issuance_seconds: Histogram,
    commit_batch_sizes: Histogram,
    revocations: Family<ModeLabel, Counter>,
    active_sessions: Gauge<i64, AtomicI64>,
    challenges: Counter,
    rate_limited: Family<Code, Counter>,
    secrets: Family<Code, Counter>,
    jwt_svids: Family<Code, Counter>,
    table_rows: Family<Table, Gauge<i64, AtomicI64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("attest_gate");
        let attestations = Family::<Outcome, Counter>::default();
        let rejections = Family::<Code, Counter>::default();
        // 1 ms .. ~4 s.
        let issuance_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 13));
        // 1 .. 256 write sets.
        let commit_batch_sizes = Histogram::new(exponential_buckets(1.0, 2.0, 9));
        let revocations = Family::<ModeLabel, Counter>::default();
        let active_sessions = Gauge::<i64, AtomicI64>::default();
        let challenges = Counter::default();
        let rate_limited = Family::<Code, Counter>::default();
        let secrets = Family::<Code, Counter>::default();
        let jwt_svids = Family::<Code, Counter>::default();
        let table_rows = Family::<Table, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "store_rows",
            "Rows per table of the store, counted when it is pruned (once a minute)",
            table_rows.clone(),
        );
        registry.register(
            "secret_requests",
            "Secret releases and metadata reads, by outcome code (ok or the refusal)",
            secrets.clone(),
        );
        registry.register(
            "jwt_svid_requests",
            "JWT-SVID requests, by outcome code (ok: issued, or the refusal)",
            jwt_svids.clone(),
        );
        registry.register(
            "challenges",
            "Challenge nonces issued (stateless: counted here, never stored)",
            challenges.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests refused with 429, by limiter (endpoint and what it counts by)",
            rate_limited.clone(),
        );
        registry.register(
            "attestations",
            "Attestation requests by TEE and outcome (issued or rejected)",
            attestations.clone(),
        );
        registry.register(
            "rejections",
            "Refused requests by rejection code",
            rejections.clone(),
        );
        registry.register(
            "issuance_latency_seconds",
            "Time from an attestation request to its decision",
            issuance_seconds.clone(),
        );
        registry.register(
            "commit_batch_size",
            "Requests' write sets committed per transaction by the group-commit writer",
            commit_batch_sizes.clone(),
        );
        registry.register(
            "revocations",
            "Revocations recorded, by mode (cascades included)",
            revocations.clone(),
        );
        registry.register(
            "active_sessions",
            "Unexpired credentials",
            active_sessions.clone(),
        );
        Self {
            registry,
            attestations,
            rejections,
            issuance_seconds,
            commit_batch_sizes,
            revocations,
            active_sessions,
            challenges,
            rate_limited,
            secrets,
            jwt_svids,
            table_rows,
        }
    }
}

impl Metrics {
    /// Where the group-commit writer records each transaction's size.
    pub(crate) fn commit_batch_sizes(&self) -> Histogram {
        self.commit_batch_sizes.clone()
    }

    /// A challenge nonce was issued.
    pub(crate) fn challenge(&self) {
        self.challenges.inc();
    }

    /// A request was refused by the limiter named `which`.
    pub(crate) fn rate_limited(&self, which: &str) {
        self.rate_limited
            .get_or_create(&Code {
                code: which.to_string(),
            })
            .inc();
    }

    /// One attestation decided: issued, or `refused` with that code.
    pub(crate) fn attestation(&self, tee: &str, refused: Option<ErrorCode>, took: Duration) {
        let outcome = if refused.is_none() {
            "issued"
        } else {
            "rejected"
        };
        self.attestations
            .get_or_create(&Outcome {
                tee: tee.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
        if let Some(code) = refused {
            self.rejection(code);
        }
        self.issuance_seconds.observe(took.as_secs_f64());
    }

    /// A refused attestation, exchange, secret or JWT-SVID request, by code.
    pub(crate) fn rejection(&self, code: ErrorCode) {
        self.rejections
            .get_or_create(&Code {
                code: code.as_str().to_string(),
            })
            .inc();
    }

    /// One secret request decided: `ok`, or `refused` with that code.
    pub(crate) fn secret(&self, refused: Option<ErrorCode>) {
        self.secrets.get_or_create(&Code::of(refused)).inc();
        if let Some(code) = refused {
            self.rejection(code);
        }
    }

    /// One JWT-SVID request decided: `ok`, or `refused` with that code.
    pub(crate) fn jwt_svid(&self, refused: Option<ErrorCode>) {
        self.jwt_svids.get_or_create(&Code::of(refused)).inc();
        if let Some(code) = refused {
            self.rejection(code);
        }
    }

    /// `n` revocations recorded in `mode`.
    pub(crate) fn revoked(&self, mode: &str, n: u64) {
        self.revocations
            .get_or_create(&ModeLabel {
                mode: mode.to_string(),
            })
            .inc_by(n);
    }

    /// `table` holds `rows` rows.
    pub(crate) fn table_rows(&self, table: &str, rows: i64) {
        self.table_rows
            .get_or_create(&Table {
                table: table.to_string(),
            })
            .set(rows);
    }

    /// The text exposition, with `active` unexpired credentials.
    pub(crate) fn render(&self, active: i64) -> String {
        self.active_sessions.set(active);
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}
