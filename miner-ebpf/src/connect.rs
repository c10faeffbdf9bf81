//! Outbound TCP connects: `cgroup/connect4`, `cgroup/connect6` and
//! `tracepoint/syscalls/sys_exit_connect`.
//!
//! The cgroup hooks run in the connecting task before the kernel acts on the
//! address, so they see the pid, the socket cookie (which later links the
//! flow's payload to this process) and can refuse the connect (response).
//! They park what they saw in `PENDING_CONNECT`; the syscall's exit adds the
//! result and emits one record. match-proto: sys_exit_connect(ret: long @16).
//! They also give the socket its peek state (`SOCK_FLOWS`, socket storage,
//! see stratum_peek.rs): creating it is most of connect4's cost (about
//! 1 µs of its 1.7 µs here, against 0.6-1.1 µs for the LRU-hash insert it
//! replaced), paid once per connect instead of a hash lookup per packet.
//!
//! v4-mapped addresses (`::ffff:a.b.c.d`) on an AF_INET6 socket only run
//! connect6 and send IPv4 packets; they are normalised to AF_INET here so a
//! v4 block or pool match cannot be bypassed through them.

use aya_ebpf::{
    bindings::bpf_sock_addr,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        bpf_get_socket_cookie, bpf_ktime_get_ns,
    },
    macros::{cgroup_sock_addr, tracepoint},
    programs::{SockAddrContext, TracePointContext},
};
use miner_ebpf_common::{
    AF_INET, AF_INET6, CONNECT_FLAG_V4_MAPPED, ConnectRecord, DestKey, DropSite, FlowState,
    PendingConnect, RecordKind,
};

use crate::maps::{
    BLOCKED_DESTS, BLOCKED_TGIDS, EVENTS, PENDING_CONNECT, count_drop, header, sock_flow_create,
    wake_flags,
};

const SOCK_STREAM: u32 = 1;
const ALLOW: i32 = 1;
const DENY: i32 = 0;
const SYS_EXIT_RET_OFFSET: usize = 16;

#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    let sa = unsafe { &*ctx.sock_addr };
    if sa.type_ != SOCK_STREAM {
        return ALLOW;
    }
    let mut addr = [0u8; 16];
    addr[..4].copy_from_slice(&sa.user_ip4.to_ne_bytes());
    on_connect(ctx.sock_addr, AF_INET, addr, sa.user_port, 0)
}

#[cgroup_sock_addr(connect6)]
pub fn connect6(ctx: SockAddrContext) -> i32 {
    let sa = unsafe { &*ctx.sock_addr };
    if sa.type_ != SOCK_STREAM {
        return ALLOW;
    }
    let w = sa.user_ip6;
    let mut addr = [0u8; 16];
    let v4_mapped = w[0] == 0 && w[1] == 0 && w[2] == u32::from_be(0x0000_ffff);
    if v4_mapped {
        addr[..4].copy_from_slice(&w[3].to_ne_bytes());
        on_connect(
            ctx.sock_addr,
            AF_INET,
            addr,
            sa.user_port,
            CONNECT_FLAG_V4_MAPPED,
        )
    } else {
        addr[0..4].copy_from_slice(&w[0].to_ne_bytes());
        addr[4..8].copy_from_slice(&w[1].to_ne_bytes());
        addr[8..12].copy_from_slice(&w[2].to_ne_bytes());
        addr[12..16].copy_from_slice(&w[3].to_ne_bytes());
        on_connect(ctx.sock_addr, AF_INET6, addr, sa.user_port, 0)
    }
}

#[inline(always)]
fn on_connect(
    sa: *mut bpf_sock_addr,
    family: u16,
    addr: [u8; 16],
    user_port: u32,
    flags: u32,
) -> i32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let dport = u16::from_be(user_port as u16);
    let cookie = unsafe { bpf_get_socket_cookie(sa as *mut _) };

    let pending = PendingConnect {
        cookie,
        daddr: addr,
        family,
        dport,
        flags,
    };
    // LRU maps evict rather than fail; a failure here is a kernel error.
    let _ = PENDING_CONNECT.insert(pid_tgid, pending, 0);
    // The socket's peek state, reset: a socket may connect again after a
    // failed connect, and the new flow is peeked from its first packet.
    let sk = unsafe { (*sa).__bindgen_anon_1.sk };
    let mut init = FlowState::new(tgid);
    let f = sock_flow_create(sk, &mut init);
    if f.is_null() {
        count_drop(DropSite::FlowMapFull);
    } else {
        unsafe { *f = init };
    }

    if blocked(tgid, family, &addr, dport) {
        DENY
    } else {
        ALLOW
    }
}

#[inline(always)]
fn blocked(tgid: u32, family: u16, addr: &[u8; 16], dport: u16) -> bool {
    if unsafe { BLOCKED_TGIDS.get(tgid) }.is_some() {
        return true;
    }
    // Blocked endpoints are keyed as v6; v4 as ::ffff:a.b.c.d.
    let mut key = DestKey {
        addr: [0; 16],
        port: dport,
        _pad: [0; 6],
    };
    if family == AF_INET {
        key.addr[10] = 0xff;
        key.addr[11] = 0xff;
        key.addr[12..16].copy_from_slice(&addr[..4]);
    } else {
        key.addr = *addr;
    }
    if unsafe { BLOCKED_DESTS.get(key) }.is_some() {
        return true;
    }
    key.port = 0;
    unsafe { BLOCKED_DESTS.get(key) }.is_some()
}

#[tracepoint(category = "syscalls", name = "sys_exit_connect")]
pub fn sys_exit_connect(ctx: TracePointContext) -> u32 {
    if let Err(site) = try_sys_exit_connect(&ctx) {
        count_drop(site);
    }
    0
}

fn try_sys_exit_connect(ctx: &TracePointContext) -> Result<(), DropSite> {
    let pid_tgid = bpf_get_current_pid_tgid();
    // Only connects the cgroup hook saw (TCP over IPv4/IPv6) are pending.
    let Some(p) = (unsafe { PENDING_CONNECT.get(pid_tgid) }).copied() else {
        return Ok(());
    };
    let _ = PENDING_CONNECT.remove(pid_tgid);
    crate::pending::release((pid_tgid >> 32) as u32);
    let ret: i64 = unsafe { ctx.read_at(SYS_EXIT_RET_OFFSET) }.unwrap_or(0);
    let rec = ConnectRecord {
        header: header(RecordKind::Connect, unsafe { bpf_ktime_get_ns() }),
        tgid: (pid_tgid >> 32) as u32,
        pid: pid_tgid as u32,
        uid: bpf_get_current_uid_gid() as u32,
        family: p.family,
        dport: p.dport,
        cookie: p.cookie,
        daddr: p.daddr,
        ret: ret as i32,
        flags: p.flags,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    };
    let mut entry = EVENTS
        .reserve::<ConnectRecord>(0)
        .ok_or(DropSite::ConnectRingFull)?;
    entry.write(rec);
    entry.submit(wake_flags());
    Ok(())
}
