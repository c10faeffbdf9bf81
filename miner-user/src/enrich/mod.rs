//! Enrichment: who a process is beyond its pid. Today the container and pod
//! it runs in, read from its cgroup path (see [`container`]); nothing here
//! talks to a container runtime or the Kubernetes API.

pub mod container;

pub use container::{ContainerInfo, QosClass, Runtime, for_pid, from_cgroup_path, read_cgroup};
