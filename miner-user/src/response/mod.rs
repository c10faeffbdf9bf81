//! Response: turn a verdict into actions — kill the tree, block its pool
//! egress, quarantine its executable, report its footholds — and never
//! touch anything that is not a miner.
//!
//! Observe mode (the default) computes the same plan and reports it as
//! `would`. Every action, taken or refused, is reported with its result.

pub mod config;
pub mod footholds;
pub mod kill;
pub mod quarantine;

use std::{
    collections::HashSet,
    net::IpAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

pub use config::{ActionKind, Mode, ResponseConfig};
use serde::Serialize;

use crate::{
    detect::{Rule, Verdict},
    sensor::blocklist::Blocklist,
};

/// One action, taken, refused or only planned.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionResult {
    pub action: ActionKind,
    pub target: u32,
    /// `ok`, `would`, `refused`, `gone`, `mismatch`, `failed`.
    pub result: &'static str,
    pub reason: String,
    pub latency_ms: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ResponseOutcome {
    /// Observe mode: what enforce mode would have done.
    pub would: Vec<String>,
    pub actions: Vec<ActionResult>,
    pub footholds: Vec<footholds::Foothold>,
    pub quarantined: Vec<quarantine::QuarantineRecord>,
}

pub struct Responder {
    cfg: ResponseConfig,
    blocklist: Option<Blocklist>,
    proc_root: PathBuf,
    /// minerwatch and its ancestors: never targets.
    own_lineage: Vec<u32>,
    /// (tgid, action) already done: one kill per process, not one per verdict.
    done: HashSet<(u32, ActionKind)>,
}

/// Does the verdict rest on the process speaking a pool protocol (payload
/// evidence), rather than on CPU and a port number?
fn payload_based(v: &Verdict) -> bool {
    matches!(
        v.rule,
        Rule::PoolProtocolUnverified | Rule::PoolProtocolBusy
    ) || v.evidence.iter().any(|e| e.signal == "pool_protocol")
}

fn lineage(proc_root: &Path, mut pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    for _ in 0..64 {
        match kill::stat_of(proc_root, pid) {
            Some((ppid, _)) if ppid > 0 && !out.contains(&ppid) => {
                out.push(ppid);
                pid = ppid;
            }
            _ => break,
        }
    }
    out
}

impl Responder {
    pub fn new(cfg: ResponseConfig, blocklist: Option<Blocklist>) -> Self {
        let proc_root = PathBuf::from(crate::defaults::PROC_PATH);
        let own_lineage = lineage(&proc_root, std::process::id());
        Responder {
            cfg,
            blocklist,
            proc_root,
            own_lineage,
            done: HashSet::new(),
        }
    }

    pub fn mode(&self) -> Mode {
        self.cfg.mode
    }

    /// Why this process must not be touched, if it must not.
    pub fn refusal(&self, v: &Verdict, tgid: u32, action: ActionKind) -> Option<String> {
        if tgid <= 1 {
            return Some("pid 1 (init) is never a target".into());
        }
        if self.own_lineage.contains(&tgid) {
            return Some("minerwatch itself or one of its ancestors".into());
        }
        if v.ppid == 2 || (tgid == v.tgid && v.exe.is_none() && v.cmdline.is_empty()) {
            return Some("kernel thread".into());
        }
        let p = &self.cfg.protect;
        let exe = v.exe.as_deref().unwrap_or("");
        if p.paths
            .iter()
            .any(|pp| exe == pp || (pp.ends_with('/') && exe.starts_with(pp.as_str())))
        {
            return Some(format!("{exe} is on the protect list"));
        }
        if let Some(h) = v.provenance.as_ref().and_then(|p| p.sha256.as_deref())
            && p.sha256.iter().any(|x| x.eq_ignore_ascii_case(h))
        {
            return Some("hash is on the protect list".into());
        }
        if p.uids.contains(&v.uid) {
            return Some(format!("uid {} is on the protect list", v.uid));
        }
        if let Some(cg) = v.cgroup.as_deref()
            && p.cgroups.iter().any(|c| cg.starts_with(c.as_str()))
        {
            return Some(format!("cgroup {cg} is on the protect list"));
        }
        // Vouched for by the host or the operator; an image's own package
        // database does not shield the binary it ships.
        let verified = v
            .provenance
            .as_ref()
            .is_some_and(|p| p.is_verified() && !p.is_image_vouched());
        if verified && action == ActionKind::Quarantine {
            return Some(
                "a packaged binary is never quarantined (the miner is its script, not the binary)"
                    .into(),
            );
        }
        if verified && action == ActionKind::Kill && !payload_based(v) {
            return Some("a packaged binary is killed only when it spoke a pool protocol, never on CPU and port alone".into());
        }
        None
    }

    /// Act on a verdict. `tree` lists the other processes to act on (see
    /// `daemon::pipeline::action_scope`); `endpoints` the pool endpoints
    /// the process used.
    pub fn respond(
        &mut self,
        v: &Verdict,
        tree: &[u32],
        endpoints: &[(IpAddr, u16)],
        now: &str,
    ) -> ResponseOutcome {
        let mut out = ResponseOutcome::default();
        let actions = self.cfg.actions_for(v.rule, v.severity);
        // `tree` is the vetted scope (descendants, same-executable workers,
        // container mates); other `members` are reported, not acted on.
        let mut targets = vec![v.tgid];
        for &t in tree {
            if !targets.contains(&t) {
                targets.push(t);
            }
        }
        // Resolved now: after a kill, /proc/PID/root is gone.
        let scan_root = self.cfg.footholds.then(|| self.root_of(v.tgid));
        for action in actions {
            // Refusals are judged for the verdict's own process: the tree
            // inherits its standing.
            if let Some(reason) = self.refusal(v, v.tgid, action) {
                out.actions.push(ActionResult {
                    action,
                    target: v.tgid,
                    result: "refused",
                    reason,
                    latency_ms: 0,
                });
                continue;
            }
            if self.cfg.mode == Mode::Observe {
                out.would.push(describe(action, &targets, endpoints));
                continue;
            }
            if self.done.contains(&(v.tgid, action)) {
                continue;
            }
            self.done.insert((v.tgid, action));
            match action {
                ActionKind::BlockEgress => self.block(&targets, endpoints, &mut out),
                ActionKind::Quarantine => self.quarantine(v, &mut out, now),
                ActionKind::Kill => self.kill(v, &targets, &mut out),
            }
        }
        // After the actions: a kill must not wait for a file scan.
        if let Some(root) = scan_root {
            let needles = footholds::Needles::for_exe(
                v.exe.as_deref(),
                v.provenance.as_ref().and_then(|p| p.sha256.as_deref()),
            );
            out.footholds = footholds::scan(
                &root,
                &needles,
                std::time::SystemTime::now(),
                Duration::from_secs(86_400),
            );
        }
        out
    }

    /// A container process's files are judged in its own root.
    fn root_of(&self, tgid: u32) -> PathBuf {
        use std::os::unix::fs::MetadataExt;
        let theirs = self.proc_root.join(tgid.to_string()).join("root");
        match (std::fs::metadata(&theirs), std::fs::metadata("/")) {
            (Ok(a), Ok(b)) if (a.dev(), a.ino()) != (b.dev(), b.ino()) => theirs,
            _ => PathBuf::from("/"),
        }
    }

    fn block(&mut self, targets: &[u32], endpoints: &[(IpAddr, u16)], out: &mut ResponseOutcome) {
        let started = Instant::now();
        let Some(bl) = self.blocklist.as_mut() else {
            out.actions.push(ActionResult {
                action: ActionKind::BlockEgress,
                target: targets[0],
                result: "failed",
                reason: "the connect hooks are not attached (no cgroup v2)".into(),
                latency_ms: 0,
            });
            return;
        };
        let mut errors = Vec::new();
        for &t in targets {
            if let Err(e) = bl.block_tgid(t) {
                errors.push(format!("tgid {t}: {e}"));
            }
        }
        for &(addr, port) in endpoints {
            if port == 0 {
                continue; // never a whole address
            }
            if let Err(e) = bl.block_dest(addr, port) {
                errors.push(format!("{addr}:{port}: {e}"));
            }
        }
        let eps: Vec<String> = endpoints
            .iter()
            .map(|(a, p)| format_endpoint(*a, *p))
            .collect();
        out.actions.push(ActionResult {
            action: ActionKind::BlockEgress,
            target: targets[0],
            result: if errors.is_empty() { "ok" } else { "failed" },
            reason: if errors.is_empty() {
                format!(
                    "blocked {} process(es) and {}",
                    targets.len(),
                    if eps.is_empty() {
                        "no endpoint".into()
                    } else {
                        eps.join(", ")
                    }
                )
            } else {
                errors.join("; ")
            },
            latency_ms: started.elapsed().as_millis() as u64,
        });
    }

    fn quarantine(&mut self, v: &Verdict, out: &mut ResponseOutcome, now: &str) {
        let started = Instant::now();
        let fileless = v.provenance.as_ref().is_some_and(|p| {
            p.reasons.iter().any(|r| {
                matches!(
                    r,
                    crate::event::Reason::Memfd | crate::event::Reason::Deleted
                )
            })
        });
        let path = v
            .provenance
            .as_ref()
            .and_then(|p| p.path.clone())
            .or_else(|| v.exe.clone());
        let dir = self.cfg.quarantine_dir.clone();
        let result = match path.as_deref() {
            Some(p) if !fileless && p.starts_with('/') => {
                let host_path = self.root_of(v.tgid).join(p.trim_start_matches('/'));
                quarantine::quarantine_path(&dir, &host_path, v.rule.name(), v.tgid, now)
            }
            _ => quarantine::save_from_proc(&dir, &self.proc_root, v.tgid, v.rule.name(), now),
        };
        let latency_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(rec) => {
                out.actions.push(ActionResult {
                    action: ActionKind::Quarantine,
                    target: v.tgid,
                    result: "ok",
                    reason: format!(
                        "{} saved as {}",
                        rec.original_path
                            .as_deref()
                            .unwrap_or("in-memory executable"),
                        rec.sha256
                    ),
                    latency_ms,
                });
                out.quarantined.push(rec);
            }
            Err(e) => out.actions.push(ActionResult {
                action: ActionKind::Quarantine,
                target: v.tgid,
                result: "failed",
                reason: e.to_string(),
                latency_ms,
            }),
        }
    }

    fn kill(&mut self, v: &Verdict, targets: &[u32], out: &mut ResponseOutcome) {
        // The verdict's own process carries its identity; tree members are
        // checked to be alive and not ours, and their own refusals apply.
        let mut roots = vec![kill::Identity {
            tgid: v.tgid,
            start_boottime_ns: v.start_boottime_ns,
            exe: (v.exe_ino != 0).then_some((v.exe_dev, v.exe_ino)),
        }];
        for &t in &targets[1..] {
            if t <= 1 || self.own_lineage.contains(&t) {
                out.actions.push(ActionResult {
                    action: ActionKind::Kill,
                    target: t,
                    result: "refused",
                    reason: "pid 1 or minerwatch's own lineage".into(),
                    latency_ms: 0,
                });
                continue;
            }
            if let Some((_, start)) = kill::stat_of(&self.proc_root, t) {
                roots.push(kill::Identity {
                    tgid: t,
                    start_boottime_ns: start,
                    exe: None,
                });
            }
        }
        let outcomes = kill::kill_tree(
            &self.proc_root,
            &roots,
            Duration::from_millis(self.cfg.kill_timeout_ms),
        );
        for (tgid, o) in outcomes {
            let (result, reason, latency) = match o {
                kill::KillOutcome::Killed { latency } => {
                    ("ok", "SIGKILL, exit confirmed".to_string(), latency)
                }
                kill::KillOutcome::Signalled => (
                    "failed",
                    "signalled but not dead before the timeout".into(),
                    Duration::ZERO,
                ),
                kill::KillOutcome::Gone => {
                    ("gone", "exited before the kill".into(), Duration::ZERO)
                }
                kill::KillOutcome::Mismatch(r) => ("mismatch", r, Duration::ZERO),
                kill::KillOutcome::Failed(r) => ("failed", r, Duration::ZERO),
            };
            if result == "ok" {
                // A dead tgid will be reused: drop its block, keep the
                // endpoint blocks that stop a respawn.
                if let Some(bl) = self.blocklist.as_mut() {
                    let _ = bl.unblock_tgid(tgid);
                }
            }
            out.actions.push(ActionResult {
                action: ActionKind::Kill,
                target: tgid,
                result,
                reason,
                latency_ms: latency.as_millis() as u64,
            });
        }
    }
}

fn format_endpoint(a: IpAddr, p: u16) -> String {
    match a {
        IpAddr::V4(v4) => format!("{v4}:{p}"),
        IpAddr::V6(v6) => format!("[{v6}]:{p}"),
    }
}

fn describe(action: ActionKind, targets: &[u32], endpoints: &[(IpAddr, u16)]) -> String {
    match action {
        ActionKind::Kill => format!("kill {} (tree of {})", targets[0], targets.len()),
        ActionKind::BlockEgress => {
            let eps: Vec<String> = endpoints
                .iter()
                .map(|(a, p)| format_endpoint(*a, *p))
                .collect();
            format!("block_egress {} -> [{}]", targets[0], eps.join(", "))
        }
        ActionKind::Quarantine => format!("quarantine executable of {}", targets[0]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{Evidence, Severity};
    use crate::event::{Provenance, ProvenanceVerdict, Reason};
    use crate::time::Mono;

    fn verdict(tgid: u32, rule: Rule, verified: bool) -> Verdict {
        Verdict {
            time: Mono(0),
            rule,
            severity: Severity::Critical,
            pid: tgid,
            tgid,
            ppid: 100,
            comm: "x".into(),
            exe: Some("/tmp/x".into()),
            cmdline: vec!["x".into()],
            uid: 1000,
            cgroup_id: 1,
            cgroup: Some("/user.slice".into()),
            exe_dev: 0,
            exe_ino: 0,
            start_boottime_ns: 0,
            provenance: Some(Provenance {
                verdict: if verified {
                    ProvenanceVerdict::Verified
                } else {
                    ProvenanceVerdict::Unverified
                },
                reasons: vec![if verified {
                    Reason::Packaged
                } else {
                    Reason::NotPackaged
                }],
                sha256: Some("ab".repeat(32)),
                path: Some("/tmp/x".into()),
                package: None,
                vouched_by: None,
            }),
            evidence: vec![Evidence {
                signal: "cpu_sustained".into(),
                time: Mono(0),
                detail: String::new(),
            }],
            latency_ms: 0,
            members: vec![],
            chain: vec![],
            chain_truncated: false,
        }
    }

    fn responder(mode: Mode) -> Responder {
        let cfg = ResponseConfig {
            mode,
            footholds: false,
            ..Default::default()
        };
        Responder::new(cfg, None)
    }

    #[test]
    fn observe_mode_reports_what_it_would_do_and_touches_nothing() {
        let mut r = responder(Mode::Observe);
        let mut child = std::process::Command::new("/bin/sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let v = verdict(child.id(), Rule::PoolProtocolUnverified, false);
        let out = r.respond(&v, &[], &[("10.1.2.3".parse().unwrap(), 3333)], "t");
        assert_eq!(out.would.len(), 3, "{out:?}");
        assert!(out.would.iter().any(|w| w.starts_with("kill")));
        assert!(out.would.iter().any(|w| w.contains("10.1.2.3:3333")));
        assert!(child.try_wait().unwrap().is_none(), "still alive");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn safety_refuses_init_self_protected_and_packaged_binaries_without_payload() {
        let r = responder(Mode::Enforce);
        let v = verdict(1, Rule::PoolProtocolUnverified, false);
        assert!(r.refusal(&v, 1, ActionKind::Kill).is_some());
        let me = std::process::id();
        let v = verdict(me, Rule::PoolProtocolUnverified, false);
        assert!(
            r.refusal(&v, me, ActionKind::Kill)
                .unwrap()
                .contains("minerwatch")
        );
        let v = verdict(4242, Rule::PoolPortBusyUnverified, true);
        assert!(
            r.refusal(&v, 4242, ActionKind::Kill)
                .unwrap()
                .contains("packaged")
        );
        assert!(
            r.refusal(&v, 4242, ActionKind::BlockEgress).is_none(),
            "blocking is fine"
        );
        let v = verdict(4242, Rule::PoolProtocolBusy, true);
        assert!(
            r.refusal(&v, 4242, ActionKind::Kill).is_none(),
            "it spoke Stratum"
        );
        assert!(
            r.refusal(&v, 4242, ActionKind::Quarantine).is_some(),
            "never quarantine python3"
        );

        let mut cfg = ResponseConfig {
            mode: Mode::Enforce,
            footholds: false,
            ..Default::default()
        };
        cfg.protect.paths = vec!["/tmp/".into()];
        let r = Responder::new(cfg, None);
        let v = verdict(4242, Rule::PoolProtocolUnverified, false);
        assert!(
            r.refusal(&v, 4242, ActionKind::Kill)
                .unwrap()
                .contains("protect")
        );
    }

    #[test]
    fn enforce_kills_the_verdict_and_its_tree_within_a_second() {
        let mut r = responder(Mode::Enforce);
        let mut sh = std::process::Command::new("/bin/sh")
            .args(["-c", "sleep 30 & sleep 30; wait"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let (_, start) = kill::stat_of(Path::new("/proc"), sh.id()).unwrap();
        let mut v = verdict(sh.id(), Rule::PoolProtocolUnverified, false);
        v.start_boottime_ns = start;
        v.exe = Some("/bin/sh".into());
        v.provenance = None;
        r.cfg.policy[0].actions = vec![ActionKind::Kill];
        let t0 = Instant::now();
        let out = r.respond(&v, &[], &[], "t");
        let _ = sh.wait();
        assert!(t0.elapsed() < Duration::from_secs(1));
        let killed: Vec<_> = out.actions.iter().filter(|a| a.result == "ok").collect();
        assert_eq!(killed.len(), 3, "{out:?}");
        // A second verdict for the same process does not act twice.
        let again = r.respond(&v, &[], &[], "t");
        assert!(again.actions.is_empty());
    }
}
