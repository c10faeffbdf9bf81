//! Faults the daemon must survive, each against the real daemon and the
//! running kernel: a kill that cannot complete during an exec storm, its
//! own crash and restart, a ring buffer too small for a storm, a full or
//! read-only disk, a webhook receiver that is down, slow or failing, a
//! hundred tail clients, process-table pressure, and a config reload.
//! Each prints the figures the README's reliability section quotes. Needs
//! root.

mod common;

use std::{
    collections::{HashMap, HashSet},
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use common::SpawnListening;
use common::{
    SpawnQuiet,
    daemon::{Daemon, Launch, pids_running, tail_lines},
};

const MINER: &str = env!("CARGO_BIN_EXE_fake_miner");
const POOL: &str = env!("CARGO_BIN_EXE_fake_pool");
const SPAWNSTORM: &str = env!("CARGO_BIN_EXE_spawnstorm");
const FORKSTORM: &str = env!("CARGO_BIN_EXE_forkstorm");

/// README budget: a miner whose pool protocol is visible is flagged within
/// 2 s of its exec.
const BUDGET_PROTOCOL_MS: u64 = 2000;

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as f64
}

struct Pool {
    child: Child,
    port: u16,
}

impl Pool {
    fn start() -> Pool {
        let (child, port) = Command::new(POOL).args(["--seconds", "180"]).listening();
        Pool { child, port }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills (and reaps) a child when dropped, whatever the test's outcome.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A dropped, renamed copy of a binary in a hidden temp dir.
fn dropped(src: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(common::unique(".mwf"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let p = dir.join(name);
    std::fs::copy(src, &p).expect("copy");
    p
}

fn miner(bin: &Path, pool: &str, proto: &str, seconds: &str, extra: &[&str]) -> Reaped {
    Reaped(
        Command::new(bin)
            .args(["--pool", pool, "--proto", proto, "--seconds", seconds])
            .args(extra)
            .quiet(),
    )
}

/// An exec storm of a uniquely named copy of /bin/true: the storm, and
/// what its execs' tail lines carry (`"exe":"<path>"`; the storm's own
/// command line names the path too, but not as its `exe`).
fn exec_storm(count: u64, in_flight: u32) -> (Reaped, String) {
    let bin = dropped("/bin/true", &common::unique("stormexe"));
    let name = format!("\"exe\":\"{}\"", bin.display());
    let child = Command::new(SPAWNSTORM)
        .arg(count.to_string())
        .arg(in_flight.to_string())
        .arg(&bin)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawnstorm");
    (Reaped(child), name)
}

fn lost_total(d: &Daemon) -> f64 {
    d.metric("minerwatch_events_lost_total", &[])
}

/// The first alert for `tgid` (optionally of `rule`) after `since` lines.
fn alert_for(
    d: &Daemon,
    tgid: u32,
    rule: Option<&str>,
    timeout: Duration,
) -> Option<serde_json::Value> {
    d.wait_alert(timeout, |a| {
        a["tgid"].as_u64() == Some(u64::from(tgid)) && rule.is_none_or(|r| a["rule"] == r)
    })
}

// ---------------------------------------------------------------------------
// §1: the pipeline never waits

/// A v1 freezer cgroup: a frozen process keeps a SIGKILL pending until it
/// is thawed, so a kill of it cannot be confirmed — a target that will not
/// die quickly, as one stuck in uninterruptible sleep.
struct Frozen {
    dir: PathBuf,
    pids: Vec<u32>,
}

impl Frozen {
    fn new(pids: &[u32]) -> Option<Frozen> {
        let root = Path::new("/sys/fs/cgroup/freezer");
        if !root.join("cgroup.procs").exists() {
            return None;
        }
        let dir = root.join(common::unique("mwfreeze"));
        std::fs::create_dir(&dir).ok()?;
        for p in pids {
            std::fs::write(dir.join("cgroup.procs"), p.to_string()).ok()?;
        }
        std::fs::write(dir.join("freezer.state"), "FROZEN").ok()?;
        let f = Frozen {
            dir,
            pids: pids.to_vec(),
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if f.state() == "FROZEN" {
                return Some(f);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(f)
    }

    fn state(&self) -> String {
        std::fs::read_to_string(self.dir.join("freezer.state"))
            .unwrap_or_default()
            .trim()
            .to_owned()
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = std::fs::write(self.dir.join("freezer.state"), "THAWED");
        for p in &self.pids {
            // SAFETY: our test's own miner worker.
            unsafe { libc::kill(*p as i32, libc::SIGKILL) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && std::fs::remove_dir(&self.dir).is_err() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn a_kill_that_cannot_complete_never_stops_the_event_path() {
    if !Path::new("/sys/fs/cgroup/freezer/cgroup.procs").exists() {
        common::skip(
            "a_kill_that_cannot_complete_never_stops_the_event_path",
            "freezer-v1",
            "no cgroup v1 freezer to hold a killed process (pure cgroup v2 host)",
        );
        return;
    }
    let pool = Pool::start();
    let cfg = format!(
        "[detector]\nextra_pool_ports = [{}]\n[response]\nkill_timeout_ms = 10000\nfootholds = false\n",
        pool.port
    );
    let d = Daemon::start(&cfg, &["--enforce"]);
    let bin = dropped(MINER, "kworker-rx");
    // Holder + 2 hashing workers; one worker is frozen, so its kill hangs
    // for the whole kill timeout while the other keeps the CPU sustained.
    let m = miner(&bin, &pool.addr(), "xmrig", "60", &["--workers", "2"]);
    let holder = m.0.id();
    let deadline = Instant::now() + Duration::from_secs(5);
    let workers = loop {
        let w: Vec<u32> = pids_running(&bin)
            .into_iter()
            .filter(|&p| p != holder)
            .collect();
        if w.len() == 2 || Instant::now() > deadline {
            break w;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(workers.len(), 2, "two workers");
    let frozen = Frozen::new(&workers[..1]).expect("freeze a worker");
    assert_eq!(frozen.state(), "FROZEN");

    let tail = tail_lines(&d.socket);
    let critical = d
        .wait_alert(Duration::from_secs(20), |a| {
            a["tgid"].as_u64() == Some(u64::from(holder)) && a["severity"] == "critical"
        })
        .expect("critical alert");
    let t_alert = Instant::now();
    let lost_before = lost_total(&d);
    // An exec storm while the response thread waits for the frozen worker.
    let n = 6000;
    let (mut storm, name) = exec_storm(n, 2);
    let mut ready_codes = Vec::new();
    let mut scrape_max = Duration::ZERO;
    while storm.0.try_wait().expect("storm").is_none() {
        let t0 = Instant::now();
        ready_codes.push(d.get("/readyz").map_or(0, |(c, _)| c));
        let _ = d.scrape();
        scrape_max = scrape_max.max(t0.elapsed());
        std::thread::sleep(Duration::from_millis(200));
    }
    let storm_took = t_alert.elapsed();
    // Count the storm's execs on the tail (lines lag by a drain interval).
    let mut seen = 0u64;
    let until = Instant::now() + Duration::from_secs(5);
    while seen < n && Instant::now() < until {
        if let Ok(line) = tail.recv_timeout(Duration::from_millis(200))
            && line.contains("\"kind\":\"exec\"")
            && line.contains(&name)
        {
            seen += 1;
        }
    }
    let lost = lost_total(&d) - lost_before;
    let kill = d.wait_record(Duration::from_secs(15), |r| {
        r["kind"] == "action"
            && r["action"] == "kill"
            && r["target"].as_u64() == Some(u64::from(workers[0]))
    });
    let kill_done = t_alert.elapsed();
    eprintln!(
        "slow kill: storm of {n} execs ran {:.1} s during the kill; tail saw {seen}; lost {lost}; /readyz {:?} codes; max /readyz+/metrics {scrape_max:?}; kill of the frozen worker reported after {:.1} s: {kill:?}",
        storm_took.as_secs_f64(),
        ready_codes.iter().collect::<HashSet<_>>(),
        kill_done.as_secs_f64()
    );
    let _ = critical;
    assert_eq!(seen, n, "every exec of the storm reached the tail client");
    assert_eq!(lost, 0.0, "no event lost");
    assert!(
        ready_codes.iter().all(|&c| c == 200),
        "/readyz stayed 200: {ready_codes:?}"
    );
    let kill = kill.expect("the frozen worker's kill is reported");
    assert_eq!(kill["result"], "failed", "{kill}");
    assert!(
        storm_took < Duration::from_secs(10) || kill_done >= Duration::from_secs(9),
        "the storm overlapped the kill wait"
    );
    assert!(
        kill_done >= Duration::from_secs(9),
        "the kill really waited: {kill_done:?}"
    );
    drop(frozen);
    drop(m);
    let _ = d.stop();
}

// ---------------------------------------------------------------------------
// Crash and restart

/// bpf(2) object ids (`prog_id`, `link_id`) the daemon holds, from fdinfo.
fn bpf_ids(pid: u32) -> (Vec<u32>, Vec<u32>) {
    let (mut progs, mut links) = (Vec::new(), Vec::new());
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return (progs, links);
    };
    for e in rd.flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        for l in text.lines() {
            let id = |p: &str| l.strip_prefix(p).and_then(|v| v.trim().parse::<u32>().ok());
            if let Some(id) = id("prog_id:") {
                progs.push(id);
            }
            if let Some(id) = id("link_id:") {
                links.push(id);
            }
        }
    }
    progs.sort_unstable();
    progs.dedup();
    links.sort_unstable();
    links.dedup();
    (progs, links)
}

/// Does a BPF program (cmd 13, BPF_PROG_GET_FD_BY_ID) or link (cmd 30,
/// BPF_LINK_GET_FD_BY_ID) with this id still exist?
fn bpf_exists(cmd: i64, id: u32) -> bool {
    #[repr(C)]
    struct Attr {
        id: u32,
        next_id: u32,
        open_flags: u32,
    }
    let attr = Attr {
        id,
        next_id: 0,
        open_flags: 0,
    };
    // SAFETY: bpf(2) reads `size_of::<Attr>()` bytes of a valid attr.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            &attr as *const Attr,
            std::mem::size_of::<Attr>(),
        )
    };
    if fd >= 0 {
        // SAFETY: a descriptor we just got.
        unsafe { libc::close(fd as i32) };
        return true;
    }
    std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOENT)
}

fn connect_errno(addr: &str) -> Option<i32> {
    match TcpStream::connect_timeout(&addr.parse().expect("addr"), Duration::from_secs(1)) {
        Ok(_) => None,
        Err(e) => Some(e.raw_os_error().unwrap_or(-1)),
    }
}

fn alert_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn crash_and_restart_redetects_reblocks_keeps_the_alert_file_whole_and_leaves_nothing_attached() {
    let pool = Pool::start();
    let cfg = format!(
        "[detector]\nextra_pool_ports = [{}]\n[response]\nfootholds = false\npolicy = [{{ min_severity = \"high\", actions = [\"block_egress\"] }}]\n",
        pool.port
    );
    let pinned_before: HashSet<String> = std::fs::read_dir("/sys/fs/bpf")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let mut a = Daemon::start(&cfg, &["--enforce"]);
    let (progs, links) = bpf_ids(a.pid());
    assert!(progs.len() >= 9, "programs held by the daemon: {progs:?}");

    let bin = dropped(MINER, "kdevtmpfs");
    let m = miner(&bin, &pool.addr(), "xmrig", "90", &[]);
    let pid = m.0.id();
    alert_for(&a, pid, None, Duration::from_secs(10)).expect("first detection");
    let block = a
        .wait_record(Duration::from_secs(10), |r| {
            r["kind"] == "action"
                && r["action"] == "block_egress"
                && r["target"].as_u64() == Some(u64::from(pid))
        })
        .expect("blocked");
    assert_eq!(block["result"], "ok", "{block}");
    assert_eq!(
        connect_errno(&pool.addr()),
        Some(libc::EPERM),
        "pool endpoint blocked"
    );
    let before_crash = alert_lines(&a.alerts);

    // Crash mid-storm.
    let (storm, _) = exec_storm(20_000, 2);
    std::thread::sleep(Duration::from_millis(700));
    let a_pid = a.pid();
    a.kill9();
    drop(storm);
    let t_crash = Instant::now();
    let mut left = (Vec::new(), Vec::new());
    while t_crash.elapsed() < Duration::from_secs(5) {
        left = (
            progs
                .iter()
                .copied()
                .filter(|&id| bpf_exists(13, id))
                .collect(),
            links
                .iter()
                .copied()
                .filter(|&id| bpf_exists(30, id))
                .collect(),
        );
        if left.0.is_empty() && left.1.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let freed_after = t_crash.elapsed();
    let pinned_after: HashSet<String> = std::fs::read_dir("/sys/fs/bpf")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        left.0.is_empty() && left.1.is_empty(),
        "programs/links of the dead daemon {a_pid} still exist: {left:?}"
    );
    assert_eq!(pinned_after, pinned_before, "nothing pinned in /sys/fs/bpf");
    // The block lived in the dead daemon's links.
    assert_eq!(
        connect_errno(&pool.addr()),
        None,
        "block ended with the daemon"
    );

    // What a crash mid-write leaves: a partial last line.
    let torn = "{\"time\":\"2026-01-01T00:00:00.000Z\",\"kind\":\"alert\",\"rule\":\"pool_pro";
    std::fs::OpenOptions::new()
        .append(true)
        .open(&a.alerts)
        .and_then(|mut f| f.write_all(torn.as_bytes()))
        .expect("tear the last line");

    let t_restart = Instant::now();
    let b = Daemon::launch(
        &cfg,
        &["--enforce"],
        Launch {
            dir: Some(a.dir.clone()),
            alerts: Some(a.alerts.clone()),
            ..Launch::default()
        },
    );
    let ready_after = t_restart.elapsed();
    let lines_before = before_crash.len();
    // Only alerts written after the restart count.
    let new_alert = || {
        alert_lines(&b.alerts)
            .get(lines_before..)
            .unwrap_or_default()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|r| r["kind"] == "alert" && r["tgid"].as_u64() == Some(u64::from(pid)))
    };
    let until = Instant::now() + Duration::from_secs(15);
    let mut redetect = new_alert();
    while redetect.is_none() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
        redetect = new_alert();
    }
    let redetect_after = t_restart.elapsed();
    let reblock = b.wait_record(Duration::from_secs(10), |r| {
        r["kind"] == "action"
            && r["action"] == "block_egress"
            && r["target"].as_u64() == Some(u64::from(pid))
            && r["time"].as_str() > block["time"].as_str()
    });
    let errno_after = connect_errno(&pool.addr());
    eprintln!(
        "crash/restart: programs and links of the dead daemon freed {freed_after:?} after SIGKILL; restart ready in {ready_after:?}; miner re-detected {redetect_after:?} after the restart ({:?}); re-block {:?}; connect to the pool after: {errno_after:?}",
        redetect.as_ref().map(|r| r["rule"].clone()),
        reblock.as_ref().map(|r| r["result"].clone()),
    );
    redetect.expect("re-detected after the restart");
    assert!(
        redetect_after.saturating_sub(ready_after) <= Duration::from_secs(5),
        "re-detected by the sweep within 5 s of ready: {redetect_after:?} - {ready_after:?}"
    );
    assert_eq!(reblock.expect("re-blocked")["result"], "ok");
    assert_eq!(errno_after, Some(libc::EPERM), "block re-established");

    // The alert file: every line whole, the old ones intact and in order,
    // none twice, the torn bytes moved aside with a warning.
    let after = alert_lines(&b.alerts);
    for l in &after {
        serde_json::from_str::<serde_json::Value>(l)
            .unwrap_or_else(|e| panic!("broken line {l:?}: {e}"));
    }
    assert_eq!(
        &after[..lines_before],
        &before_crash[..],
        "nothing before the crash lost"
    );
    let unique: HashSet<&String> = after.iter().collect();
    assert_eq!(unique.len(), after.len(), "no line twice");
    let torn_file =
        std::fs::read_to_string(format!("{}.torn", b.alerts.display())).unwrap_or_default();
    assert_eq!(torn_file.trim_end(), torn);
    assert!(
        b.log().contains("removed an incomplete last line"),
        "warned"
    );
    drop(m);
    let _ = b.stop();
}

// ---------------------------------------------------------------------------
// Ring overflow

#[test]
fn a_ring_too_small_for_a_storm_counts_its_losses_reports_degraded_and_still_detects() {
    let pool = Pool::start();
    let cfg = format!(
        "[sensor]\nring_buffer_bytes = 4096\ndrain_interval_ms = 1000\n[detector]\nextra_pool_ports = [{}]\n[response]\nfootholds = false\n",
        pool.port
    );
    let mut d = Daemon::start(&cfg, &[]);
    let (mut storm, _) = exec_storm(8000, 4);
    let mut degraded = None;
    while storm.0.try_wait().expect("storm").is_none() {
        if let Some((503, body)) = d.get("/readyz")
            && body.starts_with("degraded")
        {
            degraded.get_or_insert(body);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    if degraded.is_none()
        && let Some((503, body)) = d.get("/readyz")
    {
        degraded = Some(body);
    }
    let s = d.scrape();
    let by_site: Vec<(String, f64)> = s
        .samples
        .iter()
        .filter(|x| x.metric == "minerwatch_events_lost_total")
        .filter_map(|x| {
            let v = match x.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            };
            (v > 0.0).then(|| (x.labels.get("kind").unwrap_or("?").to_owned(), v))
        })
        .collect();
    assert!(d.alive(), "no crash");
    // Ready again once a loss-free window has passed.
    let t0 = Instant::now();
    let recovered = d.wait_ready(Duration::from_secs(30));
    let recovered_after = t0.elapsed();
    // Detection still works for a miner started after the storm.
    let bin = dropped(MINER, "kswapd1");
    let m = miner(&bin, &pool.addr(), "xmrig", "20", &[]);
    let a = alert_for(
        &d,
        m.0.id(),
        Some("pool_protocol_unverified"),
        Duration::from_secs(10),
    );
    eprintln!(
        "ring overflow: losses by site {by_site:?}; /readyz during the storm: {degraded:?}; ready again {recovered_after:?} later; miner after the storm: {:?} ms",
        a.as_ref().map(|a| a["latency_ms"].clone())
    );
    assert!(!by_site.is_empty(), "losses counted per site");
    assert!(
        by_site
            .iter()
            .all(|(k, _)| k.ends_with("_full") || k.contains("ring")),
        "{by_site:?}"
    );
    let degraded = degraded.expect("/readyz reported degraded while losing");
    assert!(degraded.contains("dropped"), "{degraded}");
    assert!(recovered, "ready again after the storm");
    let a = a.expect("miner after the storm detected");
    assert!(
        a["latency_ms"].as_u64().expect("latency") <= BUDGET_PROTOCOL_MS,
        "{a}"
    );
    drop(m);
    let _ = d.stop();
}

// ---------------------------------------------------------------------------
// Disk full / read-only

/// A small tmpfs, unmounted (lazily) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).expect("mkdir");
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .status()
            .expect("mount");
        assert!(st.success(), "mount tmpfs at {}", path.display());
        Tmpfs(path.to_owned())
    }

    fn remount(&self, opts: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(&self.0)
            .status()
            .expect("remount");
        assert!(st.success(), "remount {opts}");
    }

    /// Fill the file system: returns the filler's path.
    fn fill(&self) -> PathBuf {
        let p = self.0.join("filler");
        let mut f = std::fs::File::create(&p).expect("filler");
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        p
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_or_read_only_disk_is_logged_once_counted_and_detection_goes_on() {
    let pool = Pool::start();
    let base = std::env::temp_dir().join(common::unique("mwdisk"));
    let full = Tmpfs::mount(&base.join("log"), "256k");
    let ro = Tmpfs::mount(&base.join("q"), "1m");
    let alerts = base.join("log/alerts.jsonl");
    let qdir = base.join("q/quarantine");
    std::fs::create_dir_all(&qdir).expect("quarantine dir");
    ro.remount("ro");
    let cfg = format!(
        "[detector]\nextra_pool_ports = [{}]\n[response]\nfootholds = false\nquarantine_dir = \"{}\"\n",
        pool.port,
        qdir.display()
    );
    let d = Daemon::launch(
        &cfg,
        &["--enforce"],
        Launch {
            alerts: Some(alerts.clone()),
            ..Launch::default()
        },
    );
    let filler = full.fill();
    let tail = tail_lines(&d.socket);

    let bin = dropped(MINER, "kthreadd2");
    let m = miner(&bin, &pool.addr(), "xmrig", "30", &[]);
    let pid = m.0.id();
    // The tail still shows the alerts and the actions (an action's tail
    // line says `<action> <target> <result>: <reason>` in its detail).
    let mut got: Vec<serde_json::Value> = Vec::new();
    let action = |r: &serde_json::Value, what: &str| {
        r["kind"] == "action" && r["detail"].as_str().is_some_and(|d| d.starts_with(what))
    };
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until && !got.iter().any(|r| action(r, "quarantine ")) {
        if let Ok(l) = tail.recv_timeout(Duration::from_millis(200))
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&l)
            && (v["kind"] == "alert" || v["kind"] == "action")
        {
            got.push(v);
        }
    }
    let lost_io = d.metric(
        "minerwatch_alert_lines_lost_total",
        &[("sink", "file"), ("reason", "io_error")],
    );
    let q_failed = d.metric(
        "minerwatch_actions_total",
        &[("action", "quarantine"), ("result", "failed")],
    );
    let log = d.log();
    let file_errors = log
        .lines()
        .filter(|l| l.contains("alert file:") && l.contains("No space left"))
        .count();
    let q_log = log
        .lines()
        .filter(|l| l.contains("quarantine") && l.contains("Read-only"))
        .count();
    eprintln!(
        "disk full: {lost_io} alert lines lost to the file, {file_errors} log line(s); read-only quarantine: {q_failed} failed, {q_log} log line(s); tail got {} alert/action lines",
        got.len()
    );
    assert!(
        got.iter()
            .any(|r| r["kind"] == "alert" && r["tgid"].as_u64() == Some(u64::from(pid))),
        "alert on the tail"
    );
    let q = got
        .iter()
        .find(|r| action(r, "quarantine "))
        .unwrap_or_else(|| panic!("quarantine reported: {got:?}"));
    assert!(
        q["detail"]
            .as_str()
            .is_some_and(|d| d.contains(" failed: ")),
        "{q}"
    );
    assert!(
        got.iter().any(
            |r| action(r, "kill ") && r["detail"].as_str().is_some_and(|d| d.contains(" ok: "))
        ),
        "the kill still happened: {got:?}"
    );
    assert!(lost_io >= 1.0, "file losses counted");
    assert_eq!(
        file_errors, 1,
        "one clear log line for the full disk:\n{log}"
    );
    assert!(q_failed >= 1.0);
    assert!(q_log >= 1, "quarantine failure logged:\n{log}");
    assert_eq!(
        d.get("/metrics").map(|(c, _)| c),
        Some(200),
        "metrics still served"
    );

    // Space again: the next alert reaches the file, whole. (A second pool:
    // the first one's endpoint is blocked now.)
    std::fs::remove_file(&filler).expect("free space");
    let pool2 = Pool::start();
    let m2 = miner(&bin, &pool2.addr(), "xmrig", "20", &[]);
    let pid2 = m2.0.id();
    let back = alert_for(&d, pid2, None, Duration::from_secs(15));
    assert!(
        back.is_some(),
        "alert written once there is space:\n{}",
        d.log()
    );
    for l in alert_lines(&alerts) {
        serde_json::from_str::<serde_json::Value>(&l)
            .unwrap_or_else(|e| panic!("torn line {l:?}: {e}"));
    }
    assert!(d.log().contains("works again"), "recovery logged");
    drop((m, m2));
    let _ = d.stop();
    drop((full, ro));
    let _ = std::fs::remove_dir_all(&base);
}

// ---------------------------------------------------------------------------
// Webhook down, slow, failing

/// Phases of the receiver: answer 500, answer after 10 s, refuse.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Fail,
    Slow,
    Down,
}

/// When each POST arrived, with its body.
type Attempts = Arc<Mutex<Vec<(Instant, Vec<u8>)>>>;

/// A webhook receiver whose behaviour the test switches. Records when each
/// body arrived, to measure the backoff between attempts.
struct Receiver {
    port: u16,
    mode: Arc<Mutex<Mode>>,
    attempts: Attempts,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let mode = Arc::new(Mutex::new(Mode::Fail));
        let attempts: Attempts = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (m, a, s) = (mode.clone(), attempts.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut listener = Some(listener);
            while !s.load(Ordering::Relaxed) {
                let current = *m.lock().expect("mode");
                if current == Mode::Down {
                    listener = None; // connection refused from now on
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                let Some(l) = listener.as_ref() else { break };
                match l.accept() {
                    Ok((stream, _)) => {
                        let a = a.clone();
                        std::thread::spawn(move || serve_one(stream, current, &a));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Receiver {
            port,
            mode,
            attempts,
            stop,
        }
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().expect("mode") = mode;
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve_one(mut s: TcpStream, mode: Mode, attempts: &Mutex<Vec<(Instant, Vec<u8>)>>) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(s.try_clone().expect("clone"));
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; len];
    let _ = reader.read_exact(&mut body);
    attempts
        .lock()
        .expect("attempts")
        .push((Instant::now(), body));
    if mode == Mode::Slow {
        std::thread::sleep(Duration::from_secs(10));
    }
    let _ = write!(
        s,
        "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
}

/// A sink for miners' logins: accepts, reads and holds each connection.
fn login_sink() -> (u16, Arc<AtomicBool>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    l.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((mut c, _)) => {
                    std::thread::spawn(move || {
                        let _ = c.set_nonblocking(false);
                        let mut buf = [0u8; 4096];
                        while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    });
    (port, stop)
}

#[test]
fn a_webhook_down_slow_or_failing_never_blocks_detection_and_memory_stays_bounded() {
    let rx = Receiver::start();
    let (port, stop_sink) = login_sink();
    let cfg = format!(
        "[detector]\nextra_pool_ports = [{port}]\n[response]\nfootholds = false\n[alerts]\nwebhook_url = \"http://127.0.0.1:{}/hook\"\nwebhook_queue = 64\nwebhook_timeout_ms = 2000\nwebhook_retries = 3\nwebhook_backoff_ms = 200\n",
        rx.port
    );
    // The alert file on a tmpfs: this test is about the webhook, and an
    // fdatasync per line on this shared VM's disk (other builds writing)
    // can fall behind 60 alerts/s and drop lines by design (counted; the
    // disk-full test covers that output).
    let base = std::env::temp_dir().join(common::unique("mwhook"));
    let fs = Tmpfs::mount(&base, "64m");
    let d = Daemon::launch(
        &cfg,
        &[],
        Launch {
            alerts: Some(base.join("alerts.jsonl")),
            ..Launch::default()
        },
    );
    let bin = dropped(MINER, "xmr-stak");
    let (_, rss0) = d.usage();
    let mut rss_max = rss0;
    let mut latencies: Vec<u64> = Vec::new();
    let total = 1000u32;
    let mut pids: Vec<u32> = Vec::new();
    let t0 = Instant::now();
    let mut running: std::collections::VecDeque<Reaped> = std::collections::VecDeque::new();
    for i in 0..total {
        let mode = match i * 3 / total {
            0 => Mode::Fail,
            1 => Mode::Slow,
            _ => Mode::Down,
        };
        rx.set(mode);
        if running.len() >= 32 {
            let mut c = running.pop_front().expect("running");
            let _ = c.0.wait();
        }
        let m = miner(
            &bin,
            &format!("127.0.0.1:{port}"),
            "xmrig",
            "0.3",
            &["--duty", "5"],
        );
        pids.push(m.0.id());
        running.push_back(m);
        if i % 50 == 0 {
            rss_max = rss_max.max(d.usage().1);
        }
    }
    drop(running);
    let spawned_in = t0.elapsed();
    // Every miner flagged, each within the budget.
    let want: HashSet<u64> = pids.iter().map(|&p| u64::from(p)).collect();
    let until = Instant::now() + Duration::from_secs(30);
    let mut flagged: HashMap<u64, u64> = HashMap::new();
    while flagged.len() < want.len() && Instant::now() < until {
        for a in d.alerts() {
            if let (Some(t), Some(l)) = (a["tgid"].as_u64(), a["latency_ms"].as_u64())
                && want.contains(&t)
            {
                flagged.entry(t).or_insert(l);
            }
        }
        rss_max = rss_max.max(d.usage().1);
        std::thread::sleep(Duration::from_millis(250));
    }
    latencies.extend(flagged.values());
    latencies.sort_unstable();
    let s = d.scrape();
    let deliveries: Vec<(String, f64)> = ["sent", "retried", "failed", "dropped"]
        .iter()
        .map(|r| {
            (
                r.to_string(),
                common::daemon::metric_value(
                    &s,
                    "minerwatch_webhook_deliveries_total",
                    &[("result", r)],
                ),
            )
        })
        .collect();
    // Backoff: the gaps between attempts of one body in the failing phase.
    let attempts = rx.attempts.lock().expect("attempts").clone();
    let mut by_body: HashMap<Vec<u8>, Vec<Instant>> = HashMap::new();
    for (t, b) in &attempts {
        by_body.entry(b.clone()).or_default().push(*t);
    }
    let retried: Vec<Vec<Duration>> = by_body
        .values()
        .filter(|ts| ts.len() >= 3)
        .map(|ts| ts.windows(2).map(|w| w[1] - w[0]).collect())
        .take(3)
        .collect();
    let (_, rss_end) = d.usage();
    eprintln!(
        "webhook: {total} miners in {:.1} s, {} flagged; latency median {} ms, max {} ms; deliveries {deliveries:?}; {} attempts received; gaps between retries of one alert {retried:?}; RSS {} KiB at start, max {} KiB, end {} KiB",
        spawned_in.as_secs_f64(),
        flagged.len(),
        latencies.get(latencies.len() / 2).copied().unwrap_or(0),
        latencies.last().copied().unwrap_or(0),
        attempts.len(),
        rss0,
        rss_max,
        rss_end
    );
    stop_sink.store(true, Ordering::Relaxed);
    let missing: Vec<&u64> = want
        .iter()
        .filter(|p| !flagged.contains_key(p))
        .take(10)
        .collect();
    eprintln!(
        "webhook: alert lines lost {}, events lost {}, missing e.g. {missing:?}, dir {}",
        common::daemon::metric_value(&s, "minerwatch_alert_lines_lost_total", &[]),
        common::daemon::metric_value(&s, "minerwatch_events_lost_total", &[]),
        d.dir.display()
    );
    assert_eq!(flagged.len(), want.len(), "every miner flagged");
    assert!(
        latencies.last().copied().unwrap_or(u64::MAX) <= BUDGET_PROTOCOL_MS,
        "detection never waited on the webhook: max {} ms",
        latencies.last().copied().unwrap_or(0)
    );
    let get = |r: &str| {
        deliveries
            .iter()
            .find(|(k, _)| k == r)
            .map_or(0.0, |(_, v)| *v)
    };
    assert!(
        get("retried") > 0.0 && get("failed") > 0.0 && get("dropped") > 0.0,
        "{deliveries:?}"
    );
    assert!(
        retried
            .iter()
            .any(|g| g.len() >= 2 && g[1] >= g[0] + Duration::from_millis(150)),
        "backoff grows between retries: {retried:?}"
    );
    assert!(
        rss_max.saturating_sub(rss0) < 32 * 1024,
        "RSS grew by {} KiB over {total} alerts",
        rss_max - rss0
    );
    let _ = d.stop();
    drop(fs);
    let _ = std::fs::remove_dir_all(&base);
}

// ---------------------------------------------------------------------------
// Many tail clients

#[test]
fn a_hundred_tail_clients_half_stalled_cost_bounded_cpu_and_memory_and_readers_lose_nothing() {
    let cfg = "[tail]\nmax_clients = 128\n[response]\nfootholds = false\n";
    let d = Daemon::start(cfg, &[]);
    let tck = clk_tck();
    let n = 5000u64;
    // The same storm without clients, for comparison.
    let (c0, _) = d.usage();
    let t0 = Instant::now();
    let (mut storm, _) = exec_storm(n, 2);
    let _ = storm.0.wait();
    std::thread::sleep(Duration::from_millis(1500));
    let (c1, rss_alone) = d.usage();
    let alone_cores = (c1 - c0) as f64 / tck / t0.elapsed().as_secs_f64();

    // 50 readers that keep up, 50 that never read.
    let stalled: Vec<std::os::unix::net::UnixStream> = (0..50)
        .map(|_| std::os::unix::net::UnixStream::connect(&d.socket).expect("connect"))
        .collect();
    let name = Arc::new(Mutex::new(String::new()));
    let counts: Vec<Arc<(AtomicU64, AtomicU64)>> = (0..50).map(|_| Arc::default()).collect();
    for c in &counts {
        let stream = std::os::unix::net::UnixStream::connect(&d.socket).expect("connect");
        let (c, name) = (c.clone(), name.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if line.contains("\"kind\":\"skipped\"") {
                    c.1.fetch_add(1, Ordering::Relaxed);
                }
                let n = name.lock().expect("name").clone();
                if !n.is_empty() && line.contains("\"kind\":\"exec\"") && line.contains(&n) {
                    c.0.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    std::thread::sleep(Duration::from_millis(500));
    let clients = d.metric("minerwatch_tail_clients", &[]);
    let (c2, _) = d.usage();
    let t1 = Instant::now();
    let bin = dropped("/bin/true", &common::unique("stormexe"));
    *name.lock().expect("name") = format!("\"exe\":\"{}\"", bin.display());
    let mut storm = Reaped(
        Command::new(SPAWNSTORM)
            .arg(n.to_string())
            .arg("2")
            .arg(&bin)
            .stdout(Stdio::null())
            .spawn()
            .expect("storm"),
    );
    let mut rss_max = 0;
    while storm.0.try_wait().expect("storm").is_none() {
        rss_max = rss_max.max(d.usage().1);
        std::thread::sleep(Duration::from_millis(100));
    }
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until && counts.iter().any(|c| c.0.load(Ordering::Relaxed) < n) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (c3, rss_end) = d.usage();
    rss_max = rss_max.max(rss_end);
    let with_cores = (c3 - c2) as f64 / tck / t1.elapsed().as_secs_f64();
    let got: Vec<u64> = counts.iter().map(|c| c.0.load(Ordering::Relaxed)).collect();
    let skipped: u64 = counts.iter().map(|c| c.1.load(Ordering::Relaxed)).sum();
    let tail_skipped = d.metric("minerwatch_tail_skipped_total", &[]);
    eprintln!(
        "tail clients: {clients} connected; storm of {n} execs: daemon {:.1}% of a core alone, {:.1}% with 100 clients; RSS {} KiB alone, max {} KiB with clients; readers got min {} max {} of {n}, {skipped} skip notices to readers; {tail_skipped} messages skipped for stalled clients",
        alone_cores * 100.0,
        with_cores * 100.0,
        rss_alone,
        rss_max,
        got.iter().min().copied().unwrap_or(0),
        got.iter().max().copied().unwrap_or(0),
    );
    drop(stalled);
    assert_eq!(clients, 100.0, "all 100 clients admitted");
    assert!(
        got.iter().all(|&g| g == n),
        "every reader got every exec: {got:?}"
    );
    assert_eq!(skipped, 0, "readers that keep up are never skipped");
    assert!(
        tail_skipped > 0.0,
        "the stalled clients were skipped, not waited for"
    );
    assert!(rss_max < 128 * 1024, "RSS {rss_max} KiB");
    assert!(
        with_cores < 1.0,
        "the daemon kept below one core: {with_cores:.2}"
    );
    let _ = d.stop();
}

// ---------------------------------------------------------------------------
// Process-table pressure

#[test]
fn process_table_pressure_stays_within_the_cap_counts_evictions_and_still_flags_a_miner() {
    let pool = Pool::start();
    let cap = 4096;
    let cfg = format!(
        "[detector]\nextra_pool_ports = [{}]\nmax_processes = {cap}\n[response]\nfootholds = false\n",
        pool.port
    );
    let d = Daemon::start(&cfg, &[]);
    let (_, rss0) = d.usage();
    // 5,000 live processes.
    let live_bin = dropped("/bin/sleep", "idle-sleeper");
    let script = format!(
        "for i in $(seq 5000); do {} 600 & done; wait",
        live_bin.display()
    );
    let sleepers = Reaped(
        Command::new("/bin/sh")
            .arg("-c")
            .arg(&script)
            .process_group(0)
            .spawn()
            .expect("sleepers"),
    );
    let pgid = sleepers.0.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(60);
    while pids_running(&live_bin).len() < 5000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let live = pids_running(&live_bin).len();
    // 100,000 short-lived processes, a miner among them.
    let mut storm = Reaped(
        Command::new(FORKSTORM)
            .arg("100000")
            .stdout(Stdio::null())
            .spawn()
            .expect("forkstorm"),
    );
    std::thread::sleep(Duration::from_secs(3));
    let bin = dropped(MINER, "kinsing");
    let m = miner(&bin, &pool.addr(), "xmrig", "30", &[]);
    let alert = alert_for(
        &d,
        m.0.id(),
        Some("pool_protocol_unverified"),
        Duration::from_secs(20),
    );
    let mut tracked_max = 0.0f64;
    let mut rss_max = 0;
    let t0 = Instant::now();
    while storm.0.try_wait().expect("storm").is_none() {
        tracked_max = tracked_max.max(d.metric("minerwatch_tracked_processes", &[]));
        rss_max = rss_max.max(d.usage().1);
        std::thread::sleep(Duration::from_millis(500));
    }
    let storm_secs = t0.elapsed().as_secs_f64() + 3.0;
    std::thread::sleep(Duration::from_millis(1500));
    let s = d.scrape();
    let ev = |r: &str| {
        common::daemon::metric_value(&s, "minerwatch_process_evictions_total", &[("reason", r)])
    };
    let (expired, capacity, replaced) = (ev("expired"), ev("capacity"), ev("replaced"));
    let lost = common::daemon::metric_value(&s, "minerwatch_events_lost_total", &[]);
    let forks = common::daemon::metric_value(&s, "minerwatch_events_total", &[("kind", "fork")]);
    eprintln!(
        "table pressure: {live} live sleepers + 100000 forks in ~{storm_secs:.0} s; tracked max {tracked_max} (cap {cap}); evictions expired {expired} capacity {capacity} replaced {replaced}; {forks} fork events, {lost} lost; RSS {rss0} KiB → max {rss_max} KiB; miner: {:?}",
        alert
            .as_ref()
            .map(|a| (a["rule"].clone(), a["latency_ms"].clone()))
    );
    // SAFETY: our own process group of sleepers.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    drop(sleepers);
    assert!(live >= 5000, "5000 live processes ({live})");
    assert!(
        tracked_max <= cap as f64,
        "tracked {tracked_max} > cap {cap}"
    );
    assert!(capacity > 0.0, "capacity evictions counted");
    assert!(
        rss_max.saturating_sub(rss0) < 64 * 1024,
        "RSS grew {} KiB",
        rss_max - rss0
    );
    let alert = alert.expect("the miner among them flagged");
    assert!(
        alert["latency_ms"].as_u64().expect("latency") <= BUDGET_PROTOCOL_MS,
        "{alert}"
    );
    drop(m);
    let _ = d.stop();
}

// ---------------------------------------------------------------------------
// Config reload

#[test]
fn sighup_rejects_a_bad_config_keeps_the_old_one_and_applies_a_good_one() {
    let p1 = Pool::start();
    let p2 = Pool::start();
    let good1 = format!(
        "[detector]\nextra_pool_ports = [{}]\n[response]\nfootholds = false\n",
        p1.port
    );
    let mut d = Daemon::start(&good1, &[]);
    let cfg_path = d.dir.join("minerwatch.toml");

    // A bad file: the same one-line error as at start, and the daemon stays.
    let bad = format!("{good1}[tail]\nclient_queue = 0\n");
    std::fs::write(&cfg_path, &bad).expect("write");
    let start_err = Command::new(common::daemon::minerwatch_bin())
        .args(["run", "--config"])
        .arg(&cfg_path)
        .output()
        .expect("run");
    let start_err = String::from_utf8_lossy(&start_err.stderr).trim().to_owned();
    let message = start_err
        .strip_prefix("minerwatch: ")
        .unwrap_or(&start_err)
        .to_owned();
    assert!(message.starts_with("config error:"), "{start_err}");
    d.signal(libc::SIGHUP);
    let until = Instant::now() + Duration::from_secs(5);
    while !d.log().contains("config reload rejected") && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = d.log();
    let line = log
        .lines()
        .find(|l| l.contains("config reload rejected"))
        .unwrap_or_else(|| panic!("no rejection logged:\n{log}"));
    assert!(
        line.ends_with(&message),
        "same message as at start:\n{line}\n{message}"
    );
    assert!(d.alive(), "the daemon did not exit");
    assert_eq!(
        d.metric("minerwatch_config_reloads_total", &[("result", "rejected")]),
        1.0
    );
    // The old config is in force: TLS to p1 (only an extra pool port) alerts.
    let bin = dropped(MINER, "kswapd9");
    let m1 = miner(&bin, &p1.addr(), "tls", "20", &[]);
    let a1 = alert_for(
        &d,
        m1.0.id(),
        Some("pool_port_busy_unverified"),
        Duration::from_secs(15),
    );
    assert!(a1.is_some(), "old config still in force");
    drop(m1);

    // A good file that adds p2 and changes two keys that need a restart.
    let good2 = format!(
        "[sensor]\ndrain_interval_ms = 50\n[detector]\nextra_pool_ports = [{}, {}]\n[response]\nfootholds = false\n[tail]\nclient_queue = 2048\n",
        p1.port, p2.port
    );
    std::fs::write(&cfg_path, &good2).expect("write");
    d.signal(libc::SIGHUP);
    let until = Instant::now() + Duration::from_secs(5);
    while !d.log().contains("config reload: applied") && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = d.log();
    assert!(
        log.contains("config reload: applied detector.extra_pool_ports"),
        "{log}"
    );
    let restart_line = log
        .lines()
        .find(|l| l.contains("only on restart"))
        .unwrap_or_else(|| panic!("restart-only keys not logged:\n{log}"));
    assert!(
        restart_line.contains("sensor.drain_interval_ms")
            && restart_line.contains("tail.client_queue"),
        "{restart_line}"
    );
    assert_eq!(
        d.metric("minerwatch_config_reloads_total", &[("result", "ok")]),
        1.0
    );
    // The tail still serves.
    assert!(std::os::unix::net::UnixStream::connect(&d.socket).is_ok());
    let m2 = miner(&bin, &p2.addr(), "tls", "20", &[]);
    let a2 = alert_for(
        &d,
        m2.0.id(),
        Some("pool_port_busy_unverified"),
        Duration::from_secs(15),
    );
    eprintln!(
        "reload: rejected with {message:?}; after the good reload a TLS miner on the new port alerted after {:?} ms",
        a2.as_ref().map(|a| a["latency_ms"].clone())
    );
    assert!(a2.is_some(), "new pool port in force after the reload");
    drop(m2);
    let _ = d.stop();
}
