//! Drain the `EVENTS` ring buffer into decoded batches.
//!
//! Most records are submitted without a wakeup (a wakeup per record cost the
//! hooked task 20–30 µs here), so the reader drains on a short timer and
//! also whenever the kernel wakes it past its fill threshold.
//!
//! An idle host has nothing to drain, and each timer wakeup costs the
//! daemon tens of µs on a VM: after [`SLEEP_AFTER_EMPTY`] empty drains in a
//! row the reader stops its timer and raises `CONTROL_READER_ASLEEP`; the
//! next record's submit wakes it (and lowers the flag), so the first record
//! after a quiet spell is read at once instead of at the next tick. The
//! reader drains once more after raising the flag: a record submitted just
//! before the kernel could see it is read then. One whose submit read the
//! flag before it was raised but landed after that drain has no wakeup of
//! its own: a slow check (every `SLEEP_AFTER_EMPTY` intervals, 1 s by
//! default) reads it, so no record waits longer than that.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use aya::maps::{Array, MapData, RingBuf};
use miner_ebpf_common::CONTROL_READER_ASLEEP;
use tokio::{io::unix::AsyncFd, sync::mpsc};

use super::{SensorError, decode};
use crate::{event::Event, time::Mono};

/// Records decoded per batch at most, so one burst cannot starve the pipeline.
const MAX_BATCH: usize = 4096;

/// Empty timer drains in a row before the reader sleeps until woken.
pub const SLEEP_AFTER_EMPTY: u32 = 10;

#[derive(Debug, Default)]
pub struct ReaderStats {
    pub records: AtomicU64,
    pub decode_errors: AtomicU64,
    /// `Mono` ns of the last completed drain (readiness: "ring flowing").
    pub last_drain_ns: AtomicU64,
    /// The reader sleeps until the kernel wakes it (no drain timer): its
    /// silence is not a stall.
    pub asleep: AtomicBool,
}

/// The kernel-side half of sleeping: the `CONTROL` slot the next submit
/// reads. Without it (a test's reader, an old object) the timer never stops.
pub struct WakeFlag(Array<MapData, u64>);

impl WakeFlag {
    pub fn new(control: Array<MapData, u64>) -> Self {
        WakeFlag(control)
    }

    fn set(&mut self, asleep: bool) -> bool {
        match self.0.set(CONTROL_READER_ASLEEP, u64::from(asleep), 0) {
            Ok(()) => true,
            Err(e) => {
                log::debug!("ring reader stays on its timer: writing CONTROL failed ({e})");
                false
            }
        }
    }
}

/// A drain's worth of events, with when it was read (for poll lag).
#[derive(Debug)]
pub struct Batch {
    pub events: Vec<Event>,
    pub drained_at: Mono,
}

pub async fn run(
    ring: RingBuf<MapData>,
    interval: Duration,
    tx: mpsc::Sender<Batch>,
    stats: Arc<ReaderStats>,
    mut wake: Option<WakeFlag>,
) -> Result<(), SensorError> {
    // SAFETY: the ring buffer owns its map fd for as long as the AsyncFd
    // owns the ring buffer, and `as_raw_fd` always returns that fd.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(std::io::Error::from)?;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut idle = Idle::new(&stats);
    let check_every = interval * SLEEP_AFTER_EMPTY;
    let check = tokio::time::sleep(check_every);
    tokio::pin!(check);
    loop {
        let read = tokio::select! {
            guard = fd.readable_mut() => {
                let mut guard = guard?;
                let read = drain(guard.get_inner_mut(), &tx, &stats).await;
                guard.clear_ready();
                // Woken by a submit (which lowered the flag) or past the
                // fill threshold: awake either way.
                read.map(|_| 1)
            }
            _ = tick.tick(), if !idle.asleep => {
                let Some(n) = drain(fd.get_mut(), &tx, &stats).await else {
                    return Ok(());
                };
                if idle.tick_drained(n)
                    && let Some(flag) = wake.as_mut()
                    && flag.set(true)
                {
                    idle.fall_asleep();
                    // Whatever was submitted before the flag was visible;
                    // if anything, awake after all (the flag then costs at
                    // most one early wakeup).
                    drain(fd.get_mut(), &tx, &stats).await
                } else {
                    Some(0)
                }
            }
            // A record that raced the flag, if any.
            _ = &mut check, if idle.asleep => drain(fd.get_mut(), &tx, &stats).await,
        };
        let Some(read) = read else {
            return Ok(());
        };
        if read > 0 && idle.wake() {
            tick.reset();
        }
        if idle.asleep {
            check
                .as_mut()
                .reset(tokio::time::Instant::now() + check_every);
        }
    }
}

/// Whether the reader sleeps: the pure half of the loop above.
struct Idle<'a> {
    /// Timer drains in a row that read nothing.
    empty: u32,
    asleep: bool,
    stats: &'a ReaderStats,
}

impl<'a> Idle<'a> {
    fn new(stats: &'a ReaderStats) -> Self {
        Idle {
            empty: 0,
            asleep: false,
            stats,
        }
    }

    /// A timer drain read `n` records: true when it is time to sleep.
    fn tick_drained(&mut self, n: usize) -> bool {
        self.empty = if n == 0 { self.empty + 1 } else { 0 };
        self.empty >= SLEEP_AFTER_EMPTY
    }

    fn fall_asleep(&mut self) {
        self.asleep = true;
        self.stats.asleep.store(true, Ordering::Relaxed);
    }

    /// Records arrived; true if the reader was asleep (its timer restarts).
    fn wake(&mut self) -> bool {
        self.empty = 0;
        let was = std::mem::replace(&mut self.asleep, false);
        self.stats.asleep.store(false, Ordering::Relaxed);
        was
    }
}

/// Records read (decodable or not), or `None` once the receiver is gone (shutdown).
async fn drain(
    ring: &mut RingBuf<MapData>,
    tx: &mpsc::Sender<Batch>,
    stats: &ReaderStats,
) -> Option<usize> {
    let mut read = 0;
    loop {
        let mut events = Vec::new();
        while events.len() < MAX_BATCH {
            let Some(item) = ring.next() else { break };
            read += 1;
            stats.records.fetch_add(1, Ordering::Relaxed);
            match decode::decode(&item) {
                Ok(ev) => events.push(ev),
                Err(e) => {
                    stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                    log::debug!("dropping undecodable record: {e}");
                }
            }
        }
        let now = Mono::now();
        stats.last_drain_ns.store(now.ns(), Ordering::Relaxed);
        if events.is_empty() {
            return Some(read);
        }
        let full = events.len() == MAX_BATCH;
        if tx
            .send(Batch {
                events,
                drained_at: now,
            })
            .await
            .is_err()
        {
            return None;
        }
        if !full {
            return Some(read);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_sleeps_after_ten_empty_drains_in_a_row_and_wakes_on_records() {
        let stats = ReaderStats::default();
        let mut idle = Idle::new(&stats);
        for _ in 0..SLEEP_AFTER_EMPTY - 1 {
            assert!(!idle.tick_drained(0));
        }
        assert!(!idle.tick_drained(3), "records restart the count");
        for _ in 0..SLEEP_AFTER_EMPTY - 1 {
            assert!(!idle.tick_drained(0));
        }
        assert!(idle.tick_drained(0));
        idle.fall_asleep();
        assert!(stats.asleep.load(Ordering::Relaxed));
        assert!(idle.wake(), "it was asleep");
        assert!(!stats.asleep.load(Ordering::Relaxed));
        assert!(!idle.wake(), "already awake");
        assert!(
            !idle.tick_drained(0),
            "the count starts over after a wakeup"
        );
    }
}
