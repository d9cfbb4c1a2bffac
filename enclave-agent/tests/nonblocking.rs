//! Evidence is gathered off the agent's one runtime thread: while a backend
//! blocks (a TDX QGS taking its 35 s of timeouts, a busy SNP host), the
//! socket still answers and SIGTERM still stops the agent.
//!
//! Its own test binary: it sends SIGTERM to its own process, which the
//! handler `keeper::stop_signal` installs catches.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use enclave_agent::backend::{
    evidence_off_thread, BackendError, Evidence, EvidenceSource, Request,
};
use enclave_agent::client::VerifierClient;
use enclave_agent::keeper::{stop_signal, Served};
use enclave_agent::key::EphemeralKey;
use enclave_agent::socket::{self, Responder};
use serde_json::json;

/// A backend that blocks inside `evidence` until released, like a device
/// ioctl or a QGS that does not answer.
struct Stuck {
    entered: tokio::sync::mpsc::UnboundedSender<()>,
    release: Mutex<std::sync::mpsc::Receiver<()>>,
}

impl EvidenceSource for Stuck {
    fn evidence(&self, _request: &Request<'_>) -> Result<Evidence, BackendError> {
        let _ = self.entered.send(());
        let _ = self
            .release
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .recv();
        Err(BackendError::NoTee)
    }
}

fn stuck() -> (
    Arc<dyn EvidenceSource>,
    tokio::sync::mpsc::UnboundedReceiver<()>,
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

#[test]
fn a_blocked_backend_stalls_neither_the_socket_nor_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    let (source, mut entered, release) = stuck();
    // The agent's runtime: one thread (main.rs builds the same).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let ended_by = runtime.block_on(async {
        serve_socket(&path);
        let probe = async {
            entered.recv().await.unwrap();
            // The backend is blocked now; the socket answers regardless.
            let answer = tokio::time::timeout(
                Duration::from_secs(10),
                socket::ask(&path, &json!({"op": "token"})),
            )
            .await
            .expect("the socket did not answer while evidence was pending")
            .unwrap();
            assert_eq!(answer["error"]["code"], "no_token", "{answer}");
            // And a SIGTERM is seen (`stop_signal` was polled first, so its
            // handler is installed).
            let status = std::process::Command::new("kill")
                .args(["-TERM", &std::process::id().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
            std::future::pending::<()>().await;
        };
        // As in main.rs's `run`: the work races the signal.
        tokio::select! {
            _ = evidence_off_thread(source, [0; 64], Vec::new(), Vec::new()) => "evidence",
            () = stop_signal() => "signal",
            () = probe => "probe",
        }
    });
    assert_eq!(ended_by, "signal");
    // The device call still runs; shutting the runtime down does not wait
    // for it (main.rs leaves it behind the same way).
    runtime.shutdown_background();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    drop(release);
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
