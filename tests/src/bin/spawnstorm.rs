//! Exec storm for benchmarks: posix_spawn `PROGRAM` `COUNT` times with
//! `IN_FLIGHT` children at once. Prints execs/s.
//! Usage: spawnstorm COUNT [IN_FLIGHT] [PROGRAM]

use std::{collections::VecDeque, ffi::CString, time::Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let count: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let in_flight: usize = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2)
        .clamp(1, 64);
    let prog = CString::new(args.get(3).cloned().unwrap_or_else(|| "/bin/true".into()))
        .unwrap_or_default();
    let argv = [prog.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null::<libc::c_char>()];
    let mut running: VecDeque<libc::pid_t> = VecDeque::new();
    let t0 = Instant::now();
    for _ in 0..count {
        if running.len() >= in_flight
            && let Some(p) = running.pop_front()
        {
            // SAFETY: reaping our own child.
            unsafe { libc::waitpid(p, std::ptr::null_mut(), 0) };
        }
        let mut pid: libc::pid_t = 0;
        // SAFETY: valid NUL-terminated argv/envp arrays that outlive the call.
        let rc = unsafe {
            libc::posix_spawn(
                &mut pid,
                prog.as_ptr(),
                std::ptr::null(),
                std::ptr::null(),
                argv.as_ptr() as *const *mut _,
                envp.as_ptr() as *const *mut _,
            )
        };
        if rc == 0 {
            running.push_back(pid);
        }
    }
    for p in running {
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(p, std::ptr::null_mut(), 0) };
    }
    println!("{:.0}", count as f64 / t0.elapsed().as_secs_f64());
}
