//! Carrying out a plan's steps: block (kernel maps), quarantine (file
//! copies), kill (pidfds, waiting for the exit). Runs on the response
//! thread; everything here may take time, none of it on the event path.

use std::{
    collections::HashSet,
    net::IpAddr,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use super::{
    ActionKind, ActionResult, Outcome, ResponseConfig,
    kill::{self, Identity, KillOutcome, Root, Vet},
    plan::{Step, format_endpoint},
    quarantine,
    safety::Safety,
    target::Target,
};
use crate::{
    detect::Verdict,
    event::{ExeId, Reason},
    provenance::Verifier,
    sensor::blocklist::Blocklist,
};

/// Done (tgid, start time, action) pairs remembered, so a second verdict for
/// the same process does not act twice; a pid reused by a new process has
/// another start time and is acted on afresh.
const DONE_MAX: usize = 65_536;

/// A memfd or deleted executable exists only as `/proc/PID/exe`: its copy
/// must be taken while the process lives, so before any kill.
pub fn runs_without_a_file(v: &Verdict) -> bool {
    v.provenance.as_ref().is_some_and(|p| {
        p.reasons
            .iter()
            .any(|r| matches!(r, Reason::Memfd | Reason::Deleted))
    })
}

pub struct Executor {
    blocklist: Option<Blocklist>,
    proc_root: PathBuf,
    done: HashSet<(u32, u64, ActionKind)>,
    /// Judges children found in /proc that the table did not know.
    verifier: Option<Arc<Verifier>>,
}

impl Executor {
    pub fn new(blocklist: Option<Blocklist>, verifier: Option<Arc<Verifier>>) -> Executor {
        Executor {
            blocklist,
            proc_root: PathBuf::from(crate::defaults::PROC_PATH),
            done: HashSet::new(),
            verifier,
        }
    }

    /// Carry out one step. `scope` is the whole action scope the plan saw
    /// (refused targets included), so a child found in /proc that the plan
    /// refused is left alone. Empty when the step was already done for this
    /// process.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &mut self,
        cfg: &ResponseConfig,
        safety: &Safety,
        v: &Verdict,
        step: &Step,
        scope: &[Target],
        endpoints: &[(IpAddr, u16)],
        now: &str,
    ) -> Vec<ActionResult> {
        let Some(flagged) = step.targets.first() else {
            return Vec::new();
        };
        let key = (flagged.tgid, flagged.start_boottime_ns, step.action);
        if !self.done.insert(key) {
            return Vec::new();
        }
        if self.done.len() > DONE_MAX {
            self.done.clear();
            self.done.insert(key);
        }
        match step.action {
            ActionKind::BlockEgress => vec![self.block(&step.targets, endpoints)],
            ActionKind::Quarantine => vec![self.quarantine(cfg, v, now)],
            ActionKind::Kill => self.kill(cfg, safety, &step.targets, scope),
        }
    }

    /// A container process's files are judged in its own root.
    pub fn root_of(&self, tgid: u32) -> PathBuf {
        let theirs = self.proc_root.join(tgid.to_string()).join("root");
        match (std::fs::metadata(&theirs), std::fs::metadata("/")) {
            (Ok(a), Ok(b)) if (a.dev(), a.ino()) != (b.dev(), b.ino()) => theirs,
            _ => PathBuf::from("/"),
        }
    }

    fn block(&mut self, targets: &[Target], endpoints: &[(IpAddr, u16)]) -> ActionResult {
        let started = Instant::now();
        let first = targets.first().map_or(0, |t| t.tgid);
        let Some(bl) = self.blocklist.as_mut() else {
            return ActionResult {
                action: ActionKind::BlockEgress,
                target: first,
                result: Outcome::Failed,
                reason: "the connect hooks are not attached (no cgroup v2)".into(),
                latency_ms: 0,
            };
        };
        let mut errors = Vec::new();
        for t in targets {
            if let Err(e) = bl.block_tgid(t.tgid) {
                errors.push(format!("tgid {}: {e}", t.tgid));
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
        ActionResult {
            action: ActionKind::BlockEgress,
            target: first,
            result: if errors.is_empty() {
                Outcome::Ok
            } else {
                Outcome::Failed
            },
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
        }
    }

    fn quarantine(&mut self, cfg: &ResponseConfig, v: &Verdict, now: &str) -> ActionResult {
        let started = Instant::now();
        let fileless = runs_without_a_file(v);
        let path = v
            .provenance
            .as_ref()
            .and_then(|p| p.path.clone())
            .or_else(|| v.exe.clone());
        let dir = &cfg.quarantine_dir;
        let result = match path.as_deref() {
            Some(p) if !fileless && p.starts_with('/') => {
                let host_path = self.root_of(v.tgid).join(p.trim_start_matches('/'));
                quarantine::quarantine_path(dir, &host_path, v.rule.name(), v.tgid, now)
            }
            _ => quarantine::save_from_proc(dir, &self.proc_root, v.tgid, v.rule.name(), now),
        };
        let latency_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(rec) => ActionResult {
                action: ActionKind::Quarantine,
                target: v.tgid,
                result: Outcome::Ok,
                reason: format!(
                    "{} saved as {}",
                    rec.original_path
                        .as_deref()
                        .unwrap_or("in-memory executable"),
                    rec.sha256
                ),
                latency_ms,
            },
            Err(e) => ActionResult {
                action: ActionKind::Quarantine,
                target: v.tgid,
                result: Outcome::Failed,
                reason: e.to_string(),
                latency_ms,
            },
        }
    }

    fn kill(
        &mut self,
        cfg: &ResponseConfig,
        safety: &Safety,
        targets: &[Target],
        scope: &[Target],
    ) -> Vec<ActionResult> {
        let roots: Vec<Root> = targets
            .iter()
            .map(|t| Root {
                id: Identity {
                    tgid: t.tgid,
                    start_boottime_ns: t.start_boottime_ns,
                    exe: t.exe_id,
                },
                walk: !t.ancestor,
            })
            .collect();
        let allowed_exes: Vec<(u64, u64)> = targets.iter().filter_map(|t| t.exe_id).collect();
        let proc_root = self.proc_root.clone();
        let verifier = self.verifier.clone();
        let mut vet = |child: u32| -> Vet {
            if scope.iter().any(|t| t.tgid == child) {
                // In the plan's scope but not a root: refused there.
                return Vet::Skip;
            }
            vet_unknown(
                &proc_root,
                safety,
                verifier.as_deref(),
                &allowed_exes,
                child,
            )
        };
        let outcomes = kill::kill_tree(
            &self.proc_root,
            &roots,
            &mut vet,
            Duration::from_millis(cfg.kill_timeout_ms),
        );
        let mut out = Vec::new();
        for (tgid, o) in outcomes {
            let (result, reason, latency) = match o {
                KillOutcome::Killed { latency } => {
                    (Outcome::Ok, "SIGKILL, exit confirmed".to_string(), latency)
                }
                KillOutcome::Signalled => (
                    Outcome::Failed,
                    "signalled but not dead before the timeout".into(),
                    Duration::ZERO,
                ),
                KillOutcome::Gone => (
                    Outcome::Gone,
                    "exited before the kill".into(),
                    Duration::ZERO,
                ),
                KillOutcome::Mismatch(m) => (Outcome::Mismatch, m.to_string(), Duration::ZERO),
                KillOutcome::Refused(r) => (Outcome::Refused, r, Duration::ZERO),
                KillOutcome::Failed(e) => (Outcome::Failed, e.to_string(), Duration::ZERO),
            };
            if result == Outcome::Ok {
                // A dead tgid will be reused: drop its block, keep the
                // endpoint blocks that stop a respawn.
                if let Some(bl) = self.blocklist.as_mut() {
                    let _ = bl.unblock_tgid(tgid);
                }
            }
            out.push(ActionResult {
                action: ActionKind::Kill,
                target: tgid,
                result,
                reason,
                latency_ms: latency.as_millis() as u64,
            });
        }
        out
    }
}

/// A child found in /proc that the table did not know (forked after the
/// verdict, or its exec was missed): a fork of an allowed target (same
/// executable) shares its standing; anything else is judged from /proc and
/// the provenance verifier by the same refusals as every other target.
fn vet_unknown(
    proc_root: &Path,
    safety: &Safety,
    verifier: Option<&Verifier>,
    allowed_exes: &[(u64, u64)],
    pid: u32,
) -> Vet {
    let dir = proc_root.join(pid.to_string());
    let Ok(meta) = std::fs::metadata(dir.join("exe")) else {
        // No executable to read: a kernel thread, or already exiting.
        return Vet::Refuse("its executable cannot be read, so it cannot be vetted".into());
    };
    let exe_id = (meta.dev(), meta.ino());
    if allowed_exes.contains(&exe_id) {
        return Vet::Kill;
    }
    let link = std::fs::read_link(dir.join("exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|s| s.parse::<u32>().ok())
    };
    let cgroup = std::fs::read_to_string(dir.join("cgroup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
        });
    let mut t = Target {
        tgid: pid,
        ppid: field("PPid:").unwrap_or(0),
        start_boottime_ns: 0,
        exe_id: Some(exe_id),
        exe: Some(link.clone()),
        sha256: None,
        uid: field("Uid:").unwrap_or(0),
        cgroup,
        verified: None,
        spoke_pool_protocol: false,
        kernel_thread: false,
        ancestor: false,
    };
    if let Some(verifier) = verifier {
        let id = ExeId {
            dev: meta.dev(),
            ino: meta.ino(),
            nlink: meta.nlink() as u32,
            memfd: link.starts_with("/memfd:"),
            name: Path::new(&link)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            unknown: false,
        };
        let prov = verifier.check_pid(pid, &id, &link);
        t.verified = Some(prov.is_verified() && !prov.is_image_vouched());
        t.sha256 = prov.sha256;
    } else if safety.wants_hashes() {
        t.sha256 = hash_file(&dir.join("exe"));
    }
    match safety.refusal(&t, ActionKind::Kill) {
        Some(reason) => Vet::Refuse(reason),
        None => Vet::Kill,
    }
}

fn hash_file(path: &Path) -> Option<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Some(hex::encode(h.finalize()))
}
