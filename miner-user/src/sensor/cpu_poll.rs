//! Poll the kernel's per-tgid CPU time (`CPU_NS`) and drop counters
//! (`DROPS`) and turn them into events: one `CpuSample` per poll with the
//! on-CPU time each process used since the previous poll, and `Lost`
//! events for new drops.

use std::collections::HashMap;

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray};
use miner_ebpf_common::{DROP_SITES, DropSite};

use crate::event::{CpuSample, CpuUsage, Lost};
use crate::time::Mono;

/// Dead tgids are pruned from the kernel map every this many polls.
const PRUNE_EVERY: u32 = 10;

pub struct CpuPoller {
    cpu: BpfHashMap<MapData, u32, u64>,
    drops: PerCpuArray<MapData, u64>,
    last: HashMap<u32, u64>,
    last_time: Option<Mono>,
    last_drops: [u64; DROP_SITES as usize],
    polls: u32,
    proc_root: std::path::PathBuf,
    /// Final totals from exit events since the last poll: the kernel drops a
    /// process's entry at exit, so its last slice would otherwise be lost.
    exited: Vec<(u32, u64)>,
}

impl CpuPoller {
    pub fn new(cpu: BpfHashMap<MapData, u32, u64>, drops: PerCpuArray<MapData, u64>) -> Self {
        CpuPoller {
            cpu,
            drops,
            last: HashMap::new(),
            last_time: None,
            last_drops: [0; DROP_SITES as usize],
            polls: 0,
            proc_root: crate::defaults::PROC_PATH.into(),
            exited: Vec::new(),
        }
    }

    /// Feed an exit's final CPU total; the next sample includes the slice
    /// since the previous poll.
    pub fn on_exit(&mut self, tgid: u32, cpu_ns: u64) {
        self.exited.push((tgid, cpu_ns));
    }

    /// One poll. The first only takes a baseline and returns no sample.
    pub fn poll_cpu(&mut self, now: Mono) -> Option<CpuSample> {
        let mut current = HashMap::with_capacity(self.last.len() + 16);
        for (tgid, ns) in self.cpu.iter().filter_map(Result::ok) {
            current.insert(tgid, ns);
        }
        for (tgid, ns) in std::mem::take(&mut self.exited) {
            // Only if the map no longer has it (a reused tgid may be back).
            current.entry(tgid).or_insert(ns);
        }
        self.polls += 1;
        if self.polls.is_multiple_of(PRUNE_EVERY) {
            self.prune(&current);
        }
        let sample = self.last_time.map(|prev| {
            let mut usage: Vec<CpuUsage> = current
                .iter()
                .filter_map(|(&tgid, &ns)| {
                    // A tgid new since the last poll ran all of `ns` in the
                    // interval (or before we started, on the first poll).
                    let before = self.last.get(&tgid).copied().unwrap_or(0);
                    let delta = ns.saturating_sub(before);
                    (delta > 0).then_some(CpuUsage {
                        tgid,
                        on_cpu_ns: delta,
                    })
                })
                .collect();
            usage.sort_by_key(|u| u.tgid);
            CpuSample {
                time: now,
                interval_ns: now.saturating_sub(prev),
                usage,
            }
        });
        self.last = current;
        self.last_time = Some(now);
        sample
    }

    /// Remove entries of processes that no longer exist (their exit was not
    /// seen: map full during a storm, or they predate the exit hook).
    fn prune(&mut self, current: &HashMap<u32, u64>) {
        for &tgid in current.keys() {
            if !self.proc_root.join(tgid.to_string()).exists() {
                let _ = self.cpu.remove(&tgid);
            }
        }
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
                    site: site.name().to_owned(),
                    count: delta,
                });
            }
        }
        lost
    }

    pub fn tracked(&self) -> usize {
        self.last.len()
    }
}
