//! `minerwatch run`: the daemon.

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use tokio::sync::mpsc;

use crate::{
    cli::RunArgs,
    event::Event,
    sensor::{Sensor, SensorConfig, cpu_poll::CpuPoller, ringbuf},
    time::Mono,
};

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut cfg = SensorConfig::default();
    cfg.require_all |= args.require_all;
    let mut sensor = Sensor::load(&cfg)?;
    sensor.start_kernel_log();
    for h in &sensor.hooks {
        if h.attached {
            log::info!(
                "attached {} ({} insns verified)",
                h.program,
                h.verified_insns.unwrap_or(0)
            );
        }
    }
    let ring = sensor.take_ring()?;
    let mut poller = CpuPoller::new(sensor.take_cpu_map()?, sensor.take_drops()?);
    let stats = Arc::new(ringbuf::ReaderStats::default());
    let (tx, mut rx) = mpsc::channel(256);
    let reader = tokio::spawn(ringbuf::run(
        ring,
        Duration::from_millis(cfg.drain_interval_ms),
        tx,
        stats.clone(),
    ));
    let mut cpu_tick = tokio::time::interval(Duration::from_millis(cfg.cpu_poll_interval_ms));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    log::info!("minerwatch running; Ctrl-C to stop");
    loop {
        tokio::select! {
            batch = rx.recv() => {
                let Some(batch) = batch else { break };
                for ev in batch.events {
                    if args.print_events {
                        print_event(&ev);
                    }
                }
            }
            _ = cpu_tick.tick() => {
                let now = Mono::now();
                if let Some(sample) = poller.poll_cpu(now)
                    && args.print_events
                {
                    print_event(&Event::CpuSample(sample));
                }
                for lost in poller.poll_drops(now) {
                    log::warn!("kernel dropped {} events at {}", lost.count, lost.site);
                }
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    reader.abort();
    drop(sensor);
    log::info!("minerwatch stopped");
    Ok(())
}

fn print_event(ev: &Event) {
    match serde_json::to_string(ev) {
        Ok(line) => eprintln!("{line}"),
        Err(e) => log::warn!("unprintable event: {e}"),
    }
}
