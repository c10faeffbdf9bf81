//! The detector: a pure state machine from events (and ticks) to verdicts.
//!
//! State per process lives next to the process table: the interesting
//! flows it holds (pool port or address, pool protocol, TLS to a pool), a
//! miner command line, a CPU history and the verdicts already given.
//! Evidence is inherited on fork (with the fds and the image) but counts
//! for the child alone only once the process that produced it is gone (a
//! daemonized miner); while that process lives, its forked workers feed the
//! group rule instead of alerting one by one.
//!
//! No clock, no I/O, no randomness: time comes in with each input, maps
//! that are iterated are ordered, so a recording replays to the same
//! verdicts.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;

use serde::Serialize;

use super::cmdline::miner_cmdline;
use super::config::Cidr;
use super::cpu::{CpuHistory, CpuPoint, CpuPolicy, MIN_SPAN_NS};
use super::fingerprint::{FpuTrack, Hints, msr_module_hint};
use super::protocol::proxy::Host;
use super::protocol::stream::Segment;
use super::protocol::{FlowStream, FlowView, Hop, Protocol, classify, tls_sni};
use super::{DetectorConfig, Rule, Severity, Verdict};
use crate::event::{
    Connect, CpuSample, Event, ExeId, Exec, FlowStats, Fork, Fpu, Hint, Payload, Provenance,
    ProvenanceEvent, Source,
};
use crate::process::table::{EvictionCounts, Origin, Process, ProcessTable, exe_identity_known};
use crate::time::Mono;

/// One input to [`Detector::step`].
// Events are moved in once and consumed; boxing them would only add an
// allocation per event on the hot path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Event(Event),
    /// Periodic housekeeping (expire exited processes, re-judge evidence
    /// whose CPU window or provenance wait moved). The daemon sends one
    /// every second.
    Tick,
}

/// Counters for `/metrics` and `replay` summaries.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DetectorStats {
    /// Processes in the table (live, exited within the grace period, and
    /// exited ancestors of live processes kept for verdict chains).
    pub tracked_processes: usize,
    pub live_processes: usize,
    /// Exited processes kept because a live process descends from them.
    pub retained_ancestors: usize,
    /// Live processes holding some evidence (pool flow, miner command line).
    pub processes_with_evidence: usize,
    /// Removals from the table, by cause.
    pub evictions: EvictionCounts,
    /// `evictions.expired + evictions.capacity + evictions.replaced`.
    pub evictions_total: u64,
    pub events_total: u64,
    pub ticks_total: u64,
    /// Sum of `Lost.count` seen (the detector ignores lost events).
    pub lost_events_total: u64,
    /// Payload peeks by classification.
    pub payloads_by_protocol: BTreeMap<Protocol, u64>,
    /// Payloads that could not be tied to a live process.
    pub payloads_unresolved_total: u64,
    /// MXCSR reports from the fpu sensor.
    pub fpu_reports_total: u64,
    /// Processes that showed the RandomX shape.
    pub fingerprints_total: u64,
    /// Kernel hints (huge pages, MSR).
    pub hints_total: u64,
    /// Remembered connections (socket cookie → process).
    pub flows_remembered: usize,
    pub verdicts_by_rule: BTreeMap<Rule, u64>,
}

/// Interesting flows kept per process (evidence beyond that is dropped,
/// oldest non-pool flow first).
const MAX_FLOWS_PER_PROCESS: usize = 32;
/// Provenance verdicts remembered by executable identity.
const MAX_PROVENANCE_CACHE: usize = 4096;
/// Flows whose peeked bytes are still being reassembled (each holds at most
/// `stream::MAX_BYTES`); the oldest goes first.
const MAX_STREAMS: usize = 2048;

/// (cookie, destination address, destination port); cookie 0 for flows the
/// startup sweep found (no cookie available).
pub(super) type FlowKey = (u64, IpAddr, u16);

/// The process that produced a piece of evidence: (tgid, start time).
pub(super) type Owner = (u32, Mono);

#[derive(Debug, Clone)]
pub(super) struct Flow {
    pub time: Mono,
    pub owner: Owner,
    pub daddr: IpAddr,
    pub dport: u16,
    pub pool_port: bool,
    pub pool_addr: bool,
    /// First decisive classification of the flow's bytes (`Unknown` only
    /// while nothing better was seen).
    pub class: Option<Protocol>,
    /// First mining classification, if any (a pool login may follow an
    /// HTTP CONNECT or a SOCKS handshake on the same flow).
    pub mining: Option<(Mono, Protocol)>,
    pub sni: Option<String>,
    pub pool_sni: bool,
    /// Layers the flow passes through (proxies, WebSocket), outermost
    /// first; `daddr:dport` is then the first proxy.
    pub hops: Vec<Hop>,
    /// The destination asked of a proxy is a pool port, address or domain.
    pub pool_dest: bool,
    /// The innermost ClientHello, when the flow (or its tunnel) is TLS.
    pub tls: Option<TlsSeen>,
    /// Kernel counters of a TLS flow (how long open, how small its records).
    pub stats: Option<FlowCounters>,
    /// Kernel-seen connect: its first bytes are expected by then.
    pub payload_due: Option<Mono>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TlsSeen {
    pub ja4: String,
    pub alpn: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FlowCounters {
    /// The ClientHello.
    pub since: Mono,
    /// The latest report.
    pub last: Mono,
    pub packets: u32,
    pub bytes: u64,
    pub max_len: u32,
}

impl Flow {
    fn new(time: Mono, owner: Owner, daddr: IpAddr, dport: u16) -> Flow {
        Flow {
            time,
            owner,
            daddr,
            dport,
            pool_port: false,
            pool_addr: false,
            class: None,
            mining: None,
            sni: None,
            pool_sni: false,
            hops: Vec::new(),
            pool_dest: false,
            tls: None,
            stats: None,
            payload_due: None,
        }
    }

    /// Takes in what the flow's bytes said (a later view knows at least as
    /// much as an earlier one).
    fn learn(&mut self, l: &Learned) {
        if let Some(v) = &l.view {
            if v.protocol != Protocol::Unknown || self.class.is_none() {
                self.class = Some(v.protocol);
            }
            if v.hops.len() >= self.hops.len() {
                self.hops.clone_from(&v.hops);
            }
            if let Some(h) = &v.tls {
                self.tls = Some(TlsSeen {
                    ja4: h.ja4(),
                    alpn: h.alpn.first().cloned(),
                });
            }
        } else if self.class.is_none_or(|c| c == Protocol::Unknown) {
            self.class = Some(l.packet);
        }
        if self.mining.is_none() {
            self.mining = l.mining;
        }
        if l.sni.is_some() {
            self.sni.clone_from(&l.sni);
            self.pool_sni = l.pool_sni;
        }
        self.pool_dest |= l.pool_dest;
    }
}

/// What one payload record told about its flow.
struct Learned {
    /// The packet's own bytes, classified alone.
    packet: Protocol,
    /// The flow's reassembled stream (kernel-tracked flows).
    view: Option<FlowView>,
    mining: Option<(Mono, Protocol)>,
    sni: Option<String>,
    pool_sni: bool,
    pool_dest: bool,
}

impl Flow {
    /// The flow proved it speaks something other than a pool protocol.
    pub fn speaks_other(&self) -> bool {
        self.mining.is_none() && self.class.is_some_and(Protocol::is_other)
    }

    /// A connection to a pool endpoint that did not turn out to be
    /// something else (and had its chance to show its first bytes).
    pub fn is_pool_connection(&self, now: Mono) -> bool {
        self.could_be_pool_connection()
            && (self.class.is_some() || self.payload_due.is_none_or(|d| now >= d))
    }

    pub(super) fn could_be_pool_connection(&self) -> bool {
        (self.pool_port || self.pool_addr || self.pool_sni || self.pool_dest)
            && !self.speaks_other()
    }

    /// The flow reaches its destination through a proxy.
    pub(super) fn proxied(&self) -> bool {
        self.hops.iter().any(|h| matches!(h, Hop::Proxy(_)))
    }

    /// Evidence now or once the payload wait is over.
    fn is_evidence(&self) -> bool {
        self.mining.is_some() || self.could_be_pool_connection()
    }
}

#[derive(Debug, Clone)]
pub(super) struct CmdlineEvidence {
    pub time: Mono,
    pub owner: Owner,
    pub detail: String,
}

#[derive(Debug, Clone, Default)]
pub(super) struct Track {
    pub flows: BTreeMap<FlowKey, Flow>,
    pub cmdline: Option<CmdlineEvidence>,
    pub cpu: CpuHistory,
    pub alerted: BTreeMap<Rule, Severity>,
    /// When the current image appeared to the detector (provenance wait).
    pub image_seen: Mono,
    /// MXCSR states its threads were switched out with (this image only:
    /// neither inherited on fork nor kept across exec).
    pub fpu: FpuTrack,
    /// Kernel hints of mining set-up (supporting evidence).
    pub hints: Hints,
}

impl Track {
    pub fn has_evidence(&self) -> bool {
        self.cmdline.is_some()
            || self.fpu.shape.is_some()
            || self.flows.values().any(Flow::is_evidence)
    }

    fn insert_flow(&mut self, key: FlowKey, flow: Flow) {
        if !self.flows.contains_key(&key) && self.flows.len() >= MAX_FLOWS_PER_PROCESS {
            let victim = self
                .flows
                .iter()
                .filter(|(_, f)| !f.is_evidence())
                .min_by_key(|(k, f)| (f.time, **k))
                .or_else(|| self.flows.iter().min_by_key(|(k, f)| (f.time, **k)))
                .map(|(k, _)| *k);
            if let Some(k) = victim {
                self.flows.remove(&k);
            }
        }
        self.flows.insert(key, flow);
    }
}

#[derive(Debug, Clone, Copy)]
struct CookieOwner {
    tgid: u32,
    start: Mono,
}

pub struct Detector {
    pub(super) cfg: DetectorConfig,
    pub(super) policy: CpuPolicy,
    ports: Vec<u64>,
    nets: Vec<Cidr>,
    domains: Vec<String>,
    pub(super) table: ProcessTable,
    pub(super) tracks: HashMap<u32, Track>,
    /// Live processes with evidence: judged on every CPU sample and tick.
    pub(super) candidates: BTreeSet<u32>,
    cookies: HashMap<u64, CookieOwner>,
    cookie_order: VecDeque<u64>,
    /// Kernel-tracked flows being reassembled, by socket cookie.
    streams: HashMap<u64, FlowStream>,
    stream_order: VecDeque<u64>,
    /// Sweep-found connections (no cookie): destination → processes, as
    /// (tgid, start time) so a reused tgid never matches. Filled once at
    /// start; bounded by `max_flows`.
    sweep_flows: BTreeMap<(IpAddr, u16), BTreeSet<Owner>>,
    sweep_flow_count: usize,
    provenance_cache: HashMap<ExeId, Provenance>,
    provenance_order: VecDeque<ExeId>,
    pub(super) stats: DetectorStats,
}

/// Pool ports (defaults and extras) as a 65536-bit set.
fn port_bitmap(cfg: &DetectorConfig) -> Vec<u64> {
    let mut ports = vec![0u64; 1024];
    for &p in cfg.pool_ports.iter().chain(&cfg.extra_pool_ports) {
        ports[usize::from(p) / 64] |= 1 << (p % 64);
    }
    ports
}

fn pool_domains(cfg: &DetectorConfig) -> Vec<String> {
    cfg.pool_domains
        .iter()
        .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
        .collect()
}

impl Detector {
    /// `cfg` should have passed [`DetectorConfig::validate`]; invalid pool
    /// addresses are skipped.
    pub fn new(cfg: DetectorConfig) -> Self {
        Detector {
            policy: CpuPolicy::from_config(&cfg),
            ports: port_bitmap(&cfg),
            nets: cfg.pool_networks(),
            domains: pool_domains(&cfg),
            table: ProcessTable::with_retention(cfg.max_processes, cfg.chain.retention()),
            tracks: HashMap::new(),
            candidates: BTreeSet::new(),
            cookies: HashMap::new(),
            cookie_order: VecDeque::new(),
            streams: HashMap::new(),
            stream_order: VecDeque::new(),
            sweep_flows: BTreeMap::new(),
            sweep_flow_count: 0,
            provenance_cache: HashMap::new(),
            provenance_order: VecDeque::new(),
            stats: DetectorStats::default(),
            cfg,
        }
    }

    /// No clock, no I/O, no randomness: same inputs, same verdicts.
    pub fn step(&mut self, input: Input, now: Mono) -> Vec<Verdict> {
        let mut out = Vec::new();
        match input {
            Input::Event(ev) => {
                self.stats.events_total += 1;
                self.observe(ev, now, &mut out);
            }
            Input::Tick => {
                self.stats.ticks_total += 1;
                self.tick(now, &mut out);
            }
        }
        for v in &out {
            *self.stats.verdicts_by_rule.entry(v.rule).or_default() += 1;
        }
        out
    }

    /// A reloaded configuration (SIGHUP): thresholds, windows and pool
    /// lists apply from the next event; the state is kept. The table's and
    /// the flow memory's caps stay as they were (they change on restart).
    pub fn reconfigure(&mut self, mut cfg: DetectorConfig) {
        cfg.max_processes = self.cfg.max_processes;
        cfg.max_flows = self.cfg.max_flows;
        // The table's retention is fixed at start, like its cap.
        cfg.chain.retain_exited_secs = self.cfg.chain.retain_exited_secs;
        cfg.chain.max_retained = self.cfg.chain.max_retained;
        self.policy = CpuPolicy::from_config(&cfg);
        self.ports = port_bitmap(&cfg);
        self.nets = cfg.pool_networks();
        self.domains = pool_domains(&cfg);
        self.cfg = cfg;
    }

    /// Did this process itself speak a pool protocol (payload evidence on
    /// a flow it owns)? The response's packaged-binary rule asks it of
    /// every target, not only of the flagged process.
    pub fn spoke_pool_protocol(&self, tgid: u32) -> bool {
        self.tracks.get(&tgid).is_some_and(|t| {
            t.flows
                .values()
                .any(|f| f.owner.0 == tgid && f.mining.is_some())
        })
    }

    pub fn table(&self) -> &ProcessTable {
        &self.table
    }

    pub fn config(&self) -> &DetectorConfig {
        &self.cfg
    }

    /// Endpoints a process (and its tree) used as a pool: flows that spoke a
    /// mining protocol or went to a pool port/address/domain without proving
    /// to be something else. The response blocks these for everyone, so a
    /// respawned miner cannot reach them.
    pub fn pool_endpoints(&self, tgid: u32) -> Vec<(IpAddr, u16)> {
        let mut tgids = vec![tgid];
        tgids.extend(self.table.descendants(tgid));
        let mut out: Vec<(IpAddr, u16)> = tgids
            .iter()
            .filter_map(|t| self.tracks.get(t))
            .flat_map(|track| track.flows.values())
            // Never a proxy: blocking it for everyone would cut off every
            // other client of a shared proxy; the miner's tgids are
            // blocked instead.
            .filter(|f| !f.proxied())
            .filter(|f| f.mining.is_some() || f.could_be_pool_connection())
            .map(|f| (f.daddr, f.dport))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Whether an exec is evidence by itself even if its process is gone
    /// before the detector sees it (a `modprobe msr` speaks of its parent).
    pub fn needs_exec(&self, e: &Exec) -> bool {
        msr_module_hint(e).is_some()
    }

    /// Give mostly empty maps' buffers back (after a storm has expired).
    pub fn shrink(&mut self) {
        use crate::shrink::{deque, map};
        map(&mut self.tracks);
        map(&mut self.cookies);
        map(&mut self.streams);
        map(&mut self.provenance_cache);
        deque(&mut self.cookie_order);
        deque(&mut self.stream_order);
        deque(&mut self.provenance_order);
        self.table.shrink();
    }

    pub fn stats(&self) -> DetectorStats {
        let mut s = self.stats.clone();
        s.tracked_processes = self.table.len();
        s.live_processes = self.table.live_count();
        s.retained_ancestors = self.table.retained_count();
        s.processes_with_evidence = self.candidates.len();
        s.evictions = self.table.evictions();
        s.evictions_total = s.evictions.expired + s.evictions.capacity + s.evictions.replaced;
        s.flows_remembered = self.cookies.len();
        s
    }

    fn observe(&mut self, ev: Event, now: Mono, out: &mut Vec<Verdict>) {
        match ev {
            Event::Exec(e) => self.on_exec(e, now, out),
            Event::Fork(f) => self.on_fork(f, now, out),
            Event::Exit(e) => {
                if self.table.mark_exited(e.tgid, e.time) {
                    self.candidates.remove(&e.tgid);
                }
            }
            Event::Connect(c) => self.on_connect(c, now, out),
            Event::Payload(p) => self.on_payload(p, now, out),
            Event::FlowStats(f) => self.on_flow_stats(f),
            Event::CpuSample(s) => self.on_cpu(s, now, out),
            Event::Provenance(p) => self.on_provenance(p, now, out),
            Event::Lost(l) => self.stats.lost_events_total += l.count,
            Event::Listen(l) => self.on_listen(l),
            Event::Fpu(f) => self.on_fpu(f, now, out),
            Event::Hint(h) => self.on_hint(h),
        }
    }

    fn on_fpu(&mut self, f: Fpu, now: Mono, out: &mut Vec<Verdict>) {
        self.stats.fpu_reports_total += 1;
        if !self.ensure_process(f.tgid, &f.comm, 0, f.time, Source::Kernel) {
            return;
        }
        let Some(t) = self.tracks.get_mut(&f.tgid) else {
            return;
        };
        if t.fpu.observe(&f) {
            self.stats.fingerprints_total += 1;
            self.refresh_candidate(f.tgid);
            self.evaluate(f.tgid, now, out);
        }
    }

    /// Hints never make a verdict; they are listed in the process's.
    fn on_hint(&mut self, h: Hint) {
        self.stats.hints_total += 1;
        if !self.ensure_process(h.tgid, &h.comm, h.uid, h.time, Source::Kernel) {
            return;
        }
        if let Some(t) = self.tracks.get_mut(&h.tgid) {
            t.hints.observe(&h);
        }
    }

    fn tick(&mut self, now: Mono, out: &mut Vec<Verdict>) {
        let grace = self.cfg.exit_grace_secs.saturating_mul(1_000_000_000);
        for tgid in self.table.expire(now, grace) {
            self.forget(tgid);
        }
        self.evaluate_candidates(now, out);
    }

    /// Drops detector state of a process that left the table.
    fn forget(&mut self, tgid: u32) {
        self.tracks.remove(&tgid);
        self.candidates.remove(&tgid);
    }

    fn insert_process(&mut self, p: Process, track: Track) {
        let tgid = p.tgid;
        for (gone, _) in self.table.insert(p) {
            if gone != tgid {
                self.forget(gone);
            }
        }
        self.tracks.insert(tgid, track);
        self.refresh_candidate(tgid);
    }

    /// Keeps `candidates` and table pinning in step with a process's
    /// evidence.
    pub(super) fn refresh_candidate(&mut self, tgid: u32) {
        let live = self.table.live(tgid).is_some();
        let has = live && self.tracks.get(&tgid).is_some_and(Track::has_evidence);
        if has {
            self.candidates.insert(tgid);
        } else {
            self.candidates.remove(&tgid);
        }
        self.table.set_pinned(tgid, has);
    }

    fn on_exec(&mut self, e: Exec, now: Mono, out: &mut Vec<Verdict>) {
        if let Some(h) = msr_module_hint(&e) {
            self.on_hint(h);
        }
        let tgid = e.tgid;
        let same = self.table.live(tgid).is_some_and(|p| {
            p.start_boottime_ns == e.start_boottime_ns
                || p.start_boottime_ns == 0
                || e.start_boottime_ns == 0
        });
        let cached = self.cached_provenance(&e.exe);
        let cmdline = miner_cmdline(&e.argv);
        let placeholder = self
            .table
            .live(tgid)
            .is_some_and(|p| !p.has_exe_identity() && p.filename.is_empty());
        if same && e.source == Source::Sweep && !placeholder {
            // The kernel already told us more than the sweep can.
            self.table.update(tgid, |p| {
                p.exe_path = p.exe_path.take().or(e.exe_path);
                p.cgroup = p.cgroup.take().or(e.cgroup);
            });
            return;
        }
        if same && placeholder {
            // A process known only from a fork of an unknown parent or from
            // its network activity: the exec (kernel or sweep) describes the
            // image it already runs, so its evidence stays.
            let start = self
                .table
                .update(tgid, |p| {
                    apply_exec(p, &e);
                    if e.source == Source::Kernel {
                        p.exec_time = Some(e.time);
                        if p.origin == Origin::Inferred {
                            p.origin = Origin::Exec;
                        }
                    } else if p.origin == Origin::Inferred {
                        p.origin = Origin::Sweep;
                    }
                    if p.provenance.is_none() {
                        p.provenance_time = cached.as_ref().map(|_| e.time);
                        p.provenance = cached;
                    }
                    p.start_time
                })
                .unwrap_or(e.time);
            if let Some(t) = self.tracks.get_mut(&tgid) {
                t.cmdline = cmdline.map(|detail| CmdlineEvidence {
                    time: e.time,
                    owner: (tgid, start),
                    detail,
                });
            }
            self.refresh_candidate(tgid);
        } else if same {
            // A new image in a known process (fork then exec).
            let start = self
                .table
                .update(tgid, |p| {
                    apply_exec(p, &e);
                    p.exec_time = Some(e.time);
                    // Listening sockets are close-on-exec in practice.
                    p.listening = Default::default();
                    p.provenance_time = cached.as_ref().map(|_| e.time);
                    p.provenance = cached;
                    p.start_time
                })
                .unwrap_or(e.time);
            if let Some(t) = self.tracks.get_mut(&tgid) {
                // Sockets are close-on-exec in practice (libuv, Go, Python
                // all set it): the old image's flows go with it.
                t.flows.clear();
                t.fpu = FpuTrack::default();
                t.hints = Hints::default();
                t.image_seen = e.time;
                t.cmdline = cmdline.map(|detail| CmdlineEvidence {
                    time: e.time,
                    owner: (tgid, start),
                    detail,
                });
            }
            self.refresh_candidate(tgid);
        } else {
            let mut p = Process::new(tgid, e.ppid, e.time, Origin::from_source(e.source));
            apply_exec(&mut p, &e);
            if e.source == Source::Kernel {
                p.exec_time = Some(e.time);
            }
            p.provenance_time = cached.as_ref().map(|_| e.time);
            p.provenance = cached;
            let track = Track {
                cmdline: cmdline.map(|detail| CmdlineEvidence {
                    time: e.time,
                    owner: (tgid, e.time),
                    detail,
                }),
                image_seen: e.time,
                ..Track::default()
            };
            self.insert_process(p, track);
        }
        self.evaluate(tgid, now, out);
    }

    fn on_fork(&mut self, f: Fork, now: Mono, out: &mut Vec<Verdict>) {
        let child = f.child_tgid;
        if child == f.parent_tgid {
            return;
        }
        if self.table.live(child).is_some_and(|p| {
            p.start_boottime_ns == f.child_start_boottime_ns && f.child_start_boottime_ns != 0
        }) {
            return; // duplicate
        }
        let mut p = Process::new(child, f.parent_tgid, f.time, Origin::Fork);
        p.comm = f.comm;
        p.start_boottime_ns = f.child_start_boottime_ns;
        let mut track = Track {
            image_seen: f.time,
            ..Track::default()
        };
        if let Some(parent) = self.table.get(f.parent_tgid) {
            p.exe = parent.exe.clone();
            p.exe_path = parent.exe_path.clone();
            p.filename = parent.filename.clone();
            p.argv = parent.argv.clone();
            p.argv_truncated = parent.argv_truncated;
            p.uid = parent.uid;
            p.gid = parent.gid;
            p.cgroup_id = parent.cgroup_id;
            p.cgroup = parent.cgroup.clone();
            p.provenance = parent.provenance.clone();
            p.provenance_time = parent.provenance_time;
            // A forked child holds its parent's listening sockets.
            p.listening = parent.listening.clone();
            if let Some(pt) = self.tracks.get(&f.parent_tgid) {
                track.flows = pt.flows.clone();
                track.cmdline = pt.cmdline.clone();
                track.alerted = pt.alerted.clone();
                track.image_seen = pt.image_seen;
            }
        }
        self.insert_process(p, track);
        self.evaluate(child, now, out);
    }

    fn is_pool_port(&self, port: u16) -> bool {
        self.ports[usize::from(port) / 64] & (1 << (port % 64)) != 0
    }

    fn is_pool_addr(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(ip))
    }

    fn is_pool_domain(&self, sni: &str) -> bool {
        self.domains.iter().any(|d| {
            sni == d
                || (sni.len() > d.len()
                    && sni.ends_with(d.as_str())
                    && sni.as_bytes()[sni.len() - d.len() - 1] == b'.')
        })
    }

    /// A process known only from network activity (its exec was lost or
    /// predates the sweep).
    pub(super) fn ensure_process(
        &mut self,
        tgid: u32,
        comm: &str,
        uid: u32,
        time: Mono,
        source: Source,
    ) -> bool {
        if self.table.live(tgid).is_some() {
            return true;
        }
        if self.table.get(tgid).is_some_and(|p| !p.is_retained()) {
            return false; // exited: late event (a retained ancestor is long gone)
        }
        let origin = if source == Source::Sweep {
            Origin::Sweep
        } else {
            Origin::Inferred
        };
        let mut p = Process::new(tgid, 0, time, origin);
        p.comm = comm.to_owned();
        p.uid = uid;
        self.insert_process(
            p,
            Track {
                image_seen: time,
                ..Track::default()
            },
        );
        true
    }

    fn remember_cookie(&mut self, cookie: u64, owner: CookieOwner) {
        if cookie == 0 {
            return;
        }
        if self.cookies.insert(cookie, owner).is_none() {
            self.cookie_order.push_back(cookie);
            while self.cookies.len() > self.cfg.max_flows {
                let Some(old) = self.cookie_order.pop_front() else {
                    break;
                };
                self.cookies.remove(&old);
            }
        }
    }

    fn on_connect(&mut self, c: Connect, now: Mono, out: &mut Vec<Verdict>) {
        if !c.result.is_success() {
            return;
        }
        if !self.ensure_process(c.tgid, &c.comm, c.uid, c.time, c.source) {
            return;
        }
        let start = self.table.get(c.tgid).map_or(c.time, |p| p.start_time);
        self.remember_cookie(
            c.cookie,
            CookieOwner {
                tgid: c.tgid,
                start,
            },
        );
        if c.source == Source::Sweep
            && c.cookie == 0
            && self.sweep_flow_count < self.cfg.max_flows
            && self
                .sweep_flows
                .entry((c.daddr, c.dport))
                .or_default()
                .insert((c.tgid, start))
        {
            self.sweep_flow_count += 1;
        }
        let pool_port = self.is_pool_port(c.dport);
        let pool_addr = self.is_pool_addr(c.daddr);
        if !(pool_port || pool_addr) {
            return;
        }
        let payload_due = (c.source == Source::Kernel)
            .then(|| c.time.plus_ns(self.cfg.payload_wait_ms * 1_000_000));
        let flow = Flow {
            pool_port,
            pool_addr,
            payload_due,
            ..Flow::new(c.time, (c.tgid, start), c.daddr, c.dport)
        };
        if let Some(t) = self.tracks.get_mut(&c.tgid) {
            let key = (c.cookie, c.daddr, c.dport);
            match t.flows.get_mut(&key) {
                // The payload peek overtook its connect: keep what it said.
                Some(f) => {
                    f.time = f.time.min(c.time);
                    f.pool_port |= pool_port;
                    f.pool_addr |= pool_addr;
                }
                None => t.insert_flow(key, flow),
            }
        }
        self.refresh_candidate(c.tgid);
        self.evaluate(c.tgid, now, out);
    }

    /// Which live processes a payload belongs to, with the flow key to
    /// update in each.
    fn resolve_payload(&mut self, pl: &Payload) -> Vec<(u32, FlowKey)> {
        let key = (pl.cookie, pl.daddr, pl.dport);
        let tgid = match pl.tgid {
            Some(t) => Some(t),
            // Same process as at connect time (not a reused tgid).
            None => self
                .cookies
                .get(&pl.cookie)
                .filter(|o| {
                    pl.cookie != 0
                        && self
                            .table
                            .get(o.tgid)
                            .is_some_and(|p| p.start_time == o.start)
                })
                .map(|o| o.tgid),
        };
        if let Some(t) = tgid {
            if self.table.live(t).is_some() {
                return vec![(t, key)];
            }
            if self.table.get(t).is_some() {
                return self.heirs(t, &key).into_iter().map(|h| (h, key)).collect();
            }
            if pl.tgid.is_some() {
                // Kernel-attributed, but we never saw this process.
                let source = if pl.untracked {
                    Source::Sweep
                } else {
                    Source::Kernel
                };
                if self.ensure_process(t, "", 0, pl.time, source) {
                    return vec![(t, key)];
                }
            }
            return Vec::new();
        }
        // A flow from before the agent: the sweep saw its destination.
        let Some(owners) = self.sweep_flows.get(&(pl.daddr, pl.dport)) else {
            return Vec::new();
        };
        let live: Vec<u32> = owners
            .iter()
            .filter(|&&(t, start)| self.table.live(t).is_some_and(|p| p.start_time == start))
            .map(|&(t, _)| t)
            .collect();
        match live.as_slice() {
            [only] => vec![(*only, (0, pl.daddr, pl.dport))],
            _ => Vec::new(),
        }
    }

    /// Live processes that carry on an exited process's flow: descendants
    /// holding the flow, else forked children still running its image.
    fn heirs(&self, tgid: u32, key: &FlowKey) -> Vec<u32> {
        let desc: Vec<u32> = self
            .table
            .descendants(tgid)
            .into_iter()
            .filter(|&d| self.table.live(d).is_some())
            .collect();
        let holding: Vec<u32> = desc
            .iter()
            .copied()
            .filter(|d| {
                self.tracks
                    .get(d)
                    .is_some_and(|t| t.flows.contains_key(key))
            })
            .collect();
        if !holding.is_empty() {
            return holding;
        }
        let Some(p) = self.table.get(tgid) else {
            return Vec::new();
        };
        if !p.has_exe_identity() {
            return Vec::new();
        }
        p.children()
            .iter()
            .copied()
            .filter(|c| self.table.live(*c).is_some_and(|cp| cp.exe == p.exe))
            .collect()
    }

    /// Adds a kernel-tracked flow's record to its stream and reads the
    /// stream's layers; `None` for flows peeked mid-stream (from before the
    /// agent), which only their own bytes can describe.
    fn stream_view(&mut self, pl: &Payload) -> Option<FlowView> {
        if pl.untracked || pl.cookie == 0 {
            return None;
        }
        if let std::collections::hash_map::Entry::Vacant(slot) = self.streams.entry(pl.cookie) {
            slot.insert(FlowStream::new());
            self.stream_order.push_back(pl.cookie);
            while self.streams.len() > MAX_STREAMS || self.stream_order.len() > 2 * MAX_STREAMS {
                let Some(old) = self.stream_order.pop_front() else {
                    break;
                };
                self.streams.remove(&old);
            }
        }
        let stream = self.streams.get_mut(&pl.cookie)?;
        stream.push(Segment {
            seq: pl.seq,
            packet_index: pl.packet_index,
            len: pl.payload_len,
            data: &pl.data,
            continuation: pl.continuation,
        });
        let view = stream.view();
        let settled = !view.pending
            && (view.mining.is_some()
                || view.tls.is_some()
                || (view.hops.is_empty() && view.protocol.is_other()));
        if settled {
            self.streams.remove(&pl.cookie);
        }
        Some(view)
    }

    fn learn(&mut self, pl: &Payload) -> Learned {
        // A continuation record holds the middle of a ClientHello.
        let packet = if pl.continuation {
            Protocol::Unknown
        } else {
            classify(&pl.data)
        };
        if !pl.continuation {
            *self.stats.payloads_by_protocol.entry(packet).or_default() += 1;
        }
        let view = self.stream_view(pl);
        let mining = view
            .as_ref()
            .and_then(|v| v.mining)
            .or(packet.is_mining().then_some(packet))
            .map(|p| (pl.time, p));
        let sni = match &view {
            Some(v) => v.tls.as_ref().and_then(|h| h.sni.clone()),
            None if packet == Protocol::Tls => tls_sni(&pl.data),
            None => None,
        };
        let pool_dest = view
            .as_ref()
            .and_then(|v| v.destination())
            .is_some_and(|d| {
                self.is_pool_port(d.port)
                    || match &d.host {
                        Host::Ip(ip) => self.is_pool_addr(*ip),
                        Host::Name(n) => self.is_pool_domain(n),
                    }
            });
        Learned {
            packet,
            pool_sni: sni.as_deref().is_some_and(|s| self.is_pool_domain(s)),
            view,
            mining,
            sni,
            pool_dest,
        }
    }

    fn on_payload(&mut self, pl: Payload, now: Mono, out: &mut Vec<Verdict>) {
        let targets = self.resolve_payload(&pl);
        let learned = self.learn(&pl);
        if targets.is_empty() {
            self.stats.payloads_unresolved_total += 1;
            return;
        }
        let pool_port = self.is_pool_port(pl.dport);
        let pool_addr = self.is_pool_addr(pl.daddr);
        // Worth a flow of its own even without a pool connect: a pool
        // protocol or destination, or TLS without ALPN (weak evidence once
        // its counters come).
        let no_alpn_tls = learned
            .view
            .as_ref()
            .and_then(|v| v.tls.as_ref())
            .is_some_and(|h| h.alpn.is_empty());
        let wanted = learned.mining.is_some()
            || learned.pool_sni
            || learned.pool_dest
            || pool_port
            || pool_addr
            || no_alpn_tls;
        let mut touched = BTreeSet::new();
        for (tgid, key) in targets {
            let start = self.table.get(tgid).map_or(pl.time, |p| p.start_time);
            // Copies of the flow held by forked descendants learn too.
            let mut holders = vec![tgid];
            if self
                .tracks
                .get(&tgid)
                .is_some_and(|t| t.flows.contains_key(&key))
            {
                holders.extend(self.table.descendants(tgid).into_iter().filter(|d| {
                    self.tracks
                        .get(d)
                        .is_some_and(|t| t.flows.contains_key(&key))
                }));
            }
            for h in holders {
                let Some(t) = self.tracks.get_mut(&h) else {
                    continue;
                };
                match t.flows.get_mut(&key) {
                    Some(f) => f.learn(&learned),
                    None if h == tgid && wanted => {
                        // No connect seen (flow from before the agent, or a
                        // port that is not a pool port).
                        let mut f = Flow {
                            pool_port,
                            pool_addr,
                            ..Flow::new(pl.time, (tgid, start), pl.daddr, pl.dport)
                        };
                        f.learn(&learned);
                        t.insert_flow(key, f);
                    }
                    None => continue,
                }
                touched.insert(h);
            }
        }
        for &t in &touched {
            self.refresh_candidate(t);
        }
        for t in self.by_start(touched) {
            self.evaluate(t, now, out);
        }
    }

    /// Counters of a TLS flow: they feed weak evidence only, so nothing is
    /// judged here.
    fn on_flow_stats(&mut self, fs: FlowStats) {
        let owner = fs
            .tgid
            .or_else(|| self.cookies.get(&fs.cookie).map(|o| o.tgid));
        let Some(tgid) = owner else {
            return;
        };
        let counters = FlowCounters {
            since: fs.since,
            last: fs.time,
            packets: fs.packets,
            bytes: fs.bytes,
            max_len: fs.max_len,
        };
        let mut holders = vec![tgid];
        holders.extend(self.table.descendants(tgid));
        for h in holders {
            if let Some(t) = self.tracks.get_mut(&h) {
                for (_, f) in t.flows.iter_mut().filter(|(k, _)| k.0 == fs.cookie) {
                    f.stats = Some(counters);
                }
            }
        }
    }

    fn on_cpu(&mut self, s: CpuSample, now: Mono, out: &mut Vec<Verdict>) {
        for u in &s.usage {
            // Exited processes too: a sample after an exit carries the rest
            // of the process's exit total, CPU it really used.
            let Some(p) = self.table.get(u.tgid) else {
                continue;
            };
            let mut begin = Mono(s.time.ns().saturating_sub(s.interval_ns));
            if matches!(p.origin, Origin::Exec | Origin::Fork) {
                // A process that started inside the interval ran only part
                // of it.
                begin = begin.max(p.start_time);
            }
            // …and one that exited inside it, only until its exit.
            let end = p.exited.map_or(s.time, |e| e.min(s.time));
            let span = end.saturating_sub(begin);
            if span < MIN_SPAN_NS {
                continue;
            }
            let cores = u.on_cpu_ns as f64 / span as f64;
            if let Some(t) = self.tracks.get_mut(&u.tgid) {
                t.cpu.push(
                    CpuPoint {
                        time: s.time,
                        span_ns: span,
                        cores,
                    },
                    self.policy.window_ns,
                );
            }
        }
        self.evaluate_candidates(now, out);
    }

    fn cached_provenance(&self, exe: &ExeId) -> Option<Provenance> {
        if !exe_identity_known(exe) {
            return None;
        }
        self.provenance_cache.get(exe).cloned()
    }

    fn on_provenance(&mut self, ev: ProvenanceEvent, now: Mono, out: &mut Vec<Verdict>) {
        let mut targets: BTreeSet<u32> = BTreeSet::new();
        if exe_identity_known(&ev.exe) {
            match self
                .provenance_cache
                .insert(ev.exe.clone(), ev.provenance.clone())
            {
                // Same verdict as before: every live process of this
                // executable already has it (from its exec or its fork).
                Some(old) if old == ev.provenance => {}
                prev => {
                    if prev.is_none() {
                        self.provenance_order.push_back(ev.exe.clone());
                        while self.provenance_cache.len() > MAX_PROVENANCE_CACHE {
                            let Some(old) = self.provenance_order.pop_front() else {
                                break;
                            };
                            self.provenance_cache.remove(&old);
                        }
                    }
                    targets.extend(self.table.with_exe(&ev.exe));
                }
            }
        }
        // The process it was computed for, unless it has exec'd something
        // else since.
        if let Some(p) = self.table.get(ev.tgid)
            && (p.exe == ev.exe || !p.has_exe_identity())
        {
            targets.insert(ev.tgid);
        }
        targets.retain(|t| {
            self.table
                .get(*t)
                .is_some_and(|p| p.provenance.as_ref() != Some(&ev.provenance))
        });
        for &t in &targets {
            self.table.update(t, |p| {
                p.provenance = Some(ev.provenance.clone());
                p.provenance_time = Some(ev.time);
            });
        }
        for t in self.by_start(targets) {
            self.evaluate(t, now, out);
        }
    }

    /// Live tgids ordered parents first (by start time), so a parent's
    /// verdict covers children that would say the same thing.
    pub(super) fn by_start(&self, tgids: impl IntoIterator<Item = u32>) -> Vec<u32> {
        let mut v: Vec<(Mono, u32)> = tgids
            .into_iter()
            .filter_map(|t| self.table.live(t).map(|p| (p.start_time, t)))
            .collect();
        v.sort_unstable();
        v.dedup();
        v.into_iter().map(|(_, t)| t).collect()
    }

    fn evaluate_candidates(&mut self, now: Mono, out: &mut Vec<Verdict>) {
        let order = self.by_start(self.candidates.iter().copied().collect::<Vec<_>>());
        for t in order {
            self.evaluate(t, now, out);
        }
    }
}

fn apply_exec(p: &mut Process, e: &Exec) {
    p.ppid = e.ppid;
    if p.creator == 0 {
        p.creator = e.ppid;
    }
    p.comm.clone_from(&e.comm);
    p.filename.clone_from(&e.filename);
    p.argv.clone_from(&e.argv);
    p.argv_truncated = e.argv_truncated;
    p.exe = e.exe.clone();
    p.exe_path.clone_from(&e.exe_path);
    p.uid = e.uid;
    p.gid = e.gid;
    p.cgroup_id = e.cgroup_id;
    if e.cgroup.is_some() {
        p.cgroup.clone_from(&e.cgroup);
    }
    p.start_boottime_ns = e.start_boottime_ns;
}
