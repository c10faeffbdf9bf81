//! CPU residency: a sliding history of per-process samples, and the
//! "sustained" judgement over one process or a group of them.
//!
//! A sample says how much of one core a process used over the span it
//! covers (threads add up, so it can exceed 1). Sustained means busy samples
//! cover enough of the window, not every second: a throttled miner (0.5
//! core) and one that pauses and resumes both qualify, a compile step or a
//! handshake burst does not.

use std::collections::{BTreeMap, VecDeque};

use crate::time::Mono;

use super::DetectorConfig;

/// Upper bound on samples kept per process (a 10 s window at 10 Hz polling
/// is 100).
const MAX_POINTS: usize = 256;

/// Samples shorter than this are too short to judge (a process that
/// started a few ms before the poll).
pub const MIN_SPAN_NS: u64 = 50_000_000;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuPoint {
    /// End of the span the sample covers.
    pub time: Mono,
    pub span_ns: u64,
    /// Fraction of one core over the span.
    pub cores: f64,
}

#[derive(Debug, Clone, Default)]
pub struct CpuHistory {
    points: VecDeque<CpuPoint>,
}

impl CpuHistory {
    pub fn push(&mut self, p: CpuPoint, window_ns: u64) {
        self.prune(p.time, window_ns);
        if self.points.len() == MAX_POINTS {
            self.points.pop_front();
        }
        self.points.push_back(p);
    }

    pub fn prune(&mut self, now: Mono, window_ns: u64) {
        let horizon = now.ns().saturating_sub(window_ns);
        while self.points.front().is_some_and(|p| p.time.ns() <= horizon) {
            self.points.pop_front();
        }
    }

    /// Samples inside the window ending at `now`.
    pub fn in_window(&self, now: Mono, window_ns: u64) -> impl Iterator<Item = &CpuPoint> {
        let horizon = now.ns().saturating_sub(window_ns);
        self.points.iter().filter(move |p| p.time.ns() > horizon)
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

/// The thresholds, in nanoseconds, from the config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuPolicy {
    pub busy_cores: f64,
    pub window_ns: u64,
    pub sustained_ns: u64,
}

impl CpuPolicy {
    pub fn from_config(cfg: &DetectorConfig) -> Self {
        CpuPolicy {
            busy_cores: cfg.cpu_busy_cores,
            window_ns: (cfg.cpu_window_secs * 1e9) as u64,
            sustained_ns: (cfg.cpu_sustained_secs * 1e9) as u64,
        }
    }
}

/// What the window says.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CpuJudgement {
    /// Time covered by busy samples in the window.
    pub busy_ns: u64,
    pub sustained: bool,
    /// Start of the earliest busy sample in the window.
    pub first_busy: Option<Mono>,
    /// Average cores over the whole window (idle time counts as zero).
    pub mean_cores: f64,
    pub peak_cores: f64,
}

impl CpuJudgement {
    pub fn detail(&self, policy: &CpuPolicy) -> String {
        format!(
            "busy {:.1} s of the last {:.0} s, mean {:.2} cores, peak {:.2}",
            self.busy_ns as f64 / 1e9,
            policy.window_ns as f64 / 1e9,
            self.mean_cores,
            self.peak_cores
        )
    }
}

/// Judges samples (end time, span, cores) that fall in one window.
pub fn judge<'a>(
    points: impl IntoIterator<Item = &'a CpuPoint>,
    policy: &CpuPolicy,
) -> CpuJudgement {
    let mut j = CpuJudgement::default();
    let mut on_cpu = 0.0;
    let mut busy: Vec<(u64, u64)> = Vec::new();
    for p in points {
        on_cpu += p.cores * p.span_ns as f64;
        j.peak_cores = j.peak_cores.max(p.cores);
        if p.cores >= policy.busy_cores {
            busy.push((p.time.ns().saturating_sub(p.span_ns), p.time.ns()));
        }
    }
    // Busy time is the union of busy spans: samples that overlap (a late
    // poll, members polled at different times) do not count twice.
    busy.sort_unstable();
    j.first_busy = busy.first().map(|&(s, _)| Mono(s));
    let mut covered_to = 0;
    for (s, e) in busy {
        let s = s.max(covered_to);
        if e > s {
            j.busy_ns += e - s;
            covered_to = e;
        }
    }
    j.mean_cores = if policy.window_ns == 0 {
        0.0
    } else {
        on_cpu / policy.window_ns as f64
    };
    j.sustained = j.busy_ns >= policy.sustained_ns;
    j
}

/// Judges one process.
pub fn judge_history(h: &CpuHistory, now: Mono, policy: &CpuPolicy) -> CpuJudgement {
    judge(h.in_window(now, policy.window_ns), policy)
}

/// Judges a group: samples taken at the same poll are summed across
/// members, so four workers at 0.2 core each are one busy 0.8-core sample.
pub fn judge_group<'a>(
    histories: impl IntoIterator<Item = &'a CpuHistory>,
    now: Mono,
    policy: &CpuPolicy,
) -> CpuJudgement {
    let mut by_time: BTreeMap<Mono, CpuPoint> = BTreeMap::new();
    for h in histories {
        for p in h.in_window(now, policy.window_ns) {
            let e = by_time.entry(p.time).or_insert(CpuPoint {
                time: p.time,
                span_ns: 0,
                cores: 0.0,
            });
            // Members' spans differ only when one started mid-interval:
            // weight by on-CPU time over the longest span.
            let span = e.span_ns.max(p.span_ns);
            let on = e.cores * e.span_ns as f64 + p.cores * p.span_ns as f64;
            e.span_ns = span;
            e.cores = if span == 0 { 0.0 } else { on / span as f64 };
        }
    }
    judge(by_time.values(), policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn policy() -> CpuPolicy {
        CpuPolicy::from_config(&DetectorConfig::default())
    }

    fn history(cores: &[f64]) -> CpuHistory {
        let mut h = CpuHistory::default();
        for (i, &c) in cores.iter().enumerate() {
            h.push(
                CpuPoint {
                    time: Mono((i as u64 + 1) * S),
                    span_ns: S,
                    cores: c,
                },
                policy().window_ns,
            );
        }
        h
    }

    #[test]
    fn sustained_cpu_table() {
        let cases: &[(&str, &[f64], bool)] = &[
            ("full core for 3 s", &[1.0, 1.0, 1.0], true),
            ("throttled to half a core", &[0.5, 0.45, 0.55], true),
            ("0.4 core after 3 samples", &[0.4, 0.4, 0.4], true),
            (
                "pause and resume",
                &[1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0],
                true,
            ),
            ("multithreaded", &[0.0, 0.0, 3.8, 3.9], false),
            ("two seconds only", &[1.0, 1.0], false),
            ("idle daemon", &[0.02; 30], false),
            (
                "busy long ago",
                &[
                    1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
                ],
                false,
            ),
            ("just under the busy line", &[0.29; 10], false),
        ];
        for (name, cores, want) in cases {
            let h = history(cores);
            let now = Mono(cores.len() as u64 * S);
            assert_eq!(
                judge_history(&h, now, &policy()).sustained,
                *want,
                "case: {name}"
            );
        }
    }

    #[test]
    fn group_sums_members_per_poll() {
        let workers = [history(&[0.2; 5]), history(&[0.2; 5])];
        let now = Mono(5 * S);
        assert!(!judge_history(&workers[0], now, &policy()).sustained);
        let g = judge_group(workers.iter(), now, &policy());
        assert!(g.sustained, "{g:?}");
        assert!(
            (g.mean_cores - 0.2).abs() < 1e-9,
            "0.4 cores for 5 s of a 10 s window"
        );
        assert_eq!(g.first_busy, Some(Mono(0)));
    }

    #[test]
    fn overlapping_samples_count_once() {
        let mut h = CpuHistory::default();
        for t in [1_000, 1_300, 1_600, 1_900] {
            h.push(
                CpuPoint {
                    time: Mono(t * 1_000_000),
                    span_ns: S,
                    cores: 1.0,
                },
                policy().window_ns,
            );
        }
        let j = judge_history(&h, Mono(2 * S), &policy());
        assert_eq!(j.busy_ns, 1_900_000_000);
        assert!(!j.sustained);
    }

    #[test]
    fn window_slides_with_now() {
        let h = history(&[1.0, 1.0, 1.0]);
        assert!(judge_history(&h, Mono(3 * S), &policy()).sustained);
        assert!(!judge_history(&h, Mono(12 * S), &policy()).sustained);
    }
}
