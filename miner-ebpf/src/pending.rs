//! Fork records held back until the child is worth one.
//!
//! Most children a fork makes either exec at once (a shell, a spawn) or do
//! a moment's work and exit (a pre-fork worker's task, a fork storm). The
//! second kind is dead, nobody's ancestor and owns no flow by the time user
//! space could look at it, so sending its fork and exit records only to
//! have the daemon drop them costs two records, two decodes and a table
//! entry per child. Instead the fork hook parks the record in
//! `PENDING_FORK` and it goes out, with its original time, the moment the
//! child does anything else that matters:
//!
//! - it execs, forks a child of its own, or any hook is about to send a
//!   record for it (connect, listen, payload, fpu, hint): [`release`] runs
//!   first, so the fork record always precedes the child's other records;
//! - its parent forks again while it lives (a miner's workers, a pre-fork
//!   server's: a fork storm's children are dead by then), or its parent
//!   makes a record while it is the parent's latest held child: a verdict
//!   on the parent then already knows its workers;
//! - the task iterator (read once per CPU poll) finds it alive: a child
//!   that only computes is known within one poll;
//! - it exits after `CONTROL[CONTROL_QUIET_FORK_NS]`: both records go out.
//!
//! A child that exits sooner, having done none of these, is counted in
//! `QUIET` and sends nothing. Off (everything sent at once, as before) until
//! the loader writes a non-zero time after the task iterator attached, and
//! whenever the map is full.

use aya_ebpf::{
    macros::map,
    maps::{HashMap, PerCpuArray},
};
use miner_ebpf_common::{CONTROL_QUIET_FORK_NS, DropSite, ForkRecord, PENDING_FORKS_MAX};

use crate::maps::{CONTROL, EVENTS, count_drop, wake_flags};

/// Child tgid -> its fork record, not yet sent.
#[map]
pub static PENDING_FORK: HashMap<u32, ForkRecord> = HashMap::with_max_entries(PENDING_FORKS_MAX, 0);

/// Parent tgid -> its latest child whose fork record was held back (it
/// may have been sent or died since). Deleted at the parent's exit; when
/// full, children wait for the iterator.
#[map]
pub static LAST_HELD: HashMap<u32, u32> = HashMap::with_max_entries(PENDING_FORKS_MAX, 0);

/// Per-CPU count of children that forked and exited without a record.
#[map]
pub static QUIET: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// How young a child must die to go unreported; 0 = hold nothing back.
#[inline(always)]
pub fn quiet_ns() -> u64 {
    CONTROL.get(CONTROL_QUIET_FORK_NS).copied().unwrap_or(0)
}

/// Park `rec` instead of sending it. False when it must be sent now
/// (holding back is off, or the map is full).
#[inline(always)]
pub fn hold(rec: &ForkRecord) -> bool {
    if quiet_ns() == 0 {
        return false;
    }
    match LAST_HELD.get_ptr_mut(rec.parent_tgid) {
        Some(last) => {
            // Still held means still alive while its parent forks again.
            let previous = unsafe { *last };
            unsafe { *last = rec.child_tgid };
            release_own(previous);
        }
        None => {
            let _ = LAST_HELD.insert(rec.parent_tgid, rec.child_tgid, 0);
        }
    }
    PENDING_FORK.insert(rec.child_tgid, rec, 0).is_ok()
}

/// Send `tgid`'s parked fork record, and its latest held child's, before
/// a record of `tgid` goes out.
#[inline(always)]
pub fn release(tgid: u32) {
    release_own(tgid);
    if let Some(child) = unsafe { LAST_HELD.get(tgid) }.copied() {
        release_own(child);
    }
}

/// The parent's exit: its latest held child is on its own from here.
#[inline(always)]
pub fn forget_parent(tgid: u32) {
    if unsafe { LAST_HELD.get(tgid) }.is_some() {
        let _ = LAST_HELD.remove(tgid);
    }
}

/// Send `tgid`'s own parked fork record, if it has one. Only the caller
/// whose delete succeeds sends it, so two CPUs racing send it once.
#[inline(always)]
pub fn release_own(tgid: u32) {
    let Some(rec) = (unsafe { PENDING_FORK.get(tgid) }).copied() else {
        return;
    };
    if PENDING_FORK.remove(tgid).is_err() {
        return;
    }
    send(&rec);
}

/// At the exit of `tgid`'s last thread: true if its fork record was parked
/// and it lived less than the quiet time, so neither record is sent. An
/// older parked child has its fork record sent here, before its exit.
#[inline(always)]
pub fn quiet_exit(tgid: u32, now: u64) -> bool {
    let Some(rec) = (unsafe { PENDING_FORK.get(tgid) }).copied() else {
        return false;
    };
    if PENDING_FORK.remove(tgid).is_err() {
        return false; // released meanwhile on another CPU
    }
    if now.saturating_sub(rec.header.ktime_ns) < quiet_ns() {
        if let Some(slot) = QUIET.get_ptr_mut(0) {
            // Per-CPU slot: only this CPU writes it.
            unsafe { *slot += 1 };
        }
        return true;
    }
    send(&rec);
    false
}

#[inline(always)]
pub fn send(rec: &ForkRecord) {
    match EVENTS.reserve::<ForkRecord>(0) {
        Some(mut entry) => {
            entry.write(*rec);
            entry.submit(wake_flags());
        }
        None => count_drop(DropSite::ForkRingFull),
    }
}
