//! Synthetic recordings for `cargo xtask bench`, written with minerwatch's
//! own recording module (typed events, the one writer), never by hand.
//!
//! Usage: recording_gen mix EVENTS FILE   # short processes + busy ones
//!        recording_gen live PROCESSES FILE  # that many live processes
//! Prints the number of events written.

use std::io::{BufWriter, Write};

use minerwatch::{
    event::{Connect, ConnectResult, CpuSample, CpuUsage, Event, ExeId, Exec, Exit, Fork, Source},
    recording,
    time::Mono,
};

fn exe(ino: u64, name: &str) -> ExeId {
    ExeId {
        dev: 65024,
        ino,
        nlink: 1,
        memfd: false,
        name: name.into(),
        unknown: false,
    }
}

fn exec(t: u64, tgid: u32, ppid: u32, comm: &str, path: &str, argv: &[&str], ino: u64) -> Event {
    Event::Exec(Exec {
        time: Mono(t),
        tgid,
        pid: tgid,
        ppid,
        uid: 0,
        gid: 0,
        cgroup_id: 1,
        start_boottime_ns: t,
        comm: comm.into(),
        filename: path.into(),
        argv: argv.iter().map(|a| a.to_string()).collect(),
        argv_truncated: false,
        exe: exe(ino, comm),
        exe_path: None,
        cgroup: None,
        source: Source::Kernel,
    })
}

fn connect(t: u64, tgid: u32, comm: &str, port: u16) -> Event {
    Event::Connect(Connect {
        time: Mono(t),
        tgid,
        pid: tgid,
        uid: 0,
        comm: comm.into(),
        daddr: "10.0.0.1".parse().expect("ip"),
        dport: port,
        result: ConnectResult::Connected,
        cookie: u64::from(tgid),
        v4_mapped: false,
        source: Source::Kernel,
    })
}

/// A realistic mix: short processes (fork, exec, connect, exit), a few
/// long-lived busy ones, a CPU sample and a tick every second.
fn mix(out: &mut impl Write, target: usize) -> std::io::Result<usize> {
    let mut n = 0usize;
    let mut t: u64 = 1_000_000_000_000;
    let mut tgid: u32 = 10_000;
    let mut next_sample = t;
    while n < target {
        tgid = if tgid > 4_000_000 { 10_000 } else { tgid + 1 };
        t += 200_000;
        recording::write_event(
            out,
            &Event::Fork(Fork {
                time: Mono(t),
                parent_tgid: 1000,
                child_tgid: tgid,
                child_start_boottime_ns: t,
                comm: "bash".into(),
            }),
        )?;
        recording::write_event(
            out,
            &exec(
                t + 1000,
                tgid,
                1000,
                "curl",
                "/usr/bin/curl",
                &["curl", "-s", "http://10.0.0.1/"],
                1234,
            ),
        )?;
        recording::write_event(out, &connect(t + 2000, tgid, "curl", 80))?;
        recording::write_event(
            out,
            &Event::Exit(Exit {
                time: Mono(t + 3000),
                tgid,
                status: 0,
                signal: 0,
                cpu_ns: 1_000_000,
                comm: "curl".into(),
            }),
        )?;
        n += 4;
        if t >= next_sample {
            recording::write_event(
                out,
                &Event::CpuSample(CpuSample {
                    time: Mono(t),
                    interval_ns: 1_000_000_000,
                    usage: vec![
                        CpuUsage {
                            tgid: 1000,
                            on_cpu_ns: 5_000_000,
                        },
                        CpuUsage {
                            tgid: 999,
                            on_cpu_ns: 900_000_000,
                        },
                    ],
                }),
            )?;
            recording::write_tick(out, Mono(t))?;
            n += 1;
            next_sample = t + 1_000_000_000;
        }
    }
    Ok(n)
}

/// `n` processes that exec and stay alive, each with a connection.
fn live(out: &mut impl Write, n: usize) -> std::io::Result<usize> {
    let mut t: u64 = 1_000_000_000_000;
    for i in 0..n {
        let tgid = 10_000 + i as u32;
        t += 100_000;
        let id = i.to_string();
        recording::write_event(
            out,
            &exec(
                t,
                tgid,
                1,
                "worker",
                "/usr/bin/worker",
                &["worker", "--id", &id],
                1000 + (i % 50) as u64,
            ),
        )?;
        recording::write_event(out, &connect(t + 1000, tgid, "worker", 443))?;
    }
    recording::write_tick(out, Mono(t + 1))?;
    Ok(2 * n)
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(mode), Some(count), Some(path)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("usage: recording_gen mix|live COUNT FILE");
        std::process::exit(2);
    };
    let Ok(count) = count.parse::<usize>() else {
        eprintln!("recording_gen: COUNT must be a number, got {count:?}");
        std::process::exit(2);
    };
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let n = match mode.as_str() {
        "mix" => mix(&mut out, count)?,
        "live" => live(&mut out, count)?,
        other => {
            eprintln!("recording_gen: unknown mode {other:?}; use mix or live");
            std::process::exit(2);
        }
    };
    out.flush()?;
    println!("{n}");
    Ok(())
}
