//! The `[sensor]` configuration section.

use serde::{Deserialize, Serialize};

use crate::invalid::Invalid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SensorConfig {
    /// Ring buffer size in bytes; a power of two, at least one page.
    pub ring_buffer_bytes: u32,
    /// How often the reader drains records submitted without a wakeup
    /// (while records flow: on an empty ring it sleeps until the next
    /// record wakes it, `sensor/ringbuf.rs`).
    pub drain_interval_ms: u64,
    /// How often per-process CPU time is polled from the kernel.
    pub cpu_poll_interval_ms: u64,
    /// cgroup v2 mount to attach socket programs to; found from
    /// /proc/self/mountinfo when unset.
    pub cgroup_path: Option<String>,
    /// Fail at start if any hook cannot attach (default: warn and degrade).
    pub require_all: bool,
    /// Attach the fpu program (saved MXCSR per thread: the RandomX
    /// fingerprint) and its nudges. Off: no `randomx_fingerprint` verdicts,
    /// and no program runs at context switches beyond CPU accounting.
    pub fpu_fingerprint: bool,
    /// Every this many ms each CPU is briefly preempted, so a thread that
    /// never leaves its core on its own is switched out and its saved
    /// MXCSR seen (the RandomX fingerprint); only while some process used
    /// a quarter of a core in the last CPU poll. 0 turns it off.
    pub fpu_nudge_ms: u64,
    /// A child that forks, does nothing that makes a record (no exec, no
    /// fork, no socket, no fingerprint or hint) and exits within this many
    /// ms costs no record: the kernel counts it (`minerwatch_quiet_forks_total`,
    /// and in `minerwatch_events_total` as a fork and an exit) and the tail
    /// does not show it. Needs the task iterator (CPU accounting), which
    /// sends the fork record of any such child found alive at a poll.
    /// 0 sends every fork and exit.
    pub quiet_fork_ms: u64,
}

impl Default for SensorConfig {
    fn default() -> Self {
        SensorConfig {
            ring_buffer_bytes: miner_ebpf_common::EVENTS_BYTES_DEFAULT,
            drain_interval_ms: 100,
            cpu_poll_interval_ms: 1000,
            cgroup_path: None,
            require_all: false,
            fpu_fingerprint: true,
            fpu_nudge_ms: 250,
            quiet_fork_ms: miner_ebpf_common::QUIET_FORK_NS_DEFAULT / 1_000_000,
        }
    }
}

impl SensorConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        let rb = self.ring_buffer_bytes;
        if rb < 4096 || !rb.is_power_of_two() {
            return Err(Invalid::new(
                "sensor.ring_buffer_bytes",
                format!("{rb} is not a power of two ≥ 4096; use e.g. 8388608 (8 MiB)"),
            ));
        }
        if !(1..=1000).contains(&self.drain_interval_ms) {
            return Err(Invalid::new(
                "sensor.drain_interval_ms",
                format!(
                    "{} is out of range; use 1..=1000 (default 100)",
                    self.drain_interval_ms
                ),
            ));
        }
        if !(100..=10_000).contains(&self.cpu_poll_interval_ms) {
            return Err(Invalid::new(
                "sensor.cpu_poll_interval_ms",
                format!(
                    "{} is out of range; use 100..=10000 (default 1000)",
                    self.cpu_poll_interval_ms
                ),
            ));
        }
        if self.quiet_fork_ms > 1000 {
            return Err(Invalid::new(
                "sensor.quiet_fork_ms",
                format!(
                    "{} is out of range; use 0 (off) or 1..=1000 (default 100)",
                    self.quiet_fork_ms
                ),
            ));
        }
        if self.fpu_nudge_ms != 0 && !(10..=10_000).contains(&self.fpu_nudge_ms) {
            return Err(Invalid::new(
                "sensor.fpu_nudge_ms",
                format!(
                    "{} is out of range; use 0 (off) or 10..=10000 (default 250)",
                    self.fpu_nudge_ms
                ),
            ));
        }
        Ok(())
    }
}
