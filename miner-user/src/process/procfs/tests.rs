use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::symlink;
use std::process::{Child, Command};

use super::*;

fn execs(r: &SweepResult) -> Vec<&Exec> {
    r.events
        .iter()
        .filter_map(|e| {
            if let Event::Exec(x) = e {
                Some(x)
            } else {
                None
            }
        })
        .collect()
}

fn listens(r: &SweepResult) -> Vec<&Listen> {
    r.events
        .iter()
        .filter_map(|e| {
            if let Event::Listen(l) = e {
                Some(l)
            } else {
                None
            }
        })
        .collect()
}

fn connects(r: &SweepResult) -> Vec<&Connect> {
    r.events
        .iter()
        .filter_map(|e| {
            if let Event::Connect(c) = e {
                Some(c)
            } else {
                None
            }
        })
        .collect()
}

/// A fake /proc: three live processes in two network namespaces, a kernel
/// thread and a zombie.
struct FakeProc {
    dir: tempfile::TempDir,
}

impl FakeProc {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ns-a"), "").unwrap();
        std::fs::write(dir.path().join("ns-b"), "").unwrap();
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        std::fs::write(dir.path().join("bin/xm"), "").unwrap();
        FakeProc { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    #[allow(clippy::too_many_arguments)]
    fn process(
        &self,
        pid: u32,
        comm: &str,
        state: char,
        ppid: u32,
        flags: u32,
        start: u64,
        ns: &str,
        exe: Option<&Path>,
    ) {
        let d = self.root().join(pid.to_string());
        std::fs::create_dir_all(d.join("ns")).unwrap();
        std::fs::create_dir_all(d.join("fd")).unwrap();
        std::fs::create_dir_all(d.join("net")).unwrap();
        let stat = format!(
            "{pid} ({comm}) {state} {ppid} 1 1 0 -1 {flags} 0 0 0 0 0 0 0 0 20 0 1 0 {start} 1000 200\n"
        );
        std::fs::write(d.join("stat"), stat).unwrap();
        std::fs::write(
            d.join("status"),
            "Name:\tx\nUid:\t1000\t1000\t1000\t1000\nGid:\t50\t50\t50\t50\n",
        )
        .unwrap();
        std::fs::write(d.join("cmdline"), format!("{comm}\0--flag\0")).unwrap();
        std::fs::write(
            d.join("cgroup"),
            "0::/kubepods.slice/pod1/cri-containerd-ab.scope\n",
        )
        .unwrap();
        symlink(self.root().join(ns), d.join("ns/net")).unwrap();
        if let Some(exe) = exe {
            symlink(exe, d.join("exe")).unwrap();
        }
        std::fs::write(
            d.join("net/tcp"),
            "  sl  local_address rem_address   st ...\n",
        )
        .unwrap();
    }

    fn tcp(&self, pid: u32, file: &str, lines: &[&str]) {
        let mut text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n".to_string();
        for (i, l) in lines.iter().enumerate() {
            text.push_str(&format!("{i:4}: {l}\n"));
        }
        std::fs::write(
            self.root().join(pid.to_string()).join("net").join(file),
            text,
        )
        .unwrap();
    }

    fn socket_fd(&self, pid: u32, fd: u32, inode: u64) {
        symlink(
            format!("socket:[{inode}]"),
            self.root().join(format!("{pid}/fd/{fd}")),
        )
        .unwrap();
    }
}

fn tcp_line(local: &str, remote: &str, state: &str, inode: u64) -> String {
    format!(
        "{local} {remote} {state} 00000000:00000000 00:00000000 00000000  1000        0 {inode} 1 0000000000000000"
    )
}

#[test]
fn fixture_proc_yields_ordered_execs_and_outbound_connects_only() {
    let f = FakeProc::new();
    let sleep = Path::new("/usr/bin/sleep");
    let xm = f.root().join("bin/xm");
    f.process(2, "kthreadd", 'S', 0, PF_KTHREAD, 0, "ns-a", None);
    f.process(3, "kworker/0:0", 'I', 2, PF_KTHREAD, 1, "ns-a", None);
    f.process(10, "init", 'S', 0, 0, 5, "ns-a", Some(sleep));
    f.process(15, "curl", 'S', 10, 0, 20, "ns-a", Some(sleep));
    f.process(20, "x m) (", 'R', 10, 0, 10, "ns-b", Some(&xm));
    f.process(30, "defunct", 'Z', 10, 0, 12, "ns-a", None);
    // ns-a, read once through pid 10; the socket belongs to pid 15.
    f.tcp(
        10,
        "tcp",
        &[&tcp_line("0100000A:A000", "04040808:01BB", "01", 500)],
    );
    f.tcp(
        15,
        "tcp",
        &[&tcp_line("0100000A:A001", "01010101:0D05", "01", 501)],
    ); // never read
    f.socket_fd(15, 7, 500);
    f.socket_fd(15, 8, 501);
    // ns-b: a listener, an accepted inbound connection, an outbound v4 and
    // an outbound v4-mapped v6 connection still in SYN_SENT.
    f.tcp(
        20,
        "tcp",
        &[
            &tcp_line("00000000:1F90", "00000000:0000", "0A", 900),
            &tcp_line("0500000A:1F90", "04030201:C350", "01", 901),
            &tcp_line("0500000A:9C40", "08070605:0D05", "01", 777),
            &tcp_line("0500000A:9C42", "08070605:0D05", "06", 0), // TIME_WAIT: no owner
        ],
    );
    f.tcp(
        20,
        "tcp6",
        &[&tcp_line(
            "0000000000000000FFFF00000500000A:9C41",
            "0000000000000000FFFF000009090909:3870",
            "02",
            778,
        )],
    );
    for (fd, inode) in [(3, 900), (4, 901), (5, 777), (6, 778)] {
        f.socket_fd(20, fd, inode);
    }
    // A pre-forked worker in ns-b holding its master's listener.
    f.process(21, "worker", 'S', 20, 0, 11, "ns-b", Some(&xm));
    f.socket_fd(21, 3, 900);

    let r = sweep(f.root(), Mono(42));
    assert_eq!(r.errors, 0);
    let ex = execs(&r);
    let order: Vec<u32> = ex.iter().map(|e| e.tgid).collect();
    assert_eq!(
        order,
        vec![10, 20, 21, 15],
        "by start time, kernel threads and zombies skipped"
    );
    let xm_exec = ex[1];
    assert_eq!(xm_exec.comm, "x m) (");
    assert_eq!((xm_exec.ppid, xm_exec.uid, xm_exec.gid), (10, 1000, 50));
    assert_eq!(xm_exec.argv, vec!["x m) (", "--flag"]);
    assert_eq!(xm_exec.exe_path.as_deref(), xm.to_str());
    assert_eq!(xm_exec.filename, xm.to_str().unwrap());
    assert_eq!(xm_exec.exe.name, "xm");
    assert_eq!(
        xm_exec.cgroup.as_deref(),
        Some("/kubepods.slice/pod1/cri-containerd-ab.scope")
    );
    assert_eq!((xm_exec.source, xm_exec.time), (Source::Sweep, Mono(42)));
    // SAFETY: no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    assert_eq!(xm_exec.start_boottime_ns, 10 * 1_000_000_000 / hz);
    assert!(
        r.events.iter().position(|e| e.kind() == "connect")
            > r.events.iter().rposition(|e| e.kind() == "exec")
    );

    let got: Vec<(u32, String, u16, ConnectResult, bool)> = connects(&r)
        .iter()
        .map(|c| (c.tgid, c.daddr.to_string(), c.dport, c.result, c.v4_mapped))
        .collect();
    assert_eq!(
        got,
        vec![
            (15, "8.8.4.4".into(), 443, ConnectResult::Connected, false),
            (20, "5.6.7.8".into(), 3333, ConnectResult::Connected, false),
            (20, "9.9.9.9".into(), 14448, ConnectResult::InProgress, true),
        ]
    );
    assert!(
        connects(&r)
            .iter()
            .all(|c| c.cookie == 0 && c.source == Source::Sweep && c.uid == 1000)
    );
    // The listener, once per holder; never the accepted or outbound sockets.
    let any = Some((IpAddr::from([0, 0, 0, 0]), 8080));
    let got: Vec<u32> = listens(&r).iter().map(|l| l.tgid).collect();
    assert_eq!(got, vec![20, 21]);
    assert!(
        listens(&r)
            .iter()
            .all(|l| l.local == any && l.source == Source::Sweep)
    );
    assert!(
        r.events.iter().position(|e| e.kind() == "listen")
            > r.events.iter().rposition(|e| e.kind() == "exec"),
        "listens follow the execs they name"
    );
}

#[test]
fn a_missing_proc_is_one_error_and_no_events() {
    let r = sweep(Path::new("/nonexistent/proc"), Mono(1));
    assert_eq!((r.events.len(), r.errors), (0, 1));
}

struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn live_sweep_finds_a_child_and_our_own_outbound_connection() {
    let child = Reap(Command::new("sleep").arg("5").spawn().unwrap());
    // spawn() returns once the child's new mm is in place, but argv and
    // comm are only written a moment later in exec: wait for them.
    let cmdline = format!("/proc/{}/cmdline", child.0.id());
    for _ in 0..200 {
        if std::fs::read(&cmdline).is_ok_and(|c| c.starts_with(b"sleep\0")) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server_port = listener.local_addr().unwrap().port();
    let client = TcpStream::connect(("127.0.0.1", server_port)).unwrap();
    let (mut accepted, _) = listener.accept().unwrap();
    let client_port = client.local_addr().unwrap().port();
    let me = std::process::id();

    let r = sweep(Path::new("/proc"), Mono(9));
    let ex = execs(&r);
    let kid = ex
        .iter()
        .find(|e| e.tgid == child.0.id())
        .expect("child swept");
    assert_eq!(kid.ppid, me);
    assert_eq!(kid.pid, kid.tgid);
    assert_eq!(kid.exe_path.as_deref(), Some("/usr/bin/sleep"));
    assert_eq!(kid.argv, vec!["sleep", "5"]);
    assert_eq!(kid.comm, "sleep");
    assert!(!kid.exe.unknown && kid.exe.nlink >= 1 && !kid.exe.memfd);
    let meta = std::fs::metadata("/usr/bin/sleep").unwrap();
    assert_eq!(
        (kid.exe.dev, kid.exe.ino),
        (meta.dev(), meta.ino()),
        "userspace st_dev encoding"
    );
    let pos = |tgid: u32| ex.iter().position(|e| e.tgid == tgid);
    assert!(pos(me) < pos(child.0.id()), "parent before child");
    assert!(kid.start_boottime_ns >= ex[pos(me).unwrap()].start_boottime_ns);
    assert!(ex.iter().all(|e| e.comm != "kthreadd"));

    let ours: Vec<&Connect> = connects(&r).into_iter().filter(|c| c.tgid == me).collect();
    assert!(
        ours.iter()
            .any(|c| c.dport == server_port && c.daddr == IpAddr::from([127, 0, 0, 1])),
        "outbound connection to {server_port} attributed to pid {me}: {ours:?}"
    );
    assert!(
        !ours.iter().any(|c| c.dport == client_port),
        "the accepted (inbound) side is not a connect: {ours:?}"
    );
    let our_listens: Vec<&Listen> = listens(&r).into_iter().filter(|l| l.tgid == me).collect();
    assert!(
        our_listens
            .iter()
            .any(|l| l.local == Some((IpAddr::from([127, 0, 0, 1]), server_port))),
        "our listener on {server_port}: {our_listens:?}"
    );

    let resolver = FlowResolver::new("/proc");
    let lo = IpAddr::from([127, 0, 0, 1]);
    let out = Flow {
        saddr: lo,
        sport: client_port,
        daddr: lo,
        dport: server_port,
    };
    let back = Flow {
        saddr: lo,
        sport: server_port,
        daddr: lo,
        dport: client_port,
    };
    let nobody = Flow {
        saddr: lo,
        sport: 1,
        daddr: lo,
        dport: 2,
    };
    assert_eq!(
        resolver.resolve_all(&[out, back, nobody]).unwrap(),
        vec![Some(me), Some(me), None]
    );
    assert_eq!(resolver.resolve(&out).unwrap(), Some(me));
    drop(client);
    let _ = accepted.read(&mut [0u8; 1]);
}
