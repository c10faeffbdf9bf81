//! Drain the `EVENTS` ring buffer into decoded batches.
//!
//! Most records are submitted without a wakeup (a wakeup per record cost the
//! hooked task 20–30 µs here), so the reader drains on a short timer and
//! also whenever the kernel wakes it past its fill threshold.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use tokio::{io::unix::AsyncFd, sync::mpsc};

use super::{SensorError, decode};
use crate::{event::Event, time::Mono};

/// Records decoded per batch at most, so one burst cannot starve the pipeline.
const MAX_BATCH: usize = 4096;

#[derive(Debug, Default)]
pub struct ReaderStats {
    pub records: AtomicU64,
    pub decode_errors: AtomicU64,
    /// `Mono` ns of the last completed drain (readiness: "ring flowing").
    pub last_drain_ns: AtomicU64,
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
) -> Result<(), SensorError> {
    // SAFETY: the ring buffer owns its map fd for as long as the AsyncFd
    // owns the ring buffer, and `as_raw_fd` always returns that fd.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(std::io::Error::from)?;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            guard = fd.readable_mut() => {
                let mut guard = guard?;
                if !drain(guard.get_inner_mut(), &tx, &stats).await {
                    return Ok(());
                }
                guard.clear_ready();
            }
            _ = tick.tick() => {
                if !drain(fd.get_mut(), &tx, &stats).await {
                    return Ok(());
                }
            }
        }
    }
}

/// Returns false once the receiver is gone (shutdown).
async fn drain(ring: &mut RingBuf<MapData>, tx: &mpsc::Sender<Batch>, stats: &ReaderStats) -> bool {
    loop {
        let mut events = Vec::new();
        while events.len() < MAX_BATCH {
            let Some(item) = ring.next() else { break };
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
            return true;
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
            return false;
        }
        if !full {
            return true;
        }
    }
}
