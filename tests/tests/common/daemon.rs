//! The real daemon as a child process: `minerwatch run` with a temp config,
//! alerts read back from its alert file.
#![allow(dead_code)]

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
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

pub struct Daemon {
    pub child: Child,
    pub dir: PathBuf,
    pub metrics: String,
    pub alerts: PathBuf,
    pub socket: PathBuf,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Daemon {
    /// Start with `config` (TOML text) and extra flags; wait until /readyz.
    pub fn start(config: &str, extra: &[&str]) -> Daemon {
        let dir = std::env::temp_dir().join(format!(
            "mw-e2e-{}-{}",
            std::process::id(),
            super::unique("d")
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("minerwatch.toml");
        std::fs::write(&cfg, config).unwrap();
        let metrics = format!("127.0.0.1:{}", free_port());
        let alerts = dir.join("alerts.jsonl");
        let socket = dir.join("tail.sock");
        let log = std::fs::File::create(dir.join("daemon.log")).unwrap();
        let child = Command::new(minerwatch_bin())
            .arg("run")
            .arg("--config")
            .arg(&cfg)
            .args(["--metrics-addr", &metrics])
            .arg("--alerts-file")
            .arg(&alerts)
            .arg("--socket")
            .arg(&socket)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start minerwatch (build it first: cargo build -p miner-user)");
        let d = Daemon {
            child,
            dir,
            metrics,
            alerts,
            socket,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if d.get("/readyz").is_some_and(|(c, _)| c == 200) {
                return d;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("daemon not ready; log:\n{}", d.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(&self.metrics).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        let code = buf.split_whitespace().nth(1)?.parse().ok()?;
        Some((
            code,
            buf.split_once("\r\n\r\n")
                .map(|x| x.1.to_owned())
                .unwrap_or_default(),
        ))
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

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM and wait; returns (exit code, time to exit).
    pub fn stop(mut self) -> (Option<i32>, Duration) {
        let t0 = Instant::now();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = t0 + Duration::from_secs(10);
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                let _ = std::fs::remove_dir_all(&self.dir);
                return (st.code(), t0.elapsed());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return (None, t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
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
