//! `minerwatch run`: load the config, apply the flags, hand over to the
//! daemon.

use crate::{
    cli::RunArgs,
    config::{self, Overrides},
    daemon::{self, Options},
};

/// A failure to start that is the user's to fix (config, privileges, kernel
/// features): exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut cfg = config::load(args.config.as_deref()).map_err(|e| StartError(e.to_string()))?;
    let overrides = Overrides {
        metrics_addr: args.metrics_addr.clone(),
        alerts_file: args.alerts_file.clone(),
        webhook_url: args.webhook_url.clone(),
        socket: args.socket.clone(),
        enforce: args.enforce,
        require_all: args.require_all,
    };
    cfg.apply(&overrides)
        .map_err(|e| StartError(e.to_string()))?;
    let opts = Options {
        record: args.record.clone(),
        print_events: args.print_events,
        config_path: args.config.clone(),
        overrides,
    };
    daemon::run(cfg, opts).await
}
