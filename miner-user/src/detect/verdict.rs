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

/// What a piece of evidence says. The rules produce them, the response and
/// the tests match on them; snake_case names are stable: they appear in
/// alerts (`evidence[].signal`) and in replayed verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// The process's own flow spoke a pool protocol (payload bytes).
    PoolProtocol,
    /// A connection to a configured pool port.
    PoolPort,
    /// TLS to a pool port.
    TlsPoolPort,
    /// TLS whose server name is a pool's.
    TlsPoolSni,
    /// A connection to a configured pool address.
    PoolAddress,
    /// A proxy (SOCKS, HTTP CONNECT) asked for a pool endpoint.
    ProxyPoolDestination,
    /// Weak: long-lived TLS without ALPN, small records, most cores busy.
    TlsIdleNoAlpn,
    /// The process itself burnt CPU for the sustained window.
    CpuSustained,
    /// Its group (tree or cgroup workers) burnt CPU together.
    GroupCpu,
    /// The executable is not vouched for by the host's package database.
    UnverifiedExec,
    /// Packaged only by the image's own database (its author controls it).
    ImageVouchedExec,
    /// No provenance verdict came within `provenance_wait_ms`.
    ProvenanceUnknown,
    /// The command line names a pool, a wallet or miner options.
    MinerCmdline,
    /// A packaged binary that is a miner program by name.
    MinerProgram,
    /// The RandomX MXCSR shape on one of its threads.
    CpuFingerprint,
    /// Huge pages, MSR opens: supports, never decides.
    Hint,
}

impl Signal {
    pub const ALL: [Signal; 16] = [
        Signal::PoolProtocol,
        Signal::PoolPort,
        Signal::TlsPoolPort,
        Signal::TlsPoolSni,
        Signal::PoolAddress,
        Signal::ProxyPoolDestination,
        Signal::TlsIdleNoAlpn,
        Signal::CpuSustained,
        Signal::GroupCpu,
        Signal::UnverifiedExec,
        Signal::ImageVouchedExec,
        Signal::ProvenanceUnknown,
        Signal::MinerCmdline,
        Signal::MinerProgram,
        Signal::CpuFingerprint,
        Signal::Hint,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Signal::PoolProtocol => "pool_protocol",
            Signal::PoolPort => "pool_port",
            Signal::TlsPoolPort => "tls_pool_port",
            Signal::TlsPoolSni => "tls_pool_sni",
            Signal::PoolAddress => "pool_address",
            Signal::ProxyPoolDestination => "proxy_pool_destination",
            Signal::TlsIdleNoAlpn => "tls_idle_no_alpn",
            Signal::CpuSustained => "cpu_sustained",
            Signal::GroupCpu => "group_cpu",
            Signal::UnverifiedExec => "unverified_exec",
            Signal::ImageVouchedExec => "image_vouched_exec",
            Signal::ProvenanceUnknown => "provenance_unknown",
            Signal::MinerCmdline => "miner_cmdline",
            Signal::MinerProgram => "miner_program",
            Signal::CpuFingerprint => "cpu_fingerprint",
            Signal::Hint => "hint",
        }
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One piece of evidence: a signal, when it was seen, and a human detail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub signal: Signal,
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

impl Verdict {
    /// The first piece of evidence of this kind, if the verdict has one.
    pub fn evidence_of(&self, signal: Signal) -> Option<&Evidence> {
        self.evidence.iter().find(|e| e.signal == signal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names operators' alert rules and dashboards match on: a rename
    /// must fail here, not in a fleet.
    #[test]
    fn signals_serialise_to_their_stable_names() {
        let golden = [
            "pool_protocol",
            "pool_port",
            "tls_pool_port",
            "tls_pool_sni",
            "pool_address",
            "proxy_pool_destination",
            "tls_idle_no_alpn",
            "cpu_sustained",
            "group_cpu",
            "unverified_exec",
            "image_vouched_exec",
            "provenance_unknown",
            "miner_cmdline",
            "miner_program",
            "cpu_fingerprint",
            "hint",
        ];
        assert_eq!(Signal::ALL.map(Signal::name), golden);
        for s in Signal::ALL {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.name()));
            assert_eq!(serde_json::from_str::<Signal>(&json).unwrap(), s);
            assert_eq!(s.to_string(), s.name());
        }
    }
}
