//! The infection chain, end to end: a packaged Python web app (Debian's
//! `/usr/bin/python3`, not a pyenv shim) whose request handler runs
//! `sh -c` that copies the real XMRig into a hidden /tmp directory and
//! starts it. The alert on the miner must name its ancestors oldest first:
//! the app (listening, with its address), then the shell. Variants: the
//! shell exits before the miner even execs (so the miner is re-parented to
//! init and the shell is gone by the time of the alert), and the app
//! started before the daemon (its place in the chain comes from the
//! start-up sweep and is flagged best effort). Also the listen hook alone,
//! against the running kernel. Needs root.

mod common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::SpawnListening;
use common::{
    Harness,
    daemon::{Daemon, minerwatch_bin, pids_running},
    xmrig,
};
use minerwatch::event::{Event, Source};

const POOL: &str = env!("CARGO_BIN_EXE_fake_pool");
/// Debian's interpreter: packaged, so the app itself is "verified".
const PYTHON: &str = "/usr/bin/python3";
/// Well inside the 30 s bound; the XMRig login is visible at once.
const DETECT: Duration = Duration::from_secs(30);

/// A web app with the classic bug: the handler runs a shell command.
const APP: &str = r#"
import http.server, subprocess, sys
CMD = sys.argv[1]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        subprocess.run(["sh", "-c", CMD], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok\n")
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// Kills on drop whatever runs from `path` (the dropped miner, which the
/// daemon in observe mode leaves alive).
struct KillPath(PathBuf);

impl Drop for KillPath {
    fn drop(&mut self) {
        for pid in pids_running(&self.0) {
            // SAFETY: signalling processes we started (found by our unique path).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The loopback pool, its port.
fn pool() -> (Reap, u16) {
    let (child, port) = Command::new(POOL)
        .args(["--addr", "127.0.0.1:0", "--seconds", "120"])
        .listening();
    (Reap(child), port)
}

/// The app, its pid and port. `cmd` is what its handler runs.
fn start_app(dir: &Path, cmd: &str) -> (Reap, u32, u16) {
    let script = dir.join("app.py");
    std::fs::write(&script, APP).expect("app.py");
    let (child, port) = Command::new(PYTHON)
        .arg(&script)
        .arg(cmd)
        .stderr(Stdio::null())
        .listening();
    let pid = child.id();
    (Reap(child), pid, port)
}

/// One request: the handler runs its shell command and answers when the
/// shell has exited.
fn trigger(port: u16) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the app");
    s.set_read_timeout(Some(Duration::from_secs(20))).ok();
    s.write_all(b"GET /upload HTTP/1.0\r\n\r\n")
        .expect("request");
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    assert!(reply.contains("200"), "the app answered: {reply:?}");
}

/// Staging area (the attacker's download) and drop directory.
struct Scene {
    stage: PathBuf,
    drop_dir: PathBuf,
    miner: PathBuf,
}

fn scene(tag: &str, pool_port: u16) -> Option<Scene> {
    let src = match xmrig::binary() {
        Ok(p) => p,
        Err(why) => {
            common::skip(tag, "xmrig", &why);
            return None;
        }
    };
    if !Path::new(PYTHON).is_file() {
        common::skip(
            tag,
            "python3",
            "Debian's /usr/bin/python3 is missing (`cargo xtask test` installs python3-minimal)",
        );
        return None;
    }
    let unique = common::unique(tag);
    let stage = std::env::temp_dir().join(format!("mw-{unique}-stage"));
    let drop_dir = PathBuf::from(format!("/tmp/.mw-{unique}"));
    let pool = xmrig::PoolSpec::plain(format!("127.0.0.1:{pool_port}"));
    xmrig::drop_into(&src, &stage, "xmrig", &pool).expect("stage XMRig");
    let miner = drop_dir.join("kdevtmpfsi");
    Some(Scene {
        stage,
        drop_dir,
        miner,
    })
}

impl Scene {
    /// The dropper: copy the miner and its config, start it in the
    /// background. With `delay`, the shell returns first and the miner
    /// starts a second later from an orphaned subshell.
    fn command(&self, delay: bool) -> String {
        let start = if delay {
            "(sleep 1; exec ./kdevtmpfsi) >/dev/null 2>&1 &"
        } else {
            "./kdevtmpfsi >/dev/null 2>&1 &"
        };
        // `;`, not `&&`: a trailing `&` would put the whole list in a
        // background subshell.
        format!(
            "mkdir -p {d}; cp {s}/xmrig {d}/kdevtmpfsi; cp {s}/config.json {d}/; cd {d}; {start}",
            d = self.drop_dir.display(),
            s = self.stage.display(),
        )
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.stage);
        let _ = std::fs::remove_dir_all(&self.drop_dir);
    }
}

/// The first alert on the miner.
fn miner_alert(d: &Daemon, miner: &Path) -> serde_json::Value {
    let deadline = Instant::now() + DETECT;
    loop {
        let pids = pids_running(miner);
        if let Some(a) = d.alerts().into_iter().find(|a| {
            a["tgid"]
                .as_u64()
                .is_some_and(|t| pids.contains(&(t as u32)))
        }) {
            return a;
        }
        assert!(
            Instant::now() < deadline,
            "no alert on the dropped miner within {DETECT:?} (running: {pids:?}); daemon log:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What the report shows of a chain: one line per link.
fn show(alert: &serde_json::Value) -> String {
    let mut out = format!(
        "alert {} {} tgid {} ppid {} exe {}\n",
        alert["rule"], alert["severity"], alert["tgid"], alert["ppid"], alert["exe"]
    );
    for l in alert["chain"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {}\n",
            serde_json::json!({
                "pid": l["pid"], "exe": l["exe"], "argv0": l["argv"][0],
                "start": l["start"], "exited": l["exited"], "listening": l["listening"],
                "listen": l["listen"], "best_effort": l["best_effort"],
            })
        ));
    }
    out
}

/// Checks the links every variant shares: the app, then the shell as the
/// miner's own creator, oldest first. Returns (app link, shell link).
fn app_then_shell(
    alert: &serde_json::Value,
    app_pid: u32,
    app_port: u16,
) -> (serde_json::Value, serde_json::Value) {
    let chain = alert["chain"].as_array().expect("alert has a chain");
    let report = show(alert);
    let app_at = chain
        .iter()
        .position(|l| l["pid"] == app_pid)
        .unwrap_or_else(|| panic!("the app (pid {app_pid}) is in the chain:\n{report}"));
    assert_eq!(
        app_at + 2,
        chain.len(),
        "the chain ends app → shell (the miner itself is the alert's process):\n{report}"
    );
    let app = chain[app_at].clone();
    let sh = chain[app_at + 1].clone();
    assert!(
        app["exe"].as_str().is_some_and(|e| e
            .rsplit('/')
            .next()
            .is_some_and(|n| n.starts_with("python3"))),
        "{report}"
    );
    assert_eq!(app["listening"], true, "{report}");
    assert!(
        app["listen"]
            .as_array()
            .is_some_and(|l| l.contains(&serde_json::json!(format!("127.0.0.1:{app_port}")))),
        "{report}"
    );
    assert_eq!(app["exited"], false, "{report}");
    assert_eq!(sh["argv"][0], "sh", "{report}");
    assert_eq!(sh["argv"][1], "-c", "{report}");
    assert!(
        sh["argv"][2]
            .as_str()
            .is_some_and(|c| c.starts_with("mkdir -p /tmp/.mw-")),
        "{report}"
    );
    assert_eq!(sh["listening"], false, "{report}");
    assert_eq!(sh["best_effort"], false, "seen forking: {report}");
    // Oldest first: start times never go backwards (same RFC 3339 format).
    let starts: Vec<&str> = chain.iter().filter_map(|l| l["start"].as_str()).collect();
    assert_eq!(starts.len(), chain.len(), "{report}");
    assert!(starts.windows(2).all(|w| w[0] <= w[1]), "{report}");
    assert!(
        alert["exe"]
            .as_str()
            .is_some_and(|e| e.ends_with("/kdevtmpfsi")),
        "{report}"
    );
    (app, sh)
}

/// The app starts after the daemon; the shell exits a second before the
/// miner's exec, which then reports init as its parent. The chain still
/// runs app → shell, the shell marked exited; the tail shows it on one line.
#[test]
fn chain_names_the_listening_app_and_the_shell_that_exited_before_the_miner() {
    let tag = "chain_shell_exited";
    let (_pool, pool_port) = pool();
    let Some(sc) = scene(tag, pool_port) else {
        return;
    };
    let _kill = KillPath(sc.miner.clone());
    let d = Daemon::start("", &[]);
    let mut tail = Reap(
        Command::new(minerwatch_bin())
            .args(["tail", "--alerts-only", "--socket"])
            .arg(&d.socket)
            .stdout(Stdio::piped())
            .spawn()
            .expect("tail"),
    );
    let (_app, app_pid, app_port) = start_app(&sc.stage, &sc.command(true));
    std::thread::sleep(Duration::from_millis(300));
    trigger(app_port);

    let alert = miner_alert(&d, &sc.miner);
    eprintln!(
        "{}",
        serde_json::to_string_pretty(&alert).unwrap_or_default()
    );
    let (app, sh) = app_then_shell(&alert, app_pid, app_port);
    assert_eq!(app["best_effort"], false, "the app's exec was seen");
    assert_eq!(
        sh["exited"], true,
        "the shell was gone before the miner started"
    );
    assert_ne!(
        alert["ppid"], sh["pid"],
        "the kernel re-parented the miner; the chain kept its creator"
    );

    // The tail's human line: one line, oldest first, ending with the miner.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let out = tail.0.stdout.take().expect("tail stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let row = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("the tail printed the miner's alert");
        if line.contains("kdevtmpfsi") && line.contains("| chain") {
            break line;
        }
    };
    eprintln!("tail: {row}");
    let chain_text = row
        .split_once("| chain")
        .and_then(|(_, c)| c.split_once(": "))
        .map(|(_, c)| c)
        .expect("chain text");
    assert!(
        chain_text.contains(&format!("(listening 127.0.0.1:{app_port}) → ")),
        "{row}"
    );
    assert!(chain_text.ends_with(" → kdevtmpfsi"), "{row}");
    let names: Vec<&str> = chain_text.split(" → ").collect();
    let n = names.len();
    assert!(
        n >= 3 && names[n - 3].starts_with("python3") && ["dash", "sh"].contains(&names[n - 2]),
        "python3 → sh → kdevtmpfsi at the end: {row}"
    );
}

/// The app predates the daemon: the start-up sweep found it and its
/// listening socket, so its link is flagged best effort; the shell's and
/// the miner's forks were seen by the kernel.
#[test]
fn chain_through_an_app_started_before_the_daemon_is_best_effort() {
    let tag = "chain_app_predates_daemon";
    let (_pool, pool_port) = pool();
    let Some(sc) = scene(tag, pool_port) else {
        return;
    };
    let _kill = KillPath(sc.miner.clone());
    let (_app, app_pid, app_port) = start_app(&sc.stage, &sc.command(false));
    let d = Daemon::start("", &[]);
    trigger(app_port);

    let alert = miner_alert(&d, &sc.miner);
    eprintln!("{}", show(&alert));
    let (app, sh) = app_then_shell(&alert, app_pid, app_port);
    assert_eq!(
        app["best_effort"],
        true,
        "known from the sweep: {}",
        show(&alert)
    );
    assert_eq!(sh["best_effort"], false);
    let chain = alert["chain"].as_array().expect("chain");
    assert!(
        chain
            .iter()
            .take_while(|l| l["pid"] != app_pid)
            .all(|l| l["best_effort"] == true),
        "everything older than the app came from the sweep: {}",
        show(&alert)
    );
}

/// The listen hook against the running kernel: one event per listening
/// socket, in the listening process, with its address (v4, v6, and port 0
/// for a listen without bind); accepting a connection adds none.
#[test]
fn listen_hook_reports_the_listening_process_and_its_address() {
    let h = Harness::start();
    let me = std::process::id();
    let v4 = TcpListener::bind("127.0.0.1:0").expect("bind v4");
    let v6 = TcpListener::bind("[::1]:0").ok();
    // SAFETY: plain socket calls on a descriptor we own and close.
    let unbound = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        assert_eq!(libc::listen(fd, 1), 0);
        fd
    };
    let addr4 = v4.local_addr().expect("addr");
    let client = TcpStream::connect(addr4).expect("connect");
    let (_accepted, _) = v4.accept().expect("accept");

    let listens_of = |want: Option<SocketAddr>| {
        h.matching(|e| match e {
            Event::Listen(l) => {
                l.tgid == me && l.local.map(|(ip, port)| SocketAddr::new(ip, port)) == want
            }
            _ => false,
        })
    };
    let found = h.wait_for(Duration::from_secs(5), |e| {
        matches!(e, Event::Listen(l) if l.tgid == me
            && l.local == Some((addr4.ip(), addr4.port())))
    });
    let Some(Event::Listen(l)) = found else {
        panic!("no listen event for {addr4}");
    };
    assert_eq!(l.source, Source::Kernel);
    assert!(!l.comm.is_empty());
    if let Some(v6) = &v6 {
        let a = v6.local_addr().expect("addr");
        assert!(
            h.wait_for(Duration::from_secs(5), |e| {
                matches!(e, Event::Listen(l) if l.tgid == me && l.local == Some((a.ip(), a.port())))
            })
            .is_some(),
            "no listen event for {a}"
        );
    }
    let port0 = SocketAddr::from(([0, 0, 0, 0], 0));
    assert!(
        h.wait_for(Duration::from_secs(5), |e| {
            matches!(e, Event::Listen(l) if l.tgid == me
                && l.local.map(|(ip, p)| SocketAddr::new(ip, p)) == Some(port0))
        })
        .is_some(),
        "listen() without bind reports port 0 (the port is chosen after the hook)"
    );
    // A child whose only TCP listen is the last of its listen(2) calls:
    // a UNIX socket, a pipe (ENOTSOCK), a bad fd and a UDP socket must add
    // no listen event (the syscall fallback resolves the fd itself).
    // SAFETY: the child only makes async-signal-safe calls, then _exits.
    let child = unsafe {
        let pid = libc::fork();
        assert!(pid >= 0, "fork");
        if pid == 0 {
            let unix = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            libc::listen(unix, 1);
            let mut pipe = [0; 2];
            libc::pipe(pipe.as_mut_ptr());
            libc::listen(pipe[0], 1);
            libc::listen(-1, 1);
            libc::listen(4096, 1);
            let udp = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
            libc::listen(udp, 1);
            let tcp = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            libc::listen(tcp, 1);
            libc::usleep(200_000);
            libc::_exit(0);
        }
        pid as u32
    };
    assert!(
        h.wait_for(Duration::from_secs(5), |e| {
            matches!(e, Event::Listen(l) if l.tgid == child)
        })
        .is_some(),
        "no listen event for the child's TCP socket"
    );
    // SAFETY: reaping the child forked above.
    unsafe { libc::waitpid(child as i32, std::ptr::null_mut(), 0) };
    // Let the ring drain, then count: the accept added no listen event.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(listens_of(Some(addr4)).len(), 1);
    let of_child = h.matching(|e| matches!(e, Event::Listen(l) if l.tgid == child));
    assert_eq!(
        of_child.len(),
        1,
        "only the child's TCP socket listens: {of_child:?}"
    );
    drop(client);
    // SAFETY: closing the descriptor opened above.
    unsafe { libc::close(unbound) };
}
