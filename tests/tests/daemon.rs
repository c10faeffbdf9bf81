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

use common::{
    SpawnQuiet,
    daemon::{Daemon, minerwatch_bin, pids_running},
};

const MINER: &str = env!("CARGO_BIN_EXE_fake_miner");
const POOL: &str = env!("CARGO_BIN_EXE_fake_pool");

fn pool() -> (std::process::Child, u16) {
    let mut child = Command::new(POOL)
        .args(["--seconds", "60"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line.trim().parse().unwrap())
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
    let value = |s: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>| -> f64 {
        s.samples
            .iter()
            .filter(|x| x.metric == name && label.is_none_or(|(k, v)| x.labels.get(k) == Some(v)))
            .map(|x| match x.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
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
    assert_eq!(value(&before, "minerwatch_programs_attached", None), 9.0);

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
    // Quarantined, restorable.
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
