//! Shared pieces of the end-to-end tests: the simulated miner and pool live
//! in src/bin; tests/ holds the scenarios.

use std::{
    io::Write,
    net::{TcpListener, TcpStream},
    sync::Arc,
    time::{Duration, Instant},
};

/// The value after `flag` on a helper binary's command line
/// (`--seconds 30`), if the flag is there with a value.
pub fn flag(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// A helper server's `--addr` (default `127.0.0.1:0`) and `--seconds`
/// (default 60, at most 600).
pub fn listen_flags(args: &[String]) -> (String, u64) {
    let addr = flag(args, "--addr").unwrap_or_else(|| "127.0.0.1:0".into());
    let secs = flag(args, "--seconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(60u64)
        .min(600);
    (addr, secs)
}

/// A read that timed out (the socket's read timeout): try again.
pub fn timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// A helper server's life: binds `addr`, prints the port as the first line
/// of stdout (what the tests read it from), then hands each client —
/// blocking again, with `read_timeout` — to `serve` on its own thread,
/// until `secs` have passed. Exits 2 when it cannot bind.
pub fn serve_clients<F>(name: &str, addr: &str, secs: u64, read_timeout: Duration, serve: F)
where
    F: Fn(TcpStream, Instant) + Send + Sync + 'static,
{
    let listener = TcpListener::bind(addr).unwrap_or_else(|e| {
        eprintln!("{name}: bind {addr}: {e}");
        std::process::exit(2)
    });
    println!("{}", listener.local_addr().map(|a| a.port()).unwrap_or(0));
    let _ = std::io::stdout().flush();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let _ = listener.set_nonblocking(true);
    let serve = Arc::new(serve);
    while Instant::now() < deadline {
        match listener.accept() {
            Ok((client, _)) => {
                let serve = serve.clone();
                std::thread::spawn(move || {
                    let _ = client.set_nonblocking(false);
                    let _ = client.set_read_timeout(Some(read_timeout));
                    serve(client, deadline);
                });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// A log file opened for appending (`--log`, `--capture`), if given and
/// it opens.
pub fn append_file(path: Option<String>) -> Option<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path?)
        .ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn flag_values_by_name() {
        let args: Vec<String> = ["bin", "--seconds", "30", "--tls", "--addr"]
            .map(String::from)
            .into();
        assert_eq!(super::flag(&args, "--seconds").as_deref(), Some("30"));
        assert_eq!(super::flag(&args, "--tls").as_deref(), Some("--addr"));
        assert_eq!(super::flag(&args, "--addr"), None, "no value after it");
        assert_eq!(super::flag(&args, "--log"), None);
    }
}
