//! A process started listening (a web server, Redis, sshd). Verdicts name
//! listening ancestors in their chain: "the miner descends from the web
//! server".
//!
//! `fentry/inet_csk_listen_start` runs once per `listen(2)` of a TCP socket
//! and nowhere else. match-proto: int inet_csk_listen_start(struct sock *sk)
//! (5.10: a second `int backlog` argument, unused here). It is called by
//! `listen(2)` in the listening task, so `bpf_get_current_pid_tgid` names
//! the process, just before the socket's state becomes TCP_LISTEN.
//!
//! Where fentry is unavailable, `raw_tracepoint/inet_sock_set_state`
//! filtered to TCP_LISTEN sees the same moment. match-proto:
//! trace_inet_sock_set_state(const struct sock *sk, const int oldstate,
//! const int newstate). That hook fires on every TCP state change of every
//! socket (eight per loopback connection, both ends), so it reads one
//! argument and returns unless the new state is TCP_LISTEN: measured here
//! at 63-71 ns per call with bpf_stats on, 0.5 µs per connection, which
//! the fentry program does not cost. So between the two the loader tries
//! `tracepoint/syscalls/sys_enter_listen`, as rare as fentry: it carries
//! only the fd, which is followed through the task's file table to its
//! `struct sock` (`SockOffsets::fd_valid`). match-proto:
//! sys_enter_listen(fd: int @16, backlog: int @24). It runs before the
//! kernel checks the call, so a `listen(2)` that then fails (or repeats on
//! a listening socket) is still reported; only TCP/SCTP stream sockets of
//! AF_INET/AF_INET6 are.
//!
//! The local port is `skc_num`, set by `bind(2)`; a socket listening without
//! a bind gets its port just after this hook, so the record says port 0.

use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_ktime_get_ns,
    },
    macros::{fentry, raw_tracepoint, tracepoint},
    programs::{FEntryContext, RawTracePointContext, TracePointContext},
};
use miner_ebpf_common::{
    AF_INET, AF_INET6, DropSite, LISTEN_FLAG_ADDR_UNKNOWN, ListenRecord, RecordKind,
};

use crate::{
    maps::{EVENTS, count_drop, header, sock_offsets, wake_flags},
    task,
};

/// `TCP_LISTEN` in include/net/tcp_states.h (also `SCTP_SS_LISTENING`).
const TCP_LISTEN: i32 = 10;
const SOCK_STREAM: i16 = 1;
const SYS_ENTER_FD_OFFSET: usize = 16;

#[fentry(function = "inet_csk_listen_start")]
pub fn inet_csk_listen_start(ctx: FEntryContext) -> i32 {
    let sk: *const u8 = ctx.arg(0);
    if let Err(site) = report(sk) {
        count_drop(site);
    }
    0
}

#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: RawTracePointContext) -> i32 {
    let newstate: u64 = ctx.arg(2);
    if newstate as i32 != TCP_LISTEN {
        return 0;
    }
    let sk: u64 = ctx.arg(0);
    if let Err(site) = report(sk as *const u8) {
        count_drop(site);
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_listen")]
pub fn sys_enter_listen(ctx: TracePointContext) -> u32 {
    let Ok(fd) = (unsafe { ctx.read_at::<u64>(SYS_ENTER_FD_OFFSET) }) else {
        return 0;
    };
    let Some(sk) = stream_socket(fd) else {
        return 0;
    };
    if let Err(site) = report(sk) {
        count_drop(site);
    }
    0
}

/// The `struct sock` behind the calling task's `fd`, if it is an
/// AF_INET/AF_INET6 stream socket: `files->fdt->fd[fd]->private_data` is a
/// `struct socket` exactly when that socket's `file` points back.
#[inline(always)]
fn stream_socket(fd: u64) -> Option<*const u8> {
    let o = sock_offsets();
    if o.fd_valid == 0 || o.valid == 0 {
        return None;
    }
    let files = task::read_ptr(task::current(), o.task_files).ok()?;
    let fdt = task::read_ptr(files, o.files_fdt).ok()?;
    let max = task::read::<u32>(fdt, o.fdt_max_fds).ok()?;
    // The fd argument is an int: reject negatives and out-of-table values.
    let fd = fd as u32;
    if fd >= max || fd > i32::MAX as u32 {
        return None;
    }
    let table = task::read_ptr(fdt, o.fdt_fd).ok()?;
    let file = task::read_ptr(table.wrapping_add(fd as usize * 8), 0).ok()?;
    let sock = task::read_ptr(file, o.file_private_data).ok()?;
    if task::read_ptr(sock, o.socket_file).ok()? != file {
        return None;
    }
    if task::read::<i16>(sock, o.socket_type).ok()? != SOCK_STREAM {
        return None;
    }
    let sk = task::read_ptr(sock, o.socket_sk).ok()?;
    match task::read::<u16>(sk, o.skc_family).ok()? {
        AF_INET | AF_INET6 => Some(sk),
        _ => None,
    }
}

fn report(sk: *const u8) -> Result<(), DropSite> {
    let (family, port, addr, flags) = local_address(sk);
    let pid_tgid = bpf_get_current_pid_tgid();
    crate::pending::release((pid_tgid >> 32) as u32);
    let rec = ListenRecord {
        header: header(RecordKind::Listen, unsafe { bpf_ktime_get_ns() }),
        tgid: (pid_tgid >> 32) as u32,
        pid: pid_tgid as u32,
        uid: bpf_get_current_uid_gid() as u32,
        family,
        port,
        addr,
        flags,
        _pad: 0,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    };
    let mut entry = EVENTS
        .reserve::<ListenRecord>(0)
        .ok_or(DropSite::ListenRingFull)?;
    entry.write(rec);
    entry.submit(wake_flags());
    Ok(())
}

/// (family, port, address, flags) of the socket's local end. A failed read
/// still reports the listen, flagged, rather than dropping it.
#[inline(always)]
fn local_address(sk: *const u8) -> (u16, u16, [u8; 16], u32) {
    let unknown = (0, 0, [0u8; 16], LISTEN_FLAG_ADDR_UNKNOWN);
    let o = sock_offsets();
    if o.valid == 0 {
        return unknown;
    }
    let Ok(family) = task::read::<u16>(sk, o.skc_family) else {
        return unknown;
    };
    let Ok(port) = task::read::<u16>(sk, o.skc_num) else {
        return unknown;
    };
    let mut addr = [0u8; 16];
    match family {
        AF_INET => match task::read::<[u8; 4]>(sk, o.skc_rcv_saddr) {
            Ok(a) => addr[..4].copy_from_slice(&a),
            Err(_) => return unknown,
        },
        AF_INET6 => match task::read::<[u8; 16]>(sk, o.skc_v6_rcv_saddr) {
            Ok(a) => addr = a,
            Err(_) => return unknown,
        },
        _ => return unknown,
    }
    (family, port, addr, 0)
}
