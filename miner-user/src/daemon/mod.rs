//! The daemon: wire sensor → pipeline → sinks, run until a signal, shut
//! down within two seconds.
//!
//! Startup order matters: programs attach first, then the /proc sweep
//! seeds the table (so a process started during the sweep is seen by the
//! kernel, and one started before it by the sweep), then the ring buffer —
//! which has held everything since attach — is drained.

mod pipeline;

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use tokio::sync::mpsc;

pub use pipeline::Pipeline;

use crate::{
    config::Config,
    detect::Detector,
    process::procfs,
    provenance::{self, Verifier},
    response::Responder,
    sensor::{Sensor, cpu_poll::CpuPoller, ringbuf},
    sinks::{
        alerts::AlertSink,
        http::{self, Health},
        lifecycle,
        metrics::Metrics,
        recorder::Recorder,
        tail::{TailHub, TailServer},
    },
    time::{Mono, WallClock},
};

/// What `minerwatch run` needs beyond the config file.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub record: Option<PathBuf>,
    pub print_events: bool,
}

pub async fn run(cfg: Config, opts: Options) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new().context("creating metrics")?);
    let health = Arc::new(Health::new());
    let (trigger, shutdown) = lifecycle::shutdown_channel();

    // Bind the operator endpoints before loading programs: a port in use is
    // a config error, reported before we touch the kernel.
    let http_task = if cfg.metrics.enabled {
        let addr = cfg
            .metrics
            .socket_addr()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!("binding the metrics endpoint {addr}; pick another with --metrics-addr")
        })?;
        log::info!("metrics on http://{addr}/metrics");
        let (m, h, s) = (metrics.clone(), health.clone(), shutdown.clone());
        Some(tokio::spawn(async move {
            if let Err(e) = http::serve(listener, m, h, s.wait()).await {
                log::error!("metrics endpoint stopped: {e}");
            }
        }))
    } else {
        None
    };
    let hub = TailHub::new(&cfg.tail, &metrics);
    let tail_task = if cfg.tail.enabled {
        let server = TailServer::bind(&cfg.tail, hub.clone()).context("binding the tail socket")?;
        log::info!("tail socket {}", server.path().display());
        let s = shutdown.clone();
        Some(tokio::spawn(server.run(s.wait())))
    } else {
        None
    };
    let alerts = AlertSink::new(&cfg.alerts, metrics.clone()).context("opening the alert sinks")?;
    let recorder = match &opts.record {
        Some(p) => Some(
            Recorder::create(p)
                .with_context(|| format!("creating the recording {}", p.display()))?,
        ),
        None => None,
    };

    let mut sensor = Sensor::load(&cfg.sensor)?;
    sensor.start_kernel_log();
    let attached = sensor.hooks.iter().filter(|h| h.attached).count() as u32;
    for h in &sensor.hooks {
        match (&h.error, h.verified_insns) {
            (None, insns) => log::info!(
                "attached {} ({} instructions verified, prog id {})",
                h.program,
                insns.unwrap_or(0),
                h.prog_id.unwrap_or(0)
            ),
            (Some(e), _) => log::warn!("not attached {}: {e}", h.program),
        }
    }
    health.set_attached(attached);
    metrics.programs_attached.set(i64::from(attached));
    let ring = sensor.take_ring()?;
    let poller = CpuPoller::new(sensor.take_cpu_map()?, sensor.take_drops()?);
    let blocklist = if sensor.attached("connect4") || sensor.attached("connect6") {
        Some(sensor.take_blocklist()?)
    } else {
        None
    };

    let verifier = match Verifier::new(&cfg.provenance) {
        Ok(v) => v,
        Err(e) => {
            log::error!("provenance allowlist refused, continuing without it: {e}");
            Verifier::without_allowlist(&cfg.provenance)
        }
    };
    verifier.warm_up();
    let (prov_tx, mut prov_rx) = mpsc::channel(4096);
    let service = provenance::Service::start(Arc::new(verifier), &cfg.provenance, prov_tx)
        .context("starting provenance workers")?;

    let responder = Responder::new(cfg.response.clone(), blocklist);
    if cfg.response.mode == crate::response::Mode::Enforce {
        log::warn!(
            "enforce mode: confirmed miners will be killed, blocked and quarantined per policy"
        );
    }
    let mut pipe = Pipeline::new(
        Detector::new(cfg.detector.clone()),
        responder,
        service,
        poller,
        alerts,
        hub.clone(),
        recorder,
        metrics.clone(),
        WallClock::new(),
        opts.print_events,
    );

    // Seed the table with what runs already (and its connections).
    let swept = procfs::sweep(
        std::path::Path::new(crate::defaults::PROC_PATH),
        Mono::now(),
    );
    log::info!(
        "startup sweep: {} events ({} unreadable entries)",
        swept.events.len(),
        swept.errors
    );
    for ev in swept.events {
        pipe.event(ev, None);
    }

    let stats = Arc::new(ringbuf::ReaderStats::default());
    let (tx, mut rx) = mpsc::channel::<ringbuf::Batch>(256);
    let reader = tokio::spawn(ringbuf::run(
        ring,
        Duration::from_millis(cfg.sensor.drain_interval_ms),
        tx,
        stats.clone(),
    ));
    let mut tick = tokio::time::interval(Duration::from_millis(cfg.sensor.cpu_poll_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let signal = lifecycle::shutdown_signal();
    tokio::pin!(signal);
    log::info!(
        "minerwatch running ({} of {} hooks attached)",
        attached,
        sensor.hooks.len()
    );

    let mut decode_errors_seen = 0u64;
    loop {
        tokio::select! {
            batch = rx.recv() => {
                let Some(batch) = batch else {
                    log::error!("ring buffer reader stopped");
                    break;
                };
                health.mark_drained(batch.drained_at);
                for ev in batch.events {
                    pipe.event(ev, Some(batch.drained_at));
                }
            }
            Some(result) = prov_rx.recv() => pipe.provenance(result),
            _ = tick.tick() => {
                let now = Mono::now();
                let last = stats.last_drain_ns.load(std::sync::atomic::Ordering::Relaxed);
                if last > 0 {
                    health.mark_drained(Mono(last));
                }
                let errors = stats.decode_errors.load(std::sync::atomic::Ordering::Relaxed);
                metrics.decode_errors.inc_by(errors.saturating_sub(decode_errors_seen));
                decode_errors_seen = errors;
                pipe.tick(now);
            }
            sig = &mut signal => {
                match sig {
                    Ok(name) => log::info!("{name}: shutting down"),
                    Err(e) => log::error!("signal handling failed ({e}): shutting down"),
                }
                break;
            }
        }
    }

    // Shutdown: stop producers, flush sinks, detach programs.
    trigger.trigger();
    reader.abort();
    pipe.finish(lifecycle::SHUTDOWN_DEADLINE);
    hub.shutdown();
    drop(sensor);
    for task in [http_task, tail_task].into_iter().flatten() {
        let _ = tokio::time::timeout(Duration::from_millis(500), task).await;
    }
    log::info!("minerwatch stopped");
    Ok(())
}
