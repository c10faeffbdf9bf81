//! Burns CPU in worker threads with a chosen SSE control register, for the
//! fpu sensor's tests: the kernel saves MXCSR at each context switch and
//! the sensor reports what a thread was switched out with.
//!
//! Usage: mxcsr MODE [--threads N] [--seconds S] [--sleep-ms MS]
//! - `randomx`: cycles 0x9FC0, 0xBFC0, 0xDFC0, 0xFFC0 (FTZ + DAZ, all four
//!   rounding modes), as RandomX's JIT does.
//! - `fast-math`: FTZ + DAZ at the default rounding, constant (0x9FC0).
//! - `fesetround`: cycles nearest/down/up/toward zero without FTZ/DAZ
//!   (0x1F80, 0x3F80, 0x5F80, 0x7F80), as interval arithmetic does.
//! - `default`: never touches MXCSR.
//!
//! Prints one line per worker, `tid N`, once it runs. `--sleep-ms` makes
//! each worker sleep that long every 10 ms of work (many context switches);
//! without it the workers only leave the CPU when preempted.

use std::{
    io::Write as _,
    time::{Duration, Instant},
};

fn set_mxcsr(v: u32) {
    // SAFETY: ldmxcsr only changes this thread's SSE control state; every
    // value used here has the reserved bits clear.
    unsafe { std::arch::asm!("ldmxcsr [{}]", in(reg) &v, options(nostack, readonly)) };
}

fn values(mode: &str) -> Option<&'static [u32]> {
    Some(match mode {
        "randomx" => &[0x9FC0, 0xBFC0, 0xDFC0, 0xFFC0],
        "fast-math" => &[0x9FC0],
        "fesetround" => &[0x1F80, 0x3F80, 0x5F80, 0x7F80],
        "default" => &[],
        _ => return None,
    })
}

fn work(vals: &'static [u32], until: Instant, sleep: Option<Duration>) -> f64 {
    let mut x = 1.000_001f64;
    let mut i = 0usize;
    let mut slice = Instant::now();
    while Instant::now() < until {
        if !vals.is_empty() {
            set_mxcsr(vals[i % vals.len()]);
            i = i.wrapping_add(1);
        }
        for _ in 0..2_000 {
            x = (x * 1.000_000_1 + 1e-9).sqrt() + 0.5;
        }
        if let Some(s) = sleep
            && slice.elapsed() >= Duration::from_millis(10)
        {
            std::thread::sleep(s);
            slice = Instant::now();
        }
    }
    x
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |k: &str| minerwatch_tests::flag(&args, k).and_then(|v| v.parse::<u64>().ok());
    let Some(vals) = args.get(1).and_then(|m| values(m)) else {
        eprintln!(
            "usage: mxcsr randomx|fast-math|fesetround|default [--threads N] [--seconds S] [--sleep-ms MS]"
        );
        std::process::exit(2);
    };
    let threads = get("--threads").unwrap_or(1).clamp(1, 64);
    let secs = get("--seconds").unwrap_or(10).min(600);
    let sleep = get("--sleep-ms").map(Duration::from_millis);
    let until = Instant::now() + Duration::from_secs(secs);
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                // SAFETY: gettid has no preconditions.
                let tid = unsafe { libc::gettid() };
                println!("tid {tid}");
                let _ = std::io::stdout().flush();
                work(vals, until, sleep)
            })
        })
        .collect();
    let mut sum = 0.0;
    for w in workers {
        sum += w.join().unwrap_or(0.0);
    }
    // Keep the arithmetic observable so it is not optimised away.
    if sum.is_nan() {
        println!("nan");
    }
}
