//! Bulk loopback transfer for benchmarks: `MIB` MiB from a connecting
//! socket to an accepted one, then `MIB` MiB back the other way, so both a
//! flow the agent saw open (the connect) and one it did not (the accepted
//! socket) carry bulk data. Prints MiB/s over both directions.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    time::Instant,
};

const CHUNK: usize = 256 * 1024;

fn send(s: &mut TcpStream, bytes: u64) -> std::io::Result<()> {
    let buf = vec![0x5au8; CHUNK];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        s.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

fn recv(s: &mut TcpStream, bytes: u64) -> std::io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut left = bytes;
    while left > 0 {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        left = left.saturating_sub(n as u64);
    }
    Ok(())
}

fn main() {
    let mib: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let bytes = mib * 1024 * 1024;
    let Ok(listener) = TcpListener::bind("127.0.0.1:0") else {
        std::process::exit(2)
    };
    let Ok(addr) = listener.local_addr() else {
        std::process::exit(2)
    };
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        recv(&mut s, bytes)?;
        send(&mut s, bytes)
    });
    let t0 = Instant::now();
    let client = TcpStream::connect(addr).and_then(|mut s| {
        send(&mut s, bytes)?;
        recv(&mut s, bytes)
    });
    let served = server
        .join()
        .unwrap_or_else(|_| Err(std::io::ErrorKind::Other.into()));
    if let Err(e) = client.and(served) {
        eprintln!("bulkxfer: {e}");
        std::process::exit(1);
    }
    println!("{:.0}", (2 * mib) as f64 / t0.elapsed().as_secs_f64());
}
