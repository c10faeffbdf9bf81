//! Container and pod identity from a process's cgroup path.
//!
//! Container runtimes and the kubelet name cgroups after what they hold, so
//! one line of `/proc/PID/cgroup` says which container a process runs in and,
//! on Kubernetes, which pod and QoS class. No runtime socket or API server is
//! asked: a miner is named in an alert even when the runtime is wedged, and
//! the DaemonSet needs no RBAC.
//!
//! Shapes recognised (cgroup v1 and v2; `<id>` is 64 lowercase hex):
//!
//! | runtime | systemd driver | cgroupfs driver |
//! |---|---|---|
//! | containerd (CRI) | `…/kubepods-burstable-pod<uid_>.slice/cri-containerd-<id>.scope` | `/kubepods/burstable/pod<uid>/<id>` ([`Runtime::Cri`]: the path does not name the runtime) |
//! | CRI-O | `…/crio-<id>.scope` | `/kubepods/…/pod<uid>/crio-<id>` |
//! | Docker | `/system.slice/docker-<id>.scope` | `/docker/<id>` |
//! | Podman | `/machine.slice/libpod-<id>.scope` | `/libpod_parent/libpod-<id>` |
//! | nerdctl | `/system.slice/nerdctl-<id>.scope` | — |
//!
//! The deepest segment that names a container wins: a container's own
//! sub-cgroups (`docker-<id>.scope/init.scope`, podman's `…/container`) stay
//! attributed to it. Runtime helpers beside the container (`crio-conmon-…`,
//! `libpod-conmon-…`) are not containers and give `None`.
//!
//! Paths may start with `..`: in a private cgroup namespace (the default for
//! containers on cgroup v2, the DaemonSet included) the kernel shows other
//! processes' cgroups relative to the reader's own, e.g.
//! `/../../kubepods-besteffort-pod<uid_>.slice/cri-containerd-<id>.scope`.

use std::{fs, path::Path};

use serde::{Deserialize, Serialize};

use crate::defaults::PROC_PATH;

/// The container runtime a cgroup name points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Runtime {
    /// containerd through its CRI plugin (`cri-containerd-<id>.scope`) or
    /// nerdctl (`nerdctl-<id>.scope`).
    #[serde(rename = "containerd")]
    Containerd,
    #[serde(rename = "cri-o")]
    Crio,
    #[serde(rename = "docker")]
    Docker,
    #[serde(rename = "podman")]
    Podman,
    /// A Kubernetes container under the kubelet's cgroupfs driver
    /// (`/kubepods/…/pod<uid>/<id>`): containerd and cri-dockerd both lay
    /// containers out this way, so the path names no runtime. The id is the
    /// CRI container id either way (`crictl inspect <id>`).
    #[serde(rename = "cri")]
    Cri,
}

impl Runtime {
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Containerd => "containerd",
            Runtime::Crio => "cri-o",
            Runtime::Docker => "docker",
            Runtime::Podman => "podman",
            Runtime::Cri => "cri",
        }
    }
}

/// A pod's QoS class, spelled as in the pod's `status.qosClass`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

/// Who a process is beyond its pid: the container it runs in, and the pod
/// when the container belongs to one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInfo {
    pub runtime: Runtime,
    /// Full 64-hex id, as `crictl ps`/`docker ps --no-trunc` print it.
    pub container_id: String,
    /// `metadata.uid` of the pod, dashed (`kubectl get pod -o
    /// jsonpath='{.metadata.uid}'`); static pods have a 32-hex uid.
    pub pod_uid: Option<String>,
    pub qos: Option<QosClass>,
}

/// The container (and pod) a cgroup path names, or `None` for host
/// processes and anything unrecognised. Never panics, whatever the input.
pub fn from_cgroup_path(path: &str) -> Option<ContainerInfo> {
    let path = path.trim_end().trim_end_matches(" (deleted)");
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (at, runtime, id) = segments.iter().enumerate().rev().find_map(|(i, seg)| {
        container_segment(seg, i.checked_sub(1).map(|p| segments[p]))
            .map(|(runtime, id)| (i, runtime, id))
    })?;
    let pod = segments[..at]
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, seg)| pod_segment(&segments[..i], seg));
    let runtime = match (runtime, &pod) {
        // A bare id is only a container where a known parent vouches for it.
        (None, Some(_)) => Runtime::Cri,
        (None, None) => return None,
        (Some(runtime), _) => runtime,
    };
    let (pod_uid, qos) = pod.map_or((None, None), |(uid, qos)| (Some(uid), qos));
    Some(ContainerInfo {
        runtime,
        container_id: id.to_owned(),
        pod_uid,
        qos,
    })
}

/// The cgroup path of `pid` worth enriching, from `/proc/PID/cgroup`.
///
/// On a pure cgroup v2 host that is the single `0::` line. On a hybrid host
/// the v2 line can sit at `/` while the v1 controllers name the container
/// (this is what Docker with the cgroupfs driver does), so the first line
/// that names a container wins, v2 first; failing that, the v2 path, else
/// the first line's. `None` when the process is gone or the file is empty.
pub fn read_cgroup(pid: u32) -> Option<String> {
    read_cgroup_in(Path::new(PROC_PATH), pid)
}

/// [`read_cgroup`] under another procfs mount (tests, a host /proc mounted
/// elsewhere).
pub fn read_cgroup_in(proc_root: &Path, pid: u32) -> Option<String> {
    let text = fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup")).ok()?;
    select_cgroup_path(&text).map(str::to_owned)
}

/// The container `pid` runs in, or `None` for a host process (or one that
/// has exited).
pub fn for_pid(pid: u32) -> Option<ContainerInfo> {
    from_cgroup_path(&read_cgroup(pid)?)
}

/// Picks the path to enrich from the text of `/proc/PID/cgroup`
/// (`hierarchy-id:controllers:path` lines). See [`read_cgroup`].
pub fn select_cgroup_path(text: &str) -> Option<&str> {
    let lines: Vec<(bool, &str)> = text
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            Some((id == "0" && controllers.is_empty(), path))
        })
        .collect();
    let v2 = lines.iter().find(|(v2, _)| *v2).map(|&(_, path)| path);
    let v1 = lines.iter().filter(|(v2, _)| !v2).map(|&(_, path)| path);
    v2.into_iter()
        .chain(v1)
        .find(|path| from_cgroup_path(path).is_some())
        .or(v2)
        .or_else(|| lines.first().map(|&(_, path)| path))
}

/// `(runtime, id)` when `seg` names a container. The runtime is `None` for a
/// bare id, whose meaning depends on where it sits (see `from_cgroup_path`).
fn container_segment<'a>(seg: &'a str, parent: Option<&str>) -> Option<(Option<Runtime>, &'a str)> {
    const PREFIXES: &[(&str, Runtime)] = &[
        ("cri-containerd-", Runtime::Containerd),
        ("crio-", Runtime::Crio),
        ("docker-", Runtime::Docker),
        ("libpod-", Runtime::Podman),
        ("nerdctl-", Runtime::Containerd),
    ];
    // systemd names the unit `<prefix><id>.scope`; cgroupfs drivers use the
    // bare `<prefix><id>` (CRI-O, podman).
    let name = seg.strip_suffix(".scope").unwrap_or(seg);
    for &(prefix, runtime) in PREFIXES {
        if let Some(id) = name.strip_prefix(prefix) {
            return is_container_id(id).then_some((Some(runtime), id));
        }
    }
    if !is_container_id(seg) {
        return None;
    }
    match parent {
        Some("docker") => Some((Some(Runtime::Docker), seg)),
        _ => Some((None, seg)),
    }
}

/// The pod uid and QoS class when `seg` is a kubelet pod cgroup; `above` are
/// the segments over it.
fn pod_segment(above: &[&str], seg: &str) -> Option<(String, Option<QosClass>)> {
    if let Some(stem) = seg.strip_suffix(".slice") {
        // systemd: each slice repeats its ancestors, dash-joined
        // (`kubepods-burstable-pod<uid>`), and escapes the uid's dashes as
        // underscores. A `--cgroup-root` adds a prefix (`kubelet-kubepods-…`).
        let parts: Vec<&str> = stem.split('-').collect();
        let (last, before) = parts.split_last()?;
        if !before.contains(&"kubepods") {
            return None;
        }
        let uid = pod_uid(last.strip_prefix("pod")?.replace('_', "-"))?;
        let qos = match before.last() {
            Some(&"burstable") => Some(QosClass::Burstable),
            Some(&"besteffort") => Some(QosClass::BestEffort),
            Some(&"kubepods") => Some(QosClass::Guaranteed),
            _ => None,
        };
        return Some((uid, qos));
    }
    // cgroupfs: `kubepods/[burstable|besteffort/]pod<uid>`. Under a private
    // cgroup namespace the levels above may show as `..`: the QoS class is
    // then known only when its own level is still visible.
    let uid = pod_uid(seg.strip_prefix("pod")?.to_owned())?;
    let qos = match above.last() {
        Some(&"burstable") => Some(QosClass::Burstable),
        Some(&"besteffort") => Some(QosClass::BestEffort),
        Some(&"kubepods") => Some(QosClass::Guaranteed),
        Some(&"..") => None,
        _ => return None,
    };
    Some((uid, qos))
}

/// A pod uid: a dashed UUID, or the 32-hex hash the kubelet gives static
/// pods.
fn pod_uid(uid: String) -> Option<String> {
    let hex = uid.bytes().filter(u8::is_ascii_hexdigit).count();
    let ok = uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
        && hex == 32
        && uid.len() <= 36
        && !uid.starts_with('-')
        && !uid.ends_with('-');
    ok.then_some(uid)
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ID: &str = "4c2b7f9e1d3a5b6c8e0f2a4c6e8b0d2f4a6c8e0b2d4f6a8c0e2b4d6f8a0c2e4b";
    const UID: &str = "1e5a2c1b-8f3d-4e2a-9c1b-0a2b3c4d5e6f";
    const UID_: &str = "1e5a2c1b_8f3d_4e2a_9c1b_0a2b3c4d5e6f";

    fn info(runtime: Runtime, pod: Option<&str>, qos: Option<QosClass>) -> Option<ContainerInfo> {
        Some(ContainerInfo {
            runtime,
            container_id: ID.to_owned(),
            pod_uid: pod.map(str::to_owned),
            qos,
        })
    }

    #[test]
    fn names_the_container_and_pod_of_each_runtime_and_driver() {
        use QosClass::*;
        use Runtime::*;
        let cases: Vec<(&str, String, Option<ContainerInfo>)> = vec![
            (
                "containerd, systemd, v2, burstable",
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope"
                ),
                info(Containerd, Some(UID), Some(Burstable)),
            ),
            (
                "containerd, systemd, guaranteed",
                format!("/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope"),
                info(Containerd, Some(UID), Some(Guaranteed)),
            ),
            (
                "containerd, systemd, private cgroupns view",
                format!("/../../kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope"),
                info(Containerd, Some(UID), Some(BestEffort)),
            ),
            (
                "containerd, systemd, kind's --cgroup-root=/kubelet",
                format!(
                    "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope"
                ),
                info(Containerd, Some(UID), Some(BestEffort)),
            ),
            (
                "containerd, cgroupfs, v1, besteffort",
                format!("/kubepods/besteffort/pod{UID}/{ID}"),
                info(Cri, Some(UID), Some(BestEffort)),
            ),
            (
                "containerd, cgroupfs, v2, guaranteed",
                format!("/kubepods/pod{UID}/{ID}"),
                info(Cri, Some(UID), Some(Guaranteed)),
            ),
            (
                "cgroupfs, private cgroupns view",
                format!("/../../../burstable/pod{UID}/{ID}"),
                info(Cri, Some(UID), Some(Burstable)),
            ),
            (
                "cgroupfs, private cgroupns view hides the QoS level",
                format!("/../pod{UID}/{ID}"),
                info(Cri, Some(UID), None),
            ),
            (
                "static pod uid (32 hex)",
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod9f3c1e7a2b4d6f8091a3c5e7b9d1f3a5.slice/cri-containerd-{ID}.scope"
                ),
                Some(ContainerInfo {
                    runtime: Containerd,
                    container_id: ID.to_owned(),
                    pod_uid: Some("9f3c1e7a2b4d6f8091a3c5e7b9d1f3a5".to_owned()),
                    qos: Some(Burstable),
                }),
            ),
            (
                "cri-o, systemd",
                format!(
                    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-{ID}.scope"
                ),
                info(Crio, Some(UID), Some(BestEffort)),
            ),
            (
                "cri-o, cgroupfs",
                format!("/kubepods/burstable/pod{UID}/crio-{ID}"),
                info(Crio, Some(UID), Some(Burstable)),
            ),
            (
                "docker, systemd, v2",
                format!("/system.slice/docker-{ID}.scope"),
                info(Docker, None, None),
            ),
            (
                "docker, cgroupfs, v1",
                format!("/docker/{ID}"),
                info(Docker, None, None),
            ),
            (
                "docker, systemd in the container (sub-cgroup)",
                format!("/system.slice/docker-{ID}.scope/init.scope"),
                info(Docker, None, None),
            ),
            (
                "docker through dockershim, systemd",
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/docker-{ID}.scope"
                ),
                info(Docker, Some(UID), Some(Burstable)),
            ),
            (
                "podman, root, systemd",
                format!("/machine.slice/libpod-{ID}.scope"),
                info(Podman, None, None),
            ),
            (
                "podman, rootless, systemd, cgroupns sub-cgroup",
                format!(
                    "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container"
                ),
                info(Podman, None, None),
            ),
            (
                "podman, cgroupfs",
                format!("/libpod_parent/libpod-{ID}"),
                info(Podman, None, None),
            ),
            (
                "nerdctl, systemd",
                format!("/system.slice/nerdctl-{ID}.scope"),
                info(Containerd, None, None),
            ),
            (
                "deleted cgroup",
                format!("/system.slice/docker-{ID}.scope (deleted)"),
                info(Docker, None, None),
            ),
        ];
        for (name, path, want) in &cases {
            assert_eq!(from_cgroup_path(path), *want, "case: {name}: {path}");
        }
    }

    #[test]
    fn host_and_look_alike_paths_are_not_containers() {
        let cases: Vec<(&str, String)> = vec![
            ("v2 root", "/".into()),
            ("empty", "".into()),
            (
                "login session",
                "/user.slice/user-0.slice/session-1.scope".into(),
            ),
            ("system service", "/system.slice/sshd.service".into()),
            (
                "docker daemon itself",
                "/system.slice/docker.service".into(),
            ),
            (
                "containerd daemon itself",
                "/system.slice/containerd.service".into(),
            ),
            ("kubelet", "/system.slice/kubelet.service".into()),
            (
                "pod slice without a container",
                format!("/kubepods.slice/kubepods-pod{UID_}.slice"),
            ),
            (
                "cri-o conmon",
                format!("/kubepods.slice/kubepods-pod{UID_}.slice/crio-conmon-{ID}.scope"),
            ),
            (
                "podman conmon",
                format!("/machine.slice/libpod-conmon-{ID}.scope"),
            ),
            (
                "bare id under an unknown parent",
                format!("/somewhere/{ID}"),
            ),
            (
                "63-hex id",
                format!("/system.slice/docker-{}.scope", &ID[..63]),
            ),
            (
                "uppercase id",
                format!("/system.slice/docker-{}.scope", ID.to_uppercase()),
            ),
            ("65-hex id", format!("/docker/{ID}0")),
            (
                "pod-looking slice outside kubepods",
                format!("/user.slice/user-pod{UID_}.slice/{ID}"),
            ),
            (
                "pod dir outside kubepods",
                format!("/tenants/pod{UID}/{ID}"),
            ),
        ];
        for (name, path) in &cases {
            assert_eq!(from_cgroup_path(path), None, "case: {name}: {path}");
        }
    }

    #[test]
    fn pod_uid_is_only_taken_from_a_well_formed_pod_level() {
        let bad_uid = format!("/kubepods/burstable/podnot-a-uid/{ID}");
        // A bare id under kubepods needs a pod level to vouch for it.
        assert_eq!(from_cgroup_path(&bad_uid), None);
        let bad_slice = format!("/kubepods.slice/kubepods-podxyz.slice/cri-containerd-{ID}.scope");
        assert_eq!(
            from_cgroup_path(&bad_slice),
            info(Runtime::Containerd, None, None)
        );
    }

    #[test]
    fn picks_the_v2_line_on_a_pure_v2_host() {
        let text = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope\n"
        );
        assert_eq!(
            select_cgroup_path(&text),
            text.strip_prefix("0::").map(str::trim_end)
        );
        assert_eq!(select_cgroup_path("0::/\n"), Some("/"));
        assert_eq!(
            select_cgroup_path("0::/system.slice/sshd.service\n"),
            Some("/system.slice/sshd.service")
        );
    }

    #[test]
    fn on_a_hybrid_host_a_v1_line_naming_the_container_beats_the_v2_root() {
        // Docker with the cgroupfs driver on a hybrid host (like this one).
        let docker = format!(
            "12:pids:/docker/{ID}\n11:memory:/docker/{ID}\n1:name=systemd:/docker/{ID}\n0::/\n"
        );
        assert_eq!(
            select_cgroup_path(&docker),
            Some(format!("/docker/{ID}").as_str())
        );
        // A host process on the same host: the v2 path.
        let host =
            "12:pids:/user.slice\n1:name=systemd:/user.slice/user-0.slice/session-1.scope\n0::/\n";
        assert_eq!(select_cgroup_path(host), Some("/"));
        // v1 only (no unified hierarchy): the first line.
        assert_eq!(
            select_cgroup_path("3:cpu,cpuacct:/\n2:memory:/\n"),
            Some("/")
        );
        assert_eq!(select_cgroup_path(""), None);
        assert_eq!(select_cgroup_path("garbage without colons\n"), None);
    }

    #[test]
    fn reads_proc_pid_cgroup() {
        let proc = tempfile::tempdir().expect("tempdir");
        let dir = proc.path().join("4242");
        fs::create_dir(&dir).expect("mkdir");
        fs::write(
            dir.join("cgroup"),
            format!("0::/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope\n"),
        )
        .expect("write");
        let path = read_cgroup_in(proc.path(), 4242).expect("cgroup path");
        assert_eq!(
            from_cgroup_path(&path),
            info(Runtime::Containerd, Some(UID), Some(QosClass::Guaranteed))
        );
        assert_eq!(
            read_cgroup_in(proc.path(), 4243),
            None,
            "a process that has exited"
        );
    }

    #[test]
    fn reads_this_process_without_panicking() {
        // This process may or may not run in a container; either way the real
        // file parses.
        let path = read_cgroup(std::process::id()).expect("/proc/self/cgroup exists");
        let _ = from_cgroup_path(&path);
        let _ = for_pid(std::process::id());
    }

    #[test]
    fn serialises_with_kubernetes_spellings() {
        let json = serde_json::to_value(info(Runtime::Crio, Some(UID), Some(QosClass::BestEffort)))
            .expect("serialise");
        assert_eq!(
            json,
            serde_json::json!({
                "runtime": "cri-o",
                "container_id": ID,
                "pod_uid": UID,
                "qos": "BestEffort",
            })
        );
    }

    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("kubepods".to_owned()),
            Just("burstable".to_owned()),
            Just("besteffort".to_owned()),
            Just("..".to_owned()),
            Just("docker".to_owned()),
            Just(ID.to_owned()),
            Just(format!("pod{UID}")),
            Just(format!("kubepods-burstable-pod{UID_}.slice")),
            Just(format!("cri-containerd-{ID}.scope")),
            Just("crio-.scope".to_owned()),
            Just("-pod.slice".to_owned()),
            Just("pod".to_owned()),
            "[a-z0-9_.@:-]{0,80}",
            "\\PC{0,20}",
        ]
    }

    proptest! {
        #[test]
        fn never_panics_on_garbage(path in "\\PC{0,300}") {
            let _ = from_cgroup_path(&path);
            let _ = select_cgroup_path(&path);
        }

        #[test]
        fn never_panics_on_plausible_pieces(segs in prop::collection::vec(segment(), 0..8)) {
            let path = format!("/{}", segs.join("/"));
            if let Some(found) = from_cgroup_path(&path) {
                prop_assert!(is_container_id(&found.container_id));
                if let Some(uid) = &found.pod_uid {
                    prop_assert!(pod_uid(uid.clone()).is_some());
                }
            }
            let _ = select_cgroup_path(&format!("0::{path}\n1:name=systemd:{path}"));
        }

        #[test]
        fn any_kubepods_container_round_trips(
            id in "[0-9a-f]{64}",
            uid in "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            qos in prop_oneof![Just(("burstable", QosClass::Burstable)), Just(("besteffort", QosClass::BestEffort))],
        ) {
            let (q, class) = qos;
            let systemd = format!(
                "/kubepods.slice/kubepods-{q}.slice/kubepods-{q}-pod{}.slice/cri-containerd-{id}.scope",
                uid.replace('-', "_")
            );
            let cgroupfs = format!("/kubepods/{q}/pod{uid}/{id}");
            for (path, runtime) in [(systemd, Runtime::Containerd), (cgroupfs, Runtime::Cri)] {
                let want = ContainerInfo {
                    runtime,
                    container_id: id.clone(),
                    pod_uid: Some(uid.clone()),
                    qos: Some(class),
                };
                prop_assert_eq!(from_cgroup_path(&path), Some(want));
            }
        }
    }
}
