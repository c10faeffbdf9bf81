//! Fork storm for benchmarks: fork + _exit + wait `COUNT` times. Prints forks/s.

use std::time::Instant;

fn main() {
    let count: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let t0 = Instant::now();
    for _ in 0..count {
        // SAFETY: the child exits immediately with an async-signal-safe call.
        unsafe {
            let pid = libc::fork();
            if pid == 0 {
                libc::_exit(0);
            }
            if pid > 0 {
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
    }
    println!("{:.0}", count as f64 / t0.elapsed().as_secs_f64());
}
