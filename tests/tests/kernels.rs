//! The sensor on the kernels users have: each Debian kernel prepared by
//! `cargo xtask kernels` (downloaded, unpacked, never installed) boots
//! under qemu with TCG, with an initramfs of busybox and the
//! `kernel_smoke` binary (tests/src/bin/kernel_smoke.rs), which runs
//! preflight, loads every program the loader reports and checks that
//! exec, fork, exit, connect, payload and CPU events arrive from a small
//! workload. The table (boot and test time, verifier instruction counts
//! per program) is printed for the README.

mod common;

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

const SMOKE: &str = env!("CARGO_BIN_EXE_kernel_smoke");
const KERNELS_ENV: &str = "MINERWATCH_KERNELS";
const CACHE: &str = ".cache/minerwatch/kernels";
/// Boot plus smoke test under TCG took 15-40 s here; a hung guest is
/// killed after this.
const GUEST_TIMEOUT: Duration = Duration::from_secs(240);
/// Event kinds the workload must produce in every guest.
const KINDS: &[&str] = &["exec", "fork", "exit", "connect", "payload", "cpu_sample"];

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
ip link set lo up
echo "MW-BOOTED $(cut -d' ' -f1 /proc/uptime)"
/smoke
echo "MW-DONE $(cut -d' ' -f1 /proc/uptime)"
poweroff -f
"#;

/// Kernel directories: `$MINERWATCH_KERNELS` (colon-separated, set by
/// xtask) or every prepared one in the cache.
fn kernels() -> Vec<PathBuf> {
    if let Some(list) = std::env::var_os(KERNELS_ENV) {
        return std::env::split_paths(&list)
            .filter(|p| p.join("vmlinuz").is_file())
            .collect();
    }
    let Some(home) = std::env::var_os("HOME") else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = std::fs::read_dir(PathBuf::from(home).join(CACHE))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("vmlinuz").is_file())
        .collect();
    v.sort();
    v
}

fn ok(cmd: &mut Command) -> bool {
    cmd.status().is_ok_and(|s| s.success())
}

/// The shared libraries `bin` loads, from `ldd`.
fn libraries(bin: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(bin).output().expect("ldd");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = l.split("=> ").nth(1).unwrap_or(l);
            let path = path.split(" (").next()?.trim();
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// busybox, the smoke binary (stripped) and its libraries, as a newc cpio.
fn initramfs(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox (busybox-static)");
    std::fs::write(root.join("init"), INIT).expect("init");
    let smoke = root.join("smoke");
    std::fs::copy(SMOKE, &smoke).expect("smoke binary");
    assert!(ok(Command::new("strip").arg(&smoke)), "strip");
    for lib in libraries(Path::new(SMOKE)) {
        let dst = root.join(lib.strip_prefix("/").expect("absolute"));
        std::fs::create_dir_all(dst.parent().expect("parent")).expect("mkdir");
        std::fs::copy(&lib, &dst).expect("library");
    }
    use std::os::unix::fs::PermissionsExt as _;
    for exe in ["init", "bin/busybox", "smoke"] {
        std::fs::set_permissions(root.join(exe), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }
    let cpio = dir.join("initramfs.cpio");
    let status = Command::new("sh")
        .current_dir(&root)
        .arg("-c")
        .arg(format!(
            "find . | cpio -o -H newc --quiet > {}",
            cpio.display()
        ))
        .status()
        .expect("cpio");
    assert!(status.success(), "cpio");
    cpio
}

struct Run {
    release: String,
    boot: Duration,
    smoke: Duration,
    report: Option<Value>,
    tail: Vec<String>,
}

fn boot(kernel: &Path, initrd: &Path) -> Run {
    let release = std::fs::read_to_string(kernel.join("version"))
        .unwrap_or_default()
        .trim()
        .to_owned();
    let t0 = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-machine",
            "q35,accel=tcg",
            "-cpu",
            "max",
            "-smp",
            "1",
            "-m",
            "1G",
        ])
        .arg("-kernel")
        .arg(kernel.join("vmlinuz"))
        .arg("-initrd")
        .arg(initrd)
        .args([
            "-append",
            "console=ttyS0 panic=-1 rdinit=/init quiet loglevel=3",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-monitor",
            "none",
            "-no-reboot",
            "-nic",
            "none",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("qemu-system-x86_64");
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        let deadline = Instant::now() + GUEST_TIMEOUT;
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            // SAFETY: signal 0 only probes whether our child is alive.
            if unsafe { libc::kill(pid as i32, 0) } != 0 {
                return;
            }
        }
        // SAFETY: killing our own hung child.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    });
    let mut run = Run {
        release,
        boot: Duration::ZERO,
        smoke: Duration::ZERO,
        report: None,
        tail: Vec::new(),
    };
    let out = child.stdout.take().expect("stdout");
    for line in BufReader::new(out).lines().map_while(Result::ok) {
        let line = line.trim_end_matches('\r').to_owned();
        if line.starts_with("MW-BOOTED") {
            run.boot = t0.elapsed();
        } else if let Some(json) = line.strip_prefix("MW-SMOKE ") {
            run.smoke = t0.elapsed() - run.boot;
            run.report = serde_json::from_str(json).ok();
        }
        run.tail.push(line);
        if run.tail.len() > 40 {
            run.tail.remove(0);
        }
    }
    let _ = child.wait();
    let _ = watchdog.join();
    run
}

/// What is wrong with one guest's report, if anything.
fn problems(r: &Run) -> Vec<String> {
    let Some(rep) = &r.report else {
        return vec![format!(
            "no smoke report; guest output:\n{}",
            r.tail.join("\n")
        )];
    };
    let mut p = Vec::new();
    if rep["preflight"] != "ok" {
        p.push(format!("preflight: {}", rep["preflight"]));
    }
    if let Some(e) = rep.get("load_error") {
        p.push(format!("load failed: {e}"));
    }
    for h in rep["hooks"].as_array().into_iter().flatten() {
        if h["attached"] != true {
            p.push(format!("{} not attached: {}", h["program"], h["error"]));
        }
    }
    for k in KINDS {
        if rep["events"][k].as_u64().unwrap_or(0) == 0 {
            p.push(format!("no {k} event"));
        }
    }
    p
}

#[test]
fn the_sensor_loads_and_sees_events_on_each_debian_kernel() {
    let test = "kernels::the_sensor_loads_and_sees_events_on_each_debian_kernel";
    let list = kernels();
    if list.is_empty() {
        return common::skip(
            test,
            "kernels",
            "no Debian kernels prepared (run `cargo xtask kernels`, which downloads them)",
        );
    }
    if !ok(Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null()))
    {
        return common::skip(
            test,
            "qemu",
            "qemu-system-x86_64 missing (`cargo xtask kernels` installs it)",
        );
    }
    let scratch = tempfile::tempdir().expect("scratch");
    let initrd = initramfs(scratch.path());
    let mut rows = Vec::new();
    let mut failures = BTreeMap::new();
    let mut programs: Vec<String> = Vec::new();
    for k in &list {
        let r = boot(k, &initrd);
        let bad = problems(&r);
        if let Some(hooks) = r.report.as_ref().and_then(|v| v["hooks"].as_array()) {
            for h in hooks {
                let name = h["program"].as_str().unwrap_or("?").to_owned();
                if !programs.contains(&name) {
                    programs.push(name);
                }
            }
        }
        if !bad.is_empty() {
            failures.insert(r.release.clone(), bad.clone());
        }
        rows.push((r, bad));
    }
    // The table: one row per kernel, verifier instruction counts per program.
    let mut table = String::from("| kernel | boot | smoke test | programs attached | events |");
    for p in &programs {
        table.push_str(&format!(" {p} |"));
    }
    table.push_str("\n|---|---|---|---|---|");
    table.push_str(&"---|".repeat(programs.len()));
    table.push('\n');
    for (r, bad) in &rows {
        let rep = r.report.clone().unwrap_or(Value::Null);
        let hooks = rep["hooks"].as_array().cloned().unwrap_or_default();
        let attached = hooks.iter().filter(|h| h["attached"] == true).count();
        let events = if bad.iter().any(|b| b.starts_with("no ")) {
            "missing".to_owned()
        } else {
            "all".to_owned()
        };
        table.push_str(&format!(
            "| {} | {:.1} s | {:.1} s | {attached} of {} | {events} |",
            r.release,
            r.boot.as_secs_f64(),
            r.smoke.as_secs_f64(),
            hooks.len()
        ));
        for p in &programs {
            let h = hooks.iter().find(|h| h["program"] == p.as_str());
            let cell = match h {
                // bpf_prog_info.verified_insns exists from Linux 5.16.
                Some(h) if h["attached"] == true => h["verified_insns"]
                    .as_u64()
                    .map_or_else(|| "n/a".to_owned(), |n| n.to_string()),
                Some(_) => "not attached".into(),
                None => "-".into(),
            };
            table.push_str(&format!(" {cell} |"));
        }
        table.push('\n');
    }
    println!("\n{table}");
    assert!(failures.is_empty(), "kernels with problems: {failures:#?}");
}
