//! The daemon: wire sensor → pipeline → sinks, run until a signal, shut
//! down within two seconds. Three phases, one module each:
//!
//! - [`start`]: operator endpoints first (a taken port is reported before
//!   the kernel is touched), then programs attach, then the /proc sweep
//!   seeds the table (a process started during the sweep is seen by the
//!   kernel, one started before it by the sweep), then the ring buffer —
//!   which has held everything since attach — is drained.
//! - [`event_loop`]: ring batches, provenance results, the 1 Hz tick,
//!   SIGHUP ([`reload`]) and the stop signals, on one task that never waits
//!   on a slow path (responses run on their own thread, alert outputs on
//!   theirs).
//! - [`shutdown`]: stop producers, flush sinks, detach programs.

mod event_loop;
mod memory;
mod pipeline;
mod reload;
mod report;
mod resolve;
pub mod scope;
mod short_lived;
mod shutdown;
mod start;

use std::path::PathBuf;

pub use pipeline::{Pipeline, PipelineParts};

use crate::config::{Config, Overrides};

/// What `minerwatch run` needs beyond the config.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub record: Option<PathBuf>,
    pub print_events: bool,
    /// Where the config came from (`None`: the embedded default), and the
    /// flags laid over it: SIGHUP reads the file again and applies the same
    /// flags.
    pub config_path: Option<PathBuf>,
    pub overrides: Overrides,
}

pub async fn run(cfg: Config, opts: Options) -> anyhow::Result<()> {
    let mut daemon = start::start(cfg, &opts).await?;
    event_loop::run(&mut daemon, &opts).await;
    shutdown::shutdown(daemon).await;
    Ok(())
}
