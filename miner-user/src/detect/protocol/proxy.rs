//! The client side of a proxy handshake: SOCKS4, SOCKS4a, SOCKS5 (with or
//! without RFC 1929 username/password authentication) and HTTP `CONNECT`.
//! Only client → proxy bytes are seen (the egress peek), so the parser
//! infers the proxy's answers from what the client sends next: after a
//! SOCKS5 greeting, `01 …` is the authentication sub-negotiation and
//! `05 …` the request.
//!
//! The destination the client asked for is what matters: a miner behind a
//! proxy shows the proxy's address at connect time and its pool only here.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::Parse;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    Socks4,
    Socks4a,
    Socks5,
    HttpConnect,
}

impl ProxyKind {
    pub fn name(self) -> &'static str {
        match self {
            ProxyKind::Socks4 => "socks4",
            ProxyKind::Socks4a => "socks4a",
            ProxyKind::Socks5 => "socks5",
            ProxyKind::HttpConnect => "http-connect",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    /// A name for the proxy to resolve (SOCKS4a, SOCKS5 domain, CONNECT),
    /// lowercased.
    Name(String),
}

/// Where the client asked the proxy to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub host: Host,
    pub port: u16,
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(a)) => write!(f, "[{a}]:{}", self.port),
            Host::Ip(a) => write!(f, "{a}:{}", self.port),
            Host::Name(n) => write!(f, "{n}:{}", self.port),
        }
    }
}

/// A parsed proxy request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyRequest {
    pub kind: ProxyKind,
    pub dest: Destination,
    /// The client authenticated (SOCKS5 username/password, SOCKS4 user id,
    /// `Proxy-Authorization`).
    pub auth: bool,
    /// A TCP tunnel follows on this flow (CONNECT); false for SOCKS BIND
    /// and UDP ASSOCIATE, whose data does not follow on this connection.
    pub tunnel: bool,
}

/// Longest HTTP CONNECT request head we wait for; past it, not a proxy.
const MAX_CONNECT_HEAD: usize = 8192;

/// Whether the first bytes look like the start of a proxy handshake. Cheap
/// and permissive: [`parse`] decides.
pub fn looks_like(b: &[u8]) -> bool {
    match b.first() {
        Some(5) => b.get(1).is_none_or(|&n| n >= 1),
        Some(4) => b.get(1).is_none_or(|&c| c == 1 || c == 2),
        Some(b'C') => b"CONNECT ".starts_with(&b[..b.len().min(8)]) || b.starts_with(b"CONNECT "),
        _ => false,
    }
}

/// Parses a proxy request at the start of `b`.
pub fn parse(b: &[u8]) -> Parse<ProxyRequest> {
    match b.first() {
        None => Parse::NeedMore,
        Some(5) => socks5(b),
        Some(4) => socks4(b),
        Some(b'C') => http_connect(b),
        Some(_) => Parse::No,
    }
}

/// SOCKS5 (RFC 1928): greeting `05 NMETHODS METHODS…`, optionally the
/// RFC 1929 sub-negotiation `01 ULEN USER PLEN PASS`, then the request
/// `05 CMD 00 ATYP DST.ADDR DST.PORT`.
fn socks5(b: &[u8]) -> Parse<ProxyRequest> {
    let Some(&n) = b.get(1) else {
        return Parse::NeedMore;
    };
    let n = usize::from(n);
    if n == 0 {
        return Parse::No;
    }
    let Some(methods) = b.get(2..2 + n) else {
        // Every method byte seen so far must be a defined one.
        return if b[2.min(b.len())..].iter().all(|&m| socks5_method(m)) {
            Parse::NeedMore
        } else {
            Parse::No
        };
    };
    if !methods.iter().all(|&m| socks5_method(m)) {
        return Parse::No;
    }
    let mut i = 2 + n;
    let mut auth = false;
    if b.get(i) == Some(&1) && methods.contains(&2) {
        // Username/password: ULEN ≥ 1, PLEN may be 0.
        let Some(&ulen) = b.get(i + 1) else {
            return Parse::NeedMore;
        };
        if ulen == 0 {
            return Parse::No;
        }
        let plen_at = i + 2 + usize::from(ulen);
        let Some(&plen) = b.get(plen_at) else {
            return Parse::NeedMore;
        };
        i = plen_at + 1 + usize::from(plen);
        if i > b.len() {
            return Parse::NeedMore;
        }
        auth = true;
    }
    match b.get(i) {
        None => return Parse::NeedMore,
        Some(5) => {}
        Some(_) => return Parse::No,
    }
    let (Some(&cmd), Some(&rsv), Some(&atyp)) = (b.get(i + 1), b.get(i + 2), b.get(i + 3)) else {
        return if b.get(i + 1).is_none_or(|c| (1..=3).contains(c)) {
            Parse::NeedMore
        } else {
            Parse::No
        };
    };
    if !(1..=3).contains(&cmd) || rsv != 0 {
        return Parse::No;
    }
    let at = i + 4;
    let (host, end) = match atyp {
        1 => match b.get(at..at + 4) {
            Some(a) => (
                Host::Ip(IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))),
                at + 4,
            ),
            None => return Parse::NeedMore,
        },
        3 => {
            let Some(&len) = b.get(at) else {
                return Parse::NeedMore;
            };
            let Some(name) = b.get(at + 1..at + 1 + usize::from(len)) else {
                return Parse::NeedMore;
            };
            match host_name(name) {
                Some(h) => (h, at + 1 + usize::from(len)),
                None => return Parse::No,
            }
        }
        4 => match b.get(at..at + 16) {
            Some(a) => {
                let mut o = [0u8; 16];
                o.copy_from_slice(a);
                (Host::Ip(IpAddr::V6(Ipv6Addr::from(o))), at + 16)
            }
            None => return Parse::NeedMore,
        },
        _ => return Parse::No,
    };
    let Some(p) = b.get(end..end + 2) else {
        return Parse::NeedMore;
    };
    let port = u16::from_be_bytes([p[0], p[1]]);
    Parse::Done(
        ProxyRequest {
            kind: ProxyKind::Socks5,
            dest: Destination { host, port },
            auth,
            tunnel: cmd == 1,
        },
        end + 2,
    )
}

/// Methods a client can offer: no auth, GSSAPI, username/password, the
/// IANA-assigned 0x03-0x09, and the private range.
fn socks5_method(m: u8) -> bool {
    m <= 0x09 || (0x80..=0xfe).contains(&m)
}

/// SOCKS4: `04 CMD DSTPORT DSTIP USERID 00`; SOCKS4a: DSTIP is 0.0.0.x
/// (x ≠ 0) and the host name follows, NUL-terminated.
fn socks4(b: &[u8]) -> Parse<ProxyRequest> {
    let Some(&cmd) = b.get(1) else {
        return Parse::NeedMore;
    };
    if cmd != 1 && cmd != 2 {
        return Parse::No;
    }
    let Some(fixed) = b.get(2..8) else {
        return Parse::NeedMore;
    };
    let port = u16::from_be_bytes([fixed[0], fixed[1]]);
    let ip = Ipv4Addr::new(fixed[2], fixed[3], fixed[4], fixed[5]);
    let Some((user, after_user)) = cstring(b, 8) else {
        return if b.len() - 8 > 255 {
            Parse::No
        } else {
            Parse::NeedMore
        };
    };
    if !user.iter().all(|c| c.is_ascii_graphic()) {
        return Parse::No;
    }
    let o = ip.octets();
    let socks4a = o[0] == 0 && o[1] == 0 && o[2] == 0 && o[3] != 0;
    let (kind, host, end) = if socks4a {
        let Some((name, after)) = cstring(b, after_user) else {
            return if b.len() - after_user > 255 {
                Parse::No
            } else {
                Parse::NeedMore
            };
        };
        match host_name(name) {
            Some(h) => (ProxyKind::Socks4a, h, after),
            None => return Parse::No,
        }
    } else {
        (ProxyKind::Socks4, Host::Ip(IpAddr::V4(ip)), after_user)
    };
    Parse::Done(
        ProxyRequest {
            kind,
            dest: Destination { host, port },
            auth: !user.is_empty(),
            tunnel: cmd == 1,
        },
        end,
    )
}

/// A NUL-terminated string of at most 255 bytes at `at`: (bytes, index
/// after the NUL).
fn cstring(b: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = b.get(at..)?;
    let n = rest.iter().take(256).position(|&c| c == 0)?;
    Some((&rest[..n], at + n + 1))
}

/// `CONNECT host:port HTTP/1.x`, header lines, blank line.
fn http_connect(b: &[u8]) -> Parse<ProxyRequest> {
    const M: &[u8] = b"CONNECT ";
    if let Some(no) = super::expect_method(b, M) {
        return no;
    }
    let Some(line_end) = super::find(b, b"\r\n") else {
        return if b.len() > 1024 {
            Parse::No
        } else {
            Parse::NeedMore
        };
    };
    let line = &b[M.len()..line_end];
    let Some(sp) = line.iter().position(|&c| c == b' ') else {
        return Parse::No;
    };
    if !line[sp + 1..].starts_with(b"HTTP/1.") {
        return Parse::No;
    }
    let Some(dest) = authority(&line[..sp]) else {
        return Parse::No;
    };
    let auth = super::header_lines(b).any(|(k, _)| k.eq_ignore_ascii_case(b"proxy-authorization"));
    let req = ProxyRequest {
        kind: ProxyKind::HttpConnect,
        dest,
        auth,
        tunnel: true,
    };
    // The request line alone (`\r\n\r\n` right after it) is a valid head.
    match super::find(&b[line_end..], b"\r\n\r\n") {
        Some(i) => Parse::Done(req, line_end + i + 4),
        None if b.len() > MAX_CONNECT_HEAD => Parse::No,
        None => Parse::Partial(req),
    }
}

/// `host:port` or `[v6]:port` of a CONNECT request line.
fn authority(a: &[u8]) -> Option<Destination> {
    let text = std::str::from_utf8(a).ok()?;
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (h, p) = rest.split_once("]:")?;
        (Host::Ip(IpAddr::V6(h.parse().ok()?)), p)
    } else {
        let (h, p) = text.rsplit_once(':')?;
        let host = match h.parse::<Ipv4Addr>() {
            Ok(ip) => Host::Ip(IpAddr::V4(ip)),
            Err(_) => host_name(h.as_bytes())?,
        };
        (host, p)
    };
    let port: u16 = port.parse().ok()?;
    (port != 0).then_some(Destination { host, port })
}

/// A host name as a proxy would resolve it (letters, digits, `-._`), or an
/// IP literal sent as a name.
fn host_name(n: &[u8]) -> Option<Host> {
    if n.is_empty()
        || n.len() > 255
        || !n
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b':'))
    {
        return None;
    }
    let s = String::from_utf8_lossy(n).to_ascii_lowercase();
    Some(match s.parse::<IpAddr>() {
        Ok(ip) => Host::Ip(ip),
        Err(_) => Host::Name(s.trim_end_matches('.').to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_handshake_shape() {
        let v4 = |a, b, c, d, p| Destination {
            host: Host::Ip(IpAddr::V4(Ipv4Addr::new(a, b, c, d))),
            port: p,
        };
        let name = |n: &str, p| Destination {
            host: Host::Name(n.into()),
            port: p,
        };
        let socks5_name = [
            &[5u8, 1, 0][..],
            &[5, 1, 0, 3, 19],
            b"pool.supportxmr.com",
            &[0x0d, 0x05],
        ]
        .concat();
        let socks5_auth = [
            &[5u8, 2, 0, 2][..],
            &[1, 3],
            b"bob",
            &[2],
            b"pw",
            &[5, 1, 0, 1, 10, 0, 0, 7, 0x0d, 0x05],
        ]
        .concat();
        let socks4a = [
            &[4u8, 1, 0x0d, 0x05, 0, 0, 0, 1][..],
            b"\0",
            b"pool.example\0",
        ]
        .concat();
        let cases: Vec<(&str, Vec<u8>, Parse<ProxyRequest>)> = vec![
            (
                "socks5 ipv4",
                vec![5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0x0d, 0x05],
                Parse::Done(
                    ProxyRequest {
                        kind: ProxyKind::Socks5,
                        dest: v4(127, 0, 0, 1, 3333),
                        auth: false,
                        tunnel: true,
                    },
                    13,
                ),
            ),
            (
                "socks5 domain",
                socks5_name.clone(),
                Parse::Done(
                    ProxyRequest {
                        kind: ProxyKind::Socks5,
                        dest: name("pool.supportxmr.com", 3333),
                        auth: false,
                        tunnel: true,
                    },
                    socks5_name.len(),
                ),
            ),
            (
                "socks5 user/password",
                socks5_auth.clone(),
                Parse::Done(
                    ProxyRequest {
                        kind: ProxyKind::Socks5,
                        dest: v4(10, 0, 0, 7, 3333),
                        auth: true,
                        tunnel: true,
                    },
                    socks5_auth.len(),
                ),
            ),
            ("socks5 greeting alone", vec![5, 1, 0], Parse::NeedMore),
            ("socks5 bad method", vec![5, 1, 0xff], Parse::No),
            ("socks5 bad request", vec![5, 1, 0, 5, 9, 0, 1], Parse::No),
            (
                "socks4",
                [&[4u8, 1, 0x11, 0x5c, 192, 0, 2, 1][..], b"\0"].concat(),
                Parse::Done(
                    ProxyRequest {
                        kind: ProxyKind::Socks4,
                        dest: v4(192, 0, 2, 1, 4444),
                        auth: false,
                        tunnel: true,
                    },
                    9,
                ),
            ),
            (
                "socks4a",
                socks4a.clone(),
                Parse::Done(
                    ProxyRequest {
                        kind: ProxyKind::Socks4a,
                        dest: name("pool.example", 3333),
                        auth: false,
                        tunnel: true,
                    },
                    socks4a.len(),
                ),
            ),
            (
                "socks4 user id cut",
                vec![4, 1, 0, 80, 1, 2, 3, 4, b'a'],
                Parse::NeedMore,
            ),
            (
                "http connect",
                b"CONNECT pool.example:3333 HTTP/1.1\r\nHost: pool.example:3333\r\n\r\n".to_vec(),
                Parse::Done(
                    ProxyRequest {
                        kind: ProxyKind::HttpConnect,
                        dest: name("pool.example", 3333),
                        auth: false,
                        tunnel: true,
                    },
                    63,
                ),
            ),
            (
                "http connect ipv6 with auth, head cut",
                b"CONNECT [2001:db8::7]:443 HTTP/1.1\r\nProxy-Authorization: Basic eDp5\r\nUser-Ag"
                    .to_vec(),
                Parse::Partial(ProxyRequest {
                    kind: ProxyKind::HttpConnect,
                    dest: Destination {
                        host: Host::Ip("2001:db8::7".parse().unwrap()),
                        port: 443,
                    },
                    auth: true,
                    tunnel: true,
                }),
            ),
            ("http connect cut early", b"CONNE".to_vec(), Parse::NeedMore),
            (
                "http connect without port",
                b"CONNECT example.com HTTP/1.1\r\n\r\n".to_vec(),
                Parse::No,
            ),
            ("plain get", b"GET / HTTP/1.1\r\n\r\n".to_vec(), Parse::No),
            ("json", br#"{"id":1}"#.to_vec(), Parse::No),
        ];
        for (what, bytes, want) in cases {
            assert_eq!(parse(&bytes), want, "case: {what}");
        }
    }

    #[test]
    fn destinations_print_like_endpoints() {
        let d = Destination {
            host: Host::Ip("2001:db8::1".parse().unwrap()),
            port: 3333,
        };
        assert_eq!(d.to_string(), "[2001:db8::1]:3333");
        let d = Destination {
            host: Host::Name("pool.example".into()),
            port: 80,
        };
        assert_eq!(d.to_string(), "pool.example:80");
    }

    /// The bytes XMRig 6.16.0 sent to our `socks_proxy --capture` as its
    /// SOCKS5 proxy (`"socks5": "127.0.0.1:PORT"`, pool `127.0.0.1:45409`),
    /// captured on this machine: greeting, then (after our `05 00`) the
    /// request with an IPv4 address.
    const XMRIG_SOCKS5_GREETING: &[u8] = &[0x05, 0x01, 0x00];
    const XMRIG_SOCKS5_REQUEST: &[u8] = &[0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, 0xb1, 0x61];

    #[test]
    fn parses_xmrig_socks5_capture() {
        let b = [XMRIG_SOCKS5_GREETING, XMRIG_SOCKS5_REQUEST].concat();
        let Parse::Done(req, n) = parse(&b) else {
            panic!("not parsed: {:?}", parse(&b));
        };
        assert_eq!(n, b.len());
        assert_eq!(req.dest.to_string(), "127.0.0.1:45409");
        assert_eq!(parse(XMRIG_SOCKS5_GREETING), Parse::NeedMore);
    }
}
