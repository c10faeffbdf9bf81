//! The binary edge: parse the command line, run the verb, map errors to
//! exit codes (2 for bad input and unmet requirements, 1 for findings).

use std::process::ExitCode;

use clap::Parser as _;
use minerwatch::cli::{Cli, Command};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("minerwatch: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => minerwatch::cmd::run::run(args).await.map(|()| 0),
            Command::Tail(_) => Ok(0),
            Command::Check(_) | Command::Replay(_) | Command::Config(_) => Ok(0),
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("minerwatch: {e:#}");
            ExitCode::from(2)
        }
    }
}
