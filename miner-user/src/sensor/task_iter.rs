//! The `iter/task` CPU iterator from user space: one BPF link, and per poll
//! a fresh iterator file whose `read()` runs the program over every task.
//!
//! aya 0.14 can attach an iterator but its link turns into a file only
//! once (`IterLink::into_file` consumes it), and a poller needs a new file
//! every second; so the link is created here with `BPF_LINK_CREATE` and
//! each poll calls `BPF_ITER_CREATE` on it (two raw `bpf(2)` commands).

use std::{
    fs::File,
    io::Read as _,
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
};

use miner_ebpf_common::TaskCpuRecord;

const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_ITER_CREATE: libc::c_long = 33;
const BPF_TRACE_ITER: u32 = 28;

/// An attached task iterator.
#[derive(Debug)]
pub struct TaskIter {
    link: OwnedFd,
    buf: Vec<u8>,
}

fn bpf(cmd: libc::c_long, attr: &mut [u64; 16]) -> std::io::Result<OwnedFd> {
    // SAFETY: `attr` is a zeroed, 128-byte `union bpf_attr` with the
    // command's fields filled in; the kernel reads at most that many bytes.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            std::mem::size_of_val(attr) as u32,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new file descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

impl TaskIter {
    /// Links the loaded `iter/task` program.
    pub fn attach(prog: impl AsFd) -> std::io::Result<TaskIter> {
        let mut attr = [0u64; 16];
        // link_create: prog_fd u32 @0, target_fd u32 @4, attach_type u32 @8.
        attr[0] = prog.as_fd().as_raw_fd() as u32 as u64;
        attr[1] = u64::from(BPF_TRACE_ITER);
        let link = bpf(BPF_LINK_CREATE, &mut attr)?;
        Ok(TaskIter {
            link,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// Runs the iterator once: every user thread's on-CPU time now.
    pub fn read(&mut self) -> std::io::Result<Vec<TaskCpuRecord>> {
        let mut attr = [0u64; 16];
        // iter_create: link_fd u32 @0, flags u32 @4.
        attr[0] = self.link.as_raw_fd() as u32 as u64;
        let fd = bpf(BPF_ITER_CREATE, &mut attr)?;
        let mut file = File::from(fd);
        self.buf.clear();
        file.read_to_end(&mut self.buf)?;
        Ok(parse(&self.buf))
    }
}

/// The iterator's output: whole `TaskCpuRecord`s back to back (a trailing
/// partial record, which the kernel never writes, is ignored).
pub fn parse(buf: &[u8]) -> Vec<TaskCpuRecord> {
    const N: usize = std::mem::size_of::<TaskCpuRecord>();
    buf.chunks_exact(N)
        .map(|c| {
            let u32_at = |o: usize| u32::from_ne_bytes([c[o], c[o + 1], c[o + 2], c[o + 3]]);
            let u64_at = |o: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&c[o..o + 8]);
                u64::from_ne_bytes(b)
            };
            TaskCpuRecord {
                tgid: u32_at(0),
                pid: u32_at(4),
                runtime_ns: u64_at(8),
                dead_threads_ns: u64_at(16),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_whole_records_and_ignores_a_partial_tail() {
        let rec = TaskCpuRecord {
            tgid: 7,
            pid: 8,
            runtime_ns: 9_000,
            dead_threads_ns: 10,
        };
        let mut buf = Vec::new();
        for _ in 0..2 {
            buf.extend_from_slice(&rec.tgid.to_ne_bytes());
            buf.extend_from_slice(&rec.pid.to_ne_bytes());
            buf.extend_from_slice(&rec.runtime_ns.to_ne_bytes());
            buf.extend_from_slice(&rec.dead_threads_ns.to_ne_bytes());
        }
        buf.extend_from_slice(&[1, 2, 3]);
        assert_eq!(parse(&buf), vec![rec, rec]);
        assert!(parse(&[]).is_empty());
    }
}
