//! `tracepoint/sched/sched_process_exec`: a task replaced its image.
//!
//! match-proto: sched_process_exec(filename: __data_loc char[] @8, pid @12,
//! old_pid @16), stable since 3.x. Runs in the exec'ing task after the new
//! mm is installed, so `current->mm` is the new image and its argument block
//! is readable user memory.

use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_uid_gid, bpf_ktime_get_ns, bpf_probe_read_kernel_str_bytes,
        bpf_probe_read_user_buf,
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use aya_log_ebpf::info;
use miner_ebpf_common::{
    ARGS_LEN, DropSite, EXEC_FLAG_ARGS_TRUNCATED, EXEC_FLAG_EXE_UNKNOWN, EXEC_FLAG_MEMFD,
    ExecRecord, KernelOffsets, RecordKind,
};

use crate::{
    maps::{EVENTS, ONCE, abi, count_drop, header, offsets, wake_flags},
    pending, task,
};

const FILENAME_LOC_OFFSET: usize = 8;
const MEMFD_PREFIX: &[u8; 6] = b"memfd:";

#[tracepoint(category = "sched", name = "sched_process_exec")]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    if let Err(site) = try_sched_process_exec(&ctx) {
        count_drop(site);
    }
    0
}

fn try_sched_process_exec(ctx: &TracePointContext) -> Result<(), DropSite> {
    announce_once(ctx);
    pending::release((bpf_get_current_pid_tgid() >> 32) as u32);
    // 640 bytes do not fit the 512-byte eBPF stack: build in ring memory.
    let mut entry = EVENTS
        .reserve::<ExecRecord>(0)
        .ok_or(DropSite::ExecRingFull)?;
    let rec = unsafe { &mut *entry.as_mut_ptr() };

    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    rec.header = header(RecordKind::Exec, unsafe { bpf_ktime_get_ns() });
    rec.tgid = (pid_tgid >> 32) as u32;
    rec.pid = pid_tgid as u32;
    rec.uid = uid_gid as u32;
    rec.gid = (uid_gid >> 32) as u32;
    rec.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    rec.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    rec._pad = 0;

    rec.filename_len = 0;
    if let Ok(loc) = unsafe { ctx.read_at::<u32>(FILENAME_LOC_OFFSET) } {
        let src = (ctx.as_ptr() as *const u8).wrapping_add((loc & 0xffff) as usize);
        if let Ok(s) = unsafe { bpf_probe_read_kernel_str_bytes(src, &mut rec.filename) } {
            rec.filename_len = s.len() as u16;
        }
    }

    rec.flags = 0;
    let o = offsets();
    if o.valid == 0 || read_identity(&o, rec).is_err() {
        rec.flags |= EXEC_FLAG_EXE_UNKNOWN;
        count_drop(DropSite::ExecRead);
    }
    entry.submit(wake_flags());
    Ok(())
}

/// Everything `task_struct` knows about the new image. Fields not reached stay
/// zero; the caller flags the record.
#[inline(always)]
fn read_identity(o: &KernelOffsets, rec: &mut ExecRecord) -> Result<(), i32> {
    rec.ppid = 0;
    rec.start_boottime_ns = 0;
    rec.exe_ino = 0;
    rec.exe_dev = 0;
    rec.exe_nlink = 0;
    rec.exe_name_len = 0;
    rec.args_len = 0;

    let t = task::current();
    rec.ppid = task::parent_tgid(o, t)?;
    rec.start_boottime_ns = task::start_boottime(o, t)?;

    let mm = task::read_ptr(t, o.task_mm)?;
    read_args(o, mm, rec);

    let file = task::read_ptr(mm, o.mm_exe_file)?;
    let inode = task::read_ptr(file, o.file_f_inode)?;
    rec.exe_ino = task::read::<u64>(inode, o.inode_i_ino)?;
    rec.exe_nlink = task::read::<u32>(inode, o.inode_i_nlink)?;
    let sb = task::read_ptr(inode, o.inode_i_sb)?;
    rec.exe_dev = task::read::<u32>(sb, o.sb_s_dev)?;

    let dentry = task::read_ptr(file, o.file_f_path + o.path_dentry)?;
    let name = task::read_ptr(dentry, o.dentry_d_name + o.qstr_name)?;
    if let Ok(s) = unsafe { bpf_probe_read_kernel_str_bytes(name, &mut rec.exe_name) } {
        rec.exe_name_len = s.len() as u16;
    }
    if rec.exe_name[..MEMFD_PREFIX.len()] == MEMFD_PREFIX[..] {
        rec.flags |= EXEC_FLAG_MEMFD;
    }
    Ok(())
}

/// Copy the first `ARGS_LEN` bytes of `mm->arg_start..arg_end`.
#[inline(always)]
fn read_args(o: &KernelOffsets, mm: *const u8, rec: &mut ExecRecord) {
    let (Ok(start), Ok(end)) = (
        task::read::<u64>(mm, o.mm_arg_start),
        task::read::<u64>(mm, o.mm_arg_end),
    ) else {
        return;
    };
    if end <= start {
        return;
    }
    let mut want = end - start;
    if want > ARGS_LEN as u64 {
        rec.flags |= EXEC_FLAG_ARGS_TRUNCATED;
        want = ARGS_LEN as u64;
    }
    // Mask so the verifier sees 1..=ARGS_LEN (ARGS_LEN is a power of two).
    let n = (((want - 1) as usize) & (ARGS_LEN - 1)) + 1;
    if unsafe { bpf_probe_read_user_buf(start as *const u8, &mut rec.args[..n]) }.is_ok() {
        rec.args_len = n as u16;
    }
}

/// Log once that the sensor runs, so the daemon's log shows kernel-side
/// messages arrive (aya-log) without a line per exec.
#[inline(always)]
fn announce_once(ctx: &TracePointContext) {
    if let Some(flag) = ONCE.get_ptr_mut(0) {
        unsafe {
            if *flag == 0 {
                *flag = 1;
                info!(ctx, "exec sensor live (abi {})", abi());
            }
        }
    }
}
