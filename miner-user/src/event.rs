//! The owned event type: the only thing downstream of the sensor sees.
//!
//! Decoded from kernel records (sensor/decode.rs), synthesised by the
//! startup sweep (process/procfs.rs) and by provenance results, recorded to
//! JSONL by `run --record`, read back by `replay`. Nothing here knows about
//! aya, maps or byte layouts.

use std::net::IpAddr;

use miner_ebpf_common::DropSite;
use serde::{Deserialize, Serialize};

use crate::time::Mono;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    Exec(Exec),
    Fork(Fork),
    Exit(Exit),
    Connect(Connect),
    Payload(Payload),
    FlowStats(FlowStats),
    CpuSample(CpuSample),
    Provenance(ProvenanceEvent),
    Lost(Lost),
    Listen(Listen),
    Fpu(Fpu),
    Hint(Hint),
}

impl Event {
    pub fn time(&self) -> Mono {
        match self {
            Event::Exec(e) => e.time,
            Event::Fork(e) => e.time,
            Event::Exit(e) => e.time,
            Event::Connect(e) => e.time,
            Event::Payload(e) => e.time,
            Event::FlowStats(e) => e.time,
            Event::CpuSample(e) => e.time,
            Event::Provenance(e) => e.time,
            Event::Lost(e) => e.time,
            Event::Listen(e) => e.time,
            Event::Fpu(e) => e.time,
            Event::Hint(e) => e.time,
        }
    }

    /// The snake_case kind, as in JSON and the `kind` metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Exec(_) => "exec",
            Event::Fork(_) => "fork",
            Event::Exit(_) => "exit",
            Event::Connect(_) => "connect",
            Event::Payload(_) => "payload",
            Event::FlowStats(_) => "flow_stats",
            Event::CpuSample(_) => "cpu_sample",
            Event::Provenance(_) => "provenance",
            Event::Lost(_) => "lost",
            Event::Listen(_) => "listen",
            Event::Fpu(_) => "fpu",
            Event::Hint(_) => "hint",
        }
    }

    /// The process the event is about, if one.
    pub fn tgid(&self) -> Option<u32> {
        match self {
            Event::Exec(e) => Some(e.tgid),
            Event::Fork(e) => Some(e.child_tgid),
            Event::Exit(e) => Some(e.tgid),
            Event::Connect(e) => Some(e.tgid),
            Event::Payload(e) => e.tgid,
            Event::FlowStats(e) => e.tgid,
            Event::Provenance(e) => Some(e.tgid),
            Event::Listen(e) => Some(e.tgid),
            Event::Fpu(e) => Some(e.tgid),
            Event::Hint(e) => Some(e.tgid),
            Event::CpuSample(_) | Event::Lost(_) => None,
        }
    }
}

/// Where an event came from: the kernel as it happened, or the startup sweep
/// of /proc describing a process or connection that predates the agent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    #[default]
    Kernel,
    Sweep,
}

fn is_kernel(s: &Source) -> bool {
    *s == Source::Kernel
}

/// Identity of an executable file as the kernel saw it at exec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExeId {
    /// Userspace `st_dev` encoding (as `stat(2)` reports it).
    pub dev: u64,
    pub ino: u64,
    /// 0: the file was unlinked (deleted after or before exec).
    pub nlink: u32,
    /// Anonymous memory file (`memfd_create` + `fexecve`): fileless.
    pub memfd: bool,
    /// The dentry name of the file (`memfd:NAME` for memfds).
    pub name: String,
    /// The kernel could not read the identity; fields above are empty.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unknown: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exec {
    pub time: Mono,
    pub tgid: u32,
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub cgroup_id: u64,
    /// ns since boot at process start (`/proc/PID/stat` field 22 clock).
    pub start_boottime_ns: u64,
    pub comm: String,
    /// The path passed to execve (may be relative, or `/dev/fd/N`).
    pub filename: String,
    pub argv: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub argv_truncated: bool,
    pub exe: ExeId,
    /// Absolute path of the executable where known (sweep: /proc/PID/exe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe_path: Option<String>,
    /// cgroup path (v2 or the v1 hierarchy that names containers), if read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    #[serde(default, skip_serializing_if = "is_kernel")]
    pub source: Source,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fork {
    pub time: Mono,
    pub parent_tgid: u32,
    pub child_tgid: u32,
    pub child_start_boottime_ns: u64,
    pub comm: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exit {
    pub time: Mono,
    pub tgid: u32,
    /// `exit(status)`; 0 when killed by a signal.
    pub status: i32,
    /// The terminating signal, 0 if it exited normally.
    pub signal: i32,
    /// Total on-CPU time of the process.
    pub cpu_ns: u64,
    pub comm: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "result", content = "errno")]
pub enum ConnectResult {
    Connected,
    InProgress,
    Refused,
    /// EPERM/EACCES: refused by a policy (ours or another cgroup hook).
    Denied,
    /// Any other errno.
    Failed(i32),
}

impl ConnectResult {
    /// From the connect syscall's return value.
    pub fn from_ret(ret: i32) -> Self {
        match -ret {
            0 => ConnectResult::Connected,
            libc::EINPROGRESS => ConnectResult::InProgress,
            libc::ECONNREFUSED => ConnectResult::Refused,
            libc::EPERM | libc::EACCES => ConnectResult::Denied,
            errno => ConnectResult::Failed(errno),
        }
    }

    pub fn is_success(self) -> bool {
        matches!(self, ConnectResult::Connected | ConnectResult::InProgress)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connect {
    pub time: Mono,
    pub tgid: u32,
    pub pid: u32,
    pub uid: u32,
    pub comm: String,
    /// v4-mapped v6 destinations are already normalised to v4.
    pub daddr: IpAddr,
    pub dport: u16,
    #[serde(flatten)]
    pub result: ConnectResult,
    /// Socket cookie: links later payload peeks to this connect (0: sweep).
    pub cookie: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub v4_mapped: bool,
    #[serde(default, skip_serializing_if = "is_kernel")]
    pub source: Source,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    pub time: Mono,
    /// The process that opened the flow; `None` for a flow opened before the
    /// agent whose owner could not be resolved.
    pub tgid: Option<u32>,
    pub cookie: u64,
    pub saddr: IpAddr,
    pub sport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
    /// TCP payload bytes from `seq` to the end of the packet; `data` holds
    /// the first of them.
    pub payload_len: u32,
    pub packet_index: u8,
    /// TCP sequence number of `data[0]`; absent in recordings made before
    /// the kernel sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u32>,
    /// More bytes of the previous record's packet (a long ClientHello).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub continuation: bool,
    /// The flow predates the agent (not seen at connect).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub untracked: bool,
    #[serde(with = "b64")]
    pub data: Vec<u8>,
}

/// A process listens on a TCP socket: it called `listen(2)` (kernel), or
/// the startup sweep found it holding a listening socket (possibly one it
/// inherited from the process that opened it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listen {
    pub time: Mono,
    pub tgid: u32,
    pub pid: u32,
    pub uid: u32,
    pub comm: String,
    /// Local address and port; `None` when the kernel could not read them.
    /// Port 0: `listen()` on an unbound socket (the port is chosen after).
    pub local: Option<(IpAddr, u16)>,
    #[serde(default, skip_serializing_if = "is_kernel")]
    pub source: Source,
}

/// Counters of a TLS flow since its ClientHello, from the kernel at most
/// every 10 s while the flow carries payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowStats {
    pub time: Mono,
    pub tgid: Option<u32>,
    pub cookie: u64,
    /// Payload-bearing packets, with the ClientHello.
    pub packets: u32,
    pub bytes: u64,
    pub max_len: u32,
    /// When the ClientHello was sent.
    pub since: Mono,
}

/// On-CPU time per process over one poll interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuSample {
    pub time: Mono,
    pub interval_ns: u64,
    /// Only processes that ran during the interval.
    pub usage: Vec<CpuUsage>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CpuUsage {
    pub tgid: u32,
    pub on_cpu_ns: u64,
}

impl CpuUsage {
    /// Fraction of one core over `interval_ns` (can exceed 1 for threads).
    pub fn cores(&self, interval_ns: u64) -> f64 {
        if interval_ns == 0 {
            0.0
        } else {
            self.on_cpu_ns as f64 / interval_ns as f64
        }
    }
}

/// Verdict on an executable, computed off the event path and fed back in as
/// an event so a recording replays with the same provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProvenanceEvent {
    pub time: Mono,
    pub tgid: u32,
    pub exe: ExeId,
    pub provenance: Provenance,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProvenanceVerdict {
    Verified,
    Unverified,
}

/// Why a binary is (un)verified. Names are the documented reason strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// Owned by the package manager with a matching hash.
    Packaged,
    /// Listed in the signed allowlist.
    Allowlisted,
    /// Carries a valid IMA signature.
    ImaSigned,
    NotPackaged,
    HashMismatch,
    Memfd,
    Deleted,
    WritableDir,
    HiddenDir,
    AllowlistMiss,
    /// The file could not be read (process gone, permission).
    Unreadable,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub verdict: ProvenanceVerdict,
    pub reasons: Vec<Reason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Resolved path of the executable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Owning package, when verified by a package database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// Who vouched for a verified binary (absent when unverified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vouched_by: Option<VouchedBy>,
}

impl Provenance {
    pub fn is_verified(&self) -> bool {
        self.verdict == ProvenanceVerdict::Verified
    }

    /// Verified only because the process's own image says so: its root
    /// filesystem's package database listed the file with a matching hash.
    /// Whoever built the image wrote that database, so this keeps weak
    /// signals (a pool port, a command line) quiet but never lowers a
    /// verdict that a pool protocol or the work fingerprint supports.
    pub fn is_image_vouched(&self) -> bool {
        self.is_verified()
            && self
                .vouched_by
                .as_ref()
                .is_some_and(|v| v.source == VouchSource::ImagePackageDb)
    }
}

#[cfg(test)]
impl Provenance {
    /// Packaged (verified) or not packaged (unverified), nothing else
    /// known: the two provenances most tests need.
    pub(crate) fn packaged(verified: bool, sha256: String, path: Option<String>) -> Provenance {
        let (verdict, reason) = if verified {
            (ProvenanceVerdict::Verified, Reason::Packaged)
        } else {
            (ProvenanceVerdict::Unverified, Reason::NotPackaged)
        };
        Provenance {
            verdict,
            reasons: vec![reason],
            sha256: Some(sha256),
            path,
            package: None,
            vouched_by: None,
        }
    }
}

/// Where the vouching came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VouchSource {
    /// The host's package database, at the host's root filesystem.
    HostPackageDb,
    /// The package database inside the process's root filesystem (a
    /// container image, a chroot), not the host's.
    ImagePackageDb,
    /// The operator's signed allowlist.
    Allowlist,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VouchedBy {
    pub source: VouchSource,
    /// `dpkg`, `rpm`, or the allowlist's path.
    pub database: String,
}

/// A thread was switched out with a non-default SSE control register
/// (MXCSR) and the set of states it has shown grew. The kernel sends one
/// per growth, rate-limited per thread; nothing for threads that never
/// leave the default or only sit at a constant fast-math state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fpu {
    pub time: Mono,
    pub tgid: u32,
    /// The thread.
    pub pid: u32,
    pub comm: String,
    /// The saved MXCSR at this switch, exception flags masked off.
    pub mxcsr: u16,
    /// Every state class the thread has shown (bit
    /// `miner_ebpf_common::mxcsr_class`: FTZ, DAZ, rounding mode).
    pub seen: u16,
}

/// What a hint says a process did; supporting evidence only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HintKind {
    /// Opened `/proc/sys/vm/nr_hugepages` (or `_mempolicy`) for writing.
    HugepagesSysctl,
    /// Opened a sysfs `hugepages-*/nr_hugepages` for writing.
    HugepagesSysfs,
    /// Asked for a hugetlb mapping of `value` bytes (≥ 128 MiB).
    HugetlbMap,
    /// Opened `/dev/cpu/N/msr` for writing.
    MsrOpen,
    /// Ran `modprobe msr` (or `insmod msr`): derived by the detector from
    /// the child's exec, credited to the parent; never from the kernel.
    MsrModule,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hint {
    pub time: Mono,
    pub tgid: u32,
    pub pid: u32,
    pub uid: u32,
    pub comm: String,
    pub hint: HintKind,
    /// Mapping length in bytes; 0 otherwise.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub value: u64,
    /// The opened path (its last 64 bytes), for open hints.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Events the kernel could not deliver since the previous report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lost {
    pub time: Mono,
    /// Where the kernel dropped them; serialised as its name
    /// (`exec_ring_full`, …), the `site` label of the lost-events metric.
    #[serde(with = "drop_site")]
    pub site: DropSite,
    pub count: u64,
}

/// A [`DropSite`] as its stable name: the ABI crate has no serde.
mod drop_site {
    use miner_ebpf_common::DropSite;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(site: &DropSite, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(site.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DropSite, D::Error> {
        let name = std::borrow::Cow::<str>::deserialize(d)?;
        DropSite::ALL
            .into_iter()
            .find(|site| site.name() == name)
            .ok_or_else(|| D::Error::custom(format!("unknown drop site {name:?}")))
    }
}

mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_json() {
        let events = vec![
            Event::Connect(Connect {
                time: Mono(5),
                tgid: 10,
                pid: 11,
                uid: 0,
                comm: "x".into(),
                daddr: "127.0.0.1".parse().unwrap(),
                dport: 3333,
                result: ConnectResult::Failed(110),
                cookie: 7,
                v4_mapped: true,
                source: Source::Kernel,
            }),
            Event::Payload(Payload {
                time: Mono(6),
                tgid: Some(10),
                cookie: 7,
                saddr: "::1".parse().unwrap(),
                sport: 40000,
                daddr: "::1".parse().unwrap(),
                dport: 3333,
                payload_len: 3,
                packet_index: 0,
                seq: Some(77),
                continuation: false,
                untracked: false,
                data: vec![0, 255, b'{'],
            }),
            Event::Listen(Listen {
                time: Mono(7),
                tgid: 10,
                pid: 12,
                uid: 33,
                comm: "python3".into(),
                local: Some(("::".parse().unwrap(), 8080)),
                source: Source::Sweep,
            }),
            Event::FlowStats(FlowStats {
                time: Mono(9),
                tgid: Some(10),
                cookie: 7,
                packets: 12,
                bytes: 2400,
                max_len: 517,
                since: Mono(6),
            }),
        ];
        for e in events {
            let line = serde_json::to_string(&e).unwrap();
            let back: Event = serde_json::from_str(&line).unwrap();
            assert_eq!(back, e, "{line}");
        }
    }

    /// Recordings and the tail carry a loss's site by name: the golden line
    /// a rename must not change, every site round-trips, and a name this
    /// build does not know is an error, not a silent default.
    #[test]
    fn lost_sites_serialise_by_name() {
        let lost = Event::Lost(Lost {
            time: Mono(5),
            site: DropSite::ExecRingFull,
            count: 3,
        });
        let line = serde_json::to_string(&lost).unwrap();
        assert_eq!(
            line,
            r#"{"kind":"lost","time":5,"site":"exec_ring_full","count":3}"#
        );
        assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), lost);
        for site in DropSite::ALL {
            let e = Event::Lost(Lost {
                time: Mono(1),
                site,
                count: 1,
            });
            let line = serde_json::to_string(&e).unwrap();
            assert!(
                line.contains(&format!(r#""site":"{}""#, site.name())),
                "{line}"
            );
            assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), e);
        }
        let unknown = r#"{"kind":"lost","time":5,"site":"decode","count":3}"#;
        assert!(serde_json::from_str::<Event>(unknown).is_err());
    }

    #[test]
    fn connect_results_map_errnos() {
        assert_eq!(ConnectResult::from_ret(0), ConnectResult::Connected);
        assert_eq!(
            ConnectResult::from_ret(-libc::EINPROGRESS),
            ConnectResult::InProgress
        );
        assert_eq!(
            ConnectResult::from_ret(-libc::ECONNREFUSED),
            ConnectResult::Refused
        );
        assert_eq!(ConnectResult::from_ret(-libc::EPERM), ConnectResult::Denied);
        assert_eq!(
            ConnectResult::from_ret(-libc::ETIMEDOUT),
            ConnectResult::Failed(libc::ETIMEDOUT)
        );
    }
}
