//! The process table: every process the detector knows, by tgid, with the
//! tree (creator → children), and indexes by executable and cgroup.
//!
//! Bounded: exit only marks a process; removal waits for a grace period so
//! late events (a payload, a provenance verdict, a daemonized child) still
//! resolve. An exited process that still has a live descendant when its
//! grace ends is kept longer as an *ancestor* (bounded by count and time,
//! [`Retention`]), so a verdict's chain still names the short-lived `sh`
//! that dropped the miner. At the cap the oldest exited process goes first,
//! then the oldest retained ancestor, then the oldest live one that is not
//! pinned (the detector pins processes that hold evidence, so a fork bomb
//! cannot push a miner out), then the oldest pinned one. Every removal is
//! counted.
//!
//! Keyed by tgid; pid reuse is handled at insertion: a new process on a
//! tgid replaces the old entry (the kernel's start time tells them apart),
//! and tree walks stop at a "parent" younger than its child.
//!
//! The tree follows the process that *created* each one (the fork event's
//! parent), not the kernel's current parent: a shell that forks a miner and
//! exits before the miner's exec leaves it re-parented to init, and the exec
//! event then reports ppid 1. `ppid` keeps what the kernel said.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;

use serde::Serialize;

use crate::event::{ExeId, Provenance, Source};
use crate::time::Mono;

/// How the table learned about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Exec seen by the kernel probe (its start was observed).
    Exec,
    /// Fork seen by the kernel probe (its start was observed).
    Fork,
    /// Described by the startup sweep of /proc: it predates the agent.
    Sweep,
    /// Known only from a connect or payload (its exec was missed).
    Inferred,
}

/// Listening sockets a process holds, as far as the agent knows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Listening {
    /// It called `listen(2)`, inherited a listening process's sockets at
    /// fork, or held a listening socket at the startup sweep.
    pub listening: bool,
    /// Local addresses, at most [`MAX_LISTEN_ADDRS`], first seen first.
    /// Empty with `listening` when the kernel could not read the address.
    pub addrs: Vec<(IpAddr, u16)>,
}

/// Listening addresses kept per process (a server on 500 ports needs no
/// more to be recognised as one).
pub const MAX_LISTEN_ADDRS: usize = 4;

impl Listening {
    pub fn add(&mut self, local: Option<(IpAddr, u16)>) {
        self.listening = true;
        if let Some(a) = local
            && !self.addrs.contains(&a)
            && self.addrs.len() < MAX_LISTEN_ADDRS
        {
            self.addrs.push(a);
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Process {
    pub tgid: u32,
    /// The parent as the kernel last reported it (exec, sweep).
    pub ppid: u32,
    /// The process that created this one: the fork event's parent, else the
    /// first reported ppid; 0 when unknown. The tree and the chain follow
    /// it. Unlike `ppid` it survives re-parenting.
    pub creator: u32,
    pub comm: String,
    /// Absolute path of the executable, when the sensor or sweep knew it.
    pub exe_path: Option<String>,
    /// The path passed to execve (may be relative or `/dev/fd/N`).
    pub filename: String,
    pub argv: Vec<String>,
    pub argv_truncated: bool,
    pub uid: u32,
    pub gid: u32,
    pub cgroup_id: u64,
    pub cgroup: Option<String>,
    pub exe: ExeId,
    pub start_boottime_ns: u64,
    /// When the process started (fork or exec time), or when the agent
    /// first heard of it (sweep, inferred).
    pub start_time: Mono,
    /// Last exec seen by the kernel probe.
    pub exec_time: Option<Mono>,
    pub exited: Option<Mono>,
    pub provenance: Option<Provenance>,
    /// When the current provenance arrived.
    pub provenance_time: Option<Mono>,
    pub origin: Origin,
    /// Listening sockets: whether this process is a server.
    pub listening: Listening,
    children: BTreeSet<u32>,
    pinned: bool,
    /// Exited, and kept past its grace period as an ancestor.
    retained: bool,
}

impl Process {
    /// A process with only its identity; callers fill the rest.
    pub fn new(tgid: u32, ppid: u32, start_time: Mono, origin: Origin) -> Self {
        Process {
            tgid,
            ppid,
            creator: ppid,
            comm: String::new(),
            exe_path: None,
            filename: String::new(),
            argv: Vec::new(),
            argv_truncated: false,
            uid: 0,
            gid: 0,
            cgroup_id: 0,
            cgroup: None,
            exe: ExeId::default(),
            start_boottime_ns: 0,
            start_time,
            exec_time: None,
            exited: None,
            provenance: None,
            provenance_time: None,
            origin,
            listening: Listening::default(),
            children: BTreeSet::new(),
            pinned: false,
            retained: false,
        }
    }

    pub fn is_live(&self) -> bool {
        self.exited.is_none()
    }

    /// When the running image started, if the agent saw it happen: the last
    /// exec, else the fork. `None` for processes that predate the agent.
    pub fn observed_start(&self) -> Option<Mono> {
        match self.origin {
            Origin::Sweep | Origin::Inferred => self.exec_time,
            Origin::Exec | Origin::Fork => Some(self.exec_time.unwrap_or(self.start_time)),
        }
    }

    /// Best path for humans: the resolved path, else the provenance path,
    /// else the exec filename.
    pub fn exe_display(&self) -> Option<String> {
        self.exe_path
            .clone()
            .or_else(|| self.provenance.as_ref().and_then(|p| p.path.clone()))
            .or_else(|| (!self.filename.is_empty()).then(|| self.filename.clone()))
    }

    /// Processes it created (live and exited), by tgid.
    pub fn children(&self) -> &BTreeSet<u32> {
        &self.children
    }

    /// Exited and kept only as the ancestor of a live process.
    pub fn is_retained(&self) -> bool {
        self.retained
    }

    pub fn is_verified(&self) -> Option<bool> {
        self.provenance.as_ref().map(Provenance::is_verified)
    }

    /// The ExeId is a usable identity (the kernel read it).
    pub fn has_exe_identity(&self) -> bool {
        exe_identity_known(&self.exe)
    }
}

pub(crate) fn exe_identity_known(exe: &ExeId) -> bool {
    !exe.unknown && (exe.dev != 0 || exe.ino != 0)
}

/// Why a process left the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Eviction {
    /// Exited and the grace period passed.
    Expired,
    /// The table was full.
    Capacity,
    /// Its tgid was reused by a new process.
    Replaced,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EvictionCounts {
    pub expired: u64,
    pub capacity: u64,
    pub replaced: u64,
}

/// How long, and how many, exited ancestors of live processes are kept
/// past the exit grace period. `max == 0` keeps none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// From exit, in ns.
    pub ns: u64,
    pub max: usize,
}

/// Processes looked at when deciding whether an exited process still has a
/// live descendant; past it the answer is "yes" (the retention bounds
/// still hold), so a huge exited subtree never makes a tick slow.
const DESCENDANT_SCAN: usize = 256;

#[derive(Debug)]
pub struct ProcessTable {
    procs: HashMap<u32, Process>,
    by_exe: HashMap<ExeId, BTreeSet<u32>>,
    by_cgroup: HashMap<u64, BTreeSet<u32>>,
    /// (exit time, tgid) of exited processes.
    exited: BTreeSet<(Mono, u32)>,
    /// (start time, tgid) of live, unpinned processes.
    live: BTreeSet<(Mono, u32)>,
    /// (start time, tgid) of live, pinned processes.
    pinned: BTreeSet<(Mono, u32)>,
    /// (exit time, tgid) of exited processes kept as ancestors.
    retained: BTreeSet<(Mono, u32)>,
    cap: usize,
    retention: Retention,
    evictions: EvictionCounts,
}

impl ProcessTable {
    pub fn new(cap: usize) -> Self {
        ProcessTable {
            procs: HashMap::new(),
            by_exe: HashMap::new(),
            by_cgroup: HashMap::new(),
            exited: BTreeSet::new(),
            live: BTreeSet::new(),
            pinned: BTreeSet::new(),
            retained: BTreeSet::new(),
            cap: cap.max(1),
            retention: Retention::default(),
            evictions: EvictionCounts::default(),
        }
    }

    /// A table that keeps exited ancestors of live processes per `retention`.
    pub fn with_retention(cap: usize, retention: Retention) -> Self {
        ProcessTable {
            retention,
            ..ProcessTable::new(cap)
        }
    }

    /// Exited processes kept as ancestors.
    pub fn retained_count(&self) -> usize {
        self.retained.len()
    }
    pub fn get(&self, tgid: u32) -> Option<&Process> {
        self.procs.get(&tgid)
    }

    /// A live process.
    pub fn live(&self, tgid: u32) -> Option<&Process> {
        self.procs.get(&tgid).filter(|p| p.is_live())
    }

    pub fn len(&self) -> usize {
        self.procs.len()
    }

    /// Give mostly empty maps' buffers back (the ordered sets free their
    /// nodes as they go).
    pub fn shrink(&mut self) {
        use crate::shrink::map;
        map(&mut self.procs);
        map(&mut self.by_exe);
        map(&mut self.by_cgroup);
    }

    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    pub fn live_count(&self) -> usize {
        self.live.len() + self.pinned.len()
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    pub fn evictions(&self) -> EvictionCounts {
        self.evictions
    }

    /// All tgids, sorted.
    pub fn tgids(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.procs.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Live processes running the executable `exe`, sorted.
    pub fn with_exe(&self, exe: &ExeId) -> Vec<u32> {
        self.by_exe
            .get(exe)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Live processes in cgroup `id`, sorted.
    pub fn in_cgroup(&self, id: u64) -> Vec<u32> {
        self.by_cgroup
            .get(&id)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Children, grandchildren… of `tgid` (live and exited), sorted.
    pub fn descendants(&self, tgid: u32) -> Vec<u32> {
        let mut out = BTreeSet::new();
        let mut stack = vec![tgid];
        while let Some(t) = stack.pop() {
            let Some(p) = self.procs.get(&t) else {
                continue;
            };
            for &c in &p.children {
                if c != tgid && self.is_child_of(c, p) && out.insert(c) {
                    stack.push(c);
                }
            }
        }
        out.into_iter().collect()
    }

    /// Creator, its creator… of `tgid`, nearest first, as far as the table
    /// knows them (exited and retained ones included).
    pub fn ancestors(&self, tgid: u32) -> Vec<u32> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::from([tgid]);
        let mut cur = self.procs.get(&tgid);
        while let Some(parent) = cur.and_then(|p| self.parent_of(p)) {
            if !seen.insert(parent.tgid) {
                break;
            }
            out.push(parent.tgid);
            cur = Some(parent);
        }
        out
    }

    /// The process that created `p`, if the table still has that process
    /// and not a younger one that reused its tgid.
    pub fn parent_of(&self, p: &Process) -> Option<&Process> {
        if p.creator == 0 || p.creator == p.tgid {
            return None;
        }
        self.procs
            .get(&p.creator)
            .filter(|parent| p.start_time >= parent.start_time)
    }

    /// `child` names `parent` as its creator and is not older than it (an
    /// older "child" means the parent's tgid was reused).
    fn is_child_of(&self, child: u32, parent: &Process) -> bool {
        self.procs
            .get(&child)
            .is_some_and(|c| c.creator == parent.tgid && c.start_time >= parent.start_time)
    }

    /// Some descendant of `tgid` is alive (breadth first, at most
    /// [`DESCENDANT_SCAN`] processes looked at; "yes" past that).
    fn has_live_descendant(&self, tgid: u32) -> bool {
        // Most exited processes never forked (every leaf of an exec storm).
        if self.procs.get(&tgid).is_none_or(|p| p.children.is_empty()) {
            return false;
        }
        let mut queue = VecDeque::from([tgid]);
        let mut seen = 0usize;
        while let Some(t) = queue.pop_front() {
            let Some(p) = self.procs.get(&t) else {
                continue;
            };
            for &c in &p.children {
                if c == tgid || !self.is_child_of(c, p) {
                    continue;
                }
                seen += 1;
                if seen > DESCENDANT_SCAN {
                    return true;
                }
                if self.procs.get(&c).is_some_and(Process::is_live) {
                    return true;
                }
                queue.push_back(c);
            }
        }
        false
    }

    /// Inserts a new process. An existing entry on the same tgid is
    /// replaced (pid reuse). Returns the tgids removed to make room, with
    /// why; the new process itself is never among them.
    pub fn insert(&mut self, p: Process) -> Vec<(u32, Eviction)> {
        let mut removed = Vec::new();
        let tgid = p.tgid;
        if self.procs.contains_key(&tgid) {
            self.remove(tgid);
            self.evictions.replaced += 1;
            removed.push((tgid, Eviction::Replaced));
        }
        while self.procs.len() >= self.cap {
            let Some(victim) = self.victim() else { break };
            self.remove(victim);
            self.evictions.capacity += 1;
            removed.push((victim, Eviction::Capacity));
        }
        let mut p = p;
        p.children.clear();
        // Adopt children already known (a fork event that arrived late).
        if let Some(parent) = self.procs.get_mut(&p.creator) {
            parent.children.insert(tgid);
        }
        self.index(&p);
        self.procs.insert(tgid, p);
        removed
    }

    fn victim(&self) -> Option<u32> {
        self.exited
            .first()
            .or_else(|| self.retained.first())
            .or_else(|| self.live.first())
            .or_else(|| self.pinned.first())
            .map(|&(_, t)| t)
    }

    /// Changes a process in place, keeping the indexes right (exe, cgroup,
    /// creator, start and exit times may all change).
    pub fn update<R>(&mut self, tgid: u32, f: impl FnOnce(&mut Process) -> R) -> Option<R> {
        let mut p = self.procs.remove(&tgid)?;
        self.unindex(&p);
        let old_creator = p.creator;
        let r = f(&mut p);
        p.tgid = tgid;
        if p.exited.is_none() {
            p.retained = false;
        }
        if p.creator != old_creator {
            if let Some(old) = self.procs.get_mut(&old_creator) {
                old.children.remove(&tgid);
            }
            if let Some(new) = self.procs.get_mut(&p.creator) {
                new.children.insert(tgid);
            }
        }
        self.index(&p);
        self.procs.insert(tgid, p);
        Some(r)
    }

    pub fn mark_exited(&mut self, tgid: u32, time: Mono) -> bool {
        self.update(tgid, |p| {
            let first = p.exited.is_none();
            if first {
                p.exited = Some(time);
            }
            first
        })
        .unwrap_or(false)
    }

    /// Pinned processes are evicted last at the cap.
    pub fn set_pinned(&mut self, tgid: u32, pinned: bool) {
        if self.procs.get(&tgid).is_some_and(|p| p.pinned != pinned) {
            self.update(tgid, |p| p.pinned = pinned);
        }
    }

    /// Ends the grace period of processes that exited more than `grace_ns`
    /// before `now`: each is removed, or kept as an ancestor when it still
    /// has a live descendant (within the retention bounds); retained
    /// ancestors past their time, or over the count, are removed. Returns
    /// the tgids whose per-process state can go: removed or now retained.
    pub fn expire(&mut self, now: Mono, grace_ns: u64) -> Vec<u32> {
        let mut out = Vec::new();
        while let Some(&(t, tgid)) = self.exited.first() {
            if now.saturating_sub(t) < grace_ns {
                break;
            }
            let keep = self.retention.max > 0
                && now.saturating_sub(t) < self.retention.ns
                && self.has_live_descendant(tgid);
            if keep {
                self.update(tgid, |p| p.retained = true);
            } else {
                self.remove(tgid);
                self.evictions.expired += 1;
            }
            out.push(tgid);
        }
        while let Some(&(t, tgid)) = self.retained.first() {
            let old = now.saturating_sub(t) >= self.retention.ns;
            if !old && self.retained.len() <= self.retention.max {
                break;
            }
            self.remove(tgid);
            if old {
                self.evictions.expired += 1;
            } else {
                self.evictions.capacity += 1;
            }
        }
        out
    }

    /// Removes a process (not counted as an eviction).
    pub fn remove(&mut self, tgid: u32) -> Option<Process> {
        let p = self.procs.remove(&tgid)?;
        self.unindex(&p);
        if let Some(parent) = self.procs.get_mut(&p.creator) {
            parent.children.remove(&tgid);
        }
        Some(p)
    }

    fn index(&mut self, p: &Process) {
        // Executable and cgroup indexes hold live processes only: a busy
        // node execs the same binary thousands of times a minute, and the
        // exited ones waiting out their grace period must not make every
        // lookup slower.
        if p.is_live() {
            if exe_identity_known(&p.exe) {
                self.by_exe.entry(p.exe.clone()).or_default().insert(p.tgid);
            }
            self.by_cgroup
                .entry(p.cgroup_id)
                .or_default()
                .insert(p.tgid);
        }
        match (p.exited, p.pinned) {
            (Some(t), _) if p.retained => self.retained.insert((t, p.tgid)),
            (Some(t), _) => self.exited.insert((t, p.tgid)),
            (None, false) => self.live.insert((p.start_time, p.tgid)),
            (None, true) => self.pinned.insert((p.start_time, p.tgid)),
        };
    }

    fn unindex(&mut self, p: &Process) {
        if let Some(set) = self.by_exe.get_mut(&p.exe) {
            set.remove(&p.tgid);
            if set.is_empty() {
                self.by_exe.remove(&p.exe);
            }
        }
        if let Some(set) = self.by_cgroup.get_mut(&p.cgroup_id) {
            set.remove(&p.tgid);
            if set.is_empty() {
                self.by_cgroup.remove(&p.cgroup_id);
            }
        }
        match (p.exited, p.pinned) {
            (Some(t), _) if p.retained => self.retained.remove(&(t, p.tgid)),
            (Some(t), _) => self.exited.remove(&(t, p.tgid)),
            (None, false) => self.live.remove(&(p.start_time, p.tgid)),
            (None, true) => self.pinned.remove(&(p.start_time, p.tgid)),
        };
    }
}

impl Origin {
    pub fn from_source(s: Source) -> Origin {
        match s {
            Source::Kernel => Origin::Exec,
            Source::Sweep => Origin::Sweep,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(tgid: u32, ppid: u32, start: u64) -> Process {
        Process::new(tgid, ppid, Mono(start), Origin::Exec)
    }

    fn exe(ino: u64) -> ExeId {
        ExeId {
            dev: 8,
            ino,
            nlink: 1,
            memfd: false,
            name: format!("bin{ino}"),
            unknown: false,
        }
    }

    #[test]
    fn tree_walks() {
        let mut t = ProcessTable::new(100);
        t.insert(proc(1, 0, 0));
        t.insert(proc(10, 1, 1));
        t.insert(proc(11, 10, 2));
        t.insert(proc(12, 10, 3));
        t.insert(proc(13, 11, 4));
        t.insert(proc(20, 1, 5));
        assert_eq!(t.descendants(10), vec![11, 12, 13]);
        assert_eq!(t.ancestors(13), vec![11, 10, 1]);
        assert_eq!(t.descendants(13), Vec::<u32>::new());
        // Benign look-alike: pid 11 reused by an unrelated, younger process
        // whose parent is 20; 13 (older than the new 11) is no longer its
        // child.
        let mut reused = proc(11, 20, 10);
        reused.exe = exe(5);
        t.insert(reused);
        assert_eq!(t.descendants(10), vec![12]);
        assert_eq!(t.descendants(20), vec![11]);
        assert_eq!(t.ancestors(13), Vec::<u32>::new());
        assert_eq!(t.evictions().replaced, 1);
    }

    #[test]
    fn tree_follows_the_creator_through_re_parenting() {
        let mut t = ProcessTable::new(100);
        t.insert(proc(10, 1, 1));
        t.insert(proc(20, 10, 2)); // the shell's fork
        t.mark_exited(10, Mono(3));
        // The shell is gone; the child's exec reports init as its parent.
        t.update(20, |p| p.ppid = 1);
        assert_eq!(t.get(20).map(|p| (p.ppid, p.creator)), Some((1, 10)));
        assert_eq!(t.ancestors(20), vec![10]);
        assert_eq!(t.descendants(10), vec![20]);
    }

    fn retaining(cap: usize, secs: u64, max: usize) -> ProcessTable {
        ProcessTable::with_retention(
            cap,
            Retention {
                ns: secs * 1_000_000_000,
                max,
            },
        )
    }

    #[test]
    fn exited_ancestors_of_live_processes_outlive_the_grace_within_bounds() {
        let s = |n: u64| n * 1_000_000_000;
        let mut t = retaining(100, 60, 2);
        t.insert(proc(10, 1, s(1))); // sh
        t.insert(proc(11, 10, s(2))); // subshell
        t.insert(proc(12, 11, s(3))); // miner
        t.insert(proc(20, 1, s(1))); // a shell whose children all exited
        t.insert(proc(21, 20, s(2)));
        t.mark_exited(11, Mono(s(4)));
        t.mark_exited(10, Mono(s(5)));
        t.mark_exited(21, Mono(s(4)));
        t.mark_exited(20, Mono(s(5)));
        let gone = t.expire(Mono(s(20)), s(10));
        assert_eq!(gone.len(), 4, "every exited process left the grace period");
        assert!(t.get(10).is_some_and(Process::is_retained));
        assert!(t.get(11).is_some_and(Process::is_retained));
        assert!(
            t.get(20).is_none() && t.get(21).is_none(),
            "no live descendant"
        );
        assert_eq!(t.ancestors(12), vec![11, 10]);
        assert_eq!(t.retained_count(), 2);
        // Past the retention time they go too, the first exit first.
        t.expire(Mono(s(64)), s(10));
        assert!(t.get(11).is_none() && t.get(10).is_some());
        t.expire(Mono(s(65)), s(10));
        assert_eq!((t.retained_count(), t.ancestors(12)), (0, vec![]));
        assert!(t.live(12).is_some());
    }

    #[test]
    fn retained_ancestors_are_bounded_by_count_oldest_first() {
        let s = |n: u64| n * 1_000_000_000;
        let mut t = retaining(100, 3600, 2);
        for i in 0..3u32 {
            let (parent, child) = (100 + i, 200 + i);
            t.insert(proc(parent, 1, s(1)));
            t.insert(proc(child, parent, s(2)));
            t.mark_exited(parent, Mono(s(3 + u64::from(i))));
        }
        t.expire(Mono(s(30)), s(10));
        assert_eq!(t.retained_count(), 2);
        assert!(t.get(100).is_none(), "the oldest exit went first");
        assert!(t.get(101).is_some() && t.get(102).is_some());
        assert_eq!(t.evictions().capacity, 1);
    }

    #[test]
    fn at_the_cap_retained_ancestors_go_before_live_processes() {
        let s = |n: u64| n * 1_000_000_000;
        let mut t = retaining(4, 3600, 10);
        t.insert(proc(10, 1, s(1)));
        t.insert(proc(11, 10, s(2)));
        t.mark_exited(10, Mono(s(3)));
        t.expire(Mono(s(20)), s(10));
        assert!(t.get(10).is_some_and(Process::is_retained));
        t.insert(proc(30, 1, s(21)));
        t.insert(proc(31, 1, s(22)));
        t.mark_exited(31, Mono(s(23)));
        assert_eq!(t.insert(proc(32, 1, s(24))), vec![(31, Eviction::Capacity)]);
        assert_eq!(t.insert(proc(33, 1, s(25))), vec![(10, Eviction::Capacity)]);
        assert_eq!(t.insert(proc(34, 1, s(26))), vec![(11, Eviction::Capacity)]);
    }

    #[test]
    fn a_storm_of_short_lived_children_retains_nothing() {
        let s = |n: u64| n * 1_000_000_000;
        let mut t = retaining(100_000, 3600, 4096);
        t.insert(proc(1000, 1, 0));
        for i in 0..10_000u32 {
            let tgid = 2000 + i;
            t.insert(proc(tgid, 1000, s(1) + u64::from(i)));
            t.mark_exited(tgid, Mono(s(1) + u64::from(i) + 1));
        }
        t.expire(Mono(s(20)), s(10));
        assert_eq!((t.len(), t.retained_count()), (1, 0));
    }

    #[test]
    fn a_reused_tgid_replaces_a_retained_ancestor() {
        let s = |n: u64| n * 1_000_000_000;
        let mut t = retaining(100, 3600, 10);
        t.insert(proc(10, 1, s(1)));
        t.insert(proc(11, 10, s(2)));
        t.mark_exited(10, Mono(s(3)));
        t.expire(Mono(s(20)), s(10));
        assert_eq!(t.insert(proc(10, 1, s(30))), vec![(10, Eviction::Replaced)]);
        assert_eq!(t.retained_count(), 0);
        assert!(t.ancestors(11).is_empty(), "the new 10 is younger than 11");
    }

    #[test]
    fn exit_marks_then_expires_after_grace() {
        let mut t = ProcessTable::new(100);
        t.insert(proc(5, 1, 0));
        assert!(t.mark_exited(5, Mono(100)));
        assert!(!t.mark_exited(5, Mono(200)), "second exit is ignored");
        assert!(t.get(5).is_some());
        assert_eq!(t.expire(Mono(150), 100), Vec::<u32>::new());
        assert_eq!(t.expire(Mono(200), 100), vec![5]);
        assert!(t.get(5).is_none());
        assert_eq!(t.evictions().expired, 1);
    }

    #[test]
    fn cap_evicts_exited_then_unpinned_then_pinned() {
        let mut t = ProcessTable::new(3);
        t.insert(proc(1, 0, 1));
        t.insert(proc(2, 0, 2));
        t.insert(proc(3, 0, 3));
        t.set_pinned(1, true);
        t.mark_exited(3, Mono(10));
        assert_eq!(t.insert(proc(4, 0, 4)), vec![(3, Eviction::Capacity)]);
        assert_eq!(t.insert(proc(5, 0, 5)), vec![(2, Eviction::Capacity)]);
        assert_eq!(t.insert(proc(6, 0, 6)), vec![(4, Eviction::Capacity)]);
        t.set_pinned(5, true);
        t.set_pinned(6, true);
        assert_eq!(t.insert(proc(7, 0, 7)), vec![(1, Eviction::Capacity)]);
        assert_eq!(t.len(), 3);
        assert_eq!(t.evictions().capacity, 4);
    }

    #[test]
    fn indexes_follow_updates() {
        let mut t = ProcessTable::new(10);
        let mut p = proc(7, 1, 0);
        p.exe = exe(1);
        p.cgroup_id = 42;
        t.insert(p);
        assert_eq!(t.with_exe(&exe(1)), vec![7]);
        assert_eq!(t.in_cgroup(42), vec![7]);
        t.update(7, |p| {
            p.exe = exe(2);
            p.cgroup_id = 43;
        });
        assert!(t.with_exe(&exe(1)).is_empty());
        assert_eq!(t.with_exe(&exe(2)), vec![7]);
        assert_eq!(t.in_cgroup(43), vec![7]);
        t.mark_exited(7, Mono(5));
        assert!(
            t.with_exe(&exe(2)).is_empty() && t.in_cgroup(43).is_empty(),
            "live only"
        );
        // Unknown identities are not indexed (they would all collide).
        let unknown = ExeId {
            unknown: true,
            ..ExeId::default()
        };
        let mut q = proc(8, 1, 0);
        q.exe = unknown.clone();
        t.insert(q);
        assert!(t.with_exe(&unknown).is_empty());
    }
}
