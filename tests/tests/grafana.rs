//! deploy/grafana/minerwatch-dashboard.json against what the real daemon
//! serves: every PromQL expression parses, and every metric and label it
//! selects or groups by is one the daemon's `/metrics` really has (labels
//! the scrape adds — `job`, `node`, `instance` — and histogram `le` aside).
//! A simulated miner is flagged and acted on first (enforce mode) so the
//! alert, latency and action families have samples whose labels can be
//! compared: a family without samples is not served at all.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use common::SpawnListening;
use common::daemon::Daemon;
use promql_parser::{
    label::Matchers,
    parser::{self as promql, Expr, LabelModifier},
    util::{ExprVisitor, walk_expr},
};
use serde_json::Value;

const MINER: &str = env!("CARGO_BIN_EXE_fake_miner");
const POOL: &str = env!("CARGO_BIN_EXE_fake_pool");

/// Labels Prometheus (ServiceMonitor/PodMonitor relabelling) adds.
const SCRAPE_LABELS: &[&str] = &["job", "node", "instance", "le"];

fn dashboard() -> Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/minerwatch-dashboard.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard file")).expect("JSON")
}

/// (panel title, expr) of every target, Grafana variables substituted
/// with values of the right shape.
fn expressions(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        let title = p["title"].as_str().unwrap_or("?").to_owned();
        for t in p["targets"].as_array().expect("targets") {
            let expr = t["expr"].as_str().expect("expr");
            let expr = expr
                .replace("$__rate_interval", "5m")
                .replace("$__range", "6h")
                .replace("$job", "minerwatch")
                .replace("$node", ".*");
            out.push((title.clone(), expr));
        }
    }
    out
}

/// Metric names and the labels each expression uses with them.
#[derive(Default)]
struct Uses {
    /// metric → labels in its matchers
    selectors: BTreeMap<String, BTreeSet<String>>,
    /// labels in `by (...)` / `without (...)`
    grouping: BTreeSet<String>,
}

impl ExprVisitor for Uses {
    type Error = ();
    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, ()> {
        match expr {
            Expr::VectorSelector(vs) => {
                let name = vs.name.clone().expect("named selector");
                let labels = matcher_labels(&vs.matchers);
                self.selectors.entry(name).or_default().extend(labels);
            }
            Expr::MatrixSelector(ms) => {
                let vs = &ms.vs;
                let name = vs.name.clone().expect("named selector");
                let labels = matcher_labels(&vs.matchers);
                self.selectors.entry(name).or_default().extend(labels);
            }
            Expr::Aggregate(a) => {
                if let Some(LabelModifier::Include(l) | LabelModifier::Exclude(l)) = &a.modifier {
                    self.grouping.extend(l.labels.iter().cloned());
                }
            }
            _ => {}
        }
        Ok(true)
    }
}

fn matcher_labels(m: &Matchers) -> Vec<String> {
    m.matchers
        .iter()
        .map(|m| m.name.clone())
        .filter(|n| n != "__name__")
        .collect()
}

#[test]
fn every_panel_is_promql_and_has_a_datasource() {
    let d = dashboard();
    assert_eq!(d["uid"], "minerwatch-fleet");
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .expect("templating")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    for v in ["datasource", "job", "node"] {
        assert!(vars.contains(&v), "variable {v}");
    }
    let exprs = expressions(&d);
    assert!(exprs.len() >= 10, "{exprs:?}");
    for (title, e) in &exprs {
        promql::parse(e).unwrap_or_else(|err| panic!("{title}: {e}: {err}"));
    }
    for p in d["panels"].as_array().expect("panels") {
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
    }
    let titles: Vec<&str> = d["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .filter_map(|p| p["title"].as_str())
        .collect();
    for want in [
        "Alerts by rule and node",
        "Detection latency histogram",
        "Events by kind",
        "Lost kernel events",
        "Programs attached",
        "Agent CPU",
        "Agent RSS",
    ] {
        assert!(
            titles.iter().any(|t| t.starts_with(want)),
            "panel {want}: {titles:?}"
        );
    }
}

/// Runs a simulated miner against a simulated pool until the daemon
/// alerts on it, so the alert families have samples.
fn provoke_an_alert(d: &Daemon) {
    let (mut pool, port) = Command::new(POOL)
        .args(["--addr", "127.0.0.1:0", "--seconds", "30"])
        .listening();
    let dir = PathBuf::from(format!("/tmp/{}", common::unique(".mw-grafana")));
    let miner = common::copy_binary(Path::new(MINER), &dir, "kworker");
    let mut m = Command::new(&miner)
        .args(["--pool", &format!("127.0.0.1:{port}"), "--proto", "xmrig"])
        .args(["--threads", "1", "--seconds", "20"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("fake_miner");
    let alert = d.wait_alert(Duration::from_secs(30), |a| a["tgid"] == m.id());
    // Enforce mode acts on it: the action families get samples too.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !d.records().iter().any(|r| r["kind"] == "action") {
        if std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = m.kill();
    let _ = m.wait();
    let _ = pool.kill();
    let _ = pool.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(alert.is_some(), "no alert; log:\n{}", d.log());
}

#[test]
fn the_dashboard_uses_only_metrics_and_labels_the_daemon_serves() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return common::skip(
            "grafana::the_dashboard_uses_only_metrics_and_labels_the_daemon_serves",
            "root",
            "not root: the daemon loads eBPF programs",
        );
    }
    let d = Daemon::start("", &["--enforce"]);
    provoke_an_alert(&d);
    let (code, body) = d.get("/metrics").expect("/metrics");
    assert_eq!(code, 200);
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .expect("Prometheus text");
    // Sample names as served (histograms: name_bucket/_sum/_count, which
    // prometheus-parse folds into the family name).
    let mut served: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in &scrape.samples {
        let labels = served.entry(s.metric.clone()).or_default();
        labels.extend(s.labels.keys().cloned());
    }
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        served.entry(name.to_owned()).or_default();
    }

    let mut uses = Uses::default();
    for (title, e) in expressions(&dashboard()) {
        let expr = promql::parse(&e).unwrap_or_else(|err| panic!("{title}: {err}"));
        walk_expr(&mut uses, &expr).expect("walk");
    }
    let mut missing = Vec::new();
    let mut all_labels: BTreeSet<String> = BTreeSet::new();
    for (metric, labels) in &uses.selectors {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| metric.strip_suffix(s))
            .filter(|f| served.contains_key(*f))
            .unwrap_or(metric);
        let Some(have) = served.get(metric).or_else(|| served.get(family)) else {
            missing.push(format!("metric {metric}"));
            continue;
        };
        all_labels.extend(have.iter().cloned());
        for l in labels {
            if !SCRAPE_LABELS.contains(&l.as_str()) && !have.contains(l) {
                missing.push(format!("label {l} on {metric} (has {have:?})"));
            }
        }
    }
    for l in &uses.grouping {
        if !SCRAPE_LABELS.contains(&l.as_str()) && !all_labels.contains(l) {
            missing.push(format!("grouping label {l}"));
        }
    }
    assert!(
        missing.is_empty(),
        "not served by /metrics: {missing:?}\n{body}"
    );
    println!(
        "dashboard: {} metrics, grouping by {:?}, all served",
        uses.selectors.len(),
        uses.grouping
    );
    let _ = d.stop();
}
