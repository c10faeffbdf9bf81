//! `tp_btf/x86_fpu_regs_deactivated` (raw tracepoint as a fallback): the
//! SSE control register a thread is switched out with, the CPU's own record
//! of the work it does.
//!
//! match-proto: trace_x86_fpu_regs_deactivated(struct fpu *fpu), fired in
//! `switch_fpu()` from `__switch_to()` after the outgoing task's registers
//! were saved into its fpu, before `current` changes: `current` is the
//! task whose state `fpu` holds (checked by tests/tests/fpu.rs). It fires
//! only for user tasks whose registers were live (not kernel threads, not a
//! task switched out again before returning to user space).
//!
//! It runs on nearly every context switch of every user thread, so the
//! common case is two loads and a compare: a thread at the default MXCSR
//! (0x1F80, almost every program for its whole life) returns before any
//! map access. Only threads that left the default touch `FPU_SEEN`, and a
//! record goes out only when a thread's seen set gains a class, holds a
//! non-nearest rounding mode, and its last record is older than
//! `FPU_REPORT_INTERVAL_NS`.

use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::{btf_tracepoint, raw_tracepoint},
    programs::{BtfTracePointContext, RawTracePointContext},
};
use miner_ebpf_common::{
    DropSite, FPU_LAYOUT_EMBEDDED, FPU_LAYOUT_FPSTATE, FPU_REPORT_CLASSES, FPU_REPORT_INTERVAL_NS,
    FpuRecord, FpuSeen, MXCSR_DEFAULT, MXCSR_STATE_MASK, RecordKind, mxcsr_class,
};

use crate::{
    maps::{EVENTS, FPU_SEEN, count_drop, fpu_offsets, header, wake_flags},
    task,
};

/// BTF-typed (`tp_btf`, Linux 5.5+): `fpu` is a typed kernel pointer, so
/// the two reads are plain loads the verifier checks against BTF (the
/// offsets are constants to it: they sit in the frozen .rodata), no helper
/// call. The fast path is the cost of nearly every context switch.
#[btf_tracepoint(function = "x86_fpu_regs_deactivated")]
pub fn x86_fpu_regs_deactivated_btf(ctx: BtfTracePointContext) -> i32 {
    let fpu: *const u8 = ctx.arg(0);
    let Some(mxcsr) = loaded_mxcsr(fpu) else {
        return 0;
    };
    if mxcsr & MXCSR_STATE_MASK != MXCSR_DEFAULT
        && let Err(site) = observe(mxcsr)
    {
        count_drop(site);
    }
    0
}

/// The same through a raw tracepoint and `bpf_probe_read_kernel`, for
/// kernels where the BTF-typed program does not load.
#[raw_tracepoint(tracepoint = "x86_fpu_regs_deactivated")]
pub fn x86_fpu_regs_deactivated(ctx: RawTracePointContext) -> i32 {
    let fpu: u64 = ctx.arg(0);
    let Some(mxcsr) = saved_mxcsr(fpu as *const u8) else {
        return 0;
    };
    if mxcsr & MXCSR_STATE_MASK != MXCSR_DEFAULT
        && let Err(site) = observe(mxcsr)
    {
        count_drop(site);
    }
    0
}

/// The MXCSR saved in `fpu` by direct (BTF-checked) loads.
#[inline(always)]
fn loaded_mxcsr(fpu: *const u8) -> Option<u32> {
    let (layout, fpstate_off, mxcsr_off) = fpu_offsets();
    if fpu.is_null() {
        return None;
    }
    let base = if layout == FPU_LAYOUT_FPSTATE {
        let p = unsafe { *(fpu.wrapping_add(fpstate_off as usize) as *const *const u8) };
        if p.is_null() {
            return None;
        }
        p
    } else if layout == FPU_LAYOUT_EMBEDDED {
        fpu
    } else {
        return None;
    };
    Some(unsafe { *(base.wrapping_add(mxcsr_off as usize) as *const u32) })
}

/// The MXCSR saved in `fpu`, through the layout the loader found in BTF.
#[inline(always)]
fn saved_mxcsr(fpu: *const u8) -> Option<u32> {
    let (layout, fpstate_off, mxcsr_off) = fpu_offsets();
    let base = if layout == FPU_LAYOUT_FPSTATE {
        task::read_ptr(fpu, fpstate_off).ok()?
    } else if layout == FPU_LAYOUT_EMBEDDED {
        fpu
    } else {
        return None;
    };
    task::read::<u32>(base, mxcsr_off).ok()
}

/// Slow path: a thread switched out with a non-default MXCSR.
#[inline(always)]
fn observe(mxcsr: u32) -> Result<(), DropSite> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let pid = pid_tgid as u32;
    let bit = 1u16 << mxcsr_class(mxcsr);
    let now = unsafe { bpf_ktime_get_ns() };
    let state = match FPU_SEEN.get_ptr_mut(pid) {
        Some(p) => unsafe { &mut *p },
        None => {
            let fresh = FpuSeen {
                seen: 0,
                reported: 0,
                _pad: 0,
                last_report_ns: 0,
            };
            FPU_SEEN
                .insert(pid, fresh, 0)
                .map_err(|_| DropSite::FpuMapFull)?;
            let p = FPU_SEEN.get_ptr_mut(pid).ok_or(DropSite::FpuMapFull)?;
            unsafe { &mut *p }
        }
    };
    let seen = state.seen | bit;
    state.seen = seen;
    if seen == state.reported
        || seen & FPU_REPORT_CLASSES == 0
        || now.wrapping_sub(state.last_report_ns) < FPU_REPORT_INTERVAL_NS
    {
        return Ok(());
    }
    // Retried after the interval if the ring is full: `reported` moves
    // only once the record is out.
    state.last_report_ns = now;
    crate::pending::release((pid_tgid >> 32) as u32);
    let mut entry = EVENTS
        .reserve::<FpuRecord>(0)
        .ok_or(DropSite::FpuRingFull)?;
    state.reported = seen;
    let rec = FpuRecord {
        header: header(RecordKind::Fpu, now),
        tgid: (pid_tgid >> 32) as u32,
        pid,
        mxcsr,
        seen,
        _pad: 0,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    };
    entry.write(rec);
    entry.submit(wake_flags());
    Ok(())
}
