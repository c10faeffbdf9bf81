//! fentry hooks for the cheap hints of mining set-up: huge-page reservation
//! (sysctl or sysfs writes), large hugetlb mappings (RandomX's 256 MiB cache
//! and 2 GiB dataset), opens of the MSR device (XMRig's prefetcher tweak).
//!
//! Each hooks a kernel function that runs only for the operation itself,
//! never for every syscall, and is filtered here: a sysctl read, a small
//! mapping, a tty open cost one compare. A process reports each hint kind
//! (each size class for mappings) once per image (`HINT_SEEN`).
//!
//! match-proto (fentry reads arguments by position):
//! - `int hugetlb_sysctl_handler(const struct ctl_table *, int write,
//!   void *buffer, size_t *lenp, loff_t *ppos)`, and
//!   `hugetlb_mempolicy_sysctl_handler` (same): `buffer` is the kernel copy
//!   of what was written (5.8+).
//! - `ssize_t nr_hugepages_store(struct kobject *, struct kobj_attribute *,
//!   const char *buf, size_t len)`: global and per-node sysfs files.
//! - `struct file *hugetlb_file_setup(const char *name, size_t size,
//!   vm_flags_t, int creat_flags, int page_size_log)`: `mmap(MAP_HUGETLB)`,
//!   `memfd_create(MFD_HUGETLB)`, `shmget(SHM_HUGETLB)`, before the
//!   reservation that fails when no huge pages are free.
//! - `int chrdev_open(struct inode *, struct file *)`: every character
//!   device open, before the driver lookup (so an open of a stray MSR node
//!   without the driver still counts as the attempt it is).

use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        bpf_get_smp_processor_id, bpf_ktime_get_ns, bpf_probe_read_kernel_buf,
    },
    macros::fentry,
    programs::FEntryContext,
};
use miner_ebpf_common::{
    DropSite, HINT_DATA_LEN, HUGETLB_HINT_MIN_BYTES, Header, HintKind, HintRecord, HintSeen,
    MSR_MAJOR, RecordKind,
};

use crate::{
    maps::{EVENTS, HINT_SEEN, count_drop, offsets, wake_flags},
    task,
};

#[fentry(function = "hugetlb_sysctl_handler")]
pub fn hugetlb_sysctl_handler(ctx: FEntryContext) -> i32 {
    on_sysctl(&ctx);
    0
}

#[fentry(function = "hugetlb_mempolicy_sysctl_handler")]
pub fn hugetlb_mempolicy_sysctl(ctx: FEntryContext) -> i32 {
    on_sysctl(&ctx);
    0
}

#[inline(always)]
fn on_sysctl(ctx: &FEntryContext) {
    let write: i32 = ctx.arg(1);
    if write == 0 {
        return; // `sysctl -a`, monitoring agents
    }
    let buf: u64 = ctx.arg(2);
    let lenp: u64 = ctx.arg(3);
    let len = task::read::<u64>(lenp as *const u8, 0).unwrap_or(0);
    let hint = Hint {
        kind: HintKind::HugepagesSysctl,
        bit: HintKind::HugepagesSysctl as u32,
        value: 0,
        data: buf as *const u8,
        data_len: len,
    };
    report(&hint);
}

#[fentry(function = "nr_hugepages_store")]
pub fn nr_hugepages_store(ctx: FEntryContext) -> i32 {
    let buf: u64 = ctx.arg(2);
    let len: u64 = ctx.arg(3);
    let hint = Hint {
        kind: HintKind::HugepagesSysfs,
        bit: HintKind::HugepagesSysfs as u32,
        value: 0,
        data: buf as *const u8,
        data_len: len,
    };
    report(&hint);
    0
}

#[fentry(function = "hugetlb_file_setup")]
pub fn hugetlb_file_setup(ctx: FEntryContext) -> i32 {
    let size: u64 = ctx.arg(1);
    if size < HUGETLB_HINT_MIN_BYTES {
        return 0;
    }
    let hint = Hint {
        kind: HintKind::HugetlbMap,
        bit: 8 + size_class(size),
        value: size,
        data: core::ptr::null(),
        data_len: 0,
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

#[fentry(function = "chrdev_open")]
pub fn chrdev_open(ctx: FEntryContext) -> i32 {
    let inode: u64 = ctx.arg(0);
    let o = offsets();
    if o.valid == 0 {
        return 0;
    }
    let Ok(rdev) = task::read::<u32>(inode as *const u8, o.inode_i_rdev) else {
        return 0;
    };
    // Kernel dev_t: major in the top 12 bits, minor in the low 20.
    if rdev >> 20 != MSR_MAJOR {
        return 0;
    }
    let hint = Hint {
        kind: HintKind::MsrOpen,
        bit: HintKind::MsrOpen as u32,
        value: u64::from(rdev & 0xf_ffff),
        data: core::ptr::null(),
        data_len: 0,
    };
    report(&hint);
    0
}

struct Hint {
    kind: HintKind,
    /// Bit in `HintSeen.bits`.
    bit: u32,
    value: u64,
    /// Kernel bytes to copy into the record (written text), or null.
    data: *const u8,
    data_len: u64,
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
    let mut entry = EVENTS
        .reserve::<HintRecord>(0)
        .ok_or(DropSite::HintRingFull)?;
    let rec = unsafe { &mut *entry.as_mut_ptr() };
    rec.header = Header {
        kind: RecordKind::Hint as u16,
        _pad: 0,
        cpu: unsafe { bpf_get_smp_processor_id() },
        ktime_ns: unsafe { bpf_ktime_get_ns() },
    };
    rec.tgid = tgid;
    rec.pid = pid_tgid as u32;
    rec.uid = bpf_get_current_uid_gid() as u32;
    rec.kind = h.kind as u16;
    rec.value = h.value;
    rec.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    rec.data = [0; HINT_DATA_LEN];
    rec.data_len = 0;
    if !h.data.is_null() && h.data_len > 0 {
        // Mask so the verifier sees 1..=HINT_DATA_LEN (a power of two).
        let want = if h.data_len > HINT_DATA_LEN as u64 {
            HINT_DATA_LEN as u64
        } else {
            h.data_len
        };
        let n = (((want - 1) as usize) & (HINT_DATA_LEN - 1)) + 1;
        if unsafe { bpf_probe_read_kernel_buf(h.data, &mut rec.data[..n]) }.is_ok() {
            rec.data_len = n as u16;
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
