//! A loopback mining pool for the end-to-end tests. Answers Stratum v1
//! (`mining.subscribe`, `mining.authorize`, `mining.submit`, sends
//! `mining.notify`) and the XMRig/Monero JSON-RPC (`login`, `submit`,
//! `keepalived`, sends `job`), one JSON object per line. Anything else (a
//! TLS ClientHello) is read and ignored. Bounded in time.
//!
//! Usage: fake_pool [--addr 127.0.0.1:0] [--seconds 60]; prints the bound
//! port on stdout.

use std::{
    io::{BufRead, BufReader, Write},
    net::{TcpListener, TcpStream},
    time::{Duration, Instant},
};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let addr = get("--addr").unwrap_or_else(|| "127.0.0.1:0".into());
    let secs: u64 = get("--seconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
        .min(600);
    let listener = match TcpListener::bind(&addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("fake_pool: bind {addr}: {e}");
            std::process::exit(2);
        }
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    println!("{port}");
    let _ = std::io::stdout().flush();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let _ = listener.set_nonblocking(true);
    while Instant::now() < deadline {
        match listener.accept() {
            Ok((stream, _)) => {
                std::thread::spawn(move || serve(stream, deadline));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn serve(stream: TcpStream, deadline: Instant) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let mut job = 0u64;
    while Instant::now() < deadline {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => return,
        }
        let Ok(req) = serde_json::from_str::<serde_json::Value>(line.trim()) else {
            continue;
        };
        let id = req.get("id").cloned().unwrap_or(serde_json::Value::Null);
        let method = req.get("method").and_then(|m| m.as_str()).unwrap_or("");
        job += 1;
        let replies: Vec<String> = match method {
            "mining.subscribe" => vec![
                format!(
                    r#"{{"id":{id},"result":[[["mining.notify","ae6812eb4cd7735a"]],"08000002",4],"error":null}}"#
                ),
                format!(
                    r#"{{"id":null,"method":"mining.notify","params":["{job:x}","4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000","01000000010000","ffffffff",[],"00000002","1c2ac4af","504e86b9",true]}}"#
                ),
            ],
            "mining.authorize" | "mining.submit" | "mining.extranonce.subscribe" => {
                vec![format!(r#"{{"id":{id},"result":true,"error":null}}"#)]
            }
            "login" => vec![format!(
                r#"{{"id":{id},"jsonrpc":"2.0","error":null,"result":{{"id":"sess1","job":{{"blob":"0707f8c9a38a06","job_id":"{job}","target":"b88d0600","algo":"rx/0","height":3000000,"seed_hash":"00"}},"extensions":["keepalive"],"status":"OK"}}}}"#
            )],
            "submit" => vec![format!(
                r#"{{"id":{id},"jsonrpc":"2.0","error":null,"result":{{"status":"OK"}}}}"#
            )],
            "keepalived" => vec![format!(
                r#"{{"id":{id},"jsonrpc":"2.0","error":null,"result":{{"status":"KEEPALIVED"}}}}"#
            )],
            _ => vec![],
        };
        for r in replies {
            if out.write_all(format!("{r}\n").as_bytes()).is_err() {
                return;
            }
        }
    }
}
