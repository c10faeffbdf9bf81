//! The live stream behind `minerwatch tail`: events, alerts and actions as
//! JSON lines on a root-only unix socket.
//!
//! The daemon never waits for a tail client. `publish` serialises a message
//! once and offers it to each client's bounded queue; a full queue drops the
//! message for that client and counts it, and the client is told how many it
//! missed (`{"kind":"skipped","count":N}`) exactly where the gap is. A client
//! whose socket takes nothing for `stall_timeout_ms` is disconnected (as
//! tetragon drops a slow listener rather than waiting on it).
//!
//! Access control is two layers: the socket lives in a 0700 directory with
//! mode 0600, and every accepted peer's SO_PEERCRED uid must be 0, because
//! the stream carries every command line on the host.

use std::fmt::Write as _;
use std::fs::DirBuilder;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus::{IntCounter, IntGauge};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

use crate::detect::Severity;
use crate::event::{ConnectResult, Event, ProvenanceVerdict};
use crate::sinks::alerts::{ActionRecord, AlertRecord};
use crate::sinks::config::TailConfig;
use crate::sinks::metrics::Metrics;
use crate::time::WallClock;

/// The line a non-root client receives before the daemon hangs up.
pub const PERMISSION_DENIED: &str = "permission denied: minerwatch tail requires root";

/// CPU samples below this fraction of a core are not worth a line.
const CPU_MIN_CORES: f64 = 0.05;
/// At most this many `cpu` lines per sample: the busiest processes.
const CPU_MAX_LINES: usize = 20;
/// Bytes of a payload shown in its detail.
const PAYLOAD_PREVIEW: usize = 48;
/// Longest command line shown in an exec detail.
const CMDLINE_PREVIEW: usize = 200;
/// Bytes gathered from a client's queue into one socket write.
const WRITE_BATCH: usize = 64 * 1024;

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

/// Message kinds on the stream. Event kinds match `Event::kind` except
/// `cpu` (one line per busy process, not per sample).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TailKind {
    Exec,
    Fork,
    Exit,
    Connect,
    Payload,
    Cpu,
    Provenance,
    /// A thread's MXCSR set grew (the RandomX fingerprint's input).
    Fpu,
    /// A kernel hint of mining set-up (huge pages, MSR).
    Hint,
    Alert,
    Action,
    /// Messages this client missed because it fell behind.
    Skipped,
    /// Events the kernel could not deliver to the daemon.
    Lost,
    /// The daemon refused the client; `message` says why.
    Error,
}

impl TailKind {
    pub const ALL: [TailKind; 14] = [
        TailKind::Exec,
        TailKind::Fork,
        TailKind::Exit,
        TailKind::Connect,
        TailKind::Payload,
        TailKind::Cpu,
        TailKind::Provenance,
        TailKind::Fpu,
        TailKind::Hint,
        TailKind::Alert,
        TailKind::Action,
        TailKind::Skipped,
        TailKind::Lost,
        TailKind::Error,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TailKind::Exec => "exec",
            TailKind::Fork => "fork",
            TailKind::Exit => "exit",
            TailKind::Connect => "connect",
            TailKind::Payload => "payload",
            TailKind::Cpu => "cpu",
            TailKind::Provenance => "provenance",
            TailKind::Fpu => "fpu",
            TailKind::Hint => "hint",
            TailKind::Alert => "alert",
            TailKind::Action => "action",
            TailKind::Skipped => "skipped",
            TailKind::Lost => "lost",
            TailKind::Error => "error",
        }
    }
}

impl std::str::FromStr for TailKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        TailKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = TailKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown kind {s:?}; expected one of {}", names.join(", "))
            })
    }
}

/// One line of the stream. Field names are the alert format's where they
/// apply; fields that do not apply are absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TailMessage {
    /// RFC 3339 UTC with milliseconds; absent on `skipped` and `error`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub time: String,
    pub kind: TailKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tgid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ppid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Alerts only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// Alerts only: the rule that fired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Human summary (`connect 1.2.3.4:3333 connected`, `cpu 0.98 cores`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// `skipped` and `lost`: how many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// `error`: why the daemon refused the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl TailMessage {
    pub fn new(kind: TailKind) -> TailMessage {
        TailMessage {
            time: String::new(),
            kind,
            pid: None,
            tgid: None,
            ppid: None,
            comm: None,
            exe: None,
            cmdline: None,
            uid: None,
            severity: None,
            rule: None,
            detail: String::new(),
            count: None,
            message: None,
        }
    }

    pub fn skipped(count: u64) -> TailMessage {
        TailMessage {
            count: Some(count),
            ..TailMessage::new(TailKind::Skipped)
        }
    }

    pub fn error(message: impl Into<String>) -> TailMessage {
        TailMessage {
            message: Some(message.into()),
            ..TailMessage::new(TailKind::Error)
        }
    }

    /// The lines an event becomes: usually one; a CPU sample becomes one per
    /// process above 0.05 core (the 20 busiest), possibly none.
    pub fn from_event(ev: &Event, clock: &WallClock) -> Vec<TailMessage> {
        let time = clock.rfc3339(ev.time());
        let base = |kind| TailMessage {
            time: time.clone(),
            ..TailMessage::new(kind)
        };
        let msg = match ev {
            Event::Exec(e) => {
                let exe = e.exe_path.clone().unwrap_or_else(|| e.filename.clone());
                let mut detail = String::from("exec ");
                if e.argv.is_empty() {
                    detail.push_str(&exe);
                } else {
                    detail.push_str(&truncate(&e.argv.join(" "), CMDLINE_PREVIEW));
                }
                if e.exe.memfd {
                    detail.push_str(" [memfd]");
                } else if e.exe.nlink == 0 && !e.exe.unknown {
                    detail.push_str(" [deleted]");
                }
                if e.source == crate::event::Source::Sweep {
                    detail.push_str(" (running at start)");
                }
                TailMessage {
                    pid: Some(e.pid),
                    tgid: Some(e.tgid),
                    ppid: Some(e.ppid),
                    comm: Some(e.comm.clone()),
                    exe: Some(exe),
                    cmdline: Some(e.argv.clone()),
                    uid: Some(e.uid),
                    detail,
                    ..base(TailKind::Exec)
                }
            }
            Event::Fork(e) => TailMessage {
                tgid: Some(e.child_tgid),
                ppid: Some(e.parent_tgid),
                comm: Some(e.comm.clone()),
                detail: format!("fork from {}", e.parent_tgid),
                ..base(TailKind::Fork)
            },
            Event::Exit(e) => {
                let how = if e.signal != 0 {
                    format!("killed by signal {}", e.signal)
                } else {
                    format!("status {}", e.status)
                };
                TailMessage {
                    tgid: Some(e.tgid),
                    comm: Some(e.comm.clone()),
                    detail: format!("exit {how}, cpu {:.2} s", e.cpu_ns as f64 / 1e9),
                    ..base(TailKind::Exit)
                }
            }
            Event::Connect(e) => TailMessage {
                pid: Some(e.pid),
                tgid: Some(e.tgid),
                comm: Some(e.comm.clone()),
                uid: Some(e.uid),
                detail: format!(
                    "connect {} {}",
                    SocketAddr::new(e.daddr, e.dport),
                    connect_result(e.result)
                ),
                ..base(TailKind::Connect)
            },
            Event::Payload(p) => {
                let mut detail = format!(
                    "payload {}B to {} {}",
                    p.payload_len,
                    SocketAddr::new(p.daddr, p.dport),
                    preview(&p.data, p.payload_len as usize)
                );
                if p.untracked {
                    detail.push_str(" (flow predates the agent)");
                }
                TailMessage {
                    tgid: p.tgid,
                    detail,
                    ..base(TailKind::Payload)
                }
            }
            Event::CpuSample(s) => {
                let mut busy: Vec<_> = s
                    .usage
                    .iter()
                    .filter(|u| u.cores(s.interval_ns) > CPU_MIN_CORES)
                    .collect();
                busy.sort_by(|a, b| b.on_cpu_ns.cmp(&a.on_cpu_ns).then(a.tgid.cmp(&b.tgid)));
                return busy
                    .into_iter()
                    .take(CPU_MAX_LINES)
                    .map(|u| TailMessage {
                        tgid: Some(u.tgid),
                        detail: format!("cpu {:.2} cores", u.cores(s.interval_ns)),
                        ..base(TailKind::Cpu)
                    })
                    .collect();
            }
            Event::Provenance(p) => {
                let pv = &p.provenance;
                let mut detail = match pv.verdict {
                    ProvenanceVerdict::Verified => "provenance verified".to_owned(),
                    ProvenanceVerdict::Unverified => "provenance unverified".to_owned(),
                };
                if !pv.reasons.is_empty() {
                    let reasons: Vec<String> = pv.reasons.iter().map(reason_name).collect();
                    let _ = write!(detail, ": {}", reasons.join(", "));
                }
                if let Some(pkg) = &pv.package {
                    let _ = write!(detail, " ({pkg})");
                }
                if let Some(sha) = &pv.sha256 {
                    let _ = write!(detail, " sha256 {}", sha.get(..12).unwrap_or(sha));
                }
                TailMessage {
                    tgid: Some(p.tgid),
                    exe: pv
                        .path
                        .clone()
                        .or_else(|| (!p.exe.name.is_empty()).then(|| p.exe.name.clone())),
                    detail,
                    ..base(TailKind::Provenance)
                }
            }
            Event::Fpu(f) => TailMessage {
                pid: Some(f.pid),
                tgid: Some(f.tgid),
                comm: Some(f.comm.clone()),
                detail: crate::detect::fingerprint::describe_fpu(f),
                ..base(TailKind::Fpu)
            },
            Event::Hint(h) => TailMessage {
                pid: Some(h.pid),
                tgid: Some(h.tgid),
                comm: Some(h.comm.clone()),
                uid: Some(h.uid),
                detail: crate::detect::fingerprint::describe_hint(h),
                ..base(TailKind::Hint)
            },
            Event::Lost(l) => TailMessage {
                count: Some(l.count),
                detail: format!("lost {} events ({})", l.count, l.site),
                ..base(TailKind::Lost)
            },
        };
        vec![msg]
    }

    pub fn from_alert(rec: &AlertRecord) -> TailMessage {
        let mut detail = rec.rule.name().to_owned();
        if !rec.evidence.is_empty() {
            let ev: Vec<&str> = rec.evidence.iter().map(|e| e.detail.as_str()).collect();
            let _ = write!(detail, ": {}", ev.join("; "));
        }
        if !rec.actions.is_empty() {
            let _ = write!(detail, " | did: {}", rec.actions.join(", "));
        }
        if !rec.would.is_empty() {
            let _ = write!(detail, " | would: {}", rec.would.join(", "));
        }
        TailMessage {
            time: rec.time.clone(),
            pid: Some(rec.pid),
            tgid: Some(rec.tgid),
            ppid: Some(rec.ppid),
            comm: Some(rec.comm.clone()),
            exe: rec.exe.clone(),
            cmdline: Some(rec.cmdline.clone()),
            uid: Some(rec.uid),
            severity: Some(rec.severity),
            rule: Some(rec.rule.name().to_owned()),
            detail,
            ..TailMessage::new(TailKind::Alert)
        }
    }

    pub fn from_action(rec: &ActionRecord) -> TailMessage {
        TailMessage {
            time: rec.time.clone(),
            tgid: Some(rec.target),
            detail: format!(
                "{} {} {}: {} ({} ms)",
                rec.action, rec.target, rec.result, rec.reason, rec.latency_ms
            ),
            ..TailMessage::new(TailKind::Action)
        }
    }

    /// The JSON line, newline-terminated.
    pub fn to_line(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut line = serde_json::to_vec(self)?;
        line.push(b'\n');
        Ok(line)
    }
}

fn connect_result(r: ConnectResult) -> String {
    match r {
        ConnectResult::Connected => "connected".into(),
        ConnectResult::InProgress => "in progress".into(),
        ConnectResult::Refused => "refused".into(),
        ConnectResult::Denied => "denied".into(),
        ConnectResult::Failed(errno) => format!("failed ({})", io::Error::from_raw_os_error(errno)),
    }
}

fn reason_name(r: &crate::event::Reason) -> String {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{r:?}"))
}

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// The first bytes of a payload as a quoted, escaped string: printable ASCII
/// as is, everything else escaped, so a binary or hostile payload cannot
/// move the cursor or recolour the terminal.
fn preview(data: &[u8], total: usize) -> String {
    let shown = &data[..data.len().min(PAYLOAD_PREVIEW)];
    let mut out = String::with_capacity(shown.len() + 8);
    out.push('"');
    for &b in shown {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    if shown.len() < data.len().max(total) {
        out.push('…');
    }
    out.push('"');
    out
}

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
    fn attach(&self, stream: UnixStream) -> Result<(), (UnixStream, String)> {
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
            VecWriter(batch),
            "{{\"kind\":\"skipped\",\"count\":{}}}",
            item.skipped_before
        );
    }
    batch.extend_from_slice(&item.line);
}

struct VecWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for VecWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
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
        if let Some(dir) = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty() && !d.exists())
        {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| TailError::CreateDir {
                    path: dir.to_owned(),
                    source,
                })?;
        }
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

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStrExt;
    use std::time::Instant;

    use tokio::io::{AsyncBufReadExt, BufReader};

    use super::*;
    use crate::event::{Connect, CpuSample, CpuUsage, ExeId, Exec, Lost, Payload, Source};
    use crate::time::Mono;

    struct Served {
        hub: TailHub,
        path: PathBuf,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<()>,
        _dir: tempfile::TempDir,
    }

    fn cfg_in(dir: &Path) -> TailConfig {
        TailConfig {
            socket: dir.join("run/minerwatch.sock"),
            ..TailConfig::default()
        }
    }

    async fn serve(cfg: impl FnOnce(&Path) -> TailConfig) -> Served {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = cfg(dir.path());
        let metrics = Metrics::new().expect("metrics");
        let hub = TailHub::new(&cfg, &metrics);
        let server = TailServer::bind(&cfg, hub.clone()).expect("bind");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        Served {
            hub,
            path: cfg.socket,
            stop: Some(tx),
            task,
            _dir: dir,
        }
    }

    async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        let t0 = Instant::now();
        while !cond() {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn numbered(i: u64) -> TailMessage {
        TailMessage {
            time: "t".into(),
            tgid: Some(1),
            detail: format!("n {i}"),
            ..TailMessage::new(TailKind::Exec)
        }
    }

    fn seq(msg: &TailMessage) -> u64 {
        msg.detail
            .strip_prefix("n ")
            .and_then(|n| n.parse().ok())
            .expect("numbered message")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn messages_reach_the_client_in_order_and_shutdown_cleans_up() {
        let mut s = serve(cfg_in).await;
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&s.path), 0o600);
        assert_eq!(mode(s.path.parent().expect("dir")), 0o700);

        let stream = UnixStream::connect(&s.path).await.expect("connect");
        let hub = s.hub.clone();
        wait_for("client registration", || hub.client_count() == 1).await;
        for i in 0..1000 {
            s.hub.publish(&numbered(i));
        }
        let mut lines = BufReader::new(stream).lines();
        for i in 0..1000 {
            let line = lines.next_line().await.expect("read").expect("a line");
            let msg: TailMessage = serde_json::from_str(&line).expect("json");
            assert_eq!(seq(&msg), i);
        }

        let t0 = Instant::now();
        let _ = s.stop.take().map(|tx| tx.send(()));
        tokio::time::timeout(Duration::from_secs(2), &mut s.task)
            .await
            .expect("stops in 2 s")
            .expect("join");
        assert_eq!(
            lines.next_line().await.expect("read"),
            None,
            "client sees EOF"
        );
        assert!(!s.path.exists(), "socket file removed");
        eprintln!("tail shutdown took {:?}", t0.elapsed());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_client_is_told_exactly_what_it_missed() {
        let s = serve(cfg_in).await;
        let stream = UnixStream::connect(&s.path).await.expect("connect");
        let hub = s.hub.clone();
        wait_for("client registration", || hub.client_count() == 1).await;

        const N: u64 = 100_000;
        let t0 = Instant::now();
        for i in 0..N {
            s.hub.publish(&numbered(i));
        }
        let took = t0.elapsed();
        eprintln!(
            "published {N} messages to a stalled client in {took:?} ({:.0} ns each)",
            took.as_nanos() as f64 / N as f64
        );

        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send(serde_json::from_str::<TailMessage>(&line).expect("json"));
            }
        });
        let hub = s.hub.clone();
        wait_for("queue drained", || hub.backlog() == 0).await;
        s.hub.publish(&numbered(N));

        let mut expect = 0u64;
        let mut skipped_lines = 0;
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("more lines")
                .expect("open");
            if msg.kind == TailKind::Skipped {
                assert_eq!(
                    msg.to_line().expect("json"),
                    format!(
                        "{{\"kind\":\"skipped\",\"count\":{}}}\n",
                        msg.count.unwrap_or(0)
                    )
                    .into_bytes()
                );
                expect += msg.count.expect("count");
                skipped_lines += 1;
                continue;
            }
            assert_eq!(seq(&msg), expect, "gap without a skipped line");
            expect += 1;
            if seq(&msg) == N {
                break;
            }
        }
        assert!(
            skipped_lines >= 1,
            "a stalled client must have missed messages"
        );
        eprintln!("skipped lines: {skipped_lines}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stalled_client_is_disconnected() {
        let s = serve(|d| TailConfig {
            stall_timeout_ms: 200,
            client_queue: 16,
            ..cfg_in(d)
        })
        .await;
        let _stream = UnixStream::connect(&s.path).await.expect("connect");
        let hub = s.hub.clone();
        wait_for("client registration", || hub.client_count() == 1).await;
        let t0 = Instant::now();
        // Enough to fill the socket buffer, then keep publishing so the hub
        // notices the writer has gone.
        let filler = "x".repeat(1000);
        while s.hub.client_count() == 1 {
            assert!(t0.elapsed() < Duration::from_secs(5), "never disconnected");
            for _ in 0..100 {
                s.hub.publish(&TailMessage {
                    detail: filler.clone(),
                    ..TailMessage::new(TailKind::Exec)
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(t0.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn client_over_the_limit_is_told_why() {
        let s = serve(|d| TailConfig {
            max_clients: 1,
            ..cfg_in(d)
        })
        .await;
        let _first = UnixStream::connect(&s.path).await.expect("connect");
        let hub = s.hub.clone();
        wait_for("client registration", || hub.client_count() == 1).await;
        let second = UnixStream::connect(&s.path).await.expect("connect");
        let mut lines = BufReader::new(second).lines();
        let line = lines.next_line().await.expect("read").expect("a line");
        assert_eq!(
            line,
            r#"{"kind":"error","message":"too many tail clients (1 connected); raise tail.max_clients"}"#
        );
        assert_eq!(lines.next_line().await.expect("read"), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stale_socket_is_replaced_live_one_and_files_are_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = TailConfig {
            socket: dir.path().join("m.sock"),
            ..TailConfig::default()
        };
        let metrics = Metrics::new().expect("metrics");
        drop(std::os::unix::net::UnixListener::bind(&cfg.socket).expect("stale socket"));
        let live =
            TailServer::bind(&cfg, TailHub::new(&cfg, &metrics)).expect("stale socket replaced");
        let second = TailServer::bind(&cfg, TailHub::new(&cfg, &metrics));
        assert!(
            matches!(second, Err(TailError::InUse { .. })),
            "live socket must not be replaced"
        );
        drop(live);

        let file = TailConfig {
            socket: dir.path().join("plain"),
            ..TailConfig::default()
        };
        std::fs::write(&file.socket, b"keep me").expect("write");
        let e = TailServer::bind(&file, TailHub::new(&file, &metrics))
            .err()
            .expect("refused");
        assert_eq!(
            e.to_string(),
            format!(
                "{} exists and is not a socket; remove it or set tail.socket (--socket) to another path",
                file.socket.display()
            )
        );
        assert_eq!(
            std::fs::read(&file.socket).expect("still there"),
            b"keep me"
        );
    }

    /// Outcome of connecting as uid/gid 65534 from a forked child.
    #[derive(Debug, PartialEq)]
    enum Nobody {
        ConnectFailed(i32),
        Received(String),
    }

    /// Forks a child that drops to nobody and connects. The child makes only
    /// async-signal-safe calls (the test process has threads).
    fn connect_as_nobody(path: &Path) -> Nobody {
        // SAFETY: plain libc calls on valid, owned buffers; the child only
        // calls async-signal-safe functions and leaves with _exit.
        unsafe {
            let mut addr: libc::sockaddr_un = std::mem::zeroed();
            addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
            for (dst, src) in addr.sun_path.iter_mut().zip(path.as_os_str().as_bytes()) {
                *dst = *src as libc::c_char;
            }
            let mut fds = [0; 2];
            assert_eq!(libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC), 0);
            let pid = libc::fork();
            assert!(pid >= 0, "fork");
            if pid == 0 {
                let out = fds[1];
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(65534) != 0
                    || libc::setuid(65534) != 0
                {
                    libc::_exit(3);
                }
                let s = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
                let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
                if libc::connect(s, &addr as *const _ as *const libc::sockaddr, len) != 0 {
                    let errno = *libc::__errno_location();
                    let msg = [b'E', errno as u8];
                    libc::write(out, msg.as_ptr().cast(), 2);
                    libc::_exit(0);
                }
                libc::write(out, b"D".as_ptr().cast(), 1);
                let mut buf = [0u8; 512];
                loop {
                    let n = libc::read(s, buf.as_mut_ptr().cast(), buf.len());
                    if n <= 0 {
                        break;
                    }
                    libc::write(out, buf.as_ptr().cast(), n as usize);
                }
                libc::_exit(0);
            }
            libc::close(fds[1]);
            let mut got = Vec::new();
            let mut buf = [0u8; 512];
            loop {
                let n = libc::read(fds[0], buf.as_mut_ptr().cast(), buf.len());
                if n <= 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n as usize]);
            }
            libc::close(fds[0]);
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "child failed: {status}"
            );
            match got.split_first() {
                Some((b'E', rest)) => {
                    Nobody::ConnectFailed(rest.first().copied().unwrap_or(0) as i32)
                }
                Some((b'D', rest)) => Nobody::Received(String::from_utf8_lossy(rest).into_owned()),
                _ => panic!("child said {got:?}"),
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn non_root_client_is_refused() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root to switch a child to uid 65534");
            return;
        }
        let s = serve(cfg_in).await;
        // As installed: the 0700 directory and 0600 socket keep nobody out.
        let path = s.path.clone();
        let outcome = tokio::task::spawn_blocking(move || connect_as_nobody(&path))
            .await
            .expect("join");
        assert_eq!(outcome, Nobody::ConnectFailed(libc::EACCES));

        // With the file permissions opened up, SO_PEERCRED still refuses.
        let dir = s.path.parent().expect("dir");
        std::fs::set_permissions(s._dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::set_permissions(&s.path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        let path = s.path.clone();
        let outcome = tokio::task::spawn_blocking(move || connect_as_nobody(&path))
            .await
            .expect("join");
        assert_eq!(
            outcome,
            Nobody::Received(
                "{\"kind\":\"error\",\"message\":\"permission denied: minerwatch tail requires root\"}\n".into()
            )
        );
        assert_eq!(s.hub.client_count(), 0);
    }

    fn exec_event() -> Event {
        Event::Exec(Exec {
            time: Mono::from_secs(1),
            tgid: 4242,
            pid: 4242,
            ppid: 1,
            uid: 33,
            gid: 33,
            cgroup_id: 1,
            start_boottime_ns: 0,
            comm: "xmrig".into(),
            filename: "./xmrig".into(),
            argv: vec!["./xmrig".into(), "-o".into(), "pool:3333".into()],
            argv_truncated: false,
            exe: ExeId {
                dev: 1,
                ino: 2,
                nlink: 0,
                memfd: false,
                name: "xmrig".into(),
                unknown: false,
            },
            exe_path: Some("/tmp/xmrig".into()),
            cgroup: None,
            source: Source::Kernel,
        })
    }

    #[test]
    fn events_become_readable_messages() {
        let clock = WallClock::new();
        let one = |ev: &Event| {
            let mut v = TailMessage::from_event(ev, &clock);
            assert_eq!(v.len(), 1);
            v.remove(0)
        };
        let exec = one(&exec_event());
        assert_eq!(exec.kind, TailKind::Exec);
        assert_eq!(
            (exec.pid, exec.tgid, exec.ppid, exec.uid),
            (Some(4242), Some(4242), Some(1), Some(33))
        );
        assert_eq!(exec.exe.as_deref(), Some("/tmp/xmrig"));
        assert_eq!(exec.detail, "exec ./xmrig -o pool:3333 [deleted]");
        assert_eq!(exec.time, clock.rfc3339(Mono::from_secs(1)));

        let connect = one(&Event::Connect(Connect {
            time: Mono(1),
            tgid: 7,
            pid: 8,
            uid: 0,
            comm: "c".into(),
            daddr: "1.2.3.4".parse().expect("ip"),
            dport: 3333,
            result: ConnectResult::Connected,
            cookie: 1,
            v4_mapped: false,
            source: Source::Kernel,
        }));
        assert_eq!(connect.detail, "connect 1.2.3.4:3333 connected");

        let data = br#"{"id":1,"method":"login","params":{"login":"wallet","pass":"x","agent":"XMRig/6.21"}}"#;
        let payload = one(&Event::Payload(Payload {
            time: Mono(1),
            tgid: Some(7),
            cookie: 1,
            saddr: "10.0.0.2".parse().expect("ip"),
            sport: 5000,
            daddr: "10.0.0.1".parse().expect("ip"),
            dport: 3333,
            payload_len: 256,
            packet_index: 0,
            untracked: false,
            data: data.to_vec(),
        }));
        assert_eq!(
            payload.detail,
            r#"payload 256B to 10.0.0.1:3333 "{\"id\":1,\"method\":\"login\",\"params\":{\"login\":\"wall…""#
        );
        let binary = one(&Event::Payload(Payload {
            time: Mono(1),
            tgid: None,
            cookie: 1,
            saddr: "::1".parse().expect("ip"),
            sport: 5000,
            daddr: "::1".parse().expect("ip"),
            dport: 443,
            payload_len: 3,
            packet_index: 0,
            untracked: true,
            data: vec![0x16, 0x1b, b'"'],
        }));
        assert_eq!(
            binary.detail,
            r#"payload 3B to [::1]:443 "\x16\x1b\"" (flow predates the agent)"#
        );

        let lost = one(&Event::Lost(Lost {
            time: Mono(1),
            site: "exec_ring_full".into(),
            count: 12,
        }));
        assert_eq!(
            (lost.count, lost.detail.as_str()),
            (Some(12), "lost 12 events (exec_ring_full)")
        );
    }

    #[test]
    fn cpu_sample_lists_the_twenty_busiest_above_a_twentieth_of_a_core() {
        let mut usage: Vec<CpuUsage> = (0..30)
            .map(|i| CpuUsage {
                tgid: 100 + i,
                on_cpu_ns: 100_000_000 + i as u64 * 10_000_000,
            })
            .collect();
        usage.push(CpuUsage {
            tgid: 1,
            on_cpu_ns: 40_000_000,
        });
        let ev = Event::CpuSample(CpuSample {
            time: Mono(1),
            interval_ns: 1_000_000_000,
            usage,
        });
        let msgs = TailMessage::from_event(&ev, &WallClock::new());
        assert_eq!(msgs.len(), 20);
        assert_eq!(
            (msgs[0].tgid, msgs[0].detail.as_str()),
            (Some(129), "cpu 0.39 cores")
        );
        assert!(
            msgs.iter()
                .all(|m| m.kind == TailKind::Cpu && m.tgid != Some(1))
        );
        let idle = Event::CpuSample(CpuSample {
            time: Mono(1),
            interval_ns: 1_000_000_000,
            usage: vec![CpuUsage {
                tgid: 1,
                on_cpu_ns: 1,
            }],
        });
        assert!(TailMessage::from_event(&idle, &WallClock::new()).is_empty());
    }

    #[test]
    fn alert_and_action_messages() {
        let rec = AlertRecord::from_verdict(
            &crate::sinks::alerts::tests::verdict(),
            &WallClock::new(),
            None,
            None,
        );
        let mut rec = rec;
        rec.would = vec!["kill 4242".into()];
        let msg = TailMessage::from_alert(&rec);
        assert_eq!(msg.kind, TailKind::Alert);
        assert_eq!(msg.severity, Some(Severity::Critical));
        assert_eq!(
            msg.detail,
            "pool_protocol_unverified: login to 10.0.0.1:3333 | would: kill 4242"
        );
        let line = String::from_utf8(msg.to_line().expect("json")).expect("utf-8");
        assert!(
            line.contains(r#""kind":"alert""#) && line.contains(r#""severity":"critical""#),
            "{line}"
        );

        let act = ActionRecord::new(
            Mono(1),
            &WallClock::new(),
            "kill",
            4242,
            "ok",
            "pool_protocol_unverified",
            3,
        );
        let msg = TailMessage::from_action(&act);
        assert_eq!((msg.kind, msg.tgid), (TailKind::Action, Some(4242)));
        assert_eq!(msg.detail, "kill 4242 ok: pool_protocol_unverified (3 ms)");
    }

    #[test]
    fn control_lines_are_exact() {
        assert_eq!(
            TailMessage::skipped(5).to_line().expect("json"),
            b"{\"kind\":\"skipped\",\"count\":5}\n"
        );
        assert_eq!(
            TailMessage::error(PERMISSION_DENIED).to_line().expect("json"),
            b"{\"kind\":\"error\",\"message\":\"permission denied: minerwatch tail requires root\"}\n".to_vec()
        );
    }
}
