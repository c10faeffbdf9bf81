//! The kernel sensors against the running kernel: each test loads the real
//! eBPF programs and asserts real values. Needs root.

mod common;

use std::{
    io::Write,
    net::{SocketAddr, TcpListener, TcpStream},
    process::Command,
    time::{Duration, Instant},
};

use common::{Harness, copy_binary, unique};
use miner_ebpf_common::DropSite;
use minerwatch::event::{ConnectResult, Event};

const WAIT: Duration = Duration::from_secs(2);

fn me() -> u32 {
    std::process::id()
}

/// On a quiet host the reader stops its drain timer; the next record's
/// submit must wake it at once. Without the kernel's wakeup the exec below
/// would wait for the reader's slow check (every 10 drain intervals: 3 s
/// here), so it is held to well under one interval.
#[test]
fn the_first_record_after_a_quiet_spell_wakes_the_sleeping_reader() {
    let h = Harness::start_with(minerwatch::sensor::SensorConfig {
        drain_interval_ms: 300,
        ..Default::default()
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while !h.reader_asleep() {
        assert!(
            Instant::now() < deadline,
            "the ring was never empty for 3 s in 20 s: something on this host execs, \
             forks or connects without pause"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let started = Instant::now();
    let mut child = Command::new("/bin/true").spawn().expect("spawn");
    let pid = child.id();
    let got = h.wait_for(
        Duration::from_secs(5),
        |e| matches!(e, Event::Exec(x) if x.tgid == pid),
    );
    let latency = started.elapsed();
    let _ = child.wait();
    assert!(
        got.is_some(),
        "exec not read within 5 s of a sleeping reader"
    );
    assert!(
        latency < Duration::from_millis(250),
        "read {latency:?} after the exec: the submit did not wake the reader"
    );
    assert!(!h.reader_asleep(), "the wakeup woke the reader");
    eprintln!("first record after a quiet spell read in {latency:?}");
}

#[test]
fn exec_event_arrives_with_pid_ppid_and_filename() {
    let h = Harness::start();
    let dir = std::env::temp_dir().join(unique("mw-exec"));
    let name = unique("mwexec");
    let path = copy_binary(std::path::Path::new("/bin/true"), &dir, &name);
    let started = Instant::now();
    let mut child = Command::new(&path).arg("--flag").spawn().expect("spawn");
    let pid = child.id();
    let ev = h
        .wait_for(WAIT, |e| matches!(e, Event::Exec(x) if x.tgid == pid))
        .expect("exec event within 2 s");
    let Event::Exec(x) = ev else { unreachable!() };
    assert_eq!(x.pid, pid);
    assert_eq!(x.ppid, me());
    assert_eq!(x.filename, path.to_string_lossy());
    assert_eq!(
        x.argv,
        vec![path.to_string_lossy().into_owned(), "--flag".into()]
    );
    assert!(
        x.comm.starts_with(&name[..name.len().min(15)]),
        "comm {}",
        x.comm
    );
    let meta = std::fs::metadata(&path).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (x.exe.dev, x.exe.ino),
        (meta.dev(), meta.ino()),
        "exe identity from task_struct matches stat()"
    );
    assert!(!x.exe.memfd && x.exe.nlink == 1 && !x.exe.unknown);
    assert!(x.start_boottime_ns > 0);
    eprintln!("exec event latency: {:?}", started.elapsed());
    child.wait().expect("wait");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn fork_and_exit_report_parent_child_and_exit_code() {
    let h = Harness::start();
    let mut child = Command::new("/bin/sh")
        .args(["-c", "exit 7"])
        .spawn()
        .expect("spawn");
    let pid = child.id();
    assert_eq!(child.wait().unwrap().code(), Some(7));
    let fork = h
        .wait_for(WAIT, |e| matches!(e, Event::Fork(f) if f.child_tgid == pid))
        .expect("fork event");
    let Event::Fork(f) = fork else { unreachable!() };
    assert_eq!(f.parent_tgid, me());
    let exit = h
        .wait_for(WAIT, |e| matches!(e, Event::Exit(x) if x.tgid == pid))
        .expect("exit event");
    let Event::Exit(x) = exit else { unreachable!() };
    assert_eq!((x.status, x.signal), (7, 0));

    let mut killed = Command::new("/bin/sleep").arg("30").spawn().expect("spawn");
    let kpid = killed.id();
    killed.kill().unwrap();
    killed.wait().unwrap();
    let exit = h
        .wait_for(WAIT, |e| matches!(e, Event::Exit(x) if x.tgid == kpid))
        .expect("exit event");
    let Event::Exit(x) = exit else { unreachable!() };
    assert_eq!(x.signal, libc::SIGKILL);
}

#[test]
fn threads_are_not_reported_as_processes() {
    let h = Harness::start();
    let t = std::thread::spawn(|| std::thread::sleep(Duration::from_millis(10)));
    t.join().unwrap();
    let mut c = Command::new("/bin/true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    h.wait_for(WAIT, |e| matches!(e, Event::Exit(x) if x.tgid == pid))
        .expect("exit of the child");
    let forks = h
        .matching(|e| matches!(e, Event::Fork(f) if f.parent_tgid == me() && f.child_tgid == me()));
    assert!(
        forks.is_empty(),
        "a thread was reported as a fork: {forks:?}"
    );
}

fn connect_event(h: &Harness, port: u16) -> minerwatch::event::Connect {
    match h.wait_for(
        WAIT,
        |e| matches!(e, Event::Connect(c) if c.dport == port && c.tgid == me()),
    ) {
        Some(Event::Connect(c)) => c,
        other => panic!("no connect event for port {port}: {other:?}"),
    }
}

#[test]
fn connects_report_address_port_and_result() {
    let h = Harness::start();
    let l4 = TcpListener::bind("127.0.0.1:0").unwrap();
    let p4 = l4.local_addr().unwrap().port();
    let _s = TcpStream::connect(("127.0.0.1", p4)).unwrap();
    let c = connect_event(&h, p4);
    assert_eq!(c.daddr, "127.0.0.1".parse::<std::net::IpAddr>().unwrap());
    assert_eq!(c.result, ConnectResult::Connected);
    assert!(!c.v4_mapped);
    assert_ne!(c.cookie, 0);

    let l6 = TcpListener::bind("[::1]:0").unwrap();
    let p6 = l6.local_addr().unwrap().port();
    let _s6 = TcpStream::connect(("::1", p6)).unwrap();
    let c6 = connect_event(&h, p6);
    assert_eq!(c6.daddr, "::1".parse::<std::net::IpAddr>().unwrap());
    assert_eq!(c6.result, ConnectResult::Connected);

    // v4-mapped: an AF_INET6 socket to ::ffff:127.0.0.1 sends IPv4.
    let lm = TcpListener::bind("0.0.0.0:0").unwrap();
    let pm = lm.local_addr().unwrap().port();
    let mapped: SocketAddr = format!("[::ffff:127.0.0.1]:{pm}").parse().unwrap();
    let _sm = TcpStream::connect(mapped).unwrap();
    let cm = connect_event(&h, pm);
    assert_eq!(
        cm.daddr,
        "127.0.0.1".parse::<std::net::IpAddr>().unwrap(),
        "normalised to v4"
    );
    assert!(cm.v4_mapped);

    // Refused: a port with no listener.
    let free = TcpListener::bind("127.0.0.1:0").unwrap();
    let pf = free.local_addr().unwrap().port();
    drop(free);
    assert!(TcpStream::connect(("127.0.0.1", pf)).is_err());
    let cf = connect_event(&h, pf);
    assert_eq!(cf.result, ConnectResult::Refused);
}

fn payload_for(h: &Harness, port: u16, prefix: &[u8]) -> minerwatch::event::Payload {
    match h.wait_for(
        WAIT,
        |e| matches!(e, Event::Payload(p) if p.dport == port && p.data.starts_with(prefix)),
    ) {
        Some(Event::Payload(p)) => p,
        other => panic!("no payload peek on port {port}: {other:?}"),
    }
}

#[test]
fn first_payload_bytes_are_peeked_and_linked_to_the_sender() {
    let h = Harness::start();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let cases: [&[u8]; 3] = [
        b"{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[]}\n",
        b"{\"id\":1,\"jsonrpc\":\"2.0\",\"method\":\"login\",\"params\":{\"login\":\"wallet\",\"pass\":\"x\",\"agent\":\"XMRig/6.21.0 (Linux x86_64) libuv/1.44.2 gcc/11.4.0\",\"algo\":[\"rx/0\"]}}\n",
        b"GET / HTTP/1.1\r\nHost: example\r\n\r\n",
    ];
    for body in cases {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_peer, _) = listener.accept().unwrap();
        s.write_all(body).unwrap();
        let c = connect_event(&h, port);
        let p = payload_for(&h, port, &body[..8]);
        assert_eq!(p.tgid, Some(me()), "linked to the sender's tgid");
        assert_eq!(p.data, body, "whole request peeked");
        assert_eq!(p.payload_len as usize, body.len());
        assert_eq!(p.packet_index, 0);
        assert!(p.cookie != 0);
        assert_eq!(
            p.cookie, c.cookie,
            "the payload's socket cookie is its connect's: that is what links a flow to its process"
        );
        assert_eq!(p.sport, s.local_addr().unwrap().port(), "the same socket");
        h.clear();
    }
}

#[test]
fn a_long_first_payload_is_cut_at_the_peek_length() {
    let h = Harness::start();
    let listener = TcpListener::bind("[::1]:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut s = TcpStream::connect(("::1", port)).unwrap();
    let _peer = listener.accept().unwrap();
    let body = vec![b'x'; 1000];
    s.write_all(&body).unwrap();
    let p = payload_for(&h, port, b"xxxx");
    let c = connect_event(&h, port);
    assert_eq!(
        p.cookie, c.cookie,
        "payload and connect share the socket cookie"
    );
    assert_eq!(p.data.len(), miner_peek_len());
    assert_eq!(p.payload_len, 1000);
    assert_eq!(p.daddr, "::1".parse::<std::net::IpAddr>().unwrap());
}

fn miner_peek_len() -> usize {
    256
}

#[test]
fn cpu_residency_of_a_busy_child_and_a_sleeping_one() {
    let h = Harness::start();
    let _ = h.poll_cpu(); // baseline
    let t0 = Instant::now();
    // Reaped by `wait_rusage_ns` below.
    #[allow(clippy::zombie_processes)]
    let busy = Command::new(env!("CARGO_BIN_EXE_burn"))
        .args(["3", "1"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut sleeper = Command::new("/bin/sleep").arg("3").spawn().unwrap();
    let (bpid, spid) = (busy.id(), sleeper.id());
    let mut busy_ns = 0u64;
    let mut sleep_ns = 0u64;
    let mut interval_ns = 0u64;
    let mut busy_cores = Vec::new();
    for _ in 0..4 {
        std::thread::sleep(Duration::from_secs(1));
        if let Some(s) = h.poll_cpu() {
            interval_ns += s.interval_ns;
            let b: u64 = s
                .usage
                .iter()
                .filter(|u| u.tgid == bpid)
                .map(|u| u.on_cpu_ns)
                .sum();
            busy_ns += b;
            busy_cores.push(b as f64 / s.interval_ns as f64);
            sleep_ns += s
                .usage
                .iter()
                .filter(|u| u.tgid == spid)
                .map(|u| u.on_cpu_ns)
                .sum::<u64>();
        }
    }
    // The child's own account of its CPU time, from the kernel that ran it:
    // the yardstick the sensor must match whatever else loads the machine.
    let rusage_ns = wait_rusage_ns(bpid);
    sleeper.wait().unwrap();
    let elapsed = t0.elapsed();
    // The exit event carries the final total (the process may have ended
    // between polls).
    let total = match h.wait_for(WAIT, |e| matches!(e, Event::Exit(x) if x.tgid == bpid)) {
        Some(Event::Exit(x)) => x.cpu_ns,
        _ => panic!("no exit for the busy child"),
    };
    eprintln!(
        "busy child: {:.2} s on CPU by polls {busy_cores:.2?}, {:.2} s at exit, rusage {:.2} s, over {:.2} s",
        busy_ns as f64 / 1e9,
        total as f64 / 1e9,
        rusage_ns as f64 / 1e9,
        elapsed.as_secs_f64()
    );
    assert!(
        rusage_ns > 500_000_000,
        "the busy child ran {} ns: the machine starved it, nothing to compare",
        rusage_ns
    );
    assert!(
        (total as f64 - rusage_ns as f64).abs() <= 0.05 * rusage_ns as f64 + 20e6,
        "exit CPU {total} ns vs rusage {rusage_ns} ns"
    );
    // Read from the task iterator at each poll: polls inside the loop show
    // the CPU it had; only the part after the last poll before its exit is
    // missing from them (it comes with the exit).
    assert!(busy_ns <= total + 100_000_000, "polls never over-count");
    assert!(
        busy_ns + 1_100_000_000 >= total,
        "polls saw {busy_ns} ns of {total} ns"
    );
    assert!(
        busy_cores.iter().filter(|&&c| c >= 0.1).count() >= 2,
        "per-second cores of the busy child: {busy_cores:.2?}"
    );
    assert!(sleep_ns < 50_000_000, "sleeping child used {} ns", sleep_ns);
    assert!(interval_ns > 0);
}

#[test]
fn exec_storm_is_fully_accounted() {
    let h = Harness::start();
    let _ = h.poll_drops();
    let dir = std::env::temp_dir().join(unique("mw-storm"));
    let name = unique("stormtrue");
    let path = copy_binary(std::path::Path::new("/bin/true"), &dir, &name);
    let n = 20_000u32;
    let t0 = Instant::now();
    // Two in flight at a time, as the machine's top rate was measured.
    let mut in_flight = std::collections::VecDeque::new();
    for _ in 0..n {
        if in_flight.len() >= 2 {
            let mut c: std::process::Child = in_flight.pop_front().unwrap();
            c.wait().unwrap();
        }
        in_flight.push_back(Command::new(&path).spawn().expect("spawn"));
    }
    for mut c in in_flight {
        c.wait().unwrap();
    }
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    let fname = path.to_string_lossy().into_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut received;
    loop {
        received = h
            .matching(|e| matches!(e, Event::Exec(x) if x.filename == fname))
            .len() as u64;
        if received >= n as u64 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let lost: u64 = h
        .poll_drops()
        .iter()
        .filter(|l| l.site == DropSite::ExecRingFull)
        .map(|l| l.count)
        .sum();
    eprintln!("exec storm: {n} execs at {rate:.0}/s, received {received}, lost {lost}");
    assert!(received <= n as u64);
    assert!(
        received + lost >= n as u64,
        "received {received} + lost {lost} < {n}"
    );
    assert_eq!(
        lost, 0,
        "the default ring holds this machine's top exec rate"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Reap `pid` and return its user + system CPU time in ns.
fn wait_rusage_ns(pid: u32) -> u64 {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own unreaped child; both pointers are valid.
    let r = unsafe { libc::wait4(pid as i32, &mut status, 0, &mut ru) };
    assert_eq!(r, pid as i32, "wait4: {}", std::io::Error::last_os_error());
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    ns(ru.ru_utime) + ns(ru.ru_stime)
}

/// Fork a child that runs `child` (async-signal-safe calls only: the test
/// process has threads) and then `_exit(0)`s; returns its pid.
fn fork_child(child: impl FnOnce()) -> libc::pid_t {
    // SAFETY: the child only makes raw syscalls and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        child();
        unsafe { libc::_exit(0) };
    }
    pid
}

fn reap(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
}

fn sleep_ms(ms: u64) {
    // SAFETY: nanosleep with a valid timespec; async-signal-safe.
    let ts = libc::timespec {
        tv_sec: (ms / 1000) as libc::time_t,
        tv_nsec: ((ms % 1000) * 1_000_000) as _,
    };
    unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
}

fn records_of(h: &Harness, pid: u32) -> Vec<Event> {
    h.matching(|e| match e {
        Event::Fork(f) => f.child_tgid == pid,
        other => other.tgid() == Some(pid) && !matches!(other, Event::CpuSample(_)),
    })
}

#[test]
fn a_child_that_forks_and_dies_at_once_costs_no_record_and_is_counted() {
    let h = Harness::start();
    let _ = h.poll_quiet();
    let pids: Vec<u32> = (0..20)
        .map(|_| {
            let p = fork_child(|| {});
            reap(p);
            p as u32
        })
        .collect();
    // A child that execs is sent, fork first: the exec releases it.
    let mut c = Command::new("/bin/true").spawn().expect("spawn");
    let exec_pid = c.id();
    c.wait().expect("wait");
    h.wait_for(WAIT, |e| matches!(e, Event::Exit(x) if x.tgid == exec_pid))
        .expect("exit of the exec'd child");
    let seq = records_of(&h, exec_pid);
    assert!(
        matches!(seq.first(), Some(Event::Fork(f)) if f.parent_tgid == me()),
        "an exec'd child's fork record comes first: {seq:?}"
    );
    let quiet = h.poll_quiet();
    for p in &pids {
        let got = records_of(&h, *p);
        assert!(got.is_empty(), "quiet child {p} sent {got:?}");
    }
    assert!(
        quiet >= pids.len() as u64,
        "counted {quiet} of {}",
        pids.len()
    );
}

#[test]
fn a_child_that_outlives_the_quiet_time_sends_fork_and_exit_in_order() {
    let h = Harness::start();
    let t0 = minerwatch::time::Mono::now();
    let pid = fork_child(|| sleep_ms(300)) as u32;
    reap(pid as i32);
    h.wait_for(WAIT, |e| matches!(e, Event::Exit(x) if x.tgid == pid))
        .expect("exit of a child that lived 300 ms");
    let seq = records_of(&h, pid);
    let Some(Event::Fork(f)) = seq.first() else {
        panic!("fork record first: {seq:?}");
    };
    assert_eq!(f.parent_tgid, me());
    // Sent late, stamped with the fork's own time.
    assert!(
        f.time.ns().saturating_sub(t0.ns()) < 100_000_000,
        "fork time {} ns after the test's clock",
        f.time.ns().saturating_sub(t0.ns())
    );
    assert!(matches!(seq.last(), Some(Event::Exit(_))), "{seq:?}");
}

#[test]
fn a_child_that_only_computes_is_sent_at_the_next_cpu_poll() {
    let h = Harness::start();
    let _ = h.poll_cpu();
    let pid = fork_child(|| sleep_ms(3000)) as u32;
    sleep_ms(200);
    assert!(
        records_of(&h, pid).is_empty(),
        "held back until something happens"
    );
    let _ = h.poll_cpu(); // the iterator finds it alive
    let fork = h.wait_for(WAIT, |e| matches!(e, Event::Fork(f) if f.child_tgid == pid));
    // SAFETY: our own child.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    reap(pid as i32);
    let Some(Event::Fork(f)) = fork else {
        panic!("no fork record after a poll found the child alive");
    };
    assert_eq!(f.parent_tgid, me());
    assert!(f.child_start_boottime_ns > 0);
}

#[test]
fn a_child_that_connects_is_sent_before_its_connect() {
    let h = Harness::start();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let pid = fork_child(move || {
        // SAFETY: raw socket calls on our own stack; async-signal-safe.
        unsafe {
            let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            let addr = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: port.to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be(),
                },
                sin_zero: [0; 8],
            };
            libc::connect(
                s,
                &addr as *const libc::sockaddr_in as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            );
            libc::close(s);
        }
    }) as u32;
    reap(pid as i32);
    h.wait_for(WAIT, |e| matches!(e, Event::Connect(c) if c.tgid == pid))
        .expect("connect of the forked child");
    let seq = records_of(&h, pid);
    assert!(
        matches!(seq.first(), Some(Event::Fork(_))),
        "fork before connect: {seq:?}"
    );
    assert!(
        seq.iter().any(|e| matches!(e, Event::Exit(_))) || {
            h.wait_for(WAIT, |e| matches!(e, Event::Exit(x) if x.tgid == pid))
                .is_some()
        },
        "a child that did something is not quiet at its exit"
    );
}

#[test]
fn exit_cpu_counts_workers_still_exiting_when_the_main_thread_returns() {
    // `burn` joins its workers and returns: each worker wakes the main
    // thread early in its own exit and folds its runtime into the process
    // later, so the last thread's exit must count workers still on their
    // way out. A third busy process keeps both cores contended, which
    // widens that window as a loaded node does.
    let h = Harness::start();
    #[allow(clippy::zombie_processes)] // killed and reaped below
    let mut hog = Command::new(env!("CARGO_BIN_EXE_burn"))
        .args(["30", "1"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut short = Vec::new();
    for _ in 0..15 {
        #[allow(clippy::zombie_processes)] // reaped by wait_rusage_ns
        let c = Command::new(env!("CARGO_BIN_EXE_burn"))
            .args(["0.2", "2"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = c.id();
        let rusage = wait_rusage_ns(pid);
        let exit = match h.wait_for(WAIT, |e| matches!(e, Event::Exit(x) if x.tgid == pid)) {
            Some(Event::Exit(x)) => x.cpu_ns,
            _ => panic!("no exit for burner {pid}"),
        };
        if (exit as f64) < 0.95 * rusage as f64 - 10e6 {
            short.push((pid, exit, rusage));
        }
    }
    let _ = hog.kill();
    let _ = hog.wait();
    assert!(
        short.is_empty(),
        "exit totals short of rusage (pid, exit ns, rusage ns): {short:?}"
    );
}

#[test]
fn workers_forked_by_a_parent_are_sent_before_the_parents_next_record() {
    // A miner's holder forks workers that only hash, then talks to its
    // pool: a verdict on the holder must already know its workers.
    let h = Harness::start();
    let a = fork_child(|| sleep_ms(3000)) as u32;
    let b = fork_child(|| sleep_ms(3000)) as u32;
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let _s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let connect = h.wait_for(
        WAIT,
        |e| matches!(e, Event::Connect(c) if c.dport == port && c.tgid == me()),
    );
    let events = h.matching(|_| true);
    for p in [a, b] {
        // SAFETY: our own children.
        unsafe { libc::kill(p as i32, libc::SIGKILL) };
        reap(p as i32);
    }
    assert!(connect.is_some(), "no connect event");
    let at = |pred: &dyn Fn(&Event) -> bool| events.iter().position(pred);
    let c = at(&|e| matches!(e, Event::Connect(c) if c.dport == port)).expect("connect");
    for p in [a, b] {
        let f = at(&|e| matches!(e, Event::Fork(f) if f.child_tgid == p));
        assert!(
            f.is_some_and(|f| f < c),
            "worker {p}'s fork at {f:?}, the parent's connect at {c}"
        );
    }
}
