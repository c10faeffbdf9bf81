//! The stream end to end: hub and socket server with real clients.

use std::os::unix::ffi::OsStrExt;
use std::time::Instant;

use tokio::io::{AsyncBufReadExt, BufReader};

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::UnixStream;

use super::*;
use crate::sinks::config::TailConfig;
use crate::sinks::metrics::Metrics;

struct Served {
    hub: TailHub,
    path: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

fn cfg_in(dir: &Path) -> TailConfig {
    TailConfig {
        socket: dir.join("run/minerwatch.sock"),
        ..TailConfig::default()
    }
}

async fn serve(cfg: impl FnOnce(&Path) -> TailConfig) -> Served {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = cfg(dir.path());
    let metrics = Metrics::new().expect("metrics");
    let hub = TailHub::new(&cfg, &metrics);
    let server = TailServer::bind(&cfg, hub.clone()).expect("bind");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    Served {
        hub,
        path: cfg.socket,
        stop: Some(tx),
        task,
        _dir: dir,
    }
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn numbered(i: u64) -> TailMessage {
    TailMessage {
        time: "t".into(),
        tgid: Some(1),
        detail: format!("n {i}"),
        ..TailMessage::new(TailKind::Exec)
    }
}

fn seq(msg: &TailMessage) -> u64 {
    msg.detail
        .strip_prefix("n ")
        .and_then(|n| n.parse().ok())
        .expect("numbered message")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_reach_the_client_in_order_and_shutdown_cleans_up() {
    let mut s = serve(cfg_in).await;
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&s.path), 0o600);
    assert_eq!(mode(s.path.parent().expect("dir")), 0o700);

    let stream = UnixStream::connect(&s.path).await.expect("connect");
    let hub = s.hub.clone();
    wait_for("client registration", || hub.client_count() == 1).await;
    for i in 0..1000 {
        s.hub.publish(&numbered(i));
    }
    let mut lines = BufReader::new(stream).lines();
    for i in 0..1000 {
        let line = lines.next_line().await.expect("read").expect("a line");
        let msg: TailMessage = serde_json::from_str(&line).expect("json");
        assert_eq!(seq(&msg), i);
    }

    let t0 = Instant::now();
    let _ = s.stop.take().map(|tx| tx.send(()));
    tokio::time::timeout(Duration::from_secs(2), &mut s.task)
        .await
        .expect("stops in 2 s")
        .expect("join");
    assert_eq!(
        lines.next_line().await.expect("read"),
        None,
        "client sees EOF"
    );
    assert!(!s.path.exists(), "socket file removed");
    eprintln!("tail shutdown took {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_client_is_told_exactly_what_it_missed() {
    let s = serve(cfg_in).await;
    let stream = UnixStream::connect(&s.path).await.expect("connect");
    let hub = s.hub.clone();
    wait_for("client registration", || hub.client_count() == 1).await;

    const N: u64 = 100_000;
    let t0 = Instant::now();
    for i in 0..N {
        s.hub.publish(&numbered(i));
    }
    let took = t0.elapsed();
    eprintln!(
        "published {N} messages to a stalled client in {took:?} ({:.0} ns each)",
        took.as_nanos() as f64 / N as f64
    );

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx.send(serde_json::from_str::<TailMessage>(&line).expect("json"));
        }
    });
    let hub = s.hub.clone();
    wait_for("queue drained", || hub.backlog() == 0).await;
    s.hub.publish(&numbered(N));

    let mut expect = 0u64;
    let mut skipped_lines = 0;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("more lines")
            .expect("open");
        if msg.kind == TailKind::Skipped {
            assert_eq!(
                msg.to_line().expect("json"),
                format!(
                    "{{\"kind\":\"skipped\",\"count\":{}}}\n",
                    msg.count.unwrap_or(0)
                )
                .into_bytes()
            );
            expect += msg.count.expect("count");
            skipped_lines += 1;
            continue;
        }
        assert_eq!(seq(&msg), expect, "gap without a skipped line");
        expect += 1;
        if seq(&msg) == N {
            break;
        }
    }
    assert!(
        skipped_lines >= 1,
        "a stalled client must have missed messages"
    );
    eprintln!("skipped lines: {skipped_lines}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_client_is_disconnected() {
    let s = serve(|d| TailConfig {
        stall_timeout_ms: 200,
        client_queue: 16,
        ..cfg_in(d)
    })
    .await;
    let _stream = UnixStream::connect(&s.path).await.expect("connect");
    let hub = s.hub.clone();
    wait_for("client registration", || hub.client_count() == 1).await;
    let t0 = Instant::now();
    // Enough to fill the socket buffer, then keep publishing so the hub
    // notices the writer has gone.
    let filler = "x".repeat(1000);
    while s.hub.client_count() == 1 {
        assert!(t0.elapsed() < Duration::from_secs(5), "never disconnected");
        for _ in 0..100 {
            s.hub.publish(&TailMessage {
                detail: filler.clone(),
                ..TailMessage::new(TailKind::Exec)
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(t0.elapsed() >= Duration::from_millis(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_over_the_limit_is_told_why() {
    let s = serve(|d| TailConfig {
        max_clients: 1,
        ..cfg_in(d)
    })
    .await;
    let _first = UnixStream::connect(&s.path).await.expect("connect");
    let hub = s.hub.clone();
    wait_for("client registration", || hub.client_count() == 1).await;
    let second = UnixStream::connect(&s.path).await.expect("connect");
    let mut lines = BufReader::new(second).lines();
    let line = lines.next_line().await.expect("read").expect("a line");
    assert_eq!(
        line,
        r#"{"kind":"error","message":"too many tail clients (1 connected); raise tail.max_clients"}"#
    );
    assert_eq!(lines.next_line().await.expect("read"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_socket_is_replaced_live_one_and_files_are_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = TailConfig {
        socket: dir.path().join("m.sock"),
        ..TailConfig::default()
    };
    let metrics = Metrics::new().expect("metrics");
    drop(std::os::unix::net::UnixListener::bind(&cfg.socket).expect("stale socket"));
    let live = TailServer::bind(&cfg, TailHub::new(&cfg, &metrics)).expect("stale socket replaced");
    let second = TailServer::bind(&cfg, TailHub::new(&cfg, &metrics));
    assert!(
        matches!(second, Err(TailError::InUse { .. })),
        "live socket must not be replaced"
    );
    drop(live);

    let file = TailConfig {
        socket: dir.path().join("plain"),
        ..TailConfig::default()
    };
    std::fs::write(&file.socket, b"keep me").expect("write");
    let e = TailServer::bind(&file, TailHub::new(&file, &metrics))
        .err()
        .expect("refused");
    assert_eq!(
        e.to_string(),
        format!(
            "{} exists and is not a socket; remove it or set tail.socket (--socket) to another path",
            file.socket.display()
        )
    );
    assert_eq!(
        std::fs::read(&file.socket).expect("still there"),
        b"keep me"
    );
}

/// Outcome of connecting as uid/gid 65534 from a forked child.
#[derive(Debug, PartialEq)]
enum Nobody {
    ConnectFailed(i32),
    Received(String),
}

/// Forks a child that drops to nobody and connects. The child makes only
/// async-signal-safe calls (the test process has threads).
fn connect_as_nobody(path: &Path) -> Nobody {
    // SAFETY: plain libc calls on valid, owned buffers; the child only
    // calls async-signal-safe functions and leaves with _exit.
    unsafe {
        let mut addr: libc::sockaddr_un = std::mem::zeroed();
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (dst, src) in addr.sun_path.iter_mut().zip(path.as_os_str().as_bytes()) {
            *dst = *src as libc::c_char;
        }
        let mut fds = [0; 2];
        assert_eq!(libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC), 0);
        let pid = libc::fork();
        assert!(pid >= 0, "fork");
        if pid == 0 {
            let out = fds[1];
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                libc::_exit(3);
            }
            let s = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
            if libc::connect(s, &addr as *const _ as *const libc::sockaddr, len) != 0 {
                let errno = *libc::__errno_location();
                let msg = [b'E', errno as u8];
                libc::write(out, msg.as_ptr().cast(), 2);
                libc::_exit(0);
            }
            libc::write(out, b"D".as_ptr().cast(), 1);
            let mut buf = [0u8; 512];
            loop {
                let n = libc::read(s, buf.as_mut_ptr().cast(), buf.len());
                if n <= 0 {
                    break;
                }
                libc::write(out, buf.as_ptr().cast(), n as usize);
            }
            libc::_exit(0);
        }
        libc::close(fds[1]);
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        loop {
            let n = libc::read(fds[0], buf.as_mut_ptr().cast(), buf.len());
            if n <= 0 {
                break;
            }
            got.extend_from_slice(&buf[..n as usize]);
        }
        libc::close(fds[0]);
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child failed: {status}"
        );
        match got.split_first() {
            Some((b'E', rest)) => Nobody::ConnectFailed(rest.first().copied().unwrap_or(0) as i32),
            Some((b'D', rest)) => Nobody::Received(String::from_utf8_lossy(rest).into_owned()),
            _ => panic!("child said {got:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_root_client_is_refused() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        crate::test_skip::skip(
            "sinks::tail::tests::non_root_client_is_refused",
            "root",
            "switching a child to uid 65534 needs root",
        );
        return;
    }
    let s = serve(cfg_in).await;
    // As installed: the 0700 directory and 0600 socket keep nobody out.
    let path = s.path.clone();
    let outcome = tokio::task::spawn_blocking(move || connect_as_nobody(&path))
        .await
        .expect("join");
    assert_eq!(outcome, Nobody::ConnectFailed(libc::EACCES));

    // With the file permissions opened up, SO_PEERCRED still refuses.
    let dir = s.path.parent().expect("dir");
    std::fs::set_permissions(s._dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(&s.path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let path = s.path.clone();
    let outcome = tokio::task::spawn_blocking(move || connect_as_nobody(&path))
        .await
        .expect("join");
    assert_eq!(
        outcome,
        Nobody::Received(
            "{\"kind\":\"error\",\"message\":\"permission denied: minerwatch tail requires root\"}\n".into()
        )
    );
    assert_eq!(s.hub.client_count(), 0);
}
