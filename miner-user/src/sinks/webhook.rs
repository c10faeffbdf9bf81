//! Best-effort alert delivery by HTTP POST.
//!
//! The receiver is someone else's server: it can be slow, down or
//! unreachable, and none of that may delay detection. So the POSTs run on
//! their own thread behind a bounded queue; a full queue drops the new alert
//! and counts it (the alert is still in stdout and the file). Blocking I/O
//! on a dedicated thread (ureq) rather than tasks on the daemon's runtime:
//! a stuck TLS handshake then cannot starve anything else.

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::time::Duration;

use prometheus::IntCounterVec;

use crate::background::Background;
use crate::sinks::config::AlertsConfig;

/// What became of one delivery attempt: the `result` label of
/// `minerwatch_webhook_deliveries_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    /// Failed, and will be tried again.
    Retried,
    /// Failed and out of retries.
    Failed,
    /// The queue was full: never tried.
    Dropped,
}

impl Delivery {
    pub const ALL: [Delivery; 4] = [
        Delivery::Sent,
        Delivery::Retried,
        Delivery::Failed,
        Delivery::Dropped,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Delivery::Sent => "sent",
            Delivery::Retried => "retried",
            Delivery::Failed => "failed",
            Delivery::Dropped => "dropped",
        }
    }
}

fn count(deliveries: &IntCounterVec, d: Delivery) {
    deliveries.with_label_values(&[d.name()]).inc();
}

/// Longest wait between two attempts, however many retries are configured.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("starting the webhook thread failed: {0}")]
    Spawn(#[source] std::io::Error),
}

/// Why one attempt failed; logged, never returned to the detector.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("{0}")]
    Transport(#[from] ureq::Error),
}

pub struct Webhook {
    queue: Option<SyncSender<Arc<[u8]>>>,
    /// Dropping it tells the worker to stop waiting between retries.
    stop: Option<mpsc::Sender<()>>,
    deliveries: IntCounterVec,
    thread: Background,
}

struct Worker {
    url: String,
    agent: ureq::Agent,
    retries: u32,
    backoff: Duration,
    stop: Receiver<()>,
    deliveries: IntCounterVec,
}

impl Webhook {
    /// Starts the delivery thread for `url` (already validated by config).
    pub fn start(
        url: &str,
        cfg: &AlertsConfig,
        deliveries: IntCounterVec,
    ) -> Result<Webhook, WebhookError> {
        let (queue_tx, queue_rx) = mpsc::sync_channel::<Arc<[u8]>>(cfg.webhook_queue);
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_millis(cfg.webhook_timeout_ms)))
            .http_status_as_error(false)
            // A redirect would turn the POST into a GET or resend the alert
            // elsewhere; the operator configures the final URL instead.
            .max_redirects(0)
            .user_agent(concat!("minerwatch/", env!("CARGO_PKG_VERSION")))
            .build();
        let worker = Worker {
            url: url.to_owned(),
            agent: ureq::Agent::new_with_config(config),
            retries: cfg.webhook_retries,
            backoff: Duration::from_millis(cfg.webhook_backoff_ms),
            stop: stop_rx,
            deliveries: deliveries.clone(),
        };
        let thread = Background::spawn("alert-webhook".into(), move || worker.run(queue_rx))
            .map_err(WebhookError::Spawn)?;
        Ok(Webhook {
            queue: Some(queue_tx),
            stop: Some(stop_tx),
            deliveries,
            thread,
        })
    }

    /// Queues one JSON body. Never blocks; `false` when it was dropped
    /// because the queue is full (counted as `dropped`).
    pub fn enqueue(&self, body: Arc<[u8]>) -> bool {
        let Some(queue) = &self.queue else {
            return false;
        };
        match queue.try_send(body) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                count(&self.deliveries, Delivery::Dropped);
                false
            }
        }
    }

    /// Stops accepting alerts, lets the worker post what is queued (one
    /// attempt each, no more waiting between retries) and waits up to
    /// `deadline` for it. Returns `false` if the worker was still busy: its
    /// thread is then left to die with the process.
    pub fn close(&mut self, deadline: Duration) -> bool {
        self.queue = None;
        self.stop = None;
        self.thread.finish(deadline)
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        // Never wait in drop: shutdown paths call `close` with a deadline.
        self.queue = None;
        self.stop = None;
    }
}

impl Worker {
    fn run(&self, queue: Receiver<Arc<[u8]>>) {
        while let Ok(body) = queue.recv() {
            self.deliver(&body);
        }
    }

    fn stopping(&self) -> bool {
        matches!(self.stop.try_recv(), Err(TryRecvError::Disconnected))
    }

    fn deliver(&self, body: &[u8]) {
        let mut wait = self.backoff;
        let mut attempt = 0;
        loop {
            match self.post(body) {
                Ok(()) => {
                    count(&self.deliveries, Delivery::Sent);
                    return;
                }
                Err(e) if attempt < self.retries && !self.stopping() => {
                    log::debug!(
                        "alert webhook attempt {} failed: {e}; retrying in {wait:?}",
                        attempt + 1
                    );
                    count(&self.deliveries, Delivery::Retried);
                    // Wakes early (Disconnected) when the daemon shuts down.
                    if let Err(RecvTimeoutError::Disconnected) = self.stop.recv_timeout(wait) {
                        // Shutdown: one last attempt, then give up.
                        if self.post(body).is_ok() {
                            count(&self.deliveries, Delivery::Sent);
                        } else {
                            count(&self.deliveries, Delivery::Failed);
                        }
                        return;
                    }
                    attempt += 1;
                    wait = (wait * 2).min(MAX_BACKOFF);
                }
                Err(e) => {
                    // Not the URL: webhook URLs often embed their secret.
                    log::warn!("alert webhook failed after {} attempts: {e}", attempt + 1);
                    count(&self.deliveries, Delivery::Failed);
                    return;
                }
            }
        }
    }

    fn post(&self, body: &[u8]) -> Result<(), AttemptError> {
        let resp = self
            .agent
            .post(&self.url)
            .header("content-type", "application/json")
            .send(body)?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(AttemptError::Status(status))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::time::Instant;

    use super::*;
    use crate::sinks::metrics::Metrics;

    /// Reads one HTTP/1.1 request (headers + Content-Length body).
    fn read_request(stream: &mut std::net::TcpStream) -> (String, Vec<u8>) {
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
            head.push_str(&line);
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body).expect("body");
        (head, body)
    }

    fn counts(m: &Metrics) -> [u64; 4] {
        Delivery::ALL.map(|r| m.webhook_deliveries.with_label_values(&[r.name()]).get())
    }

    #[test]
    fn delivery_results_keep_their_metric_names() {
        assert_eq!(
            Delivery::ALL.map(Delivery::name),
            ["sent", "retried", "failed", "dropped"]
        );
    }

    #[test]
    fn retries_until_the_receiver_accepts() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let server = std::thread::spawn(move || {
            let mut bodies = Vec::new();
            for status in [
                "500 Internal Server Error",
                "503 Service Unavailable",
                "204 No Content",
            ] {
                let (mut s, _) = listener.accept().expect("accept");
                let (head, body) = read_request(&mut s);
                assert!(head.starts_with("POST /hook HTTP/1.1"), "{head}");
                assert!(
                    head.to_ascii_lowercase()
                        .contains("content-type: application/json"),
                    "{head}"
                );
                bodies.push(body);
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
            bodies
        });
        let metrics = Metrics::new().expect("metrics");
        let cfg = AlertsConfig {
            webhook_backoff_ms: 5,
            webhook_retries: 3,
            ..AlertsConfig::default()
        };
        let mut hook =
            Webhook::start(&url, &cfg, metrics.webhook_deliveries.clone()).expect("start");
        let body: Arc<[u8]> = Arc::from(&b"{\"kind\":\"alert\"}\n"[..]);
        assert!(hook.enqueue(body.clone()));
        let bodies = server.join().expect("server");
        assert_eq!(bodies, vec![body.to_vec(); 3]);
        assert!(hook.close(Duration::from_secs(2)), "worker finished");
        assert_eq!(counts(&metrics), [1, 2, 0, 0]);
    }

    #[test]
    fn full_queue_drops_instead_of_blocking() {
        // Accepts connections but never answers: every POST hangs until the
        // (long) timeout, so the queue fills.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        let metrics = Metrics::new().expect("metrics");
        let cfg = AlertsConfig {
            webhook_queue: 2,
            webhook_timeout_ms: 60_000,
            ..AlertsConfig::default()
        };
        let mut hook =
            Webhook::start(&url, &cfg, metrics.webhook_deliveries.clone()).expect("start");
        let t0 = Instant::now();
        let accepted = (0..1000)
            .filter(|_| hook.enqueue(Arc::from(&b"{}\n"[..])))
            .count();
        let took = t0.elapsed();
        assert!(
            took < Duration::from_millis(500),
            "enqueue blocked: {took:?}"
        );
        assert!((2..=3).contains(&accepted), "accepted {accepted}");
        assert_eq!(counts(&metrics)[3], 1000 - accepted as u64);
        // Shutdown does not wait for the hung receiver beyond its deadline.
        let t0 = Instant::now();
        assert!(!hook.close(Duration::from_millis(200)));
        assert!(t0.elapsed() < Duration::from_secs(1));
        drop(listener);
    }
}
