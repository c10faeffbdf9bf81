//! The real daemon as a child process: `minerwatch run` with a temp config,
//! alerts read back from its alert file. Starting and stopping it is the
//! shared harness's (`tests/harness`, also used by `cargo xtask bench`);
//! this adds what the tests read.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

pub fn minerwatch_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/debug/deps/<test> → target/debug/minerwatch
    exe.parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .join("minerwatch")
}

/// The daemon; its fields (`child`, `dir`, `metrics`, `alerts`, `socket`)
/// are the harness's, reached through `Deref`.
pub struct Daemon(minerwatch_harness::Daemon);

impl std::ops::Deref for Daemon {
    type Target = minerwatch_harness::Daemon;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

pub fn free_port() -> u16 {
    minerwatch_harness::free_port().expect("a free loopback port")
}

/// How to launch a daemon beyond its config text.
#[derive(Default)]
pub struct Launch {
    /// The daemon's directory (config, log, socket); a fresh one if `None`.
    /// A restart passes the crashed daemon's directory.
    pub dir: Option<PathBuf>,
    /// The alert file; `<dir>/alerts.jsonl` if `None`.
    pub alerts: Option<PathBuf>,
    /// Do not wait for `/readyz`.
    pub no_wait: bool,
}

impl Daemon {
    /// Start with `config` (TOML text) and extra flags; wait until /readyz.
    pub fn start(config: &str, extra: &[&str]) -> Daemon {
        Daemon::launch(config, extra, Launch::default())
    }

    pub fn launch(config: &str, extra: &[&str], how: Launch) -> Daemon {
        let bin = minerwatch_bin();
        let opts = minerwatch_harness::Options {
            tag: "mw-e2e",
            config: Some(config),
            extra,
            dir: how.dir,
            alerts: how.alerts,
            no_wait: how.no_wait,
            ..minerwatch_harness::Options::new(&bin)
        };
        Daemon(minerwatch_harness::Daemon::start(&opts).unwrap_or_else(|e| panic!("{e}")))
    }

    /// Wait until `/readyz` answers 200.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.get("/readyz").is_some_and(|(c, _)| c == 200) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// SIGKILL, as a crash or the OOM killer would, and reap it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// `/metrics`, parsed.
    pub fn scrape(&self) -> prometheus_parse::Scrape {
        let (code, body) = self.get("/metrics").expect("scrape /metrics");
        assert_eq!(code, 200, "{body}");
        prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
            .expect("Prometheus text format")
    }

    /// Sum of a metric's samples whose labels include `labels`.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_value(&self.scrape(), name, labels)
    }

    /// (user + system CPU in clock ticks, resident set in KiB) of the daemon.
    pub fn usage(&self) -> (u64, u64) {
        proc_usage(self.pid())
    }

    /// SIGTERM and wait; returns (exit code, time to exit).
    pub fn stop(self) -> (Option<i32>, Duration) {
        self.0.stop()
    }

    /// Every JSON line of the alert file (alerts and actions). The daemon
    /// creates the file at start, so a missing or unreadable file, or a
    /// complete line that is not JSON, fails the test: it is never "no
    /// alerts". A last line still being written (no newline yet) waits for
    /// the next read.
    pub fn records(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.alerts).unwrap_or_else(|e| {
            panic!(
                "alerts file {} unreadable: {e}; daemon log:\n{}",
                self.alerts.display(),
                self.log()
            )
        });
        let complete = text.rfind('\n').map_or("", |i| &text[..=i]);
        complete
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("alerts file: a line is not JSON ({e}): {l}"))
            })
            .collect()
    }

    pub fn alerts(&self) -> Vec<serde_json::Value> {
        self.records()
            .into_iter()
            .filter(|r| r["kind"] == "alert")
            .collect()
    }

    /// Wait for an alert matching `pred`.
    pub fn wait_alert(
        &self,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        wait_for(timeout, || self.alerts().into_iter().find(|a| pred(a)))
    }

    /// Wait for any record (alert or action) matching `pred`.
    pub fn wait_record(
        &self,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        wait_for(timeout, || self.records().into_iter().find(|a| pred(a)))
    }
}

/// Asks `probe` every 100 ms until it answers or `timeout` has passed
/// (asked once more at the end).
pub fn wait_for<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Host pids whose executable is `path`.
pub fn pids_running(path: &Path) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if let Ok(target) = std::fs::read_link(e.path().join("exe"))
                && target == path
            {
                out.push(pid);
            }
        }
    }
    out.sort_unstable();
    out
}

pub fn metric_value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

/// (utime + stime in clock ticks, VmRSS in KiB) of `pid`.
pub fn proc_usage(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (ticks, rss)
}

/// A raw tail client: every JSON line the daemon streams, read on a thread
/// into a channel (`minerwatch tail` prints the same lines with `--json`).
pub fn tail_lines(socket: &Path) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let stream =
        std::os::unix::net::UnixStream::connect(socket).expect("connect to the tail socket");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stream)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}
