//! A busy network client that is not a miner: connects, sends the bytes it
//! is given (a TLS ClientHello, an unknown binary protocol, an application
//! login), keeps the connection and burns CPU on every requested thread.
//! The look-alike the response must at most block, never kill.
//!
//! Usage: busy_client --connect HOST:PORT (--send TEXT | --send-hex HEX)
//!        [--seconds S] [--threads N]

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |k: &str| minerwatch_tests::flag(&args, k);
    let seconds: f64 = get("--seconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0f64)
        .clamp(0.0, 600.0);
    let threads: usize = get("--threads")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .clamp(1, 16);
    let bytes: Vec<u8> = match (get("--send"), get("--send-hex")) {
        (Some(t), _) => t.into_bytes(),
        (None, Some(h)) => (0..h.len() / 2)
            .filter_map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).ok())
            .collect(),
        (None, None) => Vec::new(),
    };
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let conn = get("--connect").and_then(|a| TcpStream::connect(a).ok());
    if let Some(mut c) = conn {
        let _ = c.write_all(&bytes);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = c.read(&mut buf) {
                if n == 0 {
                    break;
                }
            }
        });
    } else {
        eprintln!("busy_client: no connection");
    }
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                let mut x = 0x9e37_79b9_7f4a_7c15u64;
                while Instant::now() < deadline {
                    for _ in 0..10_000 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                    }
                }
                x
            })
        })
        .collect();
    let mut total = 0u64;
    for w in workers {
        total = total.wrapping_add(w.join().unwrap_or(0));
    }
    println!("{total}");
}
