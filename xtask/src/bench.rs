//! `cargo xtask bench`: what the agent costs and how fast it detects, each
//! measured side by side in one run and printed as a markdown table.
//!
//! Wall-clock throughput on these VMs swings widely, so cost is also
//! measured as CPU time: eBPF program run time (`kernel.bpf_stats_enabled`,
//! `run_time_ns` in the daemon's program fdinfo) plus the daemon's own CPU,
//! divided by the workload's CPU (`RUSAGE_CHILDREN`). Wall-clock ratios are
//! reported beside it as the median of interleaved on/off pairs.

use std::{
    fs,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use minerwatch_harness::{Daemon, Options};

use crate::util::{self, run};

struct Bins {
    dir: PathBuf,
}

impl Bins {
    fn get(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn children_cpu_s() -> f64 {
    // SAFETY: getrusage writes into the struct we pass.
    let mut ru: libc_rusage::Rusage = unsafe { std::mem::zeroed() };
    unsafe { libc_rusage::getrusage(-1, &mut ru) };
    ru.utime.secs() + ru.stime.secs()
}

/// A tiny FFI shim so xtask needs no libc dependency.
mod libc_rusage {
    #[repr(C)]
    pub struct Timeval {
        pub sec: i64,
        pub usec: i64,
    }
    impl Timeval {
        pub fn secs(&self) -> f64 {
            self.sec as f64 + self.usec as f64 / 1e6
        }
    }
    #[repr(C)]
    pub struct Rusage {
        pub utime: Timeval,
        pub stime: Timeval,
        pub rest: [i64; 14],
    }
    unsafe extern "C" {
        pub fn getrusage(who: i32, usage: *mut Rusage) -> i32;
        pub fn wait4(pid: i32, status: *mut i32, options: i32, usage: *mut Rusage) -> i32;
    }
}

fn clk_tck() -> f64 {
    100.0
}

/// utime + stime of a process, seconds.
fn proc_cpu_s(pid: u32) -> f64 {
    let Ok(s) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some(i) = s.rfind(')') else { return 0.0 };
    let f: Vec<&str> = s[i + 1..].split_whitespace().collect();
    let t = |k: usize| f.get(k).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / clk_tck()
}

fn rss_mib(pid: u32) -> f64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

/// (`run_time_ns`, `run_cnt`) of one of the daemon's programs, by id.
fn bpf_prog_stats(pid: u32, prog_id: u32) -> (u64, u64) {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return (0, 0);
    };
    for fd in fds.flatten() {
        let Ok(info) = fs::read_to_string(fd.path()) else {
            continue;
        };
        let field = |k: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if field("prog_id:") == Some(u64::from(prog_id)) {
            return (
                field("run_time_ns:").unwrap_or(0),
                field("run_cnt:").unwrap_or(0),
            );
        }
    }
    (0, 0)
}

/// Sum of `run_time_ns` over the daemon's eBPF program fds.
fn bpf_run_ns(pid: u32) -> u64 {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return 0;
    };
    let mut total = 0;
    for fd in fds.flatten() {
        let Ok(info) = fs::read_to_string(fd.path()) else {
            continue;
        };
        if !info.contains("prog_type") {
            continue;
        }
        total += info
            .lines()
            .find_map(|l| l.strip_prefix("run_time_ns:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

/// The daemon for a measurement: the shared harness (`tests/harness`),
/// logging only warnings, stderr discarded.
fn start_daemon(bin: &Path, extra: &[&str]) -> anyhow::Result<Daemon> {
    start_daemon_with(bin, None, extra)
}

/// With a config file of `config` (TOML text), if given. The log keeps the
/// attach lines, which name each program's id (per-program cost).
fn start_daemon_with(bin: &Path, config: Option<&str>, extra: &[&str]) -> anyhow::Result<Daemon> {
    Daemon::start(&Options {
        tag: "mw-bench",
        config,
        extra,
        log_level: "warn,minerwatch::daemon=info",
        keep_log: true,
        ready_timeout: Duration::from_secs(20),
        ..Options::new(bin)
    })
    .map_err(|e| anyhow::anyhow!("minerwatch did not become ready: {e}"))
}

/// The kernel id of an attached program (from the daemon's log).
fn prog_id(d: &Daemon, program: &str) -> Option<u32> {
    let log = d.log();
    let prefix = format!("attached {program} (");
    log.lines().find_map(|l| {
        let rest = &l[l.find(&prefix)? + prefix.len()..];
        rest.split("prog id ")
            .nth(1)?
            .trim_end_matches(')')
            .parse()
            .ok()
    })
}

/// A counter family of the daemon's /metrics summed over labels matching
/// `label`.
fn counter(d: &Daemon, family: &str, label: Option<&str>) -> f64 {
    let Some((_, body)) = d.get("/metrics") else {
        return f64::NAN;
    };
    body.lines()
        .filter(|l| {
            l.starts_with(family)
                && (l[family.len()..].starts_with('{') || l[family.len()..].starts_with(' '))
        })
        .filter(|l| label.is_none_or(|lab| l.contains(lab)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Run a workload binary that prints its rate; return (rate, its CPU s).
fn workload(bin: &Path, args: &[&str]) -> anyhow::Result<(f64, f64)> {
    let before = children_cpu_s();
    let out = Command::new(bin)
        .args(args)
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    let cpu = children_cpu_s() - before;
    let rate = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse::<f64>()
        .unwrap_or(f64::NAN);
    Ok((rate, cpu))
}

struct Row(String, String, String);

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Only {
    Idle,
    Switch,
    Network,
    Storms,
}

pub fn bench(quick: bool, only: Option<Only>, baseline: Option<&Path>) -> anyhow::Result<()> {
    if !util::is_root() {
        bail!("cargo xtask bench loads eBPF programs: run it as root");
    }
    run(Command::new("cargo").current_dir(util::root()).args([
        "build",
        "--release",
        "-p",
        "miner-user",
        "-p",
        "minerwatch-tests",
        "--bins",
    ]))?;
    let bins = Bins {
        dir: util::target_dir().join("release"),
    };
    let mw = bins.get("minerwatch");
    let stats_before =
        fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").unwrap_or_else(|_| "0".into());
    let _ = fs::write("/proc/sys/kernel/bpf_stats_enabled", "1");
    let pairs = if quick { 3 } else { 5 };
    let result = match only {
        None => run_all(&bins, &mw, quick, baseline),
        Some(Only::Idle) => idle_rows(&bins, &mw, quick),
        Some(Only::Switch) => context_switch_rows(&bins, &mw, pairs, quick),
        Some(Only::Network) => network_rows(&bins, &mw, pairs),
        Some(Only::Storms) => storm_rows(&bins, &mw, pairs, storm_size(quick), baseline),
    };
    let _ = fs::write("/proc/sys/kernel/bpf_stats_enabled", stats_before.trim());
    let rows = result?;
    println!("\n| measurement | result | budget |\n|---|---|---|");
    for Row(a, b, c) in rows {
        println!("| {a} | {b} | {c} |");
    }
    println!(
        "\nReproduce: `cargo xtask bench` (as root; {}).",
        if quick { "--quick run" } else { "full run" }
    );
    Ok(())
}

fn storm_size(quick: bool) -> u32 {
    if quick { 10_000 } else { 20_000 }
}

fn run_all(
    bins: &Bins,
    mw: &Path,
    quick: bool,
    baseline: Option<&Path>,
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let pairs = if quick { 3 } else { 5 };

    // Idle before and after a storm, on one daemon.
    rows.extend(idle_rows(bins, mw, quick)?);

    rows.extend(context_switch_rows(bins, mw, pairs, quick)?);
    rows.extend(network_rows(bins, mw, pairs)?);

    rows.extend(storm_rows(bins, mw, pairs, storm_size(quick), baseline)?);

    // Pipeline ceiling from a recording.
    eprintln!("bench: pipeline ceiling (replay)");
    let rec = std::env::temp_dir().join("mw-bench-recording.jsonl");
    let events = recording(bins, "mix", if quick { 200_000 } else { 1_000_000 }, &rec)?;
    let mut rates = Vec::new();
    for _ in 0..3 {
        let t0 = Instant::now();
        let out = Command::new(mw)
            .arg("replay")
            .arg(&rec)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if !out.success() {
            bail!("replay failed");
        }
        rates.push(events as f64 / t0.elapsed().as_secs_f64());
    }
    let _ = fs::remove_file(&rec);
    rows.push(Row(
        format!("pipeline ceiling: JSONL parse + detector, one core ({events} events)"),
        format!("{:.0} events/s (median of 3)", median(&mut rates)),
        "≥ 200k events/s".into(),
    ));

    // Memory per tracked process: replay N live processes, compare peak RSS.
    let mut rss = Vec::new();
    for n in [2_000usize, 30_000] {
        let rec = std::env::temp_dir().join(format!("mw-bench-live-{n}.jsonl"));
        recording(bins, "live", n, &rec)?;
        let (ok, kib) = run_maxrss_kib(
            Command::new(mw)
                .arg("replay")
                .arg(&rec)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )?;
        let _ = fs::remove_file(&rec);
        if !ok {
            bail!("replay failed");
        }
        rss.push((n, kib));
    }
    let per = (rss[1].1 - rss[0].1) as f64 * 1024.0 / (rss[1].0 - rss[0].0) as f64;
    rows.push(Row(
        "memory per tracked process (replay, peak RSS 2k vs 30k live processes)".into(),
        format!("{per:.0} bytes ({} KiB vs {} KiB)", rss[0].1, rss[1].1),
        "-".into(),
    ));

    // Hashing speed of provenance (SHA-256 + MD5 in one pass), 64 MiB file.
    let big = std::env::temp_dir().join("mw-bench-hash.bin");
    {
        let mut f = fs::File::create(&big)?;
        let chunk: Vec<u8> = (0..1 << 20)
            .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        for _ in 0..64 {
            f.write_all(&chunk)?;
        }
    }
    let mut speeds = Vec::new();
    for _ in 0..3 {
        let t0 = Instant::now();
        let _ = Command::new(mw)
            .arg("check")
            .arg(&big)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        speeds.push(64.0 / t0.elapsed().as_secs_f64());
    }
    let _ = fs::remove_file(&big);
    let mib_s = median(&mut speeds);
    rows.push(Row(
        "provenance hashing, `minerwatch check` of a 64 MiB file (process start included)".into(),
        format!(
            "{mib_s:.0} MiB/s = {:.2} ms per MiB (median of 3)",
            1000.0 / mib_s
        ),
        "-".into(),
    ));

    // Enforce mode: verdict to dead process tree.
    eprintln!("bench: enforce-mode kill latency");
    let kills = kill_latencies(bins, mw, if quick { 5 } else { 10 })?;
    let mut k = kills.clone();
    rows.push(Row(
        format!(
            "enforce: critical verdict → miner tree (holder + 2 workers) dead, {} runs",
            kills.len()
        ),
        format!("median {:.1} ms, max {:.1} ms", median(&mut k), max(&kills)),
        "< 1 s".into(),
    ));

    // Detection latency of the simulated miner.
    let runs = if quick { 5 } else { 10 };
    for (label, proto, port_is_pool) in [
        ("pool protocol visible (XMRig login)", "xmrig", false),
        ("TLS to a pool port (no payload evidence)", "tls", true),
    ] {
        eprintln!("bench: detection latency, {label}");
        let mut lat = Vec::new();
        let mut misses = 0;
        for i in 0..runs {
            match detect_once(bins, mw, proto, port_is_pool, i)? {
                Some(ms) => lat.push(ms),
                None => misses += 1,
            }
        }
        let mx = max(&lat);
        rows.push(Row(
            format!("detection latency from exec, {label}"),
            format!(
                "median {:.0} ms, max {mx:.0} ms over {} runs{}",
                median(&mut lat),
                runs,
                if misses > 0 {
                    format!(", {misses} MISSED")
                } else {
                    String::new()
                }
            ),
            if proto == "xmrig" {
                "median ≤ 2 s, max ≤ 30 s".into()
            } else {
                "≤ 5 s, max ≤ 30 s".into()
            },
        ));
    }
    Ok(rows)
}

/// Context switches: interleaved triples (no agent, the agent, the agent
/// without its fpu program), with the fpu program's own run time per call
/// from bpf_stats.
fn context_switch_rows(
    bins: &Bins,
    mw: &Path,
    pairs: usize,
    quick: bool,
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let rounds = if quick { "100000" } else { "300000" };
    let no_fpu = "[sensor]\nfpu_fingerprint = false\n";
    let mut on = Vec::new();
    let mut off = Vec::new();
    let mut cost = Vec::new();
    let mut cost_no_fpu = Vec::new();
    let mut fpu_ns = Vec::new();
    let mut fpu_calls = 0u64;
    let mut fpu_share = Vec::new();
    for i in 0..pairs {
        eprintln!("bench: pipe ping-pong round {}/{pairs}", i + 1);
        let (r_off, _) = workload(&bins.get("pingpong"), &[rounds])?;
        let d = start_daemon(mw, &[])?;
        let fpu_id = prog_id(&d, "x86_fpu_regs_deactivated_btf")
            .or_else(|| prog_id(&d, "x86_fpu_regs_deactivated"))
            .context("the fpu program did not attach (see the daemon log)")?;
        let (c0, b0) = (proc_cpu_s(d.pid()), bpf_run_ns(d.pid()));
        let (f0, n0) = bpf_prog_stats(d.pid(), fpu_id);
        let (r_on, wcpu) = workload(&bins.get("pingpong"), &[rounds])?;
        let (f1, n1) = bpf_prog_stats(d.pid(), fpu_id);
        let agent = (proc_cpu_s(d.pid()) - c0) + (bpf_run_ns(d.pid()) - b0) as f64 / 1e9;
        d.stop();
        let d = start_daemon_with(mw, Some(no_fpu), &[])?;
        let (c0, b0) = (proc_cpu_s(d.pid()), bpf_run_ns(d.pid()));
        let (_, wcpu2) = workload(&bins.get("pingpong"), &[rounds])?;
        let agent2 = (proc_cpu_s(d.pid()) - c0) + (bpf_run_ns(d.pid()) - b0) as f64 / 1e9;
        d.stop();
        off.push(r_off);
        on.push(r_on);
        cost.push(agent / wcpu * 100.0);
        cost_no_fpu.push(agent2 / wcpu2 * 100.0);
        if n1 > n0 {
            fpu_ns.push((f1 - f0) as f64 / (n1 - n0) as f64);
            fpu_calls += n1 - n0;
            fpu_share.push((f1 - f0) as f64 / 1e9 / wcpu * 100.0);
        }
    }
    let slow: Vec<f64> = on
        .iter()
        .zip(&off)
        .map(|(a, b)| (1.0 - a / b) * 100.0)
        .collect();
    let (mut s2, mut c2) = (slow.clone(), cost.clone());
    rows.push(Row(
        "context-switch load (pipe ping-pong), agent CPU / workload CPU".into(),
        format!(
            "{:.2}% (median of {pairs}); wall-clock slowdown median {:.1}% (spread {:.1}…{:.1}%)",
            median(&mut c2),
            median(&mut s2),
            min(&slow),
            max(&slow)
        ),
        "≤ 1%".into(),
    ));
    let (mut c3, mut n3, mut f3) = (cost_no_fpu.clone(), fpu_ns.clone(), fpu_share.clone());
    rows.push(Row(
        "fpu hook (x86_fpu_regs_deactivated, RandomX fingerprint) on the context-switch load".into(),
        if fpu_ns.is_empty() {
            "no calls counted".into()
        } else {
            format!(
                "{:.0} ns per call (median of {pairs}, {fpu_calls} calls), {:.2}% of the workload's CPU; agent CPU / workload CPU {:.2}% with it, {:.2}% without (sensor.fpu_fingerprint = false)",
                median(&mut n3),
                median(&mut f3),
                median(&mut cost.clone()),
                median(&mut c3)
            )
        },
        "part of the 1%".into(),
    ));

    Ok(rows)
}

/// Every program the daemon attached, by name, with its kernel id (from the
/// attach lines of its log).
fn prog_ids(d: &Daemon) -> Vec<(String, u32)> {
    d.log()
        .lines()
        .filter_map(|l| {
            let rest = &l[l.find("attached ")? + "attached ".len()..];
            let (name, tail) = rest.split_once(" (")?;
            let id = tail
                .split("prog id ")
                .nth(1)?
                .trim_end_matches(')')
                .parse()
                .ok()?;
            Some((name.to_owned(), id))
        })
        .collect()
}

/// `run_time_ns` and `run_cnt` summed per program over several runs.
#[derive(Default)]
struct ProgCost(std::collections::BTreeMap<String, (u64, u64)>);

impl ProgCost {
    fn snapshot(d: &Daemon) -> Vec<(String, u64, u64)> {
        prog_ids(d)
            .into_iter()
            .map(|(name, id)| {
                let (ns, n) = bpf_prog_stats(d.pid(), id);
                (name, ns, n)
            })
            .collect()
    }

    fn add(&mut self, before: &[(String, u64, u64)], after: &[(String, u64, u64)]) {
        for (name, ns, n) in after {
            let (ns0, n0) = before
                .iter()
                .find(|(b, ..)| b == name)
                .map_or((0, 0), |(_, a, b)| (*a, *b));
            let e = self.0.entry(name.clone()).or_default();
            e.0 += ns.saturating_sub(ns0);
            e.1 += n.saturating_sub(n0);
        }
    }

    /// "program 123 ns × 45k calls, …" for the programs that ran.
    fn describe(&self) -> String {
        let mut parts: Vec<(String, u64, u64)> = self
            .0
            .iter()
            .filter(|(_, (_, n))| *n > 0)
            .map(|(k, (ns, n))| (k.clone(), *ns, *n))
            .collect();
        parts.sort_by_key(|p| std::cmp::Reverse(p.1));
        parts
            .iter()
            .map(|(k, ns, n)| format!("{k} {:.0} ns × {n}", *ns as f64 / *n as f64))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One daemon: idle CPU and RSS before any load; an exec storm; then the
/// idle CPU of the 20 s after it and how long RSS takes to come back within
/// 10 % of the pre-storm value (60 s at most).
fn idle_rows(bins: &Bins, mw: &Path, quick: bool) -> anyhow::Result<Vec<Row>> {
    let idle_secs = if quick { 10 } else { 30 };
    eprintln!("bench: idle agent for {idle_secs} s, a 20,000-exec storm, {idle_secs} s after");
    let d = start_daemon(mw, &[])?;
    std::thread::sleep(Duration::from_secs(3));
    let (c0, b0) = (proc_cpu_s(d.pid()), bpf_run_ns(d.pid()));
    std::thread::sleep(Duration::from_secs(idle_secs));
    let idle_cpu = (proc_cpu_s(d.pid()) - c0) / idle_secs as f64 * 100.0;
    let idle_bpf = (bpf_run_ns(d.pid()) - b0) as f64 / 1e9 / idle_secs as f64 * 100.0;
    let rss0 = rss_mib(d.pid());
    workload(&bins.get("spawnstorm"), &["20000", "2"])?;
    let peak = rss_mib(d.pid());
    let t_end = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let (c1, b1) = (proc_cpu_s(d.pid()), bpf_run_ns(d.pid()));
    std::thread::sleep(Duration::from_secs(idle_secs));
    let after_cpu = (proc_cpu_s(d.pid()) - c1) / idle_secs as f64 * 100.0;
    let after_bpf = (bpf_run_ns(d.pid()) - b1) as f64 / 1e9 / idle_secs as f64 * 100.0;
    let mut back = None;
    let mut rss1 = rss_mib(d.pid());
    while t_end.elapsed() < Duration::from_secs(60) {
        rss1 = rss_mib(d.pid());
        if rss1 <= rss0 * 1.1 {
            back = Some(t_end.elapsed().as_secs_f64());
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    d.stop();
    Ok(vec![
        Row(
            "idle agent CPU, before / after a 20,000-exec storm (daemon; eBPF on the idle machine)"
                .into(),
            format!(
                "{idle_cpu:.2}% / {after_cpu:.2}% of a core; eBPF {idle_bpf:.2}% / {after_bpf:.2}% ({idle_secs} s each)"
            ),
            "≤ 0.2% of a core, before and after".into(),
        ),
        Row(
            "idle agent RSS, before / peak / after the storm".into(),
            format!(
                "{rss0:.1} / {peak:.1} / {rss1:.1} MiB; {}",
                match back {
                    Some(s) => format!("within 10% of before {s:.0} s after the storm"),
                    None => "NOT back within 10% in 60 s".into(),
                }
            ),
            "≤ 20 MiB; back within 10% in 60 s".into(),
        ),
    ])
}

/// Falco's published cost: ≈ 8.7 % of a core per 1,000 events/s.
const FALCO_PCT_PER_K: f64 = 8.7;

/// The storms, each as interleaved pairs (without the agent, then with a
/// fresh agent): CPU-time ratios, wall-clock ratios with their spread,
/// events seen and lost, and the eBPF programs' cost per call.
/// One storm under a fresh agent `mw`: what it cost and what it saw.
struct Pass {
    agent_s: f64,
    bpf_s: f64,
    workload_s: f64,
    secs: f64,
    rate: f64,
    seen: f64,
    all: f64,
    lost: f64,
}

impl Pass {
    /// Agent CPU in % of a core per 1,000 events/s of `events` over the run.
    fn per_k(&self, events: f64) -> f64 {
        let core_pct = self.agent_s / self.secs * 100.0;
        core_pct / (events / self.secs / 1000.0).max(1e-3)
    }
}

fn storm_pass(
    mw: &Path,
    bin: &Path,
    args: &[&str],
    kind: &str,
    cost: &mut ProgCost,
) -> anyhow::Result<Pass> {
    let d = start_daemon(mw, &[])?;
    std::thread::sleep(Duration::from_millis(500));
    let label = format!("kind=\"{kind}\"");
    let seen0 = counter(&d, "minerwatch_events_total", Some(&label));
    let all0 = counter(&d, "minerwatch_events_total", None);
    let lost0 = counter(&d, "minerwatch_events_lost_total", None);
    let (c0, b0) = (proc_cpu_s(d.pid()), bpf_run_ns(d.pid()));
    let p0 = ProgCost::snapshot(&d);
    let t0 = Instant::now();
    let (rate, workload_s) = workload(bin, args)?;
    let secs = t0.elapsed().as_secs_f64();
    // The daemon's share includes draining what the storm left.
    std::thread::sleep(Duration::from_millis(1500));
    let daemon = proc_cpu_s(d.pid()) - c0;
    let bpf_s = (bpf_run_ns(d.pid()) - b0) as f64 / 1e9;
    cost.add(&p0, &ProgCost::snapshot(&d));
    let pass = Pass {
        agent_s: daemon + bpf_s,
        bpf_s,
        workload_s,
        secs,
        rate,
        seen: counter(&d, "minerwatch_events_total", Some(&label)) - seen0,
        all: counter(&d, "minerwatch_events_total", None) - all0,
        lost: counter(&d, "minerwatch_events_lost_total", None) - lost0,
    };
    d.stop();
    Ok(pass)
}

/// With `baseline`, another minerwatch binary (an earlier build) runs the
/// same storms in the same pairs, right after this one: a before/after
/// measured side by side on a noisy machine.
fn storm_rows(
    bins: &Bins,
    mw: &Path,
    pairs: usize,
    n: u32,
    baseline: Option<&Path>,
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let count = n.to_string();
    for (name, bin, args, kind, per_k_budget) in [
        (
            "exec storm (posix_spawn /bin/true, 2 in flight)",
            "spawnstorm",
            vec![count.clone(), "2".into()],
            "exec",
            0.5,
        ),
        (
            "fork storm (fork + exit)",
            "forkstorm",
            vec![count.clone()],
            "fork",
            0.3,
        ),
        (
            "loopback connect storm",
            "connstorm",
            vec![count.clone()],
            "connect",
            f64::NAN,
        ),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut wall = Vec::new();
        let mut of_workload = Vec::new();
        let mut bpf_of_workload = Vec::new();
        let mut per_k = Vec::new();
        let mut per_k_all = Vec::new();
        let (mut seen, mut lost, mut rate_on) = (0.0, 0.0, Vec::new());
        let mut cost = ProgCost::default();
        let mut base_of_workload = Vec::new();
        let mut base_per_k = Vec::new();
        let mut base_cost = ProgCost::default();
        for i in 0..pairs {
            eprintln!("bench: {name}, pair {}/{pairs}", i + 1);
            let (r_off, _) = workload(&bins.get(bin), &args)?;
            let p = storm_pass(mw, &bins.get(bin), &args, kind, &mut cost)?;
            lost += p.lost;
            seen += p.seen;
            wall.push((p.rate / r_off - 1.0) * 100.0);
            of_workload.push(p.agent_s / p.workload_s.max(1e-9) * 100.0);
            bpf_of_workload.push(p.bpf_s / p.workload_s.max(1e-9) * 100.0);
            per_k.push(p.per_k(p.seen));
            per_k_all.push(p.per_k(p.all));
            rate_on.push(p.rate);
            if let Some(b) = baseline {
                let p = storm_pass(b, &bins.get(bin), &args, kind, &mut base_cost)?;
                base_of_workload.push(p.agent_s / p.workload_s.max(1e-9) * 100.0);
                base_per_k.push(p.per_k(p.seen));
            }
        }
        if let Some(b) = baseline {
            let spread = |v: &[f64]| format!("{:.2}…{:.2}", min(v), max(v));
            let med = |v: &[f64]| median(&mut v.to_vec());
            rows.push(Row(
                format!("{name}: baseline {} beside it, same pairs", b.display()),
                format!(
                    "agent CPU / storm CPU {:.2}% (spread {}), per 1k {kind}s/s {:.3}% of a core (spread {}); eBPF ns per call: {}",
                    med(&base_of_workload),
                    spread(&base_of_workload),
                    med(&base_per_k),
                    spread(&base_per_k),
                    base_cost.describe()
                ),
                "-".into(),
            ));
        }
        let spread = |v: &[f64]| format!("{:.2}…{:.2}", min(v), max(v));
        let med = |v: &[f64]| median(&mut v.to_vec());
        rows.push(Row(
            format!("{name}: agent CPU / storm CPU (daemon + eBPF)"),
            format!(
                "{:.2}% (median of {pairs}, spread {}); eBPF alone {:.2}%",
                med(&of_workload),
                spread(&of_workload),
                med(&bpf_of_workload)
            ),
            if kind == "connect" {
                "eBPF ≤ 2%".into()
            } else {
                "≤ 2%".into()
            },
        ));
        rows.push(Row(
            format!("{name}: agent CPU per 1k {kind}s/s"),
            format!(
                "{:.3}% of a core (median, spread {}) at {:.0} {kind}s/s",
                med(&per_k),
                spread(&per_k),
                med(&rate_on)
            ),
            if per_k_budget.is_nan() {
                "-".into()
            } else {
                format!("≤ {per_k_budget}% of a core")
            },
        ));
        rows.push(Row(
            format!("{name}: wall-clock rate with agent / without"),
            format!(
                "{:+.1}% (median, spread {}%); {kind} events seen {seen:.0} of {}, lost {lost:.0}",
                med(&wall),
                spread(&wall),
                u64::from(n) * pairs as u64
            ),
            "0 lost".into(),
        ));
        rows.push(Row(
            format!("{name}: eBPF ns per call (bpf_stats)"),
            cost.describe(),
            "-".into(),
        ));
        if kind == "exec" {
            let ours = med(&per_k_all);
            rows.push(Row(
                "anchor: Falco's published ≈ 8.7% of a core per 1,000 events/s".into(),
                format!(
                    "ours {ours:.3}% of a core per 1,000 kernel events/s (exec + fork + exit of the exec storm) = {:.1}× less",
                    FALCO_PCT_PER_K / ours
                ),
                "-".into(),
            ));
        }
    }
    Ok(rows)
}

/// The network programs' cost: a bulk loopback transfer (1 GiB from a
/// connecting socket to an accepted one, then 1 GiB back) in interleaved
/// pairs without and with the agent, and each network program's run time
/// per call (bpf_stats) on that transfer and on a short connect storm.
fn network_rows(bins: &Bins, mw: &Path, pairs: usize) -> anyhow::Result<Vec<Row>> {
    const PROGRAMS: [&str; 6] = [
        "cgroup_skb_egress",
        "connect4",
        "sys_exit_connect",
        "inet_sock_set_state",
        "inet_csk_listen_start",
        "sys_enter_listen",
    ];
    let mib = "1024";
    let mut on = Vec::new();
    let mut off = Vec::new();
    let mut cost = Vec::new();
    let mut egress = Vec::new();
    let mut per_call: Vec<(&str, u64, u64)> = PROGRAMS.iter().map(|p| (*p, 0, 0)).collect();
    let mut storm_cost = Vec::new();
    for i in 0..pairs {
        eprintln!("bench: bulk loopback transfer round {}/{pairs}", i + 1);
        let (r_off, _) = workload(&bins.get("bulkxfer"), &[mib])?;
        let d = start_daemon(mw, &[])?;
        let ids: Vec<Option<u32>> = PROGRAMS.iter().map(|p| prog_id(&d, p)).collect();
        let snap = |ids: &[Option<u32>]| -> Vec<(u64, u64)> {
            ids.iter()
                .map(|id| id.map_or((0, 0), |id| bpf_prog_stats(d.pid(), id)))
                .collect()
        };
        let (c0, b0, s0) = (proc_cpu_s(d.pid()), bpf_run_ns(d.pid()), snap(&ids));
        let (r_on, wcpu) = workload(&bins.get("bulkxfer"), &[mib])?;
        let (c1, b1, s1) = (proc_cpu_s(d.pid()), bpf_run_ns(d.pid()), snap(&ids));
        let (_, scpu) = workload(&bins.get("connstorm"), &["5000"])?;
        let (b2, s2) = (bpf_run_ns(d.pid()), snap(&ids));
        d.stop();
        let agent = (c1 - c0) + (b1 - b0) as f64 / 1e9;
        off.push(r_off);
        on.push(r_on);
        cost.push(agent / wcpu.max(1e-9) * 100.0);
        storm_cost.push((b2 - b1) as f64 / 1e9 / scpu.max(1e-9) * 100.0);
        let (e_ns, e_n) = (s1[0].0 - s0[0].0, s1[0].1 - s0[0].1);
        if e_n > 0 {
            egress.push((
                e_ns as f64 / e_n as f64,
                e_n,
                e_ns as f64 / 1e9 / wcpu * 100.0,
            ));
        }
        for (k, slot) in per_call.iter_mut().enumerate() {
            slot.1 += s2[k].0 - s0[k].0;
            slot.2 += s2[k].1 - s0[k].1;
        }
    }
    let ratio: Vec<f64> = on
        .iter()
        .zip(&off)
        .map(|(a, b)| (a / b - 1.0) * 100.0)
        .collect();
    let mut rows = vec![Row(
        "bulk loopback transfer (1 GiB each way; a connected and an accepted socket): agent CPU / workload CPU".into(),
        format!(
            "{:.2}% (median of {pairs}; daemon + eBPF); throughput with agent / without: median {:+.1}% (spread {:+.1}…{:+.1}%), {:.0} vs {:.0} MiB/s",
            median(&mut cost.clone()),
            median(&mut ratio.clone()),
            min(&ratio),
            max(&ratio),
            median(&mut on.clone()),
            median(&mut off.clone())
        ),
        "≤ 1%".into(),
    )];
    let mut e_ns: Vec<f64> = egress.iter().map(|e| e.0).collect();
    let mut e_share: Vec<f64> = egress.iter().map(|e| e.2).collect();
    rows.push(Row(
        "egress payload peek (cgroup_skb/egress) on the bulk transfer".into(),
        format!(
            "{:.0} ns per packet (median of {pairs}, {} packets per run), {:.3}% of the workload's CPU",
            median(&mut e_ns),
            egress.first().map_or(0, |e| e.1),
            median(&mut e_share)
        ),
        "part of the 1%".into(),
    ));
    let calls: Vec<String> = per_call
        .iter()
        .filter(|(_, _, n)| *n > 0)
        .map(|(p, ns, n)| format!("{p} {:.0} ns × {n}", *ns as f64 / *n as f64))
        .collect();
    rows.push(Row(
        "network programs per call (bulk transfers + 5k-connect storms, bpf_stats)".into(),
        format!(
            "{}; eBPF / workload CPU on the 5k-connect storm {:.1}% (median of {pairs})",
            calls.join(", "),
            median(&mut storm_cost)
        ),
        "connect storm ≤ 2%".into(),
    ));
    Ok(rows)
}

/// A synthetic recording written by `recording_gen` (the tests crate's
/// binary over minerwatch's own recording module); returns its events.
fn recording(bins: &Bins, mode: &str, count: usize, path: &Path) -> anyhow::Result<usize> {
    let out = Command::new(bins.get("recording_gen"))
        .arg(mode)
        .arg(count.to_string())
        .arg(path)
        .output()
        .context("running recording_gen")?;
    if !out.status.success() {
        bail!(
            "recording_gen {mode} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("recording_gen printed no count")
}

/// One enforcing daemon; each run a fresh miner with two forked workers;
/// the slowest kill's latency (kill start to death confirmed by pidfd; the
/// kill starts on the verdict, before any other response work).
fn kill_latencies(bins: &Bins, mw: &Path, runs: usize) -> anyhow::Result<Vec<f64>> {
    // One pool per run: the response blocks a killed miner's pool endpoint
    // for everyone, so the next run needs a fresh one.
    let mut pools = Vec::new();
    for _ in 0..runs {
        let mut pool = Command::new(bins.get("fake_pool"))
            .args(["--seconds", "300"])
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(pool.stdout.take().context("pool stdout")?).read_line(&mut line)?;
        let port: u16 = line.trim().parse().context("pool port")?;
        pools.push((pool, port));
    }
    let ports: Vec<String> = pools.iter().map(|(_, p)| p.to_string()).collect();
    let dir = std::env::temp_dir().join(format!(".mw-bench-kill-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    let cfg = dir.join("cfg.toml");
    fs::write(
        &cfg,
        format!(
            "[detector]\nextra_pool_ports = [{}]\n[response]\nquarantine_dir = \"{}\"\nfootholds = false\n",
            ports.join(", "),
            dir.join("q").display()
        ),
    )?;
    let d = start_daemon(
        mw,
        &["--enforce", "--config", cfg.to_str().unwrap_or_default()],
    )?;
    let mut out = Vec::new();
    for (i, (_, port)) in pools.iter().enumerate() {
        let miner = dir.join(format!("kworker-{i}"));
        fs::copy(bins.get("fake_miner"), &miner)?;
        let mut m = Command::new(&miner)
            .args([
                "--pool",
                &format!("127.0.0.1:{port}"),
                "--proto",
                "xmrig",
                "--workers",
                "2",
                "--seconds",
                "30",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            let text = fs::read_to_string(&d.alerts).unwrap_or_default();
            // Kill latency is reported in µs-resolution ms fields; the
            // slowest process of the tree is the tree's time to death.
            let kills: Vec<f64> = text
                .lines()
                .filter(|l| l.contains("\"action\":\"kill\"") && l.contains("\"result\":\"ok\""))
                .filter_map(latency_ms)
                .collect();
            if kills.len() >= 3 {
                out.push(kills.iter().copied().fold(0.0, f64::max));
                break;
            }
        }
        let _ = m.kill();
        let _ = m.wait();
        let _ = fs::write(&d.alerts, b"");
    }
    d.stop();
    for (mut p, _) in pools {
        let _ = p.kill();
        let _ = p.wait();
    }
    let _ = fs::remove_dir_all(&dir);
    Ok(out)
}

/// Peak RSS of one child, from wait4's rusage.
fn run_maxrss_kib(cmd: &mut Command) -> anyhow::Result<(bool, i64)> {
    let child = cmd.spawn()?;
    let mut status = 0i32;
    // SAFETY: zeroed rusage is valid; wait4 fills it for our own child.
    let mut ru: libc_rusage::Rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc_rusage::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    if rc < 0 {
        bail!("wait4 failed");
    }
    Ok((status == 0, ru.rest[0]))
}

/// The `latency_ms` field of an alert or action JSON line.
fn latency_ms(line: &str) -> Option<f64> {
    line.split("\"latency_ms\":")
        .nth(1)?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse::<f64>()
        .ok()
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// Start pool + daemon, exec the simulated miner from /tmp under a
/// kworker-like name, wait for its alert; return the alert's latency_ms.
fn detect_once(
    bins: &Bins,
    mw: &Path,
    proto: &str,
    pool_port: bool,
    i: usize,
) -> anyhow::Result<Option<f64>> {
    let mut pool = Command::new(bins.get("fake_pool"))
        .args(["--seconds", "40"])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(pool.stdout.take().context("pool stdout")?).read_line(&mut line)?;
    let port: u16 = line.trim().parse().context("pool port")?;
    let cfg = std::env::temp_dir().join(format!("mw-bench-{i}.toml"));
    fs::write(
        &cfg,
        if pool_port {
            format!("[detector]\nextra_pool_ports = [{port}]\n")
        } else {
            String::new()
        },
    )?;
    let d = start_daemon(mw, &["--config", cfg.to_str().unwrap_or_default()])?;
    let dir = std::env::temp_dir().join(format!(".mw-bench-drop-{i}"));
    fs::create_dir_all(&dir)?;
    let miner = dir.join("kworker-u8");
    fs::copy(bins.get("fake_miner"), &miner)?;
    let mut m = Command::new(&miner)
        .args([
            "--pool",
            &format!("127.0.0.1:{port}"),
            "--proto",
            proto,
            "--threads",
            "1",
            "--seconds",
            "25",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = m.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut found = None;
    while Instant::now() < deadline && found.is_none() {
        std::thread::sleep(Duration::from_millis(200));
        let text = fs::read_to_string(&d.alerts).unwrap_or_default();
        for l in text.lines() {
            if l.contains(&format!("\"tgid\":{pid},")) {
                found = latency_ms(l);
                break;
            }
        }
    }
    let _ = m.kill();
    let _ = m.wait();
    let _ = pool.kill();
    let _ = pool.wait();
    d.stop();
    let _ = fs::remove_dir_all(&dir);
    let _ = fs::remove_file(&cfg);
    Ok(found)
}
