//! The sensor's smoke test inside a booted guest kernel (tests/tests/kernels.rs
//! boots it under qemu as the initramfs's init payload).
//!
//! Preflight, then every program the loader reports, attached or degraded
//! with its warning (a verifier rejection is reported with the program and
//! the verifier's last lines), then a small workload — fork, exec, exit, a
//! loopback TCP connect that sends a login line, a busy loop — and which
//! event kinds arrived. One JSON line, prefixed `MW-SMOKE `, on stdout.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use minerwatch::{
    event::Event,
    sensor::{Sensor, SensorConfig, cpu_poll::CpuPoller, probe, ringbuf},
    time::Mono,
};
use serde_json::{Value, json};

fn main() {
    let report = smoke();
    println!("MW-SMOKE {report}");
}

fn preflight() -> Result<String, String> {
    probe::check_privileges().map_err(|e| format!("privileges: {e}"))?;
    let kernel = probe::check_kernel().map_err(|e| format!("kernel: {e}"))?;
    probe::check_btf().map_err(|e| format!("btf: {e}"))?;
    probe::ensure_tracefs().map_err(|e| format!("tracefs: {e}"))?;
    Ok(kernel)
}

fn smoke() -> Value {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let kernel = match preflight() {
        Ok(k) => k,
        Err(e) => return json!({"release": release, "preflight": e}),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return json!({"release": release, "preflight": "ok", "error": e.to_string()}),
    };
    let cfg = SensorConfig::default();
    let t0 = Instant::now();
    let loaded = rt.block_on(async { Sensor::load(&cfg) });
    let load_ms = t0.elapsed().as_millis() as u64;
    let mut sensor = match loaded {
        Ok(s) => s,
        // A verifier rejection names the program and carries the log's tail.
        Err(e) => {
            let mut chain = vec![e.to_string()];
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                chain.push(s.to_string());
                src = s.source();
            }
            return json!({"release": release, "kernel": kernel, "preflight": "ok",
                          "load_error": format!("{e:?}"), "load_error_chain": chain});
        }
    };
    let hooks: Vec<Value> = sensor
        .hooks
        .iter()
        .map(|h| {
            json!({"program": h.program, "attached": h.attached,
                   "error": h.error.as_ref().map(|e| e.to_string()),
                   "verified_insns": h.verified_insns})
        })
        .collect();
    let events: Arc<Mutex<Vec<Event>>> = Arc::default();
    let cpu = sensor.take_task_iter();
    let (ring, drops) = match (sensor.take_ring(), sensor.take_drops()) {
        (Ok(r), Ok(d)) => (r, d),
        _ => return json!({"release": release, "hooks": hooks, "error": "maps missing"}),
    };
    let wake = sensor.take_wake_flag().ok();
    let mut poller = CpuPoller::new(cpu, drops);
    // The first poll is the baseline the next one's deltas start from.
    let _ = poller.poll_cpu(Mono::now());
    let sink = events.clone();
    let workload = rt.block_on(async move {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<ringbuf::Batch>(1024);
        let stats = Arc::new(ringbuf::ReaderStats::default());
        tokio::spawn(ringbuf::run(
            ring,
            Duration::from_millis(50),
            tx,
            stats,
            wake,
        ));
        tokio::spawn(async move {
            while let Some(b) = rx.recv().await {
                sink.lock().expect("lock").extend(b.events);
            }
        });
        let work = tokio::task::spawn_blocking(workload);
        let port = work.await.unwrap_or(0);
        // Let the reader drain.
        tokio::time::sleep(Duration::from_millis(500)).await;
        port
    });
    let cpu_sample = poller.poll_cpu(Mono::now());
    // Drops since load: none expected from this workload.
    let lost: u64 = poller.poll_drops(Mono::now()).iter().map(|l| l.count).sum();
    let me = std::process::id();
    let seen = events.lock().expect("lock").clone();
    let mut kinds = serde_json::Map::new();
    let mut count = |k: &str, pred: &dyn Fn(&Event) -> bool| {
        kinds.insert(k.into(), json!(seen.iter().filter(|e| pred(e)).count()));
    };
    count(
        "exec",
        &|e| matches!(e, Event::Exec(x) if x.argv.iter().any(|a| a == "mw-smoke-exec")),
    );
    count(
        "fork",
        &|e| matches!(e, Event::Fork(x) if x.parent_tgid == me),
    );
    count(
        "exit",
        &|e| matches!(e, Event::Exit(x) if x.comm.contains("busybox") || x.comm == "true"),
    );
    count(
        "connect",
        &|e| matches!(e, Event::Connect(x) if x.tgid == me && x.dport == workload),
    );
    count(
        "payload",
        &|e| matches!(e, Event::Payload(x) if x.dport == workload && x.data.starts_with(b"{\"id\":1")),
    );
    let cpu_ns = cpu_sample
        .as_ref()
        .and_then(|s| s.usage.iter().find(|u| u.tgid == me).map(|u| u.on_cpu_ns))
        .unwrap_or(0);
    kinds.insert("cpu_sample".into(), json!(u64::from(cpu_ns > 100_000_000)));
    json!({
        "release": release,
        "kernel": kernel,
        "preflight": "ok",
        "load_ms": load_ms,
        "hooks": hooks,
        "events": kinds,
        "cpu_ms": cpu_ns / 1_000_000,
        "lost": lost,
    })
}

/// fork + exec + exit of a child, a loopback connect with a login line,
/// ~0.6 s on CPU. Returns the listener's port.
fn workload() -> u16 {
    let _ = std::process::Command::new("/bin/busybox")
        .args(["true", "mw-smoke-exec"])
        .arg0_true()
        .status();
    let Ok(l) = TcpListener::bind("127.0.0.1:0") else {
        return 0;
    };
    let port = l.local_addr().map(|a| a.port()).unwrap_or(0);
    let server = std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let mut buf = [0u8; 256];
            let _ = s.read(&mut buf);
        }
    });
    if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
        let _ = s.write_all(
            br#"{"id":1,"jsonrpc":"2.0","method":"login","params":{"login":"x","pass":"x","agent":"smoke/1.0"}}"#,
        );
        let _ = s.write_all(b"\n");
    }
    let _ = server.join();
    let start = Instant::now();
    let mut x: u64 = 1;
    while start.elapsed() < Duration::from_millis(600) {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
    }
    std::hint::black_box(x);
    port
}

/// `argv[0]` = "true", so busybox runs its `true` applet.
trait Arg0 {
    fn arg0_true(&mut self) -> &mut Self;
}

impl Arg0 for std::process::Command {
    fn arg0_true(&mut self) -> &mut Self {
        use std::os::unix::process::CommandExt as _;
        self.arg0("true")
    }
}
