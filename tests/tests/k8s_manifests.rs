//! deploy/ against what the daemon does.
//!
//! Every manifest under deploy/kubernetes decodes into the typed Kubernetes
//! API of k8s-openapi (the Prometheus operator's objects into minimal structs
//! of our own), and an unknown field fails the decode: k8s-openapi skips
//! unknown fields silently, so `serde_ignored` reports each one. Then the
//! objects are held to their promises: the ports, paths and mounts of
//! `minerwatch::defaults`, the probes, the alert rules' metric names. The
//! Helm chart is rendered with Helm's own engine when helm-python-sdk is
//! installed (deploy/helm/render.py) and must agree with the plain manifests.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use k8s_openapi::{
    api::{
        apps::v1::DaemonSet,
        core::v1::{
            ConfigMap, Container, Namespace, PodSpec, Service, ServiceAccount, Volume, VolumeMount,
        },
    },
    apimachinery::pkg::{
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};
use minerwatch::defaults;
use promql_parser::{
    parser::{self as promql, Expr},
    util::{ExprVisitor, walk_expr},
};
use serde::{Deserialize, de::DeserializeOwned};

/// The Prometheus job name the monitors produce (`jobLabel` names a label
/// whose value this is) and the rules select on.
const JOB: &str = "minerwatch";
/// Where the DaemonSet mounts the host's cgroup hierarchy (the daemon finds
/// the v2 root below it through /proc/self/mountinfo).
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The plain manifests' namespace, and the one render.py renders into.
const NAMESPACE: &str = "minerwatch";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

// ---------------------------------------------------------------------------
// Prometheus operator objects (monitoring.coreos.com/v1): only the fields we
// use, and nothing else allowed.

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Crd<S> {
    api_version: String,
    kind: String,
    metadata: ObjectMeta,
    spec: S,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ServiceMonitorSpec {
    job_label: Option<String>,
    selector: LabelSelector,
    namespace_selector: Option<NamespaceSelector>,
    endpoints: Vec<ScrapeEndpoint>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PodMonitorSpec {
    job_label: Option<String>,
    selector: LabelSelector,
    namespace_selector: Option<NamespaceSelector>,
    pod_metrics_endpoints: Vec<ScrapeEndpoint>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NamespaceSelector {
    match_names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ScrapeEndpoint {
    port: String,
    path: String,
    interval: Option<String>,
    #[serde(default)]
    relabelings: Vec<Relabeling>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Relabeling {
    source_labels: Vec<String>,
    target_label: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrometheusRuleSpec {
    groups: Vec<RuleGroup>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleGroup {
    name: String,
    rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    alert: String,
    expr: String,
    #[serde(rename = "for")]
    for_: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

// ---------------------------------------------------------------------------
// Decoding

#[derive(Debug, Clone)]
enum Object {
    Namespace(Namespace),
    ServiceAccount(ServiceAccount),
    ConfigMap(ConfigMap),
    DaemonSet(Box<DaemonSet>),
    Service(Box<Service>),
    ServiceMonitor(Crd<ServiceMonitorSpec>),
    PodMonitor(Crd<PodMonitorSpec>),
    PrometheusRule(Crd<PrometheusRuleSpec>),
}

/// Decodes `value` into `T`, failing on a type error (with the field's path)
/// and on any field `T` does not know.
fn strict<T: DeserializeOwned>(value: &serde_json::Value) -> Result<T, String> {
    let mut unknown = Vec::new();
    let mut record = |path: serde_ignored::Path| unknown.push(dotted(&path));
    let decoded =
        serde_path_to_error::deserialize(serde_ignored::Deserializer::new(value, &mut record))
            .map_err(|e| format!("{}: {}", e.path(), e.inner()))?;
    if unknown.is_empty() {
        Ok(decoded)
    } else {
        Err(format!("unknown field(s): {}", unknown.join(", ")))
    }
}

/// `spec.template.spec.hostPid`: serde_ignored's path without its `?` for
/// each `Option` on the way.
fn dotted(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path;
    let join = |parent: &Path, leaf: String| match dotted(parent) {
        p if p.is_empty() => leaf,
        p => format!("{p}.{leaf}"),
    };
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => join(parent, index.to_string()),
        Path::Map { parent, key } => join(parent, key.clone()),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => dotted(parent),
    }
}

/// Every document of a multi-document YAML stream, typed by apiVersion and
/// kind. Empty documents (a leading `---`) are skipped.
fn decode_stream(text: &str) -> Result<Vec<Object>, String> {
    let mut objects = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value =
            serde_json::Value::deserialize(doc).map_err(|e| format!("document {i}: {e}"))?;
        if value.is_null() {
            continue;
        }
        let api_version = value["apiVersion"].as_str().unwrap_or_default();
        let kind = value["kind"].as_str().unwrap_or_default();
        let object = match (api_version, kind) {
            ("v1", "Namespace") => strict(&value).map(Object::Namespace),
            ("v1", "ServiceAccount") => strict(&value).map(Object::ServiceAccount),
            ("v1", "ConfigMap") => strict(&value).map(Object::ConfigMap),
            ("v1", "Service") => strict(&value).map(|s| Object::Service(Box::new(s))),
            ("apps/v1", "DaemonSet") => strict(&value).map(|d| Object::DaemonSet(Box::new(d))),
            ("monitoring.coreos.com/v1", "ServiceMonitor") => {
                strict(&value).map(Object::ServiceMonitor)
            }
            ("monitoring.coreos.com/v1", "PodMonitor") => strict(&value).map(Object::PodMonitor),
            ("monitoring.coreos.com/v1", "PrometheusRule") => {
                strict(&value).map(Object::PrometheusRule)
            }
            _ => Err(format!(
                "unexpected apiVersion {api_version:?} kind {kind:?}"
            )),
        };
        objects.push(object.map_err(|e| format!("document {i} ({kind}): {e}"))?);
    }
    Ok(objects)
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            files.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// A set of objects as one deployment sees them.
struct Manifests {
    objects: Vec<Object>,
}

macro_rules! all {
    ($self:ident, $variant:ident) => {
        $self.objects.iter().filter_map(|o| {
            if let Object::$variant(x) = o {
                Some(x)
            } else {
                None
            }
        })
    };
}

macro_rules! only {
    ($self:ident, $variant:ident) => {{
        let found: Vec<_> = all!($self, $variant).collect();
        assert_eq!(
            found.len(),
            1,
            concat!("exactly one ", stringify!($variant))
        );
        found[0]
    }};
}

impl Manifests {
    fn decode(text: &str) -> Manifests {
        Manifests {
            objects: decode_stream(text).unwrap_or_else(|e| panic!("{e}")),
        }
    }

    /// Everything under deploy/kubernetes, each file decoded on its own.
    fn plain() -> Manifests {
        let dir = repo().join("deploy/kubernetes");
        let mut objects = Vec::new();
        for file in yaml_files(&dir) {
            let text = fs::read_to_string(&file).expect("read manifest");
            let decoded =
                decode_stream(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            assert!(!decoded.is_empty(), "{}: no object", file.display());
            objects.extend(decoded);
        }
        Manifests { objects }
    }

    fn daemonset(&self) -> &DaemonSet {
        only!(self, DaemonSet)
    }
    fn pod(&self) -> &PodSpec {
        self.daemonset()
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod spec")
    }
    fn pod_labels(&self) -> &BTreeMap<String, String> {
        let template = &self.daemonset().spec.as_ref().expect("spec").template;
        template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.as_ref())
            .expect("pod labels")
    }
    fn container(&self) -> &Container {
        let pod = self.pod();
        assert_eq!(pod.containers.len(), 1, "one container");
        &pod.containers[0]
    }
    fn service(&self) -> &Service {
        only!(self, Service)
    }
    fn config_map(&self) -> &ConfigMap {
        only!(self, ConfigMap)
    }
    fn service_account(&self) -> &ServiceAccount {
        only!(self, ServiceAccount)
    }
    fn service_monitor(&self) -> &Crd<ServiceMonitorSpec> {
        only!(self, ServiceMonitor)
    }
    fn pod_monitor(&self) -> &Crd<PodMonitorSpec> {
        only!(self, PodMonitor)
    }
    fn prometheus_rule(&self) -> &Crd<PrometheusRuleSpec> {
        only!(self, PrometheusRule)
    }
    fn metadata(&self) -> impl Iterator<Item = &ObjectMeta> {
        self.objects.iter().map(|o| match o {
            Object::Namespace(x) => &x.metadata,
            Object::ServiceAccount(x) => &x.metadata,
            Object::ConfigMap(x) => &x.metadata,
            Object::DaemonSet(x) => &x.metadata,
            Object::Service(x) => &x.metadata,
            Object::ServiceMonitor(x) => &x.metadata,
            Object::PodMonitor(x) => &x.metadata,
            Object::PrometheusRule(x) => &x.metadata,
        })
    }

    /// The container port a probe or Service refers to, by name or number.
    fn container_port(&self, port: &IntOrString) -> i32 {
        match port {
            IntOrString::Int(n) => *n,
            IntOrString::String(name) => {
                self.container()
                    .ports
                    .iter()
                    .flatten()
                    .find(|p| p.name.as_deref() == Some(name))
                    .unwrap_or_else(|| panic!("no container port named {name}"))
                    .container_port
            }
        }
    }

    /// The mount the daemon reaches `path` through: the deepest mountPath
    /// that is `path` or one of its ancestors, and the volume behind it.
    fn mount_for(&self, path: &str) -> (&VolumeMount, &Volume) {
        let mount = self
            .container()
            .volume_mounts
            .iter()
            .flatten()
            .filter(|m| Path::new(path).starts_with(&m.mount_path))
            .max_by_key(|m| m.mount_path.len())
            .unwrap_or_else(|| panic!("nothing mounted at or above {path}"));
        let volume = self
            .pod()
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == mount.name)
            .unwrap_or_else(|| panic!("no volume {}", mount.name));
        (mount, volume)
    }
}

fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    assert!(
        selector.match_expressions.is_none(),
        "matchExpressions are not evaluated here"
    );
    selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v))
}

fn parent(path: &str) -> &str {
    Path::new(path)
        .parent()
        .and_then(Path::to_str)
        .expect("parent dir")
}

fn labels(meta: &ObjectMeta) -> BTreeMap<String, String> {
    meta.labels.clone().unwrap_or_default()
}

// ---------------------------------------------------------------------------
// The promises, checked on the plain manifests and on every Helm rendering.

fn check_agent(m: &Manifests) {
    let pod = m.pod();
    let c = m.container();

    assert_eq!(
        pod.host_pid,
        Some(true),
        "hostPID: other pods' /proc entries and pidfds"
    );
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("system-node-critical")
    );
    let strategy = m
        .daemonset()
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref());
    assert_eq!(
        strategy.and_then(|s| s.type_.as_deref()),
        Some("RollingUpdate")
    );
    assert!(
        pod.tolerations
            .iter()
            .flatten()
            .any(|t| t.operator.as_deref() == Some("Exists")
                && t.key.is_none()
                && t.effect.is_none()),
        "a toleration with operator Exists and no key or effect: every node, control plane included"
    );

    // Command line: `minerwatch run --config <CONFIG_PATH>`.
    let argv: Vec<&str> = c
        .command
        .iter()
        .flatten()
        .chain(c.args.iter().flatten())
        .map(String::as_str)
        .collect();
    assert!(
        argv[0].ends_with("/minerwatch"),
        "runs the minerwatch binary: {argv:?}"
    );
    assert_eq!(argv.get(1), Some(&"run"), "{argv:?}");
    let config_at = argv
        .iter()
        .position(|a| *a == "--config")
        .expect("--config");
    assert_eq!(argv.get(config_at + 1), Some(&defaults::CONFIG_PATH));

    // The config file comes from the ConfigMap, mounted at its directory.
    let (mount, volume) = m.mount_for(defaults::CONFIG_PATH);
    assert_eq!(mount.mount_path, parent(defaults::CONFIG_PATH));
    assert_eq!(mount.read_only, Some(true));
    let source = volume
        .config_map
        .as_ref()
        .expect("config volume is a ConfigMap");
    let file_name = Path::new(defaults::CONFIG_PATH)
        .file_name()
        .and_then(|f| f.to_str())
        .expect("file name");
    let cm = m.config_map();
    assert_eq!(
        source.name,
        cm.metadata.name.clone().expect("ConfigMap name")
    );
    let key = source
        .items
        .iter()
        .flatten()
        .find(|i| i.path == file_name)
        .map(|i| i.key.as_str())
        .unwrap_or(file_name);
    let config = cm
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .expect("ConfigMap has the config file");
    config
        .parse::<toml::Table>()
        .unwrap_or_else(|e| panic!("ConfigMap's {key} is not valid TOML: {e}"));

    // Metrics port, probes, scrape annotations.
    assert!(defaults::METRICS_ADDR.ends_with(&format!(":{}", defaults::METRICS_PORT)));
    let port = i32::from(defaults::METRICS_PORT);
    let metrics = c
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("metrics"))
        .expect("port `metrics`");
    assert_eq!(metrics.container_port, port);
    for (probe, path) in [
        (
            c.liveness_probe.as_ref().expect("liveness probe"),
            "/healthz",
        ),
        (
            c.readiness_probe.as_ref().expect("readiness probe"),
            "/readyz",
        ),
    ]
    .into_iter()
    .chain(c.startup_probe.as_ref().map(|p| (p, "/healthz")))
    {
        let get = probe.http_get.as_ref().expect("probes are HTTP GETs");
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(m.container_port(&get.port), port, "probe of {path}");
    }
    let template = &m.daemonset().spec.as_ref().expect("spec").template;
    let annotations = template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    assert_eq!(
        annotations.get("prometheus.io/scrape").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        annotations.get("prometheus.io/port"),
        Some(&defaults::METRICS_PORT.to_string())
    );
    assert_eq!(
        annotations.get("prometheus.io/path").map(String::as_str),
        Some("/metrics")
    );

    // Host paths, seen at the same place inside the container.
    let privileged = c.security_context.as_ref().and_then(|s| s.privileged) == Some(true);
    for (path, writable) in [
        (defaults::BTF_PATH, false),
        (defaults::TRACEFS_PATH, false),
        (CGROUP_ROOT, false),
        (defaults::BPFFS_DIR, true),
        (defaults::TAIL_SOCKET, true),
        (defaults::ALERTS_FILE, true),
        (defaults::QUARANTINE_DIR, true),
    ] {
        let (mount, volume) = m.mount_for(path);
        let host = volume
            .host_path
            .as_ref()
            .unwrap_or_else(|| panic!("{path} comes from the host"));
        assert_eq!(
            host.path, mount.mount_path,
            "{path}: host path seen at the same place"
        );
        if writable {
            assert_ne!(mount.read_only, Some(true), "{path} must be writable");
        }
        let propagation = mount.mount_propagation.as_deref();
        assert!(
            privileged || propagation != Some("Bidirectional"),
            "{path}: Bidirectional needs privileged"
        );
    }
    let (bpffs, _) = m.mount_for(defaults::BPFFS_DIR);
    assert_eq!(
        bpffs.mount_path,
        parent(defaults::BPFFS_DIR),
        "the whole bpffs, not a subdirectory"
    );
    for path in [defaults::TRACEFS_PATH, CGROUP_ROOT] {
        assert_eq!(
            m.mount_for(path).0.mount_path,
            path,
            "{path} is mounted as such"
        );
    }
    assert!(
        pod.host_network != Some(true),
        "metrics are served on the pod network"
    );

    // Privileged, or every capability the daemon uses.
    let security = c.security_context.as_ref().expect("securityContext");
    if !privileged {
        let added: Vec<&str> = security
            .capabilities
            .as_ref()
            .and_then(|c| c.add.as_ref())
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        for cap in [
            "BPF",
            "PERFMON",
            "NET_ADMIN",
            "SYS_ADMIN",
            "SYS_RESOURCE",
            "SYS_PTRACE",
            "KILL",
        ] {
            assert!(added.contains(&cap), "unprivileged agent lacks CAP_{cap}");
        }
    }

    let resources = c.resources.as_ref().expect("resources");
    for (what, set) in [
        ("requests", &resources.requests),
        ("limits", &resources.limits),
    ] {
        let set = set.as_ref().unwrap_or_else(|| panic!("{what}"));
        assert!(
            set.contains_key("cpu") && set.contains_key("memory"),
            "{what} of cpu and memory"
        );
    }

    // Service account: exists, no token.
    let sa = m.service_account();
    assert_eq!(pod.service_account_name, sa.metadata.name);
    assert_eq!(sa.automount_service_account_token, Some(false));
    assert_eq!(pod.automount_service_account_token, Some(false));
}

fn check_service(m: &Manifests) {
    let spec = m.service().spec.as_ref().expect("Service spec");
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"), "headless");
    let selector = LabelSelector {
        match_labels: spec.selector.clone(),
        match_expressions: None,
    };
    assert!(
        selects(&selector, m.pod_labels()),
        "Service selects the agents"
    );
    let port = spec
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("metrics"))
        .expect("port `metrics`");
    assert_eq!(port.port, i32::from(defaults::METRICS_PORT));
    let target = port
        .target_port
        .clone()
        .unwrap_or(IntOrString::Int(port.port));
    assert_eq!(m.container_port(&target), i32::from(defaults::METRICS_PORT));
}

/// Everything lives in `namespace`; a Namespace object, if one is shipped,
/// admits privileged pods.
fn check_namespaces(m: &Manifests, namespace: &str) {
    for ns in all!(m, Namespace) {
        assert_eq!(ns.metadata.name.as_deref(), Some(namespace));
        assert_eq!(
            labels(&ns.metadata)
                .get("pod-security.kubernetes.io/enforce")
                .map(String::as_str),
            Some("privileged"),
            "Pod Security Admission must admit the privileged agent"
        );
    }
    let namespaced = m.objects.iter().zip(m.metadata());
    for (_, meta) in namespaced.filter(|(o, _)| !matches!(o, Object::Namespace(_))) {
        assert_eq!(
            meta.namespace.as_deref(),
            Some(namespace),
            "{:?} lives in {namespace}",
            meta.name
        );
    }
}

fn check_monitors(m: &Manifests, namespace: &str) {
    let service = m.service();
    if all!(m, ServiceMonitor).next().is_some() {
        let sm = &m.service_monitor().spec;
        assert!(
            selects(&sm.selector, &labels(&service.metadata)),
            "ServiceMonitor selects the Service"
        );
        check_monitor_common(
            sm.job_label.as_deref(),
            &labels(&service.metadata),
            sm.namespace_selector.as_ref(),
            namespace,
        );
        let ports: Vec<_> = service
            .spec
            .iter()
            .flat_map(|s| s.ports.iter().flatten())
            .filter_map(|p| p.name.clone())
            .collect();
        check_endpoints(&sm.endpoints, &ports);
    }
    if all!(m, PodMonitor).next().is_some() {
        let pm = &m.pod_monitor().spec;
        assert!(
            selects(&pm.selector, m.pod_labels()),
            "PodMonitor selects the agents"
        );
        check_monitor_common(
            pm.job_label.as_deref(),
            m.pod_labels(),
            pm.namespace_selector.as_ref(),
            namespace,
        );
        let ports: Vec<_> = m
            .container()
            .ports
            .iter()
            .flatten()
            .filter_map(|p| p.name.clone())
            .collect();
        check_endpoints(&pm.pod_metrics_endpoints, &ports);
    }
}

fn check_monitor_common(
    job_label: Option<&str>,
    labels: &BTreeMap<String, String>,
    namespaces: Option<&NamespaceSelector>,
    namespace: &str,
) {
    let job_label =
        job_label.expect("jobLabel, so the job is `minerwatch` whatever the monitor's name");
    assert_eq!(labels.get(job_label).map(String::as_str), Some(JOB));
    let names = &namespaces.expect("namespaceSelector").match_names;
    assert!(
        names.iter().any(|n| n == namespace),
        "monitor looks in {namespace}"
    );
}

fn check_endpoints(endpoints: &[ScrapeEndpoint], ports: &[String]) {
    assert!(!endpoints.is_empty());
    for e in endpoints {
        assert!(
            ports.contains(&e.port),
            "endpoint port {} is a named port",
            e.port
        );
        assert_eq!(e.path, "/metrics");
        assert!(
            e.relabelings.iter().any(|r| r.target_label == "node"
                && r.source_labels == ["__meta_kubernetes_pod_node_name"]),
            "alerts name the node"
        );
    }
}

/// What a PromQL expression reads: metric selectors with their equality
/// matchers, and the grouping labels of its aggregations.
#[derive(Default)]
struct Reads {
    selectors: Vec<(String, BTreeMap<String, String>)>,
    groupings: Vec<Vec<String>>,
}

impl ExprVisitor for Reads {
    type Error = ();
    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, ()> {
        let vs = match expr {
            Expr::VectorSelector(vs) => Some(vs),
            Expr::MatrixSelector(ms) => Some(&ms.vs),
            Expr::Aggregate(agg) => {
                if let Some(modifier) = &agg.modifier {
                    self.groupings.push(modifier.labels().labels.clone());
                }
                None
            }
            _ => None,
        };
        if let Some(vs) = vs {
            let matchers = vs
                .matchers
                .matchers
                .iter()
                .map(|m| (m.name.clone(), m.value.clone()))
                .collect();
            self.selectors
                .push((vs.name.clone().unwrap_or_default(), matchers));
        }
        Ok(true)
    }
}

fn check_rules(m: &Manifests) {
    let rules: Vec<&Rule> = m
        .prometheus_rule()
        .spec
        .groups
        .iter()
        .flat_map(|g| &g.rules)
        .collect();
    let reads: Vec<(&Rule, Reads)> = rules
        .iter()
        .map(|rule| {
            let expr = promql::parse(&rule.expr).unwrap_or_else(|e| panic!("{}: {e}", rule.alert));
            let mut reads = Reads::default();
            walk_expr(&mut reads, &expr).expect("walk");
            (*rule, reads)
        })
        .collect();
    let reading = |metric: &'static str| {
        reads
            .iter()
            .filter(move |(_, r)| r.selectors.iter().any(|(name, _)| name == metric))
    };

    let (_, alerts) = reading("minerwatch_alerts_total")
        .next()
        .expect("a rule on minerwatch_alerts_total");
    assert!(
        alerts
            .groupings
            .iter()
            .any(|g| g.contains(&"rule".into()) && g.contains(&"severity".into())),
        "detections are reported by rule and severity"
    );
    reading("minerwatch_events_lost_total")
        .next()
        .expect("a rule on minerwatch_events_lost_total");
    let (down, _) = reading("up")
        .find(|(_, r)| {
            r.selectors
                .iter()
                .any(|(_, m)| m.get("job").map(String::as_str) == Some(JOB))
        })
        .expect("a rule on up{job=\"minerwatch\"}");
    assert!(down.expr.replace(' ', "").ends_with("==0"), "{}", down.expr);
    for rule in &rules {
        assert!(
            rule.annotations.contains_key("summary"),
            "{} has a summary",
            rule.alert
        );
    }
    check_rule_labels(&reads);
}

/// Every label a rule groups by or its annotations print exists on the
/// metrics it reads (as the daemon exports them) or is added by the scrape
/// (`node` by the monitors' relabeling, the operator's target labels): a
/// label that exists on neither is always empty, and the alert names
/// nothing (the events-lost rule grouped by a `site` label the metric does
/// not have: its label is `kind`).
fn check_rule_labels(reads: &[(&Rule, Reads)]) {
    let exported = minerwatch::sinks::metrics::Metrics::new()
        .expect("metrics")
        .encode()
        .expect("encode");
    let scrape = prometheus_parse::Scrape::parse(exported.lines().map(|l| Ok(l.to_owned())))
        .expect("our own exposition parses");
    let labels_of = |metric: &str| -> BTreeSet<String> {
        scrape
            .samples
            .iter()
            .filter(|x| x.metric == metric)
            .flat_map(|x| x.labels.keys().cloned())
            .collect()
    };
    for (rule, r) in reads {
        // `node` from the monitors' relabeling; the rest are the target
        // labels the operator gives every scraped endpoint.
        let mut known: BTreeSet<String> = [
            "node",
            "job",
            "instance",
            "namespace",
            "pod",
            "service",
            "endpoint",
            "container",
        ]
        .map(String::from)
        .into();
        for (name, _) in r
            .selectors
            .iter()
            .filter(|(n, _)| n.starts_with("minerwatch_"))
        {
            let own = labels_of(name);
            assert!(
                !own.is_empty(),
                "{}: {name} is exported with labels",
                rule.alert
            );
            known.extend(own);
        }
        let printed = rule.annotations.values().flat_map(|text| {
            text.split("$labels.")
                .skip(1)
                .map(|rest| {
                    rest.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                        .next()
                })
                .map(|l| l.unwrap_or_default().to_owned())
        });
        for label in r.groupings.iter().flatten().cloned().chain(printed) {
            assert!(
                known.contains(&label),
                "{}: label `{label}` is not on the metrics it reads ({known:?})",
                rule.alert
            );
        }
    }
}

fn check_all(m: &Manifests) {
    check_agent(m);
    check_service(m);
    check_namespaces(m, NAMESPACE);
    check_monitors(m, NAMESPACE);
    check_rules(m);
}

// ---------------------------------------------------------------------------
// Plain manifests

#[test]
fn every_plain_manifest_decodes_strictly_and_keeps_the_promises() {
    let m = Manifests::plain();
    check_all(&m);
    // Plain manifests: privileged (see the comment in 30-daemonset.yaml).
    let security = m
        .container()
        .security_context
        .clone()
        .expect("securityContext");
    assert_eq!(security.privileged, Some(true));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert!(
        !m.container()
            .args
            .iter()
            .flatten()
            .any(|a| a == "--enforce"),
        "observe-only by default"
    );
    assert_eq!(
        all!(m, Namespace).count(),
        1,
        "the plain manifests create their (privileged) namespace"
    );
    // Both monitor flavours are provided, in different directories.
    m.service_monitor();
    m.pod_monitor();
}

#[test]
fn the_configmap_config_is_comments_only_and_matches_the_image_and_chart() {
    let shipped =
        fs::read_to_string(repo().join("deploy/minerwatch.toml")).expect("deploy/minerwatch.toml");
    assert!(
        shipped
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')),
        "comments only: key names are the config module's, and cannot drift here"
    );
    assert!(
        shipped
            .parse::<toml::Table>()
            .expect("valid TOML")
            .is_empty()
    );
    let m = Manifests::plain();
    let data = m.config_map().data.clone().expect("data");
    assert_eq!(
        data.get("minerwatch.toml"),
        Some(&shipped),
        "ConfigMap == deploy/minerwatch.toml"
    );
    let values: serde_json::Value = serde_yaml_ng::from_str(
        &fs::read_to_string(repo().join("deploy/helm/minerwatch/values.yaml")).expect("values"),
    )
    .expect("values.yaml parses");
    assert_eq!(
        values["config"].as_str(),
        Some(shipped.as_str()),
        "chart default == deploy/minerwatch.toml"
    );
}

#[test]
fn the_chart_rules_file_is_the_plain_rules() {
    let plain = Manifests::plain();
    let text =
        fs::read_to_string(repo().join("deploy/helm/minerwatch/files/prometheus-rules.yaml"))
            .expect("rules");
    let spec: PrometheusRuleSpec =
        strict(&serde_yaml_ng::from_str::<serde_json::Value>(&text).expect("yaml"))
            .expect("rule spec");
    assert_eq!(spec, plain.prometheus_rule().spec);
}

#[test]
fn decoding_rejects_unknown_fields_and_wrong_types() {
    let daemonset =
        fs::read_to_string(repo().join("deploy/kubernetes/30-daemonset.yaml")).expect("daemonset");
    assert!(decode_stream(&daemonset).is_ok());
    let cases = [
        (
            "misspelt field",
            daemonset.replace("hostPID: true", "hostPid: true"),
            "spec.template.spec.hostPid",
        ),
        (
            "unquoted annotation",
            daemonset.replace("scrape: \"true\"", "scrape: true"),
            "prometheus.io/scrape",
        ),
        (
            "wrong kind",
            daemonset.replace("kind: DaemonSet", "kind: Deamonset"),
            "unexpected apiVersion",
        ),
        (
            "misspelt monitor field",
            fs::read_to_string(
                repo().join("deploy/kubernetes/prometheus-operator/servicemonitor.yaml"),
            )
            .expect("servicemonitor")
            .replace("endpoints:", "endpoint:"),
            "endpoint",
        ),
    ];
    for (name, text, mentions) in cases {
        let err = decode_stream(&text).expect_err(name);
        assert!(err.contains(mentions), "{name}: {err}");
    }
    // Several documents in one stream, with an empty one.
    let two = "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: b}\n";
    assert_eq!(decode_stream(two).expect("two objects").len(), 2);
}

// ---------------------------------------------------------------------------
// Dockerfile and image steps

/// Instructions of a Dockerfile: (INSTRUCTION, flags, rest), continuation
/// lines joined, comments dropped.
fn dockerfile() -> Vec<(String, Vec<String>, String)> {
    let text = fs::read_to_string(repo().join("deploy/Dockerfile")).expect("deploy/Dockerfile");
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => current.push_str(&format!("{} ", part.trim())),
            None => {
                current.push_str(trimmed);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    joined
        .into_iter()
        .map(|line| {
            let (instruction, rest) = line.split_once(' ').unwrap_or((&line, ""));
            let mut words: Vec<&str> = rest.split_whitespace().collect();
            let flags: Vec<String> = words
                .iter()
                .take_while(|w| w.starts_with("--"))
                .map(|w| w.to_string())
                .collect();
            words.drain(..flags.len());
            (instruction.to_uppercase(), flags, words.join(" "))
        })
        .collect()
}

#[test]
fn dockerfile_builds_with_xtask_and_runs_the_daemon() {
    let steps = dockerfile();
    let stages: Vec<usize> = steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.0 == "FROM")
        .map(|(i, _)| i)
        .collect();
    assert!(stages.len() >= 2, "multi-stage");
    let last = *stages.last().expect("a stage");
    assert!(
        steps[last].2.contains("slim"),
        "small runtime image: {}",
        steps[last].2
    );

    let runs: Vec<&str> = steps
        .iter()
        .filter(|s| s.0 == "RUN")
        .map(|s| s.2.as_str())
        .collect();
    assert!(
        runs.contains(&"cargo xtask build --release"),
        "built as the README builds: {runs:?}"
    );
    for run in &runs {
        let plain =
            *run == "cargo xtask build --release" || run.starts_with("deploy/image-steps.sh ");
        assert!(
            plain,
            "every RUN is a command that also runs outside a container: {run}"
        );
    }
    assert!(
        steps[last..].iter().all(|s| s.0 != "RUN"),
        "the runtime stage is copied, not built"
    );

    let json = |name: &str| -> Vec<String> {
        let step = steps[last..]
            .iter()
            .rfind(|s| s.0 == name)
            .unwrap_or_else(|| panic!("{name}"));
        serde_json::from_str(&step.2).unwrap_or_else(|e| panic!("{name} is a JSON array: {e}"))
    };
    let argv: Vec<String> = json("ENTRYPOINT").into_iter().chain(json("CMD")).collect();
    assert!(argv[0].ends_with("/minerwatch"), "{argv:?}");
    assert_eq!(
        argv[1..],
        ["run", "--config", defaults::CONFIG_PATH],
        "{argv:?}"
    );
}

#[test]
fn image_steps_stage_the_runtime_filesystem() {
    let out = std::env::temp_dir().join(format!("minerwatch-stage-{}", std::process::id()));
    let _ = fs::remove_dir_all(&out);
    // Any binary built by this toolchain needs what the daemon needs.
    let status = Command::new(repo().join("deploy/image-steps.sh"))
        .args(["stage", out.to_str().expect("utf-8")])
        .env(
            "MINERWATCH_BIN",
            std::env::current_exe().expect("test binary"),
        )
        .status()
        .expect("run image-steps.sh");
    assert!(status.success(), "image-steps.sh stage failed");

    let entrypoint = dockerfile()
        .into_iter()
        .rfind(|s| s.0 == "ENTRYPOINT")
        .expect("ENTRYPOINT")
        .2;
    let entrypoint: Vec<String> = serde_json::from_str(&entrypoint).expect("JSON");
    let at = |p: &str| out.join(p.trim_start_matches('/'));
    assert!(at(&entrypoint[0]).is_file(), "the entrypoint is staged");
    assert_eq!(
        fs::read_to_string(at(defaults::CONFIG_PATH)).expect("config staged"),
        fs::read_to_string(repo().join("deploy/minerwatch.toml")).expect("shipped config")
    );
    for dir in [
        parent(defaults::TAIL_SOCKET),
        parent(defaults::ALERTS_FILE),
        defaults::QUARANTINE_DIR,
    ] {
        use std::os::unix::fs::PermissionsExt;
        let meta = fs::metadata(at(dir)).unwrap_or_else(|e| panic!("{dir}: {e}"));
        assert!(meta.is_dir());
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o700,
            "{dir} is root-only"
        );
    }
    fs::remove_dir_all(&out).expect("clean up");
}

// ---------------------------------------------------------------------------
// Helm chart

/// Renders the chart with `values` through deploy/helm/render.py; `None`
/// when helm-python-sdk is not installed (unless MINERWATCH_REQUIRE_HELM=1).
fn helm_render(values: serde_json::Value) -> Option<Manifests> {
    let python = std::env::var("MINERWATCH_HELM_PYTHON").unwrap_or_else(|_| "python3".into());
    let skip = |why: &str| {
        assert!(
            std::env::var("MINERWATCH_REQUIRE_HELM").as_deref() != Ok("1"),
            "MINERWATCH_REQUIRE_HELM=1 but: {why}"
        );
        common::skip(
            "k8s_manifests::helm_chart_renders_what_the_plain_manifests_say",
            "helm-sdk",
            why,
        );
        None
    };
    let out = match Command::new(&python)
        .arg(repo().join("deploy/helm/render.py"))
        .args(["--lint", "--set-json", &values.to_string()])
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return skip(&format!("{python} not found"));
        }
        Err(e) => panic!("running {python}: {e}"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(3) {
        return skip(&stderr);
    }
    assert!(out.status.success(), "render.py failed: {stderr}");
    Some(Manifests::decode(
        &String::from_utf8(out.stdout).expect("utf-8"),
    ))
}

#[test]
fn helm_chart_renders_what_the_plain_manifests_say() {
    let everything = serde_json::json!({
        "serviceMonitor": {"enabled": true},
        "podMonitor": {"enabled": true},
        "prometheusRule": {"enabled": true},
    });
    let Some(chart) = helm_render(everything.clone()) else {
        return;
    };
    check_all(&chart);
    let plain = Manifests::plain();

    // Release `minerwatch`: names, volumes, probes, mounts, everything in the
    // pod spec is the same.
    assert_eq!(chart.pod(), plain.pod(), "pod spec");
    let strategy = |m: &Manifests| {
        m.daemonset()
            .spec
            .as_ref()
            .and_then(|s| s.update_strategy.clone())
    };
    assert_eq!(strategy(&chart), strategy(&plain));
    let spec = |m: &Manifests| {
        let mut spec = m.service().spec.clone().expect("spec");
        spec.selector = None; // the chart adds app.kubernetes.io/instance
        spec
    };
    assert_eq!(spec(&chart), spec(&plain), "Service");
    assert_eq!(
        chart.config_map().data,
        plain.config_map().data,
        "ConfigMap"
    );
    assert_eq!(
        chart.prometheus_rule().spec,
        plain.prometheus_rule().spec,
        "PrometheusRule"
    );
    let mut sm = chart.service_monitor().spec.clone();
    sm.selector = plain.service_monitor().spec.selector.clone();
    assert_eq!(sm, plain.service_monitor().spec, "ServiceMonitor");
    let mut pm = chart.pod_monitor().spec.clone();
    pm.selector = plain.pod_monitor().spec.selector.clone();
    assert_eq!(pm, plain.pod_monitor().spec, "PodMonitor");

    // Values: enforcement, an unprivileged variant, an extra toleration.
    let mut values = everything.clone();
    values["enforce"] = true.into();
    values["privileged"] = false.into();
    values["tolerations"] =
        serde_json::json!([{"operator": "Exists"}, {"key": "x", "operator": "Exists"}]);
    let variant = helm_render(values).expect("rendered once already");
    check_all(&variant);
    let c = variant.container();
    assert!(
        c.args.iter().flatten().any(|a| a == "--enforce"),
        "enforce: true adds --enforce"
    );
    let security = c.security_context.clone().expect("securityContext");
    assert_eq!(security.privileged, Some(false));
    assert_eq!(
        security.capabilities.and_then(|c| c.drop),
        Some(vec!["ALL".to_owned()])
    );
    assert_eq!(variant.pod().tolerations.as_ref().map(Vec::len), Some(2));

    // Defaults alone: no operator objects (their CRDs may be missing), and
    // never a Namespace (Helm needs the release namespace before it starts).
    let defaults = helm_render(serde_json::json!({})).expect("rendered once already");
    assert!(defaults.objects.iter().all(|o| !matches!(
        o,
        Object::Namespace(_)
            | Object::ServiceMonitor(_)
            | Object::PodMonitor(_)
            | Object::PrometheusRule(_)
    )));
    assert_eq!(defaults.pod(), plain.pod());
}
