//! `cargo xtask setup`: install what is missing, quickly when nothing is.
//!
//! - the eBPF toolchain pinned in `miner-ebpf/rust-toolchain.toml`, with
//!   rust-src (build-std=core for bpfel-unknown-none);
//! - bpf-linker, built against that toolchain's own libLLVM (a plain
//!   `cargo install bpf-linker` looks for a system LLVM that is not here),
//!   cached in ~/.cargo/bin with a stamp naming the toolchain it matches;
//! - tracefs mounted at /sys/kernel/tracing (it is not on a fresh machine).

use std::{fs, path::PathBuf, process::Command};

use anyhow::{Context as _, bail};

use crate::util::{self, output, run};

pub const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn pinned_toolchain() -> anyhow::Result<String> {
    let file = util::root().join("miner-ebpf/rust-toolchain.toml");
    let text = fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("channel"))
        .filter_map(|rest| rest.split('"').nth(1))
        .map(str::to_owned)
        .next()
        .with_context(|| format!("no channel in {}", file.display()))
}

pub fn setup() -> anyhow::Result<()> {
    let tc = pinned_toolchain()?;
    ensure_toolchain(&tc)?;
    ensure_bpf_linker(&tc)?;
    ensure_tracefs();
    Ok(())
}

fn ensure_toolchain(tc: &str) -> anyhow::Result<()> {
    let installed = output(Command::new("rustup").args(["toolchain", "list"])).unwrap_or_default();
    if !installed.lines().any(|l| l.starts_with(tc)) {
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            tc,
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))?;
    }
    let comps = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        tc,
    ]))
    .unwrap_or_default();
    if !comps.lines().any(|l| l.starts_with("rust-src")) {
        run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", tc]))?;
    }
    Ok(())
}

fn cargo_bin() -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"));
    home.join("bin")
}

fn ensure_bpf_linker(tc: &str) -> anyhow::Result<()> {
    let bin = cargo_bin().join("bpf-linker");
    let stamp = cargo_bin().join(".bpf-linker.toolchain");
    let want = format!("{BPF_LINKER_VERSION} {tc}");
    let works = output(Command::new(&bin).arg("--version")).is_some();
    if works
        && fs::read_to_string(&stamp)
            .map(|s| s.trim() == want)
            .unwrap_or(false)
    {
        return Ok(());
    }
    let sysroot = output(
        Command::new("rustc")
            .arg(format!("+{tc}"))
            .args(["--print", "sysroot"]),
    )
    .context("asking the pinned toolchain for its sysroot")?;
    let version =
        output(Command::new("rustc").arg(format!("+{tc}")).arg("-vV")).unwrap_or_default();
    let llvm_major = version
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .context("the pinned toolchain does not report its LLVM version")?
        .to_owned();
    let lib = PathBuf::from(&sysroot).join("lib");
    let libllvm = fs::read_dir(&lib)
        .with_context(|| format!("listing {}", lib.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with("libLLVM.so.") || (n.starts_with("libLLVM-") && n.ends_with(".so"))
            })
        })
        .with_context(|| format!("no libLLVM in {}", lib.display()))?;
    let prefix = std::env::temp_dir().join(format!("minerwatch-llvm-{}", std::process::id()));
    fs::create_dir_all(prefix.join("lib"))?;
    let link = prefix.join("lib/libLLVM.so");
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(&libllvm, &link)?;
    eprintln!(
        "xtask: building bpf-linker {BPF_LINKER_VERSION} against {} (about a minute, once)",
        libllvm.display()
    );
    let result = run(Command::new("cargo")
        .args([
            "install",
            &format!("bpf-linker@{BPF_LINKER_VERSION}"),
            "--locked",
            "--force",
            "--no-default-features",
            "--features",
        ])
        .arg(format!("llvm-{llvm_major}"))
        .env("LLVM_PREFIX", &prefix)
        .env(
            "RUSTFLAGS",
            format!("-C link-arg=-Wl,-rpath,{}", lib.display()),
        ));
    let _ = fs::remove_dir_all(&prefix);
    result?;
    if output(Command::new(&bin).arg("--version")).is_none() {
        bail!("bpf-linker was installed but does not run; see the build output above");
    }
    fs::write(&stamp, want)?;
    Ok(())
}

fn ensure_tracefs() {
    if std::path::Path::new("/sys/kernel/tracing/events").exists() {
        return;
    }
    if !util::is_root() {
        eprintln!(
            "xtask: WARNING tracefs is not mounted and we are not root; the daemon will need it"
        );
        return;
    }
    if let Err(e) =
        run(Command::new("mount").args(["-t", "tracefs", "tracefs", "/sys/kernel/tracing"]))
    {
        eprintln!("xtask: WARNING could not mount tracefs: {e}");
    }
}
