//! Loopback connect storm for benchmarks: `COUNT` TCP connects (each sends a
//! few bytes and closes) to a listener in this process. Prints connects/s.

use std::{
    io::Write,
    net::{TcpListener, TcpStream},
    time::Instant,
};

fn main() {
    let count: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let Ok(listener) = TcpListener::bind("127.0.0.1:0") else {
        std::process::exit(2)
    };
    let Ok(addr) = listener.local_addr() else {
        std::process::exit(2)
    };
    let acceptor = std::thread::spawn(move || {
        for _ in 0..count {
            if listener.accept().is_err() {
                break;
            }
        }
    });
    let t0 = Instant::now();
    for _ in 0..count {
        if let Ok(mut s) = TcpStream::connect(addr) {
            let _ = s.write_all(b"ping\n");
        }
    }
    let _ = acceptor.join();
    println!("{:.0}", count as f64 / t0.elapsed().as_secs_f64());
}
