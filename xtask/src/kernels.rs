//! `cargo xtask kernels`: the sensor on the kernels users have.
//!
//! Debian's kernel packages are fetched with `apt-get download` through an
//! apt state of their own under `~/.cache/minerwatch/kernels/apt/<suite>`
//! (so the machine's sources and lists stay untouched), unpacked with
//! `dpkg-deb -x` (never installed), and booted under qemu with TCG (the KVM
//! here cannot boot stock kernels). The boot and the smoke test inside are
//! the `kernels` test of the tests crate: this module prepares the kernels,
//! exports where they are, and runs that test with its table.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::util::{self, output, run};

/// What the tests read to find the prepared kernels.
pub const KERNELS_ENV: &str = "MINERWATCH_KERNELS";

/// (series, Debian suite): the kernels of Debian 11, 12, 13 and unstable.
pub const MATRIX: &[(&str, &str)] = &[
    ("5.10", "bullseye"),
    ("6.1", "bookworm"),
    ("6.12", "trixie"),
    ("7.2", "sid"),
];

const APT_PACKAGES: &[&str] = &["qemu-system-x86", "busybox-static", "cpio"];

pub fn cache() -> PathBuf {
    crate::fixtures::cache_dir().join("kernels")
}

/// `cargo xtask kernels [--only 5.10,7.2]`.
pub fn kernels(only: &[String]) -> anyhow::Result<()> {
    let prepared = prepare(only)?;
    if prepared.is_empty() {
        bail!("no kernel matched {only:?}; known: {:?}", series());
    }
    crate::build::build(false)?;
    util::run(
        Command::new("cargo")
            .current_dir(util::root())
            .args(["test", "-p", "minerwatch-tests", "--test", "kernels", "--"])
            .args(["--test-threads=1", "--nocapture"]),
    )
}

fn series() -> Vec<&'static str> {
    MATRIX.iter().map(|(s, _)| *s).collect()
}

/// Downloads and unpacks the selected kernels (all when `only` is empty)
/// and exports their directories to the tests; quick when cached.
pub fn prepare(only: &[String]) -> anyhow::Result<Vec<PathBuf>> {
    ensure_tools()?;
    let mut dirs = Vec::new();
    for (series, suite) in MATRIX {
        if !only.is_empty() && !only.iter().any(|o| o == series) {
            continue;
        }
        match prepare_one(series, suite) {
            Ok(dir) => dirs.push(dir),
            Err(e) => eprintln!("\n!!! kernel {series} ({suite}) unavailable: {e:#} !!!\n"),
        }
    }
    let list = dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    // SAFETY: xtask is single-threaded; the tests are its children.
    unsafe { std::env::set_var(KERNELS_ENV, list) };
    Ok(dirs)
}

fn ensure_tools() -> anyhow::Result<()> {
    let have = |bin: &str| output(Command::new("sh").args(["-c", &format!("command -v {bin}")]));
    let missing: Vec<&str> = ["qemu-system-x86_64", "busybox", "cpio", "dpkg-deb"]
        .into_iter()
        .filter(|b| have(b).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !util::is_root() {
        bail!(
            "{} missing: `apt-get install {}` (as root)",
            missing.join(", "),
            APT_PACKAGES.join(" ")
        );
    }
    let _ = run(Command::new("apt-get").args(["update", "-qq"]));
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(APT_PACKAGES)
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .context("installing qemu with apt-get failed")
}

/// apt options for a private state of `suite` under `dir`.
fn apt_opts(dir: &Path) -> Vec<String> {
    let d = dir.display();
    vec![
        format!("-o=Dir::State={d}"),
        format!("-o=Dir::State::Lists={d}/lists"),
        format!("-o=Dir::State::status={d}/status"),
        format!("-o=Dir::Etc::SourceList={d}/sources.list"),
        "-o=Dir::Etc::SourceParts=/nonexistent".into(),
        format!("-o=Dir::Cache={d}/cache"),
        "-o=APT::Architecture=amd64".into(),
        "-o=Acquire::Languages=none".into(),
    ]
}

fn mirror() -> String {
    crate::image::debian_mirror()
}

/// `~/.cache/minerwatch/kernels/<release>/` with `vmlinuz`, `version`
/// (the release) and `series`. Modules are not kept: the guest runs from an
/// initramfs and needs none (BPF, tracefs, cgroup2, loopback are built in).
fn prepare_one(series: &str, suite: &str) -> anyhow::Result<PathBuf> {
    let stamp = cache().join(format!("{series}.release"));
    if let Ok(release) = fs::read_to_string(&stamp) {
        let dir = cache().join(release.trim());
        if dir.join("vmlinuz").is_file() {
            return Ok(dir);
        }
    }
    let apt = cache().join("apt").join(suite);
    for sub in ["lists/partial", "cache/archives/partial"] {
        fs::create_dir_all(apt.join(sub))?;
    }
    fs::write(
        apt.join("sources.list"),
        format!("deb {} {suite} main\n", mirror()),
    )?;
    fs::write(apt.join("status"), "")?;
    let opts = apt_opts(&apt);
    eprintln!("xtask: kernel {series}: package lists of {suite}");
    run(Command::new("apt-get").args(&opts).args(["-qq", "update"]))?;
    let depends = output(
        Command::new("apt-cache")
            .args(&opts)
            .args(["depends", "linux-image-amd64"]),
    )
    .context("apt-cache depends linux-image-amd64")?;
    let package = depends
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-") && p.ends_with("-amd64"))
        .with_context(|| format!("no linux-image-*-amd64 in {suite}: {depends}"))?
        .to_owned();
    let release = package.trim_start_matches("linux-image-").to_owned();
    if !release.starts_with(series) {
        bail!("{suite} now ships {release}, not {series}: update MATRIX");
    }
    let dl = cache().join("debs");
    fs::create_dir_all(&dl)?;
    let unpack = cache().join(format!(".unpack-{release}"));
    let _ = fs::remove_dir_all(&unpack);
    download_unpack(&opts, &dl, &package, &unpack)?;
    // Newer kernels (sid's 7.x) split the image: the bootable kernel is in
    // a dependency (`linux-binary-<release>`).
    if find_vmlinuz(&unpack, &release).is_none() {
        let deps = output(
            Command::new("apt-cache")
                .args(&opts)
                .args(["depends", &package]),
        )
        .unwrap_or_default();
        for dep in deps
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Depends: "))
            .filter(|d| d.starts_with("linux-binary-") || d.ends_with("-unsigned"))
        {
            download_unpack(&opts, &dl, dep, &unpack)?;
        }
    }
    let vmlinuz = find_vmlinuz(&unpack, &release).with_context(|| {
        format!("no vmlinuz-{release} in {package} or its linux-binary dependency")
    })?;
    let dir = cache().join(&release);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    fs::rename(&vmlinuz, dir.join("vmlinuz"))?;
    fs::write(dir.join("version"), &release)?;
    fs::write(dir.join("series"), series)?;
    fs::remove_dir_all(&unpack)?;
    fs::write(&stamp, &release)?;
    Ok(dir)
}

/// `apt-get download PACKAGE` into `dl`, unpacked into `into`, the .deb
/// removed (~100 MB each; only the kernel image is kept).
fn download_unpack(opts: &[String], dl: &Path, package: &str, into: &Path) -> anyhow::Result<()> {
    eprintln!("xtask: apt-get download {package}");
    run(Command::new("apt-get")
        .current_dir(dl)
        .args(opts)
        .args(["-qq", "download", package]))?;
    let deb = fs::read_dir(dl)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
        })
        .context("apt-get download wrote no .deb")?;
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(into))?;
    fs::remove_file(&deb)?;
    Ok(())
}

/// `boot/vmlinuz-RELEASE` (or wherever the package put it).
fn find_vmlinuz(root: &Path, release: &str) -> Option<PathBuf> {
    let name = format!("vmlinuz-{release}");
    for dir in ["boot", "usr/lib/linux", "usr/lib/modules", "lib/modules"] {
        let base = root.join(dir);
        for cand in [base.join(&name), base.join(release).join("vmlinuz")] {
            if cand.is_file() {
                return Some(cand);
            }
        }
    }
    None
}
