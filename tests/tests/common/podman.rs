//! podman for the container tests: the configuration `cargo xtask image`
//! writes (runc, cgroupfs, rlimits the host allows), images built offline
//! with `--pull=never`, containers removed when their guard drops.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

/// Where `cargo xtask image` keeps podman's configuration.
const CONF: &str = ".cache/minerwatch/containers.conf";

fn conf() -> Option<PathBuf> {
    std::env::var_os("CONTAINERS_CONF")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(CONF)))
}

pub fn podman() -> Command {
    let mut c = Command::new("podman");
    if let Some(conf) = conf() {
        c.env("CONTAINERS_CONF", conf);
    }
    c
}

/// Runs podman to completion; its stdout, or its stderr as the error.
pub fn run(args: &[&str]) -> Result<String, String> {
    let out = podman()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("podman: {e}"))?;
    result(&out, args)
}

fn result(out: &Output, args: &[&str]) -> Result<String, String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "podman {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Why the container tests cannot run here, naming the missing piece; the
/// caller skips with it.
pub fn unavailable(image: &str) -> Option<String> {
    if Command::new("podman").arg("--version").output().is_err() {
        return Some("podman is not installed (run `cargo xtask image`, which installs it)".into());
    }
    if conf().is_none_or(|c| !c.is_file()) {
        return Some(format!(
            "no podman configuration at ~/{CONF} (run `cargo xtask image`)"
        ));
    }
    if let Err(e) = run(&["info", "--format", "{{.Host.OCIRuntime.Name}}"]) {
        return Some(format!("podman cannot run here: {e}"));
    }
    if run(&["image", "exists", image]).is_err() {
        return Some(format!(
            "image {image} is not built (run `cargo xtask image`)"
        ));
    }
    None
}

/// An image built by a test, removed when the guard drops (each run's
/// miner has a fresh hash, so images would pile up).
pub struct Image(pub String);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = run(&["rmi", "-f", &self.0]);
    }
}

/// Builds `dir` (a Dockerfile beside its files) as `tag`, offline.
pub fn build(dir: &Path, tag: &str) -> Result<Image, String> {
    let d = dir.to_str().ok_or("non-UTF-8 path")?;
    run(&["build", "--pull=never", "--quiet", "-t", tag, d]).map(|_| Image(tag.to_owned()))
}

/// A running container, removed (forcibly) on drop.
pub struct Container {
    pub name: String,
    pub id: String,
}

impl Container {
    /// `podman run -d --name NAME ARGS...`; waits until its main process
    /// has a host pid.
    pub fn run(name: &str, args: &[String]) -> Result<Container, String> {
        let _ = run(&["rm", "-f", "-t", "0", name]);
        let mut all = vec!["run", "-d", "--pull=never", "--name", name];
        all.extend(args.iter().map(String::as_str));
        let id = run(&all)?;
        let c = Container {
            name: name.to_owned(),
            id,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while c.pid().is_none() {
            if Instant::now() > deadline {
                return Err(format!("{name} has no pid: {}", c.logs()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(c)
    }

    pub fn inspect(&self, format: &str) -> Option<String> {
        run(&["inspect", "--format", format, &self.name]).ok()
    }

    /// Host pid of the container's main process (0 or none: not running).
    pub fn pid(&self) -> Option<u32> {
        self.inspect("{{.State.Pid}}")?
            .parse()
            .ok()
            .filter(|&p: &u32| p > 0)
    }

    pub fn running(&self) -> bool {
        self.inspect("{{.State.Running}}").as_deref() == Some("true")
    }

    pub fn exit_code(&self) -> Option<i32> {
        self.inspect("{{.State.ExitCode}}")?.parse().ok()
    }

    pub fn logs(&self) -> String {
        podman()
            .args(["logs", &self.name])
            .output()
            .map(|o| {
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )
            })
            .unwrap_or_default()
    }

    /// Host pids whose cgroup path names this container.
    pub fn host_pids(&self) -> Vec<u32> {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir("/proc") else {
            return out;
        };
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if std::fs::read_to_string(e.path().join("cgroup")).is_ok_and(|c| {
                c.lines()
                    .any(|l| l.starts_with("0::") && l.contains(&self.id))
            }) {
                out.push(pid);
            }
        }
        out.sort_unstable();
        out
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = run(&["rm", "-f", "-t", "0", &self.name]);
    }
}
