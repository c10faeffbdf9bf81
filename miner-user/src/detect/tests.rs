//! Synthetic event-stream tests: each rule fires on real-shaped evidence,
//! and each benign look-alike stays silent over a minute of samples.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::*;
use crate::event::*;
use crate::time::Mono;

pub(crate) mod build {
    //! Builders for synthetic events. Times are milliseconds.
    use super::*;

    pub const T0: u64 = 100_000;

    pub fn ms(t: u64) -> Mono {
        Mono::from_millis(t)
    }

    pub fn boot(tgid: u32) -> u64 {
        u64::from(tgid) * 1_000_000
    }

    pub fn exe_id(path: &str) -> ExeId {
        // FNV-1a: a stable fake inode per path.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in path.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let name = path.rsplit('/').next().unwrap_or(path).to_owned();
        ExeId {
            dev: 0x803,
            ino: 1000 + h % 1_000_000,
            nlink: 1,
            memfd: path.starts_with("memfd:"),
            name,
            unknown: false,
        }
    }

    pub fn exec_struct(t: u64, tgid: u32, ppid: u32, path: &str, argv: &[&str]) -> Exec {
        let comm: String = path
            .rsplit('/')
            .next()
            .unwrap_or(path)
            .chars()
            .take(15)
            .collect();
        Exec {
            time: ms(t),
            tgid,
            pid: tgid,
            ppid,
            uid: 1000,
            gid: 1000,
            cgroup_id: 4242,
            start_boottime_ns: boot(tgid),
            comm,
            filename: path.to_owned(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            argv_truncated: false,
            exe: exe_id(path),
            exe_path: Some(path.to_owned()),
            cgroup: Some("/user.slice/user-1000.slice/session-3.scope".into()),
            source: Source::Kernel,
        }
    }

    pub fn exec(t: u64, tgid: u32, ppid: u32, path: &str, argv: &[&str]) -> Event {
        Event::Exec(exec_struct(t, tgid, ppid, path, argv))
    }

    pub fn sweep_exec(t: u64, tgid: u32, ppid: u32, path: &str, argv: &[&str]) -> Event {
        let mut e = exec_struct(t, tgid, ppid, path, argv);
        e.source = Source::Sweep;
        Event::Exec(e)
    }

    pub fn fork(t: u64, parent: u32, child: u32, comm: &str) -> Event {
        Event::Fork(Fork {
            time: ms(t),
            parent_tgid: parent,
            child_tgid: child,
            child_start_boottime_ns: boot(child),
            comm: comm.into(),
        })
    }

    pub fn exit(t: u64, tgid: u32) -> Event {
        Event::Exit(Exit {
            time: ms(t),
            tgid,
            status: 0,
            signal: 0,
            cpu_ns: 0,
            comm: String::new(),
        })
    }

    pub fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    pub fn connect(t: u64, tgid: u32, addr: &str, port: u16, cookie: u64) -> Event {
        Event::Connect(Connect {
            time: ms(t),
            tgid,
            pid: tgid,
            uid: 1000,
            comm: String::new(),
            daddr: ip(addr),
            dport: port,
            result: ConnectResult::InProgress,
            cookie,
            v4_mapped: false,
            source: Source::Kernel,
        })
    }

    pub fn sweep_connect(t: u64, tgid: u32, addr: &str, port: u16) -> Event {
        let Event::Connect(mut c) = connect(t, tgid, addr, port, 0) else {
            unreachable!()
        };
        c.result = ConnectResult::Connected;
        c.source = Source::Sweep;
        Event::Connect(c)
    }

    pub fn payload(
        t: u64,
        tgid: Option<u32>,
        cookie: u64,
        addr: &str,
        port: u16,
        data: &[u8],
    ) -> Event {
        Event::Payload(Payload {
            time: ms(t),
            tgid,
            cookie,
            saddr: ip("10.0.0.2"),
            sport: 40_000,
            daddr: ip(addr),
            dport: port,
            payload_len: data.len() as u32,
            packet_index: 0,
            seq: None,
            continuation: false,
            untracked: tgid.is_none(),
            data: data.to_vec(),
        })
    }

    pub fn provenance(t: u64, tgid: u32, path: &str, verified: bool) -> Event {
        let (verdict, reasons, package) = if verified {
            (
                ProvenanceVerdict::Verified,
                vec![Reason::Packaged],
                Some("pkg".to_owned()),
            )
        } else {
            let mut r = vec![Reason::NotPackaged];
            if path.starts_with("/tmp")
                || path.starts_with("/dev/shm")
                || path.starts_with("/var/tmp")
            {
                r.push(Reason::WritableDir);
            }
            if path.contains("/.") {
                r.push(Reason::HiddenDir);
            }
            if path.starts_with("memfd:") {
                r = vec![Reason::Memfd];
            }
            (ProvenanceVerdict::Unverified, r, None)
        };
        Event::Provenance(ProvenanceEvent {
            time: ms(t),
            tgid,
            exe: exe_id(path),
            provenance: Provenance {
                verdict,
                reasons,
                sha256: None,
                path: Some(path.into()),
                package,
                vouched_by: None,
            },
        })
    }

    /// One CPU sample at `t` covering the previous second.
    pub fn cpu(t: u64, usage: &[(u32, f64)]) -> Event {
        Event::CpuSample(CpuSample {
            time: ms(t),
            interval_ns: 1_000_000_000,
            usage: usage
                .iter()
                .filter(|(_, c)| *c > 0.0)
                .map(|&(tgid, c)| CpuUsage {
                    tgid,
                    on_cpu_ns: (c * 1e9) as u64,
                })
                .collect(),
        })
    }

    /// 1 Hz samples at `phase + k·1000` ms for k in 1..=secs, cores given
    /// by `f(k)` per tgid.
    pub fn cpu_series(phase: u64, secs: u64, tgids: &[u32], f: impl Fn(u64) -> f64) -> Vec<Event> {
        (1..=secs)
            .map(|k| {
                let usage: Vec<(u32, f64)> = tgids.iter().map(|&t| (t, f(k))).collect();
                cpu(phase + k * 1000, &usage)
            })
            .collect()
    }

    pub const WALLET: &str = "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A";

    pub fn xmrig_login() -> Vec<u8> {
        format!(
            r#"{{"id":1,"jsonrpc":"2.0","method":"login","params":{{"login":"{WALLET}","pass":"x","agent":"XMRig/6.21.0 (Linux x86_64) libuv/1.44.2 gcc/11.4.0","rigid":"","algo":["rx/0","cn/r","cn/2","cn-heavy/xhv","argon2/chukwav2","ghostrider"]}}}}"#
        )
        .into_bytes()[..256]
            .to_vec()
    }

    pub fn stratum_subscribe() -> Vec<u8> {
        b"{\"id\": 1, \"method\": \"mining.subscribe\", \"params\": [\"cpuminer-opt/3.23.3\"]}\n"
            .to_vec()
    }

    pub fn keepalived() -> Vec<u8> {
        br#"{"id":12,"jsonrpc":"2.0","method":"keepalived","params":{"id":"8a3b1f2c-6d1e"}}"#
            .to_vec()
    }

    pub fn tls_hello() -> Vec<u8> {
        let mut v = vec![
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ];
        v.extend_from_slice(&[0x5a; 32]);
        v
    }

    pub fn http_get() -> Vec<u8> {
        b"GET /metrics HTTP/1.1\r\nHost: 10.0.0.9:3333\r\nUser-Agent: Go-http-client/1.1\r\n\r\n"
            .to_vec()
    }
}

use build::*;

/// Feeds events in time order with a tick every second until `until_ms`.
pub(crate) fn run_with(
    cfg: DetectorConfig,
    mut events: Vec<Event>,
    until_ms: u64,
) -> (Vec<Verdict>, Detector) {
    events.sort_by_key(|e| e.time());
    let mut det = Detector::new(cfg);
    let mut out = Vec::new();
    let mut next_tick =
        (events.first().map_or(T0, |e| e.time().ns() / 1_000_000) / 1000 + 1) * 1000;
    let feed_ticks = |det: &mut Detector, out: &mut Vec<Verdict>, upto: u64, next: &mut u64| {
        while *next <= upto {
            out.extend(det.step(Input::Tick, ms(*next)));
            *next += 1000;
        }
    };
    for e in events {
        let t = e.time();
        feed_ticks(&mut det, &mut out, t.ns() / 1_000_000, &mut next_tick);
        out.extend(det.step(Input::Event(e), t));
    }
    feed_ticks(&mut det, &mut out, until_ms, &mut next_tick);
    (out, det)
}

fn run(events: Vec<Event>, until_ms: u64) -> Vec<Verdict> {
    run_with(DetectorConfig::default(), events, until_ms).0
}

fn rules_of(verdicts: &[Verdict]) -> BTreeMap<(Rule, u32), Severity> {
    let mut m = BTreeMap::new();
    for v in verdicts {
        let e = m.entry((v.rule, v.tgid)).or_insert(v.severity);
        *e = (*e).max(v.severity);
    }
    m
}

const POOL: &str = "203.0.113.50";

/// An XMRig-like miner renamed and dropped in a hidden /tmp dir.
fn xmrig_in_tmp(tgid: u32, cores: f64) -> Vec<Event> {
    let path = "/tmp/.X11-unix/.x/kworker";
    let mut v = vec![
        exec(T0, tgid, 1, path, &["kworker", "-c", "config.json"]),
        connect(T0 + 20, tgid, POOL, 3333, 77),
        payload(T0 + 50, Some(tgid), 77, POOL, 3333, &xmrig_login()),
        provenance(T0 + 80, tgid, path, false),
    ];
    v.extend(cpu_series(T0 + 300, 60, &[tgid], |_| cores));
    v
}

struct Case {
    name: &'static str,
    events: Vec<Event>,
    /// (rule, tgid) → highest severity expected; empty for benign.
    want: Vec<(Rule, u32, Severity)>,
}

fn positive_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    cases.push(Case {
        name: "xmrig login from /tmp: high at once, critical when busy, pool port too",
        events: xmrig_in_tmp(500, 2.0),
        want: vec![
            (Rule::PoolProtocolUnverified, 500, Severity::Critical),
            (Rule::PoolPortBusyUnverified, 500, Severity::High),
        ],
    });
    // A miner script under packaged python3: verified binary, stratum, busy.
    let py = "/usr/bin/python3.12";
    let mut ev = vec![
        exec(T0, 600, 1, py, &["python3", "miner.py"]),
        provenance(T0 + 60, 600, py, true),
        connect(T0 + 100, 600, POOL, 4444, 5),
        payload(T0 + 120, Some(600), 5, POOL, 4444, &stratum_subscribe()),
    ];
    ev.extend(cpu_series(T0 + 500, 60, &[600], |_| 1.0));
    cases.push(Case {
        name: "stratum from packaged python3, busy",
        events: ev,
        want: vec![(Rule::PoolProtocolBusy, 600, Severity::High)],
    });
    // Unverified binary on a pool port, protocol unseen (no payload peek).
    let bin = "/var/tmp/.cache/systemd-helper";
    let mut ev = vec![
        exec(T0, 700, 1, bin, &["systemd-helper"]),
        provenance(T0 + 90, 700, bin, false),
        connect(T0 + 150, 700, POOL, 14444, 9),
    ];
    ev.extend(cpu_series(T0 + 700, 60, &[700], |_| 1.0));
    cases.push(Case {
        name: "unverified, pool port, busy",
        events: ev,
        want: vec![(Rule::PoolPortBusyUnverified, 700, Severity::High)],
    });
    // TLS to a pool TLS port.
    let mut ev = vec![
        exec(T0, 710, 1, "/dev/shm/x", &["x"]),
        provenance(T0 + 90, 710, "/dev/shm/x", false),
        connect(T0 + 150, 710, POOL, 14433, 10),
        payload(T0 + 160, Some(710), 10, POOL, 14433, &tls_hello()),
    ];
    ev.extend(cpu_series(T0 + 700, 60, &[710], |_| 1.0));
    cases.push(Case {
        name: "unverified, TLS to pool port, busy",
        events: ev,
        want: vec![(Rule::PoolPortBusyUnverified, 710, Severity::High)],
    });
    // Miner over TLS on 443, run from a memfd, options on the command line.
    let argv = [
        "[kworker/0:1]",
        "-o",
        "stratum+ssl://pool.example.org:443",
        "-u",
        WALLET,
        "--donate-level=0",
    ];
    let mut ev = vec![
        exec(T0, 800, 1, "memfd:x", &argv),
        provenance(T0 + 70, 800, "memfd:x", false),
        connect(T0 + 100, 800, POOL, 443, 11),
        payload(T0 + 110, Some(800), 11, POOL, 443, &tls_hello()),
    ];
    ev.extend(cpu_series(T0 + 250, 60, &[800], |_| 0.5));
    cases.push(Case {
        name: "miner command line, TLS on 443, memfd",
        events: ev,
        want: vec![(Rule::MinerCommandLine, 800, Severity::High)],
    });
    // TLS on 443 to a pool's server name (SNI in the peek).
    let mut ev = vec![
        exec(T0, 810, 1, "/tmp/sshd", &["sshd"]),
        provenance(T0 + 70, 810, "/tmp/sshd", false),
        connect(T0 + 100, 810, POOL, 443, 12),
        payload(
            T0 + 110,
            Some(810),
            12,
            POOL,
            443,
            &client_hello_sni("gulf.moneroocean.stream"),
        ),
    ];
    ev.extend(cpu_series(T0 + 250, 60, &[810], |_| 1.0));
    cases.push(Case {
        name: "TLS on 443 to a pool server name",
        events: ev,
        want: vec![(Rule::PoolPortBusyUnverified, 810, Severity::High)],
    });
    // Holder + 2 forked workers: the holder idles, the workers burn.
    let bin = "/tmp/.ICE-unix/minerd";
    let mut ev = vec![
        exec(T0, 900, 1, bin, &["minerd"]),
        provenance(T0 + 80, 900, bin, false),
        connect(T0 + 100, 900, POOL, 5555, 13),
        payload(T0 + 120, Some(900), 13, POOL, 5555, &stratum_subscribe()),
        fork(T0 + 200, 900, 901, "minerd"),
        fork(T0 + 210, 900, 902, "minerd"),
    ];
    ev.extend(cpu_series(T0 + 400, 60, &[901, 902], |_| 0.35));
    cases.push(Case {
        name: "holder + 2 workers",
        events: ev,
        want: vec![
            (Rule::PoolProtocolUnverified, 900, Severity::Critical),
            (Rule::MinerGroup, 900, Severity::High),
        ],
    });
    cases
}

pub(crate) fn client_hello_sni(sni: &str) -> Vec<u8> {
    use super::protocol::tls::tests::{hello, sni_ext};
    hello(&[0x1301], &[sni_ext(sni)])
}

fn benign_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let silent = |name, events| Case {
        name,
        events,
        want: vec![],
    };
    // Sustained CPU alone (verified).
    let mut ev = vec![
        exec(T0, 100, 1, "/usr/bin/stress-ng", &["stress-ng", "-c", "1"]),
        provenance(T0 + 50, 100, "/usr/bin/stress-ng", true),
    ];
    ev.extend(cpu_series(T0, 60, &[100], |_| 1.0));
    cases.push(silent("sustained CPU alone", ev));
    // Unverified + CPU, no network at all.
    let mut ev = vec![
        exec(T0, 101, 1, "/home/dev/target/release/bench", &["bench"]),
        provenance(T0 + 50, 101, "/home/dev/target/release/bench", false),
    ];
    ev.extend(cpu_series(T0, 60, &[101], |_| 3.5));
    cases.push(silent("busy unverified binary with no network", ev));
    // Verified binary briefly on a pool port.
    let mut ev = vec![
        exec(T0, 102, 1, "/usr/bin/nc", &["nc", "-z", "10.0.0.9", "3333"]),
        provenance(T0 + 40, 102, "/usr/bin/nc", true),
        connect(T0 + 60, 102, "10.0.0.9", 3333, 20),
        exit(T0 + 90, 102),
    ];
    ev.extend(cpu_series(T0, 60, &[103], |_| 0.0));
    cases.push(silent("verified binary briefly on a pool port", ev));
    // Pool health check: verified python speaks stratum, stays idle.
    let py = "/usr/bin/python3.12";
    let mut ev = vec![
        exec(T0, 104, 1, py, &["python3", "/opt/monitor/check_pool.py"]),
        provenance(T0 + 50, 104, py, true),
        connect(T0 + 100, 104, POOL, 3333, 21),
        payload(T0 + 110, Some(104), 21, POOL, 3333, &stratum_subscribe()),
    ];
    ev.extend(cpu_series(T0, 60, &[104], |k| {
        if k % 10 == 0 { 0.05 } else { 0.01 }
    }));
    cases.push(silent("verified pool health check, idle", ev));
    // Compile burst: make spawns many short cc1 at full core.
    let mut ev = vec![
        exec(T0, 200, 1, "/usr/bin/make", &["make", "-j4"]),
        provenance(T0 + 30, 200, "/usr/bin/make", true),
    ];
    for i in 0..80u32 {
        let t = T0 + 100 + u64::from(i) * 700;
        let pid = 1000 + i;
        ev.push(fork(t, 200, pid, "make"));
        ev.push(exec(
            t + 1,
            pid,
            200,
            "/usr/libexec/gcc/x86_64-linux-gnu/13/cc1",
            &["cc1", "-quiet", "-O2", "f.c", "-o", "/tmp/ccX.s"],
        ));
        ev.push(provenance(
            t + 20,
            pid,
            "/usr/libexec/gcc/x86_64-linux-gnu/13/cc1",
            true,
        ));
        ev.push(cpu(t + 1000, &[(pid, 0.9)]));
        ev.push(exit(t + 1400, pid));
    }
    cases.push(silent("compile burst", ev));
    // xz -9 on a big file.
    let mut ev = vec![
        exec(
            T0,
            300,
            1,
            "/usr/bin/xz",
            &["xz", "-9", "-T0", "backup.tar"],
        ),
        provenance(T0 + 30, 300, "/usr/bin/xz", true),
    ];
    ev.extend(cpu_series(T0, 60, &[300], |_| 2.0));
    cases.push(silent("xz -9", ev));
    // A database under load, with clients connecting to it.
    let mut ev = vec![
        exec(
            T0,
            400,
            1,
            "/usr/lib/postgresql/16/bin/postgres",
            &["postgres", "-D", "/var/lib/postgresql"],
        ),
        provenance(T0 + 30, 400, "/usr/lib/postgresql/16/bin/postgres", true),
    ];
    ev.extend(cpu_series(T0, 60, &[400], |_| 3.0));
    cases.push(silent("database under load", ev));
    // An unpackaged service burning CPU while it talks HTTP to 3333 and
    // 8080, opening new connections while already busy.
    let svc = "/opt/acme/bin/api-server";
    let mut ev = vec![
        exec(T0, 450, 1, svc, &["api-server", "--listen", ":8000"]),
        provenance(T0 + 50, 450, svc, false),
    ];
    for (i, at) in [100u64, 10_000, 20_000, 40_000].into_iter().enumerate() {
        let cookie = 30 + 2 * i as u64;
        ev.push(connect(T0 + at, 450, "10.0.0.9", 3333, cookie));
        ev.push(payload(
            T0 + at + 1,
            Some(450),
            cookie,
            "10.0.0.9",
            3333,
            &http_get(),
        ));
        ev.push(connect(T0 + at + 5, 450, "10.0.0.9", 8080, cookie + 1));
        ev.push(payload(
            T0 + at + 6,
            Some(450),
            cookie + 1,
            "10.0.0.9",
            8080,
            &http_get(),
        ));
    }
    ev.extend(cpu_series(T0, 60, &[450], |_| 1.5));
    cases.push(silent(
        "unpackaged service, HTTP to pool-numbered ports, busy",
        ev,
    ));
    // Other protocols on pool ports from a busy unverified binary.
    let tool = "/opt/tools/etl";
    let mut ev = vec![
        exec(T0, 460, 1, tool, &["etl"]),
        provenance(T0 + 50, 460, tool, false),
    ];
    // Connects while already busy (samples from T0), first bytes 10 ms later.
    let others: [(u16, Vec<u8>); 5] = [
        (2222, b"SSH-2.0-Go\r\n".to_vec()),
        (5555, vec![0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]),
        (6666, b"*1\r\n$4\r\nPING\r\n".to_vec()),
        (
            7777,
            br#"{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}"#.to_vec(),
        ),
        (
            9999,
            br#"{"jsonrpc":"1.0","id":"x","method":"getblocktemplate","params":[]}"#.to_vec(),
        ),
    ];
    for (i, (port, data)) in others.iter().enumerate() {
        let cookie = 40 + i as u64;
        ev.push(connect(
            T0 + 5_000 + i as u64,
            460,
            "10.0.0.9",
            *port,
            cookie,
        ));
        ev.push(payload(
            T0 + 5_010 + i as u64,
            Some(460),
            cookie,
            "10.0.0.9",
            *port,
            data,
        ));
    }
    ev.extend(cpu_series(T0, 60, &[460], |_| 1.0));
    cases.push(silent(
        "busy unverified, SSH/Postgres/Redis/JSON-RPC on pool ports",
        ev,
    ));
    // TLS to 443 (not a pool name) from a busy unverified binary.
    let mut ev = vec![
        exec(T0, 470, 1, "/opt/app/sync", &["sync"]),
        provenance(T0 + 50, 470, "/opt/app/sync", false),
        connect(T0 + 100, 470, "198.51.100.1", 443, 50),
        payload(
            T0 + 110,
            Some(470),
            50,
            "198.51.100.1",
            443,
            &client_hello_sni("api.github.com"),
        ),
    ];
    ev.extend(cpu_series(T0, 60, &[470], |_| 1.0));
    cases.push(silent("busy unverified, TLS to 443", ev));
    // grep for pool URLs: miner-looking argv, but a verified binary.
    let mut ev = vec![
        exec(
            T0,
            480,
            1,
            "/usr/bin/grep",
            &["grep", "-r", "stratum+tcp://", "/var/log"],
        ),
        provenance(T0 + 30, 480, "/usr/bin/grep", true),
    ];
    ev.extend(cpu_series(T0, 60, &[480], |_| 1.0));
    cases.push(silent("grep for stratum URLs", ev));
    // Stratum from an unverified binary that is refused by the pool.
    let mut ev = vec![
        exec(T0, 490, 1, "/tmp/m", &["m"]),
        provenance(T0 + 50, 490, "/tmp/m", false),
    ];
    let Event::Connect(mut c) = connect(T0 + 100, 490, POOL, 3333, 60) else {
        unreachable!()
    };
    c.result = ConnectResult::Refused;
    ev.push(Event::Connect(c));
    ev.extend(cpu_series(T0, 60, &[490], |_| 1.0));
    cases.push(silent(
        "busy unverified, refused connect to a pool port",
        ev,
    ));
    cases
}

#[test]
fn each_rule_fires_and_each_look_alike_stays_silent() {
    for case in positive_cases().into_iter().chain(benign_cases()) {
        let verdicts = run(case.events, T0 + 62_000);
        let got = rules_of(&verdicts);
        let want: BTreeMap<(Rule, u32), Severity> =
            case.want.iter().map(|&(r, t, s)| ((r, t), s)).collect();
        assert_eq!(got, want, "case: {}\n{verdicts:#?}", case.name);
        for v in &verdicts {
            assert!(
                v.severity >= Severity::High,
                "case {}: no low-severity noise",
                case.name
            );
        }
    }
}

#[test]
fn pool_protocol_from_unverified_binary_fires_with_latency_from_exec() {
    let path = "/tmp/.x/kworker";
    let mut d = Detector::new(DetectorConfig::default());
    assert!(
        d.step(Input::Event(exec(T0, 10, 1, path, &["kworker"])), ms(T0))
            .is_empty()
    );
    assert!(
        d.step(
            Input::Event(connect(T0 + 20, 10, POOL, 3333, 1)),
            ms(T0 + 20)
        )
        .is_empty()
    );
    assert!(
        d.step(
            Input::Event(payload(T0 + 50, Some(10), 1, POOL, 3333, &xmrig_login())),
            ms(T0 + 50)
        )
        .is_empty()
    );
    let v = d.step(
        Input::Event(provenance(T0 + 80, 10, path, false)),
        ms(T0 + 80),
    );
    assert_eq!(v.len(), 1, "{v:#?}");
    let v = &v[0];
    assert_eq!(
        (v.rule, v.severity, v.tgid, v.latency_ms),
        (Rule::PoolProtocolUnverified, Severity::High, 10, 80)
    );
    let signals: Vec<&str> = v.evidence.iter().map(|e| e.signal.name()).collect();
    assert_eq!(signals, ["pool_protocol", "unverified_exec"]);
    assert_eq!(v.evidence[0].time, ms(T0 + 50));
    assert!(
        v.evidence[0].detail.contains("xmrig-login"),
        "{}",
        v.evidence[0].detail
    );
    assert_eq!(v.exe.as_deref(), Some(path));
    assert_eq!(
        (v.exe_dev, v.exe_ino, v.start_boottime_ns),
        (0x803, exe_id(path).ino, boot(10))
    );
    assert_eq!(v.cgroup_id, 4242);
    assert!(v.provenance.as_ref().is_some_and(|p| !p.is_verified()));
    // And it serialises as the sinks expect.
    let json = serde_json::to_value(v).unwrap();
    assert_eq!(json["rule"], "pool_protocol_unverified");
    assert_eq!(json["severity"], "high");
}

#[test]
fn provenance_before_payload_fires_on_the_payload() {
    let path = "/dev/shm/.s";
    let v = run(
        vec![
            exec(T0, 11, 1, path, &["s"]),
            provenance(T0 + 30, 11, path, false),
            connect(T0 + 40, 11, POOL, 80, 2),
            payload(T0 + 45, Some(11), 2, POOL, 80, &stratum_subscribe()),
        ],
        T0 + 100,
    );
    assert_eq!(v.len(), 1);
    assert_eq!(
        (v[0].rule, v[0].time, v[0].latency_ms),
        (Rule::PoolProtocolUnverified, ms(T0 + 45), 45)
    );
}

#[test]
fn one_verdict_per_rule_and_escalation_realerts_once() {
    let verdicts = run(xmrig_in_tmp(500, 1.0), T0 + 120_000);
    let r1: Vec<Severity> = verdicts
        .iter()
        .filter(|v| v.rule == Rule::PoolProtocolUnverified)
        .map(|v| v.severity)
        .collect();
    assert_eq!(r1, [Severity::High, Severity::Critical]);
    let r3 = verdicts
        .iter()
        .filter(|v| v.rule == Rule::PoolPortBusyUnverified)
        .count();
    assert_eq!(r3, 1);
    assert_eq!(verdicts.len(), 3, "{verdicts:#?}");
    // Critical within ~3-4 s of exec (1 Hz samples, 2.5 busy seconds).
    let crit = verdicts
        .iter()
        .find(|v| v.severity == Severity::Critical)
        .unwrap();
    assert!(crit.time <= ms(T0 + 4_000), "critical at {:?}", crit.time);
    assert!(crit.evidence_of(Signal::CpuSustained).is_some());
}

#[test]
fn pool_port_rule_fires_within_5s_for_throttled_miner() {
    // Half a core (cpulimit / --cpu-max-threads-hint=50), exec at a random
    // phase of the 1 Hz poll.
    for phase in [0u64, 130, 500, 999] {
        let bin = "/tmp/.cache/php-fpm";
        let mut ev = vec![
            exec(T0, 20, 1, bin, &["php-fpm"]),
            connect(T0 + 100, 20, POOL, 3333, 3),
            provenance(T0 + 120, 20, bin, false),
        ];
        ev.extend(cpu_series(T0 + phase - 1000, 30, &[20], |k| {
            if k == 1 { 0.0 } else { 0.5 }
        }));
        let v = run(ev, T0 + 30_000);
        let r3 = v
            .iter()
            .find(|v| v.rule == Rule::PoolPortBusyUnverified)
            .unwrap_or_else(|| panic!("phase {phase}: {v:#?}"));
        assert!(
            r3.latency_ms <= 5_000,
            "phase {phase}: latency {}",
            r3.latency_ms
        );
    }
}

#[test]
fn pause_and_resume_miner_is_sustained() {
    let bin = "/tmp/x";
    let mut ev = vec![
        exec(T0, 21, 1, bin, &["x"]),
        connect(T0 + 100, 21, POOL, 7777, 4),
        provenance(T0 + 120, 21, bin, false),
    ];
    // Busy 2 s, idle 3 s, repeatedly: never 3 busy seconds in a row.
    ev.extend(cpu_series(
        T0,
        60,
        &[21],
        |k| if k % 5 < 2 { 1.0 } else { 0.0 },
    ));
    let v = run(ev, T0 + 60_000);
    let r3 = v
        .iter()
        .find(|v| v.rule == Rule::PoolPortBusyUnverified)
        .expect("detected");
    assert!(r3.time <= ms(T0 + 12_000), "at {:?}", r3.time);
}

#[test]
fn miner_started_before_the_agent_is_detected() {
    let bin = "/var/tmp/.x/xmr";
    let agent = T0;
    let mut ev = vec![
        sweep_exec(agent, 30, 1, bin, &["xmr"]),
        sweep_connect(agent + 5, 30, POOL, 14444),
        provenance(agent + 100, 30, bin, false),
        // Mid-stream packet of the pre-agent flow: no tgid, unknown cookie.
        payload(agent + 2_000, None, 999, POOL, 14444, &keepalived()),
    ];
    ev.extend(cpu_series(agent, 30, &[30], |_| 1.0));
    let v = run(ev, agent + 30_000);
    let got = rules_of(&v);
    assert_eq!(
        got.get(&(Rule::PoolPortBusyUnverified, 30)),
        Some(&Severity::High),
        "{v:#?}"
    );
    assert_eq!(
        got.get(&(Rule::PoolProtocolUnverified, 30)),
        Some(&Severity::Critical),
        "{v:#?}"
    );
    let r3 = v
        .iter()
        .find(|v| v.rule == Rule::PoolPortBusyUnverified)
        .unwrap();
    assert!(
        r3.latency_ms <= 5_000,
        "latency from first evidence: {}",
        r3.latency_ms
    );
}

#[test]
fn untracked_payload_resolves_by_cookie_or_is_ignored() {
    let mut d = Detector::new(DetectorConfig::default());
    d.step(Input::Event(exec(T0, 40, 1, "/tmp/a", &["a"])), ms(T0));
    d.step(
        Input::Event(provenance(T0 + 1, 40, "/tmp/a", false)),
        ms(T0 + 1),
    );
    d.step(
        Input::Event(connect(T0 + 2, 40, "10.1.1.1", 443, 5)),
        ms(T0 + 2),
    );
    // Known cookie: resolved.
    let v = d.step(
        Input::Event(payload(
            T0 + 3,
            None,
            5,
            "10.1.1.1",
            443,
            &stratum_subscribe(),
        )),
        ms(T0 + 3),
    );
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].tgid, 40);
    // Unknown cookie, no sweep flow: ignored and counted.
    let v = d.step(
        Input::Event(payload(
            T0 + 4,
            None,
            6,
            "10.1.1.2",
            3333,
            &stratum_subscribe(),
        )),
        ms(T0 + 4),
    );
    assert!(v.is_empty());
    assert_eq!(d.stats().payloads_unresolved_total, 1);
    assert_eq!(
        d.stats().payloads_by_protocol.get(&Protocol::StratumV1),
        Some(&2)
    );
}

#[test]
fn forked_child_inherits_and_daemonized_miner_keeps_its_history() {
    let bin = "/tmp/.d/miner";
    let mut ev = vec![
        exec(T0, 50, 1, bin, &["miner", "-B"]),
        connect(T0 + 10, 50, POOL, 3333, 8),
        payload(T0 + 20, Some(50), 8, POOL, 3333, &xmrig_login()),
        // Daemonize: fork, parent exits; provenance lands after.
        fork(T0 + 30, 50, 51, "miner"),
        exit(T0 + 35, 50),
        provenance(T0 + 90, 50, bin, false),
    ];
    ev.extend(cpu_series(T0 + 200, 30, &[51], |_| 1.0));
    let (v, det) = run_with(DetectorConfig::default(), ev, T0 + 30_000);
    let got = rules_of(&v);
    assert_eq!(
        got.get(&(Rule::PoolProtocolUnverified, 51)),
        Some(&Severity::Critical),
        "{v:#?}"
    );
    assert!(
        !got.keys().any(|(_, t)| *t == 50),
        "the exited parent gets nothing: {v:#?}"
    );
    let first = v.iter().find(|v| v.tgid == 51).unwrap();
    assert_eq!(
        first.evidence[0].time,
        ms(T0 + 20),
        "evidence keeps its original time"
    );
    assert_eq!(
        first.latency_ms, 70,
        "from the first evidence (login at +20) to provenance at +90"
    );
    let child = det.table().get(51).unwrap();
    assert_eq!(
        (child.ppid, child.exe.ino, child.argv.len()),
        (50, exe_id(bin).ino, 2)
    );
    assert!(child.provenance.is_some(), "provenance applied by ExeId");
}

#[test]
fn children_of_a_flagged_miner_do_not_storm() {
    let bin = "/tmp/.f/forker";
    let mut ev = vec![
        exec(T0, 60, 1, bin, &["forker", "--donate-level=1"]),
        provenance(T0 + 30, 60, bin, false),
        connect(T0 + 40, 60, POOL, 3333, 9),
        payload(T0 + 50, Some(60), 9, POOL, 3333, &xmrig_login()),
    ];
    // 100 short-lived busy children, each forked from the flagged parent,
    // polled at 1 Hz while alive.
    let life = |i: u32| {
        (
            T0 + 200 + u64::from(i) * 300,
            T0 + 200 + u64::from(i) * 300 + 3100,
        )
    };
    for i in 0..100u32 {
        let (born, dies) = life(i);
        ev.push(fork(born, 60, 2000 + i, "forker"));
        ev.push(exit(dies, 2000 + i));
    }
    for s in 1..40u64 {
        let t = T0 + s * 1000;
        let mut usage: Vec<(u32, f64)> = (0..100u32)
            .filter(|&i| life(i).0 < t && t < life(i).1)
            .map(|i| (2000 + i, 1.0))
            .collect();
        usage.push((60, 0.1));
        ev.push(cpu(t, &usage));
    }
    let v = run(ev, T0 + 40_000);
    assert!(v.iter().all(|v| v.tgid == 60), "{v:#?}");
    let rules: BTreeSet<Rule> = v.iter().map(|v| v.rule).collect();
    assert!(
        rules.contains(&Rule::PoolProtocolUnverified) && rules.contains(&Rule::MinerGroup),
        "{rules:?}"
    );
    assert!(v.len() <= 3, "{v:#?}");
    let group = v.iter().find(|v| v.rule == Rule::MinerGroup).unwrap();
    assert!(!group.members.is_empty() && group.members.iter().all(|m| *m >= 2000));
}

#[test]
fn multi_process_miner_is_a_group_with_members() {
    // Holder speaks stratum; workers exec'd a different binary in the same
    // cgroup (a container), plus one benign busy process in the cgroup.
    let mut ev = vec![
        exec(T0, 70, 1, "/app/proxy", &["proxy"]),
        provenance(T0 + 30, 70, "/app/proxy", false),
        connect(T0 + 40, 70, POOL, 3333, 10),
        payload(T0 + 50, Some(70), 10, POOL, 3333, &stratum_subscribe()),
        exec(T0 + 100, 71, 1, "/app/worker", &["worker"]),
        exec(T0 + 110, 72, 1, "/app/worker", &["worker"]),
        provenance(T0 + 150, 71, "/app/worker", false),
        exec(T0 + 120, 73, 1, "/usr/bin/gzip", &["gzip", "-9"]),
        provenance(T0 + 150, 73, "/usr/bin/gzip", true),
    ];
    in_container(&mut ev);
    ev.extend(cpu_series(T0 + 300, 20, &[71, 72, 73], |_| 0.8));
    let v = run(ev, T0 + 20_000);
    let group = v
        .iter()
        .find(|v| v.rule == Rule::MinerGroup)
        .unwrap_or_else(|| panic!("{v:#?}"));
    assert_eq!(group.tgid, 70);
    assert_eq!(
        group.members,
        vec![71, 72],
        "the packaged gzip is not a worker"
    );
    assert!(group.evidence_of(Signal::GroupCpu).is_some());
    assert!(!v.iter().any(|v| v.tgid != 70), "{v:#?}");
}

/// Move every exec into one container's cgroup (containerd under a
/// Kubernetes burstable pod).
fn in_container(ev: &mut [Event]) {
    for e in ev.iter_mut() {
        if let Event::Exec(x) = e {
            x.cgroup_id = 5151;
            x.cgroup = Some(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901.slice/cri-containerd-4c8a9f1e2d3b5a6c7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d.scope"
                    .into(),
            );
        }
    }
}

#[test]
fn session_cgroup_neighbours_are_not_workers() {
    // The same shape outside a container: the admin's session cgroup holds
    // an unrelated busy unverified tool, which must not become a member
    // (the response acts on members).
    let mut ev = vec![
        exec(T0, 70, 1, "/tmp/.x/proxy", &["proxy"]),
        provenance(T0 + 30, 70, "/tmp/.x/proxy", false),
        connect(T0 + 40, 70, POOL, 3333, 10),
        payload(T0 + 50, Some(70), 10, POOL, 3333, &stratum_subscribe()),
        exec(T0 + 100, 71, 1, "/home/dev/bin/build-tool", &["build-tool"]),
        provenance(T0 + 150, 71, "/home/dev/bin/build-tool", false),
    ];
    ev.extend(cpu_series(T0 + 300, 20, &[71], |_| 0.9));
    let v = run(ev, T0 + 20_000);
    assert!(
        v.iter().all(|v| v.tgid == 70 && v.members.is_empty()),
        "{v:#?}"
    );
    assert!(v.iter().any(|v| v.rule == Rule::PoolProtocolUnverified));
}

#[test]
fn the_root_cgroup_never_groups() {
    // A hybrid host keeps every process in the v2 root (id 1): a second
    // copy of a packaged interpreter elsewhere on the host is not a worker
    // of one that spoke Stratum.
    let py = "/usr/bin/python3.11";
    let mut ev = vec![
        exec(T0, 90, 1, py, &["python3", "miner.py"]),
        provenance(T0 + 30, 90, py, true),
        connect(T0 + 40, 90, POOL, 3333, 12),
        payload(T0 + 50, Some(90), 12, POOL, 3333, &stratum_subscribe()),
        exec(T0 + 100, 91, 1, py, &["python3", "-m", "http.server"]),
        provenance(T0 + 130, 91, py, true),
    ];
    for e in ev.iter_mut() {
        if let Event::Exec(x) = e {
            x.cgroup_id = 1;
            x.cgroup = Some("/".into());
        }
    }
    ev.extend(cpu_series(T0 + 300, 20, &[90, 91], |_| 0.9));
    let v = run(ev, T0 + 20_000);
    assert!(v.iter().all(|v| !v.members.contains(&91)), "{v:#?}");
}

#[test]
fn idle_holder_with_an_unrelated_busy_neighbour_is_silent() {
    // Benign look-alike of the group rule: a verified pool health check
    // and a packaged compressor in the same session cgroup.
    let py = "/usr/bin/python3.12";
    let mut ev = vec![
        exec(T0, 80, 1, py, &["python3", "check_pool.py"]),
        provenance(T0 + 30, 80, py, true),
        connect(T0 + 40, 80, POOL, 3333, 11),
        payload(T0 + 50, Some(80), 11, POOL, 3333, &stratum_subscribe()),
        exec(T0 + 100, 81, 1, "/usr/bin/xz", &["xz", "-9"]),
        provenance(T0 + 130, 81, "/usr/bin/xz", true),
    ];
    ev.extend(cpu_series(T0, 60, &[81], |_| 1.0));
    assert!(run(ev, T0 + 60_000).is_empty());
}

#[test]
fn verified_health_check_does_not_adopt_unverified_neighbours() {
    // Same session cgroup: an idle packaged stratum check and a busy
    // unpackaged service that has nothing to do with it.
    let py = "/usr/bin/python3.12";
    let mut ev = vec![
        exec(T0, 82, 1, py, &["python3", "check_pool.py"]),
        provenance(T0 + 30, 82, py, true),
        connect(T0 + 40, 82, POOL, 3333, 16),
        payload(T0 + 50, Some(82), 16, POOL, 3333, &stratum_subscribe()),
        exec(T0 + 100, 83, 1, "/opt/acme/bin/api", &["api"]),
        provenance(T0 + 130, 83, "/opt/acme/bin/api", false),
    ];
    ev.extend(cpu_series(T0, 60, &[83], |_| 2.0));
    assert_eq!(run(ev, T0 + 60_000), vec![]);
}

#[test]
fn new_pool_port_connection_waits_for_its_first_bytes() {
    let bin = "/opt/svc/bin/worker";
    let mut d = Detector::new(DetectorConfig::default());
    d.step(Input::Event(exec(T0, 84, 1, bin, &["worker"])), ms(T0));
    d.step(
        Input::Event(provenance(T0 + 10, 84, bin, false)),
        ms(T0 + 10),
    );
    for k in 1..=5 {
        d.step(
            Input::Event(cpu(T0 + k * 1000, &[(84, 1.0)])),
            ms(T0 + k * 1000),
        );
    }
    // Already busy when it connects: nothing until the first bytes had
    // their chance.
    assert!(
        d.step(
            Input::Event(connect(T0 + 5_100, 84, POOL, 3333, 17)),
            ms(T0 + 5_100)
        )
        .is_empty()
    );
    assert!(
        d.step(Input::Event(cpu(T0 + 6_000, &[(84, 1.0)])), ms(T0 + 6_000))
            .is_empty()
    );
    // Still nothing to show after the wait: counts as a pool connection.
    let v = d.step(Input::Tick, ms(T0 + 6_100));
    assert_eq!(v.len(), 1);
    assert_eq!(
        (
            v[0].rule,
            v[0].evidence_of(Signal::PoolPort).map(|e| e.time)
        ),
        (Rule::PoolPortBusyUnverified, Some(ms(T0 + 5_100)))
    );
}

#[test]
fn payload_overtaking_its_connect_is_kept() {
    let bin = "/tmp/o";
    let v = run(
        vec![
            exec(T0, 85, 1, bin, &["o"]),
            provenance(T0 + 10, 85, bin, false),
            payload(T0 + 20, Some(85), 18, POOL, 3333, &xmrig_login()),
            connect(T0 + 21, 85, POOL, 3333, 18),
        ],
        T0 + 3_000,
    );
    assert_eq!(
        rules_of(&v).into_keys().collect::<Vec<_>>(),
        vec![(Rule::PoolProtocolUnverified, 85)]
    );
}

#[test]
fn exec_after_a_connect_only_placeholder_keeps_the_evidence() {
    // The sweep describes a process the kernel first showed through a
    // connect (the two race at start).
    let bin = "/dev/shm/.p";
    let mut ev = vec![
        connect(T0, 86, POOL, 7777, 19),
        sweep_exec(T0 + 5, 86, 1, bin, &["p"]),
        provenance(T0 + 50, 86, bin, false),
    ];
    ev.extend(cpu_series(T0, 10, &[86], |_| 1.0));
    let got = rules_of(&run(ev, T0 + 10_000));
    assert_eq!(
        got.get(&(Rule::PoolPortBusyUnverified, 86)),
        Some(&Severity::High)
    );
}

#[test]
fn missing_provenance_still_catches_a_busy_pool_client() {
    // Provenance never arrives (hasher down): pool protocol + CPU is
    // enough for pool_protocol_busy, never the unverified rule.
    let mut ev = vec![
        exec(T0, 90, 1, "/tmp/np", &["np"]),
        connect(T0 + 40, 90, POOL, 3333, 12),
        payload(T0 + 50, Some(90), 12, POOL, 3333, &stratum_subscribe()),
    ];
    ev.extend(cpu_series(T0, 20, &[90], |_| 1.0));
    let got = rules_of(&run(ev, T0 + 20_000));
    assert_eq!(
        got.get(&(Rule::PoolProtocolBusy, 90)),
        Some(&Severity::High)
    );
    assert!(!got.contains_key(&(Rule::PoolProtocolUnverified, 90)));
}

#[test]
fn exec_replaces_evidence_of_the_old_image() {
    // Benign look-alike of inheritance: a flagged-looking parent forks a
    // child that execs a packaged compiler, which then burns CPU.
    let mut ev = vec![
        exec(T0, 95, 1, "/opt/ci/agent", &["agent"]),
        provenance(T0 + 30, 95, "/opt/ci/agent", true),
        connect(T0 + 40, 95, POOL, 3333, 13),
        payload(T0 + 50, Some(95), 13, POOL, 3333, &stratum_subscribe()),
        fork(T0 + 100, 95, 96, "agent"),
        exec(
            T0 + 101,
            96,
            95,
            "/usr/bin/rustc",
            &["rustc", "--crate-name", "x"],
        ),
        provenance(T0 + 130, 96, "/usr/bin/rustc", true),
        exit(T0 + 200, 95),
    ];
    ev.extend(cpu_series(T0, 30, &[96], |_| 1.0));
    assert_eq!(run(ev, T0 + 30_000), vec![]);
}

#[test]
fn table_cap_evicts_and_counts_but_keeps_the_miner() {
    let cfg = DetectorConfig {
        max_processes: 256,
        ..DetectorConfig::default()
    };
    let mut ev = vec![
        exec(T0, 5, 1, "/tmp/m", &["m"]),
        provenance(T0 + 10, 5, "/tmp/m", false),
        connect(T0 + 20, 5, POOL, 3333, 14),
    ];
    for i in 0..400u32 {
        ev.push(exec(
            T0 + 100 + u64::from(i),
            10_000 + i,
            1,
            "/usr/bin/true",
            &["true"],
        ));
    }
    ev.extend(cpu_series(T0 + 1000, 10, &[5], |_| 1.0));
    let (v, det) = run_with(cfg, ev, T0 + 12_000);
    let stats = det.stats();
    assert_eq!(stats.tracked_processes, 256);
    assert_eq!(stats.evictions.capacity, 401 - 256);
    assert_eq!(stats.evictions_total, 401 - 256);
    assert!(det.table().get(5).is_some(), "pinned by its evidence");
    assert_eq!(
        rules_of(&v).get(&(Rule::PoolPortBusyUnverified, 5)),
        Some(&Severity::High)
    );
}

#[test]
fn exited_processes_expire_after_the_grace_period() {
    let (_, det) = run_with(
        DetectorConfig::default(),
        vec![
            exec(T0, 7, 1, "/usr/bin/sleep", &["sleep", "1"]),
            exit(T0 + 1000, 7),
        ],
        T0 + 5_000,
    );
    assert!(
        det.table()
            .get(7)
            .is_some_and(|p| p.exited == Some(ms(T0 + 1000)))
    );
    let (_, det) = run_with(
        DetectorConfig::default(),
        vec![
            exec(T0, 7, 1, "/usr/bin/sleep", &["sleep", "1"]),
            exit(T0 + 1000, 7),
        ],
        T0 + 12_000,
    );
    assert!(det.table().get(7).is_none());
    assert_eq!(det.stats().evictions.expired, 1);
}

#[test]
fn pid_reuse_does_not_inherit_a_dead_miners_evidence() {
    let mut ev = vec![
        exec(T0, 33, 1, "/tmp/m", &["m"]),
        provenance(T0 + 10, 33, "/tmp/m", false),
        connect(T0 + 20, 33, POOL, 3333, 15),
        exit(T0 + 500, 33),
    ];
    // Same tgid, new process (different boot start), an unverified busy tool.
    let mut e = exec_struct(T0 + 1000, 33, 1, "/opt/tool", &["tool"]);
    e.start_boottime_ns += 1;
    ev.push(Event::Exec(e));
    ev.push(provenance(T0 + 1010, 33, "/opt/tool", false));
    ev.extend(cpu_series(T0 + 1000, 30, &[33], |_| 1.0));
    assert_eq!(run(ev, T0 + 31_000), vec![]);
}

#[test]
fn same_input_gives_same_verdicts() {
    let mut all = Vec::new();
    for c in positive_cases().into_iter().chain(benign_cases()) {
        all.extend(c.events);
    }
    let a = run(all.clone(), T0 + 70_000);
    let b = run(all, T0 + 70_000);
    assert!(!a.is_empty());
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap()
    );
}

mod recordings {
    //! Recordings in `tests/recordings/` are generated from the scenarios
    //! below (set `MINERWATCH_UPDATE_RECORDINGS=1` to rewrite them), then
    //! read back with the recording module and fed to a fresh detector.

    use std::path::PathBuf;

    use super::*;
    use crate::recording::{self, Record};

    struct Recording {
        file: &'static str,
        events: Vec<Event>,
        until_ms: u64,
        want: &'static [(Rule, u32)],
    }

    fn case(name: &str) -> Vec<Event> {
        positive_cases()
            .into_iter()
            .chain(benign_cases())
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no case {name}"))
            .events
    }

    fn recordings() -> Vec<Recording> {
        let mut presweep = vec![
            sweep_exec(T0, 30, 1, "/var/tmp/.x/xmr", &["xmr"]),
            sweep_connect(T0 + 5, 30, POOL, 14444),
            provenance(T0 + 100, 30, "/var/tmp/.x/xmr", false),
            payload(T0 + 2_000, None, 999, POOL, 14444, &keepalived()),
            sweep_exec(T0, 31, 1, "/usr/sbin/sshd", &["sshd", "-D"]),
            sweep_connect(T0 + 5, 31, "10.0.0.7", 22),
            provenance(T0 + 100, 31, "/usr/sbin/sshd", true),
        ];
        presweep.extend(cpu_series(T0, 20, &[30], |_| 1.0));
        let mut benign = case("verified pool health check, idle");
        benign.extend(case(
            "unpackaged service, HTTP to pool-numbered ports, busy",
        ));
        benign.extend(case("xz -9"));
        vec![
            Recording {
                file: "xmrig_login_tmp.jsonl",
                events: xmrig_in_tmp(500, 2.0)
                    .into_iter()
                    .filter(|e| e.time() <= ms(T0 + 20_000))
                    .collect(),
                until_ms: T0 + 20_000,
                want: &[
                    (Rule::PoolProtocolUnverified, 500),
                    (Rule::PoolPortBusyUnverified, 500),
                ],
            },
            Recording {
                file: "miner_tls_443_memfd.jsonl",
                events: case("miner command line, TLS on 443, memfd")
                    .into_iter()
                    .filter(|e| e.time() <= ms(T0 + 20_000))
                    .collect(),
                until_ms: T0 + 20_000,
                want: &[(Rule::MinerCommandLine, 800)],
            },
            Recording {
                file: "presweep_miner.jsonl",
                events: presweep,
                until_ms: T0 + 20_000,
                want: &[
                    (Rule::PoolProtocolUnverified, 30),
                    (Rule::PoolPortBusyUnverified, 30),
                ],
            },
            Recording {
                file: "multiprocess_miner.jsonl",
                events: case("holder + 2 workers")
                    .into_iter()
                    .filter(|e| e.time() <= ms(T0 + 20_000))
                    .collect(),
                until_ms: T0 + 20_000,
                want: &[(Rule::PoolProtocolUnverified, 900), (Rule::MinerGroup, 900)],
            },
            Recording {
                file: "compile_burst.jsonl",
                events: case("compile burst"),
                until_ms: T0 + 60_000,
                want: &[],
            },
            Recording {
                file: "benign_health_check_http_xz.jsonl",
                events: benign
                    .into_iter()
                    .filter(|e| e.time() <= ms(T0 + 30_000))
                    .collect(),
                until_ms: T0 + 30_000,
                want: &[],
            },
        ]
    }

    /// Events in time order with a tick line every second, as `run
    /// --record` writes them.
    fn render(mut events: Vec<Event>, until_ms: u64) -> String {
        events.sort_by_key(|e| e.time());
        let mut records = Vec::new();
        let mut next = (events.first().map_or(T0, |e| e.time().ns() / 1_000_000) / 1000 + 1) * 1000;
        for e in events {
            while next <= e.time().ns() / 1_000_000 {
                records.push(Record::Tick(ms(next)));
                next += 1000;
            }
            records.push(Record::Event(e));
        }
        while next <= until_ms {
            records.push(Record::Tick(ms(next)));
            next += 1000;
        }
        let mut out = Vec::new();
        for r in &records {
            recording::write(&mut out, r).unwrap();
        }
        String::from_utf8(out).unwrap()
    }

    fn dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/recordings")
    }

    #[test]
    fn recordings_replay_to_the_expected_verdicts_every_time() {
        let update = std::env::var_os("MINERWATCH_UPDATE_RECORDINGS").is_some();
        for r in recordings() {
            let path = dir().join(r.file);
            let text = render(r.events, r.until_ms);
            if update {
                std::fs::create_dir_all(dir()).unwrap();
                std::fs::write(&path, &text).unwrap();
            }
            let on_disk = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!(
                    "{}: {e}; run with MINERWATCH_UPDATE_RECORDINGS=1",
                    path.display()
                )
            });
            assert!(
                on_disk == text,
                "{} is stale; run with MINERWATCH_UPDATE_RECORDINGS=1",
                r.file
            );

            // (verdict lines, ticks, events)
            let replay_once = || {
                let file = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
                let mut det = Detector::new(DetectorConfig::default());
                let (mut out, mut ticks, mut events) = (String::new(), 0, 0);
                for item in recording::read(file) {
                    let (_, record) = item.unwrap();
                    match record {
                        Record::Tick(_) => ticks += 1,
                        Record::Event(_) => events += 1,
                    }
                    let (input, time) = record.into_input();
                    for v in det.step(input, time) {
                        out.push_str(&serde_json::to_string(&v).unwrap());
                        out.push('\n');
                    }
                }
                (out, ticks, events)
            };
            let (first, ticks, events) = replay_once();
            let (second, _, _) = replay_once();
            assert_eq!(first, second, "{}: replay is deterministic", r.file);
            assert!(ticks > 0 && events > 0);
            let got: BTreeSet<(Rule, u32)> = first
                .lines()
                .map(|l| serde_json::from_str::<Verdict>(l).unwrap())
                .map(|v| (v.rule, v.tgid))
                .collect();
            let want: BTreeSet<(Rule, u32)> = r.want.iter().copied().collect();
            assert_eq!(got, want, "{}:\n{first}", r.file);
        }
    }
}
