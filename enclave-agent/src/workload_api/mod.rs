//! The SPIFFE Workload API (`enclave-agent run --workload-api-socket`):
//! gRPC over a Unix socket, as the SPIFFE specification defines it, so that
//! any SPIFFE library (go-spiffe, py-spiffe, the Rust `spiffe` crate, Envoy)
//! in this TEE gets the attested workload's identity without knowing Attest
//! Gate.
//!
//! - `identity.rs` turns the credential the keeper serves (token, SVID,
//!   SPIFFE ID) plus the verifier's published bundle and JWKS into one
//!   [`Identity`] snapshot, published on a watch channel: `None` while
//!   nothing is served (not yet issued, expired, revoked).
//! - `service.rs` answers the five RPCs from that snapshot; streams send a
//!   new message whenever it changes and end with `PermissionDenied` once it
//!   is withdrawn.
//! - `jwt.rs` validates JWT-SVIDs (`ValidateJWTSVID`) and converts claims.
//! - `authority.rs` relays each connection so that gRPC C-core clients
//!   (py-spiffe), which send the socket path as `:authority`, are not reset
//!   by h2.
//! - `pb.rs` is generated from `enclave-agent/proto/workload.proto` and
//!   committed (`enclave-agent/proto/regenerate`; docs/decisions.md says why).
//!
//! The socket lives in a directory only this user may enter (created 0700,
//! or refused if it exists with looser rights or another owner) and is 0600
//! itself: the X.509-SVID's private key is served on it.

mod authority;
mod identity;
mod jwt;
#[allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
pub mod pb;
mod service;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;

use crate::client::VerifierClient;
use crate::keeper::Served;
use crate::key::EphemeralKey;
use crate::socket::Responder;

pub use identity::Identity;
pub use jwt::{validate, JwtError};
pub use service::WorkloadApi;

/// Where the Workload API listens when `--workload-api-socket` is given
/// without a path.
pub const DEFAULT_SOCKET: &str = "/run/enclave-agent/workload-api.sock";

/// The request metadata every Workload API call must carry (the
/// specification's defence against server-side request forgery).
pub const SECURITY_HEADER: &str = "workload.spiffe.io";

/// The socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// The directory exists with rights other than owner-only, or another owner.
    #[error(
        "{0} must be a directory owned by this user with no group or other rights (mode 0700)"
    )]
    UnsafeDirectory(PathBuf),
    /// Something else is at the socket's path.
    #[error("{0} exists and is not a socket")]
    NotASocket(PathBuf),
    /// A file system call failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SocketError + '_ {
    move |source| SocketError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Binds the Workload API socket at `path`: its directory is created 0700
/// if missing, and must otherwise be owned by this user with no group or
/// other rights; a stale socket is replaced; the socket is made 0600.
pub fn bind(path: &Path) -> Result<UnixListener, SocketError> {
    use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if std::fs::symlink_metadata(dir).is_err() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
    }
    if let Ok(existing) = std::fs::symlink_metadata(path) {
        if !existing.file_type().is_socket() {
            return Err(SocketError::NotASocket(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(io(path))?;
    }
    let listener = UnixListener::bind(path).map_err(io(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io(path))?;
    // The new socket is owned by this process's user: the directory must be
    // too, with no group or other rights (symlink_metadata: a link planted in
    // place of the directory is refused).
    let me = std::fs::symlink_metadata(path).map_err(io(path))?.uid();
    let meta = std::fs::symlink_metadata(dir).map_err(io(dir))?;
    if !meta.is_dir() || meta.uid() != me || meta.permissions().mode() & 0o077 != 0 {
        let _ = std::fs::remove_file(path);
        return Err(SocketError::UnsafeDirectory(dir.to_path_buf()));
    }
    Ok(listener)
}

/// The Workload API running: its feeder and server tasks.
pub struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
    feeder: tokio::task::JoinHandle<()>,
}

/// How long a stop waits for open streams to take their last message.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Starts serving on `listener` what `served` holds: SVIDs for `key`
/// (which must be [`EphemeralKey::generate_exportable`]), bundles and
/// JWT-SVIDs from `client`, proofs for those requests by `responder`.
pub fn start(
    listener: UnixListener,
    served: Arc<Served>,
    key: Arc<EphemeralKey>,
    client: VerifierClient,
    responder: Arc<Responder>,
) -> Running {
    let (identities, watch) = tokio::sync::watch::channel(None);
    let feeder = tokio::spawn(identity::feed(served, key, client.clone(), identities));
    let api = WorkloadApi::new(watch, client, responder);
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(service::serve(listener, api, stopped));
    Running {
        stop,
        server,
        feeder,
    }
}

impl Running {
    /// Stops: open streams end with `PermissionDenied` (the identity is
    /// gone with the feeder), no new connections are taken, and the server
    /// gets up to two seconds to send those last messages.
    pub async fn stop(self) {
        self.feeder.abort();
        let _ = self.feeder.await;
        let _ = self.stop.send(());
        let mut server = self.server;
        if tokio::time::timeout(STOP_GRACE, &mut server).await.is_err() {
            server.abort();
        }
    }
}
