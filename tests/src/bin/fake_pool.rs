//! A loopback mining pool for the end-to-end tests. Answers Stratum v1
//! (`mining.subscribe`, `mining.authorize`, `mining.submit`, sends
//! `mining.notify`) and the XMRig/Monero JSON-RPC (`login`, `submit`,
//! `keepalived`, sends `job`), one JSON object per line. The Monero jobs are
//! well formed (a 76-byte hashing blob, a RandomX seed hash, an easy
//! target), so the real XMRig accepts them and hashes RandomX for real.
//! With `--tls` every connection is TLS (a fresh self-signed certificate;
//! XMRig accepts any certificate unless given a fingerprint). Without it,
//! anything that is not JSON (a TLS ClientHello) is read and ignored.
//! Bounded in time.
//!
//! Usage: fake_pool [--addr 127.0.0.1:0] [--seconds 60] [--tls]
//!        [--log FILE]; prints the bound port on stdout. `--log` appends
//!        one line per request method received (`login`, `submit`, …), so
//!        a test can tell that a real miner logged in and found shares.

use std::{
    io::{BufRead, BufReader, Read, Write},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use rustls::{ServerConfig, ServerConnection, StreamOwned, pki_types::PrivateKeyDer};

/// A Monero hashing blob: version, timestamp, previous block id, nonce at
/// byte 39, merkle root, transaction count (76 bytes).
const BLOB: &str = concat!(
    "1010",
    "e0c8d7a306",
    "a8b6c1f2d3e4f50617283940a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4",
    "00000000",
    "5f4e3d2c1b0a99887766554433221100ffeeddccbbaa99887766554433221100",
    "01",
);
/// RandomX seed (the key block hash the dataset derives from).
const SEED_HASH: &str = "3b2d6e8fa1c94b7d2e5f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5";
/// Difficulty ~16: shares every second or so even in RandomX light mode
/// (~30 H/s per thread here), so a test sees `submit`s soon.
const TARGET: &str = "ffffff0f";

type Log = Arc<Mutex<Option<std::fs::File>>>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |k: &str| minerwatch_tests::flag(&args, k);
    let (addr, secs) = minerwatch_tests::listen_flags(&args);
    let tls = args.iter().any(|a| a == "--tls").then(tls_config);
    let log: Log = Arc::new(Mutex::new(minerwatch_tests::append_file(get("--log"))));
    minerwatch_tests::serve_clients(
        "fake_pool",
        &addr,
        secs,
        Duration::from_millis(500),
        move |stream, deadline| match tls.clone() {
            Some(cfg) => {
                let Ok(conn) = ServerConnection::new(cfg) else {
                    return;
                };
                serve(StreamOwned::new(conn, stream), deadline, &log);
            }
            None => serve(stream, deadline, &log),
        },
    );
}

fn tls_config() -> Arc<ServerConfig> {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()])
        .unwrap_or_else(|e| fail(&format!("self-signed certificate: {e}")));
    let key = PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let cfg =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap_or_else(|e| fail(&format!("TLS versions: {e}")))
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap_or_else(|e| fail(&format!("TLS config: {e}")));
    Arc::new(cfg)
}

fn fail(msg: &str) -> ! {
    eprintln!("fake_pool: {msg}");
    std::process::exit(2);
}

fn serve<S: Read + Write>(stream: S, deadline: Instant, log: &Log) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let mut job = 0u64;
    while Instant::now() < deadline {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if minerwatch_tests::timed_out(&e) => {
                continue;
            }
            Err(_) => return,
        }
        let Ok(req) = serde_json::from_str::<serde_json::Value>(line.trim()) else {
            continue;
        };
        let id = req.get("id").cloned().unwrap_or(serde_json::Value::Null);
        let method = req.get("method").and_then(|m| m.as_str()).unwrap_or("");
        if let Ok(mut guard) = log.lock()
            && let Some(f) = guard.as_mut()
        {
            let _ = writeln!(f, "{method}");
        }
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
                r#"{{"id":{id},"jsonrpc":"2.0","error":null,"result":{{"id":"sess1","job":{{"blob":"{BLOB}","job_id":"{job}","target":"{TARGET}","algo":"rx/0","height":3000000,"seed_hash":"{SEED_HASH}"}},"extensions":["keepalive"],"status":"OK"}}}}"#
            )],
            "submit" => vec![format!(
                r#"{{"id":{id},"jsonrpc":"2.0","error":null,"result":{{"status":"OK"}}}}"#
            )],
            "keepalived" => vec![format!(
                r#"{{"id":{id},"jsonrpc":"2.0","error":null,"result":{{"status":"KEEPALIVED"}}}}"#
            )],
            _ => vec![],
        };
        let out = reader.get_mut();
        for r in replies {
            if out.write_all(format!("{r}\n").as_bytes()).is_err() || out.flush().is_err() {
                return;
            }
        }
    }
}
