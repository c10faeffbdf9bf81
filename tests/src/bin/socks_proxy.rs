//! A loopback proxy for the end-to-end tests: SOCKS5 (no auth, or RFC 1929
//! username/password with `--auth USER:PASS`), SOCKS4, SOCKS4a and HTTP
//! `CONNECT`, told apart by the client's first byte. Destinations must
//! resolve to loopback addresses (anything else is refused); bounded in
//! time. With `--capture FILE`, appends one line per connection: the
//! handshake bytes the client sent and the first tunnelled bytes, in hex
//! (how the unit tests' real captures of XMRig were made).
//!
//! Usage: socks_proxy [--addr 127.0.0.1:0] [--seconds 60] [--auth U:P]
//!        [--capture FILE]; prints the bound port on stdout.

use std::{
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpStream, ToSocketAddrs},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

type Capture = Arc<Mutex<Option<std::fs::File>>>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |k: &str| minerwatch_tests::flag(&args, k);
    let (addr, secs) = minerwatch_tests::listen_flags(&args);
    let auth: Option<(String, String)> =
        get("--auth").and_then(|a| a.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())));
    let capture: Capture = Arc::new(Mutex::new(minerwatch_tests::append_file(get("--capture"))));
    minerwatch_tests::serve_clients(
        "socks_proxy",
        &addr,
        secs,
        Duration::from_secs(5),
        move |client, deadline| {
            let mut seen = Vec::new();
            match handshake(&client, auth.as_ref(), &mut seen) {
                Ok(upstream) => relay(client, upstream, deadline, &capture, seen),
                Err(e) => eprintln!("socks_proxy: {e}"),
            }
        },
    );
}

/// Reads exactly `n` bytes, keeping a copy in `seen`.
fn read_n(mut s: &TcpStream, n: usize, seen: &mut Vec<u8>) -> std::io::Result<Vec<u8>> {
    let mut b = vec![0u8; n];
    s.read_exact(&mut b)?;
    seen.extend_from_slice(&b);
    Ok(b)
}

fn refuse(msg: &str) -> std::io::Error {
    std::io::Error::other(msg.to_owned())
}

/// Connects to `host:port` if it is a loopback address.
fn upstream(host: &str, port: u16) -> std::io::Result<TcpStream> {
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
    let mut last = refuse(&format!("{host}:{port} is not loopback; refused"));
    // `localhost` may be ::1 and 127.0.0.1: try each.
    for a in addrs.into_iter().filter(|a| a.ip().is_loopback()) {
        match TcpStream::connect_timeout(&a, Duration::from_secs(5)) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn handshake(
    c: &TcpStream,
    auth: Option<&(String, String)>,
    seen: &mut Vec<u8>,
) -> std::io::Result<TcpStream> {
    let first = read_n(c, 1, seen)?[0];
    let mut w = c;
    match first {
        5 => {
            let n = read_n(c, 1, seen)?[0] as usize;
            let methods = read_n(c, n, seen)?;
            let method = match auth {
                Some(_) if methods.contains(&2) => 2,
                None if methods.contains(&0) => 0,
                _ => 0xff,
            };
            w.write_all(&[5, method])?;
            if method == 0xff {
                return Err(refuse("no acceptable SOCKS5 method"));
            }
            if let Some((user, pass)) = auth {
                let h = read_n(c, 2, seen)?;
                let u = read_n(c, h[1] as usize, seen)?;
                let pl = read_n(c, 1, seen)?[0] as usize;
                let p = read_n(c, pl, seen)?;
                let ok = u == user.as_bytes() && p == pass.as_bytes();
                w.write_all(&[1, if ok { 0 } else { 1 }])?;
                if !ok {
                    return Err(refuse("bad SOCKS5 credentials"));
                }
            }
            let req = read_n(c, 4, seen)?;
            if req[1] != 1 {
                w.write_all(&[5, 7, 0, 1, 0, 0, 0, 0, 0, 0])?;
                return Err(refuse("only CONNECT"));
            }
            let host = match req[3] {
                1 => {
                    let a = read_n(c, 4, seen)?;
                    Ipv4Addr::new(a[0], a[1], a[2], a[3]).to_string()
                }
                3 => {
                    let n = read_n(c, 1, seen)?[0] as usize;
                    String::from_utf8_lossy(&read_n(c, n, seen)?).into_owned()
                }
                4 => {
                    let a = read_n(c, 16, seen)?;
                    let mut o = [0u8; 16];
                    o.copy_from_slice(&a);
                    IpAddr::from(o).to_string()
                }
                _ => return Err(refuse("bad address type")),
            };
            let p = read_n(c, 2, seen)?;
            let port = u16::from_be_bytes([p[0], p[1]]);
            match upstream(&host, port) {
                Ok(up) => {
                    w.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0])?;
                    Ok(up)
                }
                Err(e) => {
                    w.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0])?;
                    Err(e)
                }
            }
        }
        4 => {
            let h = read_n(c, 7, seen)?;
            let port = u16::from_be_bytes([h[1], h[2]]);
            let ip = Ipv4Addr::new(h[3], h[4], h[5], h[6]);
            read_cstr(c, seen)?; // user id
            let host = if ip.octets()[..3] == [0, 0, 0] && ip.octets()[3] != 0 {
                read_cstr(c, seen)? // SOCKS4a
            } else {
                ip.to_string()
            };
            match upstream(&host, port) {
                Ok(up) => {
                    w.write_all(&[0, 0x5a, h[1], h[2], h[3], h[4], h[5], h[6]])?;
                    Ok(up)
                }
                Err(e) => {
                    w.write_all(&[0, 0x5b, 0, 0, 0, 0, 0, 0])?;
                    Err(e)
                }
            }
        }
        b'C' => {
            // The request head, byte by byte up to the blank line.
            while !seen.ends_with(b"\r\n\r\n") {
                if seen.len() > 8192 {
                    return Err(refuse("CONNECT head too long"));
                }
                read_n(c, 1, seen)?;
            }
            let head = String::from_utf8_lossy(seen).into_owned();
            let target = head
                .split_whitespace()
                .nth(1)
                .ok_or_else(|| refuse("bad CONNECT line"))?;
            let (host, port) = target
                .rsplit_once(':')
                .ok_or_else(|| refuse("CONNECT without port"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let port: u16 = port.parse().map_err(|_| refuse("bad port"))?;
            match upstream(host, port) {
                Ok(up) => {
                    w.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
                    Ok(up)
                }
                Err(e) => {
                    w.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")?;
                    Err(e)
                }
            }
        }
        _ => Err(refuse("not a proxy handshake")),
    }
}

fn read_cstr(c: &TcpStream, seen: &mut Vec<u8>) -> std::io::Result<String> {
    let mut out = Vec::new();
    loop {
        let b = read_n(c, 1, seen)?[0];
        if b == 0 {
            return Ok(String::from_utf8_lossy(&out).into_owned());
        }
        if out.len() > 255 {
            return Err(refuse("string too long"));
        }
        out.push(b);
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Copies both ways until either side closes or the deadline.
fn relay(
    client: TcpStream,
    up: TcpStream,
    deadline: Instant,
    capture: &Capture,
    handshake: Vec<u8>,
) {
    let _ = client.set_read_timeout(Some(Duration::from_millis(200)));
    let _ = up.set_read_timeout(Some(Duration::from_millis(200)));
    let (Ok(c2), Ok(u2)) = (client.try_clone(), up.try_clone()) else {
        return;
    };
    let back = std::thread::spawn(move || copy(u2, c2, deadline, None));
    let first = copy(client, up, deadline, Some(2048));
    let _ = back.join();
    if let Ok(mut g) = capture.lock()
        && let Some(f) = g.as_mut()
    {
        let _ = writeln!(f, "handshake={} tunnel={}", hex(&handshake), hex(&first));
    }
}

/// Copies `from` → `to`; returns the first `keep` bytes copied.
fn copy(mut from: TcpStream, mut to: TcpStream, deadline: Instant, keep: Option<usize>) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while Instant::now() < deadline {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if let Some(k) = keep {
                    let room = k.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if minerwatch_tests::timed_out(&e) => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    kept
}
