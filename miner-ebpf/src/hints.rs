//! Syscall-entry tracepoints for the cheap hints of mining set-up: huge-page
//! reservation (opening `nr_hugepages` for writing, under /proc/sys or
//! sysfs), large hugetlb mappings (RandomX's 256 MiB cache and 2 GiB
//! dataset) and opening `/dev/cpu/N/msr` for writing (XMRig's prefetcher
//! tweak).
//!
//! fentry on the kernel functions that implement these (hugetlb sysctl and
//! sysfs handlers, `hugetlb_file_setup`, `chrdev_open`) would run only for
//! the operation itself, but BPF_PROG_TYPE_TRACING loads are refused with
//! EPERM on the machines we run on; syscall tracepoints work everywhere
//! minerwatch does. They run on every open and mmap, so the filter comes
//! first and reads only the tracepoint record: a read-only open (nearly all
//! of them) or an mmap without MAP_HUGETLB returns after one load and a
//! compare. Only writable opens read the path. A process reports each hint
//! kind (each size class for mappings) once per image (`HINT_SEEN`).
//!
//! match-proto: sys_enter_openat(dfd @16, filename @24, flags @32),
//! sys_enter_open(filename @16, flags @24), sys_enter_mmap(addr @16,
//! len @24, prot @32, flags @40): the syscall tracepoints' fields are the
//! syscall's arguments, 8 bytes each after `__syscall_nr`, on every kernel.

use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_ktime_get_ns,
        bpf_probe_read_user_buf, bpf_probe_read_user_str_bytes,
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use miner_ebpf_common::{
    DropSite, HINT_DATA_LEN, HUGETLB_HINT_MIN_BYTES, HintKind, HintRecord, HintSeen, MAP_HUGETLB,
    RecordKind,
};

use crate::{
    maps::{EVENTS, HINT_SEEN, count_drop, header, offsets, wake_flags},
    task,
};

const O_ACCMODE: u64 = 3;
/// Path bytes scanned: the per-node sysfs path is ~75 bytes.
const PATH_SCAN: usize = 256;

/// A tracepoint field: a direct load from the record (no helper).
#[inline(always)]
fn field(ctx: &TracePointContext, off: usize) -> u64 {
    unsafe { *((ctx.as_ptr() as *const u8).add(off) as *const u64) }
}

#[tracepoint(category = "syscalls", name = "sys_enter_openat")]
pub fn sys_enter_openat(ctx: TracePointContext) -> u32 {
    on_open(field(&ctx, 24), field(&ctx, 32));
    0
}

/// `open(2)`: static musl binaries (XMRig's release builds) use it, not
/// `openat`.
#[tracepoint(category = "syscalls", name = "sys_enter_open")]
pub fn sys_enter_open(ctx: TracePointContext) -> u32 {
    on_open(field(&ctx, 16), field(&ctx, 24));
    0
}

#[inline(always)]
fn on_open(filename: u64, flags: u64) {
    if flags & O_ACCMODE == 0 {
        return; // O_RDONLY: every read of /proc, never a hint
    }
    let mut buf = [0u8; PATH_SCAN];
    let Ok(path) = (unsafe { bpf_probe_read_user_str_bytes(filename as *const u8, &mut buf) })
    else {
        return;
    };
    let n = path.len();
    let Some(kind) = classify(&buf, n) else {
        return;
    };
    let hint = Hint {
        kind,
        bit: kind as u32,
        value: 0,
        path: filename as *const u8,
        path_len: n,
    };
    report(&hint);
}

/// Byte `i` of `buf`, masked so the verifier sees it in bounds.
#[inline(always)]
fn at(buf: &[u8; PATH_SCAN], i: usize) -> u8 {
    buf[i & (PATH_SCAN - 1)]
}

#[inline(always)]
fn ends_with<const L: usize>(buf: &[u8; PATH_SCAN], n: usize, suffix: &[u8; L]) -> bool {
    if n < L {
        return false;
    }
    let mut i = 0;
    while i < L {
        if at(buf, n - L + i) != suffix[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[inline(always)]
fn starts_with<const L: usize>(buf: &[u8; PATH_SCAN], n: usize, prefix: &[u8; L]) -> bool {
    if n < L {
        return false;
    }
    let mut i = 0;
    while i < L {
        if buf[i] != prefix[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// `name` is the whole path or follows a `/`.
#[inline(always)]
fn is_file<const L: usize>(buf: &[u8; PATH_SCAN], n: usize, name: &[u8; L]) -> bool {
    ends_with(buf, n, name) && (n == L || at(buf, n - L - 1) == b'/')
}

#[inline(always)]
fn classify(buf: &[u8; PATH_SCAN], n: usize) -> Option<HintKind> {
    if is_file(buf, n, b"nr_hugepages") || is_file(buf, n, b"nr_hugepages_mempolicy") {
        return Some(if starts_with(buf, n, b"/proc/") {
            HintKind::HugepagesSysctl
        } else {
            HintKind::HugepagesSysfs
        });
    }
    if starts_with(buf, n, b"/dev/cpu/") && ends_with(buf, n, b"/msr") {
        return Some(HintKind::MsrOpen);
    }
    None
}

#[tracepoint(category = "syscalls", name = "sys_enter_mmap")]
pub fn sys_enter_mmap(ctx: TracePointContext) -> u32 {
    let flags = field(&ctx, 40);
    if flags & MAP_HUGETLB == 0 {
        return 0;
    }
    let len = field(&ctx, 24);
    if len < HUGETLB_HINT_MIN_BYTES {
        return 0;
    }
    let hint = Hint {
        kind: HintKind::HugetlbMap,
        bit: 8 + size_class(len),
        value: len,
        path: core::ptr::null(),
        path_len: 0,
    };
    report(&hint);
    0
}

/// Mappings are reported once per size class, so a cache after a dataset
/// (or the reverse) is seen too: <512 MiB (RandomX cache), <1 GiB,
/// <4 GiB (RandomX dataset), larger.
#[inline(always)]
fn size_class(size: u64) -> u32 {
    if size < 512 << 20 {
        0
    } else if size < 1 << 30 {
        1
    } else if size < 4 << 30 {
        2
    } else {
        3
    }
}

struct Hint {
    kind: HintKind,
    /// Bit in `HintSeen.bits`.
    bit: u32,
    value: u64,
    /// The opened path (user memory) whose tail goes in the record, or null.
    path: *const u8,
    path_len: usize,
}

#[inline(always)]
fn report(h: &Hint) {
    if let Err(site) = try_report(h) {
        count_drop(site);
    }
}

#[inline(always)]
fn try_report(h: &Hint) -> Result<(), DropSite> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if !first_time(tgid, h.bit) {
        return Ok(());
    }
    crate::pending::release(tgid);
    let mut entry = EVENTS
        .reserve::<HintRecord>(0)
        .ok_or(DropSite::HintRingFull)?;
    let rec = unsafe { &mut *entry.as_mut_ptr() };
    rec.header = header(RecordKind::Hint, unsafe { bpf_ktime_get_ns() });
    rec.tgid = tgid;
    rec.pid = pid_tgid as u32;
    rec.uid = bpf_get_current_uid_gid() as u32;
    rec.kind = h.kind as u16;
    rec.value = h.value;
    rec.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    rec.data = [0; HINT_DATA_LEN];
    rec.data_len = 0;
    if !h.path.is_null() && h.path_len > 0 {
        // The tail: it names the file and the huge-page size.
        let want = if h.path_len > HINT_DATA_LEN {
            HINT_DATA_LEN
        } else {
            h.path_len
        };
        // Mask so the verifier sees 1..=HINT_DATA_LEN (a power of two).
        let k = ((want - 1) & (HINT_DATA_LEN - 1)) + 1;
        let src = h.path.wrapping_add(h.path_len - k);
        if unsafe { bpf_probe_read_user_buf(src, &mut rec.data[..k]) }.is_ok() {
            rec.data_len = k as u16;
        }
    }
    entry.submit(wake_flags());
    Ok(())
}

/// Marks `bit` for the current image of `tgid`; false if it was marked.
#[inline(always)]
fn first_time(tgid: u32, bit: u32) -> bool {
    let o = offsets();
    let start = if o.valid != 0 {
        task::start_boottime(&o, task::current()).unwrap_or(0)
    } else {
        0
    };
    let mask = 1u32 << (bit & 31);
    match HINT_SEEN.get_ptr_mut(tgid) {
        Some(p) => {
            let s = unsafe { &mut *p };
            if s.start_boottime_ns != start {
                s.start_boottime_ns = start;
                s.bits = 0;
            }
            if s.bits & mask != 0 {
                return false;
            }
            s.bits |= mask;
            true
        }
        None => {
            let fresh = HintSeen {
                start_boottime_ns: start,
                bits: mask,
                _pad: 0,
            };
            // LRU: evicts rather than fails; a failure only costs dedup.
            let _ = HINT_SEEN.insert(tgid, fresh, 0);
            true
        }
    }
}
