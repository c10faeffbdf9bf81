//! The daemon's Prometheus metrics, in a registry it owns.
//!
//! No global registry: tests build as many `Metrics` as they like, and
//! nothing registers behind the daemon's back. Labels are bounded sets
//! (event kinds, drop sites, rules, severities, results): never a pid, a
//! path or a command name, whose cardinality an attacker controls. Known
//! label values are created at zero so a rate() over a fresh daemon is 0,
//! not absent.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::detect::{Rule, Severity};
use crate::event::Event;
use crate::time::Mono;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("registering metric {name} failed: {source}")]
    Register {
        name: &'static str,
        #[source]
        source: prometheus::Error,
    },
    #[error("encoding metrics failed: {0}")]
    Encode(#[source] prometheus::Error),
}

/// Event kinds as they appear in the `kind` label (`Event::kind`).
const EVENT_KINDS: &[&str] = &[
    "exec",
    "fork",
    "exit",
    "connect",
    "payload",
    "flow_stats",
    "cpu_sample",
    "provenance",
    "lost",
    "listen",
    "fpu",
    "hint",
];

/// Detection latency: a verdict within 2 s is the goal, 30 s the bound.
const LATENCY_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0];
/// Hashing an executable: from a cached hit (µs) to a large binary (s).
const HASH_BUCKETS: &[f64] = &[0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];
/// Kernel → user space: the reader drains every 25 ms by default.
const LAG_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

pub struct Metrics {
    registry: Registry,
    /// `minerwatch_events_total{kind}`: events decoded, by kind.
    pub events: IntCounterVec,
    /// `events{kind}` per kind, in `EVENT_KINDS` order: a label lookup
    /// hashes under a lock, once per event at tens of thousands a second.
    events_by_kind: Vec<IntCounter>,
    /// `minerwatch_quiet_forks_total`: children the kernel saw fork and
    /// exit within `sensor.quiet_fork_ms`, having done nothing else; no
    /// record was sent for them (counted in `events{fork,exit}` too).
    pub quiet_forks: IntCounter,
    /// `minerwatch_events_lost_total{site}`: events lost, by kernel drop
    /// site (`exec_ring_full`, …).
    pub events_lost: IntCounterVec,
    /// `minerwatch_decode_errors_total`: ring-buffer records that failed to decode.
    pub decode_errors: IntCounter,
    /// `minerwatch_alerts_total{rule,severity}`.
    pub alerts: IntCounterVec,
    /// `minerwatch_detection_latency_seconds`: verdict time minus first evidence.
    pub detection_latency: Histogram,
    /// `minerwatch_tracked_processes`: entries in the process table.
    pub tracked_processes: IntGauge,
    /// `minerwatch_provenance_checks_total{result}` (`verified`,
    /// `unverified`, `cached`, `error`…).
    pub provenance_checks: IntCounterVec,
    /// `minerwatch_provenance_hash_seconds`: time to hash one executable.
    pub provenance_hash_seconds: Histogram,
    /// `minerwatch_ringbuf_poll_lag_seconds`: kernel timestamp to decode.
    pub ringbuf_poll_lag: Histogram,
    /// `minerwatch_programs_attached`: eBPF programs currently attached.
    pub programs_attached: IntGauge,
    /// `minerwatch_tail_clients`: connected `minerwatch tail` clients.
    pub tail_clients: IntGauge,
    /// `minerwatch_tail_skipped_total`: messages a slow tail client missed.
    pub tail_skipped: IntCounter,
    /// `minerwatch_actions_total{action,result}`: response actions.
    pub actions: IntCounterVec,
    /// `minerwatch_webhook_deliveries_total{result}`: `sent`, `failed`
    /// (retries exhausted), `dropped` (queue full), `retried`.
    pub webhook_deliveries: IntCounterVec,
    /// `minerwatch_alert_lines_lost_total{sink,reason}`: alert and action
    /// lines an output did not get (`stdout`, `file`; `io_error`: the write
    /// failed, e.g. disk full or read-only; `queue_full`: the output was
    /// stuck and the line was dropped rather than waited for).
    pub alert_lines_lost: IntCounterVec,
    /// `minerwatch_process_evictions_total{reason}`: processes that left the
    /// table (`expired` after exit, `capacity` at the cap, `replaced` by a
    /// reused tgid).
    pub process_evictions: IntCounterVec,
    /// `minerwatch_config_reloads_total{result}`: SIGHUP reloads, `ok` or
    /// `rejected` (the running configuration stayed).
    pub config_reloads: IntCounterVec,
    /// `minerwatch_build_info{version,abi}` = 1.
    pub build_info: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let r = &registry;
        let events = counter_vec(
            r,
            "minerwatch_events_total",
            "Events decoded, by kind (quiet forks counted in the kernel included).",
            &["kind"],
        )?;
        let m = Metrics {
            events_by_kind: EVENT_KINDS
                .iter()
                .map(|k| events.with_label_values(&[k]))
                .collect(),
            events,
            quiet_forks: counter(
                r,
                "minerwatch_quiet_forks_total",
                "Children that forked and exited within sensor.quiet_fork_ms having done nothing else: counted in the kernel, no record sent.",
            )?,
            events_lost: counter_vec(
                r,
                "minerwatch_events_lost_total",
                "Events lost before the detector saw them, by event kind or drop site.",
                &["kind"],
            )?,
            decode_errors: counter(
                r,
                "minerwatch_decode_errors_total",
                "Ring-buffer records that failed to decode.",
            )?,
            alerts: counter_vec(
                r,
                "minerwatch_alerts_total",
                "Alerts emitted, by rule and severity.",
                &["rule", "severity"],
            )?,
            detection_latency: histogram(
                r,
                "minerwatch_detection_latency_seconds",
                "Verdict time minus the first evidence (or process start).",
                LATENCY_BUCKETS,
            )?,
            tracked_processes: gauge(
                r,
                "minerwatch_tracked_processes",
                "Processes in the process table.",
            )?,
            provenance_checks: counter_vec(
                r,
                "minerwatch_provenance_checks_total",
                "Executable provenance checks, by result.",
                &["result"],
            )?,
            provenance_hash_seconds: histogram(
                r,
                "minerwatch_provenance_hash_seconds",
                "Time to hash one executable.",
                HASH_BUCKETS,
            )?,
            ringbuf_poll_lag: histogram(
                r,
                "minerwatch_ringbuf_poll_lag_seconds",
                "Kernel event timestamp to user-space decode.",
                LAG_BUCKETS,
            )?,
            programs_attached: gauge(r, "minerwatch_programs_attached", "eBPF programs attached.")?,
            tail_clients: gauge(r, "minerwatch_tail_clients", "Connected live-tail clients.")?,
            tail_skipped: counter(
                r,
                "minerwatch_tail_skipped_total",
                "Live-tail messages dropped because a client fell behind.",
            )?,
            actions: counter_vec(
                r,
                "minerwatch_actions_total",
                "Response actions, by action and result.",
                &["action", "result"],
            )?,
            webhook_deliveries: counter_vec(
                r,
                "minerwatch_webhook_deliveries_total",
                "Alert webhook deliveries, by result (sent, retried, failed, dropped).",
                &["result"],
            )?,
            alert_lines_lost: counter_vec(
                r,
                "minerwatch_alert_lines_lost_total",
                "Alert and action lines an output did not get, by output and reason.",
                &["sink", "reason"],
            )?,
            process_evictions: counter_vec(
                r,
                "minerwatch_process_evictions_total",
                "Processes removed from the process table, by reason.",
                &["reason"],
            )?,
            config_reloads: counter_vec(
                r,
                "minerwatch_config_reloads_total",
                "Configuration reloads on SIGHUP, by result.",
                &["result"],
            )?,
            build_info: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "minerwatch_build_info",
                        "Version and eBPF ABI of this binary (always 1).",
                    ),
                    &["version", "abi"],
                )
                .map_err(|source| MetricsError::Register {
                    name: "minerwatch_build_info",
                    source,
                })?;
                register(r, "minerwatch_build_info", g.clone())?;
                g
            },
            registry,
        };
        for rule in Rule::ALL {
            for sev in Severity::ALL {
                m.alerts.with_label_values(&[rule.name(), sev.name()]);
            }
        }
        for result in super::webhook::Delivery::ALL {
            m.webhook_deliveries.with_label_values(&[result.name()]);
        }
        // Every series an alert rule watches exists from the start at 0:
        // `increase()` cannot see the first loss of a series born at 1.
        for site in miner_ebpf_common::DropSite::ALL {
            m.events_lost.with_label_values(&[site.name()]);
        }
        for sink in ["stdout", "file"] {
            for reason in super::line_writer::LineLoss::ALL {
                m.alert_lines_lost.with_label_values(&[sink, reason.name()]);
            }
        }
        for reason in ["expired", "capacity", "replaced"] {
            m.process_evictions.with_label_values(&[reason]);
        }
        for result in ["ok", "rejected"] {
            m.config_reloads.with_label_values(&[result]);
        }
        for result in ["verified", "unverified", "unreadable"] {
            m.provenance_checks.with_label_values(&[result]);
        }
        m.build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                &miner_ebpf_common::ABI_VERSION.to_string(),
            ])
            .set(1);
        #[cfg(target_os = "linux")]
        register(
            &m.registry,
            "process",
            prometheus::process_collector::ProcessCollector::for_self(),
        )?;
        Ok(m)
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition format, as served on `/metrics`.
    pub fn encode(&self) -> Result<String, MetricsError> {
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .map_err(MetricsError::Encode)?;
        // The encoder only writes UTF-8 (names, labels and floats).
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Counts one decoded event; a `Lost` report adds its count per site.
    pub fn observe_event(&self, ev: &Event) {
        self.count_kind(ev.kind(), 1);
        if let Event::Lost(lost) = ev {
            self.events_lost
                .with_label_values(&[lost.site.name()])
                .inc_by(lost.count);
        }
    }

    /// Forks and exits the kernel counted without sending records.
    pub fn observe_quiet_forks(&self, n: u64) {
        if n == 0 {
            return;
        }
        self.quiet_forks.inc_by(n);
        self.count_kind("fork", n);
        self.count_kind("exit", n);
    }

    fn count_kind(&self, kind: &str, n: u64) {
        match EVENT_KINDS.iter().position(|k| *k == kind) {
            Some(i) => self.events_by_kind[i].inc_by(n),
            None => self.events.with_label_values(&[kind]).inc_by(n),
        }
    }

    /// Kernel timestamp of a record vs. when user space decoded it.
    pub fn observe_poll_lag(&self, kernel: Mono, decoded: Mono) {
        self.ringbuf_poll_lag
            .observe(decoded.saturating_sub(kernel) as f64 / 1e9);
    }

    /// Counts one alert and its detection latency.
    pub fn observe_alert(&self, rule: &str, severity: &str, latency_ms: u64) {
        self.alerts.with_label_values(&[rule, severity]).inc();
        self.detection_latency.observe(latency_ms as f64 / 1e3);
    }
}

fn register<C: prometheus::core::Collector + 'static>(
    r: &Registry,
    name: &'static str,
    c: C,
) -> Result<(), MetricsError> {
    r.register(Box::new(c))
        .map_err(|source| MetricsError::Register { name, source })
}

fn counter(r: &Registry, name: &'static str, help: &str) -> Result<IntCounter, MetricsError> {
    let c =
        IntCounter::new(name, help).map_err(|source| MetricsError::Register { name, source })?;
    register(r, name, c.clone())?;
    Ok(c)
}

fn counter_vec(
    r: &Registry,
    name: &'static str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, MetricsError> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .map_err(|source| MetricsError::Register { name, source })?;
    register(r, name, c.clone())?;
    Ok(c)
}

fn gauge(r: &Registry, name: &'static str, help: &str) -> Result<IntGauge, MetricsError> {
    let g = IntGauge::new(name, help).map_err(|source| MetricsError::Register { name, source })?;
    register(r, name, g.clone())?;
    Ok(g)
}

fn histogram(
    r: &Registry,
    name: &'static str,
    help: &str,
    buckets: &[f64],
) -> Result<Histogram, MetricsError> {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
        .map_err(|source| MetricsError::Register { name, source })?;
    register(r, name, h.clone())?;
    Ok(h)
}
