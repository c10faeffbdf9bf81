//! A loopback WebSocket server for the end-to-end tests. `--mode pool`
//! answers the XMRig/Monero JSON-RPC (`login`, `submit`, `keepalived`) and
//! Stratum v1 inside WebSocket text frames, as the pool proxies of browser
//! and Node.js miners do; `--mode service` is an ordinary JSON-over-
//! WebSocket API (a price feed) that answers any request with a result.
//! RFC 6455 handshake (`Sec-WebSocket-Accept`), masked client frames,
//! unmasked server frames. Bounded in time.
//!
//! Usage: ws_pool [--addr 127.0.0.1:0] [--seconds 60] [--mode pool|service];
//!        prints the bound port on stdout.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

const BLOB: &str = "1010e0c8d7a306a8b6c1f2d3e4f50617283940a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4000000005f4e3d2c1b0a99887766554433221100ffeeddccbbaa9988776655443322110001";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |k: &str| minerwatch_tests::flag(&args, k);
    let (addr, secs) = minerwatch_tests::listen_flags(&args);
    let pool = get("--mode").as_deref() != Some("service");
    minerwatch_tests::serve_clients(
        "ws_pool",
        &addr,
        secs,
        Duration::from_millis(500),
        move |s, deadline| serve(s, pool, deadline),
    );
}

fn serve(mut s: TcpStream, pool: bool, deadline: Instant) {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 || Instant::now() > deadline || s.read_exact(&mut b).is_err() {
            return;
        }
        head.push(b[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let Some(key) = text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("sec-websocket-key")
            .then(|| v.trim().to_owned())
    }) else {
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        return;
    };
    let accept = base64(&sha1(
        format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes(),
    ));
    let reply = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    if s.write_all(reply.as_bytes()).is_err() {
        return;
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut job = 0u64;
    while Instant::now() < deadline {
        match s.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if minerwatch_tests::timed_out(&e) => {
                continue;
            }
            Err(_) => return,
        }
        while let Some((opcode, payload, used)) = frame(&buf) {
            buf.drain(..used);
            if opcode == 0x8 {
                return;
            }
            let Ok(req) = serde_json::from_slice::<serde_json::Value>(&payload) else {
                continue;
            };
            job += 1;
            let id = req.get("id").cloned().unwrap_or(serde_json::Value::Null);
            let method = req.get("method").and_then(|m| m.as_str()).unwrap_or("");
            let answer = if pool {
                match method {
                    "login" => format!(
                        r#"{{"id":{id},"jsonrpc":"2.0","error":null,"result":{{"id":"ws1","job":{{"blob":"{BLOB}","job_id":"{job}","target":"ffffff0f","algo":"rx/0","seed_hash":"3b2d6e8fa1c94b7d2e5f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5"}},"status":"OK"}}}}"#
                    ),
                    "mining.subscribe" => format!(
                        r#"{{"id":{id},"result":[[["mining.notify","ae68"]],"08000002",4],"error":null}}"#
                    ),
                    _ => format!(
                        r#"{{"id":{id},"jsonrpc":"2.0","error":null,"result":{{"status":"OK"}}}}"#
                    ),
                }
            } else {
                format!(
                    r#"{{"jsonrpc":"2.0","id":{id},"result":{{"symbol":"ACME","price":{}.25}}}}"#,
                    100 + job
                )
            };
            if s.write_all(&server_frame(answer.as_bytes())).is_err() {
                return;
            }
        }
    }
}

/// One complete client frame at the start of `b`: (opcode, unmasked
/// payload, bytes used).
fn frame(b: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    let b0 = *b.first()?;
    let b1 = *b.get(1)?;
    let (len, mut at) = match b1 & 0x7f {
        126 => (u16::from_be_bytes([*b.get(2)?, *b.get(3)?]) as usize, 4),
        127 => {
            let mut a = [0u8; 8];
            a.copy_from_slice(b.get(2..10)?);
            (usize::try_from(u64::from_be_bytes(a)).ok()?, 10)
        }
        n => (n as usize, 2),
    };
    let key = if b1 & 0x80 != 0 {
        let k = b.get(at..at + 4)?;
        at += 4;
        Some([k[0], k[1], k[2], k[3]])
    } else {
        None
    };
    let mut payload = b.get(at..at.checked_add(len)?)?.to_vec();
    if let Some(k) = key {
        for (i, c) in payload.iter_mut().enumerate() {
            *c ^= k[i % 4];
        }
    }
    Some((b0 & 0x0f, payload, at + len))
}

fn server_frame(p: &[u8]) -> Vec<u8> {
    let mut f = vec![0x81];
    if p.len() < 126 {
        f.push(p.len() as u8);
    } else {
        f.push(126);
        f.extend_from_slice(&(p.len() as u16).to_be_bytes());
    }
    f.extend_from_slice(p);
    f
}

/// SHA-1 (FIPS 180-4), for `Sec-WebSocket-Accept` only.
fn sha1(msg: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut m = msg.to_vec();
    m.push(0x80);
    while m.len() % 64 != 56 {
        m.push(0);
    }
    m.extend_from_slice(&((msg.len() as u64) * 8).to_be_bytes());
    for block in m.chunks(64) {
        let mut w = [0u32; 80];
        for i in 0..16 {
            w[i] = u32::from_be_bytes([
                block[4 * i],
                block[4 * i + 1],
                block[4 * i + 2],
                block[4 * i + 3],
            ]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, x) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

fn base64(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
