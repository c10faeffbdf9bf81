//! Provenance off the event path: a bounded queue and a few worker threads.
//!
//! Hashing a 10 MiB binary takes milliseconds; the sensor must drain its
//! ring buffer in microseconds. So [`Service::submit`] never blocks: a full
//! queue drops the job and counts it (the process stays without a verdict,
//! which the detector treats as unknown, not as guilty). Plain threads, not
//! `spawn_blocking`, because the pool is fixed and its size is the CPU
//! budget we promise.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::mpsc::Sender;

use super::{ProvenanceConfig, ProvenanceError, Verifier};
use crate::event::{ExeId, ProvenanceEvent};
use crate::time::Mono;

/// One executable to judge: the exec that started it.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub tgid: u32,
    pub exe: ExeId,
    /// The path passed to execve; judged if the process is gone by then.
    pub filename: String,
    /// When the exec happened.
    pub time: Mono,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    /// `time` is when the verdict became known (never before the exec), so
    /// detection latency includes the hashing.
    pub event: ProvenanceEvent,
    /// Time spent checking (hashing or lookups), seconds.
    pub hash_seconds: f64,
    pub bytes_hashed: u64,
    pub cache_hit: bool,
}

#[derive(Debug, Default)]
struct Counters {
    submitted: AtomicU64,
    dropped: AtomicU64,
    completed: AtomicU64,
}

pub struct Service {
    queue: Option<SyncSender<Job>>,
    counters: Arc<Counters>,
    workers: Vec<JoinHandle<()>>,
}

impl Service {
    /// Starts `cfg.workers` threads sending results to `results`. A slow
    /// results consumer slows the workers, which fills the queue, which
    /// drops jobs: back-pressure never reaches the caller of `submit`.
    pub fn start(
        verifier: Arc<Verifier>,
        cfg: &ProvenanceConfig,
        results: Sender<CheckResult>,
    ) -> Result<Service, ProvenanceError> {
        let (tx, rx) = sync_channel::<Job>(cfg.queue_size.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let counters = Arc::new(Counters::default());
        let mut workers = Vec::new();
        for index in 0..cfg.workers.max(1) {
            let (v, rx, out, c) = (
                verifier.clone(),
                rx.clone(),
                results.clone(),
                counters.clone(),
            );
            let handle = std::thread::Builder::new()
                .name(format!("provenance-{index}"))
                .spawn(move || work(&v, &rx, &out, &c))
                .map_err(|source| ProvenanceError::Spawn { index, source })?;
            workers.push(handle);
        }
        Ok(Service {
            queue: Some(tx),
            counters,
            workers,
        })
    }

    /// Queues a job; `false` (and counted) when the queue is full or the
    /// workers have stopped. Never blocks.
    pub fn submit(&self, job: Job) -> bool {
        self.counters.submitted.fetch_add(1, Ordering::Relaxed);
        let sent = match &self.queue {
            Some(q) => match q.try_send(job) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            },
            None => false,
        };
        if !sent {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
        sent
    }

    /// Jobs refused by `submit` since start.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    pub fn submitted(&self) -> u64 {
        self.counters.submitted.load(Ordering::Relaxed)
    }

    /// Jobs whose result was delivered.
    pub fn completed(&self) -> u64 {
        self.counters.completed.load(Ordering::Relaxed)
    }

    /// Stops taking jobs, finishes the queued ones and joins the workers.
    /// Call it from a blocking context with the results still drained, or
    /// the workers wait on a full results channel.
    pub fn shutdown(mut self) {
        self.queue = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn work(
    verifier: &Verifier,
    jobs: &Mutex<Receiver<Job>>,
    results: &Sender<CheckResult>,
    counters: &Counters,
) {
    loop {
        // The lock is only held while waiting for the next job, not while
        // checking it.
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        let Ok(job) = job else { return }; // queue closed: shutting down
        let (provenance, stats) = verifier.check_pid_stats(job.tgid, &job.exe, &job.filename);
        let result = CheckResult {
            event: ProvenanceEvent {
                time: Mono::now().max(job.time),
                tgid: job.tgid,
                exe: job.exe,
                provenance,
            },
            hash_seconds: stats.seconds,
            bytes_hashed: stats.bytes_hashed,
            cache_hit: stats.cache_hit,
        };
        if results.blocking_send(result).is_err() {
            return; // nobody listens any more
        }
        counters.completed.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;
    use std::time::Duration;

    use super::*;
    use crate::event::ProvenanceVerdict;

    fn own_job() -> Job {
        let meta = std::fs::metadata("/proc/self/exe").unwrap();
        let exe = ExeId {
            dev: meta.dev(),
            ino: meta.ino(),
            nlink: 1,
            ..Default::default()
        };
        Job {
            tgid: std::process::id(),
            exe,
            filename: String::new(),
            time: Mono(1),
        }
    }

    #[test]
    fn results_arrive_on_the_channel_and_repeat_jobs_hit_the_cache() {
        let cfg = ProvenanceConfig {
            dpkg: false,
            rpm: false,
            ..Default::default()
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let svc = Service::start(Arc::new(Verifier::without_allowlist(&cfg)), &cfg, tx).unwrap();
        assert!(svc.submit(own_job()));
        let first = rx.blocking_recv().unwrap();
        assert!(svc.submit(own_job()));
        let second = rx.blocking_recv().unwrap();
        assert_eq!(first.event.tgid, std::process::id());
        assert!(first.event.time >= Mono(1));
        // The test binary lives in the target dir: not packaged, unverified.
        assert_eq!(
            first.event.provenance.verdict,
            ProvenanceVerdict::Unverified
        );
        assert!(!first.cache_hit && first.bytes_hashed > 0);
        assert!(second.cache_hit && second.bytes_hashed == 0);
        assert_eq!(first.event.provenance, second.event.provenance);
        assert!(first.hash_seconds > 0.0);
        svc.shutdown();
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
        let cfg = ProvenanceConfig {
            dpkg: false,
            rpm: false,
            workers: 1,
            queue_size: 1,
            ..Default::default()
        };
        // Results channel of 1 that nobody reads: the worker blocks on the
        // second result, the queue fills, and submit must still return.
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let svc = Service::start(Arc::new(Verifier::without_allowlist(&cfg)), &cfg, tx).unwrap();
        let started = std::time::Instant::now();
        let accepted = (0..100).filter(|_| svc.submit(own_job())).count();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(accepted < 100);
        assert_eq!(svc.dropped(), 100 - accepted as u64);
        assert_eq!(svc.submitted(), 100);
        drop(rx); // unblocks the worker so the process can exit cleanly
        svc.shutdown();
    }
}
