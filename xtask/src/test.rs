//! `cargo xtask test`: every test. Unit tests run in parallel; the tests
//! crate (real eBPF programs, storms, end-to-end scenarios) runs one test at
//! a time so storms and CPU measurements do not disturb each other.
//!
//! A test that cannot run here says so through the skip log (`common::skip`
//! in the tests crate, `test_skip` in miner-user): `test<TAB>need<TAB>reason`.
//! Skips are counted as skipped, never passed, each printed with its
//! reason. With `--no-skips` (what CI runs) a skip whose need this machine
//! actually has fails the run: only a feature that is truly missing here
//! may be skipped. Without root (the daemon's capability rule) the
//! root-free tests still run: unit tests and the manifest checks.

use std::process::Command;

use crate::util::{self, Totals, run_tests};

/// Where the tests record skips (tests/tests/common/mod.rs `skip`).
const SKIP_LOG_ENV: &str = "MINERWATCH_SKIP_LOG";
/// Same as `--no-skips`, for CI scripts.
pub const NO_SKIPS_ENV: &str = "MINERWATCH_NO_SKIPS";
/// Test files of the tests crate that run without root.
const ROOT_FREE: &[&str] = &["k8s_manifests"];

/// One recorded skip.
struct Skip {
    test: String,
    need: String,
    reason: String,
}

impl Skip {
    fn parse(line: &str) -> Skip {
        let mut f = line.splitn(3, '\t');
        let test = f.next().unwrap_or_default().to_owned();
        match (f.next(), f.next()) {
            (Some(need), Some(reason)) => Skip {
                test,
                need: need.to_owned(),
                reason: reason.to_owned(),
            },
            (Some(reason), None) => Skip {
                test,
                need: "unknown".into(),
                reason: reason.to_owned(),
            },
            _ => Skip {
                test,
                need: "unknown".into(),
                reason: "no reason given".into(),
            },
        }
    }
}

/// Whether this machine has what a skip said was missing. Unknown needs
/// count as present: a skip must name something this can check.
fn machine_has(need: &str) -> bool {
    let ok = |cmd: &mut Command| {
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    match need {
        "root" => util::is_root(),
        "btf" => std::path::Path::new("/sys/kernel/btf/vmlinux").exists(),
        "dpkg" => std::path::Path::new("/var/lib/dpkg/status").exists(),
        // A pure cgroup v2 host has no v1 freezer to hold a process.
        "freezer-v1" => std::path::Path::new("/sys/fs/cgroup/freezer").is_dir(),
        "python3" => ok(Command::new("python3").arg("--version")),
        "xmrig" => std::env::var_os(crate::fixtures::XMRIG_ENV)
            .is_some_and(|p| std::path::Path::new(&p).is_file()),
        "helm-sdk" => std::env::var_os(crate::fixtures::HELM_PYTHON_ENV)
            .is_some_and(|py| ok(Command::new(py).args(["-c", "import helm_python"]))),
        // Loopback ports (3333, 443 on 127.0.0.x) are ours to bind here.
        _ => true,
    }
}

pub fn test(no_skips: bool) -> anyhow::Result<()> {
    let strict = no_skips || std::env::var_os(NO_SKIPS_ENV).is_some_and(|v| v == "1");
    let mut totals = Totals::default();
    let log = std::env::temp_dir().join(format!("minerwatch-skips-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    // SAFETY: xtask is single-threaded; the tests are its children.
    unsafe { std::env::set_var(SKIP_LOG_ENV, &log) };
    let result = test_all(&mut totals, &log);
    let skips: Vec<Skip> = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(Skip::parse)
        .collect();
    let _ = std::fs::remove_file(&log);
    let mut forbidden = Vec::new();
    for s in &skips {
        println!(
            "xtask: SKIPPED {} (needs {}): {}",
            s.test.trim_start_matches('~'),
            s.need,
            s.reason
        );
        if strict && machine_has(&s.need) {
            forbidden.push(s);
        }
    }
    // A skipped test returned early and cargo counted it as passed.
    let reported = skips.iter().filter(|s| !s.test.starts_with('~')).count() as u64;
    let listed = skips.len() as u64 - reported;
    let passed = totals.passed.saturating_sub(reported);
    let failed = totals.failed + forbidden.len() as u64;
    if strict {
        let mut missing: Vec<&str> = skips
            .iter()
            .filter(|s| !machine_has(&s.need))
            .map(|s| s.need.as_str())
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            println!(
                "xtask: --no-skips: allowed, this machine lacks: {}",
                missing.join(", ")
            );
        }
        for s in &forbidden {
            println!(
                "xtask: FAILED {}: skipped for want of {}, but this machine has it ({})",
                s.test.trim_start_matches('~'),
                s.need,
                s.reason
            );
        }
    }
    // One closing line for humans and CI, whatever ran last.
    println!(
        "\nxtask: {passed} passed, {failed} failed, {} skipped",
        reported + listed
    );
    result?;
    if !forbidden.is_empty() {
        anyhow::bail!(
            "{} tests skipped although this machine has what they need (--no-skips)",
            forbidden.len()
        );
    }
    Ok(())
}

fn test_all(totals: &mut Totals, log: &std::path::Path) -> anyhow::Result<()> {
    let root = util::root();
    // The tests crate's fixtures first: the manifest checks (root-free)
    // render the Helm chart with the SDK fetched here.
    fixtures();
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
            "\n!!! kernel integration and end-to-end tests need root (CAP_SYS_ADMIN, or CAP_BPF + CAP_PERFMON): counted as skipped !!!\n"
        );
        let mut cmd = Command::new("cargo");
        cmd.current_dir(&root)
            .args(["test", "-p", "minerwatch-tests", "--no-fail-fast"]);
        for t in ROOT_FREE {
            cmd.args(["--test", t]);
        }
        run_tests(&mut cmd, totals)?;
        return record_root_skips(log);
    }
    // The daemon and end-to-end tests start the real `minerwatch` binary.
    crate::build::build(false)?;
    deploy_fixtures();
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

/// Without root: every test of the root-only files is a skip, named, so
/// the closing line says how much did not run. Marked `~` (never started,
/// so cargo did not count it as passed).
fn record_root_skips(log: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write as _;
    let dir = util::root().join("tests/tests");
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let mut files: Vec<String> = std::fs::read_dir(&dir)?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".rs").map(str::to_owned)
        })
        .filter(|n| !ROOT_FREE.contains(&n.as_str()))
        .collect();
    files.sort();
    for file in files {
        let listing = util::output(Command::new("cargo").current_dir(util::root()).args([
            "test",
            "-q",
            "-p",
            "minerwatch-tests",
            "--test",
            &file,
            "--",
            "--list",
        ]))
        .unwrap_or_default();
        for name in listing.lines().filter_map(|l| l.strip_suffix(": test")) {
            writeln!(
                out,
                "~{file}::{name}\troot\tloads eBPF programs into the running kernel"
            )?;
        }
    }
    Ok(())
}

pub fn e2e() -> anyhow::Result<()> {
    crate::build::build(false)?;
    fixtures();
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
/// A fetch failure is loud; the tests that need it then report themselves
/// skipped, naming it (and fail CI if the machine could have had it).
fn fixtures() {
    if let Err(e) = crate::fixtures::ensure_xmrig() {
        eprintln!("\n!!! XMRig unavailable, its tests will SKIP: {e:#} !!!\n");
    }
    if let Err(e) = crate::fixtures::ensure_helm_sdk() {
        eprintln!("\n!!! helm-python-sdk unavailable, the chart checks will SKIP: {e:#} !!!\n");
    }
    if let Err(e) = crate::fixtures::ensure_debian_python() {
        eprintln!("\n!!! Debian python3 unavailable, the chain tests will SKIP: {e:#} !!!\n");
    }
    if let Err(e) = crate::fixtures::ensure_node() {
        eprintln!("\n!!! Node.js unavailable, its tests will SKIP: {e:#} !!!\n");
    }
    if let Err(e) = crate::fixtures::ensure_monerod() {
        eprintln!("\n!!! monerod unavailable, its tests will SKIP: {e:#} !!!\n");
    }
}

fn deploy_fixtures() {
    // The agent image (podman, offline) for tests/tests/container.rs, and
    // every Debian kernel of the matrix for tests/tests/kernels.rs (the
    // four boot and pass in about a minute).
    if let Err(e) = crate::image::image() {
        eprintln!("\n!!! agent image unavailable, the container tests will SKIP: {e:#} !!!\n");
    }
    if let Err(e) = crate::kernels::prepare(&[]) {
        eprintln!("\n!!! Debian kernels unavailable, the kernel matrix will SKIP: {e:#} !!!\n");
    }
}
