//! Every map of the object, its bound and why. Bounds live in
//! miner-ebpf-common so the loader and tests see the same numbers.

use aya_ebpf::{
    bindings::bpf_sock,
    btf_maps::SkStorage,
    helpers::generated::bpf_sk_storage_get,
    macros::{btf_map, map},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use miner_ebpf_common::{
    ABI_VERSION, BLOCKED_DESTS_MAX, BLOCKED_TGIDS_MAX, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP,
    BPF_RB_NO_WAKEUP, CONTROL_READER_ASLEEP, CONTROL_SLOTS, DROP_SITES, DestKey, DropSite,
    EVENTS_BYTES_DEFAULT, FPU_THREADS_MAX, FlowState, FpuSeen, HINT_PROCS_MAX, HintSeen,
    KernelOffsets, PENDING_CONNECT_MAX, PendingConnect, SockOffsets,
};

/// All records to user space. The loader resizes it (`ring_buffer_bytes`).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES_DEFAULT, 0);

/// Settings and state written from user space (`CONTROL_*` slots).
#[map]
pub static CONTROL: Array<u64> = Array::with_max_entries(CONTROL_SLOTS, 0);

/// Per-CPU drop counters indexed by `DropSite`: no atomics on the hot path.
#[map]
pub static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DROP_SITES, 0);

/// Thread (pid_tgid) -> connect in flight, completed at `sys_exit_connect`.
#[map]
pub static PENDING_CONNECT: LruHashMap<u64, PendingConnect> =
    LruHashMap::with_max_entries(PENDING_CONNECT_MAX, 0);

/// Socket -> its peek state, in the socket's own storage: the egress hook
/// finds it with one socket-local lookup (no cookie, no hash), and it dies
/// with the socket, so nothing leaks and no bound is needed (a socket
/// storage map has no `max_entries`; it holds one value per live socket
/// that has one). Needs BTF for the map (Linux 5.2+; from `cgroup/connect*`
/// 5.8+).
#[btf_map]
pub static SOCK_FLOWS: SkStorage<FlowState> = SkStorage::new();

/// The socket's `SOCK_FLOWS` entry, if it has one. `sk` must be a full
/// socket.
#[inline(always)]
pub fn sock_flow(sk: *mut bpf_sock) -> *mut FlowState {
    let map = core::ptr::from_ref(&SOCK_FLOWS).cast_mut();
    unsafe { bpf_sk_storage_get(map.cast(), sk.cast(), core::ptr::null_mut(), 0) }.cast()
}

/// The socket's `SOCK_FLOWS` entry, created as a copy of `init` if it has
/// none (an existing entry is returned as it is). Null if the kernel could
/// not allocate it.
#[inline(always)]
pub fn sock_flow_create(sk: *mut bpf_sock, init: &mut FlowState) -> *mut FlowState {
    let map = core::ptr::from_ref(&SOCK_FLOWS).cast_mut();
    let init: *mut FlowState = init;
    unsafe {
        bpf_sk_storage_get(
            map.cast(),
            sk.cast(),
            init.cast(),
            aya_ebpf::bindings::BPF_SK_STORAGE_GET_F_CREATE as u64,
        )
    }
    .cast()
}

/// Response: tgids whose TCP connects are refused with EPERM.
#[map]
pub static BLOCKED_TGIDS: HashMap<u32, u8> = HashMap::with_max_entries(BLOCKED_TGIDS_MAX, 0);

/// Response: pool endpoints every process is refused (port 0 = any port).
#[map]
pub static BLOCKED_DESTS: HashMap<DestKey, u8> = HashMap::with_max_entries(BLOCKED_DESTS_MAX, 0);

/// Thread (pid) -> the MXCSR classes it was switched out with, for threads
/// that ever left the default. Threads at the default never get an entry.
#[map]
pub static FPU_SEEN: LruHashMap<u32, FpuSeen> = LruHashMap::with_max_entries(FPU_THREADS_MAX, 0);

/// tgid -> hint kinds already reported for its current image.
#[map]
pub static HINT_SEEN: LruHashMap<u32, HintSeen> = LruHashMap::with_max_entries(HINT_PROCS_MAX, 0);

/// Slot 0: set once the exec sensor has logged that it is live.
#[map]
pub static ONCE: Array<u32> = Array::with_max_entries(1, 0);

/// Structure offsets from the running kernel's BTF, set by the loader.
#[unsafe(no_mangle)]
static OFFSETS: KernelOffsets = KernelOffsets::zeroed();

/// `struct sock_common` offsets for the listen hook, set by the loader.
#[unsafe(no_mangle)]
static SOCK_OFFSETS: SockOffsets = SockOffsets::zeroed();

#[inline(always)]
pub fn sock_offsets() -> SockOffsets {
    unsafe { core::ptr::read_volatile(&SOCK_OFFSETS) }
}

/// Bytes pending in `EVENTS` past which a submit wakes the reader; below it
/// records wait for the reader's timer (a wakeup per record cost the hooked
/// task 20-30 µs here, against 1-2 µs without).
#[unsafe(no_mangle)]
static WAKEUP_BYTES: u64 = (EVENTS_BYTES_DEFAULT / 8) as u64;

/// The ABI this object was built for; the loader compares it with its own.
#[unsafe(no_mangle)]
static MINERWATCH_ABI: u32 = ABI_VERSION;

#[inline(always)]
pub fn offsets() -> KernelOffsets {
    // Volatile: the loader rewrites .rodata; without it LLVM folds the zeros.
    unsafe { core::ptr::read_volatile(&OFFSETS) }
}

/// The three FPU fields of `OFFSETS`, read one by one: the fpu program runs
/// at every context switch and copying the whole struct costs loads.
#[inline(always)]
pub fn fpu_offsets() -> (u32, u32, u32) {
    // Volatile for the same reason as `offsets`.
    unsafe {
        (
            core::ptr::read_volatile(&OFFSETS.fpu_layout),
            core::ptr::read_volatile(&OFFSETS.fpu_fpstate),
            core::ptr::read_volatile(&OFFSETS.fpu_mxcsr),
        )
    }
}

#[inline(always)]
pub fn abi() -> u32 {
    unsafe { core::ptr::read_volatile(&MINERWATCH_ABI) }
}

/// Submit flags: wake the reader past the fill threshold, or for the first
/// record after it went to sleep on an empty ring (it then has no timer).
/// Two CPUs racing past the check both wake it: harmless.
#[inline(always)]
pub fn wake_flags() -> u64 {
    if let Some(asleep) = CONTROL.get_ptr_mut(CONTROL_READER_ASLEEP)
        && unsafe { *asleep } != 0
    {
        unsafe { *asleep = 0 };
        return BPF_RB_FORCE_WAKEUP;
    }
    let threshold = unsafe { core::ptr::read_volatile(&WAKEUP_BYTES) };
    if EVENTS.query(BPF_RB_AVAIL_DATA) >= threshold {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

#[inline(always)]
pub fn count_drop(site: DropSite) {
    if let Some(slot) = DROPS.get_ptr_mut(site as u32) {
        // Per-CPU slot: only this CPU writes it, so a plain add is exact.
        unsafe { *slot += 1 };
    }
}

/// The header every record starts with: its kind, this CPU and when.
#[inline(always)]
pub fn header(kind: miner_ebpf_common::RecordKind, ktime_ns: u64) -> miner_ebpf_common::Header {
    miner_ebpf_common::Header {
        kind: kind as u16,
        _pad: 0,
        cpu: unsafe { aya_ebpf::helpers::bpf_get_smp_processor_id() },
        ktime_ns,
    }
}
