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

impl Daemon {
    /// Start with `config` (TOML text) and extra flags; wait until /readyz.
    pub fn start(config: &str, extra: &[&str]) -> Daemon {
        let bin = minerwatch_bin();
        let opts = minerwatch_harness::Options {
            tag: "mw-e2e",
            config: Some(config),
            extra,
            ..minerwatch_harness::Options::new(&bin)
        };
        Daemon(minerwatch_harness::Daemon::start(&opts).unwrap_or_else(|e| panic!("{e}")))
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
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(a) = self.alerts().into_iter().find(|a| pred(a)) {
                return Some(a);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
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
