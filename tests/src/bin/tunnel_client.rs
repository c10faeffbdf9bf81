//! A client behind a proxy for the end-to-end tests: opens a tunnel through
//! HTTP `CONNECT`, SOCKS4, SOCKS4a or SOCKS5 (XMRig itself only speaks
//! SOCKS5), or connects directly (`--proxy none`), then speaks the XMRig
//! login and shares, Stratum v1, plain HTTP, or TLS without ALPN (a
//! ClientHello, then a small record every second), while hashing on
//! `--threads` cores. Stands in for a miner (or, with `--proto http|tls`,
//! for a busy service behind a corporate proxy or holding a TLS session);
//! nothing in minerwatch keys on it. Bounded in time.
//!
//! Usage: tunnel_client --via HOST:PORT --to HOST:PORT
//!        [--proxy connect|socks4|socks4a|socks5|none]
//!        [--proto xmrig|stratum|http|tls] [--threads N] [--seconds S]

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{Ipv4Addr, TcpStream},
    time::{Duration, Instant},
};

use sha2::{Digest, Sha256};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |k: &str| minerwatch_tests::flag(&args, k);
    let (Some(via), Some(to)) = (get("--via"), get("--to")) else {
        eprintln!("tunnel_client: --via and --to are required");
        std::process::exit(2);
    };
    let proxy = get("--proxy").unwrap_or_else(|| "connect".into());
    let proto = get("--proto").unwrap_or_else(|| "xmrig".into());
    let secs: f64 = get("--seconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(20.0f64)
        .clamp(0.0, 600.0);
    let threads: usize = get("--threads")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .clamp(1, 64);
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    // Like a miner: reach the pool first, then hash.
    let conn = TcpStream::connect(&via).and_then(|s| tunnel(s, &proxy, &to));
    let hashers: Vec<_> = (0..threads)
        .map(|_| std::thread::spawn(move || hash(deadline)))
        .collect();
    match conn {
        Ok(s) => talk(s, &proto, &to, deadline),
        Err(e) => eprintln!("tunnel_client: {e}"),
    }
    for h in hashers {
        let _ = h.join();
    }
}

fn err(msg: String) -> std::io::Error {
    std::io::Error::other(msg)
}

fn tunnel(mut s: TcpStream, proxy: &str, to: &str) -> std::io::Result<TcpStream> {
    let _ = s.set_nodelay(true);
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let (host, port) = to
        .rsplit_once(':')
        .ok_or_else(|| err(format!("{to}: no port")))?;
    let port: u16 = port.parse().map_err(|_| err(format!("{to}: bad port")))?;
    match proxy {
        "none" => {}
        "connect" => {
            // One write, as a buffered HTTP client sends its request head.
            let head = format!(
                "CONNECT {to} HTTP/1.1\r\nHost: {to}\r\nUser-Agent: tunnel-client/1.0\r\nProxy-Connection: Keep-Alive\r\n\r\n"
            );
            s.write_all(head.as_bytes())?;
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
                s.read_exact(&mut b)?;
                head.push(b[0]);
            }
            if !head.starts_with(b"HTTP/1.1 200") {
                return Err(err("CONNECT refused".into()));
            }
        }
        "socks4" | "socks4a" => {
            let mut req = vec![4, 1];
            req.extend_from_slice(&port.to_be_bytes());
            if proxy == "socks4" {
                let ip: Ipv4Addr = host
                    .parse()
                    .map_err(|_| err(format!("{host}: SOCKS4 needs an IPv4 address")))?;
                req.extend_from_slice(&ip.octets());
                req.extend_from_slice(b"rig\0");
            } else {
                req.extend_from_slice(&[0, 0, 0, 1]);
                req.extend_from_slice(b"rig\0");
                req.extend_from_slice(host.as_bytes());
                req.push(0);
            }
            s.write_all(&req)?;
            let mut r = [0u8; 8];
            s.read_exact(&mut r)?;
            if r[1] != 0x5a {
                return Err(err("SOCKS4 refused".into()));
            }
        }
        "socks5" => {
            s.write_all(&[5, 1, 0])?;
            let mut r = [0u8; 2];
            s.read_exact(&mut r)?;
            let mut req = vec![5, 1, 0, 3, host.len() as u8];
            req.extend_from_slice(host.as_bytes());
            req.extend_from_slice(&port.to_be_bytes());
            s.write_all(&req)?;
            let mut r = [0u8; 10];
            s.read_exact(&mut r)?;
            if r[1] != 0 {
                return Err(err("SOCKS5 refused".into()));
            }
        }
        other => return Err(err(format!("unknown proxy kind {other}"))),
    }
    Ok(s)
}

fn talk(mut s: TcpStream, proto: &str, to: &str, deadline: Instant) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let first = match proto {
        "stratum" => concat!(
            r#"{"id": 1, "method": "mining.subscribe", "params": ["cpuminer-opt/3.23.4"]}"#,
            "\n",
            r#"{"id": 2, "method": "mining.authorize", "params": ["worker1.rig", "x"]}"#,
            "\n"
        )
        .to_owned(),
        "http" => format!("GET /v1/status HTTP/1.1\r\nHost: {to}\r\nAccept: */*\r\n\r\n"),
        "tls" => {
            if s.write_all(&client_hello()).is_err() {
                return;
            }
            String::new()
        }
        _ => concat!(
            r#"{"id":1,"jsonrpc":"2.0","method":"login","params":{"login":"44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A","pass":"x","agent":"XMRig/6.16.0 (Linux x86_64) libuv/1.42.0 gcc/5.4.0","algo":["rx/0","cn/r"]}}"#,
            "\n"
        )
        .to_owned(),
    };
    if s.write_all(first.as_bytes()).is_err() {
        return;
    }
    let Ok(rc) = s.try_clone() else { return };
    let mut reader = BufReader::new(rc);
    let mut line = String::new();
    let mut id = 10;
    let mut last = Instant::now();
    while Instant::now() < deadline {
        line.clear();
        let _ = reader.read_line(&mut line);
        if last.elapsed() < Duration::from_secs(2) {
            continue;
        }
        last = Instant::now();
        id += 1;
        if proto == "tls" {
            // An application-data record of 32 bytes: a heartbeat.
            let mut rec = vec![0x17, 0x03, 0x03, 0x00, 0x20];
            rec.extend((0..32u8).map(|i| i.wrapping_mul(id as u8)));
            if s.write_all(&rec).is_err() {
                return;
            }
            continue;
        }
        let next = match proto {
            "http" => format!("GET /v1/status?n={id} HTTP/1.1\r\nHost: {to}\r\n\r\n"),
            "stratum" => format!(
                "{{\"id\": {id}, \"method\": \"mining.submit\", \"params\": [\"worker1.rig\", \"1\", \"00000000\", \"504e86b9\", \"{id:08x}\"]}}\n"
            ),
            _ => format!(
                "{{\"id\":{id},\"jsonrpc\":\"2.0\",\"method\":\"submit\",\"params\":{{\"id\":\"sess1\",\"job_id\":\"1\",\"nonce\":\"{id:08x}\",\"result\":\"e1364b8782719d7683e2ccd3d8f724bc59dfa780a9e960e7c0e0046acdb40100\"}}}}\n"
            ),
        };
        if s.write_all(next.as_bytes()).is_err() {
            return;
        }
    }
}

/// A TLS 1.2/1.3 ClientHello with a server name and no ALPN.
fn client_hello() -> Vec<u8> {
    let sni = b"api.internal.example";
    let mut ext = Vec::new();
    let mut sn = vec![0x00];
    sn.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    sn.extend_from_slice(sni);
    ext.extend_from_slice(&[0x00, 0x00]);
    ext.extend_from_slice(&((sn.len() + 2) as u16).to_be_bytes());
    ext.extend_from_slice(&(sn.len() as u16).to_be_bytes());
    ext.extend_from_slice(&sn);
    ext.extend_from_slice(&[0x00, 0x2b, 0x00, 0x05, 0x04, 0x03, 0x04, 0x03, 0x03]);
    let mut body = vec![0x03, 0x03];
    body.extend((0..32u8).map(|i| i.wrapping_mul(91)));
    body.push(0);
    body.extend_from_slice(&[0x00, 0x04, 0x13, 0x01, 0xc0, 0x2f, 0x01, 0x00]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![0x01];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 0x03, 0x01];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

/// Real work on one core until the deadline.
fn hash(deadline: Instant) -> u64 {
    let mut nonce = 0u64;
    while Instant::now() < deadline {
        for _ in 0..1024 {
            let d = Sha256::digest(nonce.to_le_bytes());
            nonce = nonce.wrapping_add(1 + (d[0] as u64 & 1));
        }
    }
    nonce
}
