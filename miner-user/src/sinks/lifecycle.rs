//! Shutdown plumbing for the sinks: SIGINT/SIGTERM → one broadcast that
//! every server waits on → flush and exit 0 within [`SHUTDOWN_DEADLINE`].
//!
//! Kubernetes sends SIGTERM and kills 30 s later; we aim to be gone in 2 s
//! so a rolling update does not leave a node unwatched for long. The order
//! the daemon follows: trigger (servers stop accepting, tail clients get
//! EOF, the socket file goes), then `AlertSink::flush(deadline)` and
//! `Recorder::flush()`.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

/// Budget for the whole shutdown, signal to exit.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(2);

/// Resolves on the first SIGINT or SIGTERM, with the signal's name.
pub async fn shutdown_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// Fires the shutdown broadcast (dropping it fires it too, so a panicking
/// run loop does not leave servers running).
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

/// A cloneable "shutdown has started" signal.
#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

pub fn shutdown_channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx }, Shutdown { rx })
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }
}

impl Shutdown {
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// A future for `serve(…, shutdown)` and `TailServer::run(shutdown)`.
    pub fn wait(self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.rx;
        async move {
            // Err: the trigger was dropped, which also means shut down.
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::sinks::config::TailConfig;
    use crate::sinks::http::{Health, serve};
    use crate::sinks::metrics::Metrics;
    use crate::sinks::tail::{TailHub, TailServer};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_trigger_stops_every_server_within_the_deadline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let cfg = TailConfig {
            socket: dir.path().join("m.sock"),
            ..TailConfig::default()
        };
        let hub = TailHub::new(&cfg, &metrics);
        let (trigger, shutdown) = shutdown_channel();
        let tail = tokio::spawn(
            TailServer::bind(&cfg, hub)
                .expect("bind")
                .run(shutdown.clone().wait()),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let http = tokio::spawn(serve(
            listener,
            metrics,
            Arc::new(Health::new()),
            shutdown.clone().wait(),
        ));
        let _client = tokio::net::UnixStream::connect(&cfg.socket)
            .await
            .expect("connect");

        let t0 = std::time::Instant::now();
        trigger.trigger();
        assert!(shutdown.is_triggered());
        tokio::time::timeout(SHUTDOWN_DEADLINE, async {
            tail.await.expect("tail");
            http.await.expect("http").expect("serve");
        })
        .await
        .expect("servers stop within the deadline");
        assert!(!cfg.socket.exists());
        eprintln!("sink shutdown took {:?}", t0.elapsed());
    }

    #[tokio::test]
    async fn dropping_the_trigger_also_shuts_down() {
        let (trigger, shutdown) = shutdown_channel();
        drop(trigger);
        tokio::time::timeout(Duration::from_secs(1), shutdown.wait())
            .await
            .expect("resolves");
    }
}
