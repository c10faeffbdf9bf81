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

use std::{
    sync::{Arc, Condvar, Mutex},
    thread::JoinHandle,
    time::Duration,
};

/// The nudging threads; dropping it stops and joins them.
pub struct Nudger {
    stop: Arc<(Mutex<bool>, Condvar)>,
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
        let stop: Arc<(Mutex<bool>, Condvar)> = Arc::default();
        let cpus = allowed_cpus();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut threads = Vec::with_capacity(cpus.len());
        for &cpu in &cpus {
            let (stop, tx) = (stop.clone(), tx.clone());
            let t = std::thread::Builder::new()
                .name(format!("mw-nudge-{cpu}"))
                .spawn(move || {
                    let _ = tx.send(pin_and_raise(cpu));
                    let (lock, cv) = &*stop;
                    let Ok(mut stopped) = lock.lock() else {
                        return;
                    };
                    while !*stopped {
                        // Each wakeup is the nudge: the scheduler switches
                        // this CPU's running thread out to run us.
                        match cv.wait_timeout(stopped, interval) {
                            Ok((s, _)) => stopped = s,
                            Err(_) => return,
                        }
                    }
                })?;
            threads.push(t);
        }
        drop(tx);
        let realtime = rx.iter().take(cpus.len()).all(|rt| rt) && !cpus.is_empty();
        Ok(Nudger {
            stop,
            threads,
            cpus,
            realtime,
        })
    }
}

impl Drop for Nudger {
    fn drop(&mut self) {
        let (lock, cv) = &*self.stop;
        if let Ok(mut s) = lock.lock() {
            *s = true;
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

    #[test]
    fn one_thread_per_allowed_cpu_and_a_prompt_stop() {
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
}
