//! The kernel side as user space sees it: preflight, load and attach
//! (loader), BTF offsets (btf), ring-buffer reading (ringbuf), record
//! decoding (decode — the only place byte layouts are parsed), CPU and drop
//! counter polling (cpu_poll), the response maps (blocklist), and per-CPU
//! context-switch nudges for the fpu sensor (nudge).

pub mod blocklist;
pub mod btf;
pub mod config;
pub mod cpu_poll;
pub mod decode;
pub mod loader;
pub mod nudge;
pub mod probe;
pub mod ringbuf;
pub mod task_iter;

pub use config::SensorConfig;
pub use loader::{HookError, HookFailure, HookStatus, Sensor};

#[derive(Debug, thiserror::Error)]
pub enum SensorError {
    #[error(
        "not enough privilege to load eBPF programs (euid {euid}): run as root, or with CAP_BPF + CAP_PERFMON (+ CAP_SYS_ADMIN for cgroup hooks)"
    )]
    Privileges { euid: u32 },
    #[error(
        "no kernel BTF at {path}: minerwatch needs a kernel built with CONFIG_DEBUG_INFO_BTF=y (most distributions since 2020)"
    )]
    NoBtf { path: &'static str },
    #[error("kernel {release} is too old: minerwatch needs Linux 5.8 or newer (BPF ring buffer)")]
    OldKernel { release: String },
    #[error(
        "tracefs is not mounted at /sys/kernel/tracing and mounting it failed ({reason}); run `mount -t tracefs tracefs /sys/kernel/tracing` as root"
    )]
    Tracefs { reason: String },
    #[error(transparent)]
    Btf(#[from] btf::BtfError),
    #[error(
        "this binary was built without its eBPF object (AYA_BUILD_SKIP=1); rebuild with `cargo xtask build`"
    )]
    NoObject,
    #[error("loading the eBPF object failed: {0}")]
    Load(#[source] Box<aya::EbpfError>),
    #[error("the verifier rejected program {program}: {reason}\n{log_tail}")]
    Verifier {
        program: &'static str,
        reason: String,
        log_tail: String,
    },
    #[error("program {0} is missing from the eBPF object; rebuild with `cargo xtask build`")]
    MissingProgram(&'static str),
    #[error("map {0} is missing from the eBPF object; rebuild with `cargo xtask build`")]
    MissingMap(&'static str),
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: Box<aya::maps::MapError>,
    },
    #[error("hooks failed to attach and --require-all is set: {0}")]
    RequiredHooks(String),
    #[error("ring buffer reader: {0}")]
    Io(#[from] std::io::Error),
}
