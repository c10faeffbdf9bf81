//! The refusals: what the response must never touch, asked of every
//! target of an action (the flagged process, its descendants, its
//! same-executable workers, its container mates, and any child found in
//! /proc while the tree is frozen), never only of the flagged process.

use std::path::Path;

use super::{ActionKind, config::Protect, kill, target::Target};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Safety {
    protect: Protect,
    /// minerwatch and its ancestors.
    own_lineage: Vec<u32>,
}

/// `pid` and its ancestors, from /proc.
pub fn lineage(proc_root: &Path, mut pid: u32) -> Vec<u32> {
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

impl Safety {
    pub fn new(protect: Protect, own_lineage: Vec<u32>) -> Safety {
        Safety {
            protect,
            own_lineage,
        }
    }

    /// For this daemon: its own lineage from /proc.
    pub fn for_self(protect: Protect, proc_root: &Path) -> Safety {
        Safety::new(protect, lineage(proc_root, std::process::id()))
    }

    /// Why `t` must not get `action`, if it must not.
    pub fn refusal(&self, t: &Target, action: ActionKind) -> Option<String> {
        if t.tgid <= 1 {
            return Some("pid 1 (init) is never a target".into());
        }
        if self.own_lineage.contains(&t.tgid) {
            return Some("minerwatch itself or one of its ancestors".into());
        }
        if t.kernel_thread {
            return Some("kernel thread".into());
        }
        let p = &self.protect;
        let exe = t.exe.as_deref().unwrap_or("");
        let exe = exe.strip_suffix(" (deleted)").unwrap_or(exe);
        if !exe.is_empty()
            && p.paths
                .iter()
                .any(|pp| exe == pp || (pp.ends_with('/') && exe.starts_with(pp.as_str())))
        {
            return Some(format!("{exe} is on the protect list"));
        }
        if let Some(h) = t.sha256.as_deref()
            && p.sha256.iter().any(|x| x.eq_ignore_ascii_case(h))
        {
            return Some("hash is on the protect list".into());
        }
        if p.uids.contains(&t.uid) {
            return Some(format!("uid {} is on the protect list", t.uid));
        }
        if let Some(cg) = t.cgroup.as_deref()
            && p.cgroups.iter().any(|c| cg.starts_with(c.as_str()))
        {
            return Some(format!("cgroup {cg} is on the protect list"));
        }
        let verified = t.verified == Some(true);
        if verified && action == ActionKind::Quarantine {
            return Some(
                "a packaged binary is never quarantined (the miner is its script, not the binary)"
                    .into(),
            );
        }
        if verified && action == ActionKind::Kill && !t.spoke_pool_protocol {
            return Some(
                "a packaged binary is killed only when it spoke a pool protocol, never on CPU and port alone"
                    .into(),
            );
        }
        None
    }

    /// Does the protect list name hashes (worth hashing an unknown child for)?
    pub fn wants_hashes(&self) -> bool {
        !self.protect.sha256.is_empty()
    }
}
