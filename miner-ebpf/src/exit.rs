//! `tracepoint/sched/sched_process_exit`: when the last thread of a
//! process exits, report the exit with the process's total CPU time from
//! the scheduler's own accounting — its dead threads'
//! `signal->sum_sched_runtime` plus this thread's `se.sum_exec_runtime`.
//! That total is authoritative: nothing charges the process after it.
//!
//! Every exiting thread also leaves `FPU_SEEN`.
//!
//! Runs in the exiting task. Group death is read from `signal->live` (already
//! decremented here) rather than the tracepoint's `group_dead` field, which
//! kernels before 6.x lack.

use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::tracepoint,
    programs::TracePointContext,
};
use miner_ebpf_common::{DropSite, ExitRecord, KernelOffsets, RecordKind};

/// Threads walked at most: more still exiting beside the last is rare, and
/// the walk must be bounded for the verifier.
const UNFOLDED_MAX: u32 = 64;

use crate::{
    maps::{EVENTS, FPU_SEEN, count_drop, header, offsets, wake_flags},
    pending, task,
};

#[tracepoint(category = "sched", name = "sched_process_exit")]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    if let Err(site) = try_sched_process_exit(&ctx) {
        count_drop(site);
    }
    0
}

fn try_sched_process_exit(_ctx: &TracePointContext) -> Result<(), DropSite> {
    let now = unsafe { bpf_ktime_get_ns() };
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    // Every exiting thread: a reused tid must not inherit its MXCSR set.
    // Looked up first: most threads never had an entry, and a lookup is
    // lock-free where a delete takes the bucket lock.
    if unsafe { FPU_SEEN.get(pid_tgid as u32) }.is_some() {
        let _ = FPU_SEEN.remove(pid_tgid as u32);
    }

    let o = offsets();
    if o.valid == 0 {
        return Ok(());
    }
    let t = task::current();
    let signal = task::read_ptr(t, o.task_signal);
    let live = signal
        .and_then(|signal| task::read::<i32>(signal, o.signal_live))
        .unwrap_or(0);
    if live != 0 {
        return Ok(()); // another thread of the process lives on
    }
    pending::forget_parent(tgid);
    if pending::quiet_exit(tgid, now) {
        return Ok(()); // forked, did nothing, died young: counted, not sent
    }
    let dead = signal
        .and_then(|s| task::read::<u64>(s, o.signal_sum_sched_runtime))
        .unwrap_or(0);
    let mine = task::read::<u64>(t, o.task_sum_exec_runtime).unwrap_or(0);
    // Read after `dead`: a thread folding in between is missed, never
    // counted twice.
    let cpu_ns = dead + mine + signal.map_or(0, |s| unfolded(&o, s, t));
    let rec = ExitRecord {
        header: header(RecordKind::Exit, now),
        tgid,
        exit_code: task::read::<u32>(t, o.task_exit_code).unwrap_or(0),
        cpu_ns,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    };
    let mut entry = EVENTS
        .reserve::<ExitRecord>(0)
        .ok_or(DropSite::ExitRingFull)?;
    entry.write(rec);
    entry.submit(wake_flags());
    Ok(())
}

/// Threads that passed their exit's `live` decrement before this one but
/// have not yet folded their runtime into `signal->sum_sched_runtime`: a
/// worker joined by the main thread wakes it early in its exit and folds
/// later, so a process whose main thread joins its workers and returns
/// would otherwise lose their CPU (seen: 3.0 s of a 3 s burner missing
/// under load). They are still on `signal->thread_head`.
#[inline(always)]
fn unfolded(o: &KernelOffsets, signal: *const u8, current: *const u8) -> u64 {
    if o.task_thread_node == 0 || o.signal_thread_head == 0 {
        return 0;
    }
    if task::read::<i32>(signal, o.signal_nr_threads).unwrap_or(1) <= 1 {
        return 0; // only this thread is left: the common case, one read
    }
    let head = signal.wrapping_add(o.signal_thread_head as usize);
    let Ok(mut node) = task::read_ptr(head, 0) else {
        return 0;
    };
    let mut sum = 0u64;
    let mut i = 0;
    while i < UNFOLDED_MAX && node != head {
        let t = node.wrapping_sub(o.task_thread_node as usize);
        if t != current {
            sum += task::read::<u64>(t, o.task_sum_exec_runtime).unwrap_or(0);
        }
        node = match task::read_ptr(node, 0) {
            Ok(next) => next,
            Err(_) => break,
        };
        i += 1;
    }
    sum
}
