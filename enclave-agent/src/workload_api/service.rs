//! The five Workload API RPCs over the current [`Identity`].
//!
//! Every call must carry `workload.spiffe.io: true` (else
//! `InvalidArgument`, as the specification requires). Without an identity
//! (not yet issued, expired, revoked) calls are refused with
//! `PermissionDenied`, the specification's "no identity issued", and open
//! streams end with it. Streams send a message at once and again whenever
//! what they carry changes (a renewed SVID, a rotated key).

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tonic::{Request, Response, Status};

use super::identity::Identity;
use super::jwt;
use super::pb;
use super::pb::spiffe_workload_api_server::{SpiffeWorkloadApi, SpiffeWorkloadApiServer};
use super::SECURITY_HEADER;
use crate::client::{refusal, ClientError, VerifierClient};
use crate::socket::Responder;

/// The verifier's JWT-SVID endpoint, under its URL.
pub(crate) const JWT_SVID_PATH: &str = "/v1/jwt-svid";

/// The Workload API service.
pub struct WorkloadApi {
    identities: watch::Receiver<Option<Arc<Identity>>>,
    client: VerifierClient,
    responder: Arc<Responder>,
    /// The last `DPoP-Nonce` the verifier handed out.
    dpop_nonce: Mutex<Option<String>>,
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn no_identity() -> Status {
    Status::permission_denied(
        "no identity issued: this agent holds no attested credential \
         (not yet issued, expired or revoked)",
    )
}

/// The specification's mandatory metadata.
fn check_header<T>(request: &Request<T>) -> Result<(), Status> {
    match request.metadata().get(SECURITY_HEADER) {
        Some(v) if v.as_bytes() == b"true" => Ok(()),
        _ => Err(Status::invalid_argument(
            "security header missing from request",
        )),
    }
}

type Stream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

impl WorkloadApi {
    /// Serves the identities published on `identities`; JWT-SVIDs come from
    /// `client`, under proofs by `responder`.
    pub fn new(
        identities: watch::Receiver<Option<Arc<Identity>>>,
        client: VerifierClient,
        responder: Arc<Responder>,
    ) -> Self {
        Self {
            identities,
            client,
            responder,
            dpop_nonce: Mutex::new(None),
        }
    }

    fn current(&self) -> Result<Arc<Identity>, Status> {
        self.identities
            .borrow()
            .clone()
            .filter(|i| i.expires_at > now_unix())
            .ok_or_else(no_identity)
    }

    /// A stream of `make(identity)`: now, on every change of it, and
    /// `PermissionDenied` (then the end) once no identity is served.
    fn stream<T>(&self, make: fn(&Identity) -> T) -> Result<Stream<T>, Status>
    where
        T: Clone + PartialEq + Send + 'static,
    {
        let mut identities = self.identities.clone();
        let first = identities
            .borrow_and_update()
            .clone()
            .filter(|i| i.expires_at > now_unix())
            .ok_or_else(no_identity)?;
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut last = make(&first);
            drop(first);
            if tx.send(Ok(last.clone())).await.is_err() {
                return;
            }
            loop {
                tokio::select! {
                    changed = identities.changed() => {
                        if changed.is_err() {
                            let _ = tx.send(Err(no_identity())).await;
                            return;
                        }
                    }
                    () = tx.closed() => return,
                }
                let now = identities.borrow_and_update().clone();
                let Some(identity) = now else {
                    let _ = tx.send(Err(no_identity())).await;
                    return;
                };
                let message = make(&identity);
                if message != last {
                    if tx.send(Ok(message.clone())).await.is_err() {
                        return;
                    }
                    last = message;
                }
            }
        });
        Ok(Box::pin(ReceiverStream::new(rx)))
    }

    /// `POST /v1/jwt-svid` under the identity's token, with RFC 9449's
    /// nonce round: the JWT-SVID and its SPIFFE ID.
    async fn jwt_svid(
        &self,
        identity: &Identity,
        audience: &[String],
    ) -> Result<(String, String), Status> {
        let htu = format!("{}{JWT_SVID_PATH}", self.client.base());
        let body = json!({ "audience": audience });
        let mut retried = false;
        loop {
            let nonce = self
                .dpop_nonce
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            let proof = self
                .responder
                .proof("POST", &htu, &identity.token, nonce.as_deref())
                .map_err(Status::internal)?;
            let sent = self
                .client
                .with_token(
                    reqwest::Method::POST,
                    JWT_SVID_PATH,
                    &identity.token,
                    &proof,
                    Some(&body),
                )
                .await;
            let (status, answer, fresh) = sent.map_err(|e| {
                Status::unavailable(format!("cannot reach the verifier for a JWT-SVID: {e}"))
            })?;
            if fresh.is_some() {
                *self
                    .dpop_nonce
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
            }
            let code = answer.pointer("/error/code").and_then(Value::as_str);
            if code == Some("use_dpop_nonce") && !retried {
                retried = true;
                continue;
            }
            return jwt_svid_answer(status, &answer, &identity.spiffe_id);
        }
    }
}

/// The verifier's answer to `POST /v1/jwt-svid` as a JWT-SVID, or the gRPC
/// status for its refusal.
fn jwt_svid_answer(status: u16, answer: &Value, ours: &str) -> Result<(String, String), Status> {
    if status == 200 {
        let token = answer.get("token").and_then(Value::as_str);
        let spiffe_id = answer.get("spiffe_id").and_then(Value::as_str);
        return match (token, spiffe_id) {
            (Some(token), Some(id)) if id == ours => Ok((id.to_string(), token.to_string())),
            (Some(_), Some(_)) => Err(Status::internal(
                "the verifier issued a JWT-SVID for another SPIFFE ID",
            )),
            _ => Err(Status::internal(
                "the verifier's JWT-SVID answer has no token or SPIFFE ID",
            )),
        };
    }
    let (code, message) = match refusal(status, answer) {
        ClientError::Refused { code, message, .. } => (code, message),
        other => ("unknown".to_string(), other.to_string()),
    };
    let text = format!("the verifier refused a JWT-SVID ({status} {code}): {message}");
    Err(match status {
        404 if code == "not_found" => Status::unavailable(
            "this verifier does not issue JWT-SVIDs (POST /v1/jwt-svid answered 404)",
        ),
        400 | 422 => Status::invalid_argument(text),
        401 | 403 => Status::permission_denied(text),
        408 | 429 | 500..=599 => Status::unavailable(text),
        _ => Status::permission_denied(text),
    })
}

fn x509_svid_response(identity: &Identity) -> pb::X509svidResponse {
    pb::X509svidResponse {
        svids: vec![pb::X509svid {
            spiffe_id: identity.spiffe_id.clone(),
            x509_svid: identity.svid_chain.clone(),
            x509_svid_key: identity.svid_key.to_vec(),
            bundle: identity.x509_bundle.clone(),
            hint: String::new(),
        }],
        crl: Vec::new(),
        federated_bundles: Default::default(),
    }
}

fn x509_bundles_response(identity: &Identity) -> pb::X509BundlesResponse {
    pb::X509BundlesResponse {
        crl: Vec::new(),
        bundles: [(identity.trust_domain.clone(), identity.x509_bundle.clone())].into(),
    }
}

fn jwt_bundles_response(identity: &Identity) -> pb::JwtBundlesResponse {
    pb::JwtBundlesResponse {
        bundles: [(
            identity.trust_domain.clone(),
            identity.jwt_bundle.document().to_vec(),
        )]
        .into(),
    }
}

#[tonic::async_trait]
impl SpiffeWorkloadApi for WorkloadApi {
    type FetchX509SVIDStream = Stream<pb::X509svidResponse>;
    type FetchX509BundlesStream = Stream<pb::X509BundlesResponse>;
    type FetchJWTBundlesStream = Stream<pb::JwtBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        request: Request<pb::X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        check_header(&request)?;
        self.stream(x509_svid_response).map(Response::new)
    }

    async fn fetch_x509_bundles(
        &self,
        request: Request<pb::X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        check_header(&request)?;
        self.stream(x509_bundles_response).map(Response::new)
    }

    async fn fetch_jwtsvid(
        &self,
        request: Request<pb::JwtsvidRequest>,
    ) -> Result<Response<pb::JwtsvidResponse>, Status> {
        check_header(&request)?;
        let identity = self.current()?;
        let request = request.into_inner();
        if request.audience.is_empty() || request.audience.iter().any(String::is_empty) {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        if !request.spiffe_id.is_empty() && request.spiffe_id != identity.spiffe_id {
            return Err(Status::permission_denied(
                "no identity issued for the requested SPIFFE ID",
            ));
        }
        let (spiffe_id, svid) = self.jwt_svid(&identity, &request.audience).await?;
        Ok(Response::new(pb::JwtsvidResponse {
            svids: vec![pb::Jwtsvid {
                spiffe_id,
                svid,
                hint: String::new(),
            }],
        }))
    }

    async fn fetch_jwt_bundles(
        &self,
        request: Request<pb::JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        check_header(&request)?;
        self.stream(jwt_bundles_response).map(Response::new)
    }

    async fn validate_jwtsvid(
        &self,
        request: Request<pb::ValidateJwtsvidRequest>,
    ) -> Result<Response<pb::ValidateJwtsvidResponse>, Status> {
        check_header(&request)?;
        let identity = self.current()?;
        let request = request.into_inner();
        if request.audience.is_empty() {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        if request.svid.is_empty() {
            return Err(Status::invalid_argument("svid must be specified"));
        }
        let (spiffe_id, claims) = jwt::validate(
            &request.svid,
            &request.audience,
            &identity.jwt_bundle,
            &identity.trust_domain,
            now_unix(),
        )
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(pb::ValidateJwtsvidResponse {
            spiffe_id,
            claims: Some(jwt::to_struct(claims)),
        }))
    }
}

/// Serves `api` on `listener` until `stop` fires (or is dropped).
pub(super) async fn serve(
    listener: UnixListener,
    api: WorkloadApi,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    use tokio_stream::StreamExt;
    // Each connection through the `:authority` relay (authority.rs).
    let incoming =
        UnixListenerStream::new(listener).map(|accepted| accepted.map(super::authority::relay));
    let served = tonic::transport::Server::builder()
        .add_service(SpiffeWorkloadApiServer::new(api))
        .serve_with_incoming_shutdown(incoming, async {
            let _ = stop.await;
        })
        .await;
    if let Err(e) = served {
        eprintln!("enclave-agent: workload API: {e}");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const OURS: &str = "spiffe://attest-gate.test/inference/k";

    #[test]
    fn the_security_header_is_required() {
        let missing = Request::new(());
        assert_eq!(
            check_header(&missing).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let mut wrong = Request::new(());
        wrong
            .metadata_mut()
            .insert(SECURITY_HEADER, "yes".parse().unwrap());
        assert_eq!(
            check_header(&wrong).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let mut right = Request::new(());
        right
            .metadata_mut()
            .insert(SECURITY_HEADER, "true".parse().unwrap());
        assert!(check_header(&right).is_ok());
    }

    #[test]
    fn verifier_answers_map_to_grpc_statuses() {
        let ok = json!({"token": "a.b.c", "spiffe_id": OURS, "expires_in": 300, "jti": "j"});
        assert_eq!(
            jwt_svid_answer(200, &ok, OURS).unwrap(),
            (OURS.to_string(), "a.b.c".to_string())
        );
        let other = json!({"token": "a.b.c", "spiffe_id": "spiffe://x/y"});
        assert_eq!(
            jwt_svid_answer(200, &other, OURS).unwrap_err().code(),
            tonic::Code::Internal
        );
        assert_eq!(
            jwt_svid_answer(200, &json!({}), OURS).unwrap_err().code(),
            tonic::Code::Internal
        );
        let refusal = |status, code: &str| {
            jwt_svid_answer(
                status,
                &json!({"error": {"code": code, "message": "m"}}),
                OURS,
            )
            .unwrap_err()
            .code()
        };
        assert_eq!(refusal(404, "not_found"), tonic::Code::Unavailable);
        assert_eq!(
            refusal(403, "audience_not_allowed"),
            tonic::Code::PermissionDenied
        );
        assert_eq!(refusal(401, "revoked"), tonic::Code::PermissionDenied);
        assert_eq!(
            refusal(400, "malformed_request"),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            refusal(503, "storage_unavailable"),
            tonic::Code::Unavailable
        );
        assert_eq!(refusal(429, "rate_limited"), tonic::Code::Unavailable);
    }
}
