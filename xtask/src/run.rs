//! `cargo xtask run`: start the daemon with the embedded default config.

use std::process::Command;

use anyhow::bail;

use crate::{build, util};

pub fn run(release: bool, args: Vec<String>) -> anyhow::Result<()> {
    if !util::is_root() {
        bail!("minerwatch loads eBPF programs: run `cargo xtask run` as root");
    }
    let args = if args.is_empty() {
        vec!["run".to_owned(), "--print-events".to_owned()]
    } else {
        args
    };
    let mut cmd = Command::new(build::binary(release));
    cmd.args(&args);
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "info");
    }
    eprintln!("xtask: {}", util::describe(&cmd));
    let status = cmd.status()?;
    // SIGINT ends the daemon cleanly with 0; pass other codes through.
    std::process::exit(status.code().unwrap_or(0));
}
