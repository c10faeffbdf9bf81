//! The event loop: one task, nothing that waits. Ring batches, provenance
//! results and resolved flow owners go through the pipeline as they come; the tick
//! samples CPU and drops and lets the detector's windows close; SIGHUP
//! reloads the config; SIGINT/SIGTERM end the loop.

use std::{sync::atomic::Ordering, time::Duration};

use super::{Options, reload, start::Daemon};
use crate::{sinks::lifecycle, time::Mono};

pub async fn run(d: &mut Daemon, opts: &Options) {
    let mut tick = tokio::time::interval(Duration::from_millis(d.cfg.sensor.cpu_poll_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let signal = lifecycle::shutdown_signal();
    tokio::pin!(signal);
    let mut hangup = d.hangup.take();
    let mut decode_errors_seen = 0u64;
    loop {
        tokio::select! {
            batch = d.batches.recv() => {
                let Some(batch) = batch else {
                    log::error!("ring buffer reader stopped");
                    break;
                };
                d.health.mark_drained(batch.drained_at);
                d.pipe.batch(batch.events, batch.drained_at);
            }
            Some(result) = d.provenance.recv() => d.pipe.provenance(result),
            Some(payload) = d.resolved.recv() => d.pipe.resolved(payload),
            _ = tick.tick() => {
                let now = Mono::now();
                let last = d.stats.last_drain_ns.load(Ordering::Relaxed);
                if d.stats.asleep.load(Ordering::Relaxed) && !d.reader.is_finished() {
                    // Waiting for the kernel's wakeup on an empty ring.
                    d.health.mark_drained(now);
                } else if last > 0 {
                    d.health.mark_drained(Mono(last));
                }
                let errors = d.stats.decode_errors.load(Ordering::Relaxed);
                d.metrics.decode_errors.inc_by(errors.saturating_sub(decode_errors_seen));
                decode_errors_seen = errors;
                d.pipe.tick(now);
            }
            Some(()) = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            } => reload::reload(d, opts),
            sig = &mut signal => {
                match sig {
                    Ok(name) => log::info!("{name}: shutting down"),
                    Err(e) => log::error!("signal handling failed ({e}): shutting down"),
                }
                break;
            }
        }
    }
}
