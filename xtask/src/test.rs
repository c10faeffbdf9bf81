//! `cargo xtask test`: every test. Unit tests run in parallel; the tests
//! crate (real eBPF programs, storms, end-to-end scenarios) runs one test at
//! a time so storms and CPU measurements do not disturb each other.

use std::process::Command;

use crate::util::{self, run_tests};

pub fn test() -> anyhow::Result<()> {
    let mut totals = (0, 0);
    let result = test_all(&mut totals);
    // One closing line for humans and CI, whatever ran last.
    println!("\nxtask: {} passed, {} failed", totals.0, totals.1);
    result
}

fn test_all(totals: &mut (u64, u64)) -> anyhow::Result<()> {
    let root = util::root();
    run_tests(
        Command::new("cargo").current_dir(&root).args([
            "test",
            "-p",
            "miner-ebpf-common",
            "-p",
            "miner-user",
            "-p",
            "xtask",
            "--no-fail-fast",
        ]),
        totals,
    )?;
    if !util::is_root() {
        eprintln!(
            "\n!!! SKIPPING kernel integration and end-to-end tests: they load eBPF programs and need root !!!\n"
        );
        return Ok(());
    }
    // The daemon and end-to-end tests start the real `minerwatch` binary.
    crate::build::build(false)?;
    run_tests(
        Command::new("cargo").current_dir(&root).args([
            "test",
            "-p",
            "minerwatch-tests",
            "--no-fail-fast",
            "--",
            "--test-threads=1",
        ]),
        totals,
    )
}

pub fn e2e() -> anyhow::Result<()> {
    crate::build::build(false)?;
    crate::util::run(Command::new("cargo").current_dir(util::root()).args([
        "test",
        "-p",
        "minerwatch-tests",
        "--test",
        "e2e",
        "--",
        "--test-threads=1",
        "--nocapture",
    ]))
}
