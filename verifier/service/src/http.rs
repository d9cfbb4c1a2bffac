//! The HTTP surface: routes, JSON errors, admin authentication, body limit
//! and timeouts. Handlers only translate; decisions are `Service`'s.

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

use crate::api::{ApiError, AttestRequest, ErrorKind};
use crate::clock;
use crate::service::Service;

/// Largest request body accepted.
pub const MAX_BODY: usize = 256 * 1024;
/// Longest a request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self.kind {
            ErrorKind::Malformed => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Denied => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        let mut response = (status, Json(self.body())).into_response();
        if self.kind == ErrorKind::Unauthorized {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"attest-gate-admin\""),
            );
        }
        response
    }
}

/// A JSON body that failed to parse or was too large, as our error shape.
fn body_error(rejection: &JsonRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            ErrorKind::TooLarge,
            "body_too_large",
            format!("request bodies are limited to {MAX_BODY} bytes"),
        );
    }
    ApiError::malformed("malformed_request", rejection.body_text())
}

/// Every route.
pub fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route("/v1/challenge", post(challenge))
        .route("/v1/attest", post(attest))
        .route("/v1/bundle", get(bundle))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/v1/admin/reload", post(reload))
        .route("/v1/admin/rotate-signing-key", post(rotate))
        .route("/healthz", get(health))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal("a request handler panicked").into_response()
        }))
        .layer(axum::middleware::map_response(json_for_bare_errors))
        .layer(TraceLayer::new_for_http())
        .with_state(service)
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
    let (kind, code) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (ErrorKind::NotFound, "method_not_allowed"),
        StatusCode::REQUEST_TIMEOUT => (ErrorKind::Unavailable, "timeout"),
        _ => (ErrorKind::Malformed, "bad_request"),
    };
    let mut fixed =
        ApiError::new(kind, code, status.canonical_reason().unwrap_or("error")).into_response();
    *fixed.status_mut() = status;
    fixed
}

async fn challenge(State(service): State<Arc<Service>>) -> Response {
    match service.challenge(clock::now()) {
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
    let decided = tokio::spawn(async move { service.attest(request, clock::now()).await }).await;
    match decided {
        Ok(Ok(r)) => Json(r).into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

async fn bundle(State(service): State<Arc<Service>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        service.bundle_pem(),
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

async fn health() -> Response {
    Json(serde_json::json!({"status": "ok"})).into_response()
}

async fn not_found() -> Response {
    ApiError::new(ErrorKind::NotFound, "not_found", "no such endpoint").into_response()
}

/// The bearer token, if the request carries one and it is the admin token.
fn require_admin(service: &Service, headers: &HeaderMap) -> Result<(), ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(token) if service.is_admin(token) => Ok(()),
        _ => Err(ApiError::new(
            ErrorKind::Unauthorized,
            "unauthorized",
            "admin endpoints need `Authorization: Bearer <admin token>`",
        )),
    }
}

async fn reload(State(service): State<Arc<Service>>, headers: HeaderMap) -> Response {
    if let Err(e) = require_admin(&service, &headers) {
        return e.into_response();
    }
    match service.reload(clock::now()).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn rotate(State(service): State<Arc<Service>>, headers: HeaderMap) -> Response {
    if let Err(e) = require_admin(&service, &headers) {
        return e.into_response();
    }
    match service.rotate_signing_key(clock::now()).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}
