//! The work fingerprint: what the CPU's own state says a process computes.
//!
//! RandomX (Monero, most cryptojacking coins, XMRig's default `rx/0`)
//! switches the SSE rounding mode all the time: its JIT loads MXCSR values
//! 0x9FC0, 0xBFC0, 0xDFC0 and 0xFFC0 (flush-to-zero and denormals-are-zero
//! set, each of the four rounding modes). Nearly every other program keeps
//! the default 0x1F80 for life. The kernel saves MXCSR at each context
//! switch; the sensor reports a thread when the set of states it was
//! switched out with grows (see miner-ebpf/src/fpu.rs).
//!
//! The RandomX shape is one thread showing at least two non-nearest
//! rounding modes with FTZ and DAZ both set. What it is not:
//! - fast-math code (`-ffast-math`, `-Ofast`): FTZ + DAZ at the default
//!   rounding, constant (0x9FC0) — also CryptoNight, `cn/r` and Argon2
//!   miners, so they are left to the network rules;
//! - interval arithmetic, `fesetround` users: rounding modes without
//!   FTZ/DAZ (0x3F80, 0x5F80, 0x7F80);
//! - a process whose threads each show one mode: the set is per thread.
//!
//! This module is pure: it folds `Fpu` and `Hint` events into per-process
//! state and says when the shape appeared. Rules decide what it means.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use miner_ebpf_common::{MXCSR_DAZ, MXCSR_DEFAULT, MXCSR_FTZ, MXCSR_RC_SHIFT, mxcsr_class};

use crate::event::{Exec, Fpu, Hint, HintKind, Source};
use crate::time::Mono;

/// Classes (FTZ, DAZ, rounding mode; see `mxcsr_class`) with FTZ and DAZ
/// set and a rounding mode other than nearest.
const RANDOMX_CLASSES: u16 = (1 << 13) | (1 << 14) | (1 << 15);
/// Non-nearest rounding modes (with FTZ + DAZ) one thread must show.
/// RandomX picks a mode at random for each CFROUND; a sampled thread
/// shows a second one within a few switches.
pub const MIN_ROUNDING_MODES: u32 = 2;
/// Threads remembered per process. A miner shows the shape in every worker
/// thread; the first ones are enough.
const MAX_THREADS: usize = 64;
/// Hints remembered per process (one per kind and size class).
const MAX_HINTS: usize = 8;

/// Is a thread's seen set the RandomX shape?
pub fn is_randomx_shape(seen: u16) -> bool {
    (seen & RANDOMX_CLASSES).count_ones() >= MIN_ROUNDING_MODES
}

const ROUNDING: [&str; 4] = ["nearest", "down", "up", "toward zero"];

/// A class's canonical MXCSR value (default exception masks).
fn class_value(class: u32) -> u16 {
    let mut v = MXCSR_DEFAULT | ((class & 3) << MXCSR_RC_SHIFT);
    if class & 8 != 0 {
        v |= MXCSR_FTZ;
    }
    if class & 4 != 0 {
        v |= MXCSR_DAZ;
    }
    v as u16
}

#[derive(Debug, Clone)]
struct ThreadSeen {
    comm: String,
    seen: u16,
    /// When each class was first reported, and the exact value then.
    first: BTreeMap<u32, (Mono, u16)>,
}

/// When and where a process first showed the RandomX shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    pub time: Mono,
    pub pid: u32,
    /// Human detail: the thread, its values and when each appeared.
    pub detail: String,
}

/// Per-process fingerprint state.
#[derive(Debug, Clone, Default)]
pub struct FpuTrack {
    threads: BTreeMap<u32, ThreadSeen>,
    pub shape: Option<Shape>,
}

impl FpuTrack {
    /// Folds in one report; true when it completed the shape for the first
    /// time in this process.
    pub fn observe(&mut self, f: &Fpu) -> bool {
        if !self.threads.contains_key(&f.pid) && self.threads.len() >= MAX_THREADS {
            return false;
        }
        let t = self.threads.entry(f.pid).or_insert_with(|| ThreadSeen {
            comm: f.comm.clone(),
            seen: 0,
            first: BTreeMap::new(),
        });
        let current = mxcsr_class(u32::from(f.mxcsr));
        for class in 0..16u32 {
            if f.seen & (1 << class) != 0 && !t.first.contains_key(&class) {
                let value = if class == current {
                    f.mxcsr
                } else {
                    class_value(class)
                };
                t.first.insert(class, (f.time, value));
            }
        }
        t.seen |= f.seen;
        if self.shape.is_some() || !is_randomx_shape(t.seen) {
            return false;
        }
        self.shape = Some(Shape {
            time: f.time,
            pid: f.pid,
            detail: describe_thread(f.pid, t),
        });
        true
    }
}

fn describe_thread(pid: u32, t: &ThreadSeen) -> String {
    let start = t
        .first
        .values()
        .map(|(at, _)| *at)
        .min()
        .unwrap_or_default();
    let values: Vec<String> = t
        .first
        .values()
        .map(|(at, v)| {
            format!(
                "0x{v:04X} (+{:.2} s)",
                at.saturating_sub(start) as f64 / 1e9
            )
        })
        .collect();
    let modes: Vec<&str> = (0..4u32)
        .filter(|rc| t.seen & (1 << (12 + rc)) != 0)
        .map(|rc| ROUNDING[rc as usize])
        .collect();
    format!(
        "thread {pid} ({}) switched out with MXCSR {}: flush-to-zero + denormals-are-zero with rounding {} (the RandomX shape)",
        t.comm,
        values.join(", "),
        modes.join("/"),
    )
}

/// One-line description of an `Fpu` event (tail).
pub fn describe_fpu(f: &Fpu) -> String {
    let mut s = format!("mxcsr 0x{:04X}, seen", f.mxcsr);
    for class in 0..16u32 {
        if f.seen & (1 << class) != 0 {
            let _ = write!(s, " 0x{:04X}", class_value(class));
        }
    }
    if is_randomx_shape(f.seen) {
        s.push_str(" (RandomX shape)");
    }
    s
}

/// RandomX allocates its 256 MiB cache (light mode) and 2080 MiB dataset
/// (fast mode) with huge pages when it can.
fn mapping_size_note(bytes: u64) -> &'static str {
    const MIB: u64 = 1 << 20;
    match bytes {
        b if (256 * MIB..=264 * MIB).contains(&b) => " (the size of a RandomX cache)",
        b if (2048 * MIB..=2112 * MIB).contains(&b) => " (the size of a RandomX dataset)",
        _ => "",
    }
}

/// One-line description of a `Hint` event (tail and evidence).
pub fn describe_hint(h: &Hint) -> String {
    match h.hint {
        HintKind::HugepagesSysctl | HintKind::HugepagesSysfs => {
            format!("opened {} for writing (reserving huge pages)", h.path)
        }
        HintKind::HugetlbMap => format!(
            "asked for a {} MiB huge-page mapping{}",
            h.value >> 20,
            mapping_size_note(h.value)
        ),
        HintKind::MsrOpen => format!("opened {} for writing (an MSR tweak)", h.path),
        HintKind::MsrModule => "ran `modprobe msr` (MSR access)".to_owned(),
    }
}

/// `modprobe msr` / `insmod …/msr.ko` run by a process: XMRig does this
/// before its MSR writes. The hint goes to the parent that ran it (the
/// module loader itself is a packaged tool doing its job).
pub fn msr_module_hint(e: &Exec) -> Option<Hint> {
    if e.source != Source::Kernel || e.ppid <= 1 {
        return None;
    }
    let tool = e.argv.first()?.rsplit('/').next()?;
    if !matches!(tool, "modprobe" | "insmod") {
        return None;
    }
    let msr = e.argv[1..].iter().any(|a| {
        let file = a.rsplit('/').next().unwrap_or(a);
        file == "msr" || file.starts_with("msr.ko")
    });
    msr.then(|| Hint {
        time: e.time,
        tgid: e.ppid,
        pid: e.ppid,
        uid: e.uid,
        comm: String::new(),
        hint: HintKind::MsrModule,
        value: 0,
        path: String::new(),
    })
}

/// A hint kept as evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct HintEvidence {
    pub time: Mono,
    pub hint: HintKind,
    pub detail: String,
}

/// Per-process hints: one per kind (and mapping size class).
#[derive(Debug, Clone, Default)]
pub struct Hints {
    pub seen: Vec<HintEvidence>,
}

impl Hints {
    pub fn observe(&mut self, h: &Hint) {
        let detail = describe_hint(h);
        if self.seen.len() >= MAX_HINTS
            || self
                .seen
                .iter()
                .any(|e| e.hint == h.hint && e.detail == detail)
        {
            return;
        }
        self.seen.push(HintEvidence {
            time: h.time,
            hint: h.hint,
            detail,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fpu(t_ms: u64, pid: u32, mxcsr: u16, seen: &[u16]) -> Fpu {
        Fpu {
            time: Mono::from_millis(t_ms),
            tgid: 1,
            pid,
            comm: "w".into(),
            mxcsr,
            seen: seen
                .iter()
                .fold(0, |m, v| m | 1 << mxcsr_class(u32::from(*v))),
        }
    }

    #[test]
    fn shape_needs_two_non_nearest_modes_with_ftz_and_daz_in_one_thread() {
        let cases: &[(&str, &[u16], bool)] = &[
            ("randomx, all four", &[0x9FC0, 0xBFC0, 0xDFC0, 0xFFC0], true),
            ("randomx, two non-nearest", &[0xBFC0, 0xFFC0], true),
            ("randomx, nearest + one", &[0x9FC0, 0xDFC0], false),
            ("fast math, constant", &[0x9FC0], false),
            ("fesetround up/down/zero", &[0x3F80, 0x5F80, 0x7F80], false),
            ("FTZ without DAZ", &[0xBF80, 0xDF80], false),
            ("DAZ without FTZ", &[0x3FC0, 0x5FC0], false),
            (
                "fast math + fesetround mix",
                &[0x9FC0, 0x3F80, 0x5F80],
                false,
            ),
        ];
        for (name, values, want) in cases {
            let mut t = FpuTrack::default();
            let got = t.observe(&fpu(10, 5, values[0], values));
            assert_eq!(got, *want, "case: {name}");
            assert_eq!(t.shape.is_some(), *want, "case: {name}");
        }
    }

    #[test]
    fn shape_is_per_thread_and_reported_once_with_values_and_times() {
        let mut t = FpuTrack::default();
        // Two threads each with one non-nearest mode: not the shape.
        assert!(!t.observe(&fpu(0, 10, 0xBFC0, &[0x9FC0, 0xBFC0])));
        assert!(!t.observe(&fpu(5, 11, 0xDFC0, &[0xDFC0])));
        // Thread 10 grows: the shape, at the time of that report.
        assert!(t.observe(&fpu(300, 10, 0xFFC0, &[0x9FC0, 0xBFC0, 0xFFC0])));
        let shape = t.shape.clone().unwrap();
        assert_eq!((shape.pid, shape.time), (10, Mono::from_millis(300)));
        assert!(
            shape.detail.contains("0xBFC0 (+0.00 s)") && shape.detail.contains("0xFFC0 (+0.30 s)"),
            "{}",
            shape.detail
        );
        assert!(
            shape.detail.contains("down/toward zero"),
            "{}",
            shape.detail
        );
        // Later growth does not report again.
        assert!(!t.observe(&fpu(400, 11, 0xBFC0, &[0xBFC0, 0xDFC0])));
        assert_eq!(t.shape, Some(shape));
    }

    #[test]
    fn thread_count_is_bounded() {
        let mut t = FpuTrack::default();
        for pid in 0..(MAX_THREADS as u32 + 50) {
            t.observe(&fpu(1, pid, 0x3F80, &[0x3F80]));
        }
        assert_eq!(t.threads.len(), MAX_THREADS);
    }

    #[test]
    fn modprobe_msr_is_a_hint_for_the_parent() {
        let exec = |argv: &[&str], ppid| Exec {
            time: Mono(5),
            tgid: 50,
            pid: 50,
            ppid,
            uid: 0,
            gid: 0,
            cgroup_id: 1,
            start_boottime_ns: 1,
            comm: "modprobe".into(),
            filename: "/usr/sbin/modprobe".into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            argv_truncated: false,
            exe: Default::default(),
            exe_path: None,
            cgroup: None,
            source: Source::Kernel,
        };
        let h = msr_module_hint(&exec(&["/sbin/modprobe", "msr"], 40)).unwrap();
        assert_eq!((h.tgid, h.hint), (40, HintKind::MsrModule));
        assert!(msr_module_hint(&exec(&["insmod", "/lib/modules/x/msr.ko.xz"], 40)).is_some());
        assert!(msr_module_hint(&exec(&["modprobe", "-a", "msr"], 40)).is_some());
        // Look-alikes: other modules, other tools, boot-time loads by init.
        assert!(msr_module_hint(&exec(&["modprobe", "nf_tables"], 40)).is_none());
        assert!(msr_module_hint(&exec(&["cat", "msr"], 40)).is_none());
        assert!(msr_module_hint(&exec(&["modprobe", "msr"], 1)).is_none());
    }

    #[test]
    fn hints_describe_randomx_sizes_and_dedup() {
        let h = |hint, value, path: &str| Hint {
            time: Mono(1),
            tgid: 1,
            pid: 1,
            uid: 0,
            comm: "x".into(),
            hint,
            value,
            path: path.into(),
        };
        assert!(describe_hint(&h(HintKind::HugetlbMap, 256 << 20, "")).contains("RandomX cache"));
        assert!(
            describe_hint(&h(HintKind::HugetlbMap, 2_181_038_080, "")).contains("RandomX dataset")
        );
        assert!(!describe_hint(&h(HintKind::HugetlbMap, 1 << 30, "")).contains("RandomX"));
        assert!(
            describe_hint(&h(
                HintKind::HugepagesSysctl,
                0,
                "/proc/sys/vm/nr_hugepages"
            ))
            .contains("/proc/sys/vm/nr_hugepages")
        );
        let mut hints = Hints::default();
        for _ in 0..3 {
            hints.observe(&h(HintKind::MsrOpen, 0, "/dev/cpu/0/msr"));
        }
        hints.observe(&h(HintKind::MsrOpen, 0, "/dev/cpu/1/msr"));
        assert_eq!(hints.seen.len(), 2);
        for i in 0..20 {
            hints.observe(&h(HintKind::HugetlbMap, (300 + i) << 20, ""));
        }
        assert_eq!(hints.seen.len(), MAX_HINTS);
    }
}
