//! Processes born and gone within one drain of the ring: an exec storm of
//! `/bin/true`, a build's thousands of compiler and shell calls. By the
//! time the detector would see them they are dead: no verdict can name
//! them, they are nobody's ancestor (they have no children) and they own no
//! flow. They still reach the metrics, the tail and recordings; only the
//! detector and the provenance check are spared them, which is most of an
//! exec's cost in user space.

use std::collections::{HashMap, HashSet};

use crate::event::{Event, Exec, Source};

#[derive(Default)]
struct Seen {
    exec: bool,
    exited: bool,
    /// Anything else about the tgid in this batch: children, sockets, FPU
    /// or hint records, an exit before its exec (a reused tgid), a second
    /// fork — any of which the detector needs.
    needed: bool,
}

/// The tgids of `events` that exec'd and then exited in this batch and did
/// nothing else; `needed` says which execs are evidence by themselves (a
/// `modprobe msr` is a hint about its parent).
#[cfg(test)]
pub fn short_lived(events: &[Event], needed: impl Fn(&Exec) -> bool) -> HashSet<u32> {
    let mut s = Scanner::default();
    s.scan(events, needed);
    s.short
}

/// [`short_lived`] with its maps kept from batch to batch: a storm's
/// batches are thousands of events, and growing fresh maps for each was a
/// tenth of the daemon's storm CPU.
#[derive(Default)]
pub struct Scanner {
    seen: HashMap<u32, Seen>,
    short: HashSet<u32>,
}

impl Scanner {
    pub fn scan(&mut self, events: &[Event], needed: impl Fn(&Exec) -> bool) -> &HashSet<u32> {
        self.seen.clear();
        self.short.clear();
        // Nothing exited: nothing is short-lived (an idle drain costs this).
        if !events.iter().any(|e| matches!(e, Event::Exit(_))) {
            return &self.short;
        }
        fill(&mut self.seen, events, needed);
        self.short.extend(
            self.seen
                .iter()
                .filter(|(_, s)| s.exec && s.exited && !s.needed)
                .map(|(t, _)| *t),
        );
        // A storm's peak capacity is not kept for the rest of the day.
        crate::shrink::map(&mut self.seen);
        &self.short
    }
}

fn fill(seen: &mut HashMap<u32, Seen>, events: &[Event], needed: impl Fn(&Exec) -> bool) {
    for ev in events {
        match ev {
            Event::Exec(e) => {
                let s = seen.entry(e.tgid).or_default();
                s.needed |= s.exited || e.source != Source::Kernel || needed(e);
                s.exec = true;
            }
            Event::Exit(x) => {
                let s = seen.entry(x.tgid).or_default();
                s.needed |= !s.exec || s.exited;
                s.exited = true;
            }
            Event::Fork(f) => {
                seen.entry(f.parent_tgid).or_default().needed = true;
                let s = seen.entry(f.child_tgid).or_default();
                s.needed |= s.exec || s.exited;
            }
            ev => {
                if let Some(t) = ev.tgid() {
                    seen.entry(t).or_default().needed = true;
                }
            }
        }
    }
}

/// Whether this event is one of a short-lived process's own.
pub fn is_own(ev: &Event, short: &HashSet<u32>) -> bool {
    match ev {
        Event::Exec(e) => short.contains(&e.tgid),
        Event::Exit(x) => short.contains(&x.tgid),
        Event::Fork(f) => short.contains(&f.child_tgid),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::{Exit, Fork, Fpu},
        time::Mono,
    };

    fn exec(tgid: u32, ppid: u32) -> Event {
        Event::Exec(Exec {
            time: Mono(1),
            tgid,
            pid: tgid,
            ppid,
            uid: 0,
            gid: 0,
            cgroup_id: 1,
            start_boottime_ns: 0,
            comm: "true".into(),
            filename: "/bin/true".into(),
            argv: vec!["true".into()],
            argv_truncated: false,
            exe: Default::default(),
            exe_path: None,
            cgroup: None,
            source: Source::Kernel,
        })
    }
    fn fork(parent: u32, child: u32) -> Event {
        Event::Fork(Fork {
            time: Mono(1),
            parent_tgid: parent,
            child_tgid: child,
            child_start_boottime_ns: 0,
            comm: String::new(),
        })
    }
    fn exit(tgid: u32) -> Event {
        Event::Exit(Exit {
            time: Mono(2),
            tgid,
            status: 0,
            signal: 0,
            cpu_ns: 1_000_000,
            comm: "true".into(),
        })
    }
    fn sorted(s: HashSet<u32>) -> Vec<u32> {
        let mut v: Vec<u32> = s.into_iter().collect();
        v.sort();
        v
    }

    #[test]
    fn a_storm_of_leaves_is_short_lived_and_their_parent_is_not() {
        let mut evs = Vec::new();
        for c in 100..110 {
            evs.extend([fork(10, c), exec(c, 10), exit(c)]);
        }
        assert_eq!(
            sorted(short_lived(&evs, |_| false)),
            (100..110).collect::<Vec<_>>()
        );
        assert!(
            evs.iter()
                .filter(|e| is_own(e, &short_lived(&evs, |_| false)))
                .count()
                == 30
        );
    }

    #[test]
    fn what_the_detector_needs_is_kept() {
        // Still running at the end of the batch.
        let alive = [fork(10, 20), exec(20, 10)];
        assert!(short_lived(&alive, |_| false).is_empty());
        // A shell that started a miner and exited: it has a child (the
        // chain's ancestor), so it stays.
        let dropper = [exec(30, 10), fork(30, 31), exec(31, 30), exit(30)];
        assert!(short_lived(&dropper, |_| false).is_empty());
        // Any record of its own (here its FPU state; sockets alike).
        let worker = [
            exec(40, 10),
            Event::Fpu(Fpu {
                time: Mono(1),
                tgid: 40,
                pid: 40,
                comm: String::new(),
                mxcsr: 0x9fc0,
                seen: 1,
            }),
            exit(40),
        ];
        assert!(short_lived(&worker, |_| false).is_empty());
        // Evidence about its parent (modprobe msr).
        assert!(short_lived(&[exec(50, 10), exit(50)], |_| true).is_empty());
        // An exit before the exec: an older process's, the tgid reused.
        assert!(short_lived(&[exit(60), fork(10, 60), exec(60, 10)], |_| false).is_empty());
        // Reused within the batch after dying: the second life is kept.
        let reused = [exec(70, 10), exit(70), fork(10, 70), exec(70, 10), exit(70)];
        assert!(short_lived(&reused, |_| false).is_empty());
        // Exited without an exec in this batch (exec drained earlier).
        assert!(short_lived(&[exit(80)], |_| false).is_empty());
    }

    #[test]
    fn the_scanner_forgets_the_previous_batch() {
        let mut s = Scanner::default();
        let first = [fork(10, 100), exec(100, 10), exit(100)];
        assert_eq!(sorted(s.scan(&first, |_| false).clone()), vec![100]);
        // Its exit in the next batch: the exec was in the last one.
        let second = [exec(101, 10), exit(100)];
        assert!(s.scan(&second, |_| false).is_empty());
    }
}
