//! Context-switch-heavy load for benchmarks: two processes bounce one byte
//! over a pair of pipes `ROUNDS` times. Prints rounds/s.

use std::time::Instant;

fn main() {
    let rounds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    let mut a = [0i32; 2];
    let mut b = [0i32; 2];
    // SAFETY: plain pipe/fork/read/write on fds we own; the child only uses
    // async-signal-safe calls and _exit.
    unsafe {
        if libc::pipe(a.as_mut_ptr()) != 0 || libc::pipe(b.as_mut_ptr()) != 0 {
            eprintln!("pipe failed");
            std::process::exit(2);
        }
        let t0 = Instant::now();
        let pid = libc::fork();
        let mut byte = [0u8; 1];
        if pid == 0 {
            for _ in 0..rounds {
                if libc::read(a[0], byte.as_mut_ptr().cast(), 1) != 1 {
                    break;
                }
                libc::write(b[1], byte.as_ptr().cast(), 1);
            }
            libc::_exit(0);
        }
        for _ in 0..rounds {
            libc::write(a[1], byte.as_ptr().cast(), 1);
            if libc::read(b[0], byte.as_mut_ptr().cast(), 1) != 1 {
                break;
            }
        }
        libc::waitpid(pid, std::ptr::null_mut(), 0);
        println!("{:.0}", rounds as f64 / t0.elapsed().as_secs_f64());
    }
}
