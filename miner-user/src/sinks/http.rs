//! The HTTP endpoint: `/metrics`, `/healthz`, `/readyz`.
//!
//! Liveness and readiness answer different questions for Kubernetes:
//! `/healthz` is "the process serves requests" (restart it otherwise), while
//! `/readyz` is "detection works right now": programs are attached and the
//! ring-buffer reader drained recently. A daemon that is up but blind must
//! show as not ready, not as healthy-and-silent, and so must one that is
//! losing kernel records right now (`degraded`, until a loss-free window
//! has passed).

use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use miner_ebpf_common::DropSite;

use crate::sinks::metrics::Metrics;
use crate::time::Mono;

/// How recently the ring-buffer reader must have drained for `/readyz`.
pub const READY_DRAIN_MAX_NS: u64 = 5_000_000_000;

/// `/readyz` says degraded for this long after the kernel last dropped
/// records.
pub const DEGRADED_AFTER_LOSS_NS: u64 = 10_000_000_000;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("serving HTTP on {addr} failed: {source}")]
    Serve {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// Readiness inputs, written by the sensor and read by `/readyz`: atomics,
/// so the reader loop never takes a lock to report progress.
#[derive(Debug, Default)]
pub struct Health {
    attached: AtomicU32,
    /// `Mono` ns of the last drain; 0 = never.
    last_drain: AtomicU64,
    /// `Mono` ns of the last kernel-side loss; 0 = never.
    last_loss: AtomicU64,
    /// Where it was and how many records (for the message).
    loss: Mutex<(&'static str, u64)>,
}

impl Health {
    pub fn new() -> Health {
        Health::default()
    }

    /// Number of programs attached (0: detection is blind).
    pub fn set_attached(&self, programs: u32) {
        self.attached.store(programs, Ordering::Relaxed);
    }

    pub fn attached(&self) -> u32 {
        self.attached.load(Ordering::Relaxed)
    }

    /// The reader finished a drain of the ring buffer at `now`.
    pub fn mark_drained(&self, now: Mono) {
        self.last_drain.store(now.ns().max(1), Ordering::Relaxed);
    }

    /// The kernel dropped `count` records at `site`.
    pub fn mark_lost(&self, now: Mono, site: DropSite, count: u64) {
        *self.loss.lock().unwrap_or_else(|p| p.into_inner()) = (site.name(), count);
        self.last_loss.store(now.ns().max(1), Ordering::Relaxed);
    }

    /// `Ok` when ready at `now`, else the reason on one line.
    pub fn readiness(&self, now: Mono) -> Result<(), String> {
        if self.attached() == 0 {
            return Err("not ready: no eBPF programs attached".into());
        }
        let last = self.last_drain.load(Ordering::Relaxed);
        if last == 0 {
            return Err("not ready: the ring-buffer reader has not drained yet".into());
        }
        let age = now.ns().saturating_sub(last);
        if age > READY_DRAIN_MAX_NS {
            return Err(format!(
                "not ready: the ring-buffer reader last drained {:.1} s ago (limit {} s)",
                age as f64 / 1e9,
                READY_DRAIN_MAX_NS / 1_000_000_000
            ));
        }
        let lost = self.last_loss.load(Ordering::Relaxed);
        let since = now.ns().saturating_sub(lost);
        if lost != 0 && since <= DEGRADED_AFTER_LOSS_NS {
            let (site, count) = *self.loss.lock().unwrap_or_else(|p| p.into_inner());
            return Err(format!(
                "degraded: the kernel dropped {count} records at {site} {:.1} s ago (minerwatch_events_lost_total); ready again after {} s without losses",
                since as f64 / 1e9,
                DEGRADED_AFTER_LOSS_NS / 1_000_000_000
            ));
        }
        Ok(())
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// The routes, for embedding or testing without a socket.
pub fn router(metrics: Arc<Metrics>, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz_handler))
        .with_state(AppState { metrics, health })
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    axum::serve(listener, router(metrics, health))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| HttpError::Serve { addr, source })
}

async fn metrics_handler(State(s): State<AppState>) -> Response {
    match s.metrics.encode() {
        Ok(body) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn readyz_handler(State(s): State<AppState>) -> Response {
    match s.health.readiness(Mono::now()) {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;
    use crate::event::{Event, Lost};

    /// A bare HTTP/1.1 GET, so the test exercises the real server and wire
    /// format rather than a client library's view of it.
    async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("write");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.expect("read");
        let text = String::from_utf8(raw).expect("utf-8 response");
        let (head, body) = text.split_once("\r\n\r\n").expect("header end");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("status");
        (status, head.to_owned(), body.to_owned())
    }

    #[tokio::test]
    async fn serves_metrics_health_and_readiness() {
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let health = Arc::new(Health::new());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, metrics.clone(), health.clone(), async {
            let _ = stop_rx.await;
        }));

        metrics.events.with_label_values(&["exec"]).inc_by(3);
        metrics.observe_event(&Event::Lost(Lost {
            time: Mono(1),
            site: DropSite::ExecRingFull,
            count: 7,
        }));
        metrics.decode_errors.inc();
        metrics.observe_alert("miner_group", "high", 1500);
        metrics.tail_clients.set(2);

        let t0 = Instant::now();
        let (status, head, body) = get(addr, "/metrics").await;
        let scrape = t0.elapsed();
        assert_eq!(status, 200);
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
        let mut times = vec![Duration::ZERO; 50];
        for t in times.iter_mut() {
            let t0 = Instant::now();
            assert_eq!(get(addr, "/metrics").await.0, 200);
            *t = t0.elapsed();
        }
        times.sort();
        eprintln!(
            "scrape of /metrics over loopback: first {scrape:?}, median of 50 {:?}, max {:?}, {} bytes",
            times[25],
            times[49],
            body.len()
        );

        let lines = body.lines().map(|l| Ok(l.to_owned()));
        let parsed = prometheus_parse::Scrape::parse(lines).expect("valid exposition format");
        let value = |name: &str, labels: &[(&str, &str)]| -> Option<f64> {
            parsed
                .samples
                .iter()
                .find(|s| {
                    s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
                })
                .map(|s| match s.value {
                    prometheus_parse::Value::Counter(v)
                    | prometheus_parse::Value::Gauge(v)
                    | prometheus_parse::Value::Untyped(v) => v,
                    _ => f64::NAN,
                })
        };
        assert_eq!(
            value("minerwatch_events_total", &[("kind", "exec")]),
            Some(3.0)
        );
        assert_eq!(
            value("minerwatch_events_total", &[("kind", "lost")]),
            Some(1.0)
        );
        assert_eq!(
            value("minerwatch_events_total", &[("kind", "connect")]),
            Some(0.0)
        );
        assert_eq!(
            value(
                "minerwatch_events_lost_total",
                &[("kind", "exec_ring_full")]
            ),
            Some(7.0)
        );
        assert_eq!(value("minerwatch_decode_errors_total", &[]), Some(1.0));
        assert_eq!(
            value(
                "minerwatch_alerts_total",
                &[("rule", "miner_group"), ("severity", "high")]
            ),
            Some(1.0)
        );
        assert_eq!(value("minerwatch_tail_clients", &[]), Some(2.0));
        assert_eq!(
            value(
                "minerwatch_build_info",
                &[("version", env!("CARGO_PKG_VERSION"))]
            ),
            Some(1.0)
        );
        let latency = parsed
            .samples
            .iter()
            .find(|s| s.metric == "minerwatch_detection_latency_seconds")
            .expect("latency histogram");
        match &latency.value {
            prometheus_parse::Value::Histogram(buckets) => {
                let le2 = buckets
                    .iter()
                    .find(|b| b.less_than == 2.0)
                    .expect("le=2 bucket");
                let le1 = buckets
                    .iter()
                    .find(|b| b.less_than == 1.0)
                    .expect("le=1 bucket");
                assert_eq!((le1.count, le2.count), (0.0, 1.0));
            }
            other => panic!("latency is not a histogram: {other:?}"),
        }
        for family in [
            "minerwatch_tracked_processes",
            "minerwatch_provenance_hash_seconds",
            "minerwatch_ringbuf_poll_lag_seconds",
            "minerwatch_programs_attached",
            "minerwatch_tail_skipped_total",
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
        ] {
            assert!(parsed.docs.contains_key(family), "no HELP for {family}");
        }
        // No label may carry a per-process value.
        for s in &parsed.samples {
            for (k, _) in s.labels.iter() {
                assert!(
                    !["pid", "tgid", "comm", "exe", "path"].contains(&k.as_str()),
                    "{} has {k}",
                    s.metric
                );
            }
        }

        assert_eq!(get(addr, "/healthz").await.0, 200);
        let (status, _, body) = get(addr, "/readyz").await;
        assert_eq!(
            (status, body.as_str()),
            (503, "not ready: no eBPF programs attached\n")
        );
        health.set_attached(7);
        let (status, _, body) = get(addr, "/readyz").await;
        assert_eq!(
            (status, body.as_str()),
            (
                503,
                "not ready: the ring-buffer reader has not drained yet\n"
            )
        );
        health.mark_drained(Mono::now());
        assert_eq!(get(addr, "/readyz").await.0, 200);
        assert_eq!(get(addr, "/nope").await.0, 404);

        let _ = stop_tx.send(());
        tokio::time::timeout(Duration::from_secs(2), server)
            .await
            .expect("server stops within 2 s")
            .expect("join")
            .expect("serve");
    }

    #[test]
    fn readiness_goes_stale_after_five_seconds() {
        let h = Health::new();
        h.set_attached(1);
        h.mark_drained(Mono::from_secs(100));
        assert_eq!(h.readiness(Mono::from_secs(104)), Ok(()));
        assert_eq!(
            h.readiness(Mono::from_secs(106)),
            Err("not ready: the ring-buffer reader last drained 6.0 s ago (limit 5 s)".into())
        );
    }

    #[test]
    fn losses_make_it_degraded_until_a_quiet_window_passed() {
        let h = Health::new();
        h.set_attached(1);
        h.mark_drained(Mono::from_secs(100));
        h.mark_lost(Mono::from_secs(101), DropSite::ExecRingFull, 42);
        h.mark_drained(Mono::from_secs(103));
        assert_eq!(
            h.readiness(Mono::from_secs(103)),
            Err("degraded: the kernel dropped 42 records at exec_ring_full 2.0 s ago (minerwatch_events_lost_total); ready again after 10 s without losses".into())
        );
        h.mark_drained(Mono::from_secs(112));
        assert_eq!(h.readiness(Mono::from_secs(112)), Ok(()));
    }
}
