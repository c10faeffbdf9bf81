//! The agent image run the way the DaemonSet runs it, and miners inside
//! real containers.
//!
//! The agent container's security context, PID namespace, mounts,
//! environment, command, resources and grace period are derived from
//! `deploy/kubernetes/30-daemonset.yaml` (decoded with k8s-openapi), never
//! restated here, so the manifest cannot drift from what was tested. Two
//! deliberate translations, because this is one machine and no kubelet:
//! - the node-state hostPaths outside /sys (`/run/minerwatch`,
//!   `/var/log/minerwatch`, `/var/lib/minerwatch`) are relocated under a
//!   scratch directory, so the test never writes the machine's own;
//! - the pod's network namespace is podman's `--network=none` (loopback
//!   only) and probes reach its port from inside that namespace, as the
//!   kubelet reaches a pod's port.
//!
//! The cgroup parent is `/kubepods/burstable/pod<uid>` (requests below
//! limits is Burstable QoS), so the agent sees itself as a pod too.
//!
//! Poisoned images are `debian:bookworm-slim` plus the real XMRig 6.16.0
//! (safety settings from common/xmrig.rs; its pool is `fake_pool` on the
//! host's loopback, reached through `--network=host`), run under
//! `/kubepods/besteffort/pod<uid>` cgroup parents.

mod common;

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    net::TcpStream,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::SpawnListening;
use common::podman::{self, Container};
use k8s_openapi::api::{
    apps::v1::DaemonSet,
    core::v1::{ConfigMap, Container as K8sContainer, PodSpec},
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::Value;

const POOL: &str = env!("CARGO_BIN_EXE_fake_pool");
/// The runtime base the Dockerfile names (a local debootstrap stand-in).
const BASE: &str = "docker.io/library/debian:bookworm-slim";
/// Where the agent writes alerts (minerwatch::defaults::ALERTS_FILE).
const ALERTS_IN_CONTAINER: &str = minerwatch::defaults::ALERTS_FILE;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn daemonset() -> DaemonSet {
    let text = std::fs::read_to_string(repo().join("deploy/kubernetes/30-daemonset.yaml"))
        .expect("deploy/kubernetes/30-daemonset.yaml");
    serde_yaml_ng::from_str(&text).expect("the DaemonSet decodes")
}

fn configmap() -> ConfigMap {
    let text = std::fs::read_to_string(repo().join("deploy/kubernetes/20-configmap.yaml"))
        .expect("deploy/kubernetes/20-configmap.yaml");
    serde_yaml_ng::from_str(&text).expect("the ConfigMap decodes")
}

fn pod_spec(ds: &DaemonSet) -> &PodSpec {
    ds.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec")
}

fn agent_container(ds: &DaemonSet) -> &K8sContainer {
    &pod_spec(ds).containers[0]
}

/// podman's spelling of a Kubernetes quantity (`256Mi` → `256m` bytes-ish
/// suffixes; `500m` CPU → `0.5`).
fn memory(q: &Quantity) -> String {
    let s = &q.0;
    for (suffix, p) in [("Ki", "k"), ("Mi", "m"), ("Gi", "g")] {
        if let Some(n) = s.strip_suffix(suffix) {
            return format!("{n}{p}");
        }
    }
    s.clone()
}

fn cpus(q: &Quantity) -> String {
    match q.0.strip_suffix('m') {
        Some(milli) => format!("{}", milli.parse::<f64>().expect("millicores") / 1000.0),
        None => q.0.clone(),
    }
}

/// The agent as the DaemonSet runs it.
struct AgentPod {
    /// `podman run` arguments after `--name`, image and command included.
    args: Vec<String>,
    /// Host directory behind `/var/log/minerwatch`.
    alerts_dir: PathBuf,
    grace_seconds: i64,
    /// httpGet paths of the probes: (startup, liveness, readiness).
    probes: (String, String, String),
    port: u16,
    pod_uid: String,
}

/// Where each hostPath outside /sys lands for the test.
fn relocate(host_path: &str, scratch: &Path) -> PathBuf {
    if host_path.starts_with("/sys/") {
        PathBuf::from(host_path)
    } else {
        scratch.join("host").join(host_path.trim_start_matches('/'))
    }
}

fn agent_pod(scratch: &Path, extra_args: &[&str], config_extra: &str) -> AgentPod {
    let ds = daemonset();
    let pod = pod_spec(&ds);
    let c = agent_container(&ds);
    let mut args: Vec<String> = Vec::new();
    let mut a = |s: String| args.push(s);

    a(if pod.host_pid == Some(true) {
        "--pid=host".into()
    } else {
        "--pid=private".into()
    });
    a(if pod.host_network == Some(true) {
        "--network=host".into()
    } else {
        "--network=none".into()
    });
    let sc = c.security_context.as_ref().expect("securityContext");
    if sc.privileged == Some(true) {
        a("--privileged".into());
    }
    if let Some(uid) = sc.run_as_user {
        a(format!("--user={uid}"));
    }
    if sc.read_only_root_filesystem == Some(true) {
        a("--read-only".into());
    }
    if sc.allow_privilege_escalation == Some(false) {
        a("--security-opt=no-new-privileges".into());
    }
    if let Some(caps) = &sc.capabilities {
        for cap in caps.add.iter().flatten() {
            a(format!("--cap-add={cap}"));
        }
        for cap in caps.drop.iter().flatten() {
            a(format!("--cap-drop={cap}"));
        }
    }
    for e in c.env.iter().flatten() {
        let v = e.value.as_ref().unwrap_or_else(|| {
            panic!("env {} uses valueFrom, which this test cannot give", e.name)
        });
        a(format!("--env={}={v}", e.name));
    }
    if let Some(l) = c.resources.as_ref().and_then(|r| r.limits.as_ref()) {
        if let Some(m) = l.get("memory") {
            a(format!("--memory={}", memory(m)));
        }
        if let Some(cpu) = l.get("cpu") {
            a(format!("--cpus={}", cpus(cpu)));
        }
    }
    let volumes: BTreeMap<&str, &k8s_openapi::api::core::v1::Volume> = pod
        .volumes
        .iter()
        .flatten()
        .map(|v| (v.name.as_str(), v))
        .collect();
    let mut alerts_dir = None;
    for m in c.volume_mounts.iter().flatten() {
        let vol = volumes
            .get(m.name.as_str())
            .unwrap_or_else(|| panic!("volume {} is declared", m.name));
        let source = if let Some(hp) = &vol.host_path {
            let src = relocate(&hp.path, scratch);
            match hp.type_.as_deref() {
                Some("DirectoryOrCreate") => std::fs::create_dir_all(&src).expect("hostPath dir"),
                Some("Directory") => assert!(src.is_dir(), "hostPath {} exists", hp.path),
                other => panic!("hostPath type {other:?} not handled"),
            }
            src
        } else if let Some(cm) = &vol.config_map {
            let data = configmap().data.expect("ConfigMap data");
            let dir = scratch.join("configmap").join(&m.name);
            std::fs::create_dir_all(&dir).expect("configmap dir");
            for item in cm.items.iter().flatten() {
                let mut text = data.get(&item.key).expect("ConfigMap key").clone();
                text.push_str(config_extra);
                std::fs::write(dir.join(&item.path), text).expect("configmap file");
            }
            dir
        } else {
            panic!("volume {} is neither hostPath nor configMap", m.name);
        };
        if m.mount_path == "/var/log/minerwatch" {
            alerts_dir = Some(source.clone());
        }
        let mut opts = Vec::new();
        if m.read_only == Some(true) {
            opts.push("ro");
        }
        match m.mount_propagation.as_deref() {
            Some("Bidirectional") => opts.push("rshared"),
            Some("HostToContainer") => opts.push("rslave"),
            None | Some("None") => {}
            Some(other) => panic!("mountPropagation {other}"),
        }
        let mut spec = format!("--volume={}:{}", source.display(), m.mount_path);
        if !opts.is_empty() {
            spec.push(':');
            spec.push_str(&opts.join(","));
        }
        a(spec);
    }
    let pod_uid = format!("0f1e2d3c-4b5a-4978-8695-{:012x}", std::process::id());
    a(format!("--cgroup-parent=/kubepods/burstable/pod{pod_uid}"));
    let command = c.command.clone().unwrap_or_default();
    assert!(!command.is_empty(), "the manifest names the command");
    a(format!("--entrypoint={}", command[0]));
    a(c.image.clone().expect("image"));
    args.extend(command[1..].iter().cloned());
    args.extend(c.args.iter().flatten().cloned());
    args.extend(extra_args.iter().map(|s| s.to_string()));

    let path_of = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
            .expect("httpGet probe")
    };
    let port = c
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("metrics"))
        .map(|p| p.container_port as u16)
        .expect("metrics port");
    AgentPod {
        args,
        alerts_dir: alerts_dir.expect("alerts mount"),
        grace_seconds: pod_spec(&ds).termination_grace_period_seconds.unwrap_or(30),
        probes: (
            path_of(&c.startup_probe),
            path_of(&c.liveness_probe),
            path_of(&c.readiness_probe),
        ),
        port,
        pod_uid,
    }
}

/// `GET path` on `127.0.0.1:port` inside the network namespace of `pid`,
/// from a thread that joins it (the rest of the test stays on the host).
fn http_in_netns(pid: u32, port: u16, path: &str) -> Option<(u16, String)> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).ok()?;
    let path = path.to_owned();
    std::thread::spawn(move || {
        // SAFETY: setns on this thread only, with an fd we hold open.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return None;
        }
        minerwatch_harness::http_get(&format!("127.0.0.1:{port}"), &path)
    })
    .join()
    .ok()
    .flatten()
}

struct RunningAgent {
    c: Container,
    pod: AgentPod,
    _scratch: tempfile::TempDir,
}

impl RunningAgent {
    fn start(name: &str, extra_args: &[&str], config_extra: &str) -> RunningAgent {
        let scratch = tempfile::tempdir().expect("scratch");
        let pod = agent_pod(scratch.path(), extra_args, config_extra);
        let c = Container::run(name, &pod.args).unwrap_or_else(|e| panic!("{e}"));
        let agent = RunningAgent {
            c,
            pod,
            _scratch: scratch,
        };
        // The startup probe's budget: periodSeconds 2 x failureThreshold 30.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if agent
                .get(&agent.pod.probes.2)
                .is_some_and(|(c, _)| c == 200)
            {
                return agent;
            }
            assert!(
                agent.c.running() && Instant::now() < deadline,
                "agent not ready; logs:\n{}",
                agent.c.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        http_in_netns(self.c.pid()?, self.pod.port, path)
    }

    fn alerts(&self) -> Vec<Value> {
        let file = self.pod.alerts_dir.join(
            Path::new(ALERTS_IN_CONTAINER)
                .file_name()
                .expect("alerts file name"),
        );
        std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn wait_record(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        common::daemon::wait_for(timeout, || self.alerts().into_iter().find(|a| pred(a)))
    }
}

fn skip_reason() -> Option<String> {
    if !common_is_root() {
        return Some("not root (containers and eBPF need root)".into());
    }
    let image = agent_container(&daemonset()).image.clone().expect("image");
    podman::unavailable(&format!("localhost/{image}"))
}

fn common_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn scrape(body: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .expect("Prometheus text")
}

fn sample(s: &prometheus_parse::Scrape, name: &str) -> Option<f64> {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .reduce(|a, b| a + b)
}

#[test]
fn the_agent_image_runs_as_the_daemonset_says() {
    let test = "container::the_agent_image_runs_as_the_daemonset_says";
    if let Some(why) = skip_reason() {
        return common::skip(test, "podman", &why);
    }
    let name = format!("mw-agent-{}", std::process::id());
    let t0 = Instant::now();
    let agent = RunningAgent::start(&name, &[], "");
    let ready_after = t0.elapsed();

    // Every program the loader reports attached: none degraded.
    let logs = agent.c.logs();
    let attached: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains(" instructions verified"))
        .filter_map(|l| l.split("attached ").nth(1))
        .collect();
    assert!(!logs.contains("not attached"), "a hook failed:\n{logs}");
    assert!(!attached.is_empty(), "no attach lines:\n{logs}");

    for path in [
        &agent.pod.probes.0,
        &agent.pod.probes.1,
        &agent.pod.probes.2,
    ] {
        let (code, _) = agent.get(path).unwrap_or_else(|| panic!("{path} answers"));
        assert_eq!(code, 200, "{path}");
    }
    let (code, body) = agent.get("/metrics").expect("/metrics");
    assert_eq!(code, 200);
    let m = scrape(&body);
    assert_eq!(
        sample(&m, "minerwatch_programs_attached"),
        Some(attached.len() as f64),
        "metric vs log: {attached:?}"
    );
    assert!(sample(&m, "process_resident_memory_bytes").is_some_and(|v| v > 0.0));

    // `minerwatch tail` through `podman exec`, as `kubectl exec` runs it.
    let marker = format!("mw-tail-marker-{}", std::process::id());
    let mut tail: Child = podman::podman()
        .args([
            "exec",
            &name,
            "minerwatch",
            "tail",
            "--json",
            "--kind",
            "exec",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("podman exec tail");
    let out = tail.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let want = marker.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains(&want) {
                let _ = tx.send(line);
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let line = loop {
        // The client may connect after the first exec: repeat it.
        let _ = Command::new("/bin/true").arg(&marker).status();
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(300)) {
            break l;
        }
        assert!(Instant::now() < deadline, "tail never showed the exec");
    };
    let ev: Value = serde_json::from_str(&line).expect("tail --json line");
    assert_eq!(ev["kind"], "exec", "{line}");
    let _ = tail.kill();
    let _ = tail.wait();

    // SIGTERM (podman stop, as the kubelet stops a pod) ends it cleanly
    // within the grace period.
    let grace = agent.pod.grace_seconds;
    let t = Instant::now();
    podman::run(&["stop", "-t", &grace.to_string(), &name]).expect("podman stop");
    let stopped = t.elapsed();
    assert_eq!(agent.c.exit_code(), Some(0), "logs:\n{}", agent.c.logs());
    assert!(stopped < Duration::from_secs(grace as u64), "{stopped:?}");
    println!(
        "agent container: ready in {:.1} s, {} programs attached, stopped in {:.2} s (grace {grace} s)",
        ready_after.as_secs_f64(),
        attached.len(),
        stopped.as_secs_f64()
    );
}

/// fake_pool on the host's loopback; containers reach it through
/// `--network=host`.
struct Pool {
    child: Child,
    port: u16,
}

impl Pool {
    fn start() -> Pool {
        let (child, port) = Command::new(POOL)
            .args(["--addr", "127.0.0.1:0", "--seconds", "180"])
            .listening();
        Pool { child, port }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a poisoned image carries and starts its miner.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Poison {
    /// `COPY`'d over a path the host's dpkg lists (procps' /usr/bin/top)
    /// but the image's does not, started as the entrypoint.
    CopyEntrypoint,
    /// In a hidden directory under /var/tmp, started by a shell that stays
    /// its parent.
    HiddenDirShell,
    /// Installed with `dpkg -i` from a .deb the image's author built: the
    /// image's dpkg database lists it with its correct MD5.
    ImageDpkg,
}

impl Poison {
    fn miner_path(self) -> &'static str {
        match self {
            Poison::CopyEntrypoint => "/usr/bin/top",
            Poison::HiddenDirShell => "/var/tmp/.cache/kworker",
            Poison::ImageDpkg => "/usr/bin/xmrig",
        }
    }
}

fn md5_hex(path: &Path) -> String {
    let out = Command::new("md5sum").arg(path).output().expect("md5sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("md5")
        .to_owned()
}

/// Builds the poisoned image `tag`: debian:bookworm-slim plus the real
/// XMRig (a fresh hash per run) and its safe config for `pool_port`.
#[must_use = "the image is removed when the guard drops"]
fn build_poisoned(
    xmrig: &Path,
    scratch: &Path,
    kind: Poison,
    pool_port: u16,
    tag: &str,
) -> podman::Image {
    let ctx = scratch.join(format!("{kind:?}"));
    let _ = std::fs::remove_dir_all(&ctx);
    std::fs::create_dir_all(&ctx).expect("context");
    let pool = common::xmrig::PoolSpec::plain(format!("127.0.0.1:{pool_port}"));
    let dropped = common::xmrig::drop_into(xmrig, &ctx, "miner", &pool).expect("drop XMRig");
    let dockerfile = match kind {
        Poison::CopyEntrypoint => format!(
            "FROM {BASE}\nCOPY miner /usr/bin/top\nCOPY config.json /usr/bin/config.json\n\
             WORKDIR /usr/bin\nENTRYPOINT [\"/usr/bin/top\"]\n"
        ),
        Poison::HiddenDirShell => format!(
            "FROM {BASE}\nCOPY miner /var/tmp/.cache/kworker\nCOPY config.json /var/tmp/.cache/config.json\n\
             CMD [\"/bin/sh\", \"-c\", \"cd /var/tmp/.cache && ./kworker; sleep 1\"]\n"
        ),
        Poison::ImageDpkg => {
            let pkg = ctx.join("pkg");
            std::fs::create_dir_all(pkg.join("DEBIAN")).expect("DEBIAN");
            std::fs::create_dir_all(pkg.join("usr/bin")).expect("usr/bin");
            std::fs::create_dir_all(pkg.join("etc/xmrig")).expect("etc/xmrig");
            std::fs::copy(&dropped.path, pkg.join("usr/bin/xmrig")).expect("copy");
            std::fs::copy(&dropped.config, pkg.join("etc/xmrig/config.json")).expect("copy");
            std::fs::write(
                pkg.join("DEBIAN/control"),
                "Package: xmrig\nVersion: 6.16.0-1\nArchitecture: amd64\n\
                 Maintainer: Image Author <author@example.invalid>\n\
                 Description: high performance system monitor\n",
            )
            .expect("control");
            std::fs::write(
                pkg.join("DEBIAN/md5sums"),
                format!("{}  usr/bin/xmrig\n", md5_hex(&pkg.join("usr/bin/xmrig"))),
            )
            .expect("md5sums");
            let status = Command::new("dpkg-deb")
                .args(["--root-owner-group", "--build"])
                .arg(&pkg)
                .arg(ctx.join("xmrig.deb"))
                .stdout(Stdio::null())
                .status()
                .expect("dpkg-deb");
            assert!(status.success(), "dpkg-deb --build");
            format!(
                "FROM {BASE}\nCOPY xmrig.deb /tmp/xmrig.deb\n\
                 RUN dpkg -i /tmp/xmrig.deb && rm /tmp/xmrig.deb\n\
                 ENTRYPOINT [\"/usr/bin/xmrig\", \"-c\", \"/etc/xmrig/config.json\"]\n"
            )
        }
    };
    std::fs::write(ctx.join("Dockerfile"), dockerfile).expect("Dockerfile");
    podman::build(&ctx, tag).unwrap_or_else(|e| panic!("{e}"))
}

/// A poisoned container in its own (BestEffort) pod.
fn run_poisoned(name: &str, tag: &str, pod_uid: &str) -> Container {
    let args: Vec<String> = [
        "--network=host",
        &format!("--cgroup-parent=/kubepods/besteffort/pod{pod_uid}"),
        tag,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Container::run(name, &args).unwrap_or_else(|e| panic!("{e}"))
}

/// The miner's host pid: the process in the container running its path.
fn miner_host_pid(c: &Container, path: &str, timeout: Duration) -> u32 {
    let deadline = Instant::now() + timeout;
    loop {
        for pid in c.host_pids() {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
            if exe == Path::new(path) {
                return pid;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no {path} in {}: {}",
            c.name,
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The fields a reader of the alert needs, for the report.
fn trimmed(a: &Value) -> Value {
    let mut t = serde_json::Map::new();
    for k in [
        "rule",
        "severity",
        "pid",
        "comm",
        "exe",
        "container_id",
        "pod_uid",
        "cgroup",
        "provenance",
        "latency_ms",
    ] {
        if let Some(v) = a.get(k) {
            t.insert(k.into(), v.clone());
        }
    }
    if let Some(ev) = a["evidence"].as_array() {
        t.insert(
            "evidence".into(),
            Value::Array(
                ev.iter()
                    .map(|e| Value::String(format!("{}: {}", e["signal"], e["detail"])))
                    .collect(),
            ),
        );
    }
    Value::Object(t)
}

#[test]
fn miners_in_poisoned_images_are_flagged_with_host_pid_container_and_pod() {
    let test = "container::miners_in_poisoned_images_are_flagged_with_host_pid_container_and_pod";
    if let Some(why) = skip_reason() {
        return common::skip(test, "podman", &why);
    }
    let xmrig = match common::xmrig::binary() {
        Ok(p) => p,
        Err(why) => return common::skip(test, "podman", &why),
    };
    let scratch = tempfile::tempdir().expect("scratch");
    let pool = Pool::start();
    let id = std::process::id();
    let agent = RunningAgent::start(&format!("mw-agent-obs-{id}"), &[], "");
    // A busy, packaged, offline neighbour: must stay silent.
    let benign = Container::run(
        &format!("mw-benign-{id}"),
        &[
            "--network=none".into(),
            format!("--cgroup-parent=/kubepods/besteffort/podb0000000-0000-4000-8000-{id:012x}"),
            BASE.into(),
            "/bin/sh".into(),
            "-c".into(),
            "while :; do :; done".into(),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));

    for (i, kind) in [
        Poison::CopyEntrypoint,
        Poison::HiddenDirShell,
        Poison::ImageDpkg,
    ]
    .into_iter()
    .enumerate()
    {
        let tag = format!(
            "localhost/mw-poisoned-{}:{id}",
            format!("{kind:?}").to_lowercase()
        );
        let _image = build_poisoned(&xmrig, scratch.path(), kind, pool.port, &tag);
        let pod_uid = format!("5e1f0000-0000-4000-8000-{:012x}", id * 10 + i as u32);
        let c = run_poisoned(&format!("mw-poisoned-{i}-{id}"), &tag, &pod_uid);
        let started = Instant::now();
        let pid = miner_host_pid(&c, kind.miner_path(), Duration::from_secs(20));
        let alert = agent
            .wait_record(Duration::from_secs(30), |a| {
                a["kind"] == "alert" && a["pid"] == pid && a["rule"] == "pool_protocol_unverified"
            })
            .unwrap_or_else(|| {
                panic!(
                    "{kind:?}: no alert for host pid {pid}; alerts {:?}\nagent:\n{}\nminer:\n{}",
                    agent.alerts(),
                    agent.c.logs(),
                    c.logs()
                )
            });
        let seen = started.elapsed();
        assert_eq!(alert["container_id"], c.id.as_str(), "{kind:?}: {alert}");
        assert_eq!(alert["pod_uid"], pod_uid.as_str(), "{kind:?}: {alert}");
        assert_eq!(alert["exe"], kind.miner_path(), "{kind:?}: {alert}");
        let prov = &alert["provenance"];
        match kind {
            Poison::CopyEntrypoint => {
                // Judged against the image's root: not listed there. Against
                // the host's database it would be a hash mismatch.
                assert_eq!(prov["verdict"], "unverified", "{alert}");
                assert_eq!(
                    prov["reasons"],
                    serde_json::json!(["not-packaged"]),
                    "{alert}"
                );
                assert!(
                    Command::new("dpkg")
                        .args(["-S", kind.miner_path()])
                        .output()
                        .is_ok_and(|o| o.status.success()),
                    "the premise: the host's dpkg lists {}",
                    kind.miner_path()
                );
            }
            Poison::HiddenDirShell => {
                assert_eq!(prov["verdict"], "unverified", "{alert}");
                let reasons = prov["reasons"].to_string();
                for r in ["not-packaged", "writable-dir", "hidden-dir"] {
                    assert!(reasons.contains(r), "{r}: {alert}");
                }
                // Its parent is the image's shell.
                let ppid = alert["ppid"].as_u64().expect("ppid") as u32;
                assert!(
                    c.host_pids().contains(&ppid),
                    "parent in the container: {alert}"
                );
            }
            Poison::ImageDpkg => {
                assert_eq!(prov["verdict"], "verified", "{alert}");
                assert_eq!(prov["package"], "xmrig", "{alert}");
                assert_eq!(
                    prov["vouched_by"],
                    serde_json::json!({"source": "image_package_db", "database": "dpkg"}),
                    "{alert}"
                );
            }
        }
        // Sustained CPU makes it critical, whoever vouched for the binary.
        let critical = agent.wait_record(Duration::from_secs(45), |a| {
            a["kind"] == "alert"
                && a["pid"] == pid
                && a["rule"] == "pool_protocol_unverified"
                && a["severity"] == "critical"
        });
        assert!(
            critical.is_some(),
            "{kind:?}: never critical; alerts {:?}",
            agent.alerts()
        );
        println!(
            "{kind:?}: alert {:.2} s after start, latency_ms {}\n{}",
            seen.as_secs_f64(),
            alert["latency_ms"],
            serde_json::to_string_pretty(&trimmed(&alert)).unwrap_or_default()
        );
        drop(c);
    }
    let benign_pids = benign.host_pids();
    assert!(benign.running(), "the benign neighbour is alive");
    let noisy: Vec<Value> = agent
        .alerts()
        .into_iter()
        .filter(|a| {
            a["container_id"] == benign.id.as_str()
                || a["container_id"] == agent.c.id.as_str()
                || a["pod_uid"] == agent.pod.pod_uid.as_str()
                || a["pid"]
                    .as_u64()
                    .is_some_and(|p| benign_pids.contains(&(p as u32)))
        })
        .collect();
    assert!(noisy.is_empty(), "neighbours alerted: {noisy:?}");
}

#[test]
fn enforce_kills_the_poisoned_container_and_blocks_its_pool_sparing_neighbours() {
    let test =
        "container::enforce_kills_the_poisoned_container_and_blocks_its_pool_sparing_neighbours";
    if let Some(why) = skip_reason() {
        return common::skip(test, "podman", &why);
    }
    let xmrig = match common::xmrig::binary() {
        Ok(p) => p,
        Err(why) => return common::skip(test, "podman", &why),
    };
    let scratch = tempfile::tempdir().expect("scratch");
    let pool = Pool::start();
    let id = std::process::id();
    let agent = RunningAgent::start(&format!("mw-agent-enf-{id}"), &["--enforce"], "");
    let benign = Container::run(
        &format!("mw-benign-enf-{id}"),
        &[
            "--network=none".into(),
            format!("--cgroup-parent=/kubepods/besteffort/podbe000000-0000-4000-8000-{id:012x}"),
            BASE.into(),
            "/bin/sh".into(),
            "-c".into(),
            "while :; do :; done".into(),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let tag = format!("localhost/mw-poisoned-enforce:{id}");
    let _image = build_poisoned(
        &xmrig,
        scratch.path(),
        Poison::CopyEntrypoint,
        pool.port,
        &tag,
    );
    let pod_uid = format!("e0f00000-0000-4000-8000-{id:012x}");
    let c = run_poisoned(&format!("mw-poisoned-enf-{id}"), &tag, &pod_uid);
    let pid = miner_host_pid(
        &c,
        Poison::CopyEntrypoint.miner_path(),
        Duration::from_secs(20),
    );

    let kill = agent.wait_record(Duration::from_secs(60), |a| {
        a["kind"] == "action" && a["action"] == "kill" && a["target"] == pid
    });
    let Some(kill) = kill else {
        panic!(
            "no kill of {pid}; records {:?}\nagent:\n{}",
            agent.alerts(),
            agent.c.logs()
        );
    };
    assert_eq!(kill["result"], "ok", "{kill}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.running() {
        assert!(
            Instant::now() < deadline,
            "the poisoned container still runs"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let block = agent
        .wait_record(Duration::from_secs(5), |a| {
            a["kind"] == "action" && a["action"] == "block_egress" && a["target"] == pid
        })
        .expect("block_egress action");
    assert_eq!(block["result"], "ok", "{block}");
    // Its pool is blocked for everyone on the node: a respawn gets EPERM.
    let err = TcpStream::connect(("127.0.0.1", pool.port)).expect_err("pool blocked");
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");

    assert!(agent.c.running(), "the agent's own container is untouched");
    assert!(benign.running(), "the benign neighbour is untouched");
    let touched: Vec<Value> = agent
        .alerts()
        .into_iter()
        .filter(|a| a["kind"] == "action" && a["target"] != pid)
        .filter(|a| {
            let t = a["target"].as_u64().unwrap_or(0) as u32;
            benign.host_pids().contains(&t) || agent.c.host_pids().contains(&t)
        })
        .collect();
    assert!(touched.is_empty(), "actions on neighbours: {touched:?}");
}

/// The overlayfs case seen on a node: a packaged interpreter run from an
/// overlay mounted over /usr (upper layer on tmpfs, so the kernel's device
/// is the overlay's and `stat()` reports the lower layer's) speaks a pool
/// protocol and burns CPU. Its provenance must resolve to the host's dpkg
/// (not "unreadable"), so the verdict is `pool_protocol_busy` and never the
/// critical `pool_protocol_unverified`.
#[test]
fn a_packaged_interpreter_run_from_an_overlay_stays_verified() {
    let test = "container::a_packaged_interpreter_run_from_an_overlay_stays_verified";
    if !common_is_root() {
        return common::skip(test, "root", "not root (mount namespaces, eBPF)");
    }
    let python = Path::new("/usr/bin/python3");
    if !python.exists() {
        return common::skip(test, "python3", "no /usr/bin/python3 on this machine");
    }
    let pool = Pool::start();
    let d = common::daemon::Daemon::start("", &[]);
    let scratch = tempfile::tempdir().expect("scratch");
    let s = scratch.path().display();
    let script = format!(
        "import socket, time\n\
         s = socket.create_connection(('127.0.0.1', {port}))\n\
         s.sendall(b'{{\"id\":1,\"jsonrpc\":\"2.0\",\"method\":\"login\",\"params\":{{\"login\":\"x\",\"pass\":\"x\",\"agent\":\"XMRig/6.16.0\"}}}}\\n')\n\
         t = time.time()\n\
         while time.time() - t < 15: pass\n",
        port = pool.port
    );
    let sh = format!(
        "mount -t tmpfs tmpfs {s} && mkdir {s}/u {s}/w && \
         mount -t overlay overlay -o lowerdir=/usr,upperdir={s}/u,workdir={s}/w /usr && \
         exec /usr/bin/python3 -c \"$MW_SCRIPT\""
    );
    let mut child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &sh])
        .env("MW_SCRIPT", &script)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("unshare");
    let pid = child.id();
    let alert = d.wait_alert(Duration::from_secs(30), |a| a["tgid"] == pid);
    // Let the CPU window pass so a critical verdict would have shown.
    std::thread::sleep(Duration::from_secs(3));
    let on_overlay = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).is_ok_and(|m| {
        m.lines()
            .any(|l| l.contains(" /usr ") && l.contains(" - overlay "))
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        on_overlay,
        "the premise: python ran from an overlay over /usr"
    );
    let alert = alert.unwrap_or_else(|| panic!("no alert; log:\n{}", d.log()));
    let mine: Vec<Value> = d
        .alerts()
        .into_iter()
        .filter(|a| a["tgid"] == pid)
        .collect();
    assert!(
        mine.iter().all(|a| a["rule"] != "pool_protocol_unverified"),
        "a packaged interpreter is not unverified: {mine:?}"
    );
    assert_eq!(alert["rule"], "pool_protocol_busy", "{alert}");
    assert_eq!(alert["provenance"]["verdict"], "verified", "{alert}");
    assert_eq!(
        alert["provenance"]["vouched_by"]["source"], "host_package_db",
        "{alert}"
    );
    let _ = d.stop();
}
