//! The secret endpoints: the admin API that stores, lists and retires
//! secrets, and the agent's `GET` / `POST /v1/secrets/{name}` with its
//! DPoP-bound token (`Authorization: DPoP <token>`, RFC 9449 §7.1) and one
//! `DPoP` proof. Decisions are the service's (`service/release.rs`).

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{body_error, require_admin, with_dpop_nonce};
use crate::api::PutSecretRequest;
use crate::service::Service;

/// The token of `Authorization: DPoP <token>`.
pub(super) fn dpop_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("DPoP")
        .then(|| token.trim().to_string())
}

/// Exactly one `DPoP` header (RFC 9449 §4.3).
pub(super) fn single_proof(headers: &HeaderMap) -> Option<String> {
    let mut proofs = headers.get_all("dpop").iter();
    match (proofs.next(), proofs.next()) {
        (Some(one), None) => one.to_str().ok().map(str::to_string),
        _ => None,
    }
}

pub(super) async fn put(
    State(service): State<Arc<Service>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Json<PutSecretRequest>, JsonRejection>,
) -> Response {
    if let Err(e) = require_admin(&service, &headers) {
        return e.into_response();
    }
    let body = match body {
        Ok(Json(b)) => b,
        Err(rejection) => return body_error(&rejection).into_response(),
    };
    match service.put_secret(&name, &body, service.now()).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

pub(super) async fn list(State(service): State<Arc<Service>>, headers: HeaderMap) -> Response {
    if let Err(e) = require_admin(&service, &headers) {
        return e.into_response();
    }
    match service.list_secrets().await {
        Ok(v) => Json(serde_json::json!({"secrets": v})).into_response(),
        Err(e) => e.into_response(),
    }
}

pub(super) async fn retire(
    State(service): State<Arc<Service>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = require_admin(&service, &headers) {
        return e.into_response();
    }
    match service.retire_secret(&name, service.now()).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

pub(super) async fn release(
    State(service): State<Arc<Service>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let now = service.now();
    let (token, proof) = (dpop_token(&headers), single_proof(&headers));
    // Its own task, as attestation: a client that hangs up cannot cut a
    // decision (and its audit record) in half.
    let this = Arc::clone(&service);
    let decided = tokio::spawn(async move {
        this.release_secret(&name, token.as_deref(), proof.as_deref(), now)
            .await
    })
    .await;
    let response = match decided {
        Ok(Ok(r)) => Json(r).into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(e) => crate::error::ServiceError::internal(e).into_response(),
    };
    with_dpop_nonce(&service, now, response)
}

pub(super) async fn metadata(
    State(service): State<Arc<Service>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let now = service.now();
    let (token, proof) = (dpop_token(&headers), single_proof(&headers));
    let response = match service
        .secret_metadata(&name, token.as_deref(), proof.as_deref(), now)
        .await
    {
        Ok(r) => Json(r).into_response(),
        Err(e) => e.into_response(),
    };
    with_dpop_nonce(&service, now, response)
}
