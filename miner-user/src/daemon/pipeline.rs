//! One event's way through the daemon: enrich → record → tail → detect →
//! alert → plan the response. Runs on one task and never waits: the
//! response is carried out on its own thread (a kill waits for the exit, a
//! footholds scan reads files), alert lines are written by theirs, and
//! provenance is hashed by a pool.

use std::{collections::HashMap, sync::Arc, time::Duration};

use super::{memory::Trimmer, report::ActionReporter, resolve::Resolver, scope};
use crate::{
    config::Config,
    detect::{Detector, Input, Verdict},
    enrich::container,
    event::{Event, ExeId, Payload, Provenance, ProvenanceEvent, ProvenanceVerdict},
    process::table::EvictionCounts,
    provenance::{CheckResult, Job, Service},
    response::{
        ActionResult, Outcome, Reported,
        plan::{self, describe},
        safety::Safety,
        worker::{self, Reporter, ResponseQueue, Settings},
    },
    sensor::cpu_poll::CpuPoller,
    sinks::{
        alerts::{AlertRecord, AlertSink},
        http::Health,
        metrics::Metrics,
        recorder::Recorder,
        tail::TailHub,
    },
    time::{Mono, WallClock},
};

/// What a pipeline is built from.
pub struct PipelineParts {
    pub detector: Detector,
    pub provenance: Service,
    pub poller: CpuPoller,
    pub alerts: AlertSink,
    pub tail: TailHub,
    pub recorder: Option<Recorder>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub clock: WallClock,
    pub print_events: bool,
    /// The response settings plans are made with (replaced on reload).
    pub response: Arc<Settings>,
    /// The response thread that carries plans out.
    pub responder: ResponseQueue,
    /// Writes refusals and dropped jobs as action lines.
    pub reporter: ActionReporter,
    /// Finds the owners of flows that predate the agent, off the path.
    pub resolver: Resolver,
}

pub struct Pipeline {
    parts: PipelineParts,
    /// cgroup id → path: one /proc read per cgroup, not per exec.
    cgroup_paths: HashMap<u64, Option<String>>,
    /// Executable identity → (when checked, verdict): at most one hashing
    /// job per executable per `PROVENANCE_MEMO`, so an exec storm of one
    /// binary costs one check, not thousands.
    provenance_memo: HashMap<ExeId, (Mono, Provenance)>,
    memo_hits: Vec<ProvenanceEvent>,
    evictions_seen: EvictionCounts,
    trimmer: Trimmer,
    short_lived: super::short_lived::Scanner,
}

/// The v2 root cgroup (kernfs root inode). On hybrid hosts every process
/// sits here and its path says nothing, so it is neither read nor cached.
const ROOT_CGROUP_ID: u64 = 1;
/// How long a provenance verdict is reused for new processes of the same
/// executable (dev, inode) before it is checked again: the bound on how
/// long an in-place rewrite of a binary keeps its old verdict.
const PROVENANCE_MEMO: u64 = 10_000_000_000;
const MEMO_MAX: usize = 8192;
/// Share of the shutdown deadline a response still running may have.
const RESPONSE_CLOSE: Duration = Duration::from_millis(500);

impl Pipeline {
    pub fn new(parts: PipelineParts) -> Self {
        Pipeline {
            parts,
            cgroup_paths: HashMap::new(),
            provenance_memo: HashMap::new(),
            memo_hits: Vec::new(),
            evictions_seen: EvictionCounts::default(),
            trimmer: Trimmer::default(),
            short_lived: Default::default(),
        }
    }

    /// A reloaded configuration: the detector's settings and the response
    /// settings for the next verdicts (a job already queued keeps its own).
    pub fn reconfigure(&mut self, cfg: &Config) {
        self.parts.detector.reconfigure(cfg.detector.clone());
        let safety = Safety::for_self(
            cfg.response.protect.clone(),
            std::path::Path::new(crate::defaults::PROC_PATH),
        );
        self.parts.response = Arc::new(Settings {
            cfg: cfg.response.clone(),
            safety,
        });
    }

    /// One drain of the ring. Processes that were born and died in it (and
    /// did nothing the detector needs) are only observed: metrics, tail,
    /// recording.
    pub fn batch(&mut self, events: Vec<Event>, drained_at: Mono) {
        let detector = &self.parts.detector;
        let mut scanner = std::mem::take(&mut self.short_lived);
        let short = scanner.scan(&events, |e| detector.needs_exec(e));
        for ev in events {
            if super::short_lived::is_own(&ev, short) {
                self.parts.metrics.observe_poll_lag(ev.time(), drained_at);
                if let Event::Exit(x) = &ev {
                    self.parts.poller.on_exit(x.tgid, x.cpu_ns);
                }
                self.observe(&ev);
            } else {
                self.event(ev, Some(drained_at));
            }
        }
        self.short_lived = scanner;
    }

    /// A sensor or sweep event. `drained_at` is when the ring reader read
    /// it (kernel events only: poll-lag metric).
    pub fn event(&mut self, ev: Event, drained_at: Option<Mono>) {
        if let Some(at) = drained_at {
            self.parts.metrics.observe_poll_lag(ev.time(), at);
        }
        let mut ev = match ev {
            // A flow from before the agent: its owner is found off the
            // path and the payload comes back through `resolved`.
            Event::Payload(p) if p.tgid.is_none() => match self.parts.resolver.submit(p) {
                Ok(()) => return,
                Err(p) => Event::Payload(p),
            },
            ev => ev,
        };
        self.enrich(&mut ev);
        self.feed(ev);
        // A reused verdict follows its exec, as a worker's result would.
        for p in std::mem::take(&mut self.memo_hits) {
            self.feed(Event::Provenance(p));
        }
    }

    /// An untracked flow's payload, its owner looked up (or not found).
    pub fn resolved(&mut self, p: Payload) {
        self.feed(Event::Payload(p));
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
        self.parts
            .metrics
            .provenance_checks
            .with_label_values(&[result])
            .inc();
        if !r.cache_hit {
            self.parts
                .metrics
                .provenance_hash_seconds
                .observe(r.hash_seconds);
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
        if let Some(sample) = self.parts.poller.poll_cpu(now) {
            self.feed(Event::CpuSample(sample));
        }
        let quiet = self.parts.poller.poll_quiet();
        self.parts.metrics.observe_quiet_forks(quiet);
        for lost in self.parts.poller.poll_drops(now) {
            log::warn!(
                "kernel dropped {} records at {}",
                lost.count,
                lost.site.name()
            );
            self.parts.health.mark_lost(now, lost.site, lost.count);
            self.feed(Event::Lost(lost));
        }
        let dropped = self.parts.provenance.dropped();
        if dropped > 0 {
            log::debug!("provenance queue dropped {dropped} jobs so far");
        }
        if let Some(r) = self.parts.recorder.as_mut() {
            r.tick(now);
        }
        let verdicts = self.parts.detector.step(Input::Tick, now);
        let stats = self.parts.detector.stats();
        self.parts
            .metrics
            .tracked_processes
            .set(stats.tracked_processes as i64);
        let (seen, e) = (self.evictions_seen, stats.evictions);
        for (reason, now_n, then_n) in [
            ("expired", e.expired, seen.expired),
            ("capacity", e.capacity, seen.capacity),
            ("replaced", e.replaced, seen.replaced),
        ] {
            self.parts
                .metrics
                .process_evictions
                .with_label_values(&[reason])
                .inc_by(now_n.saturating_sub(then_n));
        }
        self.evictions_seen = e;
        self.handle(verdicts, now);
        if self.trimmer.due(now) {
            self.parts.detector.shrink();
            crate::shrink::map(&mut self.cgroup_paths);
            crate::shrink::map(&mut self.provenance_memo);
            self.trimmer.trim_if_worth_it();
        }
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
                        self.parts.provenance.submit(job);
                    }
                }
            }
            Event::Exit(x) => self.parts.poller.on_exit(x.tgid, x.cpu_ns),
            _ => {}
        }
    }

    fn feed(&mut self, ev: Event) {
        self.observe(&ev);
        let now = ev.time();
        let verdicts = self.parts.detector.step(Input::Event(ev), now);
        self.handle(verdicts, now);
    }

    /// What every event gets, judged or not: metrics, recording, tail.
    fn observe(&mut self, ev: &Event) {
        self.parts.metrics.observe_event(ev);
        if let Some(r) = self.parts.recorder.as_mut() {
            r.event(ev);
        }
        if self.parts.tail.has_clients() {
            self.parts.tail.publish_event(ev, &self.parts.clock);
        }
        if self.parts.print_events && !matches!(ev, Event::Provenance(_)) {
            match crate::sinks::print::event_line(ev, &self.parts.clock) {
                Ok(line) => eprintln!("{line}"),
                Err(e) => log::debug!("unprintable event: {e}"),
            }
        }
    }

    fn handle(&mut self, verdicts: Vec<Verdict>, now: Mono) {
        for v in verdicts {
            self.verdict(v, now);
        }
    }

    /// The alert goes out first; refusals follow as action lines, and what
    /// is to be done is queued for the response thread, whose results
    /// follow in turn.
    fn verdict(&mut self, v: Verdict, now: Mono) {
        let p = &self.parts;
        let scope = scope::of(&v, &p.detector);
        let settings = p.response.clone();
        let plan = plan::plan(
            &settings.cfg,
            &settings.safety,
            &v,
            &scope.targets,
            &scope.endpoints,
        );
        let info = v
            .cgroup
            .as_deref()
            .and_then(container::from_cgroup_path)
            .or_else(|| container::for_pid(v.tgid));
        let mut rec = AlertRecord::from_verdict(
            &v,
            &p.clock,
            info.as_ref().map(|i| i.container_id.clone()),
            info.as_ref().and_then(|i| i.pod_uid.clone()),
        );
        rec.would = plan.would.clone();
        rec.actions = plan
            .refused
            .iter()
            .map(|a| format!("{} {}: {}", a.action.name(), a.target, a.result))
            .chain(plan.steps.iter().map(|s| {
                format!(
                    "{}: queued",
                    describe(s.action, &s.targets, &scope.endpoints)
                )
            }))
            .collect();
        if let Err(e) = p.alerts.emit(&rec) {
            log::error!("writing an alert failed: {e}");
        }
        p.tail.publish_alert(&rec);
        log::warn!(
            "{} {} tgid {} ({}) {}",
            v.severity.name(),
            v.rule.name(),
            v.tgid,
            crate::text::escape(&v.comm),
            crate::text::escape(v.exe.as_deref().unwrap_or("?"))
        );
        for a in &plan.refused {
            p.reporter.action(a);
        }
        let job = worker::Job {
            when: p.clock.rfc3339(Mono::now().max(now)),
            verdict: v,
            steps: plan.steps,
            scope: scope.targets,
            endpoints: scope.endpoints,
            settings,
            queued: std::time::Instant::now(),
        };
        if job.is_empty() {
            return;
        }
        if let Err(job) = p.responder.submit(job) {
            let reason = format!(
                "the response queue is full ({} jobs waiting: a kill or a scan is stuck); not done",
                worker::QUEUE
            );
            for s in &job.steps {
                p.reporter.action(&ActionResult {
                    action: s.action,
                    target: s.targets.first().map_or(job.verdict.tgid, |t| t.tgid),
                    result: Outcome::Dropped,
                    reason: reason.clone(),
                    latency_ms: 0,
                });
            }
            if job.wants_footholds() {
                p.metrics
                    .actions
                    .with_label_values(&[Reported::Footholds.name(), Outcome::Dropped.name()])
                    .inc();
            }
        }
    }

    /// Flush what is buffered and stop the workers, within `deadline`.
    pub fn finish(self, deadline: Duration) {
        let started = std::time::Instant::now();
        let PipelineParts {
            alerts,
            mut recorder,
            provenance,
            mut responder,
            ..
        } = self.parts;
        if let Some(r) = recorder.as_mut()
            && let Err(e) = r.flush()
        {
            log::error!("flushing the recording failed: {e}");
        }
        if !responder.close(RESPONSE_CLOSE.min(deadline)) {
            log::warn!("a response was still running at shutdown (a kill waiting for its timeout)");
        }
        if let Err(e) = alerts.flush(deadline.saturating_sub(started.elapsed())) {
            log::error!("flushing alerts failed: {e}");
        }
        // Workers may be mid-hash; do not wait for them past the deadline.
        std::thread::spawn(move || provenance.shutdown());
    }
}
