//! Load the eBPF object, hand it the kernel's BTF offsets, attach every hook
//! and report which attached. Programs and maps load as one unit; a hook
//! that cannot attach degrades with a warning naming the missing feature
//! (fatal with `--require-all`).

use std::{fs::File, path::PathBuf};

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr, Iter, ProgramError,
        RawTracePoint, TracePoint,
    },
};
use miner_ebpf_common::{KernelOffsets, SockOffsets};

use super::{
    SensorConfig, SensorError, blocklist::Blocklist, btf::Btf, probe, task_iter::TaskIter,
};
use crate::defaults::BTF_PATH;

/// The eBPF object, built by miner-user/build.rs with the pinned toolchain.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/miner-ebpf"));

#[derive(Clone, Copy, Debug)]
enum Target {
    TracePoint(&'static str, &'static str),
    RawTracePoint(&'static str),
    CgroupSockAddr,
    CgroupSkbEgress,
    /// A BTF-typed tracepoint (`FPU_BTF_PROGRAM`), falling back to the
    /// hook's raw tracepoint program where it does not load or attach.
    BtfTracePoint(&'static str),
    /// A BPF iterator (`iter/<kind>`), run by user space on demand.
    Iter(&'static str),
    /// An fentry program on a kernel function, then a syscall tracepoint
    /// program (when its BTF offsets are known), falling back to the hook's
    /// raw tracepoint program where neither loads or attaches.
    FEntryOrRawTracePoint {
        fentry: &'static str,
        function: &'static str,
        /// Program on `syscalls/<syscall>`, named like it.
        syscall: &'static str,
        tracepoint: &'static str,
    },
}

struct Hook {
    program: &'static str,
    target: Target,
    /// What the user loses if it does not attach.
    loses: &'static str,
    /// The kernel feature it needs.
    needs: &'static str,
}

const HOOKS: &[Hook] = &[
    Hook {
        program: "sched_process_exec",
        target: Target::TracePoint("sched", "sched_process_exec"),
        loses: "exec events",
        needs: "tracepoint sched/sched_process_exec",
    },
    Hook {
        program: "sched_process_fork",
        target: Target::RawTracePoint("sched_process_fork"),
        loses: "fork events (process tree)",
        needs: "raw tracepoints (Linux 4.17+)",
    },
    Hook {
        program: "sched_process_exit",
        target: Target::TracePoint("sched", "sched_process_exit"),
        loses: "exit events",
        needs: "tracepoint sched/sched_process_exit",
    },
    Hook {
        program: "task_cpu",
        target: Target::Iter("task"),
        loses: "CPU residency",
        needs: "BPF task iterators (Linux 5.8+)",
    },
    Hook {
        program: "inet_sock_set_state",
        // fentry and the syscall run once per listen(2); the raw
        // tracepoint at every TCP state change of every socket.
        target: Target::FEntryOrRawTracePoint {
            fentry: "inet_csk_listen_start",
            function: "inet_csk_listen_start",
            syscall: "sys_enter_listen",
            tracepoint: "inet_sock_set_state",
        },
        loses: "listen events (which ancestors in a verdict's chain are listening servers)",
        needs: "fentry (BTF trampolines), syscall tracepoints or raw tracepoint inet_sock_set_state (Linux 4.16+)",
    },
    Hook {
        program: "sys_exit_connect",
        target: Target::TracePoint("syscalls", "sys_exit_connect"),
        loses: "connect results",
        needs: "syscall tracepoints (CONFIG_FTRACE_SYSCALLS)",
    },
    Hook {
        program: "connect4",
        target: Target::CgroupSockAddr,
        loses: "IPv4 connects and egress blocking",
        needs: "cgroup v2 + BPF_CGROUP_INET4_CONNECT",
    },
    Hook {
        program: "connect6",
        target: Target::CgroupSockAddr,
        loses: "IPv6 connects and egress blocking",
        needs: "cgroup v2 + BPF_CGROUP_INET6_CONNECT",
    },
    Hook {
        program: "cgroup_skb_egress",
        target: Target::CgroupSkbEgress,
        loses: "pool-protocol payload peeks",
        needs: "cgroup v2 + BPF_CGROUP_INET_EGRESS",
    },
    Hook {
        program: FPU_PROGRAM,
        target: Target::BtfTracePoint("x86_fpu_regs_deactivated"),
        loses: "the RandomX work fingerprint (saved MXCSR per thread)",
        needs: "x86-64, raw tracepoint x86_fpu_regs_deactivated, struct fpu in BTF",
    },
    Hook {
        program: "sys_enter_openat",
        target: Target::TracePoint("syscalls", "sys_enter_openat"),
        loses: "the hints: huge-page reservation (nr_hugepages) and MSR device opens",
        needs: "syscall tracepoints (CONFIG_FTRACE_SYSCALLS)",
    },
    Hook {
        program: "sys_enter_open",
        target: Target::TracePoint("syscalls", "sys_enter_open"),
        loses: "the hints through open(2) (static musl binaries)",
        needs: "syscall tracepoints (CONFIG_FTRACE_SYSCALLS), x86-64",
    },
    Hook {
        program: "sys_enter_mmap",
        target: Target::TracePoint("syscalls", "sys_enter_mmap"),
        loses: "the hint: large MAP_HUGETLB mappings (RandomX cache and dataset)",
        needs: "syscall tracepoints (CONFIG_FTRACE_SYSCALLS)",
    },
];

/// The program that reads saved MXCSR values (detect::fingerprint): the
/// raw-tracepoint fallback, and the BTF-typed program tried first (direct
/// loads instead of `bpf_probe_read_kernel`: cheaper at every switch).
pub const FPU_PROGRAM: &str = "x86_fpu_regs_deactivated";
pub const FPU_BTF_PROGRAM: &str = "x86_fpu_regs_deactivated_btf";

fn is_fpu(h: &HookStatus) -> bool {
    h.program == FPU_PROGRAM || h.program == FPU_BTF_PROGRAM
}

/// Why a hook did not attach. Degrades the sensor (fatal with
/// `--require-all`); the log line names the feature and what is lost.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("turned off ({key} = false)")]
    TurnedOff { key: &'static str },
    /// The kernel lacks what the program reads (e.g. `struct fpu` in BTF).
    #[error(transparent)]
    Unsupported(#[from] super::btf::BtfError),
    #[error("no cgroup v2 mount found; set sensor.cgroup_path")]
    NoCgroup,
    #[error("opening {}: {source}", path.display())]
    OpenCgroup {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("kernel BTF: {0}")]
    KernelBtf(#[source] aya::BtfError),
    #[error("{0} missing from the object")]
    MissingProgram(&'static str),
    #[error("{program}: {source}")]
    ProgramType {
        program: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("load: {0}")]
    Load(#[source] ProgramError),
    #[error("iterator program fd: {0}")]
    ProgramFd(#[source] ProgramError),
    #[error("BPF_LINK_CREATE for the task iterator: {0}")]
    IterLink(#[source] std::io::Error),
    #[error("attach to {target}: {source}")]
    Attach {
        /// `sched/sched_process_exec`, `raw tracepoint sched_process_fork`,
        /// `cgroup`, …
        target: String,
        #[source]
        source: ProgramError,
    },
}

/// A hook that did not attach: why, and what that costs.
#[derive(Debug, thiserror::Error)]
#[error("{source} (needs {needs}; without it: no {loses})")]
pub struct HookFailure {
    pub needs: &'static str,
    pub loses: &'static str,
    #[source]
    pub source: HookError,
}

/// What happened to one hook at start.
#[derive(Debug)]
pub struct HookStatus {
    pub program: &'static str,
    pub attached: bool,
    /// Why not, and what it costs.
    pub error: Option<HookFailure>,
    /// Instructions the verifier processed (`bpf_prog_info`).
    pub verified_insns: Option<u32>,
    pub prog_id: Option<u32>,
}

/// The loaded object. Dropping it detaches every program (links are owned
/// by the `Ebpf`); enforcement does not outlive the daemon.
pub struct Sensor {
    ebpf: Ebpf,
    pub hooks: Vec<HookStatus>,
    pub offsets: KernelOffsets,
    pub cgroup_path: Option<PathBuf>,
    kernel_log: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    /// Runs while the fpu program is attached (and `fpu_nudge_ms` > 0).
    pub nudger: Option<super::nudge::Nudger>,
    task_iter: Option<TaskIter>,
}

fn verifier_error(program: &'static str, e: ProgramError) -> SensorError {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(12)..].join("\n");
            SensorError::Verifier {
                program,
                reason: io_error.to_string(),
                log_tail: tail,
            }
        }
        other => SensorError::Verifier {
            program,
            reason: other.to_string(),
            log_tail: String::new(),
        },
    }
}

impl Sensor {
    pub fn load(cfg: &SensorConfig) -> Result<Sensor, SensorError> {
        probe::check_privileges()?;
        let release = probe::check_kernel()?;
        probe::check_btf()?;
        probe::ensure_tracefs()?;
        if EBPF_OBJECT.is_empty() {
            return Err(SensorError::NoObject);
        }
        let started = std::time::Instant::now();
        let btf = Btf::from_file(BTF_PATH)?;
        let (offsets, mut fpu_error) = btf.with_fpu(btf.kernel_offsets()?, &release);
        let sock_offsets = btf.sock_offsets().unwrap_or_else(|e| {
            log::warn!(
                "degraded: listen events carry no address ({e}; the kernel's BTF lacks sock_common fields)"
            );
            SockOffsets::zeroed()
        });
        drop(btf);
        log::debug!(
            "BTF offsets read in {:?}: {offsets:?} {sock_offsets:?}",
            started.elapsed()
        );

        let wakeup_bytes = u64::from(cfg.ring_buffer_bytes / 8);
        let mut ebpf = EbpfLoader::new()
            .override_global("OFFSETS", &offsets, true)
            .override_global("SOCK_OFFSETS", &sock_offsets, true)
            .override_global("WAKEUP_BYTES", &wakeup_bytes, true)
            .map_max_entries("EVENTS", cfg.ring_buffer_bytes)
            .load(EBPF_OBJECT)
            .map_err(|e| SensorError::Load(Box::new(e)))?;

        // Kernel-side log lines (aya-log) go to our logger once a runtime
        // drains them (`start_kernel_log`).
        let kernel_log = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(logger) => Some(logger),
            Err(e) => {
                log::warn!("kernel-side logging unavailable: {e}");
                None
            }
        };

        let cgroup_path = cfg
            .cgroup_path
            .as_ref()
            .map(PathBuf::from)
            .or_else(probe::find_cgroup2);
        let mut hooks = Vec::new();
        let mut task_iter = None;
        for hook in HOOKS {
            let unusable = match hook.program {
                FPU_PROGRAM if !cfg.fpu_fingerprint => Some(HookError::TurnedOff {
                    key: "sensor.fpu_fingerprint",
                }),
                FPU_PROGRAM => fpu_error.take().map(HookError::Unsupported),
                _ => None,
            };
            let status = attach(
                &mut ebpf,
                hook,
                cgroup_path.as_deref(),
                unusable,
                &mut task_iter,
                sock_offsets.fd_valid != 0,
            )?;
            hooks.push(status);
        }
        let failed: Vec<String> = hooks
            .iter()
            .filter(|h| !h.attached)
            .map(|h| match &h.error {
                Some(e) => format!("{}: {e}", h.program),
                None => h.program.to_owned(),
            })
            .collect();
        if !failed.is_empty() {
            if cfg.require_all {
                return Err(SensorError::RequiredHooks(failed.join("; ")));
            }
            for f in &failed {
                log::warn!("degraded: {f}");
            }
        }
        if !hooks.iter().any(|h| h.attached) {
            return Err(SensorError::RequiredHooks("no hook attached".into()));
        }
        if task_iter.is_some() && cfg.quiet_fork_ms > 0 {
            hold_quiet_forks(&mut ebpf, cfg.quiet_fork_ms * 1_000_000)?;
        }
        let fpu = hooks.iter().any(|h| is_fpu(h) && h.attached);
        let nudger = if fpu && cfg.fpu_nudge_ms > 0 {
            match super::nudge::Nudger::start(std::time::Duration::from_millis(cfg.fpu_nudge_ms)) {
                Ok(n) => {
                    log::debug!(
                        "fpu nudges every {} ms on {} CPUs (real-time: {})",
                        cfg.fpu_nudge_ms,
                        n.cpus.len(),
                        n.realtime
                    );
                    Some(n)
                }
                Err(e) => {
                    log::warn!(
                        "fpu nudges unavailable ({e}): threads that never leave their CPU show no fingerprint"
                    );
                    None
                }
            }
        } else {
            None
        };
        Ok(Sensor {
            ebpf,
            hooks,
            offsets,
            cgroup_path,
            kernel_log,
            nudger,
            task_iter,
        })
    }

    /// Forward aya-log messages from the programs to the `log` crate.
    /// Needs a tokio runtime.
    pub fn start_kernel_log(&mut self) {
        if let Some(logger) = self.kernel_log.take() {
            spawn_kernel_logger(logger);
        }
    }

    pub fn attached(&self, program: &str) -> bool {
        self.hooks
            .iter()
            .any(|h| h.program == program && h.attached)
    }

    pub fn take_ring(&mut self) -> Result<RingBuf<MapData>, SensorError> {
        let map = self
            .ebpf
            .take_map("EVENTS")
            .ok_or(SensorError::MissingMap("EVENTS"))?;
        RingBuf::try_from(map).map_err(map_error("EVENTS"))
    }

    /// The `CONTROL` slot that lets the ring reader sleep on an idle host.
    /// Taken after the loader's own writes (`hold_quiet_forks`).
    pub fn take_wake_flag(&mut self) -> Result<super::ringbuf::WakeFlag, SensorError> {
        let map = self
            .ebpf
            .take_map("CONTROL")
            .ok_or(SensorError::MissingMap("CONTROL"))?;
        let control = aya::maps::Array::try_from(map).map_err(map_error("CONTROL"))?;
        Ok(super::ringbuf::WakeFlag::new(control))
    }

    /// The CPU iterator, if it attached (no CPU residency otherwise).
    pub fn take_task_iter(&mut self) -> Option<TaskIter> {
        self.task_iter.take()
    }

    /// Children that forked and exited without a record (per CPU).
    pub fn take_quiet(&mut self) -> Result<PerCpuArray<MapData, u64>, SensorError> {
        self.take_counters("QUIET")
    }

    pub fn take_drops(&mut self) -> Result<PerCpuArray<MapData, u64>, SensorError> {
        self.take_counters("DROPS")
    }

    fn take_counters(
        &mut self,
        name: &'static str,
    ) -> Result<PerCpuArray<MapData, u64>, SensorError> {
        let map = self
            .ebpf
            .take_map(name)
            .ok_or(SensorError::MissingMap(name))?;
        PerCpuArray::try_from(map).map_err(map_error(name))
    }

    pub fn take_blocklist(&mut self) -> Result<Blocklist, SensorError> {
        let tgids = self
            .ebpf
            .take_map("BLOCKED_TGIDS")
            .ok_or(SensorError::MissingMap("BLOCKED_TGIDS"))?;
        let dests = self
            .ebpf
            .take_map("BLOCKED_DESTS")
            .ok_or(SensorError::MissingMap("BLOCKED_DESTS"))?;
        Ok(Blocklist::new(
            BpfHashMap::try_from(tgids).map_err(map_error("BLOCKED_TGIDS"))?,
            BpfHashMap::try_from(dests).map_err(map_error("BLOCKED_DESTS"))?,
        ))
    }

    /// The kernel's MXCSR set for a thread, if it ever left the default
    /// (tests and diagnostics; the detector learns from `Fpu` events).
    pub fn fpu_seen(&self, pid: u32) -> Option<miner_ebpf_common::FpuSeen> {
        let map = self.ebpf.map("FPU_SEEN")?;
        let seen: BpfHashMap<&MapData, u32, miner_ebpf_common::FpuSeen> =
            BpfHashMap::try_from(map).ok()?;
        seen.get(&pid, 0).ok()
    }

    /// Kernel program ids, for `bpf_stats` run-time accounting in benchmarks.
    pub fn program_ids(&self) -> Vec<(&'static str, u32)> {
        self.hooks
            .iter()
            .filter_map(|h| h.prog_id.map(|id| (h.program, id)))
            .collect()
    }
}

fn map_error(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> SensorError {
    move |source| SensorError::Map {
        name,
        source: Box::new(source),
    }
}

fn spawn_kernel_logger(logger: aya_log::EbpfLogger<&'static dyn log::Log>) {
    // SAFETY: the logger owns its ring-buffer fd for the AsyncFd's lifetime.
    let registered = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE)
    };
    let fd = match registered {
        Ok(fd) => fd,
        Err(e) => {
            log::warn!("kernel-side logging unavailable: {e}");
            return;
        }
    };
    tokio::spawn(async move {
        let mut fd = fd;
        loop {
            let Ok(mut guard) = fd.readable_mut().await else {
                return;
            };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
}

fn attach(
    ebpf: &mut Ebpf,
    hook: &Hook,
    cgroup: Option<&std::path::Path>,
    unusable: Option<HookError>,
    task_iter: &mut Option<TaskIter>,
    fd_path: bool,
) -> Result<HookStatus, SensorError> {
    if unusable.is_none()
        && let Target::BtfTracePoint(tracepoint) = hook.target
    {
        match attach_btf(ebpf, tracepoint) {
            Ok(status) => return Ok(status),
            Err(e) => log::debug!(
                "{FPU_BTF_PROGRAM} unavailable ({e}); using {}",
                hook.program
            ),
        }
    }
    if unusable.is_none()
        && let Target::FEntryOrRawTracePoint {
            fentry,
            function,
            syscall,
            ..
        } = hook.target
    {
        match attach_fentry(ebpf, fentry, function) {
            Ok(status) => return Ok(status),
            Err(e) if fd_path => log::debug!("{fentry} unavailable ({e}); trying {syscall}"),
            Err(e) => log::debug!("{fentry} unavailable ({e}); using {}", hook.program),
        }
        if fd_path {
            match attach_syscall(ebpf, syscall) {
                Ok(status) => return Ok(status),
                Err(e) => log::debug!("{syscall} unavailable ({e}); using {}", hook.program),
            }
        }
    }
    let prog = ebpf
        .program_mut(hook.program)
        .ok_or(SensorError::MissingProgram(hook.program))?;
    let mut status = HookStatus {
        program: hook.program,
        attached: false,
        error: None,
        verified_insns: None,
        prog_id: None,
    };
    let degrade = |status: &mut HookStatus, source: HookError| {
        status.error = Some(HookFailure {
            needs: hook.needs,
            loses: hook.loses,
            source,
        });
    };
    if let Some(why) = unusable {
        degrade(&mut status, why);
        return Ok(status);
    }
    let cgroup_file = || -> Result<File, HookError> {
        let path = cgroup.ok_or(HookError::NoCgroup)?;
        File::open(path).map_err(|source| HookError::OpenCgroup {
            path: path.to_owned(),
            source,
        })
    };
    let attach_error = |target: String| move |source| HookError::Attach { target, source };
    let result: Result<(), HookError> = match hook.target {
        Target::TracePoint(category, name) => {
            let p: &mut TracePoint = prog
                .try_into()
                .map_err(|_| SensorError::MissingProgram(hook.program))?;
            p.load().map_err(|e| verifier_error(hook.program, e))?;
            p.attach(category, name)
                .map(|_| ())
                .map_err(attach_error(format!("{category}/{name}")))
        }
        Target::RawTracePoint(name)
        | Target::BtfTracePoint(name)
        | Target::FEntryOrRawTracePoint {
            tracepoint: name, ..
        } => {
            let p: &mut RawTracePoint = prog
                .try_into()
                .map_err(|_| SensorError::MissingProgram(hook.program))?;
            p.load().map_err(|e| verifier_error(hook.program, e))?;
            p.attach(name)
                .map(|_| ())
                .map_err(attach_error(format!("raw tracepoint {name}")))
        }
        Target::CgroupSockAddr => {
            let p: &mut CgroupSockAddr = prog
                .try_into()
                .map_err(|_| SensorError::MissingProgram(hook.program))?;
            p.load().map_err(|e| verifier_error(hook.program, e))?;
            cgroup_file().and_then(|f| {
                p.attach(f, CgroupAttachMode::Single)
                    .map(|_| ())
                    .map_err(attach_error("cgroup".into()))
            })
        }
        Target::CgroupSkbEgress => {
            let p: &mut CgroupSkb = prog
                .try_into()
                .map_err(|_| SensorError::MissingProgram(hook.program))?;
            p.load().map_err(|e| verifier_error(hook.program, e))?;
            cgroup_file().and_then(|f| {
                p.attach(f, CgroupSkbAttachType::Egress, CgroupAttachMode::Single)
                    .map(|_| ())
                    .map_err(attach_error("cgroup egress".into()))
            })
        }
        Target::Iter(kind) => {
            let p: &mut Iter = prog
                .try_into()
                .map_err(|_| SensorError::MissingProgram(hook.program))?;
            match aya::Btf::from_sys_fs() {
                Err(e) => Err(HookError::KernelBtf(e)),
                Ok(btf) => {
                    p.load(kind, &btf)
                        .map_err(|e| verifier_error(hook.program, e))?;
                    p.fd()
                        .map_err(HookError::ProgramFd)
                        .and_then(|fd| TaskIter::attach(fd).map_err(HookError::IterLink))
                        .map(|it| *task_iter = Some(it))
                }
            }
        }
    };
    match result {
        Ok(()) => status.attached = true,
        Err(e) => degrade(&mut status, e),
    }
    if let Ok(info) = prog.info() {
        status.verified_insns = info.verified_instruction_count();
        status.prog_id = Some(info.id());
    }
    Ok(status)
}

/// Loads and attaches `FPU_BTF_PROGRAM` to `tracepoint`; an error leaves
/// the caller to the raw-tracepoint fallback.
fn attach_btf(ebpf: &mut Ebpf, tracepoint: &str) -> Result<HookStatus, HookError> {
    let btf = aya::Btf::from_sys_fs().map_err(HookError::KernelBtf)?;
    let prog = ebpf
        .program_mut(FPU_BTF_PROGRAM)
        .ok_or(HookError::MissingProgram(FPU_BTF_PROGRAM))?;
    let p: &mut aya::programs::BtfTracePoint =
        prog.try_into().map_err(|source| HookError::ProgramType {
            program: FPU_BTF_PROGRAM,
            source,
        })?;
    p.load(tracepoint, &btf).map_err(HookError::Load)?;
    p.attach().map_err(|source| HookError::Attach {
        target: format!("BTF tracepoint {tracepoint}"),
        source,
    })?;
    Ok(attached_status(FPU_BTF_PROGRAM, prog))
}

/// Loads and attaches the fentry program `program` to `function`; an error
/// leaves the caller to its raw-tracepoint fallback.
fn attach_fentry(
    ebpf: &mut Ebpf,
    program: &'static str,
    function: &str,
) -> Result<HookStatus, String> {
    let btf = aya::Btf::from_sys_fs().map_err(|e| format!("kernel BTF: {e}"))?;
    let prog = ebpf
        .program_mut(program)
        .ok_or_else(|| format!("{program} missing from the object"))?;
    let p: &mut aya::programs::FEntry = prog.try_into().map_err(|e| format!("{program}: {e}"))?;
    p.load(function, &btf).map_err(|e| format!("load: {e}"))?;
    p.attach().map_err(|e| format!("attach: {e}"))?;
    Ok(attached_status(program, prog))
}

/// An attached program's status, with what the verifier reported.
fn attached_status(program: &'static str, prog: &aya::programs::Program) -> HookStatus {
    let info = prog.info().ok();
    HookStatus {
        program,
        attached: true,
        error: None,
        verified_insns: info.as_ref().and_then(|i| i.verified_instruction_count()),
        prog_id: info.as_ref().map(|i| i.id()),
    }
}

/// A program on `syscalls/<program>`, named like its tracepoint.
fn attach_syscall(ebpf: &mut Ebpf, program: &'static str) -> Result<HookStatus, String> {
    let prog = ebpf
        .program_mut(program)
        .ok_or_else(|| format!("{program} missing from the object"))?;
    let p: &mut TracePoint = prog.try_into().map_err(|e| format!("{program}: {e}"))?;
    p.load().map_err(|e| format!("load: {e}"))?;
    p.attach("syscalls", program)
        .map_err(|e| format!("attach: {e}"))?;
    Ok(attached_status(program, prog))
}

/// Turn on holding back fork records (`pending.rs` in miner-ebpf). Only
/// with the task iterator attached: it is what sends the record of a child
/// that lives on without doing anything else.
fn hold_quiet_forks(ebpf: &mut aya::Ebpf, ns: u64) -> Result<(), SensorError> {
    let map = ebpf
        .map_mut("CONTROL")
        .ok_or(SensorError::MissingMap("CONTROL"))?;
    let mut control: aya::maps::Array<_, u64> =
        aya::maps::Array::try_from(map).map_err(map_error("CONTROL"))?;
    control
        .set(miner_ebpf_common::CONTROL_QUIET_FORK_NS, ns, 0)
        .map_err(map_error("CONTROL"))
}

#[cfg(test)]
mod tests {
    use super::{HookError, HookFailure};

    /// The log line of a hook that did not attach: the cause, the feature
    /// it needs and what is lost; the OS error stays reachable as a source.
    #[test]
    fn hook_failures_say_why_what_it_needs_and_what_is_lost() {
        let off = HookFailure {
            needs: "x86-64",
            loses: "the RandomX work fingerprint",
            source: HookError::TurnedOff {
                key: "sensor.fpu_fingerprint",
            },
        };
        assert_eq!(
            off.to_string(),
            "turned off (sensor.fpu_fingerprint = false) (needs x86-64; without it: no the RandomX work fingerprint)"
        );
        let cgroup = HookFailure {
            needs: "cgroup v2",
            loses: "IPv4 connects",
            source: HookError::OpenCgroup {
                path: "/sys/fs/cgroup/none".into(),
                source: std::io::Error::from_raw_os_error(libc::ENOENT),
            },
        };
        assert!(
            cgroup
                .to_string()
                .starts_with("opening /sys/fs/cgroup/none: No such file or directory"),
            "{cgroup}"
        );
        let cause = std::error::Error::source(&cgroup).and_then(std::error::Error::source);
        let io = cause.and_then(|e| e.downcast_ref::<std::io::Error>());
        assert_eq!(
            io.and_then(std::io::Error::raw_os_error),
            Some(libc::ENOENT)
        );
    }
}
