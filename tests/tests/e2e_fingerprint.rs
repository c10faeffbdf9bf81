//! End-to-end: the RandomX fingerprint and packaged miners, with real
//! third-party software. The real XMRig (renamed, hidden, config file only,
//! TLS to a port no pool list knows) is caught by the work it does; the
//! real `monerod` from Debian's `monero` package mining on regtest is
//! alerted but not killed; numeric code that only looks similar (interval
//! arithmetic with `fesetround`, fast-math with FTZ/DAZ, compilers,
//! compression, `openssl speed`, a busy interpreter) stays silent while
//! unverified, busy and holding a TLS connection.
//!
//! Needs root; run under the kernel lock:
//! `flock /tmp/minerwatch-kernel.lock cargo test -p minerwatch-tests --test e2e_fingerprint -- --test-threads=1`

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::SpawnListening;
use common::{
    SpawnQuiet,
    daemon::{Daemon, pids_running},
    xmrig::{self, PoolSpec},
};

const POOL: &str = env!("CARGO_BIN_EXE_fake_pool");

/// The product's budget for a miner whose pool protocol is hidden: flagged
/// within 5 s of exec (median), never later than 30 s.
const BUDGET_MEDIAN_MS: u64 = 5_000;
const BUDGET_MAX_MS: u64 = 30_000;
/// Busy seconds (unverified programs: 1 Hz samples at ≥ 0.3 core; tools:
/// CPU seconds) each benign workload must show while nothing alerts.
const QUIET: Duration = Duration::from_secs(10);
/// The most a benign phase may take on a loaded machine.
const BENIGN_MAX: Duration = Duration::from_secs(60);

/// The project's test pool speaking TLS on an ephemeral port that is not in
/// the default pool-port set (rebinds if the kernel hands out one that is).
struct TlsPool {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl TlsPool {
    fn start(dir: &Path) -> TlsPool {
        let defaults = minerwatch::detect::config::DEFAULT_POOL_PORTS;
        for attempt in 0..20 {
            let log = dir.join(format!("pool-{attempt}.log"));
            let (mut child, port) = Command::new(POOL)
                .args([
                    "--addr",
                    "127.0.0.1:0",
                    "--seconds",
                    "300",
                    "--tls",
                    "--log",
                ])
                .arg(&log)
                .listening();
            if !defaults.contains(&port) {
                return TlsPool { child, port, log };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("no ephemeral port outside the pool-port set in 20 tries");
    }

    /// Request methods the pool saw (`login`, `submit`, …).
    fn methods(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for TlsPool {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kill_path(path: &Path) {
    for pid in pids_running(path) {
        // SAFETY: signalling processes we started (found by our unique path).
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
}

fn stop(c: &mut Child) {
    let _ = c.kill();
    let _ = c.wait();
}

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Alerts for `tgid`.
fn alerts_for(d: &Daemon, tgid: u32) -> Vec<serde_json::Value> {
    d.alerts()
        .into_iter()
        .filter(|a| a["tgid"].as_u64() == Some(u64::from(tgid)))
        .collect()
}

fn signals(a: &serde_json::Value) -> Vec<String> {
    a["evidence"]
        .as_array()
        .map(|ev| {
            ev.iter()
                .filter_map(|e| e["signal"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn real_xmrig_renamed_config_only_tls_to_a_non_pool_port_is_caught_by_its_work() {
    let test = "real_xmrig_renamed_config_only_tls_to_a_non_pool_port_is_caught_by_its_work";
    let src = match xmrig::binary() {
        Ok(p) => p,
        Err(why) => return common::skip(test, "xmrig", &why),
    };
    let tag = common::unique("fp");
    let work = std::env::temp_dir().join(format!("mw-{tag}"));
    std::fs::create_dir_all(&work).expect("work dir");
    let pool = TlsPool::start(&work);
    let d = Daemon::start("", &[]);
    let runs = 5;
    let mut latencies = Vec::new();
    let mut rows = Vec::new();
    for run in 0..runs {
        // A hidden directory and a system daemon's name; config.json only.
        let dir = PathBuf::from(format!("/var/tmp/.{tag}-{run}/.cache"));
        let spec = PoolSpec {
            url: format!("127.0.0.1:{}", pool.port),
            tls: true,
            socks5: None,
            algo: None,
        };
        let dropped = xmrig::drop_into(&src, &dir, "systemd-resolved", &spec).expect("drop XMRig");
        let t0 = Instant::now();
        let mut child = dropped.command().quiet();
        let tgid = child.id();
        let alert = d.wait_alert(Duration::from_millis(BUDGET_MAX_MS), |a| {
            a["tgid"].as_u64() == Some(u64::from(tgid)) && a["rule"] == "randomx_fingerprint"
        });
        let seen_after = t0.elapsed();
        // Let a critical re-alert (provenance) land before judging them all.
        std::thread::sleep(Duration::from_millis(300));
        let all = alerts_for(&d, tgid);
        stop(&mut child);
        kill_path(&dropped.path);
        let _ = std::fs::remove_dir_all(dir.parent().unwrap_or(&dir));
        let Some(alert) = alert else {
            panic!(
                "run {run}: no randomx_fingerprint for the real XMRig within {BUDGET_MAX_MS} ms; pool saw {:?}; alerts {all:#?}\ndaemon log:\n{}",
                pool.methods(),
                d.log()
            );
        };
        let latency = alert["latency_ms"].as_u64().unwrap_or(u64::MAX);
        latencies.push(latency);
        rows.push(format!(
            "run {run}: {} {} latency {latency} ms (seen by the test after {} ms), evidence {:?}",
            alert["rule"],
            alert["severity"],
            seen_after.as_millis(),
            signals(&alert)
        ));
        assert!(
            signals(&alert).contains(&"cpu_fingerprint".to_owned()),
            "{alert:#}"
        );
        let detail = alert["evidence"]
            .as_array()
            .and_then(|e| e.iter().find(|e| e["signal"] == "cpu_fingerprint"))
            .and_then(|e| e["detail"].as_str())
            .unwrap_or("")
            .to_owned();
        assert!(
            detail.contains("0x"),
            "the evidence names the values: {detail}"
        );
        // Nothing else gives it away: no pool port, no protocol, no argv.
        for a in &all {
            assert_eq!(a["rule"], "randomx_fingerprint", "only the work: {a:#}");
        }
        // Unverified (hidden dir, not packaged): critical, at once or on
        // provenance.
        assert!(
            all.iter().any(|a| a["severity"] == "critical"),
            "run {run}: {all:#?}"
        );
    }
    let max = *latencies.iter().max().unwrap_or(&0);
    let med = median(&mut latencies.clone());
    eprintln!("\nreal XMRig, TLS to a non-pool port, config only:");
    for r in &rows {
        eprintln!("  {r}");
    }
    eprintln!(
        "  randomx_fingerprint latency from exec: median {med} ms, max {max} ms over {runs} runs\n"
    );
    assert!(
        pool.methods().iter().any(|m| m == "login"),
        "XMRig logged in to the TLS pool: {:?}",
        pool.methods()
    );
    assert!(
        med <= BUDGET_MEDIAN_MS && max <= BUDGET_MAX_MS,
        "median {med} ms (budget {BUDGET_MEDIAN_MS}), max {max} ms (budget {BUDGET_MAX_MS})"
    );
    let _ = d.stop();
    let _ = std::fs::remove_dir_all(&work);
}

/// Every JSON line of a daemon recording (`run --record`).
fn recording(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// `tgids` and every process the recording saw them start (a compiler
/// driver's cc1, a shell's children).
fn with_descendants(rec: &[serde_json::Value], tgids: &[u32]) -> Vec<u32> {
    let mut out: Vec<u32> = tgids.to_vec();
    let mut grew = true;
    while grew {
        grew = false;
        for e in rec {
            let (child, parent) = match e["kind"].as_str() {
                Some("exec") => (e["tgid"].as_u64(), e["ppid"].as_u64()),
                Some("fork") => (e["child_tgid"].as_u64(), e["parent_tgid"].as_u64()),
                _ => continue,
            };
            if let (Some(c), Some(p)) = (child, parent)
                && out.contains(&(p as u32))
                && !out.contains(&(c as u32))
            {
                out.push(c as u32);
                grew = true;
            }
        }
    }
    out
}

/// Busy 1 Hz samples (≥ 0.3 core) of `tgid` in the recording.
fn busy_samples(rec: &[serde_json::Value], tgid: u32) -> usize {
    rec.iter()
        .filter(|e| e["kind"] == "cpu_sample")
        .filter(|e| {
            let interval = e["interval_ns"].as_f64().unwrap_or(1e9);
            e["usage"].as_array().is_some_and(|u| {
                u.iter().any(|x| {
                    x["tgid"].as_u64() == Some(u64::from(tgid))
                        && x["on_cpu_ns"].as_f64().unwrap_or(0.0) / interval >= 0.3
                })
            })
        })
        .count()
}

/// On-CPU seconds of `tgids` in the recording's samples.
fn cpu_seconds(rec: &[serde_json::Value], tgids: &[u32]) -> f64 {
    rec.iter()
        .filter(|e| e["kind"] == "cpu_sample")
        .filter_map(|e| e["usage"].as_array())
        .flatten()
        .filter(|x| {
            x["tgid"]
                .as_u64()
                .is_some_and(|t| tgids.contains(&(t as u32)))
        })
        .map(|x| x["on_cpu_ns"].as_f64().unwrap_or(0.0) / 1e9)
        .sum()
}

fn fpu_reports(rec: &[serde_json::Value], tgids: &[u32]) -> Vec<(u32, u16, u16)> {
    rec.iter()
        .filter(|e| e["kind"] == "fpu")
        .filter_map(|e| {
            let tgid = e["tgid"].as_u64()? as u32;
            tgids.contains(&tgid).then(|| {
                (
                    tgid,
                    e["mxcsr"].as_u64().unwrap_or(0) as u16,
                    e["seen"].as_u64().unwrap_or(0) as u16,
                )
            })
        })
        .collect()
}

struct Benign {
    name: &'static str,
    child: Child,
    /// Must be seen busy (the silence would mean nothing otherwise).
    must_be_busy: bool,
}

#[test]
fn numeric_look_alikes_stay_silent_and_show_no_fingerprint() {
    use minerwatch::detect::fingerprint::is_randomx_shape;
    let tag = common::unique("fpb");
    let dir = std::env::temp_dir().join(format!("mw-{tag}"));
    let bin = dir.join("bin");
    let interval = match common::cprog::compile(
        "interval",
        &["-O2", "-frounding-math"],
        &bin,
        "interval-solver",
    ) {
        Ok(p) => p,
        Err(why) => {
            return common::skip(
                "numeric_look_alikes_stay_silent_and_show_no_fingerprint",
                "cc",
                &why,
            );
        }
    };
    let fastmath = common::cprog::compile("fastmath", &["-O2", "-ffast-math"], &bin, "dsp-engine")
        .expect("fastmath builds where interval did");
    let holder = common::cprog::Holder::start(minerwatch::detect::config::DEFAULT_POOL_PORTS);
    let hello = dir.join("hello.bin");
    std::fs::write(&hello, common::cprog::client_hello("api.internal.example")).expect("hello");
    let rec_path = dir.join("recording.jsonl");
    let rec_arg = rec_path.to_string_lossy().into_owned();
    let d = Daemon::start("", &["--record", &rec_arg]);

    // Phase 1: the unverified numeric programs, busy and holding TLS, until
    // the daemon has seen each busy for QUIET (a loaded machine needs
    // longer), at most BENIGN_MAX.
    let secs = BENIGN_MAX.as_secs().to_string();
    let port = holder.port.to_string();
    let hello_arg = hello.to_string_lossy().into_owned();
    let c_args = [
        "127.0.0.1",
        port.as_str(),
        hello_arg.as_str(),
        secs.as_str(),
    ];
    let mut phase1 = vec![
        Benign {
            name: "interval arithmetic (fesetround down/up, no FTZ/DAZ), unverified, TLS",
            child: Command::new(&interval).args(c_args).quiet(),
            must_be_busy: true,
        },
        Benign {
            name: "fast-math (FTZ/DAZ constant), unverified, TLS",
            child: Command::new(&fastmath).args(c_args).quiet(),
            must_be_busy: true,
        },
    ];
    let pids: Vec<u32> = phase1.iter().map(|b| b.child.id()).collect();
    let want = QUIET.as_secs() as usize;
    let t0 = Instant::now();
    while t0.elapsed() < BENIGN_MAX {
        std::thread::sleep(Duration::from_secs(1));
        let rec = recording(&rec_path);
        if pids.iter().all(|&p| busy_samples(&rec, p) >= want) {
            break;
        }
    }
    for b in &mut phase1 {
        stop(&mut b.child);
    }

    // Phase 2: packaged tools at full tilt (compiler, compression,
    // `openssl speed`, busy interpreters).
    let big = dir.join("big.c");
    let mut src = String::new();
    for i in 0..4000 {
        src.push_str(&format!(
            "double f{i}(double x) {{ double s = 0; for (int k = 1; k < {n}; k++) s += x / (k + {i}) * (k % 3); return s; }}\n",
            n = 100 + i % 50
        ));
    }
    std::fs::write(&big, src).expect("big.c");
    let data = dir.join("data.bin");
    let mut bytes = Vec::with_capacity(48 << 20);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    while bytes.len() < 48 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Half random, half runs: slow to compress.
        bytes.extend_from_slice(&x.to_le_bytes()[..4]);
        bytes.extend_from_slice(&[(x >> 60) as u8; 4]);
    }
    std::fs::write(&data, &bytes).expect("data");
    // Each in its own process group, so the whole tool (gcc's cc1 and
    // as) stops with it.
    let timeout = |cmd: &str| {
        use std::os::unix::process::CommandExt as _;
        let mut c = Command::new(cmd);
        c.process_group(0);
        c
    };
    let mut phase2 = vec![
        Benign {
            name: "gcc -O2 on a 4000-function file",
            child: timeout("cc")
                .args(["-O2", "-c", "-o"])
                .arg(dir.join("big.o"))
                .arg(&big)
                .quiet(),
            must_be_busy: false,
        },
        Benign {
            name: "xz -9 on 48 MiB",
            child: timeout("xz")
                .args(["-9", "-T1", "-c"])
                .arg(&data)
                .stdout(Stdio::null())
                .quiet(),
            must_be_busy: false,
        },
        Benign {
            name: "python3 busy loop (packaged interpreter)",
            child: timeout("/usr/bin/python3")
                .args(["-c", "while True: sum(i * i for i in range(10000))"])
                .quiet(),
            must_be_busy: false,
        },
    ];
    if Path::new("/usr/bin/openssl").exists() {
        phase2.push(Benign {
            name: "openssl speed (sha256, aes-128-cbc)",
            child: timeout("/usr/bin/openssl")
                .args(["speed", "-seconds", "2", "sha256", "aes-128-cbc", "rsa2048"])
                .quiet(),
            must_be_busy: false,
        });
    }
    if Path::new("/usr/bin/node").exists() {
        phase2.push(Benign {
            name: "node busy loop (packaged interpreter)",
            child: timeout("/usr/bin/node")
                .args([
                    "-e",
                    "for(;;){let s=0;for(let i=0;i<1e6;i++)s+=Math.sqrt(i)}",
                ])
                .quiet(),
            must_be_busy: false,
        });
    }
    // Until each tool has burnt QUIET CPU seconds (or finished), at most
    // BENIGN_MAX.
    let t0 = Instant::now();
    while t0.elapsed() < BENIGN_MAX {
        std::thread::sleep(Duration::from_secs(1));
        let rec = recording(&rec_path);
        let done = phase2.iter_mut().all(|b| {
            let family = with_descendants(&rec, &[b.child.id()]);
            matches!(b.child.try_wait(), Ok(Some(_)))
                || cpu_seconds(&rec, &family) >= QUIET.as_secs_f64()
        });
        if done {
            break;
        }
    }
    for b in &mut phase2 {
        // SAFETY: signalling the process group we created for this tool.
        unsafe { libc::kill(-(b.child.id() as i32), libc::SIGKILL) };
        let _ = b.child.wait();
    }
    std::thread::sleep(Duration::from_secs(2));
    let alerts = d.alerts();
    let _ = d.stop();
    let rec = recording(&rec_path);
    assert!(!rec.is_empty(), "no recording at {}", rec_path.display());

    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for b in phase1.iter().chain(&phase2) {
        let pid = b.child.id();
        let family = with_descendants(&rec, &[pid]);
        let reports = fpu_reports(&rec, &family);
        let shaped = reports.iter().any(|&(_, _, seen)| is_randomx_shape(seen));
        let mine: Vec<&serde_json::Value> = alerts
            .iter()
            .filter(|a| {
                a["tgid"]
                    .as_u64()
                    .is_some_and(|t| family.contains(&(t as u32)))
            })
            .collect();
        let busy = family
            .iter()
            .map(|&t| busy_samples(&rec, t))
            .max()
            .unwrap_or(0);
        let values: std::collections::BTreeSet<String> =
            reports.iter().map(|r| format!("{:#06x}", r.1)).collect();
        let cpu = cpu_seconds(&rec, &family);
        rows.push(format!(
            "{:<72} cpu {cpu:>5.1} s, busy samples {busy:>2}, fpu reports {:>2} {values:?}, shape {shaped}, alerts {}",
            b.name,
            reports.len(),
            mine.len()
        ));
        if shaped || !mine.is_empty() {
            failures.push(format!("{}: shape {shaped}, alerts {mine:#?}", b.name));
        }
        if cpu < 3.0 {
            failures.push(format!(
                "{} ran only {cpu:.1} CPU seconds in {} s: the case proves nothing (machine overloaded? rerun under the lock)",
                b.name,
                BENIGN_MAX.as_secs()
            ));
        }
        if b.must_be_busy && busy < 3 {
            failures.push(format!(
                "{} was busy in only {busy} samples: the case proves nothing (machine overloaded? rerun under the lock)",
                b.name
            ));
        }
    }
    eprintln!("\nbenign look-alikes (unverified ones hold a TLS connection):");
    for r in &rows {
        eprintln!("  {r}");
    }
    // The kernel did see the interval solver's rounding modes (reported,
    // judged not the shape); fast math is never even reported.
    let interval_reports = fpu_reports(&rec, &[phase1[0].child.id()]);
    let fast_reports = fpu_reports(&rec, &[phase1[1].child.id()]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(
        interval_reports
            .iter()
            .any(|&(_, m, _)| m == 0x3F80 || m == 0x5F80),
        "the interval solver's rounding modes reach user space: {interval_reports:?}"
    );
    assert!(fast_reports.is_empty(), "{fast_reports:?}");
}

// ---- Debian's monerod, a packaged miner ----

/// A regtest address is a mainnet-format address (the fake chain uses
/// mainnet's prefixes).
const WALLET: &str = "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A";

/// The packaged monerod, or why there is none.
fn monerod() -> Result<PathBuf, String> {
    let path = std::env::var_os("MINERWATCH_MONEROD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/monerod"));
    let owned = Command::new("dpkg")
        .arg("-S")
        .arg(&path)
        .output()
        .is_ok_and(|o| o.status.success());
    if path.is_file() && owned {
        Ok(path)
    } else {
        Err(format!(
            "Debian's monero package is not installed ({} not owned by dpkg; `cargo xtask test` installs it)",
            path.display()
        ))
    }
}

/// One HTTP/1.1 request to monerod's RPC on loopback; the response body.
fn rpc(port: u16, path: &str, body: Option<&str>) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let (method, body) = match body {
        Some(b) => ("POST", b),
        None => ("GET", ""),
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())
}

fn json_field(body: &str, key: &str) -> Option<serde_json::Value> {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .map(|v| v[key].clone())
}

struct MoneroRun {
    /// (rule, severity, ms from the start_mining RPC, ms from the first
    /// reported hashrate). monerod reports its hashrate late (it averages
    /// over seconds), so the second can be negative; the first bounds the
    /// latency from the first hash from above.
    alerts: Vec<(String, String, u128, i64)>,
    /// ms from the start_mining RPC to a non-zero reported hashrate.
    start_to_hash: u128,
}

/// Starts monerod on regtest (offline, fixed difficulty 100), starts mining
/// through its RPC and waits for `rules` to alert on it; checks it is
/// still alive afterwards (enforce mode must not kill a packaged miner).
fn monerod_mines(d: &Daemon, bin: &Path, extra: &[&str], rules: &[&str]) -> MoneroRun {
    use std::os::unix::process::CommandExt as _;
    let data = std::env::temp_dir().join(common::unique("mw-monerod"));
    let rpc_port = common::daemon::free_port();
    let p2p_port = common::daemon::free_port();
    let mut cmd = Command::new(bin);
    cmd.args(["--regtest", "--offline", "--fixed-difficulty", "100"])
        .arg("--data-dir")
        .arg(&data)
        .args([
            "--rpc-bind-ip",
            "127.0.0.1",
            "--rpc-bind-port",
            &rpc_port.to_string(),
        ])
        .args([
            "--p2p-bind-ip",
            "127.0.0.1",
            "--p2p-bind-port",
            &p2p_port.to_string(),
        ])
        .args(["--no-zmq", "--non-interactive", "--log-level", "0"])
        .args(extra);
    // Safety: RandomX light mode. A 3 GiB address-space limit makes the
    // 2 GiB dataset allocation fail, so monerod mines from the 256 MiB
    // cache (and its first hashes come in seconds, not minutes).
    // SAFETY: setrlimit only, between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 3 << 30,
                rlim_max: 3 << 30,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.quiet();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    while rpc(rpc_port, "/get_info", None).is_none() {
        assert!(Instant::now() < deadline, "monerod RPC did not come up");
        assert!(matches!(child.try_wait(), Ok(None)), "monerod exited");
        std::thread::sleep(Duration::from_millis(250));
    }
    let body = format!(
        r#"{{"miner_address":"{WALLET}","threads_count":1,"do_background_mining":false,"ignore_battery":true}}"#
    );
    let started = Instant::now();
    let status = rpc(rpc_port, "/start_mining", Some(&body)).unwrap_or_default();
    assert_eq!(
        json_field(&status, "status").and_then(|s| s.as_str().map(str::to_owned)),
        Some("OK".into()),
        "start_mining: {status}"
    );
    let mut first_hash = None;
    let mut seen: Vec<(String, String, Instant)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && (seen.len() < rules.len() || first_hash.is_none()) {
        if first_hash.is_none() {
            let st = rpc(rpc_port, "/mining_status", None).unwrap_or_default();
            let speed = json_field(&st, "speed")
                .and_then(|v| v.as_u64())
                .unwrap_or(0);
            let algo = json_field(&st, "pow_algorithm");
            if speed > 0 {
                assert_eq!(algo, Some("RandomX".into()), "{st}");
                first_hash = Some(Instant::now());
            }
        }
        for a in alerts_for(d, pid) {
            let rule = a["rule"].as_str().unwrap_or("").to_owned();
            if rules.contains(&rule.as_str()) && !seen.iter().any(|(r, _, _)| *r == rule) {
                let sev = a["severity"].as_str().unwrap_or("").to_owned();
                seen.push((rule, sev, Instant::now()));
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Give enforcement its chance, then check the node lives.
    std::thread::sleep(Duration::from_secs(3));
    let alive = matches!(child.try_wait(), Ok(None));
    let kills: Vec<serde_json::Value> = d
        .records()
        .into_iter()
        .filter(|r| {
            r["kind"] == "action"
                && r["action"] == "kill"
                && r["target"].as_u64() == Some(u64::from(pid))
        })
        .collect();
    let all = alerts_for(d, pid);
    stop(&mut child);
    let _ = std::fs::remove_dir_all(&data);
    let first_hash = first_hash.expect("monerod reported no hashes within 60 s");
    assert!(alive, "enforce mode killed the packaged monerod: {all:#?}");
    assert!(
        kills.iter().all(|k| k["result"] != "ok"),
        "a kill went through: {kills:#?}"
    );
    for r in rules {
        assert!(
            seen.iter().any(|(s, _, _)| s == r),
            "no {r} for the packaged monerod: {all:#?}\ndaemon log:\n{}",
            d.log()
        );
    }
    for a in &all {
        assert_eq!(a["provenance"]["verdict"], "verified", "{a:#}");
    }
    MoneroRun {
        alerts: seen
            .into_iter()
            .map(|(r, s, at)| {
                let from_hash = if at >= first_hash {
                    at.duration_since(first_hash).as_millis() as i64
                } else {
                    -(first_hash.duration_since(at).as_millis() as i64)
                };
                (r, s, at.duration_since(started).as_millis(), from_hash)
            })
            .collect(),
        start_to_hash: first_hash.duration_since(started).as_millis(),
    }
}

#[test]
fn packaged_monerod_mining_on_regtest_is_alerted_but_not_killed() {
    let test = "packaged_monerod_mining_on_regtest_is_alerted_but_not_killed";
    let bin = match monerod() {
        Ok(p) => p,
        Err(why) => return common::skip(test, "monerod", &why),
    };
    let d = Daemon::start("", &["--enforce"]);
    // Mining through the RPC only: the work is the only sign.
    let a = monerod_mines(&d, &bin, &[], &["randomx_fingerprint"]);
    // Told to mine on its command line as well (offline it waits for the
    // RPC): a packaged miner program's command line counts too.
    let b = monerod_mines(
        &d,
        &bin,
        &["--start-mining", WALLET, "--mining-threads", "1"],
        &["randomx_fingerprint", "miner_command_line"],
    );
    eprintln!("\npackaged monerod (regtest, light mode, enforce mode):");
    for (name, run) in [("RPC only", &a), ("--start-mining + RPC", &b)] {
        eprintln!(
            "  {name}: hashrate reported {} ms after start_mining; alerts (rule, severity, ms after start_mining, ms after the reported hashrate): {:?}",
            run.start_to_hash, run.alerts
        );
    }
    let _ = d.stop();
    for run in [&a, &b] {
        for (rule, severity, from_start, _) in &run.alerts {
            assert_eq!(severity, "high", "{rule}: packaged, no network: high");
            // From start_mining: includes the light-mode cache set-up
            // before the first hash, so it bounds "from the first hashes".
            assert!(
                *from_start <= u128::from(BUDGET_MEDIAN_MS),
                "{rule} {from_start} ms after start_mining (budget {BUDGET_MEDIAN_MS} ms from the first hashes)"
            );
        }
    }
}
