//! A benign CPU burner: `burn SECONDS [THREADS] [DUTY_PERCENT]`. Busy-loops
//! with no network, optionally throttled to a duty cycle. Used as the
//! "busy unverified binary" look-alike and in the CPU sensor tests.

use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let threads: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let duty: u64 = args
        .get(3)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100)
        .clamp(1, 100);
    let deadline = Instant::now() + Duration::from_secs_f64(secs.clamp(0.0, 600.0));
    let handles: Vec<_> = (0..threads.clamp(1, 64))
        .map(|_| std::thread::spawn(move || burn(deadline, duty)))
        .collect();
    let mut total = 0u64;
    for h in handles {
        total = total.wrapping_add(h.join().unwrap_or(0));
    }
    // Print so the optimiser cannot drop the work.
    println!("{total}");
}

fn burn(deadline: Instant, duty: u64) -> u64 {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let period = Duration::from_millis(100);
    while Instant::now() < deadline {
        let start = Instant::now();
        let busy = period * duty as u32 / 100;
        while start.elapsed() < busy {
            for _ in 0..1000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
            }
        }
        if duty < 100 {
            std::thread::sleep(period - busy);
        }
    }
    x
}
