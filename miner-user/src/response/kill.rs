//! Kill a process tree through pidfds, safe against pid reuse.
//!
//! A pid names whoever holds it now; a pidfd names one process for good.
//! We open a pidfd, then check through /proc that the process behind the
//! pid still has the start time (and executable) the verdict named: if the
//! miner exited and its pid was reused in between, the check fails and
//! nothing is signalled. The tree is frozen (SIGSTOP) before it is killed,
//! so a worker cannot fork a replacement between our scan and the kill.

use std::{
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::Path,
    time::{Duration, Instant},
};

/// What the verdict says the target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub tgid: u32,
    /// ns since boot (`/proc/PID/stat` field 22 clock); 0 = unknown.
    pub start_boottime_ns: u64,
    /// (st_dev, st_ino) of the executable; None = do not check.
    pub exe: Option<(u64, u64)>,
}

#[derive(Debug)]
pub enum KillOutcome {
    /// Dead, confirmed by the pidfd, this long after the kill started.
    Killed {
        latency: Duration,
    },
    /// Signalled, but still not reaped when the timeout expired.
    Signalled,
    /// Already gone before we got to it.
    Gone,
    /// The pid now belongs to another process (or another executable).
    Mismatch(Mismatch),
    /// A child found in /proc that a refusal protects: not signalled.
    Refused(String),
    Failed(KillError),
}

/// Why the process behind a pid is not the one the verdict named.
#[derive(Debug, thiserror::Error)]
pub enum Mismatch {
    /// No such process (any more): not a mismatch, nothing to kill.
    #[error("gone")]
    Gone,
    #[error("pid {tgid} was reused (start time {start_ns} ns, expected {expected_ns} ns)")]
    Reused {
        tgid: u32,
        start_ns: u64,
        expected_ns: u64,
    },
    #[error("pid {tgid} runs another executable ({dev}:{ino})")]
    OtherExecutable { tgid: u32, dev: u64, ino: u64 },
    #[error("pid {tgid}: {source}")]
    Unreadable {
        tgid: u32,
        #[source]
        source: std::io::Error,
    },
}

/// A kill the kernel refused.
#[derive(Debug, thiserror::Error)]
pub enum KillError {
    #[error("pidfd_open: {0}")]
    PidfdOpen(#[source] std::io::Error),
    #[error("pidfd_send_signal: {0}")]
    Signal(#[source] std::io::Error),
}

fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: plain syscall; returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn pidfd_signal(fd: &OwnedFd, sig: i32) -> std::io::Result<()> {
    // SAFETY: valid pidfd; null siginfo is allowed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Wait until the pidfd's process has exited (pidfd readable).
fn wait_exit(fd: &OwnedFd, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    rc > 0
}

fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// (ppid, start time in ns since boot) from /proc/PID/stat.
pub fn stat_of(proc_root: &Path, pid: u32) -> Option<(u32, u64)> {
    let s = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    // comm may contain spaces and parens: fields restart after the last ')'.
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ppid = f.get(1)?.parse().ok()?;
    let ticks: u64 = f.get(19)?.parse().ok()?;
    Some((ppid, ticks * (1_000_000_000 / clk_tck())))
}

/// Does the process behind `pid` (now) match the identity?
pub fn check_identity(proc_root: &Path, id: &Identity) -> Result<(), Mismatch> {
    let Some((_, start)) = stat_of(proc_root, id.tgid) else {
        return Err(Mismatch::Gone);
    };
    if id.start_boottime_ns != 0 {
        let tick = 1_000_000_000 / clk_tck();
        // /proc rounds down to a clock tick.
        if start.abs_diff(id.start_boottime_ns - id.start_boottime_ns % tick) > tick {
            return Err(Mismatch::Reused {
                tgid: id.tgid,
                start_ns: start,
                expected_ns: id.start_boottime_ns,
            });
        }
    }
    if let Some((dev, ino)) = id.exe {
        use std::os::unix::fs::MetadataExt;
        let dir = proc_root.join(id.tgid.to_string());
        let exe = dir.join("exe");
        match std::fs::metadata(&exe) {
            Ok(m) if (m.dev(), m.ino()) == (dev, ino) => {}
            // On overlayfs the kernel's device is the overlay's, not stat()'s.
            Ok(_)
                if crate::provenance::overlay::same_path(
                    &exe,
                    dev,
                    ino,
                    &[&dir.join("mountinfo")],
                ) => {}
            Ok(m) => {
                return Err(Mismatch::OtherExecutable {
                    tgid: id.tgid,
                    dev: m.dev(),
                    ino: m.ino(),
                });
            }
            Err(source) => {
                return Err(Mismatch::Unreadable {
                    tgid: id.tgid,
                    source,
                });
            }
        }
    }
    Ok(())
}

/// Children of a process, from every thread's `children` file.
pub fn children(proc_root: &Path, pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(proc_root.join(pid.to_string()).join("task")) else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

struct Opened {
    tgid: u32,
    fd: OwnedFd,
    walk: bool,
}

/// A process to kill, as the verdict (or the table) knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Root {
    pub id: Identity,
    /// Also kill its descendants. False for an ancestor of the flagged
    /// process: it is the miner's binary, but its other children are not
    /// the miner's tree.
    pub walk: bool,
}

/// What to do with a child found in /proc under a frozen member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vet {
    Kill,
    /// A refusal protects it; reported, and its own children are left alone.
    Refuse(String),
    /// Already decided elsewhere (refused at plan time): leave it, silently.
    Skip,
}

/// Freeze, then kill, the roots and their descendants. `roots` carry the
/// identity the verdict or table saw; a descendant found in /proc is asked
/// of `vet` (the refusals) and must still be a child of the frozen member
/// it was found under once we hold its pidfd.
pub fn kill_tree(
    proc_root: &Path,
    roots: &[Root],
    vet: &mut dyn FnMut(u32) -> Vet,
    timeout: Duration,
) -> Vec<(u32, KillOutcome)> {
    let started = Instant::now();
    let mut outcomes = Vec::new();
    let mut opened: Vec<Opened> = Vec::new();
    let mut passed: Vec<u32> = Vec::new();
    for root in roots {
        let id = &root.id;
        if opened.iter().any(|o| o.tgid == id.tgid) {
            continue;
        }
        let fd = match pidfd_open(id.tgid) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                outcomes.push((id.tgid, KillOutcome::Gone));
                continue;
            }
            Err(e) => {
                outcomes.push((id.tgid, KillOutcome::Failed(KillError::PidfdOpen(e))));
                continue;
            }
        };
        match check_identity(proc_root, id) {
            Ok(()) => {}
            Err(Mismatch::Gone) => {
                outcomes.push((id.tgid, KillOutcome::Gone));
                continue;
            }
            Err(m) => {
                outcomes.push((id.tgid, KillOutcome::Mismatch(m)));
                continue;
            }
        }
        let _ = pidfd_signal(&fd, libc::SIGSTOP);
        opened.push(Opened {
            tgid: id.tgid,
            fd,
            walk: root.walk,
        });
    }
    // Descendants: breadth-first over frozen members.
    let mut i = 0;
    while i < opened.len() && opened.len() < 4096 {
        let (parent, walk) = (opened[i].tgid, opened[i].walk);
        i += 1;
        if !walk {
            continue;
        }
        for child in children(proc_root, parent) {
            if opened.iter().any(|o| o.tgid == child) || passed.contains(&child) {
                continue;
            }
            let Ok(fd) = pidfd_open(child) else { continue };
            // Still our member's child now that we hold its pidfd?
            if stat_of(proc_root, child).map(|(ppid, _)| ppid) != Some(parent) {
                continue;
            }
            match vet(child) {
                Vet::Kill => {}
                Vet::Refuse(reason) => {
                    passed.push(child);
                    outcomes.push((child, KillOutcome::Refused(reason)));
                    continue;
                }
                Vet::Skip => {
                    passed.push(child);
                    continue;
                }
            }
            let _ = pidfd_signal(&fd, libc::SIGSTOP);
            opened.push(Opened {
                tgid: child,
                fd,
                walk: true,
            });
        }
    }
    for o in &opened {
        if let Err(e) = pidfd_signal(&o.fd, libc::SIGKILL)
            && e.raw_os_error() != Some(libc::ESRCH)
        {
            outcomes.push((o.tgid, KillOutcome::Failed(KillError::Signal(e))));
        }
    }
    let deadline = started + timeout;
    for o in opened {
        if outcomes.iter().any(|(t, _)| *t == o.tgid) {
            continue;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let outcome = if wait_exit(&o.fd, left) {
            KillOutcome::Killed {
                latency: started.elapsed(),
            }
        } else {
            KillOutcome::Signalled
        };
        outcomes.push((o.tgid, outcome));
    }
    outcomes
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn root(id: Identity) -> Root {
        Root { id, walk: true }
    }

    fn identity_of(pid: u32) -> Identity {
        let (_, start) = stat_of(Path::new("/proc"), pid).unwrap();
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(format!("/proc/{pid}/exe")).unwrap();
        Identity {
            tgid: pid,
            start_boottime_ns: start,
            exe: Some((m.dev(), m.ino())),
        }
    }

    #[test]
    fn kills_a_tree_and_confirms_death() {
        // sh → sleep (child): both die.
        let mut sh = Command::new("/bin/sh")
            .args(["-c", "sleep 30 & sleep 30; wait"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let id = identity_of(sh.id());
        let kids = children(Path::new("/proc"), sh.id());
        assert_eq!(kids.len(), 2, "two sleeps");
        let out = kill_tree(
            Path::new("/proc"),
            &[root(id)],
            &mut |_| Vet::Kill,
            Duration::from_secs(1),
        );
        let _ = sh.wait();
        assert_eq!(out.len(), 3, "{out:?}");
        for (pid, o) in &out {
            assert!(matches!(o, KillOutcome::Killed { .. }), "{pid}: {o:?}");
        }
        for k in kids {
            assert!(
                !Path::new(&format!("/proc/{k}")).exists()
                    || stat_of(Path::new("/proc"), k).is_none_or(|(p, _)| p != id.tgid)
            );
        }
    }

    #[test]
    fn a_reused_pid_is_not_signalled() {
        let mut victim = Command::new("/bin/sleep").arg("30").spawn().unwrap();
        let mut id = identity_of(victim.id());
        // Pretend the verdict named an older process that had this pid.
        id.start_boottime_ns -= 5_000_000_000;
        let out = kill_tree(
            Path::new("/proc"),
            &[root(id)],
            &mut |_| Vet::Kill,
            Duration::from_millis(200),
        );
        assert!(matches!(out[0].1, KillOutcome::Mismatch(_)), "{out:?}");
        assert!(
            victim.try_wait().unwrap().is_none(),
            "the innocent process lives"
        );
        victim.kill().unwrap();
        victim.wait().unwrap();
    }

    #[test]
    fn a_target_that_exited_before_the_kill_is_gone_and_nothing_is_signalled() {
        let mut c = Command::new("/bin/true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        let id = Identity {
            tgid: pid,
            start_boottime_ns: 1,
            exe: None,
        };
        let out = kill_tree(
            Path::new("/proc"),
            &[root(id)],
            &mut |_| Vet::Kill,
            Duration::from_millis(100),
        );
        assert!(
            matches!(out[0].1, KillOutcome::Gone | KillOutcome::Mismatch(_)),
            "{out:?}"
        );
    }
}
