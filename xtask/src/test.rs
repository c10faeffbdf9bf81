//! `cargo xtask test`: every test. Unit tests run in parallel; the tests
//! crate (real eBPF programs, storms, end-to-end scenarios) runs one test at
//! a time so storms and CPU measurements do not disturb each other.

use std::process::Command;

use crate::util::{self, run_tests};

/// Where the tests record skips (tests/tests/common/mod.rs `skip`).
const SKIP_LOG_ENV: &str = "MINERWATCH_SKIP_LOG";

pub fn test() -> anyhow::Result<()> {
    let mut totals = (0, 0);
    let log = std::env::temp_dir().join(format!("minerwatch-skips-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    // SAFETY: xtask is single-threaded; the tests are its children.
    unsafe { std::env::set_var(SKIP_LOG_ENV, &log) };
    let result = test_all(&mut totals);
    let skips: Vec<String> = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    let _ = std::fs::remove_file(&log);
    for s in &skips {
        println!("xtask: SKIPPED {}", s.replace('\t', ": "));
    }
    // A skipped test returned early and cargo counted it as passed.
    let skipped = skips.len() as u64;
    // One closing line for humans and CI, whatever ran last.
    println!(
        "\nxtask: {} passed, {} failed, {} skipped",
        totals.0.saturating_sub(skipped),
        totals.1,
        skipped
    );
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
    fixtures()?;
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
    fixtures()?;
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

/// Real third-party software the tests run (cached outside the checkout).
/// A fetch failure is loud; the tests that need the file then report
/// themselves skipped, naming it.
fn fixtures() -> anyhow::Result<()> {
    if let Err(e) = crate::fixtures::ensure_xmrig() {
        eprintln!("\n!!! XMRig unavailable, its tests will SKIP: {e:#} !!!\n");
    }
    if let Err(e) = crate::fixtures::ensure_monerod() {
        eprintln!("\n!!! monerod unavailable, its tests will SKIP: {e:#} !!!\n");
    }
    Ok(())
}
