//! Ring-buffer records. Every record starts with a [`Header`]; the decoder
//! reads the header, checks the kind, then reads the whole record.

pub const COMM_LEN: usize = 16;
pub const FILENAME_LEN: usize = 256;
pub const ARGS_LEN: usize = 256;
pub const EXE_NAME_LEN: usize = 32;
pub const PEEK_LEN: usize = 256;

/// Common prefix of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// A [`RecordKind`] as `u16`.
    pub kind: u16,
    pub _pad: u16,
    pub cpu: u32,
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC, the clock the detector runs on.
    pub ktime_ns: u64,
}
const _: () = assert!(core::mem::size_of::<Header>() == 16);

#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordKind {
    Exec = 1,
    Fork = 2,
    Exit = 3,
    Connect = 4,
    Payload = 5,
    Fpu = 6,
    Hint = 7,
    Listen = 8,
    FlowStats = 9,
}

impl RecordKind {
    pub const ALL: [RecordKind; 9] = [
        RecordKind::Exec,
        RecordKind::Fork,
        RecordKind::Exit,
        RecordKind::Connect,
        RecordKind::Payload,
        RecordKind::Fpu,
        RecordKind::Hint,
        RecordKind::Listen,
        RecordKind::FlowStats,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            RecordKind::Exec => "exec",
            RecordKind::Fork => "fork",
            RecordKind::Exit => "exit",
            RecordKind::Connect => "connect",
            RecordKind::Payload => "payload",
            RecordKind::Fpu => "fpu",
            RecordKind::Hint => "hint",
            RecordKind::Listen => "listen",
            RecordKind::FlowStats => "flow_stats",
        }
    }
}

impl TryFrom<u16> for RecordKind {
    type Error = u16;
    fn try_from(v: u16) -> Result<Self, u16> {
        match v {
            1 => Ok(RecordKind::Exec),
            2 => Ok(RecordKind::Fork),
            3 => Ok(RecordKind::Exit),
            4 => Ok(RecordKind::Connect),
            5 => Ok(RecordKind::Payload),
            6 => Ok(RecordKind::Fpu),
            7 => Ok(RecordKind::Hint),
            8 => Ok(RecordKind::Listen),
            9 => Ok(RecordKind::FlowStats),
            other => Err(other),
        }
    }
}

/// The executable is an anonymous memory file (`memfd_create` + `fexecve`).
pub const EXEC_FLAG_MEMFD: u32 = 1;
/// Task or executable fields could not be read; identity fields are zero.
pub const EXEC_FLAG_EXE_UNKNOWN: u32 = 2;
/// `args` holds only the first `ARGS_LEN` bytes of the argument block.
pub const EXEC_FLAG_ARGS_TRUNCATED: u32 = 4;

/// `sched_process_exec`: a task replaced its image.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecRecord {
    pub header: Header,
    pub tgid: u32,
    pub pid: u32,
    /// `real_parent->tgid`: the parent that forked it, not a ptracer.
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    /// Hard links of the executable; 0 means it was unlinked.
    pub exe_nlink: u32,
    /// cgroup v2 id of the task (`bpf_get_current_cgroup_id`).
    pub cgroup_id: u64,
    pub exe_ino: u64,
    /// Kernel `s_dev` (`MAJOR << 20 | MINOR`), not the userspace `st_dev`.
    pub exe_dev: u32,
    /// `EXEC_FLAG_*`.
    pub flags: u32,
    /// `task->start_boottime`, ns since boot: with the tgid, the process's
    /// identity across pid reuse (same clock as `/proc/PID/stat` field 22).
    pub start_boottime_ns: u64,
    pub filename_len: u16,
    pub args_len: u16,
    pub exe_name_len: u16,
    pub _pad: u16,
    pub comm: [u8; COMM_LEN],
    /// Name of the executable's dentry (`memfd:x`, or the file's name).
    pub exe_name: [u8; EXE_NAME_LEN],
    /// The path given to execve.
    pub filename: [u8; FILENAME_LEN],
    /// The NUL-separated argument block (`mm->arg_start..arg_end`).
    pub args: [u8; ARGS_LEN],
}
const _: () = assert!(core::mem::size_of::<ExecRecord>() == 640);

/// `sched_process_fork` for a new process (thread creation is filtered out
/// in the kernel).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForkRecord {
    pub header: Header,
    pub parent_tgid: u32,
    pub child_tgid: u32,
    pub child_start_boottime_ns: u64,
    pub comm: [u8; COMM_LEN],
}
const _: () = assert!(core::mem::size_of::<ForkRecord>() == 48);

/// `sched_process_exit` of the last thread of a process.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitRecord {
    pub header: Header,
    pub tgid: u32,
    /// Raw `task->exit_code`: status in bits 8..16, terminating signal in 0..7.
    pub exit_code: u32,
    /// Total on-CPU ns of the process, from the scheduler's own
    /// accounting: its dead threads' `signal->sum_sched_runtime` plus the
    /// exiting thread's `se.sum_exec_runtime`.
    pub cpu_ns: u64,
    pub comm: [u8; COMM_LEN],
}
const _: () = assert!(core::mem::size_of::<ExitRecord>() == 48);

/// The connect address was `::ffff:a.b.c.d`; `family` says AF_INET after
/// normalisation.
pub const CONNECT_FLAG_V4_MAPPED: u32 = 1;

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

/// A TCP `connect()`: what the cgroup hook saw plus the syscall's result.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectRecord {
    pub header: Header,
    pub tgid: u32,
    pub pid: u32,
    pub uid: u32,
    /// `AF_INET` or `AF_INET6`, after v4-mapped normalisation.
    pub family: u16,
    /// Host byte order.
    pub dport: u16,
    pub cookie: u64,
    /// v4: first 4 bytes, network order; v6: all 16.
    pub daddr: [u8; 16],
    /// The syscall's return: 0, `-EINPROGRESS`, `-ECONNREFUSED`, `-EPERM`…
    pub ret: i32,
    /// `CONNECT_FLAG_*`.
    pub flags: u32,
    pub comm: [u8; COMM_LEN],
}
const _: () = assert!(core::mem::size_of::<ConnectRecord>() == 80);

/// The flow was not opened while the agent watched (it predates it); the
/// tgid is unknown and user space resolves it from the 4-tuple.
pub const PAYLOAD_FLAG_UNTRACKED_FLOW: u8 = 1;
/// More bytes of the packet of the previous record (a TLS ClientHello longer
/// than `PEEK_LEN`): `seq` and `payload_len` count from this chunk's start.
pub const PAYLOAD_FLAG_CONTINUATION: u8 = 2;

/// The first bytes of a payload-bearing TCP packet of a new outbound flow.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayloadRecord {
    pub header: Header,
    pub cookie: u64,
    /// The process that opened the flow (0 for untracked flows).
    pub tgid: u32,
    /// TCP payload bytes from `seq` to the end of this packet; `captured`
    /// may be shorter.
    pub payload_len: u32,
    pub family: u16,
    pub sport: u16,
    pub dport: u16,
    pub captured: u16,
    /// 0-based index among the flow's payload-bearing packets.
    pub packet_index: u8,
    /// `PAYLOAD_FLAG_*`.
    pub flags: u8,
    pub _pad: [u8; 2],
    /// TCP sequence number of `data[0]` (host order): user space rebuilds
    /// the flow's byte stream from it (retransmissions, split messages).
    pub seq: u32,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub data: [u8; PEEK_LEN],
}
const _: () = assert!(core::mem::size_of::<PayloadRecord>() == 336);

/// The socket's address could not be read; `family`, `port` and `addr`
/// are zero (the process still started listening).
pub const LISTEN_FLAG_ADDR_UNKNOWN: u32 = 1;

/// A socket entered TCP_LISTEN (`listen(2)`), in the listening task's
/// context: the web server, Redis or sshd that a dropper may descend from.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenRecord {
    pub header: Header,
    pub tgid: u32,
    pub pid: u32,
    pub uid: u32,
    /// `AF_INET` or `AF_INET6` (0 with `LISTEN_FLAG_ADDR_UNKNOWN`).
    pub family: u16,
    /// Local port, host order; 0 when `listen()` runs on an unbound socket
    /// (the kernel picks the port just after this hook).
    pub port: u16,
    /// Local address: v4 in the first 4 bytes (network order), v6 all 16.
    pub addr: [u8; 16],
    /// `LISTEN_FLAG_*`.
    pub flags: u32,
    pub _pad: u32,
    pub comm: [u8; COMM_LEN],
}
const _: () = assert!(core::mem::size_of::<ListenRecord>() == 72);
/// Counters of a TLS flow (one whose peeked bytes held a ClientHello), sent
/// at most every `FLOW_REPORT_NS` while it carries payload: how long it has
/// stayed open and how small its records are.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowStatsRecord {
    pub header: Header,
    pub cookie: u64,
    pub tgid: u32,
    /// Payload-bearing packets since (and with) the ClientHello.
    pub packets: u32,
    pub bytes: u64,
    /// `bpf_ktime_get_ns()` of the ClientHello.
    pub first_ns: u64,
    /// Largest payload of one packet.
    pub max_len: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<FlowStatsRecord>() == 56);

/// The SSE control/status register as a process leaves it: bits 0-5 are
/// sticky exception flags (ignored), 6 is DAZ, 7-12 the exception masks,
/// 13-14 the rounding mode, 15 FTZ. Almost every program keeps the default
/// for life; RandomX's JIT cycles all four rounding modes with FTZ and DAZ
/// set (0x9FC0, 0xBFC0, 0xDFC0, 0xFFC0).
pub const MXCSR_DEFAULT: u32 = 0x1F80;
/// Everything but the sticky exception flags.
pub const MXCSR_STATE_MASK: u32 = 0xFFC0;
pub const MXCSR_DAZ: u32 = 1 << 6;
pub const MXCSR_FTZ: u32 = 1 << 15;
pub const MXCSR_RC_SHIFT: u32 = 13;

/// A 4-bit class of an MXCSR value: bit 3 FTZ, bit 2 DAZ, bits 0-1 the
/// rounding mode (0 nearest, 1 down, 2 up, 3 toward zero). A thread's seen
/// set is a 16-bit mask over these classes.
#[inline(always)]
pub const fn mxcsr_class(mxcsr: u32) -> u32 {
    (((mxcsr >> 15) & 1) << 3) | (((mxcsr >> 6) & 1) << 2) | ((mxcsr >> MXCSR_RC_SHIFT) & 3)
}

/// Classes with a rounding mode other than nearest. A thread is reported
/// only once its seen set holds one of these: a constant fast-math thread
/// (FTZ/DAZ at default rounding, class 12) costs no record, whatever
/// number of threads it spawns.
pub const FPU_REPORT_CLASSES: u16 = 0xEEEE;

/// `x86_fpu/x86_fpu_regs_deactivated`: a thread was switched out with a
/// non-default MXCSR and its seen set grew (rate-limited per thread).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FpuRecord {
    pub header: Header,
    pub tgid: u32,
    /// The thread.
    pub pid: u32,
    /// The saved MXCSR at this switch (low 16 bits meaningful).
    pub mxcsr: u32,
    /// Every class (`mxcsr_class`) the thread has shown, this one included.
    pub seen: u16,
    pub _pad: u16,
    pub comm: [u8; COMM_LEN],
}
const _: () = assert!(core::mem::size_of::<FpuRecord>() == 48);

/// What a [`HintRecord`] reports. Each is supporting evidence only.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HintKind {
    /// An open for writing of `/proc/sys/vm/nr_hugepages` (or
    /// `nr_hugepages_mempolicy`): `sysctl -w vm.nr_hugepages=…`.
    HugepagesSysctl = 1,
    /// An open for writing of a sysfs `hugepages-*/nr_hugepages`, global or
    /// per NUMA node (what XMRig itself does as root).
    HugepagesSysfs = 2,
    /// `mmap` with `MAP_HUGETLB` of at least `HUGETLB_HINT_MIN_BYTES`;
    /// `value` is the length. Reported at the attempt, before it can fail.
    HugetlbMap = 3,
    /// An open for writing of `/dev/cpu/N/msr` (XMRig's prefetcher tweak).
    /// Reported at the attempt, whether or not the device exists.
    MsrOpen = 4,
}

impl HintKind {
    pub const ALL: [HintKind; 4] = [
        HintKind::HugepagesSysctl,
        HintKind::HugepagesSysfs,
        HintKind::HugetlbMap,
        HintKind::MsrOpen,
    ];
}

impl TryFrom<u16> for HintKind {
    type Error = u16;
    fn try_from(v: u16) -> Result<Self, u16> {
        match v {
            1 => Ok(HintKind::HugepagesSysctl),
            2 => Ok(HintKind::HugepagesSysfs),
            3 => Ok(HintKind::HugetlbMap),
            4 => Ok(HintKind::MsrOpen),
            other => Err(other),
        }
    }
}

/// Smallest hugetlb mapping reported: below RandomX's 256 MiB cache, above
/// the 2 MiB scratchpads and JIT buffers miners also map with huge pages.
pub const HUGETLB_HINT_MIN_BYTES: u64 = 128 << 20;
/// `MAP_HUGETLB` (uapi asm-generic/mman.h; the same on x86).
pub const MAP_HUGETLB: u64 = 0x40000;
/// Path bytes an open hint carries: the tail of the path, which names the
/// file and its huge-page size (`…/hugepages-2048kB/nr_hugepages`). A power
/// of two, so the kernel side can clamp a copy length with a mask.
pub const HINT_DATA_LEN: usize = 64;

/// A cheap kernel hint of mining set-up, once per process image and kind
/// (and size class for mappings).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HintRecord {
    pub header: Header,
    pub tgid: u32,
    pub pid: u32,
    pub uid: u32,
    /// A [`HintKind`] as `u16`.
    pub kind: u16,
    /// Bytes of `data` filled.
    pub data_len: u16,
    /// Mapping length for `HugetlbMap`; 0 otherwise.
    pub value: u64,
    pub comm: [u8; COMM_LEN],
    /// The last `HINT_DATA_LEN` bytes of the opened path (open hints).
    pub data: [u8; HINT_DATA_LEN],
}
const _: () = assert!(core::mem::size_of::<HintRecord>() == 120);

/// One element of the `iter/task` CPU iterator's output: a user thread's
/// on-CPU time. Not a ring-buffer record (no header): the iterator writes
/// an array of these to the file user space reads at each poll.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskCpuRecord {
    pub tgid: u32,
    pub pid: u32,
    /// `se.sum_exec_runtime` of this thread.
    pub runtime_ns: u64,
    /// For the group leader only: `signal->sum_sched_runtime`, the time of
    /// the process's threads that already exited; 0 for other threads.
    pub dead_threads_ns: u64,
}
const _: () = assert!(core::mem::size_of::<TaskCpuRecord>() == 24);

pub const RECORD_MAX_SIZE: usize = core::mem::size_of::<ExecRecord>();

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::Header {}
    unsafe impl aya::Pod for super::ExecRecord {}
    unsafe impl aya::Pod for super::ForkRecord {}
    unsafe impl aya::Pod for super::ExitRecord {}
    unsafe impl aya::Pod for super::ConnectRecord {}
    unsafe impl aya::Pod for super::PayloadRecord {}
    unsafe impl aya::Pod for super::TaskCpuRecord {}
    unsafe impl aya::Pod for super::ListenRecord {}
    unsafe impl aya::Pod for super::FlowStatsRecord {}
    unsafe impl aya::Pod for super::FpuRecord {}
    unsafe impl aya::Pod for super::HintRecord {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    #[test]
    fn record_sizes_and_alignments_are_fixed() {
        assert_eq!((size_of::<Header>(), align_of::<Header>()), (16, 8));
        assert_eq!(
            (size_of::<ExecRecord>(), align_of::<ExecRecord>()),
            (640, 8)
        );
        assert_eq!((size_of::<ForkRecord>(), align_of::<ForkRecord>()), (48, 8));
        assert_eq!((size_of::<ExitRecord>(), align_of::<ExitRecord>()), (48, 8));
        assert_eq!(
            (size_of::<ConnectRecord>(), align_of::<ConnectRecord>()),
            (80, 8)
        );
        assert_eq!(
            (size_of::<PayloadRecord>(), align_of::<PayloadRecord>()),
            (336, 8)
        );
        assert_eq!(
            (size_of::<ListenRecord>(), align_of::<ListenRecord>()),
            (72, 8)
        );
        assert_eq!(
            (size_of::<FlowStatsRecord>(), align_of::<FlowStatsRecord>()),
            (56, 8)
        );
        assert_eq!((size_of::<FpuRecord>(), align_of::<FpuRecord>()), (48, 8));
        assert_eq!(
            (size_of::<HintRecord>(), align_of::<HintRecord>()),
            (120, 8)
        );
    }

    #[test]
    fn field_offsets_match_the_documented_layout() {
        assert_eq!(offset_of!(Header, ktime_ns), 8);
        assert_eq!(offset_of!(ExecRecord, tgid), 16);
        assert_eq!(offset_of!(ExecRecord, cgroup_id), 40);
        assert_eq!(offset_of!(ExecRecord, start_boottime_ns), 64);
        assert_eq!(offset_of!(ExecRecord, comm), 80);
        assert_eq!(offset_of!(ExecRecord, filename), 128);
        assert_eq!(offset_of!(ExecRecord, args), 384);
        assert_eq!(offset_of!(ConnectRecord, cookie), 32);
        assert_eq!(offset_of!(ConnectRecord, daddr), 40);
        assert_eq!(offset_of!(ConnectRecord, ret), 56);
        assert_eq!(offset_of!(PayloadRecord, cookie), 16);
        assert_eq!(offset_of!(PayloadRecord, saddr), 48);
        assert_eq!(offset_of!(PayloadRecord, data), 80);
        assert_eq!(offset_of!(PayloadRecord, seq), 44);
        assert_eq!(offset_of!(FlowStatsRecord, cookie), 16);
        assert_eq!(offset_of!(FlowStatsRecord, packets), 28);
        assert_eq!(offset_of!(FlowStatsRecord, first_ns), 40);
        assert_eq!(offset_of!(FlowStatsRecord, max_len), 48);
        assert_eq!(offset_of!(ForkRecord, child_start_boottime_ns), 24);
        assert_eq!(offset_of!(ExitRecord, cpu_ns), 24);
        assert_eq!(offset_of!(ListenRecord, family), 28);
        assert_eq!(offset_of!(ListenRecord, port), 30);
        assert_eq!(offset_of!(ListenRecord, addr), 32);
        assert_eq!(offset_of!(ListenRecord, flags), 48);
        assert_eq!(offset_of!(ListenRecord, comm), 56);
        assert_eq!(offset_of!(FpuRecord, mxcsr), 24);
        assert_eq!(offset_of!(FpuRecord, seen), 28);
        assert_eq!(offset_of!(FpuRecord, comm), 32);
        assert_eq!(offset_of!(HintRecord, kind), 28);
        assert_eq!(offset_of!(HintRecord, value), 32);
        assert_eq!(offset_of!(HintRecord, comm), 40);
        assert_eq!(offset_of!(HintRecord, data), 56);
    }

    #[test]
    fn mxcsr_classes_separate_randomx_from_fast_math_and_fesetround() {
        // RandomX's four states: FTZ + DAZ, each rounding mode.
        let rx: [u32; 4] = [0x9FC0, 0xBFC0, 0xDFC0, 0xFFC0];
        let classes: [u32; 4] = rx.map(mxcsr_class);
        assert_eq!(classes, [12, 13, 14, 15]);
        assert_eq!(mxcsr_class(MXCSR_DEFAULT), 0);
        // fesetround(FE_DOWNWARD / FE_UPWARD / FE_TOWARDZERO) without FTZ.
        assert_eq!(mxcsr_class(0x3F80), 1);
        assert_eq!(mxcsr_class(0x5F80), 2);
        assert_eq!(mxcsr_class(0x7F80), 3);
        // Sticky exception flags do not change the class.
        assert_eq!(mxcsr_class(0x9FC0 | 0x3F), 12);
        // Fast math (FTZ + DAZ, nearest) is not reported on its own.
        assert_eq!(FPU_REPORT_CLASSES & (1 << 12), 0);
        assert_eq!(FPU_REPORT_CLASSES & 1, 0);
        for c in [1, 2, 3, 13, 14, 15] {
            assert_ne!(FPU_REPORT_CLASSES & (1 << c), 0, "class {c}");
        }
        for k in HintKind::ALL {
            assert_eq!(HintKind::try_from(k as u16), Ok(k));
        }
        assert_eq!(HintKind::try_from(0), Err(0));
    }

    #[test]
    fn unknown_kinds_and_sites_are_rejected() {
        for k in RecordKind::ALL {
            assert_eq!(RecordKind::try_from(k as u16), Ok(k));
        }
        assert_eq!(RecordKind::try_from(0), Err(0));
        assert_eq!(RecordKind::try_from(99), Err(99));
        for s in crate::DropSite::ALL {
            assert_eq!(crate::DropSite::try_from(s as u32), Ok(s));
        }
        assert!(crate::DropSite::try_from(crate::DROP_SITES).is_err());
    }

    #[test]
    fn task_cpu_record_layout_is_fixed() {
        assert_eq!(size_of::<TaskCpuRecord>(), 24);
        assert_eq!(offset_of!(TaskCpuRecord, pid), 4);
        assert_eq!(offset_of!(TaskCpuRecord, runtime_ns), 8);
        assert_eq!(offset_of!(TaskCpuRecord, dead_threads_ns), 16);
        assert_eq!(size_of::<crate::KernelOffsets>(), 116);
        assert_eq!(offset_of!(crate::KernelOffsets, signal_nr_threads), 104);
        assert_eq!(offset_of!(crate::KernelOffsets, task_thread_node), 112);
    }

    #[test]
    fn map_value_layouts_are_fixed() {
        assert_eq!(size_of::<crate::PendingConnect>(), 32);
        assert_eq!(size_of::<crate::FlowState>(), 40);
        assert_eq!(core::mem::offset_of!(crate::FlowState, bytes), 16);
        assert_eq!(size_of::<crate::DestKey>(), 24);
        assert_eq!(size_of::<crate::SockOffsets>(), 56);
        assert_eq!(core::mem::offset_of!(crate::SockOffsets, fd_valid), 20);
        assert_eq!(core::mem::offset_of!(crate::SockOffsets, socket_sk), 52);
        assert_eq!(size_of::<crate::FpuSeen>(), 16);
        assert_eq!(size_of::<crate::HintSeen>(), 16);
    }

    #[test]
    fn flow_states_start_with_their_budgets() {
        let tracked = crate::FlowState::new(42);
        assert_eq!(
            (tracked.tgid, tracked.peeked, tracked.budget, tracked.flags),
            (42, 0, crate::PEEK_PACKETS_PER_FLOW, 0)
        );
        let untracked = crate::FlowState::untracked();
        assert_eq!(
            (untracked.tgid, untracked.budget, untracked.flags),
            (0, crate::PEEK_PACKETS_UNTRACKED, crate::FLOW_UNTRACKED)
        );
        assert_eq!(crate::FLOW_UNTRACKED & crate::FLOW_COUNT, 0);
    }
}
