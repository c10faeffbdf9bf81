//! The `[alerts]`, `[metrics]` and `[tail]` configuration sections.
//!
//! Every key here is documented, with its default, in
//! `config/minerwatch.toml`; a test keeps the two in step.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::defaults;
use crate::invalid::Invalid;

/// Where verdicts go. Alerts are rare and must not be lost, so the file sink
/// syncs every line; the webhook is best effort and never slows detection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// One JSON line per alert on standard output (the container log).
    pub stdout: bool,
    /// Append-only JSON-lines file that survives restarts.
    pub file: Option<PathBuf>,
    /// `http://` or `https://` URL that receives each alert as a JSON POST.
    pub webhook_url: Option<String>,
    /// Alerts waiting for the webhook; past this, new alerts are dropped
    /// (and counted) rather than delaying detection.
    pub webhook_queue: usize,
    /// Per-request timeout (connect + send + response).
    pub webhook_timeout_ms: u64,
    /// Further attempts after a failed POST.
    pub webhook_retries: u32,
    /// Wait before the first retry; doubles for each further retry.
    pub webhook_backoff_ms: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            stdout: true,
            file: None,
            webhook_url: None,
            webhook_queue: 1024,
            webhook_timeout_ms: 5000,
            webhook_retries: 3,
            webhook_backoff_ms: 500,
        }
    }
}

impl AlertsConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        if let Some(file) = &self.file
            && (file.as_os_str().is_empty() || file.is_relative())
        {
            return Err(Invalid::new(
                "alerts.file",
                format!(
                    "{:?} is not an absolute path; use e.g. {:?}",
                    file.display().to_string(),
                    defaults::ALERTS_FILE
                ),
            ));
        }
        if let Some(url) = &self.webhook_url {
            check_url(url).map_err(|why| {
                Invalid::new(
                    "alerts.webhook_url",
                    format!("{url:?} {why}; use e.g. \"https://hooks.example.com/minerwatch\""),
                )
            })?;
        }
        if !(1..=1_000_000).contains(&self.webhook_queue) {
            return Err(Invalid::new(
                "alerts.webhook_queue",
                format!(
                    "{} is out of range; use 1..=1000000 (default 1024)",
                    self.webhook_queue
                ),
            ));
        }
        if !(100..=120_000).contains(&self.webhook_timeout_ms) {
            return Err(Invalid::new(
                "alerts.webhook_timeout_ms",
                format!(
                    "{} is out of range; use 100..=120000 (default 5000)",
                    self.webhook_timeout_ms
                ),
            ));
        }
        if self.webhook_retries > 100 {
            return Err(Invalid::new(
                "alerts.webhook_retries",
                format!(
                    "{} is out of range; use 0..=100 (default 3)",
                    self.webhook_retries
                ),
            ));
        }
        if !(1..=600_000).contains(&self.webhook_backoff_ms) {
            return Err(Invalid::new(
                "alerts.webhook_backoff_ms",
                format!(
                    "{} is out of range; use 1..=600000 (default 500)",
                    self.webhook_backoff_ms
                ),
            ));
        }
        Ok(())
    }
}

/// Why a webhook URL is unusable, as the end of a sentence.
fn check_url(url: &str) -> Result<(), &'static str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or("is not an http:// or https:// URL")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return Err("has no host");
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace");
    }
    Ok(())
}

/// The Prometheus endpoint (`/metrics`, `/healthz`, `/readyz`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve the endpoint at all (the DaemonSet's probes need it).
    pub enabled: bool,
    /// IP:PORT to listen on. An IP rather than a host name: resolving a name
    /// at start would make the daemon depend on DNS being up.
    pub addr: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            addr: defaults::METRICS_ADDR.to_owned(),
        }
    }
}

impl MetricsConfig {
    /// The validated listen address.
    pub fn socket_addr(&self) -> Result<SocketAddr, Invalid> {
        parse_listen_addr(&self.addr).map_err(|why| Invalid::new("metrics.addr", why))
    }

    pub fn validate(&self) -> Result<(), Invalid> {
        self.socket_addr().map(|_| ())
    }
}

/// Parses IP:PORT, explaining a port out of range apart from other typos
/// because `SocketAddr`'s own error says neither.
pub fn parse_listen_addr(s: &str) -> Result<SocketAddr, String> {
    let fix = format!(
        "use IP:PORT such as {} or [::]:{}",
        defaults::METRICS_ADDR,
        defaults::METRICS_PORT
    );
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Some((ip, port)) = s.rsplit_once(':') {
        let ip_ok = ip.parse::<std::net::IpAddr>().is_ok()
            || ip
                .strip_prefix('[')
                .and_then(|i| i.strip_suffix(']'))
                .is_some_and(|i| i.parse::<std::net::Ipv6Addr>().is_ok());
        if ip_ok && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("port {port} is above 65535; {fix}"));
        }
    }
    Err(format!("{s:?} is not an address; {fix}"))
}

/// The live-tail socket (`minerwatch tail`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TailConfig {
    /// Serve the live stream at all.
    pub enabled: bool,
    /// Unix socket path; its directory is created mode 0700, the socket 0600.
    pub socket: PathBuf,
    /// Messages buffered per client; a client that falls further behind
    /// loses messages (and is told how many) instead of slowing the daemon.
    pub client_queue: usize,
    /// A client whose socket accepts nothing for this long is disconnected.
    pub stall_timeout_ms: u64,
    /// Concurrent clients; each costs a queue of `client_queue` messages.
    pub max_clients: usize,
}

impl Default for TailConfig {
    fn default() -> Self {
        TailConfig {
            enabled: true,
            socket: PathBuf::from(defaults::TAIL_SOCKET),
            client_queue: 4096,
            stall_timeout_ms: 10_000,
            max_clients: 16,
        }
    }
}

impl TailConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.socket.as_os_str().is_empty() || self.socket.is_relative() {
            return Err(Invalid::new(
                "tail.socket",
                format!(
                    "{:?} is not an absolute path; use e.g. {:?}",
                    self.socket.display().to_string(),
                    defaults::TAIL_SOCKET
                ),
            ));
        }
        // sun_path holds 108 bytes including the terminating NUL.
        if self.socket.as_os_str().len() > 107 {
            return Err(Invalid::new(
                "tail.socket",
                format!(
                    "path is {} bytes, longer than a unix socket allows (107); use a shorter path such as {:?}",
                    self.socket.as_os_str().len(),
                    defaults::TAIL_SOCKET
                ),
            ));
        }
        if !(1..=1_000_000).contains(&self.client_queue) {
            return Err(Invalid::new(
                "tail.client_queue",
                format!(
                    "{} is out of range; use 1..=1000000 (default 4096)",
                    self.client_queue
                ),
            ));
        }
        if !(100..=600_000).contains(&self.stall_timeout_ms) {
            return Err(Invalid::new(
                "tail.stall_timeout_ms",
                format!(
                    "{} is out of range; use 100..=600000 (default 10000)",
                    self.stall_timeout_ms
                ),
            ));
        }
        if !(1..=1024).contains(&self.max_clients) {
            return Err(Invalid::new(
                "tail.max_clients",
                format!(
                    "{} is out of range; use 1..=1024 (default 16)",
                    self.max_clients
                ),
            ));
        }
        Ok(())
    }
}
