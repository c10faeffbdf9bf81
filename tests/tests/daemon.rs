//! The real `minerwatch` binary: start-up errors, /metrics, live tail, and
//! the response in observe and enforce mode. Needs root.

mod common;

use std::{
    io::{BufRead, BufReader},
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::SpawnListening;
use common::{
    SpawnQuiet,
    daemon::{Daemon, minerwatch_bin, pids_running},
};

const MINER: &str = env!("CARGO_BIN_EXE_fake_miner");
const POOL: &str = env!("CARGO_BIN_EXE_fake_pool");

fn pool() -> (std::process::Child, u16) {
    Command::new(POOL).args(["--seconds", "60"]).listening()
}

fn dropped_miner(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(common::unique(".mwd"));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::copy(MINER, &p).unwrap();
    p
}

#[test]
fn bad_config_fails_with_one_line_naming_the_key_and_exit_2() {
    let dir = std::env::temp_dir().join(common::unique("mwcfg"));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        (
            "[detector]\ncpu_busy_cores = 1.5\n",
            "detector.cpu_busy_cores",
        ),
        ("[metrics]\naddr = \"0.0.0.0:70000\"\n", "metrics.addr"),
        ("[alerts]\nfle = \"x\"\n", "alerts.fle"),
        (
            "[sensor]\nring_buffer_bytes = \"big\"\n",
            "sensor.ring_buffer_bytes",
        ),
    ];
    for (text, key) in cases {
        let f = dir.join("bad.toml");
        std::fs::write(&f, text).unwrap();
        let out = Command::new(minerwatch_bin())
            .args(["run", "--config"])
            .arg(&f)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {err}");
        assert!(err.contains(key), "{text}: message names {key}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
}

#[test]
fn unprivileged_run_exits_2_naming_the_missing_privilege() {
    let out = Command::new(minerwatch_bin())
        .args([
            "run",
            "--metrics-addr",
            "127.0.0.1:0",
            "--socket",
            "/tmp/mw-unpriv.sock",
        ])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("root") || err.contains("CAP_BPF") || err.contains("ermission"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn metrics_parse_and_count_real_events_and_tail_streams_them() {
    let d = Daemon::start("", &[]);
    let scrape = || {
        let (code, body) = d.get("/metrics").expect("scrape");
        assert_eq!(code, 200);
        let lines = body.lines().map(|l| Ok(l.to_owned()));
        prometheus_parse::Scrape::parse(lines).expect("Prometheus text format")
    };
    let value = |s: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>| {
        common::daemon::metric_value(s, name, label.as_slice())
    };
    let before = scrape();
    for family in [
        "minerwatch_events_total",
        "minerwatch_events_lost_total",
        "minerwatch_alerts_total",
        "minerwatch_tracked_processes",
        "minerwatch_programs_attached",
        "minerwatch_build_info",
        "process_resident_memory_bytes",
    ] {
        assert!(
            before
                .samples
                .iter()
                .any(|s| s.metric == family || s.metric.starts_with(family)),
            "family {family} present"
        );
    }
    // 8 base hooks (the task iterator replaced the two scheduler hooks) +
    // the listen hook + the fpu program + 3 hint tracepoints.
    assert_eq!(value(&before, "minerwatch_programs_attached", None), 13.0);

    // A tail client, then real execs.
    let mut tail = Command::new(minerwatch_bin())
        .args(["tail", "--json", "--kind", "exec", "--socket"])
        .arg(&d.socket)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let name = common::unique("mwtail");
    let bin = common::copy_binary(
        std::path::Path::new("/bin/true"),
        &std::env::temp_dir().join(&name),
        &name,
    );
    for _ in 0..5 {
        Command::new(&bin).status().unwrap();
    }
    // Read on a thread so a silent tail fails the test instead of hanging it.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let out = tail.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = 0;
    while seen < 5 {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            break;
        };
        let v: serde_json::Value = serde_json::from_str(&line).expect("JSON line");
        assert_eq!(v["kind"], "exec");
        if v["exe"].as_str().is_some_and(|e| e.contains(&name))
            || v["comm"].as_str().is_some_and(|c| name.starts_with(c))
        {
            seen += 1;
        }
    }
    let _ = tail.kill();
    let _ = tail.wait();
    assert_eq!(seen, 5, "the tail client saw our five execs");

    std::thread::sleep(Duration::from_millis(1200));
    let after = scrape();
    let execs = value(&after, "minerwatch_events_total", Some(("kind", "exec")))
        - value(&before, "minerwatch_events_total", Some(("kind", "exec")));
    assert!(execs >= 5.0, "exec counter moved by {execs}");
    assert!(value(&after, "minerwatch_tracked_processes", None) > 0.0);
    let (code, took) = d.stop();
    assert_eq!(code, Some(0));
    assert!(
        took < Duration::from_secs(2),
        "graceful shutdown took {took:?}"
    );
}

#[test]
fn observe_mode_lists_would_be_actions_and_touches_nothing() {
    let (mut p, port) = pool();
    let d = Daemon::start(&format!("[detector]\nextra_pool_ports = [{port}]\n"), &[]);
    let m = dropped_miner("kdevtmpfsi");
    let mut c = Command::new(&m)
        .args([
            "--pool",
            &format!("127.0.0.1:{port}"),
            "--proto",
            "xmrig",
            "--seconds",
            "30",
        ])
        .quiet();
    let pid = c.id();
    let a = d
        .wait_alert(Duration::from_secs(15), |a| {
            a["tgid"].as_u64() == Some(pid as u64) && a["severity"] == "critical"
        })
        .expect("critical alert");
    let would: Vec<String> = serde_json::from_value(a["would"].clone()).unwrap();
    assert!(would.iter().any(|w| w.starts_with("kill")), "{would:?}");
    assert!(
        would.iter().any(|w| w.starts_with("block_egress")),
        "{would:?}"
    );
    assert!(
        c.try_wait().unwrap().is_none(),
        "observe mode does not kill"
    );
    let _ = c.kill();
    let _ = c.wait();
    let _ = p.kill();
    let _ = p.wait();
}

#[test]
fn enforce_kills_the_miner_tree_within_a_second_and_reports_footholds() {
    let (mut p, port) = pool();
    let dir = std::env::temp_dir().join(common::unique("mwq"));
    let m = dropped_miner("kthreaddk");
    // A persistence line naming the miner, as droppers leave them.
    let cron = PathBuf::from(format!("/etc/cron.d/{}", common::unique("mwtest")));
    std::fs::create_dir_all("/etc/cron.d").unwrap();
    std::fs::write(
        &cron,
        format!("*/5 * * * * root {} >/dev/null 2>&1\n", m.display()),
    )
    .unwrap();
    let cfg = format!(
        "[detector]\nextra_pool_ports = [{port}]\n[response]\nquarantine_dir = \"{}\"\n",
        dir.display()
    );
    let d = Daemon::start(&cfg, &["--enforce"]);
    let mut c = Command::new(&m)
        .args([
            "--pool",
            &format!("127.0.0.1:{port}"),
            "--proto",
            "stratum",
            "--workers",
            "2",
            "--seconds",
            "30",
        ])
        .quiet();
    let pid = c.id();
    let a = d.wait_alert(Duration::from_secs(20), |a| {
        a["tgid"].as_u64() == Some(pid as u64) && a["severity"] == "critical"
    });
    let _ = std::fs::remove_file(&cron);
    let a = a.expect("critical alert");
    let t_alert = Instant::now();
    // Every process of the tree dead within a second.
    let deadline = t_alert + Duration::from_secs(1);
    while Instant::now() < deadline
        && (!pids_running(&m).is_empty() || c.try_wait().unwrap().is_none())
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let alive = pids_running(&m);
    let _ = c.wait();
    let kills: Vec<serde_json::Value> = d
        .records()
        .into_iter()
        .filter(|r| r["kind"] == "action" && r["action"] == "kill")
        .collect();
    let _ = p.kill();
    let _ = p.wait();
    assert!(alive.is_empty(), "still alive after the verdict: {alive:?}");
    assert!(
        kills.iter().filter(|k| k["result"] == "ok").count() >= 3,
        "holder + 2 workers killed: {kills:?}"
    );
    for k in &kills {
        assert!(k["latency_ms"].as_u64().unwrap_or(u64::MAX) < 1000, "{k}");
    }
    // The scan runs after the kill, off the event path: its findings follow
    // the alert as a `footholds` action line.
    let _ = a;
    let found = d
        .wait_record(Duration::from_secs(10), |r| {
            r["kind"] == "action"
                && r["action"] == "footholds"
                && r["target"].as_u64() == Some(pid as u64)
        })
        .expect("footholds action line");
    let footholds = found["footholds"].as_array().cloned().unwrap_or_default();
    assert!(
        footholds.iter().any(|f| f["path"]
            .as_str()
            .is_some_and(|p| p.starts_with(&cron.display().to_string()))
            && f["kind"] == "cron"),
        "crontab line reported: {footholds:?}"
    );
    // Quarantined, restorable. The footholds line may come from an earlier
    // (high) verdict's job, so the quarantine is awaited on its own line.
    let saved = d
        .wait_record(Duration::from_secs(10), |r| {
            r["kind"] == "action"
                && r["action"] == "quarantine"
                && r["target"].as_u64() == Some(pid as u64)
        })
        .expect("quarantine action line");
    assert_eq!(saved["result"], "ok", "{saved}");
    let q = Command::new(minerwatch_bin())
        .args(["quarantine", "list", "--json", "--config"])
        .arg(d.dir.join("minerwatch.toml"))
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&q.stdout).to_string();
    assert!(
        listed.contains(&m.display().to_string()),
        "quarantined: {listed}"
    );
    assert!(!m.exists(), "moved out of place");
}

#[test]
fn protect_listed_miner_is_not_killed_and_the_refusal_is_reported() {
    let (mut p, port) = pool();
    let m = dropped_miner("protected-agent");
    let cfg = format!(
        "[detector]\nextra_pool_ports = [{port}]\n[response.protect]\npaths = [\"{}\"]\n",
        m.display()
    );
    let d = Daemon::start(&cfg, &["--enforce"]);
    let mut c = Command::new(&m)
        .args([
            "--pool",
            &format!("127.0.0.1:{port}"),
            "--proto",
            "xmrig",
            "--seconds",
            "30",
        ])
        .quiet();
    let pid = c.id();
    d.wait_alert(Duration::from_secs(15), |a| {
        a["tgid"].as_u64() == Some(pid as u64) && a["severity"] == "critical"
    })
    .expect("critical alert");
    std::thread::sleep(Duration::from_millis(500));
    let refused: Vec<serde_json::Value> = d
        .records()
        .into_iter()
        .filter(|r| r["kind"] == "action" && r["result"] == "refused")
        .collect();
    assert!(c.try_wait().unwrap().is_none(), "protected process lives");
    assert!(
        refused.iter().any(|r| r["action"] == "kill"
            && r["reason"].as_str().is_some_and(|s| s.contains("protect"))),
        "{refused:?}"
    );
    let _ = c.kill();
    let _ = c.wait();
    let _ = p.kill();
    let _ = p.wait();
}

/// The CPU the detector is fed for a process (the sum of its CPU samples
/// in the recording of everything the detector consumed) equals the
/// process's own rusage: the exit total is the last word, nothing is lost
/// between the last poll and the exit, and nothing is counted twice.
#[test]
fn cpu_the_detector_sees_equals_the_process_rusage_for_short_and_long_lives() {
    let dir = std::env::temp_dir().join(common::unique("mwcpu"));
    std::fs::create_dir_all(&dir).unwrap();
    let rec = dir.join("rec.jsonl");
    let rec_arg = rec.display().to_string();
    let d = Daemon::start("[response]\nfootholds = false\n", &["--record", &rec_arg]);
    let mut runs = Vec::new();
    for secs in ["0.3", "1.5", "3"] {
        let child = Command::new(env!("CARGO_BIN_EXE_burn"))
            .args([secs, "1"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        // SAFETY: zeroed rusage is a valid out-parameter.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let mut status = 0;
        // SAFETY: waiting for our own child; `child` is not waited on again.
        let rc = unsafe { libc::wait4(pid as i32, &mut status, 0, &mut ru) };
        assert_eq!(rc, pid as i32);
        let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
        runs.push((secs, pid, tv(ru.ru_utime) + tv(ru.ru_stime)));
        std::mem::forget(child);
    }
    // Two polls after the last exit, then a clean stop flushes the recording.
    std::thread::sleep(Duration::from_millis(2500));
    let (code, _) = d.stop();
    assert_eq!(code, Some(0));
    let text = std::fs::read_to_string(&rec).unwrap();
    let mut sampled: std::collections::HashMap<u64, u64> = Default::default();
    let mut at_exit: std::collections::HashMap<u64, u64> = Default::default();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        match v["kind"].as_str() {
            Some("cpu_sample") => {
                for u in v["usage"].as_array().into_iter().flatten() {
                    if let (Some(t), Some(ns)) = (u["tgid"].as_u64(), u["on_cpu_ns"].as_u64()) {
                        *sampled.entry(t).or_default() += ns;
                    }
                }
            }
            Some("exit") => {
                if let (Some(t), Some(ns)) = (v["tgid"].as_u64(), v["cpu_ns"].as_u64()) {
                    at_exit.insert(t, ns);
                }
            }
            _ => {}
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let mut report = Vec::new();
    for (secs, pid, rusage) in &runs {
        let seen = sampled.get(&u64::from(*pid)).copied().unwrap_or(0);
        let exit = at_exit.get(&u64::from(*pid)).copied().unwrap_or(0);
        let err = (seen as f64 - *rusage as f64) / *rusage as f64 * 100.0;
        report.push(format!(
            "{secs} s busy: rusage {:.3} s, detector fed {:.3} s ({err:+.2}%), exit total {:.3} s",
            *rusage as f64 / 1e9,
            seen as f64 / 1e9,
            exit as f64 / 1e9
        ));
        assert!(err.abs() <= 5.0, "{secs} s: {}", report.join("; "));
    }
    eprintln!("exit CPU: {}", report.join("; "));
}

/// Every refusal holds for every target of the action scope, in the real
/// daemon: a miner started by a script whose other children are a
/// protect-listed binary, a packaged binary and an unpackaged one. The
/// kill takes the miner and the unpackaged child; the protected and the
/// packaged child live, and each refusal is reported.
#[test]
fn enforce_refuses_protected_and_packaged_members_of_the_miner_tree_and_kills_the_rest() {
    let (mut p, port) = pool();
    let dir = std::env::temp_dir().join(common::unique(".mwscope"));
    std::fs::create_dir_all(&dir).unwrap();
    let guard = dir.join("backup-agent");
    let plain = dir.join("helper");
    std::fs::copy("/bin/sleep", &guard).unwrap();
    std::fs::copy("/bin/sleep", &plain).unwrap();
    let m = dropped_miner("kworkerds");
    let cfg = format!(
        "[detector]\nextra_pool_ports = [{port}]\n[response]\nfootholds = false\nquarantine_dir = \"{}\"\n[response.protect]\npaths = [\"{}\"]\n",
        dir.join("q").display(),
        guard.display()
    );
    let d = Daemon::start(&cfg, &["--enforce"]);
    let script = format!(
        "{} 60 & {} 60 & /bin/sleep 61 & exec {} --pool 127.0.0.1:{port} --proto xmrig --seconds 30",
        guard.display(),
        plain.display(),
        m.display()
    );
    let mut sh = Command::new("/bin/sh").arg("-c").arg(&script).quiet();
    let pid = sh.id();
    std::thread::sleep(Duration::from_millis(500));
    let kids = minerwatch::response::kill::children(std::path::Path::new("/proc"), pid);
    let exe_of = |k: u32| std::fs::read_link(format!("/proc/{k}/exe")).unwrap_or_default();
    let find = |want: &std::path::Path| kids.iter().copied().find(|&k| exe_of(k) == want);
    let (g, pl) = (find(&guard), find(&plain));
    let packaged = kids
        .iter()
        .copied()
        .find(|&k| Some(k) != g && Some(k) != pl);
    let cleanup = |kids: &[u32]| {
        for k in kids {
            // SAFETY: our own test's children.
            unsafe { libc::kill(*k as i32, libc::SIGKILL) };
        }
    };
    let (Some(g), Some(pl), Some(pk)) = (g, pl, packaged) else {
        cleanup(&kids);
        panic!("three children: {kids:?}");
    };
    let a = d.wait_alert(Duration::from_secs(20), |a| {
        a["tgid"].as_u64() == Some(pid as u64) && a["severity"] == "critical"
    });
    let kills = d.wait_record(Duration::from_secs(5), |r| {
        r["kind"] == "action" && r["action"] == "kill" && r["result"] == "ok"
    });
    std::thread::sleep(Duration::from_millis(500));
    let alive = |k: u32| {
        std::path::Path::new(&format!("/proc/{k}")).exists() && kill_stat_ppid_or_zombie(k)
    };
    let (g_alive, pl_alive, pk_alive) = (alive(g), alive(pl), alive(pk));
    let records = d.records();
    cleanup(&kids);
    let _ = sh.kill();
    let _ = sh.wait();
    let _ = p.kill();
    let _ = p.wait();
    a.expect("critical alert");
    kills.expect("a kill");
    let refused = |t: u32| {
        records
            .iter()
            .find(|r| {
                r["kind"] == "action"
                    && r["action"] == "kill"
                    && r["result"] == "refused"
                    && r["target"].as_u64() == Some(t as u64)
            })
            .and_then(|r| r["reason"].as_str().map(str::to_owned))
    };
    let killed = |t: u32| {
        records.iter().any(|r| {
            r["kind"] == "action"
                && r["action"] == "kill"
                && r["result"] == "ok"
                && r["target"].as_u64() == Some(t as u64)
        })
    };
    eprintln!(
        "scope: protected {g} alive={g_alive} ({:?}); packaged {pk} alive={pk_alive} ({:?}); unpackaged {pl} alive={pl_alive}",
        refused(g),
        refused(pk)
    );
    assert!(killed(pid), "the miner was killed");
    assert!(g_alive, "the protected child lives");
    assert!(
        refused(g).is_some_and(|r| r.contains("protect list")),
        "{records:?}"
    );
    assert!(pk_alive, "the packaged child lives");
    assert!(
        refused(pk).is_some_and(|r| r.contains("packaged")),
        "{records:?}"
    );
    assert!(!pl_alive && killed(pl), "the unpackaged child was killed");
}

/// Alive and not a zombie.
fn kill_stat_ppid_or_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .map(|i| s[i + 1..].trim_start().starts_with('Z'))
        })
        .is_some_and(|zombie| !zombie)
}

/// Busy, unpackaged clients on pool-numbered ports that are not miners —
/// TLS, an unknown binary protocol, application logins with a `"pass"`
/// field — are at most blocked in enforce mode, never killed.
#[test]
fn busy_look_alikes_on_pool_ports_are_at_most_blocked_never_killed() {
    const CLIENT: &str = env!("CARGO_BIN_EXE_busy_client");
    // The named pool ports where free; otherwise an ephemeral port that the
    // config adds to the pool-port set (the rule is the same).
    let listen = |want: u16| {
        std::net::TcpListener::bind(("127.0.0.1", want))
            .or_else(|_| std::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap()
    };
    let cases: Vec<(&str, u16, Vec<String>)> = vec![
        ("tls", 5555, vec![]),
        (
            "unknown protocol",
            7777,
            vec!["--send-hex".into(), "00ff13a7c05e0102030405060708090a0b0c0d0e0f".into()],
        ),
        (
            "json-rpc login with pass",
            8888,
            vec![
                "--send".into(),
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"login\",\"params\":{\"username\":\"alice\",\"pass\":\"hunter2\"}}\n".into(),
            ],
        ),
        (
            "json-rpc login/pass, no wallet or agent",
            9999,
            vec![
                "--send".into(),
                "{\"id\":1,\"jsonrpc\":\"2.0\",\"method\":\"login\",\"params\":{\"login\":\"admin\",\"pass\":\"s3cret\"}}\n".into(),
            ],
        ),
    ];
    let listeners: Vec<std::net::TcpListener> = cases.iter().map(|c| listen(c.1)).collect();
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    for l in &listeners {
        let l = l.try_clone().unwrap();
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut c = c;
                    let mut buf = [0u8; 4096];
                    while matches!(std::io::Read::read(&mut c, &mut buf), Ok(n) if n > 0) {}
                });
            }
        });
    }
    let extra: Vec<String> = ports.iter().map(u16::to_string).collect();
    let cfg = format!(
        "[detector]\nextra_pool_ports = [{}]\n[response]\nfootholds = false\n",
        extra.join(", ")
    );
    let d = Daemon::start(&cfg, &["--enforce"]);
    let bin = dropped_miner("svc-client");
    let client = common::copy_binary(
        std::path::Path::new(CLIENT),
        bin.parent().unwrap(),
        "svc-agent",
    );
    let mut rows = Vec::new();
    // Two at a time, so each gets enough CPU to count as busy.
    for pair in cases.iter().zip(&ports).collect::<Vec<_>>().chunks(2) {
        let mut running = Vec::new();
        for ((name, _, send), port) in pair {
            let addr = format!("127.0.0.1:{port}");
            let c = if *name == "tls" {
                Command::new(&bin)
                    .args(["--pool", &addr, "--proto", "tls", "--seconds", "9"])
                    .quiet()
            } else {
                Command::new(&client)
                    .args(["--connect", &addr, "--seconds", "9"])
                    .args(send)
                    .quiet()
            };
            running.push((*name, *port, c));
        }
        std::thread::sleep(Duration::from_secs(8));
        for (name, port, mut c) in running {
            let pid = c.id();
            let alive = c.try_wait().unwrap().is_none();
            let _ = c.kill();
            let _ = c.wait();
            let recs: Vec<serde_json::Value> = d
                .records()
                .into_iter()
                .filter(|r| {
                    r["tgid"].as_u64() == Some(pid as u64)
                        || r["target"].as_u64() == Some(pid as u64)
                })
                .collect();
            rows.push((name, port, pid, alive, recs));
        }
    }
    let _ = d.stop();
    for (name, port, pid, alive, recs) in &rows {
        let alerts: Vec<String> = recs
            .iter()
            .filter(|r| r["kind"] == "alert")
            .map(|r| format!("{} ({})", r["rule"], r["severity"]))
            .collect();
        let actions: Vec<String> = recs
            .iter()
            .filter(|r| r["kind"] == "action")
            .map(|r| format!("{} {}", r["action"], r["result"]))
            .collect();
        eprintln!(
            "look-alike {name} to :{port} (pid {pid}): alive={alive}, alerts {alerts:?}, actions {actions:?}"
        );
    }
    for (name, port, _, alive, recs) in &rows {
        assert!(*alive, "{name} to :{port} was killed: {recs:?}");
        assert!(
            !recs
                .iter()
                .any(|r| r["kind"] == "action" && r["action"] == "kill" && r["result"] == "ok"),
            "{name}: killed {recs:?}"
        );
        assert!(
            !recs
                .iter()
                .any(|r| r["kind"] == "alert" && r["severity"] == "critical"),
            "{name}: critical verdict {recs:?}"
        );
    }
    // The TLS and the unknown-protocol client were judged (not silent by
    // accident of CPU): blocked.
    for (name, _, _, _, recs) in rows.iter().take(2) {
        assert!(
            recs.iter().any(|r| r["kind"] == "action"
                && r["action"] == "block_egress"
                && r["result"] == "ok"),
            "{name} was judged and blocked: {recs:?}"
        );
    }
}
