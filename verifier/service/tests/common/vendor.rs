//! A local HTTPS server that plays Intel PCS or AMD KDS for the collateral
//! fetchers: fixed answers by path, hit counts, failures on demand. No test
//! reaches the internet.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

/// A body and its headers.
pub type Answer = (Vec<u8>, Vec<(&'static str, String)>);

/// What the fake server answers: path → (body, headers). Counts hits per
/// path; fails the first `fail_first` hits of a path with 503, and every
/// request while `down` is set (500, or 503 with `Retry-After` when
/// `retry_after` is set); paths starting with one of `failing_prefixes`
/// answer 500.
#[derive(Default)]
pub struct Plan {
    pub routes: HashMap<String, Answer>,
    pub fail_first: HashMap<String, usize>,
    pub failing_prefixes: Vec<String>,
    pub hits: Mutex<HashMap<String, usize>>,
    pub queries: Mutex<Vec<String>>,
    pub down: AtomicBool,
    pub retry_after: Mutex<Option<String>>,
    pub total: AtomicUsize,
}

impl Plan {
    pub fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// Hits of every path starting with `prefix`.
    pub fn hits_under(&self, prefix: &str) -> usize {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|(path, _)| path.starts_with(prefix))
            .map(|(_, n)| n)
            .sum()
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

async fn serve_plan(State(plan): State<Arc<Plan>>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    plan.total.fetch_add(1, Ordering::SeqCst);
    plan.queries.lock().unwrap().push(request.uri().to_string());
    let hit = {
        let mut hits = plan.hits.lock().unwrap();
        let n = hits.entry(path.clone()).or_default();
        *n += 1;
        *n
    };
    if plan.down.load(Ordering::SeqCst) || hit <= plan.fail_first.get(&path).copied().unwrap_or(0) {
        // With `Retry-After` a 503; without, a plain 500.
        let Some(wait) = plan.retry_after.lock().unwrap().clone() else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        let mut response = StatusCode::SERVICE_UNAVAILABLE.into_response();
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from_str(&wait).unwrap());
        return response;
    }
    if plan.failing_prefixes.iter().any(|p| path.starts_with(p)) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    match plan.routes.get(&path) {
        Some((body, headers)) => {
            let mut map = HeaderMap::new();
            for (name, value) in headers {
                map.insert(*name, HeaderValue::from_str(value).unwrap());
            }
            (map, body.clone()).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Starts the fake server on loopback; returns its URL and its certificate
/// (PEM). It runs on the calling test's runtime.
pub async fn start(plan: Arc<Plan>) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let config = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap(),
    ));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().fallback(serve_plan).with_state(plan);
    tokio::spawn(async move {
        axum_server::from_tcp_rustls(listener, config)
            .serve(app.into_make_service())
            .await
            .unwrap();
    });
    (format!("https://{addr}"), cert.pem())
}

pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
