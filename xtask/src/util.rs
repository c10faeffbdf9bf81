//! Small process helpers shared by the subcommands.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Where cargo puts build output: `CARGO_TARGET_DIR` when set (relative to
/// the workspace root, as cargo reads it there), else `target/`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => root().join(d),
        _ => root().join("target"),
    }
}

/// Run a command, echoing it; fail with its exit status.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("xtask: {}", describe(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("spawning {}", describe(cmd)))?;
    if !status.success() {
        bail!("{} failed: {status}", describe(cmd));
    }
    Ok(())
}

/// Run a command and capture its stdout (trimmed); None if it fails.
pub fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Whether this process may load eBPF programs, by the daemon's own rule
/// (`sensor/probe.rs`): CAP_SYS_ADMIN, or CAP_BPF and CAP_PERFMON, in the
/// effective set. So xtask and the daemon never disagree on "root": a uid
/// 0 without those capabilities (a restricted container) is not root here.
pub fn is_root() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let caps = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0);
    let has = |c: u32| caps & (1u64 << c) != 0;
    has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))
}

/// Passed and failed tests, added up over `cargo test` runs.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    pub passed: u64,
    pub failed: u64,
}

/// Run `cargo test …`, streaming its output, and add up its `test result:`
/// lines. A test binary that ends without one (killed by a signal, aborted,
/// crashed before its summary) counts as one failed test, named from
/// cargo's `Caused by` line: its tests neither passed nor were counted.
/// Fails like `run` when the tests fail.
pub fn run_tests(cmd: &mut Command, totals: &mut Totals) -> anyhow::Result<()> {
    use std::io::{BufRead, BufReader};
    use std::sync::mpsc;
    eprintln!("xtask: {}", describe(cmd));
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {}", describe(cmd)))?;
    let (tx, rx) = mpsc::channel::<(bool, String)>();
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send((true, line));
            }
        }));
    }
    if let Some(err) = child.stderr.take() {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send((false, line));
            }
        }));
    }
    drop(tx);
    let mut binaries = 0u64;
    let mut results = 0u64;
    let mut died = Vec::new();
    for (stdout, line) in rx {
        if stdout {
            println!("{line}");
        } else {
            eprintln!("{line}");
        }
        let trimmed = line.trim_start();
        if trimmed.starts_with("Running ") || trimmed.starts_with("Doc-tests ") {
            binaries += 1;
        }
        if let Some(rest) = line.strip_prefix("test result: ") {
            results += 1;
            let num = |key: &str| {
                rest.split(';')
                    .find_map(|p| p.trim().strip_suffix(key))
                    .and_then(|n| n.trim().rsplit(' ').next()?.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            totals.passed += num("passed");
            totals.failed += num("failed");
        }
        if trimmed.starts_with("process didn't exit successfully") && trimmed.contains("signal") {
            died.push(trimmed.to_owned());
        }
    }
    for r in readers {
        let _ = r.join();
    }
    let status = child.wait()?;
    let silent = binaries.saturating_sub(results);
    if silent > 0 {
        totals.failed += silent;
        eprintln!("\nxtask: {silent} test binaries ended without a result; each counts as failed:");
        for d in &died {
            eprintln!("xtask:   {d}");
        }
    }
    if !status.success() {
        bail!("{} failed: {status}", describe(cmd));
    }
    if silent > 0 {
        bail!("{silent} test binaries ended without a result");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What cargo prints for a binary that reports, and for one that dies.
    fn fake_cargo(script: &str) -> (anyhow::Result<()>, Totals) {
        let mut totals = Totals::default();
        let res = run_tests(Command::new("sh").args(["-c", script]), &mut totals);
        (res, totals)
    }

    #[test]
    fn results_are_added_up() {
        let (res, t) = fake_cargo(
            "echo '     Running unittests src/lib.rs (target/debug/deps/a)' >&2; \
             echo 'test result: ok. 7 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out'; \
             echo '   Doc-tests a' >&2; \
             echo 'test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out'",
        );
        assert!(res.is_ok(), "{res:?}");
        assert_eq!((t.passed, t.failed), (9, 1));
    }

    #[test]
    fn a_binary_killed_by_a_signal_counts_as_failed() {
        let (res, t) = fake_cargo(
            "echo '     Running unittests src/lib.rs (target/debug/deps/a)' >&2; \
             echo 'test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out'; \
             echo '     Running tests/e2e.rs (target/debug/deps/e2e-1)' >&2; \
             echo 'test e2e_detection_suite ... '; \
             echo '  process didn'\\''t exit successfully: `e2e-1` (signal: 9, SIGKILL: kill)' >&2; \
             exit 101",
        );
        assert!(res.is_err());
        assert_eq!((t.passed, t.failed), (3, 1));
    }

    #[test]
    fn a_silent_binary_fails_the_run_even_if_cargo_exits_0() {
        let (res, t) = fake_cargo("echo '     Running tests/x.rs (target/debug/deps/x)' >&2");
        assert!(res.is_err());
        assert_eq!(t.failed, 1);
    }
}
