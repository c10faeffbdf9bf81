//! A simulated miner for the end-to-end tests: connects to a pool, speaks
//! Stratum v1 or the XMRig/Monero JSON-RPC (or opens with a TLS
//! ClientHello), and hashes for real (SHA-256 on every requested thread).
//! Bounded in time. It stands in for real miners; nothing in minerwatch may
//! key on its name, strings or timing.
//!
//! Usage: fake_miner --pool HOST:PORT [--proto stratum|xmrig|tls|none]
//!        [--threads N] [--duty PERCENT] [--seconds S] [--workers N]
//!        [--daemonize] [--delay-connect-ms MS]

use std::{
    io::{BufRead, BufReader, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use sha2::{Digest, Sha256};

struct Opts {
    pool: Option<String>,
    proto: String,
    threads: usize,
    duty: u32,
    seconds: f64,
    workers: usize,
    daemonize: bool,
    delay_connect_ms: u64,
}

fn opts() -> Opts {
    // args_os: a hostile miner's argv need not be UTF-8 (tests/hostile.rs).
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let get = |k: &str| minerwatch_tests::flag(&args, k);
    Opts {
        pool: get("--pool"),
        proto: get("--proto").unwrap_or_else(|| "xmrig".into()),
        threads: get("--threads")
            .and_then(|s| s.parse().ok())
            .unwrap_or(1)
            .clamp(1, 64),
        duty: get("--duty")
            .and_then(|s| s.parse().ok())
            .unwrap_or(100)
            .clamp(1, 100),
        seconds: get("--seconds")
            .and_then(|s| s.parse().ok())
            .unwrap_or(20.0f64)
            .clamp(0.0, 600.0),
        workers: get("--workers")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
            .min(16),
        daemonize: args.iter().any(|a| a == "--daemonize"),
        delay_connect_ms: get("--delay-connect-ms")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
    }
}

fn main() {
    let o = opts();
    let deadline = Instant::now() + Duration::from_secs_f64(o.seconds);
    if o.daemonize {
        // Double fork: the original and the middle process exit, the
        // grandchild is re-parented and does the work.
        // SAFETY: fork in a single-threaded process; children only call
        // async-signal-safe functions before continuing as a normal program.
        unsafe {
            match libc::fork() {
                -1 => std::process::exit(2),
                0 => {}
                _ => libc::_exit(0),
            }
            libc::setsid();
            match libc::fork() {
                -1 => libc::_exit(2),
                0 => {}
                _ => libc::_exit(0),
            }
        }
    }
    // Worker processes: fork before any thread exists; they only hash.
    for _ in 0..o.workers {
        // SAFETY: as above, single-threaded at this point.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            hash_threads(o.threads, o.duty, deadline);
            // SAFETY: ends the worker without running the parent's atexit.
            unsafe { libc::_exit(0) };
        }
    }
    if o.delay_connect_ms > 0 {
        std::thread::sleep(Duration::from_millis(o.delay_connect_ms));
    }
    let conn = o.pool.as_deref().and_then(|p| TcpStream::connect(p).ok());
    let proto = o.proto.clone();
    let session = conn.map(|c| std::thread::spawn(move || talk(c, &proto, deadline)));
    if o.workers == 0 {
        hash_threads(o.threads, o.duty, deadline);
    } else {
        // The holder of the pool connection idles; workers hash.
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    if let Some(s) = session {
        let _ = s.join();
    }
    // SAFETY: reap worker processes.
    unsafe { while libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) > 0 {} };
}

fn hash_threads(threads: usize, duty: u32, deadline: Instant) {
    let hs: Vec<_> = (0..threads)
        .map(|i| std::thread::spawn(move || hash(i as u64, duty, deadline)))
        .collect();
    let mut n = 0u64;
    for h in hs {
        n += h.join().unwrap_or(0);
    }
    eprintln!("fake_miner: {n} hashes");
}

/// Real work: SHA-256 over a nonce, duty-cycled in 100 ms periods.
fn hash(seed: u64, duty: u32, deadline: Instant) -> u64 {
    let mut count = 0u64;
    let mut nonce = seed << 32;
    let period = Duration::from_millis(100);
    let busy = period * duty / 100;
    while Instant::now() < deadline {
        let start = Instant::now();
        while start.elapsed() < busy {
            for _ in 0..256 {
                let d = Sha256::digest(nonce.to_le_bytes());
                nonce = nonce.wrapping_add(1 + (d[0] as u64 & 1));
                count += 1;
            }
        }
        if duty < 100 {
            std::thread::sleep(period - busy);
        }
    }
    count
}

fn talk(mut c: TcpStream, proto: &str, deadline: Instant) {
    let _ = c.set_read_timeout(Some(Duration::from_millis(500)));
    let lines: Vec<String> = match proto {
        "stratum" => vec![
            r#"{"id": 1, "method": "mining.subscribe", "params": ["cpuminer-opt/3.23.4"]}"#.into(),
            r#"{"id": 2, "method": "mining.authorize", "params": ["worker1.rig", "x"]}"#.into(),
        ],
        "xmrig" => vec![
            r#"{"id":1,"jsonrpc":"2.0","method":"login","params":{"login":"44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A","pass":"x","agent":"XMRig/6.21.0 (Linux x86_64) libuv/1.44.2 gcc/11.4.0","algo":["rx/0","cn/r","cn/2"]}}"#.into(),
        ],
        "tls" => {
            let _ = c.write_all(&client_hello());
            vec![]
        }
        _ => vec![],
    };
    for l in &lines {
        if c.write_all(format!("{l}\n").as_bytes()).is_err() {
            return;
        }
    }
    let Ok(rc) = c.try_clone() else { return };
    let mut reader = BufReader::new(rc);
    let mut buf = String::new();
    let mut id = 10;
    let mut last_submit = Instant::now();
    while Instant::now() < deadline {
        buf.clear();
        let _ = reader.read_line(&mut buf);
        if proto != "tls" && proto != "none" && last_submit.elapsed() > Duration::from_secs(2) {
            id += 1;
            let line = if proto == "stratum" {
                format!(
                    r#"{{"id": {id}, "method": "mining.submit", "params": ["worker1.rig", "1", "00000000", "504e86b9", "{id:08x}"]}}"#
                )
            } else {
                format!(
                    r#"{{"id":{id},"jsonrpc":"2.0","method":"submit","params":{{"id":"sess1","job_id":"1","nonce":"{id:08x}","result":"e1364b8782719d7683e2ccd3d8f724bc59dfa780a9e960e7c0e0046acdb40100"}}}}"#
                )
            };
            if c.write_all(format!("{line}\n").as_bytes()).is_err() {
                return;
            }
            last_submit = Instant::now();
        }
    }
}

/// A TLS 1.2/1.3 ClientHello with SNI, as a TLS-wrapped pool client sends.
fn client_hello() -> Vec<u8> {
    let sni = b"pool.example.net";
    let mut ext = Vec::new();
    // server_name
    let mut sn = vec![0x00];
    sn.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    sn.extend_from_slice(sni);
    let mut snl = (sn.len() as u16).to_be_bytes().to_vec();
    snl.extend_from_slice(&sn);
    ext.extend_from_slice(&[0x00, 0x00]);
    ext.extend_from_slice(&(snl.len() as u16).to_be_bytes());
    ext.extend_from_slice(&snl);
    // supported_versions: TLS 1.3, 1.2
    ext.extend_from_slice(&[0x00, 0x2b, 0x00, 0x05, 0x04, 0x03, 0x04, 0x03, 0x03]);
    let mut body = vec![0x03, 0x03];
    body.extend((0..32u8).map(|i| i.wrapping_mul(37)));
    body.push(0); // session id
    let suites: [u16; 4] = [0x1301, 0x1302, 0xc02f, 0xc030];
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[0x01, 0x00]); // compression: null
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
