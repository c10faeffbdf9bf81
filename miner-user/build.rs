//! Builds the eBPF object with aya-build, using the toolchain pinned in
//! `miner-ebpf/rust-toolchain.toml` (the one place it is named; xtask reads
//! the same file to install it and build bpf-linker against its LLVM).
//!
//! aya-build forwards every line of the inner cargo's output as a
//! `cargo:warning` (~50 on a fresh build: "Compiling core", …), which buries
//! real warnings of the user crate. So the build runs in a child copy of
//! this script whose output is filtered here: directives pass through, the
//! forwarded lines fold into one, and all of them are shown if the eBPF
//! build fails (or with MINERWATCH_EBPF_VERBOSE=1).
use std::{fs, path::Path};

use anyhow_free::Result;

mod anyhow_free {
    pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;
}

fn pinned_toolchain(ebpf_dir: &Path) -> Result<String> {
    let file = ebpf_dir.join("rust-toolchain.toml");
    println!("cargo:rerun-if-changed={}", file.display());
    let text = fs::read_to_string(&file)?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("channel"))
        .filter_map(|rest| rest.split('"').nth(1))
        .map(str::to_owned)
        .next()
        .ok_or_else(|| format!("no `channel = \"...\"` in {}", file.display()).into())
}

/// Set in the child copy of this script that runs aya-build.
const CHILD_ENV: &str = "MINERWATCH_EBPF_BUILD_CHILD";

fn main() -> Result<()> {
    if std::env::var_os(CHILD_ENV).is_some() {
        return build();
    }
    println!("cargo:rerun-if-env-changed=MINERWATCH_EBPF_VERBOSE");
    let verbose = std::env::var_os("MINERWATCH_EBPF_VERBOSE").is_some_and(|v| v == "1");
    let out = std::process::Command::new(std::env::current_exe()?)
        .env(CHILD_ENV, "1")
        .stderr(std::process::Stdio::inherit())
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut forwarded = Vec::new();
    for line in stdout.lines() {
        match line.strip_prefix("cargo:warning=") {
            Some(w) => forwarded.push(w),
            None => println!("{line}"),
        }
    }
    if !out.status.success() || verbose {
        for w in &forwarded {
            println!("cargo:warning={w}");
        }
    } else if !forwarded.is_empty() {
        println!(
            "cargo:warning=eBPF object built ({} lines of its build output folded; MINERWATCH_EBPF_VERBOSE=1 shows them)",
            forwarded.len()
        );
    }
    if out.status.success() {
        Ok(())
    } else {
        Err("building the eBPF object failed (its output is above); run `cargo xtask setup`".into())
    }
}

fn build() -> Result<()> {
    // AYA_BUILD_SKIP=1 builds user space alone (pure-logic work, docs): an
    // empty object is embedded and the loader refuses it with a clear error.
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    if std::env::var_os("AYA_BUILD_SKIP").is_some_and(|v| v == "1") {
        let out = std::env::var("OUT_DIR")?;
        fs::write(Path::new(&out).join("miner-ebpf"), b"")?;
        return Ok(());
    }
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")?;
    let ebpf_dir = Path::new(&manifest_dir).join("../miner-ebpf");
    let toolchain = pinned_toolchain(&ebpf_dir)?;
    let root = ebpf_dir.to_str().ok_or("non-UTF-8 path")?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "miner-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(&toolchain),
    )
    .map_err(|e| format!("building the eBPF object failed: {e:#}; run `cargo xtask setup`").into())
}
