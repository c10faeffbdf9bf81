//! `cargo xtask build`: the eBPF object is built by miner-user's build
//! script (aya-build, pinned toolchain); this builds the binaries.

use std::process::Command;

use crate::util::{self, run};

pub fn build(release: bool) -> anyhow::Result<()> {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(util::root()).args([
        "build",
        "-p",
        "miner-user",
        "-p",
        "minerwatch-tests",
        "--bins",
    ]);
    if release {
        cmd.arg("--release");
    }
    run(&mut cmd)
}

pub fn binary(release: bool) -> std::path::PathBuf {
    util::target_dir()
        .join(if release { "release" } else { "debug" })
        .join("minerwatch")
}
