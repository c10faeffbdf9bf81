//! Builds the eBPF object with aya-build, using the toolchain pinned in
//! `miner-ebpf/rust-toolchain.toml` (the one place it is named; xtask reads
//! the same file to install it and build bpf-linker against its LLVM).
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

fn main() -> Result<()> {
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
