//! One event's way through the daemon: enrich → record → tail → detect →
//! respond → alert. Runs on one task; nothing here blocks for long (kills
//! are bounded by the kill timeout, alert writes by an fsync).

use std::{collections::HashMap, net::IpAddr, sync::Arc, time::Duration};

use crate::{
    detect::{Detector, Input, Verdict},
    enrich::container,
    event::{Event, ExeId, Provenance, ProvenanceEvent, ProvenanceVerdict},
    process::procfs::{Flow, FlowResolver},
    provenance::{CheckResult, Job, Service},
    response::Responder,
    sensor::cpu_poll::CpuPoller,
    sinks::{
        alerts::{ActionRecord, AlertRecord, AlertSink},
        metrics::Metrics,
        recorder::Recorder,
        tail::TailHub,
    },
    time::{Mono, WallClock},
};

pub struct Pipeline {
    detector: Detector,
    responder: Responder,
    provenance: Service,
    poller: CpuPoller,
    alerts: AlertSink,
    tail: TailHub,
    recorder: Option<Recorder>,
    metrics: Arc<Metrics>,
    clock: WallClock,
    print_events: bool,
    resolver: FlowResolver,
    /// cgroup id → path: one /proc read per cgroup, not per exec.
    cgroup_paths: HashMap<u64, Option<String>>,
    /// Executable identity → (when checked, verdict): at most one hashing
    /// job per executable per `PROVENANCE_MEMO`, so an exec storm of one
    /// binary costs one check, not thousands.
    provenance_memo: HashMap<ExeId, (Mono, Provenance)>,
    memo_hits: Vec<ProvenanceEvent>,
}

/// The v2 root cgroup (kernfs root inode). On hybrid hosts every process
/// sits here and its path says nothing, so it is neither read nor cached.
const ROOT_CGROUP_ID: u64 = 1;
/// How long a provenance verdict is reused for new processes of the same
/// executable (dev, inode) before it is checked again: the bound on how
/// long an in-place rewrite of a binary keeps its old verdict.
const PROVENANCE_MEMO: u64 = 10_000_000_000;
const MEMO_MAX: usize = 8192;

impl Pipeline {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        detector: Detector,
        responder: Responder,
        provenance: Service,
        poller: CpuPoller,
        alerts: AlertSink,
        tail: TailHub,
        recorder: Option<Recorder>,
        metrics: Arc<Metrics>,
        clock: WallClock,
        print_events: bool,
    ) -> Self {
        Pipeline {
            detector,
            responder,
            provenance,
            poller,
            alerts,
            tail,
            recorder,
            metrics,
            clock,
            print_events,
            resolver: FlowResolver::new(crate::defaults::PROC_PATH),
            cgroup_paths: HashMap::new(),
            provenance_memo: HashMap::new(),
            memo_hits: Vec::new(),
        }
    }

    /// A sensor or sweep event. `drained_at` is when the ring reader read
    /// it (kernel events only: poll-lag metric).
    pub fn event(&mut self, mut ev: Event, drained_at: Option<Mono>) {
        if let Some(at) = drained_at {
            self.metrics.observe_poll_lag(ev.time(), at);
        }
        self.enrich(&mut ev);
        self.feed(ev);
        // A reused verdict follows its exec, as a worker's result would.
        for p in std::mem::take(&mut self.memo_hits) {
            self.feed(Event::Provenance(p));
        }
    }

    pub fn provenance(&mut self, r: CheckResult) {
        let result = match r.event.provenance.verdict {
            ProvenanceVerdict::Verified => "verified",
            ProvenanceVerdict::Unverified
                if r.event
                    .provenance
                    .reasons
                    .contains(&crate::event::Reason::Unreadable) =>
            {
                "unreadable"
            }
            ProvenanceVerdict::Unverified => "unverified",
        };
        self.metrics
            .provenance_checks
            .with_label_values(&[result])
            .inc();
        if !r.cache_hit {
            self.metrics.provenance_hash_seconds.observe(r.hash_seconds);
        }
        let ev = &r.event;
        if result != "unreadable" && !ev.exe.unknown && !ev.exe.memfd {
            if self.provenance_memo.len() >= MEMO_MAX {
                self.provenance_memo.clear();
            }
            self.provenance_memo
                .insert(ev.exe.clone(), (ev.time, ev.provenance.clone()));
        }
        self.feed(Event::Provenance(r.event));
    }

    /// Once a second: CPU sample, kernel drop counters, detector tick.
    pub fn tick(&mut self, now: Mono) {
        if let Some(sample) = self.poller.poll_cpu(now) {
            self.feed(Event::CpuSample(sample));
        }
        for lost in self.poller.poll_drops(now) {
            log::warn!("kernel dropped {} records at {}", lost.count, lost.site);
            self.feed(Event::Lost(lost));
        }
        let dropped = self.provenance.dropped();
        if dropped > 0 {
            log::debug!("provenance queue dropped {dropped} jobs so far");
        }
        if let Some(r) = self.recorder.as_mut() {
            r.tick(now);
        }
        let verdicts = self.detector.step(Input::Tick, now);
        self.metrics
            .tracked_processes
            .set(self.detector.stats().tracked_processes as i64);
        self.handle(verdicts, now);
    }

    fn enrich(&mut self, ev: &mut Event) {
        match ev {
            Event::Exec(x) => {
                if x.cgroup.is_none() && x.cgroup_id > ROOT_CGROUP_ID {
                    if self.cgroup_paths.len() >= MEMO_MAX {
                        self.cgroup_paths.clear();
                    }
                    x.cgroup = self
                        .cgroup_paths
                        .entry(x.cgroup_id)
                        .or_insert_with(|| container::read_cgroup(x.tgid))
                        .clone();
                }
                let memo = self
                    .provenance_memo
                    .get(&x.exe)
                    .filter(|(at, _)| x.time.saturating_sub(*at) < PROVENANCE_MEMO)
                    .map(|(_, p)| p.clone());
                match memo {
                    Some(provenance) => {
                        let (tgid, exe, time) = (x.tgid, x.exe.clone(), x.time);
                        self.memo_hits.push(ProvenanceEvent {
                            time,
                            tgid,
                            exe,
                            provenance,
                        });
                    }
                    None => {
                        let job = Job {
                            tgid: x.tgid,
                            exe: x.exe.clone(),
                            filename: x.filename.clone(),
                            time: x.time,
                        };
                        self.provenance.submit(job);
                    }
                }
            }
            Event::Exit(x) => self.poller.on_exit(x.tgid, x.cpu_ns),
            Event::Payload(p) if p.tgid.is_none() => {
                // A flow from before the agent: find its owner by 4-tuple.
                let flow = Flow {
                    saddr: p.saddr,
                    sport: p.sport,
                    daddr: p.daddr,
                    dport: p.dport,
                };
                match self.resolver.resolve(&flow) {
                    Ok(Some(tgid)) => p.tgid = Some(tgid),
                    Ok(None) => {}
                    Err(e) => log::debug!("resolving an untracked flow: {e}"),
                }
            }
            _ => {}
        }
    }

    fn feed(&mut self, ev: Event) {
        self.metrics.observe_event(&ev);
        if let Some(r) = self.recorder.as_mut() {
            r.event(&ev);
        }
        if self.tail.has_clients() {
            self.tail.publish_event(&ev, &self.clock);
        }
        if self.print_events && !matches!(ev, Event::Provenance(_)) {
            match crate::sinks::print::event_line(&ev, &self.clock) {
                Ok(line) => eprintln!("{line}"),
                Err(e) => log::debug!("unprintable event: {e}"),
            }
        }
        let now = ev.time();
        let verdicts = self.detector.step(Input::Event(ev), now);
        self.handle(verdicts, now);
    }

    fn handle(&mut self, verdicts: Vec<Verdict>, now: Mono) {
        for v in verdicts {
            let tree = action_scope(&v, self.detector.table());
            let endpoints: Vec<(IpAddr, u16)> = self.detector.pool_endpoints(v.tgid);
            let when = self.clock.rfc3339(Mono::now().max(now));
            let outcome = self.responder.respond(&v, &tree, &endpoints, &when);
            let info = v
                .cgroup
                .as_deref()
                .and_then(container::from_cgroup_path)
                .or_else(|| container::for_pid(v.tgid));
            let mut rec = AlertRecord::from_verdict(
                &v,
                &self.clock,
                info.as_ref().map(|i| i.container_id.clone()),
                info.as_ref().and_then(|i| i.pod_uid.clone()),
            );
            rec.would = outcome.would.clone();
            rec.actions = outcome
                .actions
                .iter()
                .filter(|a| a.result != "would")
                .map(|a| format!("{} {}: {}", a.action.name(), a.target, a.result))
                .collect();
            rec.footholds = outcome.footholds.clone();
            if let Err(e) = self.alerts.emit(&rec) {
                log::error!("writing an alert failed: {e}");
            }
            self.tail.publish_alert(&rec);
            log::warn!(
                "{} {} tgid {} ({}) {}",
                v.severity.name(),
                v.rule.name(),
                v.tgid,
                crate::text::escape(&v.comm),
                crate::text::escape(v.exe.as_deref().unwrap_or("?"))
            );
            for a in outcome.actions {
                let ar = ActionRecord::new(
                    Mono::now(),
                    &self.clock,
                    a.action.name(),
                    a.target,
                    a.result,
                    a.reason,
                    a.latency_ms,
                );
                if let Err(e) = self.alerts.emit_action(&ar) {
                    log::error!("writing an action record failed: {e}");
                }
                self.tail.publish_action(&ar);
            }
        }
    }

    /// Flush what is buffered and stop the workers, within `deadline`.
    pub fn finish(self, deadline: Duration) {
        let Pipeline {
            mut alerts,
            mut recorder,
            provenance,
            ..
        } = self;
        if let Some(r) = recorder.as_mut()
            && let Err(e) = r.flush()
        {
            log::error!("flushing the recording failed: {e}");
        }
        if let Err(e) = alerts.flush(deadline) {
            log::error!("flushing alerts failed: {e}");
        }
        // Workers may be mid-hash; do not wait for them past the deadline.
        std::thread::spawn(move || provenance.shutdown());
    }
}

/// The processes a response may act on besides the verdict's own: its
/// descendants, members running the same executable, and, inside a
/// container's cgroup, unverified members of that cgroup. Other members
/// (an unverified ancestor's tree, say) are in the alert, never acted on.
pub fn action_scope(v: &Verdict, table: &crate::process::table::ProcessTable) -> Vec<u32> {
    let mut scope = table.descendants(v.tgid);
    let me = table.get(v.tgid);
    let container = v
        .cgroup
        .as_deref()
        .is_some_and(|c| container::from_cgroup_path(c).is_some());
    for &m in &v.members {
        if scope.contains(&m) || m == v.tgid {
            continue;
        }
        let Some(mp) = table.get(m) else { continue };
        let same_exe = me.is_some_and(|p| p.has_exe_identity() && p.exe == mp.exe);
        let mate = container
            && me.is_some_and(|p| p.cgroup_id == mp.cgroup_id)
            && mp.is_verified() != Some(true);
        if same_exe || mate {
            scope.push(m);
        }
    }
    scope
}
