//! Poll per-process CPU time and the drop counters (`DROPS`) and turn them
//! into events: one `CpuSample` per poll with the on-CPU time each process
//! used since the previous poll, and `Lost` events for new drops.
//!
//! CPU time is the scheduler's own: the `iter/task` iterator
//! (`task_iter.rs`) reports every live user thread's `sum_exec_runtime`
//! and each process's dead threads' total, summed here per process. No
//! hook runs at context switches or ticks for it, and a thread alone on an
//! idle core is current at every poll.
//!
//! The exit record's total is a process's last word: the [`CpuLedger`]
//! reports exactly `total − already reported`, whether the process lived
//! across many polls, died between two, or was gone from the iterator
//! before its exit record was drained. Over a process's life the samples
//! add up to its exit total, never more.

use std::collections::HashMap;

use aya::maps::{MapData, PerCpuArray};
use miner_ebpf_common::{DROP_SITES, DropSite};

use super::{nudge::NudgeSwitch, task_iter::TaskIter};
use crate::event::{CpuSample, CpuUsage, Lost};
use crate::time::Mono;

/// A tgid absent from the iterator this many polls, with no exit record,
/// is forgotten (its exit was lost: ring full).
const FORGET_AFTER_POLLS: u32 = 5;

/// What has been reported per process: the pure half of the poller, so
/// the accounting is tested without a kernel.
#[derive(Debug, Default)]
pub struct CpuLedger {
    /// tgid → (ns reported so far, poll that last saw it in the map).
    reported: HashMap<u32, (u64, u32)>,
    /// Exit totals not yet turned into a sample.
    exited: Vec<(u32, u64)>,
    polls: u32,
}

impl CpuLedger {
    /// An exit record's final total for `tgid`.
    pub fn on_exit(&mut self, tgid: u32, total_ns: u64) {
        self.exited.push((tgid, total_ns));
    }

    /// One poll over the map's `(tgid, total ns)` entries: the CPU each
    /// process used since the previous poll, sorted by tgid. `baseline`:
    /// record the totals as already reported and return nothing (the first
    /// poll: CPU from before the agent is not news).
    pub fn poll(
        &mut self,
        entries: impl IntoIterator<Item = (u32, u64)>,
        baseline: bool,
    ) -> Vec<CpuUsage> {
        self.polls = self.polls.wrapping_add(1);
        let poll = self.polls;
        let mut delta: HashMap<u32, u64> = HashMap::new();
        // Exits first: an entry for the same tgid in this poll can then only
        // be a new process that reused it.
        for (tgid, total) in std::mem::take(&mut self.exited) {
            let before = self.reported.remove(&tgid).map_or(0, |(ns, _)| ns);
            *delta.entry(tgid).or_default() += total.saturating_sub(before);
        }
        for (tgid, ns) in entries {
            let d = match self.reported.get_mut(&tgid) {
                Some((seen_ns, seen_poll)) => {
                    // A smaller total: the entry was re-created (LRU
                    // eviction, or a new process on a reused tgid) and all
                    // of it is new.
                    let d = if ns >= *seen_ns { ns - *seen_ns } else { ns };
                    *seen_ns = ns;
                    *seen_poll = poll;
                    d
                }
                None => {
                    self.reported.insert(tgid, (ns, poll));
                    ns
                }
            };
            if d > 0 {
                *delta.entry(tgid).or_default() += d;
            }
        }
        self.reported
            .retain(|_, (_, seen)| poll.wrapping_sub(*seen) < FORGET_AFTER_POLLS);
        if baseline {
            return Vec::new();
        }
        let mut usage: Vec<CpuUsage> = delta
            .into_iter()
            .filter(|&(_, ns)| ns > 0)
            .map(|(tgid, on_cpu_ns)| CpuUsage { tgid, on_cpu_ns })
            .collect();
        usage.sort_by_key(|u| u.tgid);
        usage
    }

    pub fn tracked(&self) -> usize {
        self.reported.len()
    }
}

pub struct CpuPoller {
    iter: Option<TaskIter>,
    drops: PerCpuArray<MapData, u64>,
    ledger: CpuLedger,
    last_time: Option<Mono>,
    last_drops: [u64; DROP_SITES as usize],
    /// tgid → total this poll (kept to reuse its allocation).
    totals: HashMap<u32, u64>,
    read_errors: u64,
    /// Children that forked and exited without a record (`QUIET`), and the
    /// total already reported.
    quiet: Option<(PerCpuArray<MapData, u64>, u64)>,
    /// The fpu nudges, on only while some process is busy (`nudge.rs`).
    nudges: Option<NudgeSwitch>,
}

/// A process using at least this share of one core in a poll keeps the
/// fpu nudges on: a thread alone on its core may never be switched out.
/// Below it, threads sleep often enough to be seen at their own switches.
const NUDGE_BUSY_SHARE: f64 = 0.25;

/// Whether a poll's usage calls for nudges.
pub fn busy(usage: &[CpuUsage], interval_ns: u64) -> bool {
    let floor = (interval_ns as f64 * NUDGE_BUSY_SHARE) as u64;
    usage.iter().any(|u| u.on_cpu_ns >= floor.max(1))
}

impl CpuPoller {
    /// `iter` is `None` when the task iterator could not attach: no CPU
    /// samples then (the loader has said why).
    pub fn new(iter: Option<TaskIter>, drops: PerCpuArray<MapData, u64>) -> Self {
        CpuPoller {
            iter,
            drops,
            ledger: CpuLedger::default(),
            last_time: None,
            last_drops: [0; DROP_SITES as usize],
            totals: HashMap::new(),
            read_errors: 0,
            quiet: None,
            nudges: None,
        }
    }

    /// Switch the fpu nudges by each poll's usage.
    pub fn with_nudges(mut self, nudges: Option<NudgeSwitch>) -> Self {
        self.nudges = nudges;
        self
    }

    /// Also poll the kernel's count of quiet forks (`Sensor::take_quiet`).
    pub fn with_quiet(mut self, quiet: PerCpuArray<MapData, u64>) -> Self {
        self.quiet = Some((quiet, 0));
        self
    }

    /// Quiet forks since the previous call: children the kernel saw fork
    /// and exit, with no record sent for either.
    pub fn poll_quiet(&mut self) -> u64 {
        let Some((map, seen)) = self.quiet.as_mut() else {
            return 0;
        };
        let Ok(values) = map.get(&0, 0) else {
            return 0;
        };
        let total: u64 = values.iter().sum();
        let delta = total.saturating_sub(*seen);
        *seen = total;
        delta
    }

    /// Feed an exit's final CPU total; the next sample carries whatever of
    /// it earlier samples did not.
    pub fn on_exit(&mut self, tgid: u32, cpu_ns: u64) {
        self.ledger.on_exit(tgid, cpu_ns);
    }

    /// One poll. The first only takes a baseline and returns no sample.
    pub fn poll_cpu(&mut self, now: Mono) -> Option<CpuSample> {
        let records = match self.iter.as_mut()?.read() {
            Ok(r) => r,
            Err(e) => {
                self.read_errors += 1;
                if self.read_errors == 1 || self.read_errors.is_power_of_two() {
                    log::warn!(
                        "reading the CPU iterator failed ({e}); {} failure(s) so far",
                        self.read_errors
                    );
                }
                return None;
            }
        };
        self.totals.clear();
        for r in records {
            *self.totals.entry(r.tgid).or_default() += r.runtime_ns + r.dead_threads_ns;
        }
        let usage = self.ledger.poll(
            self.totals.iter().map(|(&t, &ns)| (t, ns)),
            self.last_time.is_none(),
        );
        let sample = self.last_time.map(|prev| CpuSample {
            time: now,
            interval_ns: now.saturating_sub(prev),
            usage,
        });
        if let (Some(s), Some(n)) = (&sample, &self.nudges) {
            n.set(busy(&s.usage, s.interval_ns));
        }
        self.last_time = Some(now);
        sample
    }

    /// New kernel-side drops since the previous call, per site.
    pub fn poll_drops(&mut self, now: Mono) -> Vec<Lost> {
        let mut lost = Vec::new();
        for site in DropSite::ALL {
            let Ok(values) = self.drops.get(&(site as u32), 0) else {
                continue;
            };
            let total: u64 = values.iter().sum();
            let idx = site as usize;
            let delta = total.saturating_sub(self.last_drops[idx]);
            self.last_drops[idx] = total;
            if delta > 0 {
                lost.push(Lost {
                    time: now,
                    site,
                    count: delta,
                });
            }
        }
        lost
    }

    pub fn tracked(&self) -> usize {
        self.ledger.tracked()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nudges_stay_on_only_while_a_process_uses_a_quarter_of_a_core() {
        let u = |tgid, on_cpu_ns| CpuUsage { tgid, on_cpu_ns };
        let second = 1_000_000_000;
        assert!(!busy(&[], second), "idle host");
        assert!(
            !busy(&[u(1, 100_000_000), u(2, 240_000_000)], second),
            "several light processes"
        );
        assert!(
            busy(&[u(1, 1), u(2, 250_000_000)], second),
            "a quarter core"
        );
        assert!(busy(&[u(3, 2 * second)], second), "two cores");
        assert!(
            busy(&[u(4, 500_000_000)], 2 * second),
            "a quarter over a 2 s poll"
        );
        assert!(!busy(&[u(4, 400_000_000)], 2 * second));
        assert!(!busy(&[u(5, 0)], 0), "a zero-length interval is not busy");
    }

    fn of(usage: &[CpuUsage], tgid: u32) -> u64 {
        usage
            .iter()
            .filter(|u| u.tgid == tgid)
            .map(|u| u.on_cpu_ns)
            .sum()
    }

    #[test]
    fn samples_of_a_process_add_up_to_its_exit_total() {
        let mut l = CpuLedger::default();
        assert!(l.poll([(7, 100)], true).is_empty(), "baseline");
        assert_eq!(of(&l.poll([(7, 1_100)], false), 7), 1_000);
        assert_eq!(of(&l.poll([(7, 2_100)], false), 7), 1_000);
        // Exits between polls: the map entry is gone, the exit says 2_600.
        l.on_exit(7, 2_600);
        let last = l.poll([], false);
        assert_eq!(of(&last, 7), 500, "exactly what was not reported yet");
        assert!(l.poll([], false).is_empty(), "and never again");
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn a_process_gone_from_the_map_before_its_exit_record_is_not_reported_twice() {
        // The poll runs after the exit hook removed the entry but before
        // the exit record was drained: nothing for that poll, then the
        // remainder — not the whole lifetime in one 1 s sample.
        let mut l = CpuLedger::default();
        l.poll([], true);
        assert_eq!(of(&l.poll([(9, 900_000_000)], false), 9), 900_000_000);
        assert_eq!(of(&l.poll([(9, 1_900_000_000)], false), 9), 1_000_000_000);
        assert!(l.poll([], false).is_empty());
        l.on_exit(9, 2_300_000_000);
        assert_eq!(of(&l.poll([], false), 9), 400_000_000);
    }

    #[test]
    fn a_short_process_between_two_polls_is_reported_whole() {
        let mut l = CpuLedger::default();
        l.poll([], true);
        l.on_exit(11, 300_000_000);
        assert_eq!(of(&l.poll([], false), 11), 300_000_000);
    }

    #[test]
    fn a_reused_tgid_after_an_exit_counts_as_a_new_process() {
        let mut l = CpuLedger::default();
        l.poll([(5, 0)], true);
        assert_eq!(of(&l.poll([(5, 1_000)], false), 5), 1_000);
        l.on_exit(5, 1_200);
        // Same poll: the new process on tgid 5 already ran 300.
        assert_eq!(of(&l.poll([(5, 300)], false), 5), 200 + 300);
        assert_eq!(of(&l.poll([(5, 400)], false), 5), 100);
    }

    #[test]
    fn a_recreated_entry_is_new_cpu_not_a_negative_delta() {
        let mut l = CpuLedger::default();
        l.poll([(3, 5_000)], true);
        // LRU evicted and re-created with a fresh count.
        assert_eq!(of(&l.poll([(3, 40)], false), 3), 40);
    }

    #[test]
    fn tgids_absent_without_an_exit_are_forgotten() {
        let mut l = CpuLedger::default();
        l.poll([(3, 5)], true);
        for _ in 0..FORGET_AFTER_POLLS {
            l.poll([], false);
        }
        assert_eq!(l.tracked(), 0);
    }
}
