//! Start-up: bind the operator endpoints, load and attach the programs,
//! build the pipeline, sweep /proc, start the ring reader. Everything the
//! event loop and shutdown need ends up in [`Daemon`].

use std::{path::Path, sync::Arc, time::Duration};

use anyhow::Context as _;
use tokio::{sync::mpsc, task::JoinHandle};

use super::{
    Options,
    pipeline::{Pipeline, PipelineParts},
    report::ActionReporter,
    resolve::Resolver,
};
use crate::{
    config::Config,
    detect::Detector,
    event::Payload,
    process::procfs::{self, FlowResolver},
    provenance::{self, CheckResult, Verifier},
    response::{
        Mode,
        execute::Executor,
        safety::Safety,
        worker::{ResponseQueue, Settings},
    },
    sensor::{Sensor, cpu_poll::CpuPoller, ringbuf},
    sinks::{
        alerts::AlertSink,
        http::{self, Health},
        lifecycle::{self, ShutdownTrigger},
        metrics::Metrics,
        recorder::Recorder,
        tail::{TailHub, TailServer},
    },
    time::{Mono, WallClock},
};

/// A running daemon, between start and shutdown.
pub struct Daemon {
    pub cfg: Config,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub trigger: ShutdownTrigger,
    pub http_task: Option<JoinHandle<()>>,
    pub tail_task: Option<JoinHandle<()>>,
    pub hub: TailHub,
    pub sensor: Sensor,
    pub pipe: Pipeline,
    pub reader: JoinHandle<Result<(), crate::sensor::SensorError>>,
    pub batches: mpsc::Receiver<ringbuf::Batch>,
    pub provenance: mpsc::Receiver<CheckResult>,
    pub resolved: mpsc::Receiver<Payload>,
    pub stats: Arc<ringbuf::ReaderStats>,
    /// SIGHUP, caught from the start so a reload request during start-up
    /// does not kill the daemon (its default action).
    pub hangup: Option<tokio::signal::unix::Signal>,
}

pub async fn start(cfg: Config, opts: &Options) -> anyhow::Result<Daemon> {
    super::memory::limit_arenas();
    let hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            log::warn!("SIGHUP cannot be caught ({e}): config reload is off");
            None
        }
    };
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
    let wake = sensor.take_wake_flag()?;
    let poller = CpuPoller::new(sensor.take_task_iter(), sensor.take_drops()?)
        .with_quiet(sensor.take_quiet()?)
        .with_nudges(sensor.nudger.as_ref().map(|n| n.switch()));
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
    let verifier = Arc::new(verifier);
    let (prov_tx, prov_rx) = mpsc::channel(4096);
    let service = provenance::Service::start(verifier.clone(), &cfg.provenance, prov_tx)
        .context("starting provenance workers")?;

    let clock = WallClock::new();
    let reporter = ActionReporter::new(alerts.clone(), hub.clone(), clock);
    let responder =
        ResponseQueue::start(Executor::new(blocklist, Some(verifier)), reporter.clone())
            .context("starting the response thread")?;
    if cfg.response.mode == Mode::Enforce {
        log::warn!(
            "enforce mode: confirmed miners will be killed, blocked and quarantined per policy"
        );
    }
    let settings = Arc::new(Settings {
        cfg: cfg.response.clone(),
        safety: Safety::for_self(
            cfg.response.protect.clone(),
            Path::new(crate::defaults::PROC_PATH),
        ),
    });
    let (resolved_tx, resolved) = mpsc::channel(4096);
    let resolver = Resolver::start(FlowResolver::new(crate::defaults::PROC_PATH), resolved_tx)
        .context("starting the flow-owner thread")?;
    let mut pipe = Pipeline::new(PipelineParts {
        detector: Detector::new(cfg.detector.clone()),
        provenance: service,
        poller,
        alerts,
        tail: hub.clone(),
        recorder,
        metrics: metrics.clone(),
        health: health.clone(),
        clock,
        print_events: opts.print_events,
        response: settings,
        responder,
        reporter,
        resolver,
    });

    // Seed the table with what runs already (and its connections).
    let swept = procfs::sweep(Path::new(crate::defaults::PROC_PATH), Mono::now());
    log::info!(
        "startup sweep: {} events ({} unreadable entries)",
        swept.events.len(),
        swept.errors
    );
    for ev in swept.events {
        pipe.event(ev, None);
    }
    // The loader's BTF and the sweep's buffers are freed by now.
    super::memory::trim();

    let stats = Arc::new(ringbuf::ReaderStats::default());
    let (tx, batches) = mpsc::channel::<ringbuf::Batch>(256);
    let reader = tokio::spawn(ringbuf::run(
        ring,
        Duration::from_millis(cfg.sensor.drain_interval_ms),
        tx,
        stats.clone(),
        Some(wake),
    ));
    log::info!(
        "minerwatch running ({} of {} hooks attached)",
        attached,
        sensor.hooks.len()
    );
    Ok(Daemon {
        cfg,
        metrics,
        health,
        trigger,
        http_task,
        tail_task,
        hub,
        sensor,
        pipe,
        reader,
        batches,
        provenance: prov_rx,
        resolved,
        stats,
        hangup,
    })
}
