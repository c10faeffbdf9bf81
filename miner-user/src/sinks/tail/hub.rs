//! Fan-out to tail clients: one bounded queue per client, never a wait.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus::{IntCounter, IntGauge};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::message::TailMessage;
use crate::event::Event;
use crate::sinks::alerts::{ActionRecord, AlertRecord};
use crate::sinks::config::TailConfig;
use crate::sinks::metrics::Metrics;
use crate::time::WallClock;

/// Bytes gathered from a client's queue into one socket write.
const WRITE_BATCH: usize = 64 * 1024;

/// One queued line, with the number of lines this client missed just
/// before it: the writer emits the `skipped` line at exactly that spot.
struct Item {
    skipped_before: u64,
    line: Arc<[u8]>,
}

struct Client {
    id: u64,
    tx: mpsc::Sender<Item>,
    /// Dropped since the last line that made it into the queue.
    skipped: u64,
}

struct HubInner {
    clients: Mutex<Vec<Client>>,
    /// Lock-free "anyone listening?" for the per-event fast path.
    len: AtomicUsize,
    next_id: AtomicU64,
    closed: AtomicBool,
    queue: usize,
    stall: Duration,
    max_clients: usize,
    clients_gauge: IntGauge,
    skipped_total: IntCounter,
}

/// Fans the stream out to tail clients. Cheap to clone; all clones share
/// the clients.
#[derive(Clone)]
pub struct TailHub {
    inner: Arc<HubInner>,
}

impl TailHub {
    pub fn new(cfg: &TailConfig, metrics: &Metrics) -> TailHub {
        TailHub {
            inner: Arc::new(HubInner {
                clients: Mutex::new(Vec::new()),
                len: AtomicUsize::new(0),
                next_id: AtomicU64::new(1),
                closed: AtomicBool::new(false),
                queue: cfg.client_queue.max(1),
                stall: Duration::from_millis(cfg.stall_timeout_ms),
                max_clients: cfg.max_clients,
                clients_gauge: metrics.tail_clients.clone(),
                skipped_total: metrics.tail_skipped.clone(),
            }),
        }
    }

    /// True when at least one client listens: callers skip building
    /// messages otherwise.
    pub fn has_clients(&self) -> bool {
        self.inner.len.load(Ordering::Relaxed) > 0
    }

    pub fn client_count(&self) -> usize {
        self.inner.len.load(Ordering::Relaxed)
    }

    /// Lines queued for all clients and not yet taken by their writers.
    pub fn backlog(&self) -> usize {
        self.lock()
            .iter()
            .map(|c| c.tx.max_capacity() - c.tx.capacity())
            .sum()
    }

    /// Offers a message to every client. Never blocks on a client: the only
    /// wait is the hub's own short lock. Serialises once, whatever the
    /// number of clients, and not at all when there are none.
    pub fn publish(&self, msg: &TailMessage) {
        if !self.has_clients() {
            return;
        }
        match msg.to_line() {
            Ok(line) => self.publish_line(Arc::from(line)),
            Err(e) => log::warn!("tail: cannot serialise a {} message: {e}", msg.kind.name()),
        }
    }

    pub fn publish_event(&self, ev: &Event, clock: &WallClock) {
        if self.has_clients() {
            for msg in TailMessage::from_event(ev, clock) {
                self.publish(&msg);
            }
        }
    }

    pub fn publish_alert(&self, rec: &AlertRecord) {
        if self.has_clients() {
            self.publish(&TailMessage::from_alert(rec));
        }
    }

    pub fn publish_action(&self, rec: &ActionRecord) {
        if self.has_clients() {
            self.publish(&TailMessage::from_action(rec));
        }
    }

    fn publish_line(&self, line: Arc<[u8]>) {
        let mut clients = self.lock();
        let before = clients.len();
        let skipped_total = &self.inner.skipped_total;
        clients.retain_mut(|c| {
            match c.tx.try_send(Item {
                skipped_before: c.skipped,
                line: line.clone(),
            }) {
                Ok(()) => c.skipped = 0,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    c.skipped += 1;
                    skipped_total.inc();
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
            }
            true
        });
        if clients.len() != before {
            self.set_len(clients.len());
        }
    }

    /// Closes every client (each gets what is already queued, then EOF) and
    /// refuses new ones.
    pub fn shutdown(&self) {
        self.inner.closed.store(true, Ordering::Relaxed);
        let mut clients = self.lock();
        clients.clear();
        self.set_len(0);
    }

    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Relaxed)
    }

    /// Registers an accepted, authorised client and starts its writer.
    /// Must run inside the tokio runtime.
    pub(super) fn attach(&self, stream: UnixStream) -> Result<(), (UnixStream, String)> {
        let (tx, rx) = mpsc::channel(self.inner.queue);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut clients = self.lock();
            if self.is_closed() {
                return Err((stream, "minerwatch is shutting down".into()));
            }
            if clients.len() >= self.inner.max_clients {
                let why = format!(
                    "too many tail clients ({} connected); raise tail.max_clients",
                    clients.len()
                );
                return Err((stream, why));
            }
            clients.push(Client { id, tx, skipped: 0 });
            self.set_len(clients.len());
        }
        let hub = self.clone();
        tokio::spawn(async move {
            if let Err(why) = write_client(stream, rx, hub.inner.stall).await {
                log::info!("tail client {id} disconnected: {why}");
            }
            hub.detach(id);
        });
        Ok(())
    }

    fn detach(&self, id: u64) {
        let mut clients = self.lock();
        clients.retain(|c| c.id != id);
        self.set_len(clients.len());
    }

    fn set_len(&self, n: usize) {
        self.inner.len.store(n, Ordering::Relaxed);
        self.inner.clients_gauge.set(n as i64);
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Client>> {
        // A panic while holding the lock leaves a valid Vec; keep serving.
        self.inner
            .clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Moves one client's queue onto its socket until the queue closes (hub
/// shutdown), the client hangs up, or the socket stalls.
async fn write_client(
    stream: UnixStream,
    mut rx: mpsc::Receiver<Item>,
    stall: Duration,
) -> Result<(), String> {
    let (mut rd, mut wr) = stream.into_split();
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    let mut scratch = [0u8; 256];
    loop {
        tokio::select! {
            item = rx.recv() => {
                let Some(item) = item else { break };
                batch.clear();
                push_item(&mut batch, &item);
                while batch.len() < WRITE_BATCH {
                    match rx.try_recv() {
                        Ok(item) => push_item(&mut batch, &item),
                        Err(_) => break,
                    }
                }
                write_with_stall_limit(&mut wr, &batch, stall).await?;
            }
            read = rd.read(&mut scratch) => match read {
                // The protocol is one-way: input is ignored, EOF is a hangup.
                Ok(0) => return Err("client closed the connection".into()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            },
        }
    }
    let _ = wr.shutdown().await;
    Ok(())
}

fn push_item(batch: &mut Vec<u8>, item: &Item) {
    if item.skipped_before > 0 {
        let _ = writeln!(
            batch,
            "{{\"kind\":\"skipped\",\"count\":{}}}",
            item.skipped_before
        );
    }
    batch.extend_from_slice(&item.line);
}

/// Writes all of `buf`, failing only when the socket takes nothing at all
/// for `stall` (a slow but moving reader is fine).
async fn write_with_stall_limit(
    wr: &mut tokio::net::unix::OwnedWriteHalf,
    mut buf: &[u8],
    stall: Duration,
) -> Result<(), String> {
    while !buf.is_empty() {
        match tokio::time::timeout(stall, wr.write(buf)).await {
            Ok(Ok(0)) => return Err("client closed the connection".into()),
            Ok(Ok(n)) => buf = &buf[n..],
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err(format!("stalled: read nothing for {stall:?}")),
        }
    }
    Ok(())
}
