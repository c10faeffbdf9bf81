//! The `[detector]` configuration section: what counts as a pool, what
//! counts as sustained CPU, and how long the detector remembers.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::invalid::Invalid;

/// Ports documented by public pools for plain and TLS stratum. Sources: the
/// pools' "getting started" pages and the example configs shipped with
/// XMRig, ethminer and their forks.
///
/// | pool | ports |
/// |---|---|
/// | supportxmr | 3333, 5555, 7777 (9000 TLS is left out: php-fpm, MinIO and ClickHouse live there) |
/// | minexmr (closed 2022, still in malware configs) | 4444, 5555, 6666, 7777 |
/// | nanopool | 14444, 14433 (TLS) XMR; 19999 ETC |
/// | moneroocean | 10001 … 18192 by difficulty, 20128 (TLS) |
/// | c3pool | 13333, 15555, 17777, 19999, 33333 (TLS) |
/// | herominers | 1111 … 1180 by coin (1111 XMR) |
/// | f2pool | 13531 (XMR), 1314 and 3333 (BTC), 6688 (ETH), 8118 (ETC) |
/// | 2miners | 2222 / 12222 (TLS) XMR, 2020 ETH, 1010 ETC, 8888 ERG |
/// | minergate, xmrpool.eu, hashvault, p2pool | 45560, 45700; 9999; 3333; 3333 |
pub const DEFAULT_POOL_PORTS: &[u16] = &[
    1010, 1111, 1314, 2020, 2222, 3333, 3334, 3335, 3357, 4444, 5555, 5588, 6666, 6688, 7777, 8118,
    8888, 9999, 10001, 10008, 10016, 10032, 10064, 10128, 10256, 10512, 11024, 12222, 13333, 13531,
    14433, 14444, 15555, 17777, 18192, 19999, 20128, 33333, 45560, 45700,
];

/// TLS server names (and their subdomains) of public pools.
pub const DEFAULT_POOL_DOMAINS: &[&str] = &[
    "supportxmr.com",
    "moneroocean.stream",
    "nanopool.org",
    "c3pool.com",
    "c3pool.org",
    "herominers.com",
    "f2pool.com",
    "2miners.com",
    "hashvault.pro",
    "minexmr.com",
    "xmrpool.eu",
    "unmineable.com",
    "nicehash.com",
    "minergate.com",
    "kryptex.network",
    "woolypooly.com",
    "zergpool.com",
    "monerohash.com",
    "p2pool.io",
];

/// Programs that mine when their command line says so: Debian's `monero`
/// (`monerod --start-mining`), XMRig and its forks, cpuminer and
/// cpuminer-opt, the classic Bitcoin/Litecoin CPU and ASIC miners, and
/// Ethereum-era GPU miners. Matched against the owning package and the
/// executable's file name.
pub const DEFAULT_MINER_NAMES: &[&str] = &[
    "monero",
    "monerod",
    "xmrig",
    "xmrig-mo",
    "xmrig-notls",
    "xmr-stak",
    "xmr-stak-rx",
    "cpuminer",
    "cpuminer-opt",
    "cpuminer-multi",
    "minerd",
    "bfgminer",
    "cgminer",
    "ethminer",
    "ccminer",
    "srbminer-multi",
    "lolminer",
    "t-rex",
    "nbminer",
    "wownerod",
];

/// `[detector.fingerprint_allow]`: programs whose RandomX work is expected
/// (an operator's own Monero node mining to its own wallet, a RandomX
/// benchmark box). Only `randomx_fingerprint` is silenced; the network and
/// command-line rules still apply.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FingerprintAllow {
    /// Executable paths (exact), or directory prefixes ending in `/`.
    pub paths: Vec<String>,
    /// SHA-256 of executables (64 hex digits, any case).
    pub sha256: Vec<String>,
}

impl FingerprintAllow {
    /// Is this executable (path, hash) allowed to show the fingerprint?
    pub fn allows(&self, path: Option<&str>, sha256: Option<&str>) -> bool {
        let by_path = path.is_some_and(|exe| {
            self.paths
                .iter()
                .any(|p| exe == p || (p.ends_with('/') && exe.starts_with(p.as_str())))
        });
        let by_hash = sha256.is_some_and(|h| self.sha256.iter().any(|x| x.eq_ignore_ascii_case(h)));
        by_path || by_hash
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// TCP destination ports that mining pools listen on. A successful
    /// connect to one of these, from an unverified binary that then burns
    /// CPU, is a pool connection unless the flow's first bytes show another
    /// protocol (HTTP, SSH, a database, non-mining JSON-RPC). Default: the
    /// ports documented by supportxmr, minexmr, nanopool, moneroocean,
    /// c3pool, herominers, f2pool, 2miners, minergate, xmrpool.eu.
    pub pool_ports: Vec<u16>,
    /// More pool ports, added to `pool_ports`: a site's own pool or a port
    /// seen in an incident, without restating the defaults.
    pub extra_pool_ports: Vec<u16>,
    /// Pool addresses, as IPs or CIDRs (`"198.51.100.7"`,
    /// `"2001:db8::/32"`): a connect to one counts like a pool port, on any
    /// port. Empty by default; fill it from a threat-intel feed.
    pub pool_addresses: Vec<String>,
    /// TLS server names of pools; a ClientHello whose SNI is one of these or
    /// a subdomain counts like TLS to a pool port, on any port (a miner on
    /// 443). Only seen when the SNI fits in the peeked bytes.
    pub pool_domains: Vec<String>,
    /// A CPU sample is "busy" at or above this many cores (on-CPU time of
    /// all threads / sample span). 0.3 sits below a miner throttled to half
    /// a core (cpulimit, XMRig `--cpu-max-threads-hint=50` on 2 cores) with
    /// margin for sampling jitter, and well above idle daemons. Range
    /// (0, 1]: a threshold above one core would miss single-thread miners.
    pub cpu_busy_cores: f64,
    /// Sliding window over which CPU is judged, in seconds. 10 s lets a
    /// miner that pauses and resumes (pause-on-active, duty cycling) stay
    /// "sustained" while busy in part of the window.
    pub cpu_window_secs: f64,
    /// CPU is "sustained" when busy samples add up to at least this many
    /// seconds inside the window. 2.5 s: a miner at ≥ 0.4 core is sustained
    /// after its third 1 Hz sample (the first one, cut by the exec, counts
    /// for the part of the interval the process lived), i.e. about 3 s
    /// after exec, which keeps the pool-port rule inside its 5 s budget; a
    /// short burst (a compile step, a TLS handshake, a health check) is not.
    pub cpu_sustained_secs: f64,
    /// How long a new kernel-seen connection to a pool port waits for its
    /// first bytes before it counts as a pool connection without them. The
    /// client's first packet follows the handshake within milliseconds; a
    /// busy service that opens a fresh HTTP connection to port 3333 must
    /// not alert in that gap. Connections found by the startup sweep have
    /// no first bytes to wait for.
    pub payload_wait_ms: u64,
    /// How long to wait for a provenance verdict before treating a live
    /// process as "provenance unknown" (which rules needing an unverified
    /// binary then accept, together with sustained CPU). Provenance normally
    /// lands within ~100 ms; 2000 ms tolerates a loaded hasher.
    pub provenance_wait_ms: u64,
    /// How long an exited process stays in the table, in seconds, so late
    /// events (payload, provenance, CPU sample) still resolve to it and a
    /// daemonized child can inherit from it.
    pub exit_grace_secs: u64,
    /// Hard cap on tracked processes. When full, the oldest exited process
    /// goes first, then the oldest live one without evidence, then the
    /// oldest with evidence; each eviction is counted.
    pub max_processes: usize,
    /// Cap on remembered connections (socket cookie → process), used to
    /// attribute payloads whose owner the kernel did not report.
    pub max_flows: usize,
    /// `[detector.chain]`: the ancestry each verdict carries.
    pub chain: super::ChainConfig,
    /// Weak evidence `tls_idle_no_alpn`: a TLS flow without ALPN that has
    /// stayed open at least this long (seconds, from its ClientHello)…
    pub tls_idle_open_secs: u64,
    /// …whose payload packets average at most this many bytes (a miner's
    /// shares and keepalives are 100-300 bytes; a transfer is not "idle"),
    /// while its process uses about every core. It joins the evidence of a
    /// verdict that fires anyway and never fires one.
    pub tls_idle_max_record_bytes: u64,
    /// CPUs of the machine, for "every core": not a config key, read at
    /// start (`sysconf(_SC_NPROCESSORS_ONLN)`).
    #[serde(skip, default = "online_cpus")]
    pub online_cpus: u32,
    /// Miner programs, by package or executable file name: a verified
    /// (packaged) binary on this list whose command line says it mines
    /// (`monerod --start-mining`, pool URL and wallet options) and that
    /// burns CPU is flagged by `miner_command_line` like an unverified one.
    /// Other packaged binaries never are (`grep stratum+tcp://` is not a
    /// miner).
    pub miner_names: Vec<String>,
    /// Executables allowed to show the RandomX fingerprint.
    pub fingerprint_allow: FingerprintAllow,
}

/// The online CPUs of this machine (1 if the call fails).
pub fn online_cpus() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    u32::try_from(n).unwrap_or(1).max(1)
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            pool_ports: DEFAULT_POOL_PORTS.to_vec(),
            extra_pool_ports: Vec::new(),
            pool_addresses: Vec::new(),
            pool_domains: DEFAULT_POOL_DOMAINS.iter().map(|s| s.to_string()).collect(),
            cpu_busy_cores: 0.3,
            cpu_window_secs: 10.0,
            cpu_sustained_secs: 2.5,
            payload_wait_ms: 1000,
            provenance_wait_ms: 2000,
            exit_grace_secs: 10,
            max_processes: 32_768,
            max_flows: 16_384,
            chain: super::ChainConfig::default(),
            tls_idle_open_secs: 20,
            tls_idle_max_record_bytes: 400,
            online_cpus: online_cpus(),
            miner_names: DEFAULT_MINER_NAMES.iter().map(|s| s.to_string()).collect(),
            fingerprint_allow: FingerprintAllow::default(),
        }
    }
}

/// An IP network parsed from `pool_addresses`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (ip, prefix) = match s.trim().split_once('/') {
            Some((ip, p)) => (ip.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.trim().parse::<IpAddr>().ok()?, None),
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Cidr { addr: ip, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl DetectorConfig {
    /// The TOML table (and error-key prefix) this section lives under.
    pub const SECTION: &'static str = "detector";

    /// Impossible values, as one error naming the key (`detector.<key>`)
    /// and the fix.
    pub fn validate(&self) -> Result<(), Invalid> {
        let key = |k: &str| format!("{}.{k}", Self::SECTION);
        if self.pool_ports.contains(&0) {
            return Err(Invalid::new(
                key("pool_ports"),
                "port 0 is not a TCP destination; remove it",
            ));
        }
        if self.extra_pool_ports.contains(&0) {
            return Err(Invalid::new(
                key("extra_pool_ports"),
                "port 0 is not a TCP destination; remove it",
            ));
        }
        for a in &self.pool_addresses {
            if Cidr::parse(a).is_none() {
                return Err(Invalid::new(
                    key("pool_addresses"),
                    format!(
                        "{a:?} is not an IP address or CIDR; use e.g. \"198.51.100.7\" or \"198.51.100.0/24\""
                    ),
                ));
            }
        }
        for d in &self.pool_domains {
            let ok = !d.is_empty()
                && d.len() <= 253
                && d.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
                && !d.starts_with('.');
            if !ok {
                return Err(Invalid::new(
                    key("pool_domains"),
                    format!(
                        "{d:?} is not a domain name; use e.g. \"supportxmr.com\" (subdomains match)"
                    ),
                ));
            }
        }
        let c = self.cpu_busy_cores;
        if !(c > 0.0 && c <= 1.0) {
            return Err(Invalid::new(
                key("cpu_busy_cores"),
                format!("{c} is out of range; use a fraction of one core in (0, 1], default 0.3"),
            ));
        }
        let w = self.cpu_window_secs;
        if !(2.0..=600.0).contains(&w) {
            return Err(Invalid::new(
                key("cpu_window_secs"),
                format!("{w} is out of range; use 2..=600 seconds, default 10"),
            ));
        }
        let s = self.cpu_sustained_secs;
        if !(s > 0.0 && s <= w) {
            return Err(Invalid::new(
                key("cpu_sustained_secs"),
                format!("{s} must be above 0 and at most cpu_window_secs ({w}); default 2.5"),
            ));
        }
        if self.payload_wait_ms > 10_000 {
            return Err(Invalid::new(
                key("payload_wait_ms"),
                format!(
                    "{} is out of range; use 0..=10000, default 1000",
                    self.payload_wait_ms
                ),
            ));
        }
        if self.provenance_wait_ms > 60_000 {
            return Err(Invalid::new(
                key("provenance_wait_ms"),
                format!(
                    "{} is out of range; use 0..=60000, default 2000",
                    self.provenance_wait_ms
                ),
            ));
        }
        if self.exit_grace_secs > 3600 {
            return Err(Invalid::new(
                key("exit_grace_secs"),
                format!(
                    "{} is out of range; use 0..=3600, default 10",
                    self.exit_grace_secs
                ),
            ));
        }
        if self.max_processes < 256 {
            return Err(Invalid::new(
                key("max_processes"),
                format!(
                    "{} is too small to follow a node; use at least 256, default 32768",
                    self.max_processes
                ),
            ));
        }
        for n in &self.miner_names {
            if n.is_empty() || n.contains('/') || n.chars().any(char::is_whitespace) {
                return Err(Invalid::new(
                    key("miner_names"),
                    format!(
                        "{n:?} is not a package or file name; use e.g. \"monerod\" (no path, no spaces)"
                    ),
                ));
            }
        }
        for (i, p) in self.fingerprint_allow.paths.iter().enumerate() {
            if !p.starts_with('/') {
                return Err(Invalid::new(
                    format!("{}.fingerprint_allow.paths[{i}]", Self::SECTION),
                    format!(
                        "{p:?} is not an absolute path; use e.g. \"/usr/bin/monerod\" or a directory ending in /"
                    ),
                ));
            }
        }
        for (i, h) in self.fingerprint_allow.sha256.iter().enumerate() {
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Invalid::new(
                    format!("{}.fingerprint_allow.sha256[{i}]", Self::SECTION),
                    format!("{h:?} is not a SHA-256; use 64 hex digits"),
                ));
            }
        }
        if self.max_flows < 64 {
            return Err(Invalid::new(
                key("max_flows"),
                format!(
                    "{} is too small; use at least 64, default 16384",
                    self.max_flows
                ),
            ));
        }
        self.chain.validate()?;
        if !(1..=86_400).contains(&self.tls_idle_open_secs) {
            return Err(Invalid::new(
                key("tls_idle_open_secs"),
                format!(
                    "{} is out of range; use 1..=86400, default 20",
                    self.tls_idle_open_secs
                ),
            ));
        }
        if !(1..=16_384).contains(&self.tls_idle_max_record_bytes) {
            return Err(Invalid::new(
                key("tls_idle_max_record_bytes"),
                format!(
                    "{} is out of range; use 1..=16384, default 400",
                    self.tls_idle_max_record_bytes
                ),
            ));
        }
        Ok(())
    }

    pub(crate) fn pool_networks(&self) -> Vec<Cidr> {
        self.pool_addresses
            .iter()
            .filter_map(|a| Cidr::parse(a))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_round_trips_through_toml_shaped_json() {
        let cfg = DetectorConfig::default();
        cfg.validate().unwrap();
        let json = serde_json::to_string(&cfg).unwrap();
        assert_eq!(serde_json::from_str::<DetectorConfig>(&json).unwrap(), cfg);
        let partial: DetectorConfig = serde_json::from_str(r#"{"cpu_busy_cores":0.5}"#).unwrap();
        assert_eq!(partial.pool_ports, DEFAULT_POOL_PORTS);
        assert!(
            serde_json::from_str::<DetectorConfig>(r#"{"cpu_busy":0.5}"#).is_err(),
            "unknown key"
        );
    }

    #[test]
    fn invalid_values_name_the_key() {
        type Edit = fn(&mut DetectorConfig);
        let cases: &[(&str, Edit)] = &[
            ("detector.pool_ports", |c| c.pool_ports.push(0)),
            ("detector.pool_addresses", |c| {
                c.pool_addresses.push("10.0.0.0/33".into())
            }),
            ("detector.pool_addresses", |c| {
                c.pool_addresses.push("pool.example".into())
            }),
            ("detector.pool_domains", |c| {
                c.pool_domains.push("bad domain".into())
            }),
            ("detector.cpu_busy_cores", |c| c.cpu_busy_cores = 1.5),
            ("detector.cpu_busy_cores", |c| c.cpu_busy_cores = 0.0),
            ("detector.cpu_busy_cores", |c| c.cpu_busy_cores = f64::NAN),
            ("detector.cpu_window_secs", |c| c.cpu_window_secs = 1.0),
            ("detector.cpu_sustained_secs", |c| {
                c.cpu_sustained_secs = 11.0
            }),
            ("detector.payload_wait_ms", |c| c.payload_wait_ms = 60_000),
            ("detector.provenance_wait_ms", |c| {
                c.provenance_wait_ms = 600_000
            }),
            ("detector.exit_grace_secs", |c| c.exit_grace_secs = 86_400),
            ("detector.max_processes", |c| c.max_processes = 10),
            ("detector.max_flows", |c| c.max_flows = 1),
            ("detector.tls_idle_open_secs", |c| c.tls_idle_open_secs = 0),
            ("detector.tls_idle_max_record_bytes", |c| {
                c.tls_idle_max_record_bytes = 0
            }),
            ("detector.miner_names", |c| {
                c.miner_names.push("/usr/bin/x".into())
            }),
            ("detector.miner_names", |c| {
                c.miner_names.push(String::new())
            }),
            ("detector.fingerprint_allow.paths[0]", |c| {
                c.fingerprint_allow.paths.push("monerod".into())
            }),
            ("detector.fingerprint_allow.sha256[0]", |c| {
                c.fingerprint_allow.sha256.push("abc".into())
            }),
        ];
        for (key, edit) in cases {
            let mut cfg = DetectorConfig::default();
            edit(&mut cfg);
            assert_eq!(cfg.validate().unwrap_err().key, *key);
        }
        // Benign look-alikes: valid edge values.
        let mut cfg = DetectorConfig::default();
        cfg.cpu_busy_cores = 1.0;
        cfg.pool_addresses = vec![
            "198.51.100.7".into(),
            "2001:db8::/32".into(),
            "0.0.0.0/0".into(),
        ];
        cfg.cpu_sustained_secs = cfg.cpu_window_secs;
        cfg.fingerprint_allow.paths = vec!["/usr/bin/monerod".into(), "/opt/node/".into()];
        cfg.fingerprint_allow.sha256 = vec!["AB".repeat(32)];
        cfg.validate().unwrap();
    }

    #[test]
    fn fingerprint_allow_matches_paths_prefixes_and_hashes() {
        let allow = FingerprintAllow {
            paths: vec!["/usr/bin/monerod".into(), "/opt/node/".into()],
            sha256: vec!["ab".repeat(32)],
        };
        let (ab, cd) = ("AB".repeat(32), "cd".repeat(32));
        let cases: &[(Option<&str>, Option<&str>, bool)] = &[
            (Some("/usr/bin/monerod"), None, true),
            (Some("/opt/node/bin/monerod"), None, true),
            (Some("/usr/bin/monerod2"), None, false),
            (Some("/opt/nodes/x"), None, false),
            (Some("/tmp/x"), Some(ab.as_str()), true),
            (Some("/tmp/x"), Some(cd.as_str()), false),
            (None, None, false),
        ];
        for (path, hash, want) in cases {
            assert_eq!(allow.allows(*path, *hash), *want, "{path:?} {hash:?}");
        }
        assert!(!FingerprintAllow::default().allows(Some("/usr/bin/monerod"), None));
    }

    #[test]
    fn cidr_matching() {
        let cases: &[(&str, &str, bool)] = &[
            ("198.51.100.0/24", "198.51.100.200", true),
            ("198.51.100.0/24", "198.51.101.1", false),
            ("198.51.100.7", "198.51.100.7", true),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("2001:db8::/32", "2001:db8:1::5", true),
            ("2001:db8::/32", "198.51.100.7", false),
        ];
        for (net, ip, want) in cases {
            assert_eq!(
                Cidr::parse(net).unwrap().contains(ip.parse().unwrap()),
                *want,
                "{net} ∋ {ip}"
            );
        }
    }
}
