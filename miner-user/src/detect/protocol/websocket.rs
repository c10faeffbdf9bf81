//! WebSocket (RFC 6455) from the client side: the HTTP/1.1 upgrade request,
//! then frames. Client frames are masked with a 4-byte key carried in each
//! frame header; masking hides nothing from a reader that has the header,
//! so the payload is unmasked and classified like any other first bytes.
//! Browser-style and Node.js miners speak Stratum this way.

use super::{Parse, find, header_lines};

/// An HTTP request that asks to switch the connection to WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// The `Host` header, if seen (lowercased).
    pub host: Option<String>,
    pub path: String,
}

/// Longest request head we wait for.
const MAX_HEAD: usize = 8192;

/// Parses an upgrade request at the start of `b`: `GET path HTTP/1.1`,
/// headers with `Upgrade: websocket` (or a `Sec-WebSocket-Key`), blank line.
/// A complete head without either is plain HTTP: `No`.
pub fn upgrade(b: &[u8]) -> Parse<Upgrade> {
    const M: &[u8] = b"GET ";
    if let Some(no) = super::expect_method(b, M) {
        return no;
    }
    let end = find(b, b"\r\n\r\n").map(|i| i + 4);
    let head = &b[..end.unwrap_or(b.len())];
    let mut is_ws = false;
    let mut host = None;
    for (k, v) in header_lines(head) {
        if k.eq_ignore_ascii_case(b"upgrade") {
            is_ws |= v
                .split(|&c| c == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"websocket"));
        } else if k.eq_ignore_ascii_case(b"sec-websocket-key") {
            is_ws = true;
        } else if k.eq_ignore_ascii_case(b"host") {
            host = Some(String::from_utf8_lossy(v).to_ascii_lowercase());
        }
    }
    let line_end = find(head, b"\r\n").unwrap_or(head.len());
    let path = head[M.len()..line_end]
        .split(|&c| c == b' ')
        .next()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_default();
    let up = Upgrade { host, path };
    match (end, is_ws) {
        (Some(n), true) => Parse::Done(up, n),
        (Some(_), false) => Parse::No,
        (None, _) if b.len() > MAX_HEAD => Parse::No,
        (None, true) => Parse::Partial(up),
        (None, false) => Parse::NeedMore,
    }
}

/// Opcodes (RFC 6455 §5.2).
pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    /// RSV1: set by permessage-deflate (the payload is compressed).
    pub compressed: bool,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub len: u64,
    pub header_len: usize,
}

/// Parses a frame header at the start of `b`. `No` for what no endpoint
/// may send: a reserved opcode, RSV2/RSV3 set, a control frame that is
/// fragmented or longer than 125 bytes, a 64-bit length with its top bit
/// set, or a non-minimal length encoding.
pub fn frame_header(b: &[u8]) -> Parse<FrameHeader> {
    let (Some(&b0), Some(&b1)) = (b.first(), b.get(1)) else {
        return Parse::NeedMore;
    };
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0f;
    if b0 & 0x30 != 0 || matches!(opcode, 0x3..=0x7 | 0xb..=0xf) {
        return Parse::No;
    }
    let control = opcode >= 0x8;
    let masked = b1 & 0x80 != 0;
    let (len, mut at) = match b1 & 0x7f {
        126 => match b.get(2..4) {
            Some(l) => (u64::from(u16::from_be_bytes([l[0], l[1]])), 4),
            None => return Parse::NeedMore,
        },
        127 => match b.get(2..10) {
            Some(l) => {
                let mut a = [0u8; 8];
                a.copy_from_slice(l);
                (u64::from_be_bytes(a), 10)
            }
            None => return Parse::NeedMore,
        },
        n => (u64::from(n), 2),
    };
    let minimal = match at {
        4 => len >= 126,
        10 => len > 0xffff && len >> 63 == 0,
        _ => true,
    };
    if !minimal || (control && (!fin || len > 125)) {
        return Parse::No;
    }
    let mask = if masked {
        let Some(k) = b.get(at..at + 4) else {
            return Parse::NeedMore;
        };
        at += 4;
        Some([k[0], k[1], k[2], k[3]])
    } else {
        None
    };
    Parse::Done(
        FrameHeader {
            fin,
            compressed: b0 & 0x40 != 0,
            opcode,
            mask,
            len,
            header_len: at,
        },
        at,
    )
}

/// XORs `data` with the frame's key; `offset` is the position of `data[0]`
/// in the frame's payload, so a payload can be unmasked in pieces.
/// Unmasking twice gives the masked bytes back.
pub fn unmask(data: &mut [u8], key: [u8; 4], offset: u64) {
    let start = (offset % 4) as usize;
    for (i, c) in data.iter_mut().enumerate() {
        *c ^= key[(start + i) % 4];
    }
}

/// Builds a masked client frame (tests and fixtures).
#[cfg(test)]
pub fn client_frame(opcode: u8, fin: bool, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode];
    let n = payload.len();
    if n < 126 {
        f.push(0x80 | n as u8);
    } else if n <= 0xffff {
        f.push(0x80 | 126);
        f.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(n as u64).to_be_bytes());
    }
    f.extend_from_slice(&key);
    let mut body = payload.to_vec();
    unmask(&mut body, key, 0);
    f.extend_from_slice(&body);
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NODE_UPGRADE: &[u8] = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn recognises_upgrade_requests() {
        let Parse::Done(up, n) = upgrade(NODE_UPGRADE) else {
            panic!("{:?}", upgrade(NODE_UPGRADE));
        };
        assert_eq!(n, NODE_UPGRADE.len());
        assert_eq!(up.path, "/ws");
        assert_eq!(up.host.as_deref(), Some("127.0.0.1:8080"));
        // Go canonicalises header names; values are case-insensitive.
        let go = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\nConnection: upgrade\r\nSec-Websocket-Version: 13\r\n\r\n";
        assert!(matches!(upgrade(go), Parse::Done(..)));
        let cut = &NODE_UPGRADE[..70];
        assert!(
            matches!(upgrade(cut), Parse::Partial(_)),
            "{:?}",
            upgrade(cut)
        );
        assert_eq!(
            upgrade(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n"),
            Parse::No
        );
        assert_eq!(
            upgrade(b"GET /index.html HTTP/1.1\r\nHost: x\r\n"),
            Parse::NeedMore
        );
        assert_eq!(upgrade(b"POST / HTTP/1.1\r\n"), Parse::No);
        assert_eq!(upgrade(b"GE"), Parse::NeedMore);
    }

    #[test]
    fn parses_frame_headers() {
        let f = client_frame(OP_TEXT, true, b"hello", [1, 2, 3, 4]);
        let Parse::Done(h, 6) = frame_header(&f) else {
            panic!("{:?}", frame_header(&f));
        };
        assert_eq!(
            (h.fin, h.opcode, h.len, h.mask),
            (true, OP_TEXT, 5, Some([1, 2, 3, 4]))
        );
        let long = client_frame(OP_BINARY, false, &[0u8; 300], [9, 9, 9, 9]);
        assert!(matches!(
            frame_header(&long),
            Parse::Done(
                FrameHeader {
                    len: 300,
                    header_len: 8,
                    ..
                },
                8
            )
        ));
        assert_eq!(frame_header(&long[..3]), Parse::NeedMore);
        assert_eq!(frame_header(&[0x83, 0x80]), Parse::No, "reserved opcode");
        assert_eq!(frame_header(&[0x09, 0x80]), Parse::No, "fragmented ping");
        assert_eq!(
            frame_header(&[0x81, 0xfe, 0x00, 0x05]),
            Parse::No,
            "non-minimal length"
        );
        assert!(
            matches!(
                frame_header(&[0xc1, 0x85, 1, 2, 3, 4]),
                Parse::Done(
                    FrameHeader {
                        compressed: true,
                        ..
                    },
                    6
                )
            ),
            "deflate bit"
        );
    }

    proptest! {
        #[test]
        fn unmasking_round_trips(data in proptest::collection::vec(any::<u8>(), 0..300),
                                 key in any::<[u8; 4]>(), split in 0usize..300) {
            let mut once = data.clone();
            unmask(&mut once, key, 0);
            // In two pieces, as when a payload spans packets.
            let mut pieces = once.clone();
            let s = split.min(pieces.len());
            let (a, b) = pieces.split_at_mut(s);
            unmask(a, key, 0);
            unmask(b, key, s as u64);
            prop_assert_eq!(&pieces, &data);
        }

        #[test]
        fn frame_parser_never_panics(b in proptest::collection::vec(any::<u8>(), 0..32)) {
            if let Parse::Done(h, n) = frame_header(&b) {
                prop_assert!(n <= b.len());
                prop_assert_eq!(n, h.header_len);
            }
            let _ = upgrade(&b);
        }
    }
}
