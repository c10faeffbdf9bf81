//! Map bounds, drop sites and flags shared by the programs and the loader.

/// Default ring buffer size. One exec record is 640 bytes, so 2 MiB holds
/// about 3,200 execs: the reader is woken at an eighth full (~400 execs)
/// and drains every 100 ms anyway, so this is 0.3–1 s of this machine's top
/// exec rate even if the reader stalls. The kernel maps the data area twice
/// into the reader (for wrap-around), so the ring costs twice its size in
/// RSS: 4 MiB here, where 8 MiB cost 16. The loader may override it
/// (`sensor.ring_buffer_bytes`).
pub const EVENTS_BYTES_DEFAULT: u32 = 2 * 1024 * 1024;

/// Children whose fork record is held back in the kernel (`PENDING_FORK`)
/// until they prove worth a record: an exec, a fork of their own, any other
/// record, or a task-iterator pass that finds them alive. A fork storm
/// fills it only as fast as its children outlive their parents' next
/// fork; when full, fork records go out at once as before.
pub const PENDING_FORKS_MAX: u32 = 8_192;
/// A held-back child that exits within this long of its fork, having
/// done nothing else that makes a record, costs no record at all: it is
/// counted in `QUIET` (default of `sensor.quiet_fork_ms`).
pub const QUIET_FORK_NS_DEFAULT: u64 = 100_000_000;
/// `CONTROL` slots, written by the loader after the programs attach.
pub const CONTROL_QUIET_FORK_NS: u32 = 0;
/// Non-zero while the ring reader sleeps without its drain timer (the ring
/// was empty for a while): the next record's submit wakes it and clears
/// the slot. Written by the reader (`sensor/ringbuf.rs`).
pub const CONTROL_READER_ASLEEP: u32 = 1;
pub const CONTROL_SLOTS: u32 = 2;

/// Threads between the connect hook and the connect syscall's exit.
pub const PENDING_CONNECT_MAX: u32 = 8_192;
/// Blocked tgids and blocked pool endpoints (response).
pub const BLOCKED_TGIDS_MAX: u32 = 4_096;
pub const BLOCKED_DESTS_MAX: u32 = 4_096;

/// Threads whose saved MXCSR was ever non-default (fast-math code, RandomX,
/// `fesetround` users). LRU: dead threads age out; exit also removes them.
pub const FPU_THREADS_MAX: u32 = 16_384;
/// Processes that produced a kernel hint (hint kinds already reported).
pub const HINT_PROCS_MAX: u32 = 4_096;
/// A thread's seen set is reported at most once per this interval; a
/// growth inside it is reported at the thread's next non-default switch
/// after it. Bounds records per thread to 10/s (and 15 in its life).
pub const FPU_REPORT_INTERVAL_NS: u64 = 100_000_000;

/// Payload-bearing packets peeked per new flow. Most pool protocols open with
/// their login in the first packet; a second and third catch a client that
/// splits its first message.
pub const PEEK_PACKETS_PER_FLOW: u8 = 3;
/// Packets peeked of a flow whose first bytes open a proxy handshake (SOCKS4/5,
/// HTTP `CONNECT`) or a WebSocket upgrade: SOCKS5 with authentication is
/// greeting, auth, request, then the tunnelled bytes at index 3; a miner's
/// login over WebSocket through a proxy comes at index 4 or 5.
pub const PEEK_PACKETS_TUNNEL: u8 = 8;
/// Payload-bearing packets looked at of a socket we did not see connect (it
/// predates the agent, or it was accepted): the first that starts like JSON
/// is peeked, then the socket is done. A miner running before the agent
/// writes each share and keepalive as its own packet, so its next one is
/// among them.
pub const PEEK_PACKETS_UNTRACKED: u8 = 4;
/// Chunks of `PEEK_LEN` copied of a packet that starts a TLS ClientHello
/// (the first plus continuations): OpenSSL and rustls hellos fit in 1 KiB,
/// and the extensions at their end carry ALPN and the JA4 counts.
pub const HELLO_CHUNKS: u32 = 4;
/// Least time between two `FlowStatsRecord`s of one TLS flow.
pub const FLOW_REPORT_NS: u64 = 10_000_000_000;

/// `FlowState.flags`: the flow sent a ClientHello; its payload is counted
/// and reported in `FlowStatsRecord`s.
pub const FLOW_COUNT: u8 = 1;
/// `FlowState.flags`: a socket we did not see connect (`PEEK_PACKETS_UNTRACKED`).
pub const FLOW_UNTRACKED: u8 = 2;

/// `bpf_ringbuf_submit` flags (uapi `BPF_RB_*`).
pub const BPF_RB_NO_WAKEUP: u64 = 1;
pub const BPF_RB_FORCE_WAKEUP: u64 = 2;
/// `bpf_ringbuf_query` flag: bytes not yet consumed.
pub const BPF_RB_AVAIL_DATA: u64 = 0;

/// Where the kernel side failed to deliver or account an event. Index into
/// the per-CPU `DROPS` array; user space sums the CPUs.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropSite {
    ExecRingFull = 0,
    ForkRingFull = 1,
    ExitRingFull = 2,
    ConnectRingFull = 3,
    PayloadRingFull = 4,
    /// A `bpf_probe_read_kernel` of task/exe fields failed; the exec event is
    /// still sent, with `EXEC_FLAG_EXE_UNKNOWN`.
    ExecRead = 5,
    // 6 was `cpu_map_full`: CPU time now comes from the task iterator,
    // which has no map to fill.
    /// A socket's flow state could not be created (socket storage: the
    /// kernel's allocation failed); its payload is not peeked.
    FlowMapFull = 7,
    FpuRingFull = 8,
    /// The per-thread MXCSR set could not be stored (LRU insert failed).
    FpuMapFull = 9,
    HintRingFull = 10,
    ListenRingFull = 11,
    FlowStatsRingFull = 12,
}

/// Slots of `DROPS`: the highest site + 1.
pub const DROP_SITES: u32 = 13;

impl DropSite {
    pub const ALL: [DropSite; 12] = [
        DropSite::ExecRingFull,
        DropSite::ForkRingFull,
        DropSite::ExitRingFull,
        DropSite::ConnectRingFull,
        DropSite::PayloadRingFull,
        DropSite::ExecRead,
        DropSite::FlowMapFull,
        DropSite::FpuRingFull,
        DropSite::FpuMapFull,
        DropSite::HintRingFull,
        DropSite::ListenRingFull,
        DropSite::FlowStatsRingFull,
    ];

    /// Stable snake_case name: the `site` label of the lost-events metric.
    pub const fn name(self) -> &'static str {
        match self {
            DropSite::ExecRingFull => "exec_ring_full",
            DropSite::ForkRingFull => "fork_ring_full",
            DropSite::ExitRingFull => "exit_ring_full",
            DropSite::ConnectRingFull => "connect_ring_full",
            DropSite::PayloadRingFull => "payload_ring_full",
            DropSite::ExecRead => "exec_read",
            DropSite::FlowMapFull => "flow_map_full",
            DropSite::FpuRingFull => "fpu_ring_full",
            DropSite::FpuMapFull => "fpu_map_full",
            DropSite::HintRingFull => "hint_ring_full",
            DropSite::ListenRingFull => "listen_ring_full",
            DropSite::FlowStatsRingFull => "flow_stats_ring_full",
        }
    }

    /// The event kind a drop at this site loses, if it loses one.
    pub const fn lost_kind(self) -> Option<crate::RecordKind> {
        match self {
            DropSite::ExecRingFull => Some(crate::RecordKind::Exec),
            DropSite::ForkRingFull => Some(crate::RecordKind::Fork),
            DropSite::ExitRingFull => Some(crate::RecordKind::Exit),
            DropSite::ConnectRingFull => Some(crate::RecordKind::Connect),
            DropSite::PayloadRingFull => Some(crate::RecordKind::Payload),
            DropSite::FpuRingFull => Some(crate::RecordKind::Fpu),
            DropSite::HintRingFull => Some(crate::RecordKind::Hint),
            DropSite::ListenRingFull => Some(crate::RecordKind::Listen),
            DropSite::FlowStatsRingFull => Some(crate::RecordKind::FlowStats),
            DropSite::ExecRead | DropSite::FlowMapFull | DropSite::FpuMapFull => None,
        }
    }
}

impl TryFrom<u32> for DropSite {
    type Error = u32;
    fn try_from(v: u32) -> Result<Self, u32> {
        DropSite::ALL
            .iter()
            .copied()
            .find(|s| *s as u32 == v)
            .ok_or(v)
    }
}

/// Value of `PENDING_CONNECT`: what the connect hook saw, waiting for the
/// syscall's return value.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingConnect {
    pub cookie: u64,
    pub daddr: [u8; 16],
    pub family: u16,
    pub dport: u16,
    pub flags: u32,
}
const _: () = assert!(core::mem::size_of::<PendingConnect>() == 32);

/// Socket-local state (`SOCK_FLOWS`, socket storage) of a TCP socket whose
/// payload is peeked: a connect we saw, or an untracked socket's look-out
/// for JSON. Freed with the socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowState {
    /// The process that connected (0: untracked).
    pub tgid: u32,
    /// Payload-bearing packets already peeked (untracked: looked at).
    pub peeked: u8,
    /// Packets to peek: `PEEK_PACKETS_PER_FLOW`, raised to
    /// `PEEK_PACKETS_TUNNEL` by a proxy or WebSocket first packet, cut to
    /// the ClientHello's index once the flow is TLS (the rest is encrypted).
    pub budget: u8,
    /// `FLOW_*`.
    pub flags: u8,
    pub _pad: u8,
    /// Counted flows (`FLOW_COUNT`): payload packets, largest payload,
    /// payload bytes, time of the ClientHello and of the last report.
    pub packets: u32,
    pub max_len: u32,
    pub bytes: u64,
    pub first_ns: u64,
    pub last_report_ns: u64,
}
const _: () = assert!(core::mem::size_of::<FlowState>() == 40);

impl FlowState {
    /// A flow just opened by `tgid`.
    pub const fn new(tgid: u32) -> FlowState {
        FlowState::with(tgid, PEEK_PACKETS_PER_FLOW, 0)
    }

    /// A socket we did not see connect, at its first payload packet.
    pub const fn untracked() -> FlowState {
        FlowState::with(0, PEEK_PACKETS_UNTRACKED, FLOW_UNTRACKED)
    }

    const fn with(tgid: u32, budget: u8, flags: u8) -> FlowState {
        FlowState {
            tgid,
            peeked: 0,
            budget,
            flags,
            _pad: 0,
            packets: 0,
            max_len: 0,
            bytes: 0,
            first_ns: 0,
            last_report_ns: 0,
        }
    }
}

/// Key of `BLOCKED_DESTS`: a pool endpoint (v4 addresses as v4-mapped v6,
/// port in host order; port 0 blocks every port of the address).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DestKey {
    pub addr: [u8; 16],
    pub port: u16,
    pub _pad: [u8; 6],
}
const _: () = assert!(core::mem::size_of::<DestKey>() == 24);

/// Value of `FPU_SEEN`: a thread's MXCSR classes and what was reported.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FpuSeen {
    /// Classes (`mxcsr_class`) seen at its switches.
    pub seen: u16,
    /// The seen set as last reported.
    pub reported: u16,
    pub _pad: u32,
    pub last_report_ns: u64,
}
const _: () = assert!(core::mem::size_of::<FpuSeen>() == 16);

/// Value of `HINT_SEEN`: hint bits already reported for a process image
/// (identified by its start time, so a reused tgid starts afresh).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HintSeen {
    pub start_boottime_ns: u64,
    /// Bit `kind` per [`crate::HintKind`]; mappings use bits 8.. by size class.
    pub bits: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<HintSeen>() == 16);

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::FpuSeen {}
    unsafe impl aya::Pod for super::HintSeen {}
    unsafe impl aya::Pod for super::PendingConnect {}
    unsafe impl aya::Pod for super::FlowState {}
    unsafe impl aya::Pod for super::DestKey {}
}
