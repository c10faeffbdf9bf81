//! What the detector says: a rule fired for a process, with its evidence.
//! Consumed by every sink (alerts, metrics, tail, response).

use serde::{Deserialize, Serialize};

use super::ChainLink;
use crate::event::Provenance;
use crate::time::Mono;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Debug,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Severity::Debug,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Severity::Debug => "debug",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl std::str::FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Severity::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown severity {s:?}; expected one of debug, low, medium, high, critical"
                )
            })
    }
}

/// The named detection rules. snake_case names are stable: they appear in
/// alerts, metrics labels and the response policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Pool protocol (Stratum v1/v2, XMRig login) from an unverified binary.
    PoolProtocolUnverified,
    /// Pool protocol from a verified binary (a script under a packaged
    /// interpreter) with sustained CPU.
    PoolProtocolBusy,
    /// Unverified binary + pool-port connection (or TLS to a pool port) +
    /// sustained CPU.
    PoolPortBusyUnverified,
    /// A process tree or cgroup whose workers burn CPU while one member
    /// holds a pool connection.
    MinerGroup,
    /// Miner command line (stratum URL, wallet, miner options) + sustained
    /// CPU from an unverified binary, or from a packaged miner program
    /// (`monerod --start-mining`).
    MinerCommandLine,
    /// A thread showed the RandomX MXCSR shape + sustained CPU, whatever
    /// the binary's provenance, name, port or protocol.
    RandomxFingerprint,
}

impl Rule {
    pub const ALL: [Rule; 6] = [
        Rule::PoolProtocolUnverified,
        Rule::PoolProtocolBusy,
        Rule::PoolPortBusyUnverified,
        Rule::MinerGroup,
        Rule::MinerCommandLine,
        Rule::RandomxFingerprint,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Rule::PoolProtocolUnverified => "pool_protocol_unverified",
            Rule::PoolProtocolBusy => "pool_protocol_busy",
            Rule::PoolPortBusyUnverified => "pool_port_busy_unverified",
            Rule::MinerGroup => "miner_group",
            Rule::MinerCommandLine => "miner_command_line",
            Rule::RandomxFingerprint => "randomx_fingerprint",
        }
    }
}

/// One piece of evidence: a signal, when it was seen, and a human detail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// `pool_protocol`, `pool_port`, `tls_pool_port`, `cpu_sustained`,
    /// `unverified_exec`, `miner_cmdline`, `group_cpu`, `cpu_fingerprint`,
    /// `miner_program`, `hint`…
    pub signal: String,
    pub time: Mono,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// When the detector decided.
    pub time: Mono,
    pub rule: Rule,
    pub severity: Severity,
    pub pid: u32,
    pub tgid: u32,
    pub ppid: u32,
    pub comm: String,
    /// Absolute executable path if known, else the exec filename.
    pub exe: Option<String>,
    pub cmdline: Vec<String>,
    pub uid: u32,
    pub cgroup_id: u64,
    pub cgroup: Option<String>,
    /// Exec identity, so response can check the target has not changed.
    pub exe_dev: u64,
    pub exe_ino: u64,
    pub start_boottime_ns: u64,
    pub provenance: Option<Provenance>,
    pub evidence: Vec<Evidence>,
    /// Verdict time minus the earliest of process start and first evidence.
    pub latency_ms: u64,
    /// Other tgids the verdict covers (a miner's worker processes, the rest
    /// of its tree or cgroup); the response acts on all of them.
    pub members: Vec<u32>,
    /// The process's ancestors, oldest first (what started it).
    #[serde(default)]
    pub chain: Vec<ChainLink>,
    /// Older ancestors than `chain` shows exist (`detector.chain.max_depth`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub chain_truncated: bool,
}
