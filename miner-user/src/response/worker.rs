//! The response thread: kills, blocks, quarantine copies and footholds
//! scans happen here, behind a bounded queue, never on the event path. A
//! kill waits up to `kill_timeout_ms` for the exit and a footholds scan
//! reads hundreds of files; meanwhile the pipeline keeps draining the ring
//! buffer, serving `/metrics` and feeding the tail. A full queue drops the
//! job (reported and counted by the caller), it never waits.

use std::{
    collections::HashSet,
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
        mpsc::{self, SyncSender, TrySendError},
    },
    time::{Duration, Instant},
};

use super::{
    ActionKind, ActionResult, ResponseConfig,
    execute::{self, Executor},
    footholds,
    plan::Step,
    safety::Safety,
    target::Target,
};
use crate::background::Background;
use crate::detect::Verdict;

/// Jobs waiting for the response thread. Verdicts are rare; a backlog
/// this deep means the thread is stuck on something (a process that will
/// not die, a slow disk), and waiting for it would only lose events.
pub const QUEUE: usize = 64;

/// Processes whose footholds were scanned, remembered so a second verdict
/// for the same process does not scan again.
const SCANNED_MAX: usize = 4096;

/// Where the thread reports what it did; the daemon writes these as
/// `"kind":"action"` lines (alert stream, file, tail, metrics).
pub trait Reporter: Send + 'static {
    fn action(&self, a: &ActionResult);
    /// Persistence naming the miner, found after the alert went out.
    fn footholds(&self, target: u32, found: &[footholds::Foothold], latency_ms: u64);
}

/// The settings a job runs with: the configuration in force when the
/// verdict was planned (a reload takes effect for the next verdict).
#[derive(Debug, Clone)]
pub struct Settings {
    pub cfg: ResponseConfig,
    pub safety: Safety,
}

pub struct Job {
    pub verdict: Verdict,
    pub steps: Vec<Step>,
    /// The whole action scope (flagged first), refused targets included.
    pub scope: Vec<Target>,
    pub endpoints: Vec<(IpAddr, u16)>,
    /// RFC 3339, for quarantine records.
    pub when: String,
    pub settings: Arc<Settings>,
    /// When the verdict was planned: the time waited in the queue counts in
    /// each action's latency (verdict to completed action).
    pub queued: Instant,
}

impl Job {
    pub fn wants_footholds(&self) -> bool {
        self.settings.cfg.footholds
    }

    /// Is there anything for the thread to do?
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty() && !self.wants_footholds()
    }
}

pub struct ResponseQueue {
    tx: Option<SyncSender<Job>>,
    depth: Arc<AtomicUsize>,
    thread: Background,
}

impl ResponseQueue {
    pub fn start(executor: Executor, reporter: impl Reporter) -> std::io::Result<ResponseQueue> {
        let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE);
        let depth = Arc::new(AtomicUsize::new(0));
        let d = depth.clone();
        let thread = Background::spawn("response".into(), move || {
            let mut w = Worker {
                executor,
                reporter,
                scanned: HashSet::new(),
            };
            while let Ok(job) = rx.recv() {
                w.run(&job);
                d.fetch_sub(1, Ordering::Relaxed);
            }
        })?;
        Ok(ResponseQueue {
            tx: Some(tx),
            depth,
            thread,
        })
    }

    /// Queue a job; never blocks. `Err(job)` when the queue is full (or
    /// the thread is gone): the caller reports it dropped.
    pub fn submit(&self, job: Job) -> Result<(), Box<Job>> {
        let Some(tx) = &self.tx else {
            return Err(Box::new(job));
        };
        self.depth.fetch_add(1, Ordering::Relaxed);
        match tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job)) | Err(TrySendError::Disconnected(job)) => {
                self.depth.fetch_sub(1, Ordering::Relaxed);
                Err(Box::new(job))
            }
        }
    }

    /// Jobs queued or running.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// Stop taking jobs and give the queued ones until `deadline`; a job
    /// still running then (a kill waiting for its timeout) is left to end
    /// with the process. `false` if the thread did not finish.
    pub fn close(&mut self, deadline: Duration) -> bool {
        self.tx = None;
        self.thread.finish(deadline)
    }
}

struct Worker<R> {
    executor: Executor,
    reporter: R,
    scanned: HashSet<(u32, u64)>,
}

impl<R: Reporter> Worker<R> {
    fn run(&mut self, job: &Job) {
        let v = &job.verdict;
        let s = &job.settings;
        // Resolved first: after a kill, /proc/PID/root is gone.
        let scan = (job.wants_footholds() && self.scanned.insert((v.tgid, v.start_boottime_ns)))
            .then(|| self.executor.root_of(v.tgid));
        if self.scanned.len() > SCANNED_MAX {
            self.scanned.clear();
        }
        let waited = job.queued.elapsed().as_millis() as u64;
        let mut steps: Vec<&Step> = job.steps.iter().collect();
        if execute::runs_without_a_file(v) {
            // Stable: the other steps keep the policy's order.
            steps.sort_by_key(|s| s.action != ActionKind::Quarantine);
        }
        for step in steps {
            for mut r in self.executor.run(
                &s.cfg,
                &s.safety,
                v,
                step,
                &job.scope,
                &job.endpoints,
                &job.when,
            ) {
                r.latency_ms += waited;
                self.reporter.action(&r);
            }
        }
        // After the actions: a kill must not wait for a file scan.
        if let Some(root) = scan {
            let started = Instant::now();
            let needles = footholds::Needles::for_exe(
                v.exe.as_deref(),
                v.provenance.as_ref().and_then(|p| p.sha256.as_deref()),
            );
            let found = footholds::scan(
                &root,
                &needles,
                std::time::SystemTime::now(),
                Duration::from_secs(86_400),
            );
            if !found.is_empty() {
                self.reporter
                    .footholds(v.tgid, &found, started.elapsed().as_millis() as u64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::{
        detect::{Rule, Severity},
        response::{ActionKind, Mode},
        time::Mono,
    };

    /// Holds the response thread on its first report until released.
    struct Gate(Mutex<mpsc::Receiver<()>>, mpsc::Sender<String>);
    impl Reporter for Gate {
        fn action(&self, a: &ActionResult) {
            let _ = self.0.lock().map(|rx| rx.recv());
            let _ = self.1.send(format!("{} {}", a.action.name(), a.result));
        }
        fn footholds(&self, _: u32, _: &[footholds::Foothold], _: u64) {}
    }

    fn job(tgid: u32) -> Job {
        let v = Verdict {
            time: Mono(0),
            rule: Rule::PoolProtocolUnverified,
            severity: Severity::Critical,
            pid: tgid,
            tgid,
            ppid: 1,
            comm: "x".into(),
            exe: Some("/tmp/x".into()),
            cmdline: vec!["x".into()],
            uid: 0,
            cgroup_id: 1,
            cgroup: None,
            exe_dev: 0,
            exe_ino: 0,
            start_boottime_ns: 1,
            provenance: None,
            evidence: vec![],
            latency_ms: 0,
            members: vec![],
            chain: vec![],
            chain_truncated: false,
        };
        let t = Target::of_verdict(&v);
        Job {
            steps: vec![Step {
                action: ActionKind::Kill,
                targets: vec![t.clone()],
            }],
            scope: vec![t],
            endpoints: vec![],
            when: "t".into(),
            queued: Instant::now(),
            settings: Arc::new(Settings {
                cfg: ResponseConfig {
                    mode: Mode::Enforce,
                    footholds: false,
                    ..Default::default()
                },
                safety: Safety::default(),
            }),
            verdict: v,
        }
    }

    /// Records every report in order.
    struct Log(mpsc::Sender<String>);
    impl Reporter for Log {
        fn action(&self, a: &ActionResult) {
            let _ = self.0.send(format!("{} {}", a.action.name(), a.result));
        }
        fn footholds(&self, _: u32, _: &[footholds::Foothold], _: u64) {}
    }

    #[test]
    fn a_fileless_executable_is_saved_before_the_kill_takes_it_away() {
        let mut child = std::process::Command::new("/bin/sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let pid = child.id();
        let (_, start) =
            super::super::kill::stat_of(std::path::Path::new("/proc"), pid).expect("stat");
        let dir = std::env::temp_dir().join(format!("mw-fileless-{pid}"));
        let mut j = job(pid);
        j.verdict.start_boottime_ns = start;
        j.verdict.exe = None;
        j.verdict.provenance = Some(crate::event::Provenance {
            verdict: crate::event::ProvenanceVerdict::Unverified,
            reasons: vec![crate::event::Reason::Memfd],
            sha256: None,
            path: None,
            package: None,
            vouched_by: None,
        });
        let t = Target::of_verdict(&j.verdict);
        // The policy's order: kill first, quarantine last.
        j.steps = vec![
            Step {
                action: ActionKind::Kill,
                targets: vec![t.clone()],
            },
            Step {
                action: ActionKind::Quarantine,
                targets: vec![t.clone()],
            },
        ];
        j.scope = vec![t];
        Arc::make_mut(&mut j.settings).cfg.quarantine_dir = dir.clone();
        let (tx, rx) = mpsc::channel();
        let mut q = ResponseQueue::start(Executor::new(None, None), Log(tx)).expect("start");
        assert!(q.submit(j).is_ok());
        let first = rx.recv_timeout(Duration::from_secs(10)).expect("first");
        let second = rx.recv_timeout(Duration::from_secs(10)).expect("second");
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(first, "quarantine ok");
        assert_eq!(second, "kill ok");
        let saved = super::super::quarantine::list(&dir).expect("list");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(saved.len(), 1, "{saved:?}");
        assert_eq!(
            saved[0].size,
            std::fs::metadata("/bin/sleep").expect("sleep").len()
        );
        assert!(q.close(Duration::from_secs(5)));
    }

    #[test]
    fn a_stuck_response_never_blocks_submit_and_the_overflow_is_handed_back() {
        let (release, gate) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let mut q =
            ResponseQueue::start(Executor::new(None, None), Gate(Mutex::new(gate), done_tx))
                .expect("start");
        // pid 4_000_000 does not exist (pid_max is at most 4194304 and such
        // a pid is never handed out here): the kill reports `gone`.
        let t0 = Instant::now();
        let mut refused = 0;
        for i in 0..(QUEUE as u32 + 50) {
            if q.submit(job(4_000_000 + i)).is_err() {
                refused += 1;
            }
        }
        assert!(t0.elapsed() < Duration::from_secs(1), "submit waited");
        // One job is running (held), QUEUE wait behind it.
        assert!((49..=50).contains(&refused), "handed back {refused}");
        assert!(q.depth() >= QUEUE);
        for _ in 0..(QUEUE + 1) {
            let _ = release.send(());
        }
        let first = done.recv_timeout(Duration::from_secs(5)).expect("reported");
        assert_eq!(first, "kill gone");
        drop(release);
        assert!(q.close(Duration::from_secs(5)));
    }
}
