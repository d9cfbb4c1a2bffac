//! The HTTP surface: routes, JSON errors, admin authentication, body limit
//! and timeouts. Handlers only translate; decisions are `Service`'s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use axum::extract::Query;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::api::{
    AttestRequest, ClientRequest, DryRunRequest, ExchangeRequest, IntrospectRequest,
    JwtSvidRequest, LiftRequest, ReappraiseRequest, RevokeRequest,
};
use crate::error::{ErrorCode, ServiceCode, ServiceError};
use crate::ratelimit::Endpoint;
use crate::revocation::Mode;
use crate::service::Service;
use crate::store::AuditQuery;

mod secrets;

/// Largest request body accepted.
pub(crate) const MAX_BODY: usize = 256 * 1024;
/// Longest a request may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        let code = self.code();
        let mut response = (code.status(), Json(self.body())).into_response();
        let challenge = match code {
            ErrorCode::Service(ServiceCode::InvalidDpopProof | ServiceCode::InvalidToken) => {
                header::HeaderValue::from_str(&format!(
                    "DPoP error=\"{code}\", algs=\"ES256 ES384 EdDSA\""
                ))
                .ok()
            }
            ErrorCode::Service(ServiceCode::Unauthorized) => Some(
                header::HeaderValue::from_static("Bearer realm=\"attest-gate-admin\""),
            ),
            _ => None,
        };
        if let Some(value) = challenge {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        if let Some(seconds) = self.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
        response
    }
}

/// A JSON body that failed to parse or was too large, as our error shape.
fn body_error(rejection: &JsonRejection) -> ServiceError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ServiceError::new(
            ServiceCode::BodyTooLarge,
            format!("request bodies are limited to {MAX_BODY} bytes"),
        );
    }
    ServiceError::new(ServiceCode::MalformedRequest, rejection.body_text())
}

/// Every route.
pub fn router(service: Arc<Service>) -> Router {
    let routes = Router::new()
        .route("/v1/challenge", post(challenge))
        .route("/v1/attest", post(attest))
        .route("/v1/bundle", get(bundle))
        .route("/v1/bundle/spiffe", get(spiffe_bundle))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/.well-known/openid-configuration", get(discovery))
        .route(crate::service::EXCHANGE_PATH, post(exchange))
        .route(crate::service::JWT_SVID_PATH, post(jwt_svid))
        .route("/v1/introspect", post(introspect))
        .route("/v1/revocations", get(revocations))
        .route("/metrics", get(metrics))
        .route("/v1/admin/reload", post(reload))
        .route("/v1/admin/rotate-signing-key", post(rotate))
        .route("/v1/admin/revoke", post(revoke))
        .route("/v1/admin/lift", post(lift))
        .route("/v1/admin/clients", post(add_client))
        .route("/v1/admin/reappraise", post(reappraise))
        .route("/v1/admin/policy/dry-run", post(dry_run))
        .route("/v1/admin/audit", get(audit))
        .route("/v1/admin/secrets", get(secrets::list))
        .route(
            "/v1/admin/secrets/{name}",
            axum::routing::put(secrets::put).delete(secrets::retire),
        )
        .route(
            "/v1/secrets/{name}",
            post(secrets::release).get(secrets::metadata),
        )
        .route("/healthz", get(health))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&service),
            limit_by_address,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY));
    with_error_shape(routes, REQUEST_TIMEOUT)
        .layer(TraceLayer::new_for_http())
        .with_state(service)
}

/// The layers that answer for a handler that overran `timeout` (408
/// `timeout`) or panicked (500 `internal_error`), and give the bare errors
/// of axum and tower their JSON shape.
fn with_error_shape<S: Clone + Send + Sync + 'static>(
    routes: Router<S>,
    timeout: std::time::Duration,
) -> Router<S> {
    routes
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            ServiceError::internal("a request handler panicked").into_response()
        }))
        .layer(axum::middleware::map_response(json_for_bare_errors))
        .layer(axum::middleware::from_fn(close_after_refused_body))
}

/// A refusal of a request that carried a body closes the connection and
/// says so (`Connection: close`). The refusal may have come before the
/// body was read (bad credentials, a wrong content type, too large), and
/// the HTTP server then closes the connection anyway: unannounced, a
/// client that reuses its connections sends its next request into the
/// close and gets a broken connection instead of an answer.
async fn close_after_refused_body(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let has_body = request.headers().contains_key(header::TRANSFER_ENCODING)
        || request
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() != b"0");
    let mut response = next.run(request).await;
    let status = response.status();
    if has_body && (status.is_client_error() || status.is_server_error()) {
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    response
}

/// Per-address limits on the endpoints anyone can call, before the body is
/// read or anything is decided. The address is the TCP peer's (or, behind a
/// trusted proxy, the one it forwards); a router served without connection
/// info (in-process tests) has none and is limited per key and client only.
async fn limit_by_address(
    State(service): State<Arc<Service>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    let endpoint = match path {
        "/v1/challenge" => Some(Endpoint::Challenge),
        "/v1/attest" => Some(Endpoint::Attest),
        "/v1/introspect" => Some(Endpoint::Introspect),
        "/v1/revocations" => Some(Endpoint::Revocations),
        _ if path == crate::service::EXCHANGE_PATH => Some(Endpoint::Exchange),
        _ if path == crate::service::JWT_SVID_PATH => Some(Endpoint::JwtSvid),
        _ if path.starts_with(crate::service::SECRETS_PATH) => Some(Endpoint::Secrets),
        _ => None,
    };
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    if let (Some(endpoint), Some(peer)) = (endpoint, peer) {
        let client = service.client_address(peer, request.headers());
        if let Err(e) = service.limit_address(endpoint, client) {
            return e.into_response();
        }
    }
    next.run(request).await
}

/// Responses made by axum or tower themselves (405, 408) have no body; give
/// them the API's JSON error shape.
async fn json_for_bare_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let code = match status {
        StatusCode::METHOD_NOT_ALLOWED => ServiceCode::MethodNotAllowed,
        StatusCode::REQUEST_TIMEOUT => ServiceCode::Timeout,
        // A body over the limit read by an extractor of axum's own (the
        // introspection form); JSON bodies say so themselves.
        StatusCode::PAYLOAD_TOO_LARGE => ServiceCode::BodyTooLarge,
        _ => ServiceCode::BadRequest,
    };
    let mut fixed =
        ServiceError::new(code, status.canonical_reason().unwrap_or("error")).into_response();
    *fixed.status_mut() = status;
    fixed
}

async fn challenge(State(service): State<Arc<Service>>) -> Response {
    match service.challenge(service.now()) {
        Ok(c) => Json(c).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn attest(
    State(service): State<Arc<Service>>,
    body: Result<Json<AttestRequest>, JsonRejection>,
) -> Response {
    let request = match body {
        Ok(Json(r)) => r,
        Err(rejection) => return body_error(&rejection).into_response(),
    };
    // Its own task: a client that hangs up cannot cut a decision (and its
    // audit record) in half once the nonce is consumed.
    let decided = tokio::spawn(async move { service.attest(request, service.now()).await }).await;
    match decided {
        Ok(Ok(r)) => Json(r).into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(e) => ServiceError::internal(e).into_response(),
    }
}

async fn bundle(State(service): State<Arc<Service>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        service.bundle_pem(),
    )
        .into_response()
}

async fn spiffe_bundle(State(service): State<Arc<Service>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        Json(service.spiffe_bundle()),
    )
        .into_response()
}

async fn jwks(State(service): State<Arc<Service>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/jwk-set+json")],
        Json(service.jwks()),
    )
        .into_response()
}

async fn discovery(State(service): State<Arc<Service>>) -> Response {
    Json(service.discovery()).into_response()
}

/// The API's OpenAPI 3.1 document, `docs/openapi.json` as built in (tests
/// hold it to the routes and codes; Schemathesis to the responses).
pub const OPENAPI_DOCUMENT: &str = include_str!("../../../docs/openapi.json");

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        OPENAPI_DOCUMENT,
    )
        .into_response()
}

async fn health() -> Response {
    Json(serde_json::json!({"status": "ok"})).into_response()
}

async fn not_found() -> Response {
    ServiceError::new(ServiceCode::NotFound, "no such endpoint").into_response()
}

/// The bearer token, if the request carries one and it is the admin token.
fn require_admin(service: &Service, headers: &HeaderMap) -> Result<(), ServiceError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(token) if service.is_admin(token) => Ok(()),
        _ => Err(ServiceError::new(
            ServiceCode::Unauthorized,
            "admin endpoints need `Authorization: Bearer <admin token>`",
        )),
    }
}

async fn reload(State(service): State<Arc<Service>>, headers: HeaderMap) -> Response {
    if let Err(e) = require_admin(&service, &headers) {
        return e.into_response();
    }
    match service.reload(service.now()).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn rotate(State(service): State<Arc<Service>>, headers: HeaderMap) -> Response {
    if let Err(e) = require_admin(&service, &headers) {
        return e.into_response();
    }
    match service.rotate_signing_key(service.now()).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Admin JSON endpoints: authenticate, parse, answer.
macro_rules! admin_json {
    ($service:ident, $headers:ident, $body:ident, $call:expr) => {{
        if let Err(e) = require_admin(&$service, &$headers) {
            return e.into_response();
        }
        let $body = match $body {
            Ok(Json(b)) => b,
            Err(rejection) => return body_error(&rejection).into_response(),
        };
        match $call {
            Ok(v) => Json(v).into_response(),
            Err(e) => e.into_response(),
        }
    }};
}

async fn revoke(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: Result<Json<RevokeRequest>, JsonRejection>,
) -> Response {
    admin_json!(
        service,
        headers,
        body,
        service.revoke(&body, service.now()).await
    )
}

async fn lift(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: Result<Json<LiftRequest>, JsonRejection>,
) -> Response {
    admin_json!(
        service,
        headers,
        body,
        service.lift(&body.id, service.now()).await
    )
}

async fn add_client(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: Result<Json<ClientRequest>, JsonRejection>,
) -> Response {
    admin_json!(
        service,
        headers,
        body,
        service.add_client(&body.client_id, service.now()).await
    )
}

async fn reappraise(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: Result<Json<ReappraiseRequest>, JsonRejection>,
) -> Response {
    admin_json!(service, headers, body, {
        match body.mode.parse::<Mode>() {
            Ok(mode) => service.reappraise(mode, service.now()).await,
            Err(e) => Err(ServiceError::new(
                ServiceCode::MalformedRequest,
                e.to_string(),
            )),
        }
    })
}

async fn dry_run(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: Result<Json<DryRunRequest>, JsonRejection>,
) -> Response {
    admin_json!(
        service,
        headers,
        body,
        service.dry_run(&body, service.now()).await
    )
}

/// `GET /v1/admin/audit` query.
#[derive(Debug, serde::Deserialize)]
struct AuditParams {
    since: Option<i64>,
    after_seq: Option<i64>,
    action: Option<String>,
    limit: Option<i64>,
}

async fn audit(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    Query(params): Query<AuditParams>,
) -> Response {
    if let Err(e) = require_admin(&service, &headers) {
        return e.into_response();
    }
    let query = AuditQuery {
        since: params.since,
        after_seq: params.after_seq,
        action: params.action,
        limit: params.limit.unwrap_or(100).clamp(1, 1000),
    };
    match service.audit_log(&query).await {
        Ok(records) => Json(records).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn exchange(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: Result<Json<ExchangeRequest>, JsonRejection>,
) -> Response {
    let now = service.now();
    let response = match body {
        Err(rejection) => body_error(&rejection).into_response(),
        Ok(Json(request)) => {
            // RFC 9449 §4.3: exactly one proof.
            let mut proofs = headers.get_all("dpop").iter();
            let proof = match (proofs.next(), proofs.next()) {
                (Some(one), None) => one.to_str().ok(),
                _ => None,
            };
            // Its own task, as attestation: a client that hangs up cannot
            // cut a decision (and its audit record) in half.
            let proof = proof.map(str::to_string);
            let this = Arc::clone(&service);
            let decided =
                tokio::spawn(async move { this.exchange(&request, proof.as_deref(), now).await })
                    .await;
            match decided {
                Ok(Ok(r)) => Json(r).into_response(),
                Ok(Err(e)) => e.into_response(),
                Err(e) => ServiceError::internal(e).into_response(),
            }
        }
    };
    with_dpop_nonce(&service, now, response)
}

/// `POST /v1/jwt-svid`: the agent's DPoP-bound token and one proof, as a
/// secret release; the body names the audiences.
async fn jwt_svid(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: Result<Json<JwtSvidRequest>, JsonRejection>,
) -> Response {
    let now = service.now();
    let response = match body {
        Err(rejection) => body_error(&rejection).into_response(),
        Ok(Json(request)) => {
            let (token, proof) = (
                secrets::dpop_token(&headers),
                secrets::single_proof(&headers),
            );
            // Its own task, as attestation: a client that hangs up cannot
            // cut a decision (and its audit record) in half.
            let this = Arc::clone(&service);
            let decided = tokio::spawn(async move {
                this.jwt_svid(&request, token.as_deref(), proof.as_deref(), now)
                    .await
            })
            .await;
            match decided {
                Ok(Ok(r)) => Json(r).into_response(),
                Ok(Err(e)) => e.into_response(),
                Err(e) => ServiceError::internal(e).into_response(),
            }
        }
    };
    with_dpop_nonce(&service, now, response)
}

/// Every answer of a DPoP endpoint carries a fresh server nonce (RFC 9449
/// §8) and is not to be cached.
fn with_dpop_nonce(
    service: &Service,
    now: time::OffsetDateTime,
    mut response: Response,
) -> Response {
    if let Some(v) = service
        .dpop_nonce(now)
        .and_then(|n| header::HeaderValue::from_str(&n).ok())
    {
        response.headers_mut().insert("dpop-nonce", v);
    }
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

/// HTTP Basic credentials (RFC 7617) of a relying party.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

async fn introspect(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let unauthorized = || {
        let mut r = ServiceError::new(
            ServiceCode::InvalidClient,
            "introspection needs a registered relying party's HTTP Basic credentials",
        )
        .into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"attest-gate-introspection\""),
        );
        r
    };
    let Some((client, secret)) = basic_credentials(&headers) else {
        return unauthorized();
    };
    match service.client_authenticates(&client, &secret).await {
        Ok(true) => {}
        Ok(false) => return unauthorized(),
        Err(e) => return e.into_response(),
    }
    if let Err(e) = service.limit_client(&client) {
        return e.into_response();
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let parsed: Result<IntrospectRequest, String> = if is_json {
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    } else {
        serde_urlencoded::from_bytes(&body).map_err(|e| e.to_string())
    };
    match parsed {
        Err(e) => ServiceError::new(ServiceCode::MalformedRequest, e).into_response(),
        Ok(req) => match service.introspect(&client, &req.token, service.now()).await {
            Ok(v) => Json(v).into_response(),
            Err(e) => e.into_response(),
        },
    }
}

/// `GET /v1/revocations` query.
#[derive(Debug, serde::Deserialize)]
struct Since {
    since: Option<i64>,
}

async fn revocations(State(service): State<Arc<Service>>, Query(q): Query<Since>) -> Response {
    match service
        .revocation_list(q.since.unwrap_or(0), service.now())
        .await
    {
        Ok(jws) => ([(header::CONTENT_TYPE, "application/jwt")], jws).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn metrics(State(service): State<Arc<Service>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        service.metrics_text(service.now()).await,
    )
        .into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    /// The error a request to `path` gets from routes behind the error layers.
    async fn error_of(path: &str) -> (StatusCode, serde_json::Value) {
        let routes: Router = Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .route(
                "/panics",
                get(|| async {
                    if true {
                        panic!("handler bug");
                    }
                    "unreachable"
                }),
            )
            .route("/query", get(|Query(_): Query<Since>| async { "fine" }))
            .route(
                "/body",
                get(|_: axum::body::Bytes| async { "fine" }).layer(DefaultBodyLimit::max(8)),
            );
        let response = with_error_shape(routes, std::time::Duration::from_millis(20))
            .oneshot(
                axum::http::Request::get(path)
                    .body(axum::body::Body::from(vec![b'x'; 64]))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn a_refused_request_with_a_body_closes_its_connection_and_says_so() {
        let routes: Router = Router::new().route(
            "/refuses",
            axum::routing::post(|| async { StatusCode::UNAUTHORIZED }),
        );
        let call = |body: &'static [u8]| {
            let routes = with_error_shape(routes.clone(), std::time::Duration::from_secs(5));
            async move {
                let request = axum::http::Request::post("/refuses")
                    .header(header::CONTENT_LENGTH, body.len())
                    .body(axum::body::Body::from(body))
                    .unwrap();
                let response = routes.oneshot(request).await.unwrap();
                response.headers().get(header::CONNECTION).cloned()
            }
        };
        assert_eq!(call(b"{\"mode\":\"immediate\"}").await.unwrap(), "close");
        assert_eq!(call(b"").await, None, "no body, nothing left unread");
    }

    #[tokio::test]
    async fn an_overrun_a_panic_a_bad_query_and_a_large_body_get_their_codes() {
        for (path, status, code) in [
            ("/slow", StatusCode::REQUEST_TIMEOUT, "timeout"),
            (
                "/panics",
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
            ),
            ("/query?since=soon", StatusCode::BAD_REQUEST, "bad_request"),
            ("/body", StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
        ] {
            let (got, body) = error_of(path).await;
            assert_eq!(
                (got, body["error"]["code"].as_str()),
                (status, Some(code)),
                "{path}: {body}"
            );
        }
    }
}
