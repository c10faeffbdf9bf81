//! A test harness around the real sensor: loads the eBPF programs into the
//! running kernel, drains the ring buffer on a background runtime and
//! collects decoded events for the test to wait on.
#![allow(dead_code)]

use std::{
    sync::{Arc, Condvar, Mutex},
    time::{Duration, Instant},
};

use minerwatch::{
    event::Event,
    sensor::{Sensor, SensorConfig, cpu_poll::CpuPoller, ringbuf},
    time::Mono,
};

pub struct Harness {
    events: Arc<(Mutex<Vec<Event>>, Condvar)>,
    poller: Arc<Mutex<CpuPoller>>,
    stats: Arc<ringbuf::ReaderStats>,
    _rt: tokio::runtime::Runtime,
    _sensor: Sensor,
}

impl Harness {
    pub fn start() -> Harness {
        Self::start_with(SensorConfig::default())
    }

    pub fn start_with(cfg: SensorConfig) -> Harness {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let events: Arc<(Mutex<Vec<Event>>, Condvar)> = Arc::default();
        let stats = Arc::new(ringbuf::ReaderStats::default());
        let reader_stats = stats.clone();
        let (sensor, poller) = rt.block_on(async {
            let mut sensor = Sensor::load(&cfg).expect("loading the eBPF programs (needs root)");
            for h in &sensor.hooks {
                assert!(
                    h.attached,
                    "hook {} did not attach: {:?}",
                    h.program, h.error
                );
            }
            let ring = sensor.take_ring().expect("ring");
            let wake = sensor.take_wake_flag().expect("control");
            let poller =
                CpuPoller::new(sensor.take_task_iter(), sensor.take_drops().expect("drops"))
                    .with_quiet(sensor.take_quiet().expect("quiet"))
                    .with_nudges(sensor.nudger.as_ref().map(|n| n.switch()));
            let (tx, mut rx) = tokio::sync::mpsc::channel::<ringbuf::Batch>(1024);
            tokio::spawn(ringbuf::run(
                ring,
                Duration::from_millis(cfg.drain_interval_ms),
                tx,
                reader_stats,
                Some(wake),
            ));
            let sink = events.clone();
            tokio::spawn(async move {
                while let Some(batch) = rx.recv().await {
                    let (lock, cv) = &*sink;
                    lock.lock().expect("lock").extend(batch.events);
                    cv.notify_all();
                }
            });
            (sensor, poller)
        });
        Harness {
            events,
            poller: Arc::new(Mutex::new(poller)),
            stats,
            _rt: rt,
            _sensor: sensor,
        }
    }

    /// Wait until an event matches `pred`, up to `timeout`.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&Event) -> bool) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.events;
        let mut seen = lock.lock().expect("lock");
        loop {
            if let Some(e) = seen.iter().find(|e| pred(e)) {
                return Some(e.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            seen = cv.wait_timeout(seen, left).expect("lock").0;
        }
    }

    /// Every event so far that matches `pred`.
    pub fn matching(&self, pred: impl Fn(&Event) -> bool) -> Vec<Event> {
        self.events
            .0
            .lock()
            .expect("lock")
            .iter()
            .filter(|e| pred(e))
            .cloned()
            .collect()
    }

    pub fn clear(&self) {
        self.events.0.lock().expect("lock").clear();
    }

    pub fn poll_cpu(&self) -> Option<minerwatch::event::CpuSample> {
        self.poller.lock().expect("lock").poll_cpu(Mono::now())
    }

    /// The ring reader sleeps without its timer (an empty ring for a while).
    pub fn reader_asleep(&self) -> bool {
        self.stats.asleep.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn sensor(&self) -> &Sensor {
        &self._sensor
    }

    pub fn poll_quiet(&self) -> u64 {
        self.poller.lock().expect("lock").poll_quiet()
    }

    pub fn poll_drops(&self) -> Vec<minerwatch::event::Lost> {
        self.poller.lock().expect("lock").poll_drops(Mono::now())
    }
}

/// Copy a binary under a unique name in a temp dir (a stand-in for a
/// dropped, unpackaged binary).
pub fn copy_binary(src: &std::path::Path, dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir");
    let dst = dir.join(name);
    std::fs::copy(src, &dst).expect("copy binary");
    dst
}

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() % 100_000
    )
}

pub mod daemon;

/// Spawn with stdout and stderr discarded: the scenario's processes are
/// judged through the daemon, not their output.
pub trait SpawnQuiet {
    fn quiet(&mut self) -> std::process::Child;
}

impl SpawnQuiet for std::process::Command {
    fn quiet(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn")
    }
}

/// Starts a helper server that prints the port it listens on as its first
/// line (fake_pool, ws_pool, socks_proxy), and returns it with the port.
pub trait SpawnListening {
    fn listening(&mut self) -> (std::process::Child, u16);
}

impl SpawnListening for std::process::Command {
    fn listening(&mut self) -> (std::process::Child, u16) {
        use std::io::{BufRead, BufReader};
        let name = self.get_program().to_string_lossy().into_owned();
        let mut child = self
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("{name}: reading its port line: {e}"));
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} printed {line:?}, not its port"));
        (child, port)
    }
}

pub mod podman;
pub mod xmrig;

pub mod cprog;

/// Environment variable naming the file where skips are recorded; `cargo
/// xtask test` sets it, counts the lines and reports them as skipped (not
/// passed).
pub const SKIP_LOG_ENV: &str = "MINERWATCH_SKIP_LOG";

/// Marks the calling test as skipped, loudly: a line on stderr and one in
/// the skip log (`test<TAB>need<TAB>reason`), naming the test, the missing
/// piece of the machine and why. The caller returns right after. Use only
/// where the machine truly lacks a feature; never for a failure. `need` is
/// a name `cargo xtask test` probes (`root`, `btf`, `dpkg`, `python3`,
/// `port`, `xmrig`, `helm-sdk`): under `--no-skips` (CI) a skip whose need
/// this machine has fails the run.
pub fn skip(test: &str, need: &str, reason: &str) {
    eprintln!("\n!!! SKIPPED {test} (needs {need}): {reason} !!!\n");
    if let Some(path) = std::env::var_os(SKIP_LOG_ENV) {
        use std::io::Write as _;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{test}\t{need}\t{reason}");
        }
    }
}
