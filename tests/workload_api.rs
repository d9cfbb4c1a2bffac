//! The SPIFFE Workload API of `enclave-agent run --workload-api-socket`,
//! driven by clients no one here wrote: the Rust `spiffe` crate, tonic's
//! generic gRPC client, rustls (mTLS between two workloads), and Python's
//! py-spiffe; JWT-SVIDs come from the verifier's `POST /v1/jwt-svid`. One
//! `verifier serve --dev` and one agent per TEE
//! (`--simulate nitro|tdx|snp`), started together to keep the run short.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use attest_gate_tests::{binary, workspace_root, RunningVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use serde_json::{json, Value};
use spiffe::{TrustDomain, WorkloadApiClient, X509Svid};

const AUDIENCE: &str = "https://rp.attest-gate.test";
const TEES: [&str; 3] = ["nitro", "tdx", "snp"];

/// A child process killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `enclave-agent run --simulate <tee> --workload-api-socket <dir>/<tee>/api.sock`
/// (the directory does not exist yet: the agent makes it 0700).
fn spawn_agent(
    verifier: &RunningVerifier,
    tee: &str,
    dir: &Path,
    extra: &[&str],
) -> (Running, PathBuf) {
    let socket = dir.join(tee).join("api.sock");
    let child = Command::new(binary("enclave-agent"))
        .args(["run", "--simulate", tee, "--verifier", &verifier.url])
        .arg("--ca-cert")
        .arg(verifier.cert())
        .arg("--model")
        .arg(workspace_root().join("testdata/models/example-model.txt"))
        .args(["--principal", "user:alice", "--audience", AUDIENCE])
        .args(["--scope", "inference:invoke", "--revocation-poll", "1"])
        .args(extra)
        .arg("--workload-api-socket")
        .arg(&socket)
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    (Running(child), socket)
}

fn endpoint(socket: &Path) -> String {
    format!("unix://{}", socket.display())
}

/// The first X.509-SVID the agent serves (it attests first: poll).
async fn first_svid(socket: &Path) -> X509Svid {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(client) = WorkloadApiClient::connect_to(endpoint(socket)).await {
            if let Ok(svid) = client.fetch_x509_svid().await {
                return svid;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no X.509-SVID on {}",
            socket.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The verifier's SVID root, DER, as `GET /v1/bundle` publishes it.
async fn published_root(verifier: &RunningVerifier) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    let pem = verifier
        .client()
        .get(format!("{}/v1/bundle", verifier.url))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    CertificateDer::pem_slice_iter(&pem)
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

/// The URI SANs of a certificate.
fn uri_sans(der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    cert.subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(u) => Some(u.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Verifies `end_entity` (+ `intermediates`) to one of `roots` for `usage`,
/// then requires its only URI SAN to be `expected`: what a SPIFFE peer
/// check does (SPIFFE X.509-SVID §5), in rustls's verifier traits below.
fn check_svid(
    roots: &[CertificateDer<'static>],
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    usage: webpki::KeyUsage,
    expected: &str,
) -> Result<(), rustls::Error> {
    let anchors: Vec<_> = roots
        .iter()
        .map(|r| webpki::anchor_from_trusted_cert(r).unwrap().to_owned())
        .collect();
    let cert = webpki::EndEntityCert::try_from(end_entity)
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    cert.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        intermediates,
        UnixTime::now(),
        usage,
        None,
        None,
    )
    .map_err(|e| rustls::Error::General(format!("chain: {e}")))?;
    let sans = uri_sans(end_entity);
    if sans != [expected] {
        return Err(rustls::Error::General(format!(
            "peer SPIFFE ID {sans:?}, expected {expected}"
        )));
    }
    Ok(())
}

/// rustls's peer check for SVIDs: the chain to the trust bundle, then the
/// peer's SPIFFE ID (no DNS names: SVIDs have none).
#[derive(Debug)]
struct SpiffePeer {
    roots: Vec<CertificateDer<'static>>,
    expected: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl SpiffePeer {
    fn new(bundle: &[CertificateDer<'static>], expected: &str) -> Arc<Self> {
        Arc::new(Self {
            roots: bundle.to_vec(),
            expected: expected.to_string(),
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        })
    }
}

impl rustls::client::danger::ServerCertVerifier for SpiffePeer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        check_svid(
            &self.roots,
            end_entity,
            intermediates,
            webpki::KeyUsage::server_auth(),
            &self.expected,
        )?;
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl rustls::server::danger::ClientCertVerifier for SpiffePeer {
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        check_svid(
            &self.roots,
            end_entity,
            intermediates,
            webpki::KeyUsage::client_auth(),
            &self.expected,
        )?;
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A workload's TLS identity: its chain and PKCS#8 key, as the Workload API
/// gave them (or forged, for the negative cases).
struct Tls {
    chain: Vec<CertificateDer<'static>>,
    key: Vec<u8>,
}

impl Tls {
    fn of(svid: &X509Svid) -> Self {
        Self {
            chain: svid
                .cert_chain()
                .iter()
                .map(|c| CertificateDer::from(c.as_ref().to_vec()))
                .collect(),
            key: svid.private_key().as_ref().to_vec(),
        }
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone()))
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// One TLS 1.3 handshake in memory: a server presenting `server` and
/// requiring a client SVID with `client_id`; a client presenting `client`
/// (if any) and requiring the server's SVID to be `server_id`.
fn handshake(
    bundle: &[CertificateDer<'static>],
    server: &Tls,
    client_id: &str,
    client: Option<&Tls>,
    server_id: &str,
) -> Result<(), rustls::Error> {
    let server_config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(SpiffePeer::new(bundle, client_id))
        .with_single_cert(server.chain.clone(), server.key())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(SpiffePeer::new(bundle, server_id));
    let client_config = match client {
        Some(tls) => builder
            .with_client_auth_cert(tls.chain.clone(), tls.key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let mut c = rustls::ClientConnection::new(
        Arc::new(client_config),
        ServerName::try_from("workload.invalid").unwrap(),
    )
    .unwrap();
    let mut s = rustls::ServerConnection::new(Arc::new(server_config)).unwrap();
    for _ in 0..10 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            s.read_tls(&mut buf.as_slice()).unwrap();
            s.process_new_packets()?;
        }
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            c.read_tls(&mut buf.as_slice()).unwrap();
            c.process_new_packets()?;
        }
        if !c.is_handshaking() && !s.is_handshaking() {
            // The server must have seen a client certificate.
            return match s.peer_certificates() {
                Some(_) => Ok(()),
                None => Err(rustls::Error::NoCertificatesPresented),
            };
        }
    }
    Err(rustls::Error::General(
        "the handshake did not finish".into(),
    ))
}

/// A self-signed "SVID" for `spiffe_id` under another root: same name,
/// another trust.
fn forged(spiffe_id: &str) -> Tls {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::URI(spiffe_id.try_into().unwrap())];
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    ];
    let cert = params.self_signed(&key).unwrap();
    Tls {
        chain: vec![cert.der().clone()],
        key: key.serialize_der(),
    }
}

/// A Workload API call without `workload.spiffe.io`, through tonic's
/// generic client: the status.
async fn call_without_security_header(socket: &Path) -> tonic::Status {
    let path = socket.to_path_buf();
    let channel = tonic::transport::Endpoint::from_static("http://workload-api.invalid")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    grpc.server_streaming(
        tonic::Request::new(()),
        tonic::codegen::http::uri::PathAndQuery::from_static("/SpiffeWorkloadAPI/FetchX509SVID"),
        codec,
    )
    .await
    .expect_err("a call without the security header must be refused")
}

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The python of the venv `.ci/run` makes (py-spiffe installed), if named.
fn py_spiffe_python() -> Option<String> {
    match std::env::var("ATTEST_GATE_JWCRYPTO_PYTHON") {
        Ok(python) => Some(python),
        Err(_) => {
            // CI must run the independent client, never skip it.
            assert!(
                std::env::var_os("CI").is_none(),
                "CI runs set ATTEST_GATE_JWCRYPTO_PYTHON (.ci/run installs py-spiffe)"
            );
            eprintln!(
                "SKIPPED py-spiffe: set ATTEST_GATE_JWCRYPTO_PYTHON to a python with `spiffe`"
            );
            None
        }
    }
}

/// py-spiffe against `socket`: its JSON report.
fn py_spiffe(python: &str, socket: &Path, jwt: bool) -> Value {
    let script = workspace_root().join("tests/python/workload_api.py");
    let out = Command::new(python)
        .arg(script)
        .arg(AUDIENCE)
        .arg(if jwt { "jwt" } else { "x509" })
        .env("SPIFFE_ENDPOINT_SOCKET", endpoint(socket))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "py-spiffe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn spiffe_libraries_get_attested_svids_from_the_workload_api() {
    let started = Instant::now();
    let verifier = RunningVerifier::start(&["--dev"]);
    let dir = tempfile::tempdir().unwrap();
    // The TDX agent's credential lives 6 s: it renews about 4 s in, and
    // the Workload API must push the new SVID on the open stream.
    let agents: Vec<(Running, PathBuf)> = TEES
        .iter()
        .map(|tee| {
            let extra: &[&str] = if *tee == "tdx" { &["--ttl", "6"] } else { &[] };
            spawn_agent(&verifier, tee, dir.path(), extra)
        })
        .collect();
    let root = published_root(&verifier).await;
    let td = TrustDomain::new("attest-gate.test").unwrap();

    // (a) Each TEE's SVID through the spiffe crate: the SPIFFE ID the
    // verifier named, a chain to the published root, the bundle.
    let mut svids = Vec::new();
    for (tee, (_, socket)) in TEES.iter().zip(&agents) {
        let svid = first_svid(socket).await;
        let id = svid.spiffe_id().to_string();
        assert!(
            id.starts_with(&format!("spiffe://attest-gate.test/example-{tee}-agent/")),
            "{tee}: {id}"
        );
        assert_eq!(mode_of(socket), 0o600);
        assert_eq!(mode_of(socket.parent().unwrap()), 0o700);
        let client = WorkloadApiClient::connect_to(endpoint(socket))
            .await
            .unwrap();
        let context = client.fetch_x509_context().await.unwrap();
        let bundle = context
            .bundle_set()
            .get(&td)
            .expect("the trust domain's bundle");
        let authorities: Vec<Vec<u8>> = bundle
            .authorities()
            .iter()
            .map(|c| c.as_ref().to_vec())
            .collect();
        assert_eq!(
            authorities,
            vec![root.clone()],
            "{tee}: the bundle is the SVID root"
        );
        let bundles = client.fetch_x509_bundles().await.unwrap();
        assert!(bundles.get(&td).is_some());
        let chain = Tls::of(&svid).chain;
        assert_eq!(uri_sans(&chain[0]), vec![id.clone()]);
        check_svid(
            &[CertificateDer::from(root.clone())],
            &chain[0],
            &chain[1..],
            webpki::KeyUsage::client_auth(),
            &id,
        )
        .unwrap_or_else(|e| panic!("{tee}: the SVID does not chain to the bundle: {e}"));
        // JWT bundles: the verifier's JWKS under the trust domain.
        let jwt_bundles = client.fetch_jwt_bundles().await.unwrap();
        let jwt_bundle = jwt_bundles.get(&td).expect("the trust domain's JWT bundle");
        assert!(jwt_bundle.jwt_authorities().next().is_some());
        // A JWT-SVID for the workload's audience (POST /v1/jwt-svid),
        // checked by the spiffe crate against the JWT bundle it fetched,
        // and by the agent's ValidateJWTSVID; another audience is refused.
        let jwt = client.fetch_jwt_svid([AUDIENCE], None).await.unwrap();
        assert_eq!(jwt.spiffe_id().to_string(), id);
        let checked = spiffe::JwtSvid::parse_and_validate(jwt.token(), &jwt_bundles, &[AUDIENCE])
            .unwrap_or_else(|e| panic!("{tee}: the spiffe crate refuses the JWT-SVID: {e}"));
        assert_eq!(checked.audience(), [AUDIENCE.to_string()]);
        let validated = client
            .validate_jwt_token(AUDIENCE, jwt.token())
            .await
            .unwrap();
        assert_eq!(validated.spiffe_id().to_string(), id);
        assert!(client
            .validate_jwt_token("https://other.invalid", jwt.token())
            .await
            .is_err());
        // An audience the workload file does not name: the verifier says no.
        let refused = client
            .fetch_jwt_svid(["https://not-allowed.invalid"], None)
            .await
            .unwrap_err();
        assert!(
            format!("{refused:?}").contains("PermissionDenied"),
            "{refused:?}"
        );
        // The security header is mandatory.
        let refused = call_without_security_header(socket).await;
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
        svids.push(svid);
    }
    eprintln!("workload_api: 3 TEEs served in {:?}", started.elapsed());
    use futures_util::StreamExt;
    let renewals = WorkloadApiClient::connect_to(endpoint(&agents[1].1))
        .await
        .unwrap();
    let mut renewals = renewals.stream_x509_svids().await.unwrap();
    let before = renewals.next().await.unwrap().unwrap();

    // (b) mTLS between two workloads with their Workload API SVIDs.
    let bundle = vec![CertificateDer::from(root.clone())];
    let (nitro, tdx) = (&svids[0], &svids[1]);
    let (nitro_id, tdx_id) = (nitro.spiffe_id().to_string(), tdx.spiffe_id().to_string());
    let (server, client) = (Tls::of(nitro), Tls::of(tdx));
    handshake(&bundle, &server, &tdx_id, Some(&client), &nitro_id)
        .expect("an mTLS handshake between two attested workloads");
    // No client SVID; a same-named SVID under another root; a peer that is
    // not the one expected (each side): all refused.
    assert!(handshake(&bundle, &server, &tdx_id, None, &nitro_id).is_err());
    let impostor = forged(&tdx_id);
    assert!(handshake(&bundle, &server, &tdx_id, Some(&impostor), &nitro_id).is_err());
    assert!(handshake(
        &bundle,
        &forged(&nitro_id),
        &tdx_id,
        Some(&client),
        &nitro_id
    )
    .is_err());
    let snp_id = svids[2].spiffe_id().to_string();
    assert!(handshake(&bundle, &server, &snp_id, Some(&client), &nitro_id).is_err());
    assert!(handshake(&bundle, &server, &tdx_id, Some(&client), &snp_id).is_err());

    // (d) Revoking the nitro agent's key ends its open stream with
    // PermissionDenied; new calls are refused; the agent exits 1.
    let client = WorkloadApiClient::connect_to(endpoint(&agents[0].1))
        .await
        .unwrap();
    let mut stream = client.stream_x509_svids().await.unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.spiffe_id().to_string(), nitro_id);
    let jkt = nitro_id.rsplit('/').next().unwrap();
    let revoke = json!({"kind": "key", "target": jkt, "mode": "immediate", "reason": "test"});
    let status = verifier
        .client()
        .post(format!("{}/v1/admin/revoke", verifier.url))
        .bearer_auth(verifier.admin_token())
        .json(&revoke)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let revoked_at = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await
        .expect("the stream ends after revocation");
    match ended {
        Some(Err(spiffe::WorkloadApiError::NoIdentityIssued)) => {}
        other => panic!("expected PermissionDenied (no identity issued), got {other:?}"),
    }
    eprintln!(
        "workload_api: stream ended {:?} after the revocation",
        revoked_at.elapsed()
    );
    let refused = match WorkloadApiClient::connect_to(endpoint(&agents[0].1)).await {
        Ok(client) => client.fetch_x509_svid().await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "a new call after revocation must be refused");
    let mut agents = agents.into_iter();
    let (mut nitro_agent, _) = agents.next().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(status) = nitro_agent.0.try_wait().unwrap() {
            break status.code();
        }
        assert!(Instant::now() < deadline, "the revoked agent did not stop");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(code, Some(1));

    // (c) py-spiffe fetches the SNP agent's SVID and bundle, and a JWT-SVID
    // it validates against the JWT bundle it fetched.
    // (Kept alive: the TDX agent's renewal is checked last.)
    let (_tdx_agent, _) = agents.next().unwrap();
    let (_snp_agent, snp_socket) = agents.next().unwrap();
    if let Some(python) = py_spiffe_python() {
        let report = py_spiffe(&python, &snp_socket, true);
        assert_eq!(report["spiffe_id"], json!(snp_id), "{report}");
        assert_eq!(report["chains_to_bundle"], json!(true), "{report}");
        assert_eq!(report["jwt_spiffe_id"], json!(snp_id), "{report}");
        assert_eq!(report["jwt_audience"], json!([AUDIENCE]), "{report}");
        assert_eq!(report["validated_spiffe_id"], json!(snp_id), "{report}");
        assert_eq!(report["other_audience_refused"], json!(true), "{report}");
    }
    // Renewal: the TDX agent's stream brings a new SVID, same SPIFFE ID.
    let after = tokio::time::timeout(Duration::from_secs(30), renewals.next())
        .await
        .expect("a renewed SVID on the open stream")
        .unwrap()
        .unwrap();
    assert_eq!(after.spiffe_id(), before.spiffe_id());
    assert_ne!(after.leaf().as_ref(), before.leaf().as_ref());
    eprintln!("workload_api: whole test {:?}", started.elapsed());
}

#[test]
fn an_unsafe_socket_directory_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    let output = Command::new(binary("enclave-agent"))
        .args([
            "run",
            "--simulate",
            "nitro",
            "--verifier",
            "https://127.0.0.1:9",
        ])
        .arg("--model")
        .arg(workspace_root().join("testdata/models/example-model.txt"))
        .args(["--audience", AUDIENCE, "--workload-api-socket"])
        .arg(open.join("api.sock"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("0700"), "{stderr}");
    assert!(!open.join("api.sock").exists());
}
