//! `cargo xtask image`: the agent image, built for real with podman from
//! `deploy/Dockerfile`, offline.
//!
//! - podman and runc come from Debian when missing (crun cannot run on a
//!   hybrid cgroup host; runc needs rlimits it may set without
//!   CAP_SYS_RESOURCE), configured by a `containers.conf` kept outside the
//!   checkout and handed to every podman call through `CONTAINERS_CONF`;
//! - no registry can be reached, so `debian:bookworm-slim` is a local
//!   stand-in: `debootstrap --variant=minbase bookworm` from the machine's
//!   Debian mirror, cached as a tarball and imported under that name (only
//!   when no such image is in podman's store; a pulled one wins);
//! - the binary is `cargo xtask build --release`, staged by
//!   `deploy/image-steps.sh stage` exactly as the Dockerfile's build stage
//!   stages it, and handed to the build as that stage
//!   (`--build-context build=DIR`): the Rust builder image is never pulled.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, bail};

use crate::util::{self, output, run};

/// The image name the DaemonSet pulls (`image:` in 30-daemonset.yaml);
/// podman stores it as `localhost/minerwatch:0.1.0`.
pub const AGENT_IMAGE: &str = "localhost/minerwatch:0.1.0";
/// The runtime base the Dockerfile names.
pub const BASE_IMAGE: &str = "docker.io/library/debian:bookworm-slim";
const SUITE: &str = "bookworm";
/// What the tests read to find podman's configuration.
pub const CONTAINERS_CONF_ENV: &str = "CONTAINERS_CONF";

const APT_PACKAGES: &[&str] = &[
    "podman",
    "runc",
    "conmon",
    "netavark",
    "aardvark-dns",
    "slirp4netns",
    "passt",
    "fuse-overlayfs",
    "containernetworking-plugins",
    "catatonit",
    "uidmap",
    "busybox-static",
    "debootstrap",
];

const CONTAINERS_CONF: &str = r#"# Written by `cargo xtask image`; used through CONTAINERS_CONF.
[containers]
# runc sets every rlimit it is given; without CAP_SYS_RESOURCE it may not
# raise the hard limits above the host's (nofile 20000 here).
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
# crun refuses hybrid cgroup hosts ("drop all controllers from cgroupv2").
runtime = "runc"
# PID 1 is not systemd on every host.
cgroup_manager = "cgroupfs"
events_logger = "file"
"#;

/// `cargo xtask image`: podman ready, base present, binary built, image
/// built; prints its size and how long each step took.
pub fn image() -> anyhow::Result<()> {
    let t0 = Instant::now();
    ensure_podman()?;
    ensure_base()?;
    let t_base = t0.elapsed();
    crate::build::build(true)?;
    let t_bin = t0.elapsed();
    let built = build_agent(&crate::build::binary(true))?;
    let size = image_size(AGENT_IMAGE).unwrap_or(0);
    println!(
        "xtask: image {AGENT_IMAGE}: {:.1} MB, podman build {:.1} s \
         (podman + base {:.1} s, release build {:.1} s, total {:.1} s)",
        size as f64 / 1e6,
        built.as_secs_f64(),
        t_base.as_secs_f64(),
        (t_bin - t_base).as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Exports `CONTAINERS_CONF` for this process and its children (the tests).
pub fn containers_conf() -> anyhow::Result<PathBuf> {
    let path = crate::fixtures::cache_dir().join("containers.conf");
    if fs::read_to_string(&path).ok().as_deref() != Some(CONTAINERS_CONF) {
        fs::create_dir_all(path.parent().unwrap_or(Path::new("/")))?;
        fs::write(&path, CONTAINERS_CONF).with_context(|| format!("writing {}", path.display()))?;
    }
    // SAFETY: xtask is single-threaded; the tests are its children.
    unsafe { std::env::set_var(CONTAINERS_CONF_ENV, &path) };
    Ok(path)
}

fn podman() -> Command {
    Command::new("podman")
}

/// podman, runc and their helpers installed, configured, and able to run a
/// container; otherwise an error that names the missing piece.
pub fn ensure_podman() -> anyhow::Result<()> {
    let have = |bin: &str| output(Command::new("sh").args(["-c", &format!("command -v {bin}")]));
    let missing: Vec<&str> = ["podman", "runc", "conmon", "debootstrap", "busybox"]
        .into_iter()
        .filter(|b| have(b).is_none())
        .collect();
    if !missing.is_empty() {
        if !util::is_root() {
            bail!(
                "{} missing and we are not root: install them (`apt-get install {}`) \
                 or run `cargo xtask image` as root",
                missing.join(", "),
                APT_PACKAGES.join(" ")
            );
        }
        eprintln!(
            "xtask: installing {} (podman and what it needs)",
            missing.join(", ")
        );
        // A stale package list is the usual reason an install fails here.
        let _ = run(Command::new("apt-get").args(["update", "-qq"]));
        run(Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(APT_PACKAGES)
            .env("DEBIAN_FRONTEND", "noninteractive"))
        .context("installing podman with apt-get failed; see its output above")?;
    }
    containers_conf()?;
    let info = podman()
        .args([
            "info",
            "--format",
            "{{.Host.OCIRuntime.Name}} {{.Host.CgroupManager}}",
        ])
        .output()
        .context("running `podman info`")?;
    if !info.status.success() {
        bail!(
            "`podman info` failed: {}; check {} (runtime runc, cgroup manager cgroupfs)",
            String::from_utf8_lossy(&info.stderr).trim(),
            containers_conf()?.display()
        );
    }
    let info = String::from_utf8_lossy(&info.stdout).trim().to_owned();
    if !info.starts_with("runc") {
        bail!("podman uses the OCI runtime `{info}`, not runc; is CONTAINERS_CONF honoured?");
    }
    Ok(())
}

fn image_exists(name: &str) -> bool {
    podman()
        .args(["image", "exists", name])
        .status()
        .is_ok_and(|s| s.success())
}

pub fn image_size(name: &str) -> Option<u64> {
    output(podman().args(["image", "inspect", "--format", "{{.Size}}", name]))?
        .parse()
        .ok()
}

/// The Debian mirror this machine's apt uses (deb822 or one-line sources).
pub fn debian_mirror() -> String {
    let mut texts = Vec::new();
    if let Ok(rd) = fs::read_dir("/etc/apt/sources.list.d") {
        for e in rd.flatten() {
            texts.extend(fs::read_to_string(e.path()));
        }
    }
    texts.extend(fs::read_to_string("/etc/apt/sources.list"));
    texts
        .iter()
        .flat_map(|t| t.lines())
        .filter_map(|l| {
            let l = l.trim();
            l.strip_prefix("URIs:").map(str::trim).or_else(|| {
                l.strip_prefix("deb ")
                    .and_then(|r| r.split_whitespace().next())
            })
        })
        .find(|u| u.ends_with("/debian") || u.ends_with("/debian/"))
        .unwrap_or("http://deb.debian.org/debian")
        .to_owned()
}

/// `debian:bookworm-slim` in podman's store: a pulled one, else the cached
/// debootstrap tarball imported under its name (built once, ~35 s).
pub fn ensure_base() -> anyhow::Result<()> {
    if image_exists(BASE_IMAGE) {
        return Ok(());
    }
    let dir = crate::fixtures::cache_dir().join("images");
    let tar = dir.join(format!("debian-{SUITE}-minbase.tar"));
    if !tar.is_file() {
        debootstrap(&dir, &tar)?;
    }
    eprintln!("xtask: importing {} as {BASE_IMAGE}", tar.display());
    run(podman()
        .args(["import", "--change", "CMD [\"/bin/bash\"]"])
        .arg(&tar)
        .arg(BASE_IMAGE))
    .context("podman import of the debootstrap base failed")
}

fn debootstrap(dir: &Path, tar: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir)?;
    let rootfs = dir.join(format!("{SUITE}-rootfs.tmp"));
    let _ = fs::remove_dir_all(&rootfs);
    let mirror = debian_mirror();
    eprintln!("xtask: debootstrap {SUITE} from {mirror} (about 35 s, once)");
    run(Command::new("debootstrap")
        .args(["--variant=minbase", SUITE])
        .arg(&rootfs)
        .arg(&mirror))
    .context("debootstrap failed: it needs the Debian mirror and root")?;
    // What debian-slim leaves out too: package lists and caches.
    for sub in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        let p = rootfs.join(sub);
        if let Ok(rd) = fs::read_dir(&p) {
            for e in rd.flatten() {
                if e.path().is_file() {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
    }
    let partial = tar.with_extension("tar.partial");
    run(Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["--numeric-owner", "-cf"])
        .arg(&partial)
        .arg("."))?;
    fs::rename(&partial, tar)?;
    fs::remove_dir_all(&rootfs)?;
    Ok(())
}

/// Stages `bin` the way the Dockerfile's build stage does and builds the
/// runtime stage from it; returns the `podman build` time.
fn build_agent(bin: &Path) -> anyhow::Result<std::time::Duration> {
    let root = util::root();
    let ctx = root.join("target/image");
    let _ = fs::remove_dir_all(&ctx);
    run(Command::new(root.join("deploy/image-steps.sh"))
        .arg("stage")
        .arg(ctx.join("rootfs"))
        .env("MINERWATCH_BIN", bin))?;
    let previous = output(podman().args(["image", "inspect", "--format", "{{.Id}}", AGENT_IMAGE]));
    let t = Instant::now();
    run(podman()
        .current_dir(&root)
        .args(["build", "--pull=never", "--quiet", "--build-context"])
        .arg(format!("build={}", ctx.display()))
        .args(["-f", "deploy/Dockerfile", "-t", AGENT_IMAGE, "."]))
    .context("podman build of deploy/Dockerfile failed; see its output above")?;
    let took = t.elapsed();
    // The replaced build would stay behind untagged, 134 MB each time.
    let now = output(podman().args(["image", "inspect", "--format", "{{.Id}}", AGENT_IMAGE]));
    if let Some(old) = previous.filter(|old| Some(old) != now.as_ref()) {
        let _ = output(podman().args(["rmi", &old]));
    }
    Ok(took)
}
