//! One flow's peeked packets as a byte stream, peeled layer by layer.
//!
//! The kernel copies the first bytes (at most `PEEK_LEN`) of a flow's first
//! few packets, each with its TCP sequence number. Here they become a
//! stream with holes: a packet longer than the peek leaves a hole of known
//! size, a retransmission adds nothing new, a TLS ClientHello longer than
//! the peek arrives as continuation records that fill its hole. The
//! stream is then read as a stack of layers: proxy handshakes (SOCKS4/4a/5,
//! HTTP CONNECT), a WebSocket upgrade and its frames (unmasked), and the
//! application bytes inside ([`classify`], or a TLS ClientHello).
//!
//! A handshake whose end falls in a hole ends where its packet ends: a
//! client waits for the proxy's (or server's) answer before it sends the
//! tunnelled bytes, so they start a new packet. WebSocket frames carry
//! their lengths, so a hole inside a payload does not lose the framing.
//!
//! [`FlowStream::view`] recomputes the layers from the stored bytes after
//! every packet; the bytes kept per flow are bounded, so the work is too.

use super::proxy::{self, Destination, ProxyRequest};
use super::tls::{self, ClientHello};
use super::websocket::{self, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_TEXT, Upgrade};
use super::{Parse, Protocol, classify};

/// Bytes kept per flow: a few handshakes and a first message or two.
pub const MAX_BYTES: usize = 4096;
/// Stream offsets past this are ignored (the peek stops long before).
const MAX_OFFSET: u64 = 64 * 1024;
/// Stored byte runs (packets) per flow.
const MAX_PIECES: usize = 64;
/// Nested tunnels followed (a proxy chain, then WebSocket).
const MAX_DEPTH: usize = 4;
/// WebSocket frames walked and messages classified.
const MAX_FRAMES: usize = 32;
const MAX_MESSAGES: usize = 8;
/// Bytes of one WebSocket message handed to the classifier.
const MAX_MESSAGE: usize = 2048;

/// One payload record: `data` is the captured prefix of the `len` bytes
/// from `seq` to the end of its packet.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    /// TCP sequence number of `data[0]`; `None` in recordings made before
    /// the kernel sent it (segments are then taken in arrival order).
    pub seq: Option<u32>,
    pub packet_index: u8,
    pub len: u32,
    pub data: &'a [u8],
    /// More bytes of a packet already seen (a long ClientHello).
    pub continuation: bool,
}

/// A layer a flow passes through before its application bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hop {
    Proxy(ProxyRequest),
    WebSocket(Upgrade),
}

/// What the flow's bytes say so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowView {
    /// Outermost first.
    pub hops: Vec<Hop>,
    /// The innermost application protocol (`Unknown` until it shows).
    pub protocol: Protocol,
    /// A pool protocol anywhere inside (a WebSocket's second message may be
    /// the login after a first non-mining one).
    pub mining: Option<Protocol>,
    /// The innermost ClientHello, when the application bytes are TLS.
    pub tls: Option<ClientHello>,
    /// More bytes could still change the answer.
    pub pending: bool,
}

impl Default for FlowView {
    fn default() -> Self {
        FlowView {
            hops: Vec::new(),
            protocol: Protocol::Unknown,
            mining: None,
            tls: None,
            pending: false,
        }
    }
}

impl FlowView {
    /// Where the innermost proxy was asked to connect.
    pub fn destination(&self) -> Option<&Destination> {
        self.hops.iter().rev().find_map(|h| match h {
            Hop::Proxy(p) => Some(&p.dest),
            Hop::WebSocket(_) => None,
        })
    }

    pub fn websocket(&self) -> Option<&Upgrade> {
        self.hops.iter().find_map(|h| match h {
            Hop::WebSocket(u) => Some(u),
            Hop::Proxy(_) => None,
        })
    }

    pub fn proxies(&self) -> impl Iterator<Item = &ProxyRequest> {
        self.hops.iter().filter_map(|h| match h {
            Hop::Proxy(p) => Some(p),
            Hop::WebSocket(_) => None,
        })
    }
}

/// Whether the bytes after a contiguous run are missing (a hole: the
/// sender sent them, the peek did not keep them) or not sent yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tail {
    Hole,
    Open,
}

#[derive(Debug, Clone, Default)]
pub struct FlowStream {
    base: Option<u32>,
    /// Next offset for segments without a sequence number.
    next: u64,
    /// Known bytes: sorted, non-overlapping, adjacent runs merged.
    pieces: Vec<(u64, Vec<u8>)>,
    /// Offsets where packets end (sorted, deduplicated).
    ends: Vec<u64>,
    known: usize,
    /// The first segment seen was not the flow's first packet.
    mid_stream: bool,
}

impl FlowStream {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one payload record. Returns false when it added nothing (a
    /// retransmission, past the bounds).
    pub fn push(&mut self, s: Segment<'_>) -> bool {
        let off = match s.seq {
            Some(seq) => {
                let base = *self.base.get_or_insert_with(|| {
                    self.mid_stream = s.packet_index != 0 || s.continuation;
                    seq
                });
                u64::from(seq.wrapping_sub(base))
            }
            None => {
                if self.base.is_none() && self.pieces.is_empty() && self.ends.is_empty() {
                    self.mid_stream = s.packet_index != 0;
                }
                let o = self.next;
                if !s.continuation {
                    self.next += u64::from(s.len);
                }
                o
            }
        };
        if off >= MAX_OFFSET {
            return false;
        }
        let end = off + u64::from(s.len);
        if let Err(i) = self.ends.binary_search(&end)
            && self.ends.len() < MAX_PIECES
        {
            self.ends.insert(i, end);
        }
        let n = s.data.len().min(s.len as usize);
        self.insert(off, &s.data[..n])
    }

    fn insert(&mut self, off: u64, data: &[u8]) -> bool {
        let mut added = false;
        let mut at = off;
        let end = off + data.len() as u64;
        // Walk the gaps between known pieces that overlap [off, end).
        let mut gaps: Vec<(u64, u64)> = Vec::new();
        for (s, bytes) in &self.pieces {
            let e = s + bytes.len() as u64;
            if e <= at {
                continue;
            }
            if *s >= end {
                break;
            }
            if *s > at {
                gaps.push((at, *s));
            }
            at = at.max(e);
        }
        if at < end {
            gaps.push((at, end));
        }
        for (s, e) in gaps {
            let room = MAX_BYTES.saturating_sub(self.known);
            if room == 0 || self.pieces.len() >= MAX_PIECES {
                break;
            }
            let lo = (s - off) as usize;
            let hi = ((e - off) as usize).min(lo + room);
            self.known += hi - lo;
            let i = self.pieces.partition_point(|(p, _)| *p < s);
            self.pieces.insert(i, (s, data[lo..hi].to_vec()));
            added = true;
        }
        if added {
            self.merge();
        }
        added
    }

    fn merge(&mut self) {
        let mut out: Vec<(u64, Vec<u8>)> = Vec::with_capacity(self.pieces.len());
        for (s, b) in self.pieces.drain(..) {
            match out.last_mut() {
                Some((ls, lb)) if *ls + lb.len() as u64 == s => lb.extend_from_slice(&b),
                _ => out.push((s, b)),
            }
        }
        self.pieces = out;
    }

    /// The bytes known contiguously from `from`, and what follows them.
    fn run(&self, from: u64) -> (&[u8], Tail) {
        let sent = self.ends.last().copied().unwrap_or(0);
        let bytes = self
            .pieces
            .iter()
            .find(|(s, b)| *s <= from && from < s + b.len() as u64)
            .map_or(&[][..], |(s, b)| &b[(from - s) as usize..]);
        let tail = if from + (bytes.len() as u64) < sent {
            Tail::Hole
        } else {
            Tail::Open
        };
        (bytes, tail)
    }

    /// The end of the packet that holds offset `at` (or `at` itself at a
    /// packet boundary).
    fn packet_end(&self, at: u64) -> Option<u64> {
        self.ends.iter().copied().find(|&e| e >= at)
    }

    /// Peels the stored bytes into layers and classifies what is inside.
    pub fn view(&self) -> FlowView {
        let mut v = FlowView::default();
        if self.mid_stream {
            // Not the flow's start: only the bytes themselves can tell.
            let (run, tail) = self.run(self.pieces.first().map_or(0, |p| p.0));
            v.protocol = classify(run);
            v.mining = v.protocol.is_mining().then_some(v.protocol);
            v.pending = v.protocol == Protocol::Unknown && tail == Tail::Open;
            return v;
        }
        let mut pos = 0u64;
        for _ in 0..MAX_DEPTH {
            let (run, tail) = self.run(pos);
            if run.is_empty() {
                v.pending = tail == Tail::Open;
                return v;
            }
            if proxy::looks_like(run) {
                match proxy::parse(run) {
                    Parse::Done(req, n) => {
                        let tunnel = req.tunnel;
                        v.hops.push(Hop::Proxy(req));
                        if !tunnel {
                            return v;
                        }
                        pos += n as u64;
                        continue;
                    }
                    Parse::Partial(req) => {
                        v.hops.push(Hop::Proxy(req));
                        match self.packet_end(pos + run.len() as u64) {
                            Some(e) if tail == Tail::Hole => {
                                pos = e;
                                continue;
                            }
                            _ => {
                                v.pending = true;
                                return v;
                            }
                        }
                    }
                    Parse::NeedMore if tail == Tail::Open => {
                        v.pending = true;
                        return v;
                    }
                    Parse::NeedMore | Parse::No => {}
                }
            }
            match websocket::upgrade(run) {
                Parse::Done(up, n) => {
                    v.hops.push(Hop::WebSocket(up));
                    self.frames(pos + n as u64, &mut v);
                    return v;
                }
                Parse::Partial(up) => {
                    v.hops.push(Hop::WebSocket(up));
                    match self.packet_end(pos + run.len() as u64) {
                        Some(e) if tail == Tail::Hole => self.frames(e, &mut v),
                        _ => v.pending = true,
                    }
                    return v;
                }
                Parse::NeedMore if tail == Tail::Open => {
                    v.pending = true;
                    return v;
                }
                Parse::NeedMore | Parse::No => {}
            }
            if tls::is_client_hello(run) {
                v.protocol = Protocol::Tls;
                v.tls = tls::client_hello(run);
                // A continuation record may still fill the hole.
                v.pending = !v.tls.as_ref().is_some_and(|h| h.complete);
                return v;
            }
            v.protocol = classify(run);
            v.mining = v.protocol.is_mining().then_some(v.protocol);
            v.pending = v.protocol == Protocol::Unknown && tail == Tail::Open;
            return v;
        }
        v
    }

    /// Walks WebSocket frames from `pos`, classifying each message.
    fn frames(&self, mut pos: u64, v: &mut FlowView) {
        let mut msg: Vec<u8> = Vec::new();
        let mut in_msg = false;
        let mut compressed = false;
        let mut messages = 0;
        for _ in 0..MAX_FRAMES {
            let (run, tail) = self.run(pos);
            if run.is_empty() {
                v.pending = tail == Tail::Open;
                return;
            }
            let h = match websocket::frame_header(run) {
                Parse::Done(h, _) => h,
                // A hole over a header loses the framing.
                Parse::NeedMore => {
                    v.pending = tail == Tail::Open;
                    return;
                }
                Parse::No | Parse::Partial(_) => return,
            };
            let start = pos + h.header_len as u64;
            let (body, _) = self.run(start);
            let room = MAX_MESSAGE.saturating_sub(msg.len());
            let take = body
                .len()
                .min(room)
                .min(h.len.min(MAX_MESSAGE as u64) as usize);
            let mut data = body[..take].to_vec();
            if let Some(key) = h.mask {
                websocket::unmask(&mut data, key, 0);
            }
            let whole = take as u64 == h.len;
            match h.opcode {
                OP_TEXT | OP_BINARY => {
                    msg = data;
                    in_msg = true;
                    compressed = h.compressed;
                }
                OP_CONTINUATION if in_msg => msg.extend_from_slice(&data),
                OP_CLOSE => return,
                _ => {}
            }
            let data_frame = matches!(h.opcode, OP_TEXT | OP_BINARY | OP_CONTINUATION);
            if in_msg && data_frame && (h.fin || !whole) {
                // permessage-deflate payloads are compressed: unreadable.
                let p = if compressed {
                    Protocol::Unknown
                } else {
                    classify(&msg)
                };
                if p.is_mining() {
                    v.protocol = p;
                    v.mining = Some(p);
                    v.pending = false;
                    return;
                }
                if v.protocol == Protocol::Unknown {
                    v.protocol = p;
                }
                messages += 1;
                in_msg = !h.fin;
                if messages >= MAX_MESSAGES {
                    return;
                }
            }
            pos = start.saturating_add(h.len);
            if pos >= MAX_OFFSET {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tls::tests::{hello, sni_ext};
    use super::super::websocket::client_frame;
    use super::*;
    use proptest::prelude::*;

    const XMRIG_LOGIN: &[u8] = br#"{"id":1,"jsonrpc":"2.0","method":"login","params":{"login":"44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A","pass":"x","agent":"XMRig/6.16.0 (Linux x86_64) libuv/1.42.0 gcc/9.3.0","rigid":"","algo":["rx/0","rx/wow"]}}"#;
    const SUBSCRIBE: &[u8] =
        b"{\"id\": 1, \"method\": \"mining.subscribe\", \"params\": [\"cpuminer-opt/3.23.4\"]}\n";

    /// Feeds `stream` cut at `cuts` (offsets), as the kernel would send
    /// it: sequence numbers from `isn`, each packet's first `peek` bytes.
    fn feed(stream: &[u8], cuts: &[usize], isn: u32, peek: usize) -> FlowStream {
        let mut f = FlowStream::new();
        let mut bounds: Vec<usize> = cuts.iter().copied().filter(|&c| c < stream.len()).collect();
        bounds.push(0);
        bounds.push(stream.len());
        bounds.sort_unstable();
        bounds.dedup();
        for (i, w) in bounds.windows(2).enumerate() {
            let pkt = &stream[w[0]..w[1]];
            f.push(Segment {
                seq: Some(isn.wrapping_add(w[0] as u32)),
                packet_index: i as u8,
                len: pkt.len() as u32,
                data: &pkt[..pkt.len().min(peek)],
                continuation: false,
            });
        }
        f
    }

    fn socks5(dest_port: u16) -> Vec<u8> {
        let mut b = vec![5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1];
        b.extend_from_slice(&dest_port.to_be_bytes());
        b
    }

    fn socks5_auth() -> Vec<u8> {
        [
            &[5u8, 2, 0, 2, 1, 4][..],
            b"user",
            &[6],
            b"secret",
            &[5, 1, 0, 3, 12],
            b"pool.example",
            &[0x11, 0x5c],
        ]
        .concat()
    }

    fn socks4a() -> Vec<u8> {
        [&[4u8, 1, 0x0d, 0x05, 0, 0, 0, 9][..], b"x\0pool.example\0"].concat()
    }

    fn connect() -> Vec<u8> {
        b"CONNECT pool.example:3333 HTTP/1.1\r\nHost: pool.example:3333\r\nProxy-Connection: Keep-Alive\r\n\r\n".to_vec()
    }

    fn ws(payloads: &[&[u8]]) -> Vec<u8> {
        let mut b = b"GET /ws HTTP/1.1\r\nHost: pool.example:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".to_vec();
        for (i, p) in payloads.iter().enumerate() {
            b.extend(client_frame(OP_TEXT, true, p, [0x37, 0xfa, i as u8, 0x3d]));
        }
        b
    }

    #[test]
    fn socks5_then_xmrig_login_is_mining_with_the_destination() {
        let s = [socks5(3333), XMRIG_LOGIN.to_vec()].concat();
        // greeting | request | login: three packets, as XMRig sends them.
        let v = feed(&s, &[3, 13], 1000, 256).view();
        assert_eq!(v.mining, Some(Protocol::XmrigLogin));
        assert_eq!(v.destination().unwrap().to_string(), "127.0.0.1:3333");
        assert!(matches!(&v.hops[..], [Hop::Proxy(p)] if p.kind == proxy::ProxyKind::Socks5));
    }

    #[test]
    fn handshake_cut_by_the_peek_ends_at_its_packet() {
        // A CONNECT head longer than the peek: its end is in a hole, the
        // tunnelled login starts the next packet.
        let mut head = b"CONNECT 10.0.0.9:3333 HTTP/1.1\r\nUser-Agent: ".to_vec();
        head.extend(std::iter::repeat_n(b'a', 400));
        head.extend_from_slice(b"\r\n\r\n");
        let s = [head.clone(), SUBSCRIBE.to_vec()].concat();
        let v = feed(&s, &[head.len()], 7, 256).view();
        assert_eq!(v.mining, Some(Protocol::StratumV1), "{v:?}");
        assert_eq!(v.destination().unwrap().to_string(), "10.0.0.9:3333");
    }

    #[test]
    fn websocket_frames_are_unmasked_and_classified() {
        let s = ws(&[br#"{"id":1,"jsonrpc":"2.0","method":"ping"}"#, XMRIG_LOGIN]);
        let v = feed(&s, &[150], 5, 256).view();
        assert_eq!(v.mining, Some(Protocol::XmrigLogin), "{v:?}");
        assert_eq!(v.websocket().unwrap().path, "/ws");
        // A JSON service over WebSocket is not mining.
        let v = feed(
            &ws(&[br#"{"jsonrpc":"2.0","method":"subscribe","params":["prices"],"id":1}"#]),
            &[],
            5,
            256,
        )
        .view();
        assert_eq!((v.mining, v.protocol), (None, Protocol::OtherJsonRpc));
        // A long frame whose tail the peek missed: the next frame is found.
        let big = vec![b' '; 600];
        let s = ws(&[&big, SUBSCRIBE]);
        let first_frame_end = s.len() - SUBSCRIBE.len() - 6;
        let v = feed(&s, &[170, first_frame_end], 5, 256).view();
        assert_eq!(v.mining, Some(Protocol::StratumV1), "{v:?}");
    }

    #[test]
    fn tls_through_a_proxy_keeps_its_hello() {
        let h = hello(
            &[0x1301, 0xc02f],
            &[sni_ext("pool.example"), (0x000b, vec![1, 0])],
        );
        let s = [socks5_auth(), h].concat();
        let v = feed(&s, &[4, 17], 1, 256).view();
        assert_eq!(v.protocol, Protocol::Tls);
        let t = v.tls.clone().unwrap();
        assert_eq!(t.sni.as_deref(), Some("pool.example"));
        assert!(t.complete);
        assert_eq!(v.destination().unwrap().to_string(), "pool.example:4444");
    }

    #[test]
    fn continuation_records_complete_a_long_hello() {
        let pad = (0x0015u16, vec![0u8; 400]);
        let h = hello(&[0x1301], &[sni_ext("a.example"), pad]);
        let mut f = FlowStream::new();
        let seg = |off: usize, cont| Segment {
            seq: Some(100 + off as u32),
            packet_index: 0,
            len: (h.len() - off) as u32,
            data: &h[off..h.len().min(off + 256)],
            continuation: cont,
        };
        f.push(seg(0, false));
        let v = f.view();
        assert!(v.pending && !v.tls.as_ref().unwrap().complete);
        f.push(seg(256, true));
        let v = f.view();
        assert!(v.tls.unwrap().complete);
        // A retransmission of the first packet adds nothing.
        assert!(!f.push(seg(0, false)));
    }

    #[test]
    fn segments_without_sequence_numbers_are_taken_in_order() {
        let s = [socks5(3333), XMRIG_LOGIN.to_vec()].concat();
        let mut f = FlowStream::new();
        for (i, w) in [0usize, 3, 13, s.len()].windows(2).enumerate() {
            f.push(Segment {
                seq: None,
                packet_index: i as u8,
                len: (w[1] - w[0]) as u32,
                data: &s[w[0]..w[1].min(w[0] + 256)],
                continuation: false,
            });
        }
        assert_eq!(f.view().mining, Some(Protocol::XmrigLogin));
    }

    #[test]
    fn a_flow_seen_mid_stream_is_classified_by_its_bytes() {
        let mut f = FlowStream::new();
        f.push(Segment {
            seq: Some(9),
            packet_index: 3,
            len: SUBSCRIBE.len() as u32,
            data: SUBSCRIBE,
            continuation: false,
        });
        let v = f.view();
        assert_eq!(v.mining, Some(Protocol::StratumV1));
        assert!(v.hops.is_empty());
    }

    /// XMRig 6.16.0 with `"tls": true`, pool `localhost:36097`, through our
    /// `socks_proxy --capture` (captured on this machine): the request names
    /// the host, then a 293-byte OpenSSL ClientHello follows, with neither
    /// SNI nor ALPN.
    const XMRIG_TLS_SOCKS5: &str = "05010005010003096c6f63616c686f73748d01";
    pub(crate) const XMRIG_CLIENT_HELLO: &str = "16030101200100011c03034eb00dbb4ec5b422ee6230025e621b4e0ba05b5d53b3c944d8d6c914811dc940200951e74008dcb0875b8d6bb2ac2db7a903a9f61a5dd53c702ce672f01ed323ae003e130213031301c02cc030009fcca9cca8ccaac02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033009d009c003d003c0035002f00ff01000095000b000403000102000a000c000a001d0017001e00190018002300000016000000170000000d0030002e040305030603080708080809080a080b080408050806040105010601030302030301020103020202040205020602002b0009080304030303020301002d00020101003300260024001d00205bc3e6a0bf6790ba0fac58e4ff2712199bc562c198a87391c44fa4f6b06a2778";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn real_xmrig_tls_through_socks5_shows_its_hello() {
        let hs = unhex(XMRIG_TLS_SOCKS5);
        let hello = unhex(XMRIG_CLIENT_HELLO);
        assert_eq!(hello.len(), 293);
        // As the kernel sends it: greeting, request, then the hello in a
        // first record of PEEK_LEN bytes and one continuation.
        let mut f = FlowStream::new();
        let mut seg = |seq: u32, idx: u8, bytes: &[u8], cont: bool| {
            f.push(Segment {
                seq: Some(seq),
                packet_index: idx,
                len: bytes.len() as u32,
                data: &bytes[..bytes.len().min(256)],
                continuation: cont,
            });
        };
        seg(500, 0, &hs[..3], false);
        seg(503, 1, &hs[3..], false);
        let at = 503 + (hs.len() - 3) as u32;
        seg(at, 2, &hello, false);
        seg(at + 256, 2, &hello[256..], true);
        let v = f.view();
        assert_eq!(v.destination().unwrap().to_string(), "localhost:36097");
        assert_eq!(v.protocol, Protocol::Tls);
        let t = v.tls.unwrap();
        assert!(t.complete && t.alpn.is_empty());
        assert_eq!(t.sni, None, "XMRig 6.16 sends no server name");
        assert_eq!(t.ja4(), "t13i310900_e8f1e7e78f70_5ac7197df9d2");
    }

    /// XMRig 6.16.0 through our SOCKS5 proxy to a plain pool (captured
    /// here): greeting and request in two packets, then its 556-byte login,
    /// of which the kernel keeps the first 256 bytes.
    const XMRIG_SOCKS5_PLAIN: &str = "050100050100017f000001b161";
    const XMRIG_LOGIN_PEEKED: &str = r#"{"id":1,"jsonrpc":"2.0","method":"login","params":{"login":"44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A","pass":"x","agent":"XMRig/6.16.0 (Linux x86_64) libuv/1.42.0 gcc/5.4.0","algo":["cn/1","cn/2","cn/r"#;

    #[test]
    fn real_xmrig_login_through_socks5_is_mining() {
        let hs = unhex(XMRIG_SOCKS5_PLAIN);
        let mut f = FlowStream::new();
        for (seq, idx, bytes, len) in [
            (1u32, 0u8, &hs[..3], 3u32),
            (4, 1, &hs[3..], 10),
            (14, 2, XMRIG_LOGIN_PEEKED.as_bytes(), 556),
        ] {
            f.push(Segment {
                seq: Some(seq),
                packet_index: idx,
                len,
                data: bytes,
                continuation: false,
            });
        }
        let v = f.view();
        assert_eq!(v.mining, Some(Protocol::XmrigLogin));
        assert_eq!(v.destination().unwrap().to_string(), "127.0.0.1:45409");
    }

    fn handshakes() -> Vec<Vec<u8>> {
        vec![
            socks5(3333),
            socks5_auth(),
            socks4a(),
            connect(),
            [socks5(1080), connect()].concat(),
        ]
    }

    proptest! {
        #[test]
        fn tunnelled_stratum_is_mining_under_any_split(
            which in 0usize..5, msg in 0usize..2, ws_inside in any::<bool>(),
            cuts in proptest::collection::vec(0usize..600, 0..8), isn in any::<u32>(),
        ) {
            let m: &[u8] = if msg == 0 { XMRIG_LOGIN } else { SUBSCRIBE };
            let inner = if ws_inside { ws(&[m]) } else { m.to_vec() };
            let s = [handshakes()[which].clone(), inner].concat();
            // Packets of at most PEEK_LEN bytes: everything is captured.
            let mut cuts = cuts;
            cuts.extend((256..s.len()).step_by(256));
            let v = feed(&s, &cuts, isn, 256).view();
            prop_assert!(v.mining.is_some(), "{:?}", v);
            prop_assert!(v.destination().is_some());
            // A retransmitted packet changes nothing.
            let mut f = feed(&s, &cuts, isn, 256);
            f.push(Segment { seq: Some(isn), packet_index: 9, len: 3, data: &s[..3], continuation: false });
            prop_assert_eq!(f.view().mining, v.mining);
        }

        #[test]
        fn non_json_payloads_are_never_mining(
            which in 0usize..5, ws_inside in any::<bool>(),
            payload in proptest::collection::vec(any::<u8>().prop_filter("no JSON", |c| *c != b'{' && *c != b'['), 1..400),
            cuts in proptest::collection::vec(0usize..800, 0..6),
        ) {
            // A leading 0x00 could be a Stratum v2 frame (binary mining).
            let payload = [&[0x20u8][..], &payload].concat();
            let inner = if ws_inside { ws(&[&payload]) } else { payload };
            let s = [handshakes()[which].clone(), inner].concat();
            let v = feed(&s, &cuts, 1, 256).view();
            prop_assert!(v.mining.is_none(), "{:?}", v);
        }

        #[test]
        fn never_panics_on_arbitrary_segments(
            segs in proptest::collection::vec(
                (any::<u32>(), any::<u8>(), 0u32..5000, proptest::collection::vec(any::<u8>(), 0..300), any::<bool>(), any::<bool>()),
                0..12),
        ) {
            let mut f = FlowStream::new();
            for (seq, idx, len, data, cont, has_seq) in &segs {
                f.push(Segment { seq: has_seq.then_some(*seq), packet_index: *idx, len: *len, data, continuation: *cont });
                let _ = f.view();
            }
            prop_assert!(f.known <= MAX_BYTES);
        }

        #[test]
        fn never_panics_on_handshake_prefixes_and_garbage(
            which in 0usize..5, cut in 0usize..200,
            tail in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let h = handshakes()[which].clone();
            let s = [&h[..cut.min(h.len())], &tail[..]].concat();
            let _ = feed(&s, &[cut], 3, 256).view();
            let _ = feed(&s, &[], 3, 64).view();
        }
    }
}
