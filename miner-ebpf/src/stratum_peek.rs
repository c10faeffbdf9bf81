//! `cgroup_skb/egress` on the cgroup v2 root: the first payload bytes of
//! each new outbound TCP flow, so user space can recognise a pool protocol
//! on any port, through a proxy or WebSocket, and fingerprint TLS.
//!
//! The hook runs on every egress packet of every socket, so what it does
//! per packet is bounded by the socket, not by the flow's life: the state
//! sits in the socket's own storage (`SOCK_FLOWS`), found with one lookup
//! and freed with the socket; once a socket's peek is done, each later
//! packet costs that lookup and one compare. UDP, request and timewait
//! sockets leave at the first test.
//!
//! skb data starts at the IP header. The IP version comes from the first
//! nibble, not `skb->family` (INET6 for v4-mapped sockets). Sockets opened
//! by a connect we saw get their state there: their first `budget` payload
//! packets are copied with their TCP sequence numbers. The budget is
//! `PEEK_PACKETS_PER_FLOW`; a first packet that opens a proxy handshake
//! (SOCKS4/5, HTTP `CONNECT`) or a WebSocket upgrade raises it to
//! `PEEK_PACKETS_TUNNEL`, so the tunnelled bytes after the handshake are
//! seen too. A packet that starts a TLS ClientHello ends the peek (what
//! follows is encrypted); its bytes past `PEEK_LEN` go out as continuation
//! records (up to `HELLO_CHUNKS` in all) for the SNI, ALPN and JA4, and
//! from then on the flow's payload packets and bytes are counted and
//! reported every `FLOW_REPORT_NS` (how long a TLS flow stays open, and
//! how small its records are).
//!
//! Sockets we did not see connect (the process predates the agent, or the
//! socket was accepted) get their state at their first payload packet:
//! of their first `PEEK_PACKETS_UNTRACKED` payload packets, the first that
//! starts like JSON (`{"`) is peeked, which catches a miner that was
//! running before us at its next share or keepalive; then they are done.

use aya_ebpf::{
    bindings::bpf_sock,
    helpers::{bpf_get_socket_cookie, bpf_ktime_get_ns, bpf_sk_fullsock, bpf_skb_load_bytes},
    macros::cgroup_skb,
    programs::SkBuffContext,
};
use miner_ebpf_common::{
    AF_INET, AF_INET6, DropSite, FLOW_COUNT, FLOW_REPORT_NS, FLOW_UNTRACKED, FlowState,
    FlowStatsRecord, HELLO_CHUNKS, PAYLOAD_FLAG_CONTINUATION, PAYLOAD_FLAG_UNTRACKED_FLOW,
    PEEK_LEN, PEEK_PACKETS_TUNNEL, PayloadRecord, RecordKind,
};

use crate::maps::{EVENTS, count_drop, header, sock_flow, sock_flow_create, wake_flags};

const PASS: i32 = 1;
const IPPROTO_TCP: u8 = 6;

#[cgroup_skb]
pub fn cgroup_skb_egress(ctx: SkBuffContext) -> i32 {
    if let Err(site) = try_egress(&ctx) {
        count_drop(site);
    }
    PASS
}

struct Tcp {
    family: u16,
    saddr: [u8; 16],
    daddr: [u8; 16],
    sport: u16,
    dport: u16,
    seq: u32,
    payload_off: u32,
    payload_len: u32,
}

fn try_egress(ctx: &SkBuffContext) -> Result<(), DropSite> {
    // Most packets of a short connection (handshake, ACKs, FIN) carry no
    // payload: they leave here, read straight from the packet, before any
    // helper call or socket lookup.
    let Some(len) = tcp_payload_len(ctx) else {
        return Ok(());
    };
    let Some(sk) = tcp_socket(ctx) else {
        return Ok(());
    };
    let f = sock_flow(sk);
    if !f.is_null() {
        let f = unsafe { &mut *f };
        if f.peeked >= f.budget {
            if f.flags & FLOW_COUNT == 0 {
                return Ok(()); // the steady state: one socket-local lookup
            }
            return count(ctx, f, len);
        }
        let Some(tcp) = parse(ctx) else { return Ok(()) };
        if f.flags & FLOW_UNTRACKED != 0 {
            return look(ctx, f, &tcp);
        }
        let index = f.peeked;
        f.peeked = index + 1;
        return peek(ctx, f, index, &tcp);
    }
    // A socket we did not see connect: it predates the agent, or it was
    // accepted. Its state is made at its first payload packet (pure ACKs
    // of a receiving socket never allocate any).
    let Some(tcp) = parse(ctx) else { return Ok(()) };
    let mut init = FlowState::untracked();
    let f = sock_flow_create(sk, &mut init);
    if f.is_null() {
        return Err(DropSite::FlowMapFull);
    }
    look(ctx, unsafe { &mut *f }, &tcp)
}

/// The packet's full TCP socket: request and timewait sockets (SYN-ACKs,
/// their RSTs) carry no payload of a flow, and UDP is not peeked.
#[inline(always)]
fn tcp_socket(ctx: &SkBuffContext) -> Option<*mut bpf_sock> {
    let sk = unsafe { (*ctx.skb.skb).__bindgen_anon_2.sk };
    if sk.is_null() {
        return None;
    }
    let sk = unsafe { bpf_sk_fullsock(sk) };
    if sk.is_null() || unsafe { (*sk).protocol } != IPPROTO_TCP as u32 {
        return None;
    }
    Some(sk)
}

/// One payload packet of an untracked socket among its first
/// `PEEK_PACKETS_UNTRACKED`: peeked once if it starts like JSON (`{"`, the
/// shape of Stratum and XMRig's protocol), which ends the look-out.
#[inline(always)]
fn look(ctx: &SkBuffContext, f: &mut FlowState, tcp: &Tcp) -> Result<(), DropSite> {
    f.peeked += 1;
    let first: u16 = ctx.load(tcp.payload_off as usize).unwrap_or(0);
    if first != u16::from_ne_bytes(*b"{\"") {
        return Ok(());
    }
    f.budget = f.peeked;
    let mut rec = EVENTS
        .reserve::<PayloadRecord>(0)
        .ok_or(DropSite::PayloadRingFull)?;
    let r = unsafe { &mut *rec.as_mut_ptr() };
    fill(ctx, r, 0, 0, PAYLOAD_FLAG_UNTRACKED_FLOW, tcp, 0);
    rec.submit(wake_flags());
    Ok(())
}

/// Copies packet `index` of a tracked flow; decides from its bytes whether
/// the flow is a tunnel (peek further) or TLS (stop, count, continue the
/// ClientHello).
#[inline(always)]
fn peek(ctx: &SkBuffContext, f: &mut FlowState, index: u8, t: &Tcp) -> Result<(), DropSite> {
    // Usually sent at the connect's exit already; a payload in the SYN
    // (TCP Fast Open) comes before it.
    if index == 0 {
        crate::pending::release(f.tgid);
    }
    let mut rec = EVENTS
        .reserve::<PayloadRecord>(0)
        .ok_or(DropSite::PayloadRingFull)?;
    let r = unsafe { &mut *rec.as_mut_ptr() };
    fill(ctx, r, f.tgid, index, 0, t, 0);
    let hello = r.captured >= 6
        && r.data[0] == 0x16
        && r.data[1] == 0x03
        && r.data[2] <= 0x04
        && r.data[5] == 0x01;
    if hello {
        f.flags |= FLOW_COUNT;
        f.budget = index + 1;
        f.packets = 1;
        f.bytes = t.payload_len as u64;
        f.max_len = t.payload_len;
        f.first_ns = r.header.ktime_ns;
        f.last_report_ns = r.header.ktime_ns;
    } else if index == 0 && opens_tunnel(&r.data, r.captured as usize) {
        f.budget = PEEK_PACKETS_TUNNEL;
    }
    rec.submit(wake_flags());
    if hello {
        // The rest of a long ClientHello, PEEK_LEN at a time.
        let mut k = 1;
        while k < HELLO_CHUNKS {
            let skip = k * PEEK_LEN as u32;
            if skip >= t.payload_len {
                break;
            }
            let mut rec = EVENTS
                .reserve::<PayloadRecord>(0)
                .ok_or(DropSite::PayloadRingFull)?;
            let r = unsafe { &mut *rec.as_mut_ptr() };
            fill(ctx, r, f.tgid, index, PAYLOAD_FLAG_CONTINUATION, t, skip);
            rec.submit(wake_flags());
            k += 1;
        }
    }
    Ok(())
}

/// A SOCKS5 greeting, a SOCKS4 CONNECT/BIND, `CONNECT ` or a `GET ` that
/// mentions websocket (`Upgrade: websocket`, `Sec-WebSocket-Key`, any case).
#[inline(always)]
fn opens_tunnel(d: &[u8; PEEK_LEN], n: usize) -> bool {
    if n < 3 {
        return false;
    }
    match d[0] {
        0x05 => d[1] >= 1 && d[1] <= 16,
        0x04 => d[1] == 1 || d[1] == 2,
        b'C' => {
            n >= 8
                && u64::from_ne_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
                    == u64::from_ne_bytes(*b"CONNECT ")
        }
        b'G' => n >= 4 && d[1] == b'E' && d[2] == b'T' && d[3] == b' ' && mentions_websocket(d, n),
        _ => false,
    }
}

/// Bounded scan for `websocket` (ASCII case folded) in the first `n` bytes.
#[inline(always)]
fn mentions_websocket(d: &[u8; PEEK_LEN], n: usize) -> bool {
    const W: [u8; 9] = *b"websocket";
    let n = if n > PEEK_LEN { PEEK_LEN } else { n };
    let mut i = 4;
    while i + W.len() <= n {
        // SAFETY: i + k < i + W.len() <= n <= PEEK_LEN = d.len().
        let at = |k: usize| unsafe { *d.get_unchecked(i + k) } | 0x20;
        if at(0) == W[0] {
            let mut k = 1;
            while k < W.len() && at(k) == W[k] {
                k += 1;
            }
            if k == W.len() {
                return true;
            }
        }
        i += 1;
    }
    false
}

/// A counted (TLS) flow after its peek: add its payload, report at most
/// every `FLOW_REPORT_NS`.
#[inline(always)]
fn count(ctx: &SkBuffContext, f: &mut FlowState, len: u32) -> Result<(), DropSite> {
    f.packets += 1;
    f.bytes += len as u64;
    if len > f.max_len {
        f.max_len = len;
    }
    let now = unsafe { bpf_ktime_get_ns() };
    if now.wrapping_sub(f.last_report_ns) < FLOW_REPORT_NS {
        return Ok(());
    }
    f.last_report_ns = now;
    let mut rec = EVENTS
        .reserve::<FlowStatsRecord>(0)
        .ok_or(DropSite::FlowStatsRingFull)?;
    rec.write(FlowStatsRecord {
        header: header(RecordKind::FlowStats, now),
        cookie: unsafe { bpf_get_socket_cookie(ctx.skb.skb as *mut _) },
        tgid: f.tgid,
        packets: f.packets,
        bytes: f.bytes,
        first_ns: f.first_ns,
        max_len: f.max_len,
        _pad: 0,
    });
    rec.submit(wake_flags());
    Ok(())
}

/// The TCP payload length of the packet, None for anything else or no
/// payload. Read with direct packet access (the headers of an egress skb
/// are in its linear part: plain loads, no helper); a packet whose headers
/// are not falls back to `bpf_skb_load_bytes`.
#[inline(always)]
fn tcp_payload_len(ctx: &SkBuffContext) -> Option<u32> {
    let skb = ctx.skb.skb;
    let data = unsafe { (*skb).data } as usize;
    let end = unsafe { (*skb).data_end } as usize;
    // The shortest IPv4 + TCP header prefix that holds the data offset;
    // one test the verifier can use (LLVM turns `+ 1 >` into `>=`, which
    // it cannot).
    if data + 33 > end {
        return tcp_payload_len_loaded(ctx);
    }
    let b0 = unsafe { *(data as *const u8) };
    let (proto_at, l4) = match b0 >> 4 {
        4 => (9, ((b0 & 0x0f) as usize) * 4),
        6 => (6, 40),
        _ => return None,
    };
    // Bounded for the verifier: an IPv4 header is at most 60 bytes (and
    // 40 & 0x3c is 40).
    let l4 = l4 & 0x3c;
    if data + l4 + 13 > end {
        return tcp_payload_len_loaded(ctx);
    }
    if unsafe { *((data + proto_at) as *const u8) } != IPPROTO_TCP {
        return None;
    }
    let doff = unsafe { *((data + l4 + 12) as *const u8) } >> 4;
    let len = ctx.len().saturating_sub(l4 as u32 + doff as u32 * 4);
    (len > 0).then_some(len)
}

/// `tcp_payload_len` through `bpf_skb_load_bytes`.
#[inline(always)]
fn tcp_payload_len_loaded(ctx: &SkBuffContext) -> Option<u32> {
    let b0: u8 = ctx.load(0).ok()?;
    let (proto_at, l4): (usize, u32) = match b0 >> 4 {
        4 => (9, ((b0 & 0x0f) as u32) * 4),
        6 => (6, 40),
        _ => return None,
    };
    if ctx.load::<u8>(proto_at).ok()? != IPPROTO_TCP {
        return None;
    }
    let doff: u8 = ctx.load(l4 as usize + 12).ok()?;
    let len = ctx.len().saturating_sub(l4 + ((doff >> 4) as u32) * 4);
    (len > 0).then_some(len)
}

/// The packet's TCP header and addresses; None for a packet without
/// payload (SYN, pure ACK, FIN), before the addresses are loaded.
#[inline(always)]
fn parse(ctx: &SkBuffContext) -> Option<Tcp> {
    let b0: u8 = ctx.load(0).ok()?;
    let (family, l4): (u16, u32) = match b0 >> 4 {
        4 => {
            if ctx.load::<u8>(9).ok()? != IPPROTO_TCP {
                return None;
            }
            (AF_INET, ((b0 & 0x0f) as u32) * 4)
        }
        // No extension headers: TCP straight after the fixed header.
        6 => {
            if ctx.load::<u8>(6).ok()? != IPPROTO_TCP {
                return None;
            }
            (AF_INET6, 40)
        }
        _ => return None,
    };
    // Ports, sequence number, ack number, data offset: one load.
    let hdr: [u8; 13] = ctx.load(l4 as usize).ok()?;
    let payload_off = l4 + ((hdr[12] >> 4) as u32) * 4;
    // skb->len, not the IP length field: a GSO skb carries many segments.
    let payload_len = ctx.len().saturating_sub(payload_off);
    if payload_len == 0 {
        return None;
    }
    let mut t = Tcp {
        family,
        saddr: [0; 16],
        daddr: [0; 16],
        sport: u16::from_be_bytes([hdr[0], hdr[1]]),
        dport: u16::from_be_bytes([hdr[2], hdr[3]]),
        seq: u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]),
        payload_off,
        payload_len,
    };
    if family == AF_INET {
        let s: [u8; 4] = ctx.load(12).ok()?;
        let d: [u8; 4] = ctx.load(16).ok()?;
        t.saddr[..4].copy_from_slice(&s);
        t.daddr[..4].copy_from_slice(&d);
    } else {
        t.saddr = ctx.load(8).ok()?;
        t.daddr = ctx.load(24).ok()?;
    }
    Some(t)
}

/// Fills a payload record with the packet's bytes from `skip` on.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn fill(
    ctx: &SkBuffContext,
    rec: &mut PayloadRecord,
    tgid: u32,
    index: u8,
    flags: u8,
    t: &Tcp,
    skip: u32,
) {
    rec.header = header(RecordKind::Payload, unsafe { bpf_ktime_get_ns() });
    let left = t.payload_len - skip;
    // The cookie links the payload to its connect record (same socket).
    rec.cookie = unsafe { bpf_get_socket_cookie(ctx.skb.skb as *mut _) };
    rec.tgid = tgid;
    rec.payload_len = left;
    rec.family = t.family;
    rec.sport = t.sport;
    rec.dport = t.dport;
    rec.packet_index = index;
    rec.flags = flags;
    rec._pad = [0; 2];
    rec.seq = t.seq.wrapping_add(skip);
    rec.saddr = t.saddr;
    rec.daddr = t.daddr;
    // Clamp to 1..=PEEK_LEN for the verifier (PEEK_LEN is a power of two);
    // an "invalid zero-sized read" otherwise when LLVM drops the n > 0 test.
    let want = if left > PEEK_LEN as u32 {
        PEEK_LEN as u32
    } else {
        left
    };
    let n = ((want.wrapping_sub(1)) & (PEEK_LEN as u32 - 1)) + 1;
    let r = unsafe {
        bpf_skb_load_bytes(
            ctx.skb.skb as *const _,
            t.payload_off + skip,
            rec.data.as_mut_ptr() as *mut _,
            n,
        )
    };
    rec.captured = if r == 0 { n as u16 } else { 0 };
}
