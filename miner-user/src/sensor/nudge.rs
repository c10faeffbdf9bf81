//! Per-CPU context-switch nudges, so the fpu sensor sees threads that
//! never leave the CPU on their own.
//!
//! The kernel saves a thread's MXCSR only when the thread is switched out
//! (`x86_fpu_regs_deactivated`). A miner thread alone on an otherwise idle
//! core can run for seconds without a switch: the scheduler tick does not
//! switch when nothing else is runnable. One sleeping thread pinned to each
//! CPU, woken every `interval`, preempts whatever runs there for a few
//! microseconds: that switch saves the running thread's state and the
//! sensor sees it. Real-time priority 1 (when allowed) makes the preemption
//! immediate; otherwise it comes at the end of the running task's slice.
//! Cost: two context switches per CPU per interval.
//!
//! Only a busy thread needs a nudge (one that sleeps is switched out by
//! itself), and on a VM each wakeup costs tens of µs, so the CPU poller
//! turns the nudges off while no process used a quarter of a core in its
//! last poll ([`NudgeSwitch`]) and back on at the first that did: the
//! threads then sleep untimed. They start on, so whatever runs before the
//! first poll is nudged.

use std::{
    sync::{Arc, Condvar, Mutex},
    thread::JoinHandle,
    time::Duration,
};

/// What the nudging threads wait on.
#[derive(Clone, Copy)]
struct State {
    stopped: bool,
    /// Nudge (timed waits) or sleep until switched on or stopped.
    active: bool,
}

type Shared = Arc<(Mutex<State>, Condvar)>;

/// Turns the nudges on and off from the CPU poller.
#[derive(Clone)]
pub struct NudgeSwitch(Shared);

impl NudgeSwitch {
    pub fn set(&self, active: bool) {
        let (lock, cv) = &*self.0;
        let Ok(mut state) = lock.lock() else {
            return;
        };
        if state.active != active {
            state.active = active;
            cv.notify_all();
        }
    }

    pub fn active(&self) -> bool {
        self.0.0.lock().map(|s| s.active).unwrap_or(false)
    }
}

/// The nudging threads; dropping it stops and joins them.
pub struct Nudger {
    shared: Shared,
    threads: Vec<JoinHandle<()>>,
    /// CPUs with a nudger (those this process may run on).
    pub cpus: Vec<usize>,
    /// Whether real-time priority was granted (immediate preemption).
    pub realtime: bool,
}

/// CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is valid; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let ok =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if ok != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: the index is below CPU_SETSIZE.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// Pins the calling thread to `cpu` and asks for SCHED_FIFO 1; true if the
/// priority was granted.
fn pin_and_raise(cpu: usize) -> bool {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET stays below CPU_SETSIZE.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; the set outlives the call.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: pid 0 is the calling thread; param is valid.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) == 0 }
}

impl Nudger {
    pub fn start(interval: Duration) -> std::io::Result<Nudger> {
        let shared: Shared = Arc::new((
            Mutex::new(State {
                stopped: false,
                active: true,
            }),
            Condvar::new(),
        ));
        let cpus = allowed_cpus();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut threads = Vec::with_capacity(cpus.len());
        for &cpu in &cpus {
            let (shared, tx) = (shared.clone(), tx.clone());
            let t = std::thread::Builder::new()
                .name(format!("mw-nudge-{cpu}"))
                .spawn(move || {
                    let _ = tx.send(pin_and_raise(cpu));
                    let (lock, cv) = &*shared;
                    let Ok(mut state) = lock.lock() else {
                        return;
                    };
                    while !state.stopped {
                        // Each timed wakeup is the nudge: the scheduler
                        // switches this CPU's running thread out to run us.
                        state = if state.active {
                            match cv.wait_timeout(state, interval) {
                                Ok((s, _)) => s,
                                Err(_) => return,
                            }
                        } else {
                            match cv.wait(state) {
                                Ok(s) => s,
                                Err(_) => return,
                            }
                        };
                    }
                })?;
            threads.push(t);
        }
        drop(tx);
        let realtime = rx.iter().take(cpus.len()).all(|rt| rt) && !cpus.is_empty();
        Ok(Nudger {
            shared,
            threads,
            cpus,
            realtime,
        })
    }

    pub fn switch(&self) -> NudgeSwitch {
        NudgeSwitch(self.shared.clone())
    }
}

impl Drop for Nudger {
    fn drop(&mut self) {
        let (lock, cv) = &*self.shared;
        if let Ok(mut s) = lock.lock() {
            s.stopped = true;
        }
        cv.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests count every nudging thread of this process: one at a time.
    static SERIAL: Mutex<()> = Mutex::new(());

    #[test]
    fn one_thread_per_allowed_cpu_and_a_prompt_stop() {
        let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let n = Nudger::start(Duration::from_secs(3600)).unwrap();
        assert!(!n.cpus.is_empty());
        assert_eq!(n.threads.len(), n.cpus.len());
        let t0 = std::time::Instant::now();
        drop(n);
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "stop wakes the sleepers"
        );
    }

    /// Voluntary switches of the nudging threads over `d`.
    fn switches(d: Duration) -> u64 {
        let count = || -> u64 {
            let me = std::process::id();
            let mut n = 0;
            for t in std::fs::read_dir(format!("/proc/{me}/task"))
                .unwrap()
                .flatten()
            {
                let p = t.path();
                let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
                if !comm.starts_with("mw-nudge") {
                    continue;
                }
                let status = std::fs::read_to_string(p.join("status")).unwrap_or_default();
                n += status
                    .lines()
                    .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0);
            }
            n
        };
        let before = count();
        std::thread::sleep(d);
        count().saturating_sub(before)
    }

    #[test]
    fn switched_off_the_threads_sleep_untimed_and_switched_on_they_nudge_again() {
        let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let n = Nudger::start(Duration::from_millis(10)).unwrap();
        let switch = n.switch();
        assert!(switch.active(), "nudges start on");
        let on = switches(Duration::from_millis(300));
        switch.set(false);
        std::thread::sleep(Duration::from_millis(50));
        let off = switches(Duration::from_millis(300));
        switch.set(true);
        let again = switches(Duration::from_millis(300));
        let per_cpu = n.cpus.len() as u64;
        // 300 ms at 10 ms: ~30 wakeups per thread; allow for a loaded host.
        assert!(on >= 10 * per_cpu, "on: {on} switches");
        assert_eq!(off, 0, "off: no wakeups at all");
        assert!(again >= 10 * per_cpu, "on again: {again} switches");
    }
}
