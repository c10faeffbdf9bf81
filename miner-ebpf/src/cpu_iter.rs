//! `iter/task`: per-thread on-CPU time, read from the scheduler's own
//! accounting when user space polls (once a second), never at a context
//! switch.
//!
//! The kernel already keeps `se.sum_exec_runtime` for every thread,
//! updated at each tick and switch, and folds exited threads into
//! `signal->sum_sched_runtime`. A task iterator walks all tasks in one
//! `read()` and writes one `TaskCpuRecord` per user thread, so CPU
//! residency costs nothing on the scheduler's hot path (a `sched_switch`
//! or `sched_stat_runtime` hook ran on every switch and tick of every
//! thread) and a thread alone on an idle core is seen at every poll.
//!
//! match-proto: struct bpf_iter__task { struct bpf_iter_meta *meta;
//! struct task_struct *task; } (task NULL after the last one), Linux 5.8+.

use core::ffi::c_void;

use aya_ebpf::helpers::bpf_seq_write;
use miner_ebpf_common::TaskCpuRecord;

use crate::{maps::offsets, task};

#[repr(C)]
struct IterMeta {
    seq: *mut c_void,
    session_id: u64,
    seq_num: u64,
}

#[repr(C)]
struct IterTaskCtx {
    meta: *const IterMeta,
    task: *const u8,
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/task")]
pub extern "C" fn task_cpu(ctx: *mut c_void) -> i32 {
    let ctx = ctx as *const IterTaskCtx;
    // SAFETY: the kernel passes a `bpf_iter__task`; both fields are typed
    // pointers the verifier tracks (task may be NULL).
    let (meta, t) = unsafe { ((*ctx).meta, (*ctx).task) };
    if t.is_null() || meta.is_null() {
        return 0;
    }
    let o = offsets();
    if o.valid == 0 || o.task_sum_exec_runtime == 0 {
        return 0;
    }
    // Kernel threads have no mm: never a miner, and most of the list.
    if task::read::<u64>(t, o.task_mm).unwrap_or(0) == 0 {
        return 0;
    }
    let (Ok(tgid), Ok(pid), Ok(runtime_ns)) = (
        task::read::<u32>(t, o.task_tgid),
        task::read::<u32>(t, o.task_pid),
        task::read::<u64>(t, o.task_sum_exec_runtime),
    ) else {
        return 0;
    };
    if pid == tgid {
        // Alive at a poll: a parked child is worth its fork record now.
        crate::pending::release_own(tgid);
    }
    let dead_threads_ns = if pid == tgid {
        task::read_ptr(t, o.task_signal)
            .and_then(|s| task::read::<u64>(s, o.signal_sum_sched_runtime))
            .unwrap_or(0)
    } else {
        0
    };
    if runtime_ns == 0 && dead_threads_ns == 0 {
        return 0;
    }
    let rec = TaskCpuRecord {
        tgid,
        pid,
        runtime_ns,
        dead_threads_ns,
    };
    // SAFETY: `seq` is the iterator's seq_file; the record lives on our
    // stack for the call.
    unsafe {
        let seq = (*meta).seq;
        bpf_seq_write(
            seq as *mut _,
            &rec as *const TaskCpuRecord as *const c_void,
            core::mem::size_of::<TaskCpuRecord>() as u32,
        );
    }
    0
}
