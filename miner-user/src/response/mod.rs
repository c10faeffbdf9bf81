//! Response: turn a verdict into actions — kill the tree, block its pool
//! egress, quarantine its executable, report its footholds — and never
//! touch anything that is not a miner.
//!
//! Two halves. [`plan`] runs on the pipeline, without I/O, at verdict time:
//! the policy's actions, the action scope as the process table saw it
//! ([`target::Target`]), and the refusals of [`safety`], asked of every
//! target. Observe mode (the default) stops there and reports `would`.
//! In enforce mode the steps go to the response thread ([`worker`]) behind
//! a bounded queue, so a kill waiting for an exit or a scan of persistence
//! files never stops the event path; every action, taken or refused, is
//! reported with its result.

pub mod config;
pub mod execute;
pub mod footholds;
pub mod kill;
pub mod plan;
pub mod quarantine;
pub mod safety;
pub mod target;
pub mod worker;

pub use config::{ActionKind, Mode, ResponseConfig};
use serde::{Deserialize, Serialize};

/// How an action ended. snake_case names are stable: the `result` of
/// `"kind":"action"` lines and the `result` label of
/// `minerwatch_actions_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done (and, for a kill, the exit confirmed).
    Ok,
    /// A refusal protects the target: nothing done to it.
    Refused,
    /// The target exited before the action reached it.
    Gone,
    /// The pid now names another process or executable: nothing done.
    Mismatch,
    Failed,
    /// The response queue was full: not done.
    Dropped,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Ok,
        Outcome::Refused,
        Outcome::Gone,
        Outcome::Mismatch,
        Outcome::Failed,
        Outcome::Dropped,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::Gone => "gone",
            Outcome::Mismatch => "mismatch",
            Outcome::Failed => "failed",
            Outcome::Dropped => "dropped",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What an action line reports: one of the policy's actions, or the
/// footholds report that follows a verdict. snake_case names are stable:
/// the `action` of `"kind":"action"` lines and the `action` label of
/// `minerwatch_actions_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reported {
    Kill,
    BlockEgress,
    Quarantine,
    Footholds,
}

impl Reported {
    pub fn name(self) -> &'static str {
        match self {
            Reported::Kill => ActionKind::Kill.name(),
            Reported::BlockEgress => ActionKind::BlockEgress.name(),
            Reported::Quarantine => ActionKind::Quarantine.name(),
            Reported::Footholds => "footholds",
        }
    }
}

impl From<ActionKind> for Reported {
    fn from(a: ActionKind) -> Reported {
        match a {
            ActionKind::Kill => Reported::Kill,
            ActionKind::BlockEgress => Reported::BlockEgress,
            ActionKind::Quarantine => Reported::Quarantine,
        }
    }
}

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One action, taken or refused.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionResult {
    pub action: ActionKind,
    pub target: u32,
    pub result: Outcome,
    pub reason: String,
    pub latency_ms: u64,
}

#[cfg(test)]
mod tests {
    use std::{
        path::Path,
        time::{Duration, Instant},
    };

    use super::{
        execute::Executor,
        plan::{Step, plan},
        safety::Safety,
        target::Target,
        *,
    };
    use crate::detect::{Evidence, Rule, Severity, Signal, Verdict};
    use crate::event::Provenance;
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
            provenance: Some(Provenance::packaged(
                verified,
                "ab".repeat(32),
                Some("/tmp/x".into()),
            )),
            evidence: vec![Evidence {
                signal: Signal::CpuSustained,
                time: Mono(0),
                detail: String::new(),
            }],
            latency_ms: 0,
            members: vec![],
            chain: vec![],
            chain_truncated: false,
        }
    }

    fn member(tgid: u32) -> Target {
        Target {
            tgid,
            ppid: 4242,
            start_boottime_ns: 0,
            exe_id: None,
            exe: Some("/tmp/x".into()),
            sha256: Some("ab".repeat(32)),
            uid: 1000,
            cgroup: Some("/user.slice".into()),
            verified: Some(false),
            spoke_pool_protocol: false,
            kernel_thread: false,
            ancestor: false,
        }
    }

    fn cfg(mode: Mode) -> ResponseConfig {
        ResponseConfig {
            mode,
            footholds: false,
            ..Default::default()
        }
    }

    fn safety(protect: config::Protect) -> Safety {
        Safety::for_self(protect, Path::new("/proc"))
    }

    /// `"result"` of action lines and the `result` label of
    /// `minerwatch_actions_total`: a rename must fail here.
    #[test]
    fn reported_actions_serialise_to_their_stable_names() {
        let all = [
            Reported::Kill,
            Reported::BlockEgress,
            Reported::Quarantine,
            Reported::Footholds,
        ];
        assert_eq!(
            all.map(Reported::name),
            ["kill", "block_egress", "quarantine", "footholds"]
        );
        for r in all {
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""));
        }
        for a in [
            ActionKind::Kill,
            ActionKind::BlockEgress,
            ActionKind::Quarantine,
        ] {
            assert_eq!(Reported::from(a).name(), a.name());
        }
    }

    #[test]
    fn outcomes_serialise_to_their_stable_names() {
        let golden = ["ok", "refused", "gone", "mismatch", "failed", "dropped"];
        assert_eq!(Outcome::ALL.map(Outcome::name), golden);
        for o in Outcome::ALL {
            let json = serde_json::to_string(&o).unwrap();
            assert_eq!(json, format!("\"{}\"", o.name()));
            assert_eq!(serde_json::from_str::<Outcome>(&json).unwrap(), o);
            assert_eq!(o.to_string(), o.name());
        }
    }

    #[test]
    fn observe_mode_reports_what_it_would_do_and_plans_nothing() {
        let v = verdict(4242, Rule::PoolProtocolUnverified, false);
        let p = plan(
            &cfg(Mode::Observe),
            &safety(Default::default()),
            &v,
            &[Target::of_verdict(&v)],
            &[("10.1.2.3".parse().unwrap(), 3333)],
        );
        assert_eq!(p.would.len(), 3, "{p:?}");
        assert!(p.would.iter().any(|w| w.starts_with("kill")));
        assert!(p.would.iter().any(|w| w.contains("10.1.2.3:3333")));
        assert!(p.steps.is_empty() && p.refused.is_empty());
    }

    #[test]
    fn safety_refuses_init_self_protected_and_packaged_binaries_without_payload() {
        let s = safety(Default::default());
        let t = |v: &Verdict| Target::of_verdict(v);
        let v = verdict(1, Rule::PoolProtocolUnverified, false);
        assert!(s.refusal(&t(&v), ActionKind::Kill).is_some());
        let me = std::process::id();
        let v = verdict(me, Rule::PoolProtocolUnverified, false);
        assert!(
            s.refusal(&t(&v), ActionKind::Kill)
                .unwrap()
                .contains("minerwatch")
        );
        let v = verdict(4242, Rule::PoolPortBusyUnverified, true);
        assert!(
            s.refusal(&t(&v), ActionKind::Kill)
                .unwrap()
                .contains("packaged")
        );
        assert!(
            s.refusal(&t(&v), ActionKind::BlockEgress).is_none(),
            "blocking is fine"
        );
        let v = verdict(4242, Rule::PoolProtocolBusy, true);
        assert!(
            s.refusal(&t(&v), ActionKind::Kill).is_none(),
            "it spoke Stratum"
        );
        assert!(
            s.refusal(&t(&v), ActionKind::Quarantine).is_some(),
            "never quarantine python3"
        );
        let s = safety(config::Protect {
            paths: vec!["/tmp/".into()],
            ..Default::default()
        });
        let v = verdict(4242, Rule::PoolProtocolUnverified, false);
        assert!(
            s.refusal(&t(&v), ActionKind::Kill)
                .unwrap()
                .contains("protect")
        );
    }

    /// Every refusal holds for every target of the scope, not only for the
    /// flagged process: a protected path, hash, uid or cgroup, a packaged
    /// binary that did not speak a pool protocol itself, pid 1 and our own
    /// lineage.
    #[test]
    fn every_target_of_the_scope_is_vetted_and_refusals_are_reported() {
        let protect = config::Protect {
            paths: vec!["/usr/local/bin/backup".into(), "/opt/agent/".into()],
            sha256: vec!["cd".repeat(32)],
            uids: vec![998],
            cgroups: vec!["/system.slice/db.service".into()],
        };
        let s = safety(protect);
        let v = verdict(4242, Rule::PoolProtocolUnverified, false);
        let worker = member(5001);
        let by_path = Target {
            exe: Some("/usr/local/bin/backup".into()),
            ..member(5002)
        };
        let by_dir = Target {
            exe: Some("/opt/agent/sync (deleted)".into()),
            ..member(5003)
        };
        let by_hash = Target {
            sha256: Some("CD".repeat(32)),
            ..member(5004)
        };
        let by_uid = Target {
            uid: 998,
            ..member(5005)
        };
        let by_cgroup = Target {
            cgroup: Some("/system.slice/db.service/x".into()),
            ..member(5006)
        };
        let packaged_quiet = Target {
            verified: Some(true),
            ..member(5007)
        };
        let packaged_speaker = Target {
            verified: Some(true),
            spoke_pool_protocol: true,
            ..member(5008)
        };
        let init = member(1);
        let me = member(std::process::id());
        let scope = vec![
            Target::of_verdict(&v),
            worker.clone(),
            by_path,
            by_dir,
            by_hash,
            by_uid,
            by_cgroup,
            packaged_quiet,
            packaged_speaker,
            init,
            me,
        ];
        let p = plan(&cfg(Mode::Enforce), &s, &v, &scope, &[]);
        let kill = p
            .steps
            .iter()
            .find(|s| s.action == ActionKind::Kill)
            .expect("kill step");
        let killed: Vec<u32> = kill.targets.iter().map(|t| t.tgid).collect();
        assert_eq!(killed, vec![4242, 5001, 5008], "{p:?}");
        let refused_kill: Vec<(u32, &str)> = p
            .refused
            .iter()
            .filter(|r| r.action == ActionKind::Kill)
            .map(|r| (r.target, r.reason.as_str()))
            .collect();
        let reason = |t: u32| {
            refused_kill
                .iter()
                .find(|(x, _)| *x == t)
                .map(|(_, r)| *r)
                .unwrap_or_else(|| panic!("{t} not refused: {refused_kill:?}"))
        };
        assert!(reason(5002).contains("protect list"));
        assert!(reason(5003).contains("/opt/agent/sync is on the protect list"));
        assert!(reason(5004).contains("hash"));
        assert!(reason(5005).contains("uid 998"));
        assert!(reason(5006).contains("cgroup"));
        assert!(reason(5007).contains("packaged"));
        assert!(reason(1).contains("pid 1"));
        assert!(reason(std::process::id()).contains("minerwatch"));
        // Blocking spares the protected ones too, but a quiet packaged
        // process may be blocked.
        let block = p
            .steps
            .iter()
            .find(|s| s.action == ActionKind::BlockEgress)
            .expect("block step");
        let blocked: Vec<u32> = block.targets.iter().map(|t| t.tgid).collect();
        assert_eq!(blocked, vec![4242, 5001, 5007, 5008]);
        // Quarantine is the flagged executable only.
        let q = p
            .steps
            .iter()
            .find(|s| s.action == ActionKind::Quarantine)
            .expect("quarantine step");
        assert_eq!(q.targets.len(), 1);

        // A protected flagged process: the whole action is refused, once.
        let mut v2 = verdict(4242, Rule::PoolProtocolUnverified, false);
        v2.exe = Some("/opt/agent/sync".into());
        let scope2 = vec![Target::of_verdict(&v2), worker];
        let p2 = plan(&cfg(Mode::Enforce), &s, &v2, &scope2, &[]);
        assert!(p2.steps.is_empty(), "{p2:?}");
        assert_eq!(p2.refused.len(), 3);
        assert!(p2.refused.iter().all(|r| r.target == 4242));
        // Observe mode reports the same refusals.
        let p3 = plan(&cfg(Mode::Observe), &s, &v, &scope, &[]);
        assert_eq!(p3.refused, p.refused);
        assert!(p3.would.iter().any(|w| w == "kill 4242 (tree of 3)"));
    }

    fn identity(pid: u32) -> (u64, Option<(u64, u64)>) {
        use std::os::unix::fs::MetadataExt;
        let (_, start) = kill::stat_of(Path::new("/proc"), pid).unwrap();
        let m = std::fs::metadata(format!("/proc/{pid}/exe")).unwrap();
        (start, Some((m.dev(), m.ino())))
    }

    #[test]
    fn enforce_kills_the_verdict_and_its_tree_within_a_second() {
        let mut sh = std::process::Command::new("/bin/sh")
            .args(["-c", "sleep 30 & sleep 30; wait"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let mut v = verdict(sh.id(), Rule::PoolProtocolUnverified, false);
        (v.start_boottime_ns, _) = identity(sh.id());
        v.exe = Some("/bin/sh".into());
        v.provenance = None;
        let s = safety(Default::default());
        let step = Step {
            action: ActionKind::Kill,
            targets: vec![Target::of_verdict(&v)],
        };
        let mut ex = Executor::new(None, None);
        let c = cfg(Mode::Enforce);
        let t0 = Instant::now();
        let out = ex.run(&c, &s, &v, &step, &step.targets, &[], "t");
        let _ = sh.wait();
        assert!(t0.elapsed() < Duration::from_secs(1));
        let killed: Vec<_> = out.iter().filter(|a| a.result == Outcome::Ok).collect();
        assert_eq!(killed.len(), 3, "{out:?}");
        // A second verdict for the same process does not act twice.
        let again = ex.run(&c, &s, &v, &step, &step.targets, &[], "t");
        assert!(again.is_empty());
    }

    /// A child that appears only in /proc (never in the table) is vetted
    /// like every other target: a protected one lives, and is reported.
    #[test]
    fn a_protected_child_found_while_killing_the_tree_is_refused_and_lives() {
        let dir = tempfile::tempdir().unwrap();
        let guarded = dir.path().join("guarded-sleep");
        std::fs::copy("/bin/sleep", &guarded).unwrap();
        let mut sh = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("{} 30 & sleep 30; wait", guarded.display()))
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let kids = kill::children(Path::new("/proc"), sh.id());
        let protected_pid = *kids
            .iter()
            .find(|&&k| std::fs::read_link(format!("/proc/{k}/exe")).is_ok_and(|p| p == guarded))
            .expect("the guarded child runs");
        let mut v = verdict(sh.id(), Rule::PoolProtocolUnverified, false);
        (v.start_boottime_ns, _) = identity(sh.id());
        v.exe = Some("/bin/sh".into());
        v.provenance = None;
        let s = safety(config::Protect {
            paths: vec![guarded.display().to_string()],
            ..Default::default()
        });
        let step = Step {
            action: ActionKind::Kill,
            targets: vec![Target::of_verdict(&v)],
        };
        let mut ex = Executor::new(None, None);
        let out = ex.run(&cfg(Mode::Enforce), &s, &v, &step, &step.targets, &[], "t");
        let _ = sh.wait();
        let alive = Path::new(&format!("/proc/{protected_pid}")).exists();
        // Clean up the survivor whatever the outcome.
        unsafe { libc::kill(protected_pid as i32, libc::SIGKILL) };
        assert!(alive, "the protected child was killed: {out:?}");
        let refused = out
            .iter()
            .find(|a| a.target == protected_pid)
            .expect("reported");
        assert_eq!(refused.result, Outcome::Refused, "{out:?}");
        assert!(refused.reason.contains("protect list"), "{out:?}");
        assert_eq!(
            out.iter().filter(|a| a.result == Outcome::Ok).count(),
            2,
            "sh and the plain sleep die: {out:?}"
        );
    }
}
