//! `cgroup_skb/egress` on the cgroup v2 root: the first payload bytes of
//! each new outbound TCP flow, so user space can recognise a pool protocol
//! on any port.
//!
//! skb data starts at the IP header. The IP version comes from the first
//! nibble, not `skb->family` (INET6 for v4-mapped sockets). Flows opened
//! while we watch are in `FLOWS` (from connect): their first
//! `PEEK_PACKETS_PER_FLOW` payload packets are copied, then the entry stays
//! marked so later packets cost one lookup. Flows we did not see open (the
//! process predates the agent) are peeked once if their payload starts like
//! JSON (`{"`), the shape of Stratum and XMRig's protocol: that catches a
//! miner that was running before us at its next share or keepalive.

use aya_ebpf::{
    helpers::{
        bpf_get_smp_processor_id, bpf_get_socket_cookie, bpf_ktime_get_ns, bpf_skb_load_bytes,
    },
    macros::cgroup_skb,
    programs::SkBuffContext,
};
use miner_ebpf_common::{
    AF_INET, AF_INET6, DropSite, Header, PAYLOAD_FLAG_UNTRACKED_FLOW, PEEK_LEN,
    PEEK_PACKETS_PER_FLOW, PayloadRecord, RecordKind,
};

use crate::maps::{EVENTS, FLOWS, SEEN_FLOWS, count_drop, wake_flags};

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
    payload_off: u32,
    payload_len: u32,
}

fn try_egress(ctx: &SkBuffContext) -> Result<(), DropSite> {
    let cookie = unsafe { bpf_get_socket_cookie(ctx.skb.skb as *mut _) };
    let flow = FLOWS.get_ptr_mut(cookie);
    if let Some(f) = flow {
        if unsafe { (*f).peeked } >= PEEK_PACKETS_PER_FLOW {
            return Ok(()); // the steady state: one lookup per packet
        }
    }
    let Some(tcp) = parse(ctx) else { return Ok(()) };
    if tcp.payload_len == 0 {
        return Ok(());
    }
    match flow {
        Some(f) => {
            let (tgid, index) = unsafe { ((*f).tgid, (*f).peeked) };
            unsafe { (*f).peeked = index + 1 };
            emit(ctx, cookie, tgid, index as u8, 0, &tcp)
        }
        None => {
            let first: u16 = ctx.load(tcp.payload_off as usize).unwrap_or(0);
            if first != u16::from_ne_bytes(*b"{\"") {
                return Ok(());
            }
            if SEEN_FLOWS
                .insert(cookie, 1u8, aya_ebpf::bindings::BPF_NOEXIST as u64)
                .is_err()
            {
                return Ok(()); // already peeked
            }
            emit(ctx, cookie, 0, 0, PAYLOAD_FLAG_UNTRACKED_FLOW, &tcp)
        }
    }
}

#[inline(always)]
fn parse(ctx: &SkBuffContext) -> Option<Tcp> {
    let b0: u8 = ctx.load(0).ok()?;
    let skb_len = ctx.len();
    let mut t = Tcp {
        family: 0,
        saddr: [0; 16],
        daddr: [0; 16],
        sport: 0,
        dport: 0,
        payload_off: 0,
        payload_len: 0,
    };
    let l4: u32 = match b0 >> 4 {
        4 => {
            if ctx.load::<u8>(9).ok()? != IPPROTO_TCP {
                return None;
            }
            t.family = AF_INET;
            let s: [u8; 4] = ctx.load(12).ok()?;
            let d: [u8; 4] = ctx.load(16).ok()?;
            t.saddr[..4].copy_from_slice(&s);
            t.daddr[..4].copy_from_slice(&d);
            ((b0 & 0x0f) as u32) * 4
        }
        6 => {
            // No extension headers: TCP straight after the fixed header.
            if ctx.load::<u8>(6).ok()? != IPPROTO_TCP {
                return None;
            }
            t.family = AF_INET6;
            t.saddr = ctx.load(8).ok()?;
            t.daddr = ctx.load(24).ok()?;
            40
        }
        _ => return None,
    };
    let ports: [u8; 4] = ctx.load(l4 as usize).ok()?;
    t.sport = u16::from_be_bytes([ports[0], ports[1]]);
    t.dport = u16::from_be_bytes([ports[2], ports[3]]);
    let doff: u8 = ctx.load(l4 as usize + 12).ok()?;
    t.payload_off = l4 + ((doff >> 4) as u32) * 4;
    // skb->len, not the IP length field: a GSO skb carries many segments.
    t.payload_len = skb_len.saturating_sub(t.payload_off);
    Some(t)
}

#[inline(always)]
fn emit(
    ctx: &SkBuffContext,
    cookie: u64,
    tgid: u32,
    index: u8,
    flags: u8,
    t: &Tcp,
) -> Result<(), DropSite> {
    let mut entry = EVENTS
        .reserve::<PayloadRecord>(0)
        .ok_or(DropSite::PayloadRingFull)?;
    let rec = unsafe { &mut *entry.as_mut_ptr() };
    rec.header = Header {
        kind: RecordKind::Payload as u16,
        _pad: 0,
        cpu: unsafe { bpf_get_smp_processor_id() },
        ktime_ns: unsafe { bpf_ktime_get_ns() },
    };
    rec.cookie = cookie;
    rec.tgid = tgid;
    rec.payload_len = t.payload_len;
    rec.family = t.family;
    rec.sport = t.sport;
    rec.dport = t.dport;
    rec.packet_index = index;
    rec.flags = flags;
    rec._pad = [0; 6];
    rec.saddr = t.saddr;
    rec.daddr = t.daddr;
    // Clamp to 1..=PEEK_LEN for the verifier (PEEK_LEN is a power of two);
    // an "invalid zero-sized read" otherwise when LLVM drops the n > 0 test.
    let want = if t.payload_len > PEEK_LEN as u32 {
        PEEK_LEN as u32
    } else {
        t.payload_len
    };
    let n = ((want - 1) & (PEEK_LEN as u32 - 1)) + 1;
    let r = unsafe {
        bpf_skb_load_bytes(
            ctx.skb.skb as *const _,
            t.payload_off,
            rec.data.as_mut_ptr() as *mut _,
            n,
        )
    };
    rec.captured = if r == 0 { n as u16 } else { 0 };
    entry.submit(wake_flags());
    Ok(())
}
