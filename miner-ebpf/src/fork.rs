//! `raw_tracepoint/sched_process_fork`: a new process (not a new thread).
//!
//! match-proto: trace_sched_process_fork(struct task_struct *parent,
//! struct task_struct *child), fired in the parent after copy_process. The
//! raw tracepoint gives the child's task_struct, so we can tell a thread
//! (same tgid as the parent) from a process, which the classic tracepoint's
//! fields cannot. The record may be parked (`pending.rs`). The hook runs
//! before the child is first woken, so nothing of the child's can come
//! before it.

use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use miner_ebpf_common::{DropSite, ForkRecord, RecordKind};

use crate::{
    maps::{count_drop, header, offsets},
    pending, task,
};

#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> i32 {
    if let Err(site) = try_sched_process_fork(&ctx) {
        count_drop(site);
    }
    0
}

fn try_sched_process_fork(ctx: &RawTracePointContext) -> Result<(), DropSite> {
    let o = offsets();
    if o.valid == 0 {
        return Ok(());
    }
    let child: u64 = ctx.arg(1);
    let child = child as *const u8;
    let parent_tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let Ok(child_tgid) = task::tgid(&o, child) else {
        return Err(DropSite::ExecRead);
    };
    if child_tgid == parent_tgid {
        return Ok(()); // a thread
    }
    // A parked child that forks is somebody's ancestor now.
    pending::release_own(parent_tgid);
    let rec = ForkRecord {
        header: header(RecordKind::Fork, unsafe { bpf_ktime_get_ns() }),
        parent_tgid,
        child_tgid,
        child_start_boottime_ns: task::start_boottime(&o, child).unwrap_or(0),
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    };
    if !pending::hold(&rec) {
        pending::send(&rec);
    }
    Ok(())
}
