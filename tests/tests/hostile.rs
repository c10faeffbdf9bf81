//! Hostile strings through the real kernel and the real daemon: a miner
//! chooses its comm, argv, file name and the bytes it sends, and none of
//! them may forge or break what the operator reads. One dropped miner whose
//! directory, file name (so comm) and argv carry ANSI escapes, CR, LF, DEL,
//! C1 controls, a bidi override and invalid UTF-8, and one real process
//! flow starting with raw escape, NUL and non-UTF-8 bytes; then, byte for byte: the
//! alert JSON, the tail's human table, the tail's JSON lines, the daemon's
//! log lines and its `--print-events` lines. Needs root.

mod common;

use std::{
    ffi::OsStr,
    io::Read,
    os::unix::ffi::OsStrExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::SpawnListening;
use common::daemon::{Daemon, minerwatch_bin};

const MINER: &str = env!("CARGO_BIN_EXE_fake_miner");
const POOL: &str = env!("CARGO_BIN_EXE_fake_pool");

/// U+FFFD: what an invalid UTF-8 byte becomes where it enters the daemon.
const R: &str = "\u{fffd}";

/// The dropped binary's file name, so also its comm (10 bytes).
const NAME: &[u8] = b"k\x1b[31m\r\n\xff\xfe";
/// Arguments after the miner's own, each a different attack.
const HOSTILE_ARGS: &[&[u8]] = &[
    b"\x1b]0;owned\x07",              // OSC: retitle the terminal
    "x\u{9b}31m\u{202e}y".as_bytes(), // C1 CSI, bidi override
    b"\xff\xfe-bad\x7f",              // invalid UTF-8, DEL
    b"two\nlines\rback",              // fake line, carriage return
];
/// What a real process sends as the first bytes of its flow.
const RAW_PAYLOAD: &[u8] = b"\x1b[2J\r\n\x00\xff";

struct Reader {
    out: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    child: Child,
}

/// Starts a `minerwatch tail` client and drains its stdout on a thread (a
/// client that stops reading would be dropped by the daemon).
fn tail(socket: &std::path::Path, json: bool) -> Reader {
    let mut cmd = Command::new(minerwatch_bin());
    cmd.arg("tail").arg("--socket").arg(socket);
    if json {
        cmd.arg("--json");
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("minerwatch tail");
    let mut stdout = child.stdout.take().expect("stdout");
    let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = out.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().expect("lock").extend_from_slice(&buf[..n]);
        }
    });
    Reader { out, child }
}

impl Reader {
    /// Waits for the client to end (the daemon closed the stream).
    fn finish(mut self) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() {
            assert!(Instant::now() < deadline, "tail client did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(200));
        self.out.lock().expect("lock").clone()
    }
}

fn pool() -> (Child, u16) {
    Command::new(POOL).args(["--seconds", "60"]).listening()
}

/// No byte that a terminal interprets: C0 controls other than the line
/// feed ending each line, DEL, and C1 controls (UTF-8 `C2 80`–`C2 9F`);
/// and no invisible or reordering character.
fn assert_terminal_safe(what: &str, bytes: &[u8]) {
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let text = std::str::from_utf8(line)
            .unwrap_or_else(|e| panic!("{what}: line {i} is not UTF-8 ({e}): {line:?}"));
        let bad: Vec<char> = text
            .chars()
            .filter(|&c| minerwatch::text::is_hidden(c))
            .collect();
        assert!(
            bad.is_empty(),
            "{what}: line {i} carries raw {bad:?}: {text:?}"
        );
    }
}

fn count_tail_clients(d: &Daemon) -> f64 {
    d.get("/metrics")
        .and_then(|(_, body)| {
            body.lines()
                .find_map(|l| l.strip_prefix("minerwatch_tail_clients "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

#[test]
fn hostile_comm_argv_path_and_payload_are_escaped_byte_for_byte() {
    let (mut pool_child, port) = pool();
    let config = format!("[detector]\nextra_pool_ports = [{port}]\n");
    let d = Daemon::start(&config, &["--print-events"]);
    let table = tail(&d.socket, false);
    let json = tail(&d.socket, true);
    let t0 = Instant::now();
    while count_tail_clients(&d) < 2.0 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "tail clients never connected"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The miner: hostile directory, file name and arguments.
    let tag = common::unique("hostile");
    let mut dir = format!("/tmp/{tag}-d").into_bytes();
    dir.extend_from_slice(b"\x1b[2J");
    let dir = PathBuf::from(OsStr::from_bytes(&dir));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join(OsStr::from_bytes(NAME));
    std::fs::copy(MINER, &path).expect("copy miner");
    let pool_addr = format!("127.0.0.1:{port}");
    let mut miner = Command::new(&path)
        .args(["--pool", &pool_addr, "--proto", "xmrig", "--seconds", "20"])
        .args(HOSTILE_ARGS.iter().map(|a| OsStr::from_bytes(a)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("hostile miner");
    let pid = miner.id();
    // Raw escape, NUL and non-UTF-8 bytes as the first bytes of a flow, in
    // one write (one packet), from this test process.
    let raw_pid = std::process::id();
    {
        use std::io::Write as _;
        let mut c = std::net::TcpStream::connect(&pool_addr).expect("connect to the pool");
        c.write_all(RAW_PAYLOAD).expect("send");
        std::thread::sleep(Duration::from_millis(300));
    }

    let alert = d.wait_alert(Duration::from_secs(5), |a| {
        a["tgid"].as_u64() == Some(pid as u64)
    });
    let _ = miner.kill();
    let _ = miner.wait();
    std::thread::sleep(Duration::from_millis(500));
    let alert = alert.unwrap_or_else(|| {
        let log =
            String::from_utf8_lossy(&std::fs::read(d.dir.join("daemon.log")).unwrap_or_default())
                .into_owned();
        let mine: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(&format!("{pid}")) || l.starts_with('['))
            .collect();
        panic!(
            "no alert for the hostile miner {pid} within 5 s; alerts: {:?}\nlog:\n{}",
            d.alerts(),
            mine.join("\n")
        )
    });
    let alerts_bytes = std::fs::read(&d.alerts).expect("alerts file");
    // Raw bytes: a log that is not UTF-8 must fail the test, not read empty.
    let log = std::fs::read(d.dir.join("daemon.log")).expect("daemon log");
    let (code, _) = d.stop();
    assert_eq!(code, Some(0), "daemon exits 0 on SIGTERM");
    let table = table.finish();
    let json = json.finish();
    let _ = pool_child.kill();
    let _ = pool_child.wait();

    // --- What each string is, escaped, as hand-written expectations. ---
    // The comm and the file name: ESC, CR, LF escaped; the two invalid
    // bytes are U+FFFD each.
    let comm_json = format!(r#""k\u001b[31m\r\n{R}{R}""#);
    let path_json = format!(r#""/tmp/{tag}-d\u001b[2J/k\u001b[31m\r\n{R}{R}""#);
    let argv_json = format!(
        r#"[{path_json},"--pool","{pool_addr}","--proto","xmrig","--seconds","20","\u001b]0;owned\u0007","x\u009b31m\u202ey","{R}{R}-bad\u007f","two\nlines\rback"]"#
    );
    let comm_human = format!(r"k\x1b[31m\r\n{R}{R}");
    let path_human = format!(r"/tmp/{tag}-d\x1b[2J/k\x1b[31m\r\n{R}{R}");
    let argv_human = format!(
        r"{path_human} --pool {pool_addr} --proto xmrig --seconds 20 \x1b]0;owned\x07 x\u{{9b}}31m\u{{202e}}y {R}{R}-bad\x7f two\nlines\rback"
    );

    // --- Alert JSON: valid, escaped, and the same strings once parsed. ---
    assert_terminal_safe("alerts file", &alerts_bytes);
    let alerts_text = String::from_utf8(alerts_bytes).expect("UTF-8");
    for line in alerts_text.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("alerts file: invalid JSON ({e}): {line}"));
    }
    let alert_line = alerts_text
        .lines()
        .find(|l| l.contains(&format!("\"tgid\":{pid},")) && l.contains("\"kind\":\"alert\""))
        .expect("the alert line");
    for (field, want) in [
        ("comm", &comm_json),
        ("exe", &path_json),
        ("cmdline", &argv_json),
    ] {
        let needle = format!("\"{field}\":{want}");
        assert!(
            alert_line.contains(&needle),
            "alert JSON field {field}: want {needle}\nin {alert_line}"
        );
    }
    assert_eq!(
        alert["comm"],
        format!("k\x1b[31m\r\n{R}{R}"),
        "parsed comm is the real one"
    );
    assert_eq!(alert["cmdline"][7], "\x1b]0;owned\x07");
    assert_eq!(alert["cmdline"][8], "x\u{9b}31m\u{202e}y");

    // --- The tail's human table. ---
    assert_terminal_safe("tail table", &table);
    let table = String::from_utf8(table).expect("UTF-8");
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(
        rows.first().copied(),
        Some("TIME         KIND           PID COMM            DETAIL")
    );
    let is_time = |t: &str| {
        t.len() == 12
            && t.char_indices().all(|(i, c)| {
                if [2, 5].contains(&i) {
                    c == ':'
                } else if i == 8 {
                    c == '.'
                } else {
                    c.is_ascii_digit()
                }
            })
    };
    let exec_row = format!("exec       {pid:>7} {comm_human} exec {argv_human}");
    let found = rows
        .iter()
        .find(|r| r.get(13..) == Some(exec_row.as_str()))
        .unwrap_or_else(|| {
            panic!(
                "exec row, byte for byte:\n  want ............. {exec_row}\n  rows for {pid}:\n{}",
                rows.iter()
                    .filter(|r| r.contains(&format!(" {pid} ")))
                    .map(|r| format!("  {r}\n"))
                    .collect::<String>()
            )
        });
    assert!(is_time(&found[..12]), "time column: {found}");
    let alert_prefix = format!("alert      {pid:>7} {comm_human} ");
    let alert_row = rows
        .iter()
        .find(|r| r.get(13..).is_some_and(|x| x.starts_with(&alert_prefix)))
        .unwrap_or_else(|| panic!("alert row starting {alert_prefix:?} in:\n{table}"));
    assert!(
        alert_row.contains(&format!("{path_human}: ")),
        "alert row names the escaped path: {alert_row}"
    );
    let payload_row = format!(
        "payload    {raw_pid:>7} -               payload 8B to {pool_addr} \"\\x1b[2J\\r\\n\\x00\\xff\""
    );
    assert!(
        rows.iter()
            .any(|r| r.get(13..) == Some(payload_row.as_str())),
        "payload row, byte for byte:\n  want ............. {payload_row}\n  rows for {raw_pid}:\n{}",
        rows.iter()
            .filter(|r| r.contains(&format!(" {raw_pid} ")))
            .map(|r| format!("  {r}\n"))
            .collect::<String>()
    );

    // --- The tail's JSON lines. ---
    assert_terminal_safe("tail --json", &json);
    let json = String::from_utf8(json).expect("UTF-8");
    let exec_json = json
        .lines()
        .map(|l| {
            (
                l,
                serde_json::from_str::<serde_json::Value>(l)
                    .unwrap_or_else(|e| panic!("tail --json: invalid JSON ({e}): {l}")),
            )
        })
        .find(|(_, v)| v["kind"] == "exec" && v["tgid"].as_u64() == Some(pid as u64))
        .map(|(l, _)| l.to_owned())
        .expect("exec line on tail --json");
    for (field, want) in [
        ("comm", &comm_json),
        ("exe", &path_json),
        ("cmdline", &argv_json),
    ] {
        let needle = format!("\"{field}\":{want}");
        assert!(
            exec_json.contains(&needle),
            "tail JSON field {field}: want {needle}\nin {exec_json}"
        );
    }

    // --- Log lines and --print-events lines (the daemon's stderr). ---
    assert_terminal_safe("daemon log", &log);
    let log = String::from_utf8(log).expect("UTF-8");
    for line in log.lines() {
        assert!(
            line.starts_with('[') || line.starts_with('{'),
            "every stderr line is a log record or an event: {line:?}"
        );
    }
    let warn = format!("tgid {pid} ({comm_human}) {path_human}");
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.ends_with(&warn)),
        "alert log line ending {warn:?} in:\n{}",
        log.lines()
            .filter(|l| l.contains("WARN"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let printed = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .find(|l| l.contains("\"kind\":\"exec\"") && l.contains(&format!("\"tgid\":{pid},")))
        .expect("--print-events exec line");
    assert!(
        printed.contains(&format!("\"comm\":{comm_json}")),
        "{printed}"
    );
    let v: serde_json::Value = serde_json::from_str(printed).expect("valid JSON");
    assert!(
        v["time"]
            .as_str()
            .is_some_and(|t| t.len() == 24 && t.ends_with('Z')),
        "--print-events time is RFC 3339 with milliseconds: {}",
        v["time"]
    );

    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "hostile strings: alert JSON, tail table, tail JSON, log and --print-events lines matched byte for byte"
    );
}
