//! `minerwatch tail`: the running daemon's live stream, as a table or as
//! JSON lines.
//!
//! Filters run here, not in the daemon: the daemon sends one stream to every
//! client and never does per-client work beyond a queue push.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::detect::Severity;
use crate::sinks::tail::{TailKind, TailMessage};
use crate::text;

pub use crate::cli::TailArgs;

impl TailArgs {
    /// Whether a message passes the filters. `skipped` and `error` always
    /// do: they say the stream itself is incomplete or refused.
    pub fn wants(&self, m: &TailMessage) -> bool {
        if matches!(m.kind, TailKind::Skipped | TailKind::Error) {
            return true;
        }
        if self.alerts_only && m.kind != TailKind::Alert {
            return false;
        }
        if !self.kind.is_empty() && !self.kind.contains(&m.kind) {
            return false;
        }
        if let Some(pid) = self.pid
            && m.tgid != Some(pid)
            && m.pid != Some(pid)
        {
            return false;
        }
        if let Some(needle) = &self.comm
            && !m
                .comm
                .as_deref()
                .is_some_and(|c| c.contains(needle.as_str()))
        {
            return false;
        }
        if let (Some(min), Some(sev)) = (self.min_severity, m.severity)
            && sev < min
        {
            return false;
        }
        true
    }
}

/// Connects and prints until the daemon closes the stream or the user
/// interrupts. Exit codes: 0 interrupted or output closed, 1 the daemon is
/// not running, refused us, or went away.
pub async fn run(args: TailArgs) -> anyhow::Result<i32> {
    let stream = match UnixStream::connect(&args.socket).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{}", connect_error(&args.socket, &e));
            return Ok(1);
        }
    };
    let color =
        !args.json && std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut stdout = tokio::io::stdout();
    tokio::select! {
        res = stream_to(&args, stream, &mut stdout, color) => match res? {
            End::Refused(message) => {
                eprintln!("{message}");
                Ok(1)
            }
            End::DaemonClosed => {
                eprintln!("minerwatch tail: the daemon closed the stream (stopped or restarting)");
                Ok(1)
            }
            End::OutputClosed => Ok(0),
        },
        _ = tokio::signal::ctrl_c() => {
            let _ = stdout.flush().await;
            Ok(0)
        }
    }
}

/// How a stream ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The daemon sent an `error` line (permission, client limit).
    Refused(String),
    DaemonClosed,
    /// Our stdout went away (`| head`): not an error.
    OutputClosed,
}

/// Reads the daemon's lines from `input`, filters and prints them to `out`.
pub async fn stream_to(
    args: &TailArgs,
    input: impl AsyncRead + Unpin,
    out: &mut (impl AsyncWrite + Unpin),
    color: bool,
) -> anyhow::Result<End> {
    let mut reader = BufReader::with_capacity(64 * 1024, input);
    let mut line = Vec::with_capacity(1024);
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut header = !args.json;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .await
            .context("reading from the daemon")?;
        if n == 0 {
            let _ = write_out(out, &buf).await;
            return Ok(End::DaemonClosed);
        }
        let msg = match serde_json::from_slice::<TailMessage>(&line) {
            Ok(m) => m,
            Err(e) => {
                // A newer daemon may send kinds this client does not know.
                log::debug!("tail: unreadable line ({e})");
                continue;
            }
        };
        if msg.kind == TailKind::Error {
            let _ = write_out(out, &buf).await;
            return Ok(End::Refused(
                msg.message
                    .unwrap_or_else(|| "the daemon refused the connection".into()),
            ));
        }
        if header {
            buf.extend_from_slice(header_row(color).as_bytes());
            header = false;
        }
        if args.wants(&msg) {
            if args.json {
                buf.extend_from_slice(&line);
                if !line.ends_with(b"\n") {
                    buf.push(b'\n');
                }
            } else {
                buf.extend_from_slice(format_row(&msg, color).as_bytes());
                buf.push(b'\n');
            }
        }
        // Write when nothing more is waiting: batches under load, immediate
        // when the stream is quiet.
        if reader.buffer().is_empty() || buf.len() >= 64 * 1024 {
            if write_out(out, &buf).await.is_err() {
                return Ok(End::OutputClosed);
            }
            buf.clear();
        }
    }
}

async fn write_out(out: &mut (impl AsyncWrite + Unpin), buf: &[u8]) -> std::io::Result<()> {
    if !buf.is_empty() {
        out.write_all(buf).await?;
    }
    out.flush().await
}

/// The one-line explanation when the daemon cannot be reached.
pub fn connect_error(socket: &Path, e: &std::io::Error) -> String {
    let path = socket.display();
    match e.kind() {
        std::io::ErrorKind::NotFound => {
            format!(
                "minerwatch daemon is not running: no socket at {path}; start it with `minerwatch run`"
            )
        }
        std::io::ErrorKind::ConnectionRefused => format!(
            "minerwatch daemon is not running: nothing listens on {path} (a stale socket); start it with `minerwatch run`"
        ),
        std::io::ErrorKind::PermissionDenied => {
            format!("permission denied: minerwatch tail requires root (cannot open {path})")
        }
        _ => format!("cannot connect to the minerwatch daemon at {path}: {e}"),
    }
}

const TIME_W: usize = 12;
const KIND_W: usize = 10;
const PID_W: usize = 7;
const COMM_W: usize = 15;

const RED: &str = "\x1b[31m";
const BOLD_RED: &str = "\x1b[1;31m";
const YELLOW: &str = "\x1b[33m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

pub fn header_row(color: bool) -> String {
    let row = format!(
        "{:<TIME_W$} {:<KIND_W$} {:>PID_W$} {:<COMM_W$} DETAIL\n",
        "TIME", "KIND", "PID", "COMM"
    );
    if color {
        format!("\x1b[1m{}{RESET}\n", row.trim_end())
    } else {
        row
    }
}

/// One table row: TIME KIND PID COMM DETAIL, fixed-width columns, DETAIL
/// last so long details do not shift the others. Text from the monitored
/// processes is escaped: the comm here, the pieces of `detail` by the
/// daemon (and defanged again here, for a daemon that did not): a miner
/// must not be able to rewrite the operator's terminal.
pub fn format_row(m: &TailMessage, color: bool) -> String {
    let time = m
        .time
        .split_once('T')
        .map(|(_, t)| t.trim_end_matches('Z'))
        .unwrap_or(if m.time.is_empty() {
            ""
        } else {
            m.time.as_str()
        });
    let pid = m
        .tgid
        .or(m.pid)
        .map_or_else(|| "-".to_owned(), |p| p.to_string());
    let comm = comm_cell(m.comm.as_deref().unwrap_or("-"));
    let detail = match m.kind {
        TailKind::Skipped => format!(
            "missed {} messages: this client read too slowly (the daemon does not wait)",
            m.count.unwrap_or(0)
        ),
        TailKind::Error => m.message.clone().unwrap_or_default(),
        TailKind::Alert => {
            let sev = m
                .severity
                .map_or("ALERT".to_owned(), |s| s.name().to_ascii_uppercase());
            format!("{sev} {}{}", m.detail, chain_suffix(m))
        }
        _ => m.detail.clone(),
    };
    let row = format!(
        "{time:<TIME_W$} {:<KIND_W$} {pid:>PID_W$} {comm:<COMM_W$} {}",
        m.kind.name(),
        text::defang(&detail)
    );
    if !color {
        return row;
    }
    let style = match (m.kind, m.severity) {
        (TailKind::Alert, Some(Severity::Critical)) => BOLD_RED,
        (TailKind::Alert, Some(Severity::High)) => RED,
        (TailKind::Alert, Some(Severity::Medium | Severity::Low)) => YELLOW,
        (TailKind::Error, _) => RED,
        (TailKind::Skipped | TailKind::Lost, _) => DIM,
        _ => return row,
    };
    format!("{style}{row}{RESET}")
}

/// The COMM column: the escaped comm ([`text::escape`]), cut at an
/// escape boundary with `…` when it does not fit, so a hostile comm can
/// neither reach the terminal raw nor shift the DETAIL column.
fn comm_cell(comm: &str) -> String {
    let escaped = text::escape(comm);
    if escaped.chars().count() <= COMM_W {
        return escaped.into_owned();
    }
    let mut out = String::with_capacity(COMM_W * 2);
    let mut width = 0;
    for c in comm.chars() {
        let mut buf = [0u8; 4];
        let piece = text::escape(c.encode_utf8(&mut buf));
        let w = piece.chars().count();
        if width + w > COMM_W - 1 {
            break;
        }
        out.push_str(&piece);
        width += w;
    }
    out.push('…');
    out
}

/// ` | chain: java (listening [::]:8080) → sh → .kdevtmpfsi`: the alert's
/// ancestors by executable name, oldest first, ending with the process
/// itself; empty when the alert has no chain. The label says when part of
/// it comes from the start-up sweep.
fn chain_suffix(m: &TailMessage) -> String {
    if m.chain.is_empty() {
        return String::new();
    }
    // Names and addresses are the processes' own choice: escaped.
    let base = |exe: Option<&str>, comm: &str| -> String {
        let name = exe
            .and_then(|e| e.rsplit('/').next())
            .filter(|n| !n.is_empty())
            .unwrap_or(comm);
        text::escape(name).into_owned()
    };
    let mut names: Vec<String> = m
        .chain
        .iter()
        .map(|l| {
            let mut name = base(l.exe.as_deref(), &l.comm);
            if l.listening {
                name.push_str(" (listening");
                if let Some(first) = l.listen.first() {
                    name.push(' ');
                    name.push_str(&text::escape(first));
                }
                name.push(')');
            }
            name
        })
        .collect();
    names.push(base(m.exe.as_deref(), m.comm.as_deref().unwrap_or("?")));
    let label = if m.chain.iter().any(|l| l.best_effort) {
        "chain (partly from the start-up sweep, best effort)"
    } else {
        "chain"
    };
    let cut = if m.chain_truncated { "… → " } else { "" };
    format!(" | {label}: {cut}{}", names.join(" → "))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::defaults;
    use crate::sinks::config::TailConfig;
    use crate::sinks::metrics::Metrics;
    use crate::sinks::tail::{TailHub, TailServer};

    fn msg(kind: TailKind) -> TailMessage {
        TailMessage {
            time: "2026-05-20T10:11:12.345Z".into(),
            ..TailMessage::new(kind)
        }
    }

    #[test]
    fn rows_for_each_kind_are_aligned() {
        let exec = TailMessage {
            tgid: Some(4242),
            comm: Some("xmrig".into()),
            detail: "exec ./xmrig -o pool:3333".into(),
            ..msg(TailKind::Exec)
        };
        let alert = TailMessage {
            tgid: Some(4242),
            comm: Some("kworkerds".into()),
            severity: Some(Severity::Critical),
            detail: "pool_protocol_unverified: login to 10.0.0.1:3333".into(),
            ..msg(TailKind::Alert)
        };
        let cpu = TailMessage {
            tgid: Some(77),
            detail: "cpu 0.98 cores".into(),
            ..msg(TailKind::Cpu)
        };
        let skipped = TailMessage::skipped(12);
        let long_comm = TailMessage {
            pid: Some(9),
            comm: Some("a-very-long-command-name".into()),
            detail: "fork from 1".into(),
            ..msg(TailKind::Fork)
        };
        let cases: &[(&TailMessage, &str)] = &[
            (
                &exec,
                "10:11:12.345 exec          4242 xmrig           exec ./xmrig -o pool:3333",
            ),
            (
                &alert,
                "10:11:12.345 alert         4242 kworkerds       CRITICAL pool_protocol_unverified: login to 10.0.0.1:3333",
            ),
            (
                &cpu,
                "10:11:12.345 cpu             77 -               cpu 0.98 cores",
            ),
            (
                &skipped,
                "             skipped          - -               missed 12 messages: this client read too slowly (the daemon does not wait)",
            ),
            (
                &long_comm,
                "10:11:12.345 fork             9 a-very-long-co… fork from 1",
            ),
        ];
        for (m, want) in cases {
            assert_eq!(format_row(m, false), *want, "kind {:?}", m.kind);
        }
        assert_eq!(
            header_row(false),
            "TIME         KIND           PID COMM            DETAIL\n"
        );
        // DETAIL starts in the same column on every row.
        let col = header_row(false).find("DETAIL").expect("header");
        for (m, _) in cases {
            let row = format_row(m, false);
            assert_eq!(
                row.char_indices().nth(col - 1).map(|(_, c)| c),
                Some(' '),
                "{row}"
            );
        }
    }

    #[test]
    fn alert_row_shows_the_chain_on_one_line() {
        use crate::sinks::alerts::AlertChainLink;
        let link = |pid, exe: &str, listen: &[&str], best_effort| AlertChainLink {
            pid,
            comm: "c".into(),
            exe: Some(exe.into()),
            argv: vec![],
            argv_truncated: false,
            uid: 0,
            start: String::new(),
            exited: false,
            listening: !listen.is_empty(),
            listen: listen.iter().map(|s| s.to_string()).collect(),
            best_effort,
        };
        let mut alert = TailMessage {
            tgid: Some(4242),
            comm: Some(".kdevtmpfsi".into()),
            exe: Some("/tmp/.kdevtmpfsi".into()),
            severity: Some(Severity::High),
            detail: "pool_protocol_unverified: xmrig-login to 10.0.0.1:3333".into(),
            chain: vec![
                link(10, "/usr/bin/java", &["[::]:8080"], false),
                link(20, "/usr/bin/dash", &[], false),
                link(30, "/usr/bin/curl", &[], false),
            ],
            ..msg(TailKind::Alert)
        };
        let row = format_row(&alert, false);
        assert!(
            row.ends_with(
                "HIGH pool_protocol_unverified: xmrig-login to 10.0.0.1:3333 | chain: java (listening [::]:8080) → dash → curl → .kdevtmpfsi"
            ),
            "{row}"
        );
        assert!(!row.contains('\n'));
        alert.chain[0].best_effort = true;
        alert.chain_truncated = true;
        alert.chain[1].exe = None;
        alert.chain[1].comm = "sh\x1b[2J".into();
        let row = format_row(&alert, false);
        assert!(
            row.ends_with(
                " | chain (partly from the start-up sweep, best effort): … → java (listening [::]:8080) → sh\\x1b[2J → curl → .kdevtmpfsi"
            ),
            "{row}"
        );
        alert.chain.clear();
        assert!(!format_row(&alert, false).contains("chain"));
    }

    #[test]
    fn colours_follow_severity() {
        let alert = |s| TailMessage {
            severity: Some(s),
            ..msg(TailKind::Alert)
        };
        assert!(format_row(&alert(Severity::Critical), true).starts_with(BOLD_RED));
        assert!(format_row(&alert(Severity::High), true).starts_with(RED));
        assert!(format_row(&alert(Severity::Medium), true).starts_with(YELLOW));
        assert!(format_row(&TailMessage::skipped(1), true).starts_with(DIM));
        assert!(!format_row(&msg(TailKind::Exec), true).contains('\x1b'));
        assert!(format_row(&alert(Severity::High), true).ends_with(RESET));
    }

    #[test]
    fn process_text_cannot_inject_terminal_escapes() {
        let cases: &[(&str, &str, &str)] = &[
            ("CSI in comm", "x\x1b[2Jy", "x\\x1b[2Jy"),
            ("CR LF in comm", "a\r\nb", "a\\r\\nb"),
            ("cut at an escape", "\x1b\x1b\x1b\x1b", "\\x1b\\x1b\\x1b…"),
            ("bidi in comm", "\u{202e}gifnoc", "\\u{202e}gifnoc"),
            ("literal backslash", "a\\x1b", "a\\\\x1b"),
        ];
        for (name, comm, cell) in cases {
            let m = TailMessage {
                tgid: Some(7),
                comm: Some((*comm).into()),
                detail: "exec evil \x1b]0;owned\x07 \u{9b}31m".into(),
                ..msg(TailKind::Exec)
            };
            let row = format_row(&m, false);
            assert_eq!(
                row,
                format!(
                    "10:11:12.345 exec             7 {cell:<15} exec evil \\x1b]0;owned\\x07 \\u{{9b}}31m"
                ),
                "case: {name}"
            );
            assert!(!row.chars().any(text::is_hidden), "case {name}: {row:?}");
        }
    }

    #[test]
    fn filters() {
        let exec = TailMessage {
            tgid: Some(10),
            pid: Some(11),
            comm: Some("xmrig".into()),
            ..msg(TailKind::Exec)
        };
        let low = TailMessage {
            severity: Some(Severity::Low),
            comm: Some("bash".into()),
            ..msg(TailKind::Alert)
        };
        let high = TailMessage {
            severity: Some(Severity::High),
            ..msg(TailKind::Alert)
        };
        let skipped = TailMessage::skipped(3);
        let args = |f: fn(&mut TailArgs)| {
            let mut a = TailArgs::default();
            f(&mut a);
            a
        };
        let cases: &[(&str, TailArgs, &TailMessage, bool)] = &[
            ("no filter", TailArgs::default(), &exec, true),
            (
                "kind match",
                args(|a| a.kind = vec![TailKind::Connect, TailKind::Exec]),
                &exec,
                true,
            ),
            (
                "kind miss",
                args(|a| a.kind = vec![TailKind::Connect]),
                &exec,
                false,
            ),
            ("pid by tgid", args(|a| a.pid = Some(10)), &exec, true),
            ("pid by thread", args(|a| a.pid = Some(11)), &exec, true),
            ("pid miss", args(|a| a.pid = Some(12)), &exec, false),
            (
                "comm substring",
                args(|a| a.comm = Some("mri".into())),
                &exec,
                true,
            ),
            (
                "comm miss",
                args(|a| a.comm = Some("bash".into())),
                &exec,
                false,
            ),
            (
                "comm absent",
                args(|a| a.comm = Some("x".into())),
                &high,
                false,
            ),
            (
                "alerts only hides exec",
                args(|a| a.alerts_only = true),
                &exec,
                false,
            ),
            (
                "alerts only shows alert",
                args(|a| a.alerts_only = true),
                &low,
                true,
            ),
            (
                "min severity hides low",
                args(|a| a.min_severity = Some(Severity::High)),
                &low,
                false,
            ),
            (
                "min severity keeps high",
                args(|a| a.min_severity = Some(Severity::High)),
                &high,
                true,
            ),
            (
                "min severity ignores exec",
                args(|a| a.min_severity = Some(Severity::High)),
                &exec,
                true,
            ),
            (
                "skipped always shown",
                args(|a| a.kind = vec![TailKind::Alert]),
                &skipped,
                true,
            ),
        ];
        for (name, a, m, want) in cases {
            assert_eq!(a.wants(m), *want, "case: {name}");
        }
    }

    #[test]
    fn clap_parses_kind_lists_and_severity() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            tail: TailArgs,
        }
        let cli = <Cli as clap::Parser>::try_parse_from([
            "tail",
            "--kind",
            "exec,connect",
            "--kind",
            "alert",
            "--min-severity",
            "high",
            "--pid",
            "7",
        ])
        .expect("parses");
        assert_eq!(
            cli.tail.kind,
            vec![TailKind::Exec, TailKind::Connect, TailKind::Alert]
        );
        assert_eq!(cli.tail.min_severity, Some(Severity::High));
        assert_eq!(cli.tail.socket, Path::new(defaults::TAIL_SOCKET));
        let err = <Cli as clap::Parser>::try_parse_from(["tail", "--kind", "nope"])
            .err()
            .expect("rejected");
        assert!(err.to_string().contains("unknown kind \"nope\""), "{err}");
        let help = <Cli as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        assert!(help.contains("Example: --kind exec,connect"), "{help}");
        assert!(
            help.contains("minerwatch tail --alerts-only --min-severity high"),
            "{help}"
        );
    }

    #[tokio::test]
    async fn not_running_is_one_clear_line_and_exit_1() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("none.sock");
        let e = UnixStream::connect(&socket).await.expect_err("no daemon");
        assert_eq!(
            connect_error(&socket, &e),
            format!(
                "minerwatch daemon is not running: no socket at {}; start it with `minerwatch run`",
                socket.display()
            )
        );
        let code = run(TailArgs {
            socket: socket.clone(),
            ..TailArgs::default()
        })
        .await
        .expect("runs");
        assert_eq!(code, 1);

        drop(std::os::unix::net::UnixListener::bind(&socket).expect("bind"));
        let e = UnixStream::connect(&socket).await.expect_err("stale");
        assert!(
            connect_error(&socket, &e).contains("nothing listens on"),
            "{}",
            connect_error(&socket, &e)
        );
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert_eq!(
            connect_error(Path::new("/run/m.sock"), &denied),
            "permission denied: minerwatch tail requires root (cannot open /run/m.sock)"
        );
    }

    #[tokio::test]
    async fn refusal_line_becomes_the_message() {
        let input: &[u8] = b"{\"kind\":\"error\",\"message\":\"permission denied: minerwatch tail requires root\"}\n";
        let mut out = Vec::new();
        let end = stream_to(&TailArgs::default(), input, &mut out, false)
            .await
            .expect("stream");
        assert_eq!(
            end,
            End::Refused("permission denied: minerwatch tail requires root".into())
        );
        assert!(out.is_empty());
    }

    /// Daemon side (hub + socket) to this client, end to end.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn prints_filtered_stream_from_the_daemon() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = TailConfig {
            socket: dir.path().join("m.sock"),
            ..TailConfig::default()
        };
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let hub = TailHub::new(&cfg, &metrics);
        let server = TailServer::bind(&cfg, hub.clone()).expect("bind");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stop_rx.await;
        }));
        let json_args = TailArgs {
            socket: cfg.socket.clone(),
            json: true,
            kind: vec![TailKind::Connect],
            ..TailArgs::default()
        };
        let stream = UnixStream::connect(&cfg.socket).await.expect("connect");
        let client = tokio::spawn(async move {
            let mut out = Vec::new();
            let end = stream_to(&json_args, stream, &mut out, false)
                .await
                .expect("stream");
            (end, String::from_utf8(out).expect("utf-8"))
        });
        let t0 = std::time::Instant::now();
        while hub.client_count() == 0 {
            assert!(t0.elapsed() < std::time::Duration::from_secs(5));
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        hub.publish(&TailMessage {
            detail: "exec x".into(),
            ..msg(TailKind::Exec)
        });
        hub.publish(&TailMessage {
            tgid: Some(5),
            detail: "connect 1.2.3.4:3333 connected".into(),
            ..msg(TailKind::Connect)
        });
        let _ = stop_tx.send(());
        task.await.expect("server");
        let (end, out) = client.await.expect("client");
        assert_eq!(end, End::DaemonClosed);
        assert_eq!(
            out,
            "{\"time\":\"2026-05-20T10:11:12.345Z\",\"kind\":\"connect\",\"tgid\":5,\"detail\":\"connect 1.2.3.4:3333 connected\"}\n"
        );
    }
}
