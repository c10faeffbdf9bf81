//! `tracepoint/sched/sched_switch`: on-CPU time per tgid, aggregated in the
//! kernel. No event per context switch reaches user space.
//!
//! The tracepoint fires before the switch, in the outgoing task, so the
//! slice since this CPU's previous switch belongs to `current`: one per-CPU
//! timestamp is all the state needed, and no tracepoint field is read.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::tracepoint,
    programs::TracePointContext,
};
use miner_ebpf_common::DropSite;

use crate::{
    maps::{CPU_NS, SWITCH_TS, count_drop, offsets, runtime_mode, runtime_offsets},
    task,
};

#[tracepoint(category = "sched", name = "sched_switch")]
pub fn sched_switch(_ctx: TracePointContext) -> u32 {
    if runtime_mode() {
        return 0;
    }
    let now = unsafe { bpf_ktime_get_ns() };
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    account_current(tgid, now);
    0
}

/// `tracepoint/sched/sched_stat_runtime`: the scheduler's own accounting
/// (`update_curr`), at every tick and switch. Preferred over slices at
/// `sched_switch`: a thread alone on an idle core is not switched out for
/// seconds, and its time would only show when it finally is.
#[tracepoint(category = "sched", name = "sched_stat_runtime")]
pub fn sched_stat_runtime(ctx: TracePointContext) -> u32 {
    let (pid_off, ns_off) = runtime_offsets();
    if ns_off == 0 {
        return 0;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let Ok(pid) = (unsafe { ctx.read_at::<i32>(pid_off as usize) }) else {
        return 0;
    };
    // Charged to the current task only: that is the tgid we can name.
    if pid as u32 != pid_tgid as u32 {
        return 0;
    }
    let Ok(delta) = (unsafe { ctx.read_at::<u64>(ns_off as usize) }) else {
        return 0;
    };
    charge((pid_tgid >> 32) as u32, delta);
    0
}

/// Charge `now - last switch on this CPU` to `tgid` and restart the slice.
#[inline(always)]
pub fn account_current(tgid: u32, now: u64) {
    let Some(slot) = SWITCH_TS.get_ptr_mut(0) else {
        return;
    };
    let last = unsafe { *slot };
    unsafe { *slot = now };
    if tgid == 0 || last == 0 || now <= last {
        return; // idle task, or the first switch seen on this CPU
    }
    charge(tgid, now - last);
}

#[inline(always)]
fn charge(tgid: u32, delta: u64) {
    if tgid == 0 || delta == 0 {
        return;
    }
    match CPU_NS.get_ptr_mut(tgid) {
        // Threads of one process run on several CPUs at once.
        Some(p) => add(p, delta),
        // The exit hook took this process's final total and removed its
        // entry; the dying threads' last slices (their final switch out)
        // must not bring it back, or the next poll would see a new process
        // and the exit total would no longer be the last word.
        None if group_dead() => {}
        None => {
            if CPU_NS.insert(tgid, delta, BPF_NOEXIST as u64).is_err() {
                // Lost a race with another CPU inserting it: add to theirs.
                match CPU_NS.get_ptr_mut(tgid) {
                    Some(p) => add(p, delta),
                    None => count_drop(DropSite::CpuMapFull),
                }
            }
        }
    }
}

/// Has every thread of the current process begun exiting (`signal->live`
/// is 0)? Read only on the miss path, so a running process pays nothing.
#[inline(always)]
fn group_dead() -> bool {
    let o = offsets();
    if o.valid == 0 {
        return false;
    }
    task::read_ptr(task::current(), o.task_signal)
        .and_then(|signal| task::read::<i32>(signal, o.signal_live))
        .is_ok_and(|live| live == 0)
}

/// An atomic add (`BPF_ATOMIC_ADD`). `AtomicU64::fetch_add` is not offered on
/// the bpf target (no `target_has_atomic`), but the instruction exists and
/// the verifier accepts it on map values; the intrinsic emits it.
#[inline(always)]
fn add(p: *mut u64, delta: u64) {
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(p, delta) };
}
