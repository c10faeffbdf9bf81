//! Time as the detector sees it: kernel monotonic nanoseconds.
//!
//! `std::time::Instant` cannot be recorded or replayed, so every timestamp
//! that reaches the detector is a [`Mono`]: `bpf_ktime_get_ns()` in kernel
//! records, `CLOCK_MONOTONIC` for user-side samples (the same clock).

use serde::{Deserialize, Serialize};

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Mono(pub u64);

impl Mono {
    pub const fn from_secs(s: u64) -> Self {
        Mono(s * 1_000_000_000)
    }
    pub const fn from_millis(ms: u64) -> Self {
        Mono(ms * 1_000_000)
    }
    pub const fn ns(self) -> u64 {
        self.0
    }
    pub fn saturating_sub(self, other: Mono) -> u64 {
        self.0.saturating_sub(other.0)
    }
    pub const fn plus_ns(self, ns: u64) -> Mono {
        Mono(self.0.saturating_add(ns))
    }
    /// The current `CLOCK_MONOTONIC`, for samples taken in user space.
    pub fn now() -> Mono {
        Mono(clock_ns(libc::CLOCK_MONOTONIC))
    }
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; both clocks used here always
    // exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Converts monotonic timestamps to wall-clock time for humans, with the
/// offset taken once at start (alerts and tail print RFC 3339).
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    offset_ns: i128,
    /// `CLOCK_BOOTTIME - CLOCK_MONOTONIC`: time spent suspended.
    suspended_ns: u64,
}

impl WallClock {
    pub fn new() -> Self {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        let mono = Mono::now();
        WallClock {
            offset_ns: wall - mono.0 as i128,
            suspended_ns: clock_ns(libc::CLOCK_BOOTTIME).saturating_sub(mono.0),
        }
    }

    /// A process start time in ns since boot (`/proc/PID/stat` field 22,
    /// `task->start_boottime`) on the monotonic clock.
    pub fn boottime_to_mono(self, boot_ns: u64) -> Mono {
        Mono(boot_ns.saturating_sub(self.suspended_ns))
    }

    pub fn to_system(self, t: Mono) -> std::time::SystemTime {
        let ns = (t.0 as i128 + self.offset_ns).max(0) as u64;
        std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns)
    }

    /// RFC 3339 with millisecond precision, UTC.
    pub fn rfc3339(self, t: Mono) -> String {
        humantime::format_rfc3339_millis(self.to_system(t)).to_string()
    }
}

impl Default for WallClock {
    fn default() -> Self {
        Self::new()
    }
}
