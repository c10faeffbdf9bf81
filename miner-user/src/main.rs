//! The binary edge: parse the command line, run the verb, map errors to
//! exit codes: 0 ok, 1 findings (`check`: unverified; `tail`: daemon not
//! running), 2 bad input or unmet requirements (config, privileges, kernel).

use std::{io::Write, process::ExitCode};

use clap::Parser as _;
use minerwatch::cli::{Cli, Command, ConfigCommand};

/// env_logger's default line, with the message defanged: a log record is
/// always one line, and no process string in it reaches the terminal raw
/// (call sites also escape the process strings they log).
fn init_logging() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format(|buf, record| {
            let level = record.level();
            let style = buf.default_level_style(level);
            let message = record.args().to_string();
            writeln!(
                buf,
                "[{} {style}{level:<5}{style:#} {}] {}",
                buf.timestamp(),
                record.target(),
                minerwatch::text::defang(&message)
            )
        })
        .init();
}

fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    // One thread: the pipeline, the ring reader, /metrics and tail share it.
    // At the agent's load this costs nothing, and it avoids a cross-thread
    // wakeup per timer tick (the bulk of an idle multi-threaded runtime's
    // CPU). Hashing runs on its own worker threads.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("minerwatch: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    // Locked per command, never across `tail`: its async stdout writes
    // from a blocking thread and would wait on this lock forever.
    let stdout = || std::io::stdout().lock();
    let result: anyhow::Result<i32> = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => minerwatch::cmd::run::run(args).await.map(|()| 0),
            Command::Tail(args) => minerwatch::cmd::tail::run(args).await,
            Command::Check(args) => {
                let cfg = minerwatch::config::load(args.config.as_deref())?;
                Ok(minerwatch::cmd::check::check(
                    &args.paths,
                    &cfg.provenance,
                    args.json,
                    &mut stdout(),
                )?)
            }
            Command::Replay(args) => {
                let cfg = minerwatch::config::load(args.config.as_deref())?;
                minerwatch::cmd::replay::run_file(&args.file, cfg.detector, &mut stdout())
                    .map(|_| 0)
            }
            Command::Quarantine(cmd) => minerwatch::cmd::quarantine::run(cmd, &mut stdout()),
            Command::Config(ConfigCommand::Print { config }) => {
                let cfg = minerwatch::config::load(config.as_deref())?;
                minerwatch::cmd::config_print::print(&cfg, &mut stdout()).map(|()| 0)
            }
        }
    });
    let _ = std::io::stdout().flush();
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            // One line: the cause chain joined.
            eprintln!("minerwatch: {e:#}");
            ExitCode::from(2)
        }
    }
}
