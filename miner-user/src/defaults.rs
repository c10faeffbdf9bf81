//! Default locations and ports, in one place: the daemon, the docs, the
//! Kubernetes manifests (and their tests) all refer to these.

/// Prometheus endpoint (`/metrics`, `/healthz`, `/readyz`).
pub const METRICS_PORT: u16 = 9747;
pub const METRICS_ADDR: &str = "0.0.0.0:9747";
/// Live tail socket (root-only, mode 0600).
pub const TAIL_SOCKET: &str = "/run/minerwatch/minerwatch.sock";
/// Config file the DaemonSet mounts (the binary embeds the same default).
pub const CONFIG_PATH: &str = "/etc/minerwatch/minerwatch.toml";
/// Append-only alert log.
pub const ALERTS_FILE: &str = "/var/log/minerwatch/alerts.jsonl";
/// Root-only directory for quarantined executables.
pub const QUARANTINE_DIR: &str = "/var/lib/minerwatch/quarantine";
/// bpffs directory for pinned links (enforcement that outlives the daemon).
pub const BPFFS_DIR: &str = "/sys/fs/bpf/minerwatch";
/// Kernel interfaces the daemon reads.
pub const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";
pub const TRACEFS_PATH: &str = "/sys/kernel/tracing";
pub const PROC_PATH: &str = "/proc";
