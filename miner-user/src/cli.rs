//! Command-line interface: bare verbs, kebab-case flags, examples in help.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::defaults;
use crate::detect::Severity;
use crate::sinks::tail::TailKind;

#[derive(Debug, Parser)]
#[command(
    name = "minerwatch",
    version,
    about = "eBPF detector of cryptominers: watches exec, connect, payload and CPU in the kernel",
    long_about = None
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: load the eBPF programs, detect, alert, serve metrics.
    ///
    /// Example: minerwatch run --config /etc/minerwatch/minerwatch.toml
    /// Example: minerwatch run --print-events --metrics-addr 127.0.0.1:9747
    Run(RunArgs),
    /// Stream live events and alerts from the running daemon.
    ///
    /// Example: minerwatch tail --alerts-only
    /// Example: minerwatch tail --kind exec,connect --json
    Tail(TailArgs),
    /// Print the provenance verdict of files (exit 0 verified, 1 unverified, 2 error).
    ///
    /// Example: minerwatch check /usr/bin/ls /tmp/.x/kworker
    Check(CheckArgs),
    /// Run the detector over a recorded event stream and print verdicts as JSON lines.
    ///
    /// Example: minerwatch replay tests/recordings/xmrig_login_tmp.jsonl
    Replay(ReplayArgs),
    /// List or restore quarantined executables.
    ///
    /// Example: minerwatch quarantine list
    /// Example: minerwatch quarantine restore 3f2a…(sha256)
    #[command(subcommand)]
    Quarantine(QuarantineCommand),
    /// Show the effective configuration.
    ///
    /// Example: minerwatch config print --config my.toml
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Args, Default, Clone)]
pub struct RunArgs {
    /// TOML config file; the documented default is embedded.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Take responses (kill, block, quarantine); default is observe only.
    #[arg(long)]
    pub enforce: bool,
    /// Prometheus endpoint address (IP:PORT, e.g. 0.0.0.0:9747 or [::]:9747).
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
    /// Append alerts as JSON lines to this file (fsync per alert).
    #[arg(long, value_name = "FILE")]
    pub alerts_file: Option<PathBuf>,
    /// POST each alert as JSON to this http(s) URL (bounded queue, retries).
    #[arg(long, value_name = "URL")]
    pub webhook_url: Option<String>,
    /// Unix socket for `minerwatch tail`.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Record every event the detector sees (replayable JSONL).
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Fail at start if any hook cannot attach.
    #[arg(long)]
    pub require_all: bool,
    /// Also print each kernel event as one line on stderr (exec, connect…).
    #[arg(long)]
    pub print_events: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Files to judge.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// JSON output, one object per file.
    #[arg(long)]
    pub json: bool,
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// A recording made by `minerwatch run --record` (or `-` for stdin).
    pub file: PathBuf,
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration as TOML.
    Print {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum QuarantineCommand {
    /// List quarantined executables (JSON lines with --json).
    List {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Put a quarantined executable back where it was (mode, owner, times).
    Restore {
        /// SHA-256 of the quarantined file (`minerwatch quarantine list`).
        sha256: String,
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

/// Follow the running daemon's events, alerts and actions live.
///
/// Needs root: the stream shows every command line on the host. Times are
/// UTC. A client that reads too slowly is not waited for: it is told how
/// many messages it missed.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(after_help = "\
Examples:
  minerwatch tail
  minerwatch tail --alerts-only --min-severity high
  minerwatch tail --kind exec,connect --comm xmr
  minerwatch tail --pid 4242 --json | jq .detail")]
pub struct TailArgs {
    /// Unix socket of the daemon (its `tail.socket` setting).
    ///
    /// Example: --socket /run/minerwatch/minerwatch.sock
    #[arg(long, value_name = "PATH", default_value = defaults::TAIL_SOCKET, env = "MINERWATCH_SOCKET")]
    pub socket: PathBuf,

    /// Print JSON lines (the daemon's wire format) instead of a table.
    ///
    /// Example: --json | jq 'select(.kind == "alert")'
    #[arg(long)]
    pub json: bool,

    /// Show only these kinds; repeat the flag or separate with commas:
    /// exec, fork, exit, connect, payload, cpu, provenance, listen, alert,
    /// action, lost.
    ///
    /// Example: --kind exec,connect
    #[arg(long, value_name = "KIND", value_delimiter = ',')]
    pub kind: Vec<TailKind>,

    /// Show only this process (matches the process id or thread id).
    ///
    /// Example: --pid 4242
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,

    /// Show only processes whose command name contains TEXT.
    ///
    /// Example: --comm xmr
    #[arg(long, value_name = "TEXT")]
    pub comm: Option<String>,

    /// Hide alerts below LEVEL: debug, low, medium, high or critical. Other
    /// kinds are unaffected (add --alerts-only to see alerts alone).
    ///
    /// Example: --min-severity high
    #[arg(long, value_name = "LEVEL")]
    pub min_severity: Option<Severity>,

    /// Show only alerts.
    ///
    /// Example: --alerts-only
    #[arg(long)]
    pub alerts_only: bool,
}
