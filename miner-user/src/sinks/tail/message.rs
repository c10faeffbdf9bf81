//! Stream lines: what an event, an alert or an action looks like on the
//! tail socket. Field names are the alert format's; `detail` is a one-line
//! human summary in which every string a process chose is already escaped
//! ([`crate::text::escape`]), so `jq -r .detail` is as safe as the table.

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::detect::Severity;
use crate::event::{ConnectResult, Event, ProvenanceVerdict};
use crate::sinks::alerts::{ActionRecord, AlertChainLink, AlertRecord};
use crate::text::escape;
use crate::time::WallClock;

/// CPU samples below this fraction of a core are not worth a line.
const CPU_MIN_CORES: f64 = 0.05;
/// At most this many `cpu` lines per sample: the busiest processes.
const CPU_MAX_LINES: usize = 20;
/// Bytes of a payload shown in its detail.
const PAYLOAD_PREVIEW: usize = 48;
/// Longest command line shown in an exec detail.
const CMDLINE_PREVIEW: usize = 200;

/// Message kinds on the stream. Event kinds match `Event::kind` except
/// `cpu` (one line per busy process, not per sample).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TailKind {
    Exec,
    Fork,
    Exit,
    Connect,
    Payload,
    Cpu,
    Provenance,
    /// A thread's MXCSR set grew (the RandomX fingerprint's input).
    Fpu,
    /// A kernel hint of mining set-up (huge pages, MSR).
    Hint,
    /// A process started listening on a TCP socket.
    Listen,
    Alert,
    Action,
    /// Messages this client missed because it fell behind.
    Skipped,
    /// Events the kernel could not deliver to the daemon.
    Lost,
    /// The daemon refused the client; `message` says why.
    Error,
}

impl TailKind {
    pub const ALL: [TailKind; 15] = [
        TailKind::Exec,
        TailKind::Fork,
        TailKind::Exit,
        TailKind::Connect,
        TailKind::Payload,
        TailKind::Cpu,
        TailKind::Provenance,
        TailKind::Fpu,
        TailKind::Hint,
        TailKind::Listen,
        TailKind::Alert,
        TailKind::Action,
        TailKind::Skipped,
        TailKind::Lost,
        TailKind::Error,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TailKind::Exec => "exec",
            TailKind::Fork => "fork",
            TailKind::Exit => "exit",
            TailKind::Connect => "connect",
            TailKind::Payload => "payload",
            TailKind::Cpu => "cpu",
            TailKind::Provenance => "provenance",
            TailKind::Fpu => "fpu",
            TailKind::Hint => "hint",
            TailKind::Listen => "listen",
            TailKind::Alert => "alert",
            TailKind::Action => "action",
            TailKind::Skipped => "skipped",
            TailKind::Lost => "lost",
            TailKind::Error => "error",
        }
    }
}

impl std::str::FromStr for TailKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        TailKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = TailKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown kind {s:?}; expected one of {}", names.join(", "))
            })
    }
}

/// One line of the stream. Field names are the alert format's where they
/// apply; fields that do not apply are absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TailMessage {
    /// RFC 3339 UTC with milliseconds; absent on `skipped` and `error`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub time: String,
    pub kind: TailKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tgid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ppid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Alerts only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// Alerts only: the rule that fired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Human summary (`connect 1.2.3.4:3333 connected`, `cpu 0.98 cores`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// `skipped` and `lost`: how many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Alerts only: the process's ancestors, oldest first, as in the alert.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<AlertChainLink>,
    /// Alerts only: older ancestors were left out of `chain`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub chain_truncated: bool,
    /// `error`: why the daemon refused the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl TailMessage {
    pub fn new(kind: TailKind) -> TailMessage {
        TailMessage {
            time: String::new(),
            kind,
            pid: None,
            tgid: None,
            ppid: None,
            comm: None,
            exe: None,
            cmdline: None,
            uid: None,
            severity: None,
            rule: None,
            detail: String::new(),
            count: None,
            chain: Vec::new(),
            chain_truncated: false,
            message: None,
        }
    }

    pub fn skipped(count: u64) -> TailMessage {
        TailMessage {
            count: Some(count),
            ..TailMessage::new(TailKind::Skipped)
        }
    }

    pub fn error(message: impl Into<String>) -> TailMessage {
        TailMessage {
            message: Some(message.into()),
            ..TailMessage::new(TailKind::Error)
        }
    }

    /// The lines an event becomes: usually one; a CPU sample becomes one per
    /// process above 0.05 core (the 20 busiest), possibly none.
    pub fn from_event(ev: &Event, clock: &WallClock) -> Vec<TailMessage> {
        let time = clock.rfc3339(ev.time());
        let base = |kind| TailMessage {
            time: time.clone(),
            ..TailMessage::new(kind)
        };
        let msg = match ev {
            Event::Exec(e) => {
                let exe = e.exe_path.clone().unwrap_or_else(|| e.filename.clone());
                let mut detail = String::from("exec ");
                if e.argv.is_empty() {
                    detail.push_str(&escape(&exe));
                } else {
                    let argv: Vec<_> = e.argv.iter().map(|a| escape(a)).collect();
                    detail.push_str(&truncate(&argv.join(" "), CMDLINE_PREVIEW));
                }
                if e.exe.memfd {
                    detail.push_str(" [memfd]");
                } else if e.exe.nlink == 0 && !e.exe.unknown {
                    detail.push_str(" [deleted]");
                }
                if e.source == crate::event::Source::Sweep {
                    detail.push_str(" (running at start)");
                }
                TailMessage {
                    pid: Some(e.pid),
                    tgid: Some(e.tgid),
                    ppid: Some(e.ppid),
                    comm: Some(e.comm.clone()),
                    exe: Some(exe),
                    cmdline: Some(e.argv.clone()),
                    uid: Some(e.uid),
                    detail,
                    ..base(TailKind::Exec)
                }
            }
            Event::Fork(e) => TailMessage {
                tgid: Some(e.child_tgid),
                ppid: Some(e.parent_tgid),
                comm: Some(e.comm.clone()),
                detail: format!("fork from {}", e.parent_tgid),
                ..base(TailKind::Fork)
            },
            Event::Exit(e) => {
                let how = if e.signal != 0 {
                    format!("killed by signal {}", e.signal)
                } else {
                    format!("status {}", e.status)
                };
                TailMessage {
                    tgid: Some(e.tgid),
                    comm: Some(e.comm.clone()),
                    detail: format!("exit {how}, cpu {:.2} s", e.cpu_ns as f64 / 1e9),
                    ..base(TailKind::Exit)
                }
            }
            Event::Connect(e) => TailMessage {
                pid: Some(e.pid),
                tgid: Some(e.tgid),
                comm: Some(e.comm.clone()),
                uid: Some(e.uid),
                detail: format!(
                    "connect {} {}",
                    SocketAddr::new(e.daddr, e.dport),
                    connect_result(e.result)
                ),
                ..base(TailKind::Connect)
            },
            Event::Payload(p) => {
                let mut detail = format!(
                    "payload {}B to {} {}",
                    p.payload_len,
                    SocketAddr::new(p.daddr, p.dport),
                    preview(&p.data, p.payload_len as usize)
                );
                if p.untracked {
                    detail.push_str(" (flow predates the agent)");
                }
                TailMessage {
                    tgid: p.tgid,
                    detail,
                    ..base(TailKind::Payload)
                }
            }
            Event::FlowStats(f) => TailMessage {
                tgid: f.tgid,
                detail: format!(
                    "tls flow {} packets, {} bytes (largest {}) in {:.0} s",
                    f.packets,
                    f.bytes,
                    f.max_len,
                    f.time.saturating_sub(f.since) as f64 / 1e9
                ),
                ..base(TailKind::Payload)
            },
            Event::CpuSample(s) => {
                let mut busy: Vec<_> = s
                    .usage
                    .iter()
                    .filter(|u| u.cores(s.interval_ns) > CPU_MIN_CORES)
                    .collect();
                busy.sort_by(|a, b| b.on_cpu_ns.cmp(&a.on_cpu_ns).then(a.tgid.cmp(&b.tgid)));
                return busy
                    .into_iter()
                    .take(CPU_MAX_LINES)
                    .map(|u| TailMessage {
                        tgid: Some(u.tgid),
                        detail: format!("cpu {:.2} cores", u.cores(s.interval_ns)),
                        ..base(TailKind::Cpu)
                    })
                    .collect();
            }
            Event::Provenance(p) => {
                let pv = &p.provenance;
                let mut detail = match pv.verdict {
                    ProvenanceVerdict::Verified => "provenance verified".to_owned(),
                    ProvenanceVerdict::Unverified => "provenance unverified".to_owned(),
                };
                if !pv.reasons.is_empty() {
                    let reasons: Vec<String> = pv.reasons.iter().map(reason_name).collect();
                    let _ = write!(detail, ": {}", reasons.join(", "));
                }
                if let Some(pkg) = &pv.package {
                    let _ = write!(detail, " ({})", escape(pkg));
                }
                if let Some(sha) = &pv.sha256 {
                    let _ = write!(detail, " sha256 {}", sha.get(..12).unwrap_or(sha));
                }
                TailMessage {
                    tgid: Some(p.tgid),
                    exe: pv
                        .path
                        .clone()
                        .or_else(|| (!p.exe.name.is_empty()).then(|| p.exe.name.clone())),
                    detail,
                    ..base(TailKind::Provenance)
                }
            }
            Event::Fpu(f) => TailMessage {
                pid: Some(f.pid),
                tgid: Some(f.tgid),
                comm: Some(f.comm.clone()),
                detail: crate::detect::fingerprint::describe_fpu(f),
                ..base(TailKind::Fpu)
            },
            Event::Hint(h) => TailMessage {
                pid: Some(h.pid),
                tgid: Some(h.tgid),
                comm: Some(h.comm.clone()),
                uid: Some(h.uid),
                // The opened path is the process's choice.
                detail: escape(&crate::detect::fingerprint::describe_hint(h)).into_owned(),
                ..base(TailKind::Hint)
            },
            Event::Listen(e) => {
                let at = e.local.map_or_else(
                    || "(address unknown)".to_owned(),
                    |(ip, port)| SocketAddr::new(ip, port).to_string(),
                );
                let mut detail = format!("listen {at}");
                if e.source == crate::event::Source::Sweep {
                    detail.push_str(" (listening at start)");
                }
                TailMessage {
                    pid: Some(e.pid),
                    tgid: Some(e.tgid),
                    comm: Some(e.comm.clone()),
                    uid: Some(e.uid),
                    detail,
                    ..base(TailKind::Listen)
                }
            }
            Event::Lost(l) => TailMessage {
                count: Some(l.count),
                detail: format!("lost {} events ({})", l.count, l.site.name()),
                ..base(TailKind::Lost)
            },
        };
        vec![msg]
    }

    pub fn from_alert(rec: &AlertRecord) -> TailMessage {
        let mut detail = rec.rule.name().to_owned();
        if !rec.evidence.is_empty() {
            // Evidence details quote paths, argv and agent strings raw.
            let ev: Vec<_> = rec.evidence.iter().map(|e| escape(&e.detail)).collect();
            let _ = write!(detail, ": {}", ev.join("; "));
        }
        if !rec.actions.is_empty() {
            let _ = write!(detail, " | did: {}", escape(&rec.actions.join(", ")));
        }
        if !rec.would.is_empty() {
            let _ = write!(detail, " | would: {}", escape(&rec.would.join(", ")));
        }
        TailMessage {
            time: rec.time.clone(),
            pid: Some(rec.pid),
            tgid: Some(rec.tgid),
            ppid: Some(rec.ppid),
            comm: Some(rec.comm.clone()),
            exe: rec.exe.clone(),
            cmdline: Some(rec.cmdline.clone()),
            uid: Some(rec.uid),
            severity: Some(rec.severity),
            rule: Some(rec.rule.name().to_owned()),
            detail,
            chain: rec.chain.clone(),
            chain_truncated: rec.chain_truncated,
            ..TailMessage::new(TailKind::Alert)
        }
    }

    pub fn from_action(rec: &ActionRecord) -> TailMessage {
        TailMessage {
            time: rec.time.clone(),
            tgid: Some(rec.target),
            detail: format!(
                "{} {} {}: {} ({} ms)",
                rec.action,
                rec.target,
                rec.result,
                escape(&rec.reason),
                rec.latency_ms
            ),
            ..TailMessage::new(TailKind::Action)
        }
    }

    /// The JSON line, newline-terminated.
    pub fn to_line(&self) -> Result<Vec<u8>, serde_json::Error> {
        crate::text::to_json_line(self)
    }
}

fn connect_result(r: ConnectResult) -> String {
    match r {
        ConnectResult::Connected => "connected".into(),
        ConnectResult::InProgress => "in progress".into(),
        ConnectResult::Refused => "refused".into(),
        ConnectResult::Denied => "denied".into(),
        ConnectResult::Failed(errno) => format!("failed ({})", io::Error::from_raw_os_error(errno)),
    }
}

fn reason_name(r: &crate::event::Reason) -> String {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{r:?}"))
}

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// The first bytes of a payload as a quoted, escaped string (see
/// [`crate::text::escape_bytes`]), so a binary or hostile payload cannot
/// move the cursor or recolour the terminal.
fn preview(data: &[u8], total: usize) -> String {
    let shown = &data[..data.len().min(PAYLOAD_PREVIEW)];
    let mut out = String::with_capacity(shown.len() + 8);
    out.push('"');
    out.push_str(&crate::text::escape_bytes(shown));
    if shown.len() < data.len().max(total) {
        out.push('…');
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Connect, CpuSample, CpuUsage, ExeId, Exec, Lost, Payload, Source};
    use crate::sinks::tail::PERMISSION_DENIED;
    use crate::time::Mono;

    fn exec_event() -> Event {
        Event::Exec(Exec {
            time: Mono::from_secs(1),
            tgid: 4242,
            pid: 4242,
            ppid: 1,
            uid: 33,
            gid: 33,
            cgroup_id: 1,
            start_boottime_ns: 0,
            comm: "xmrig".into(),
            filename: "./xmrig".into(),
            argv: vec!["./xmrig".into(), "-o".into(), "pool:3333".into()],
            argv_truncated: false,
            exe: ExeId {
                dev: 1,
                ino: 2,
                nlink: 0,
                memfd: false,
                name: "xmrig".into(),
                unknown: false,
            },
            exe_path: Some("/tmp/xmrig".into()),
            cgroup: None,
            source: Source::Kernel,
        })
    }

    #[test]
    fn events_become_readable_messages() {
        let clock = WallClock::new();
        let one = |ev: &Event| {
            let mut v = TailMessage::from_event(ev, &clock);
            assert_eq!(v.len(), 1);
            v.remove(0)
        };
        let exec = one(&exec_event());
        assert_eq!(exec.kind, TailKind::Exec);
        assert_eq!(
            (exec.pid, exec.tgid, exec.ppid, exec.uid),
            (Some(4242), Some(4242), Some(1), Some(33))
        );
        assert_eq!(exec.exe.as_deref(), Some("/tmp/xmrig"));
        assert_eq!(exec.detail, "exec ./xmrig -o pool:3333 [deleted]");
        assert_eq!(exec.time, clock.rfc3339(Mono::from_secs(1)));

        let connect = one(&Event::Connect(Connect {
            time: Mono(1),
            tgid: 7,
            pid: 8,
            uid: 0,
            comm: "c".into(),
            daddr: "1.2.3.4".parse().expect("ip"),
            dport: 3333,
            result: ConnectResult::Connected,
            cookie: 1,
            v4_mapped: false,
            source: Source::Kernel,
        }));
        assert_eq!(connect.detail, "connect 1.2.3.4:3333 connected");

        let data = br#"{"id":1,"method":"login","params":{"login":"wallet","pass":"x","agent":"XMRig/6.21"}}"#;
        let payload = one(&Event::Payload(Payload {
            time: Mono(1),
            tgid: Some(7),
            cookie: 1,
            saddr: "10.0.0.2".parse().expect("ip"),
            sport: 5000,
            daddr: "10.0.0.1".parse().expect("ip"),
            dport: 3333,
            payload_len: 256,
            packet_index: 0,
            seq: None,
            continuation: false,
            untracked: false,
            data: data.to_vec(),
        }));
        assert_eq!(
            payload.detail,
            r#"payload 256B to 10.0.0.1:3333 "{\"id\":1,\"method\":\"login\",\"params\":{\"login\":\"wall…""#
        );
        let binary = one(&Event::Payload(Payload {
            time: Mono(1),
            tgid: None,
            cookie: 1,
            saddr: "::1".parse().expect("ip"),
            sport: 5000,
            daddr: "::1".parse().expect("ip"),
            dport: 443,
            payload_len: 3,
            packet_index: 0,
            seq: None,
            continuation: false,
            untracked: true,
            data: vec![0x16, 0x1b, b'"'],
        }));
        assert_eq!(
            binary.detail,
            r#"payload 3B to [::1]:443 "\x16\x1b\"" (flow predates the agent)"#
        );

        let lost = one(&Event::Lost(Lost {
            time: Mono(1),
            site: miner_ebpf_common::DropSite::ExecRingFull,
            count: 12,
        }));
        assert_eq!(
            (lost.count, lost.detail.as_str()),
            (Some(12), "lost 12 events (exec_ring_full)")
        );

        let listen = |local, source| {
            one(&Event::Listen(crate::event::Listen {
                time: Mono(1),
                tgid: 9,
                pid: 10,
                uid: 0,
                comm: "redis-server".into(),
                local,
                source,
            }))
        };
        let l = listen(Some(("::".parse().expect("ip"), 6379)), Source::Kernel);
        assert_eq!(
            (l.kind, l.tgid, l.pid),
            (TailKind::Listen, Some(9), Some(10))
        );
        assert_eq!(l.detail, "listen [::]:6379");
        let l = listen(None, Source::Sweep);
        assert_eq!(l.detail, "listen (address unknown) (listening at start)");
    }

    #[test]
    fn cpu_sample_lists_the_twenty_busiest_above_a_twentieth_of_a_core() {
        let mut usage: Vec<CpuUsage> = (0..30)
            .map(|i| CpuUsage {
                tgid: 100 + i,
                on_cpu_ns: 100_000_000 + i as u64 * 10_000_000,
            })
            .collect();
        usage.push(CpuUsage {
            tgid: 1,
            on_cpu_ns: 40_000_000,
        });
        let ev = Event::CpuSample(CpuSample {
            time: Mono(1),
            interval_ns: 1_000_000_000,
            usage,
        });
        let msgs = TailMessage::from_event(&ev, &WallClock::new());
        assert_eq!(msgs.len(), 20);
        assert_eq!(
            (msgs[0].tgid, msgs[0].detail.as_str()),
            (Some(129), "cpu 0.39 cores")
        );
        assert!(
            msgs.iter()
                .all(|m| m.kind == TailKind::Cpu && m.tgid != Some(1))
        );
        let idle = Event::CpuSample(CpuSample {
            time: Mono(1),
            interval_ns: 1_000_000_000,
            usage: vec![CpuUsage {
                tgid: 1,
                on_cpu_ns: 1,
            }],
        });
        assert!(TailMessage::from_event(&idle, &WallClock::new()).is_empty());
    }

    #[test]
    fn alert_and_action_messages() {
        let rec = AlertRecord::from_verdict(
            &crate::sinks::alerts::tests::verdict(),
            &WallClock::new(),
            None,
            None,
        );
        let mut rec = rec;
        rec.would = vec!["kill 4242".into()];
        let msg = TailMessage::from_alert(&rec);
        assert_eq!(msg.chain, rec.chain, "the chain rides along");
        assert_eq!(msg.chain.len(), 2);
        assert_eq!(msg.kind, TailKind::Alert);
        assert_eq!(msg.severity, Some(Severity::Critical));
        assert_eq!(
            msg.detail,
            "pool_protocol_unverified: login to 10.0.0.1:3333 | would: kill 4242"
        );
        let line = String::from_utf8(msg.to_line().expect("json")).expect("utf-8");
        assert!(
            line.contains(r#""kind":"alert""#) && line.contains(r#""severity":"critical""#),
            "{line}"
        );

        let act = ActionRecord::new(
            Mono(1),
            &WallClock::new(),
            crate::response::Reported::Kill,
            4242,
            crate::response::Outcome::Ok,
            "pool_protocol_unverified",
            3,
        );
        let msg = TailMessage::from_action(&act);
        assert_eq!((msg.kind, msg.tgid), (TailKind::Action, Some(4242)));
        assert_eq!(msg.detail, "kill 4242 ok: pool_protocol_unverified (3 ms)");
    }

    #[test]
    fn control_lines_are_exact() {
        assert_eq!(
            TailMessage::skipped(5).to_line().expect("json"),
            b"{\"kind\":\"skipped\",\"count\":5}\n"
        );
        assert_eq!(
            TailMessage::error(PERMISSION_DENIED).to_line().expect("json"),
            b"{\"kind\":\"error\",\"message\":\"permission denied: minerwatch tail requires root\"}\n".to_vec()
        );
    }
}
