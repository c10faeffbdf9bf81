//! Reads of `task_struct` and friends through offsets from the running
//! kernel's BTF (see `KernelOffsets`). Each read is a `bpf_probe_read_kernel`
//! and may fail; callers decide what a failure costs.

use aya_ebpf::helpers::{bpf_get_current_task, bpf_probe_read_kernel};
use miner_ebpf_common::KernelOffsets;

#[inline(always)]
pub fn current() -> *const u8 {
    unsafe { bpf_get_current_task() as *const u8 }
}

/// Read a `T` at `base + off`.
#[inline(always)]
pub fn read<T>(base: *const u8, off: u32) -> Result<T, i32> {
    if base.is_null() {
        return Err(-1);
    }
    unsafe { bpf_probe_read_kernel(base.wrapping_add(off as usize) as *const T) }
}

#[inline(always)]
pub fn read_ptr(base: *const u8, off: u32) -> Result<*const u8, i32> {
    let p: u64 = read(base, off)?;
    if p == 0 { Err(-1) } else { Ok(p as *const u8) }
}

/// `task->tgid`.
#[inline(always)]
pub fn tgid(o: &KernelOffsets, task: *const u8) -> Result<u32, i32> {
    read::<u32>(task, o.task_tgid)
}

/// `task->real_parent->tgid`.
#[inline(always)]
pub fn parent_tgid(o: &KernelOffsets, task: *const u8) -> Result<u32, i32> {
    let parent = read_ptr(task, o.task_real_parent)?;
    tgid(o, parent)
}

#[inline(always)]
pub fn start_boottime(o: &KernelOffsets, task: *const u8) -> Result<u64, i32> {
    read::<u64>(task, o.task_start_boottime)
}
