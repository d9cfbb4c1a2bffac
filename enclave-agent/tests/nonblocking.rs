//! Evidence is gathered off the agent's one runtime thread: while a backend
//! blocks (a TDX QGS taking its 35 s of timeouts, a busy SNP host), the
//! socket still answers and SIGTERM still stops the agent.
//!
//! Its own test binary: it sends SIGTERM to its own process, which the
//! handler `keeper::stop_signal` installs catches.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use attest_gate_core::{ModelDigest, TeeKind};
use enclave_agent::backend::{BackendError, Evidence, EvidenceSource, Request};
use enclave_agent::client::{Ask, VerifierClient};
use enclave_agent::keeper::{stop_signal, Keeper, Pacing, Served};
use enclave_agent::key::EphemeralKey;
use enclave_agent::socket::{self, Responder};
use serde_json::json;

/// A backend that blocks inside `evidence` until released (once per call),
/// like a device ioctl or a QGS that does not answer; then it returns
/// evidence (its bytes do not matter to the stand-in verifier). It gives up
/// after [`STUCK_FOR`], so that code calling it on the runtime thread fails
/// these tests (too late) instead of hanging them. It announces each call
/// with the instant it began.
struct Stuck {
    entered: tokio::sync::mpsc::UnboundedSender<Instant>,
    release: Mutex<std::sync::mpsc::Receiver<()>>,
}

impl EvidenceSource for Stuck {
    fn evidence(&self, _request: &Request<'_>) -> Result<Evidence, BackendError> {
        let _ = self.entered.send(Instant::now());
        self.release
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .recv_timeout(STUCK_FOR)
            .map_err(|_| BackendError::NoTee)?;
        Ok(Evidence {
            tee: TeeKind::Snp,
            bytes: vec![0; 1184],
            collateral: Vec::new(),
        })
    }
}

/// How long [`Stuck`] blocks at most.
const STUCK_FOR: Duration = Duration::from_secs(5);
/// How soon the socket must answer once the backend blocks: well inside
/// [`STUCK_FOR`].
const PROMPTLY: Duration = Duration::from_secs(2);

fn stuck() -> (
    Arc<dyn EvidenceSource>,
    tokio::sync::mpsc::UnboundedReceiver<Instant>,
    std::sync::mpsc::Sender<()>,
) {
    let (entered, entered_rx) = tokio::sync::mpsc::unbounded_channel();
    let (release_tx, release) = std::sync::mpsc::channel();
    let source = Arc::new(Stuck {
        entered,
        release: Mutex::new(release),
    });
    (source, entered_rx, release_tx)
}

/// The agent's socket, answering from an empty credential store.
fn serve_socket(path: &std::path::Path) {
    let listener = socket::bind(path).unwrap();
    let responder = Arc::new(Responder::new(
        Arc::new(Served::default()),
        Arc::new(EphemeralKey::generate().unwrap()),
        VerifierClient::new("https://127.0.0.1:1", None).unwrap(),
    ));
    tokio::spawn(socket::serve(listener, responder));
}

/// A stand-in verifier over HTTPS on a thread of its own: every challenge
/// gets the same nonce, every attestation a token living `lifetime`
/// seconds; anything else a 404. Returns its URL and certificate (PEM).
fn fake_verifier(lifetime: u32) -> (String, String) {
    use std::io::{Read, Write};
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let pem = certified.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let tls = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let tls = Arc::clone(&tls);
            std::thread::spawn(move || {
                let connection = rustls::ServerConnection::new(tls).unwrap();
                let mut stream = rustls::StreamOwned::new(connection, tcp);
                // The head, then as much body as it announces.
                let mut request = Vec::new();
                let mut byte = [0u8; 1];
                while !request.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).unwrap_or(0) == 0 {
                        return;
                    }
                    request.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&request).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|n| n.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                let mut body = vec![0u8; length];
                if stream.read_exact(&mut body).is_err() {
                    return;
                }
                let (status, answer) = if head.starts_with("post /v1/challenge ") {
                    ("200 OK", json!({"nonce": "bm9uY2U"}))
                } else if head.starts_with("post /v1/attest ") {
                    let answer = json!({
                        "access_token": "the-token",
                        "token_type": "DPoP",
                        "expires_in": lifetime,
                        "scope": "inference:invoke",
                    });
                    ("200 OK", answer)
                } else {
                    (
                        "404 Not Found",
                        json!({"error": {"code": "not_found", "message": ""}}),
                    )
                };
                let body = answer.to_string();
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes());
                stream.conn.send_close_notify();
                let _ = stream.flush();
            });
        }
    });
    (url, pem)
}

/// The agent's `run`, as main.rs wires it: the keeper attesting through a
/// backend that blocks, the socket serving what the keeper stores, and the
/// two raced against SIGTERM. The first attestation's evidence is released
/// after the socket has answered (`no_token`) while it was pending; the
/// renewal's evidence never is: the socket keeps serving the first token
/// meanwhile, and SIGTERM ends the run at once.
#[test]
fn a_blocked_backend_stalls_neither_the_socket_nor_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    let (source, mut entered, release) = stuck();
    // Renewal at two thirds of 12 s, less up to a tenth: 6.8 to 8 s; the
    // token is served for at least 11 s (whole seconds), which leaves the
    // renewal 3 s to reach the backend and the socket to answer.
    let (url, ca) = fake_verifier(12);
    // The agent's runtime: one thread (main.rs builds the same).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ended_by = runtime.block_on(async {
        let served = Arc::new(Served::default());
        let key = Arc::new(EphemeralKey::generate().unwrap());
        let client = VerifierClient::new(&url, Some(ca.as_bytes())).unwrap();
        let listener = socket::bind(&path).unwrap();
        tokio::spawn(socket::serve(
            listener,
            Arc::new(Responder::new(
                Arc::clone(&served),
                Arc::clone(&key),
                client.clone(),
            )),
        ));
        let keeper = Keeper {
            client,
            source,
            key,
            model: ModelDigest([2; 48]),
            ask: Ask {
                principal: "system".into(),
                task_id: "default".into(),
                scopes: vec!["inference:invoke".into()],
                audience: "https://rp.attest-gate.test".into(),
                svid: false,
                ttl_seconds: None,
            },
            pacing: Pacing {
                revocation_poll: Duration::from_secs(3600),
                ..Pacing::default()
            },
            on_change: Box::new(|_| {}),
        };
        let token = || async {
            tokio::time::timeout(
                Duration::from_secs(10),
                socket::ask(&path, &json!({"op": "token"})),
            )
            .await
            .expect("the socket did not answer while evidence was pending")
            .unwrap()
        };
        let probe = async {
            // First attestation: the backend is blocked, the socket answers.
            let since = tokio::time::timeout(Duration::from_secs(30), entered.recv())
                .await
                .expect("the keeper never asked for evidence")
                .unwrap();
            let answer = token().await;
            assert!(
                since.elapsed() < PROMPTLY,
                "answered after {:?}",
                since.elapsed()
            );
            assert_eq!(answer["error"]["code"], "no_token", "{answer}");
            release.send(()).unwrap();
            // Its token is served.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let answer = token().await;
                if answer["access_token"] == "the-token" {
                    break;
                }
                assert!(Instant::now() < deadline, "never served: {answer}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Renewal: the backend blocks again and is never released; the
            // token is still served...
            let since = tokio::time::timeout(Duration::from_secs(30), entered.recv())
                .await
                .expect("the keeper never renewed")
                .unwrap();
            let answer = token().await;
            assert!(
                since.elapsed() < PROMPTLY,
                "answered after {:?}",
                since.elapsed()
            );
            assert_eq!(answer["access_token"], "the-token", "{answer}");
            // ...and SIGTERM is seen (`stop_signal` was polled first, so
            // its handler is installed).
            let status = std::process::Command::new("kill")
                .args(["-TERM", &std::process::id().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
            tokio::time::sleep(PROMPTLY).await;
        };
        // As in main.rs's `run`: the keeper races the signal.
        tokio::select! {
            _ = keeper.run(&served) => "keeper",
            () = stop_signal() => "signal",
            () = probe => "the signal was not seen",
        }
    });
    assert_eq!(ended_by, "signal");
    // The renewal's device call still runs; shutting the runtime down does
    // not wait for it (main.rs leaves it behind the same way).
    let shutdown = Instant::now();
    runtime.shutdown_background();
    assert!(shutdown.elapsed() < Duration::from_secs(1));
}

/// The counter-test: the same backend called on the runtime's thread (as
/// before `evidence_off_thread`) keeps the socket from answering until it
/// returns.
#[test]
fn called_on_the_runtime_thread_the_backend_would_stall_the_socket() {
    use std::io::{BufRead, Write};
    const HOLD: Duration = Duration::from_millis(800);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    let (source, mut entered, release) = stuck();
    // A client on its own thread asks once the backend is blocked; the
    // backend is released after HOLD.
    let client = std::thread::spawn({
        let path = path.clone();
        move || {
            entered.blocking_recv().unwrap();
            let asked = Instant::now();
            let releaser = std::thread::spawn(move || {
                std::thread::sleep(HOLD);
                let _ = release.send(());
            });
            let mut stream = std::os::unix::net::UnixStream::connect(&path).unwrap();
            stream.write_all(b"{\"op\": \"token\"}\n").unwrap();
            let mut answer = String::new();
            std::io::BufReader::new(stream)
                .read_line(&mut answer)
                .unwrap();
            releaser.join().unwrap();
            (asked.elapsed(), answer)
        }
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        serve_socket(&path);
        tokio::task::yield_now().await;
        let _ = source.evidence(&Request {
            report_data: [0; 64],
            nonce: b"",
            public_key: b"",
        });
        // Serve until the client has its answer.
        while !client.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let (waited, answer) = client.join().unwrap();
    assert!(answer.contains("no_token"), "{answer}");
    assert!(waited >= HOLD / 2, "answered after {waited:?}");
}
