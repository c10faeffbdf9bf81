//! The tail socket: bind (0700 directory, 0600 socket, stale-socket
//! handling), admit root peers only, refuse the rest with a reason.

use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};

use super::hub::TailHub;
use super::message::TailMessage;
use crate::sinks::config::TailConfig;

/// The line a non-root client receives before the daemon hangs up.
pub const PERMISSION_DENIED: &str = "permission denied: minerwatch tail requires root";

#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("creating tail socket directory {} failed: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{} exists and is not a socket; remove it or set tail.socket (--socket) to another path",
        path.display()
    )]
    NotASocket { path: PathBuf },
    #[error(
        "another minerwatch is serving on {}; stop it, or set tail.socket (--socket) to another path",
        path.display()
    )]
    InUse { path: PathBuf },
    #[error("removing stale tail socket {} failed: {source}", path.display())]
    RemoveStale {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("binding tail socket {} failed: {source}", path.display())]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("setting owner and mode of tail socket {} failed: {source}", path.display())]
    Permissions {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The listening socket. Removes its file when it stops.
pub struct TailServer {
    listener: UnixListener,
    path: PathBuf,
    /// Identity of the socket file we created, so shutdown never removes a
    /// socket that a newer daemon has put in its place.
    ident: (u64, u64),
    hub: TailHub,
}

impl TailServer {
    /// Creates the directory (0700) if missing, replaces a stale socket,
    /// binds, and restricts the socket to root (0600). Must run inside the
    /// tokio runtime.
    pub fn bind(cfg: &TailConfig, hub: TailHub) -> Result<TailServer, TailError> {
        let path = cfg.socket.clone();
        crate::sinks::create_private_parent(&path)
            .map_err(|(path, source)| TailError::CreateDir { path, source })?;
        remove_stale(&path)?;
        let listener = UnixListener::bind(&path).map_err(|source| TailError::Bind {
            path: path.clone(),
            source,
        })?;
        let perm_err = |source| TailError::Permissions {
            path: path.clone(),
            source,
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(perm_err)?;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            std::os::unix::fs::chown(&path, Some(0), Some(0)).map_err(perm_err)?;
        }
        let meta = std::fs::symlink_metadata(&path).map_err(perm_err)?;
        Ok(TailServer {
            listener,
            ident: (meta.dev(), meta.ino()),
            path,
            hub,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts clients until `shutdown` resolves; then closes every client
    /// and removes the socket file.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => self.admit(stream),
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        log::warn!("tail: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        self.hub.shutdown();
        self.remove_socket();
    }

    fn admit(&self, stream: UnixStream) {
        match stream.peer_cred() {
            Ok(cred) if cred.uid() == 0 => {
                if let Err((stream, why)) = self.hub.attach(stream) {
                    log::info!("tail: refused client: {why}");
                    refuse(stream, why);
                }
            }
            Ok(cred) => {
                log::info!("tail: refused client with uid {}", cred.uid());
                refuse(stream, PERMISSION_DENIED.to_owned());
            }
            Err(e) => refuse(stream, format!("cannot identify the client: {e}")),
        }
    }

    fn remove_socket(&self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if (m.dev(), m.ino()) == self.ident => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    log::warn!("tail: removing {} failed: {e}", self.path.display());
                }
            }
            _ => {}
        }
    }
}

/// Tells a refused client why, then hangs up; never holds up accepting.
fn refuse(mut stream: UnixStream, why: String) {
    tokio::spawn(async move {
        if let Ok(line) = TailMessage::error(why).to_line() {
            let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&line)).await;
        }
        let _ = stream.shutdown().await;
    });
}

/// A socket file left by a daemon that died is removed; a live one (it
/// accepts connections) or a non-socket file is an error.
fn remove_stale(path: &Path) -> Result<(), TailError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(TailError::RemoveStale {
                path: path.to_owned(),
                source,
            });
        }
    };
    if !meta.file_type().is_socket() {
        return Err(TailError::NotASocket {
            path: path.to_owned(),
        });
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(TailError::InUse {
            path: path.to_owned(),
        });
    }
    std::fs::remove_file(path).map_err(|source| TailError::RemoveStale {
        path: path.to_owned(),
        source,
    })
}
