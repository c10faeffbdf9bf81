//! The real daemon as a child process: `minerwatch run` with its own
//! metrics port, alerts file and tail socket in a fresh directory, waited
//! on until `/readyz` says 200. One helper for the tests crate
//! (`tests/tests/common/daemon.rs`) and `cargo xtask bench`, so both start,
//! probe and stop the daemon the same way.
//!
//! Dependency-free on purpose: xtask builds it before bpf-linker or the
//! eBPF toolchain exist.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// How to start a daemon.
pub struct Options<'a> {
    /// The `minerwatch` binary.
    pub bin: &'a Path,
    /// Prefix of the fresh directory under the temp dir.
    pub tag: &'a str,
    /// TOML written to `minerwatch.toml` and passed with `--config`.
    pub config: Option<&'a str>,
    /// More `minerwatch run` arguments.
    pub extra: &'a [&'a str],
    /// `RUST_LOG` for the daemon.
    pub log_level: &'a str,
    /// Keep the daemon's stderr in `daemon.log` (else discarded).
    pub keep_log: bool,
    pub ready_timeout: Duration,
    /// The daemon's directory (config, log, socket); fresh if `None`. A
    /// restart passes the crashed daemon's directory: its log is appended
    /// to, so the new daemon's lines follow the old one's.
    pub dir: Option<PathBuf>,
    /// The alert file; `<dir>/alerts.jsonl` if `None`.
    pub alerts: Option<PathBuf>,
    /// Return at once, without waiting for `/readyz`.
    pub no_wait: bool,
}

impl<'a> Options<'a> {
    pub fn new(bin: &'a Path) -> Options<'a> {
        Options {
            bin,
            tag: "mw",
            config: None,
            extra: &[],
            log_level: "info",
            keep_log: true,
            ready_timeout: Duration::from_secs(30),
            dir: None,
            alerts: None,
            no_wait: false,
        }
    }
}

pub struct Daemon {
    pub child: Child,
    pub dir: PathBuf,
    pub metrics: String,
    pub alerts: PathBuf,
    pub socket: PathBuf,
}

/// A loopback port free right now.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// One HTTP/1.1 GET: (status, body), or `None` if nothing answered.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
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

impl Daemon {
    /// Starts the daemon and waits for `/readyz`; the error carries the
    /// daemon's log when it has one.
    pub fn start(o: &Options<'_>) -> Result<Daemon, String> {
        let dir = o.dir.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!(
                "{}-{}-{}",
                o.tag,
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos())
            ))
        });
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let port = free_port().map_err(|e| format!("no free port: {e}"))?;
        let metrics = format!("127.0.0.1:{port}");
        let alerts = o.alerts.clone().unwrap_or_else(|| dir.join("alerts.jsonl"));
        let socket = dir.join("tail.sock");
        let mut cmd = Command::new(o.bin);
        cmd.arg("run");
        if let Some(text) = o.config {
            let cfg = dir.join("minerwatch.toml");
            std::fs::write(&cfg, text).map_err(|e| format!("writing {}: {e}", cfg.display()))?;
            cmd.arg("--config").arg(cfg);
        }
        cmd.args(["--metrics-addr", &metrics])
            .arg("--alerts-file")
            .arg(&alerts)
            .arg("--socket")
            .arg(&socket)
            .args(o.extra)
            .env("RUST_LOG", o.log_level)
            .stdout(Stdio::null());
        if o.keep_log {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("daemon.log"))
                .map_err(|e| format!("opening daemon.log: {e}"))?;
            cmd.stderr(log);
        } else {
            cmd.stderr(Stdio::null());
        }
        let child = cmd.spawn().map_err(|e| {
            format!(
                "starting {} failed ({e}); build it first: cargo build -p miner-user",
                o.bin.display()
            )
        })?;
        let mut d = Daemon {
            child,
            dir,
            metrics,
            alerts,
            socket,
        };
        if o.no_wait {
            return Ok(d);
        }
        let deadline = Instant::now() + o.ready_timeout;
        while Instant::now() < deadline {
            if d.get("/readyz").is_some_and(|(c, _)| c == 200) {
                return Ok(d);
            }
            if let Ok(Some(st)) = d.child.try_wait() {
                return Err(format!("daemon exited with {st}; log:\n{}", d.log()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "daemon not ready within {:?}; log:\n{}",
            o.ready_timeout,
            d.log()
        ))
    }

    /// The daemon's stderr so far (lossy; empty when not kept).
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.dir.join("daemon.log")).unwrap_or_default())
            .into_owned()
    }

    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(&self.metrics, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM and wait up to 10 s (then SIGKILL); removes the directory.
    /// Returns (exit code, time to exit).
    pub fn stop(mut self) -> (Option<i32>, Duration) {
        let t0 = Instant::now();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = t0 + Duration::from_secs(10);
        let code = loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                break st.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = std::fs::remove_dir_all(&self.dir);
        (code, t0.elapsed())
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
