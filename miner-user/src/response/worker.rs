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
        mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::{
    ActionResult, ResponseConfig, execute::Executor, footholds, plan::Step, safety::Safety,
    target::Target,
};
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
    done: Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl ResponseQueue {
    pub fn start(executor: Executor, reporter: impl Reporter) -> std::io::Result<ResponseQueue> {
        let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE);
        let (done_tx, done_rx) = mpsc::channel();
        let depth = Arc::new(AtomicUsize::new(0));
        let d = depth.clone();
        let thread = std::thread::Builder::new()
            .name("response".into())
            .spawn(move || {
                let mut w = Worker {
                    executor,
                    reporter,
                    scanned: HashSet::new(),
                };
                while let Ok(job) = rx.recv() {
                    w.run(&job);
                    d.fetch_sub(1, Ordering::Relaxed);
                }
                let _ = done_tx.send(());
            })?;
        Ok(ResponseQueue {
            tx: Some(tx),
            depth,
            done: done_rx,
            thread: Some(thread),
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
        let finished = !matches!(
            self.done.recv_timeout(deadline),
            Err(RecvTimeoutError::Timeout)
        );
        if finished && let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        finished
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
        for step in &job.steps {
            for r in self.executor.run(
                &s.cfg,
                &s.safety,
                v,
                step,
                &job.scope,
                &job.endpoints,
                &job.when,
            ) {
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
