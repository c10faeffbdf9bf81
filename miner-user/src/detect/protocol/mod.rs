//! What a TCP flow speaks, from the bytes its client sent.
//!
//! - [`stratum`]: the application protocol of a buffer (pool protocols, and
//!   the protocols that prove a flow is not a pool connection).
//! - [`proxy`]: SOCKS4/4a/5 and HTTP `CONNECT` handshakes: where the client
//!   asked to be tunnelled.
//! - [`websocket`]: the HTTP upgrade and RFC 6455 client frames (unmasked).
//! - [`tls`]: the ClientHello: server name, ALPN, a JA4 fingerprint.
//! - [`stream`]: one flow's peeked packets, reassembled by TCP sequence
//!   number, peeled layer by layer (proxy → WebSocket → payload).
//!
//! Everything here reads arbitrary bytes from the network: every index is
//! bound-checked, every loop is bounded by the (bounded) input, and property
//! tests feed random and re-split input to each parser.

pub mod proxy;
pub mod stratum;
pub mod stream;
pub mod tls;
pub mod websocket;

pub use stratum::{Protocol, classify, tls_sni};
pub use stream::{FlowStream, FlowView, Hop};

/// The result of parsing a handshake message from the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse<T> {
    /// Not this protocol.
    No,
    /// Could still be it: more bytes are needed to know anything.
    NeedMore,
    /// What the message asks for is known; its end is not in the buffer.
    Partial(T),
    /// The whole message, and how many bytes it took.
    Done(T, usize),
}

/// Position of `needle` in `hay`.
pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Whether a request can start with `method` (`GET `, `CONNECT `): `None`
/// when `b` does, else what to answer — `NeedMore` while `b` is still a
/// prefix of it, `No` once it cannot be.
pub(crate) fn expect_method<T>(b: &[u8], method: &[u8]) -> Option<Parse<T>> {
    if b.starts_with(method) {
        None
    } else if method.starts_with(b) {
        Some(Parse::NeedMore)
    } else {
        Some(Parse::No)
    }
}

/// HTTP header lines of a request head (after the request line, up to the
/// blank line or the end of the buffer), as (lowercase-comparable name,
/// trimmed value). A line cut by the end of the buffer is left out.
pub(crate) fn header_lines(head: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    head.split(|&c| c == b'\n')
        .skip(1)
        .take_while(|l| !l.is_empty() && *l != b"\r")
        .filter(|l| l.ends_with(b"\r"))
        .filter_map(|l| {
            let l = &l[..l.len() - 1];
            let colon = l.iter().position(|&c| c == b':')?;
            Some((l[..colon].trim_ascii(), l[colon + 1..].trim_ascii()))
        })
}
