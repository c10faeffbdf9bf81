//! The startup sweep: what was already running before the agent.
//!
//! The kernel only tells us about execs and connects from the moment the
//! programs attach; a miner started yesterday would stay invisible. So at
//! start the daemon reads /proc once and synthesises the events the kernel
//! would have sent (`source: sweep`): an `exec` per process, parents before
//! children, then a `connect` per outbound TCP connection and a `listen` per
//! listening TCP socket held (by every process holding it: a pre-forked
//! worker holds its master's), in every network and pid namespace. Every pid is a host pid (the directory name in the
//! host's /proc), the same numbering kernel events use.
//!
//! Processes exit while we read them; that is normal and never an error.

mod parse;
#[cfg(test)]
mod props;
mod sockets;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use self::parse::{
    PF_KTHREAD, Stat, TCP_ESTABLISHED, TCP_LISTEN, TCP_SYN_SENT, cgroup_v2_path, cgroup2_mount,
    normalize, parse_cmdline, parse_ids, parse_stat, pick_cgroup,
};
pub use self::sockets::{Flow, FlowResolver};
use self::sockets::{NetNs, netns_of, owners, tables};
use crate::event::{Connect, ConnectResult, Event, ExeId, Exec, Listen, Source};
use crate::provenance::ExeLink;
use crate::time::Mono;

#[derive(Debug, thiserror::Error)]
pub enum ProcfsError {
    #[error("cannot read {path}; run as root with the host's /proc (hostPID: true in Kubernetes)")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: unexpected format ({what})")]
    Format { path: PathBuf, what: &'static str },
}

/// The sweep's events, and how many things could not be read for a reason
/// other than a process exiting (permissions, format), for the log.
#[derive(Debug, Default)]
pub struct SweepResult {
    pub events: Vec<Event>,
    pub errors: usize,
}

/// Arguments kept per process: enough for rules on miner flags
/// (`-o pool:3333 --donate-level`), bounded against megabyte cmdlines.
const MAX_ARGV_BYTES: usize = 4096;

/// Reads every process and its outbound TCP connections under `proc_root`
/// (normally `/proc`); events carry `now`.
pub fn sweep(proc_root: &Path, now: Mono) -> SweepResult {
    let mut errors = 0;
    let pids = match list_pids(proc_root) {
        Ok(p) => p,
        Err(e) => {
            log::warn!("startup sweep skipped: {e}");
            return SweepResult {
                events: Vec::new(),
                errors: 1,
            };
        }
    };
    let ctx = Context::new(proc_root);
    let mut procs = Vec::new();
    for pid in pids {
        match read_process(&ctx, pid, now) {
            Ok(Some(p)) => procs.push(p),
            Ok(None) => {}
            Err(e) => {
                log::debug!("sweep: {e}");
                errors += 1;
            }
        }
    }
    // Parents start before their children: a table fed in this order
    // always knows the parent when the child arrives.
    procs.sort_by_key(|p| (p.exec.start_boottime_ns, p.exec.tgid));
    let (connects, listens) = tcp_sockets(proc_root, &procs, now, &mut errors);
    let mut events: Vec<Event> = procs.into_iter().map(|p| Event::Exec(p.exec)).collect();
    events.extend(connects.into_iter().map(Event::Connect));
    events.extend(listens.into_iter().map(Event::Listen));
    SweepResult { events, errors }
}

/// What the sweep learns once, not per process.
struct Context<'a> {
    proc_root: &'a Path,
    ns_per_tick: f64,
    /// Where cgroup v2 is mounted, to turn a cgroup path into its id.
    cgroup2: Option<PathBuf>,
}

impl<'a> Context<'a> {
    fn new(proc_root: &'a Path) -> Self {
        // SAFETY: sysconf has no memory-safety preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let hz = if hz > 0 { hz as f64 } else { 100.0 };
        let cgroup2 = std::fs::read_to_string(proc_root.join("self/mountinfo"))
            .ok()
            .and_then(|m| cgroup2_mount(&m));
        Context {
            proc_root,
            ns_per_tick: 1e9 / hz,
            cgroup2,
        }
    }

    /// The cgroup id is the inode of the cgroup's v2 directory. Paths
    /// outside our cgroup namespace (`/../..`) cannot be resolved: 0.
    fn cgroup_id(&self, v2_path: &str) -> u64 {
        let Some(mount) = &self.cgroup2 else { return 0 };
        if v2_path.split('/').any(|c| c == "..") {
            return 0;
        }
        std::fs::metadata(mount.join(v2_path.trim_start_matches('/')))
            .map(|m| m.ino())
            .unwrap_or(0)
    }
}

struct Proc {
    exec: Exec,
    netns: NetNs,
}

/// The numeric entries of /proc: thread group leaders only (threads live
/// under `task/` and are not listed).
fn list_pids(proc_root: &Path) -> Result<Vec<u32>, ProcfsError> {
    let read_err = |source| ProcfsError::Read {
        path: proc_root.to_path_buf(),
        source,
    };
    let mut pids: Vec<u32> = std::fs::read_dir(proc_root)
        .map_err(read_err)?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

/// The process exited between listing and reading (or is exiting).
pub(crate) fn vanished(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
}

/// `Ok(None)`: vanished, a kernel thread, or a zombie (nothing runs).
fn read_process(ctx: &Context, pid: u32, now: Mono) -> Result<Option<Proc>, ProcfsError> {
    let dir = ctx.proc_root.join(pid.to_string());
    let read = |name: &str| -> Result<Option<Vec<u8>>, ProcfsError> {
        let path = dir.join(name);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if vanished(&e) => Ok(None),
            Err(source) => Err(ProcfsError::Read { path, source }),
        }
    };
    let Some(stat) = read("stat")? else {
        return Ok(None);
    };
    let stat: Stat = parse_stat(&String::from_utf8_lossy(&stat)).ok_or(ProcfsError::Format {
        path: dir.join("stat"),
        what: "no `pid (comm) state …` fields",
    })?;
    if stat.flags & PF_KTHREAD != 0 || stat.pid == 2 || matches!(stat.state, 'Z' | 'X') {
        return Ok(None);
    }
    let Some(status) = read("status")? else {
        return Ok(None);
    };
    let (uid, gid) = parse_ids(&String::from_utf8_lossy(&status)).ok_or(ProcfsError::Format {
        path: dir.join("status"),
        what: "no Uid/Gid lines",
    })?;
    let Some(cmdline) = read("cmdline")? else {
        return Ok(None);
    };
    let (argv, argv_truncated) = parse_cmdline(&cmdline, MAX_ARGV_BYTES);
    let exe = read_exe(&dir);
    if exe.is_none() && argv.is_empty() && stat.ppid == 2 {
        return Ok(None); // a kernel thread the flags did not mark
    }
    let cgroup_text = read("cgroup")?
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let cgroup_id = cgroup_v2_path(&cgroup_text)
        .map(|p| ctx.cgroup_id(p))
        .unwrap_or(0);
    let (exe_id, exe_path) = match exe {
        Some((id, path)) => (id, Some(path)),
        // Not ours to read (another user namespace's init): still a process.
        None => (
            ExeId {
                unknown: true,
                ..Default::default()
            },
            None,
        ),
    };
    let filename = exe_path
        .clone()
        .or_else(|| argv.first().cloned())
        .unwrap_or_default();
    let exec = Exec {
        time: now,
        tgid: pid,
        pid,
        ppid: stat.ppid,
        uid,
        gid,
        cgroup_id,
        start_boottime_ns: (stat.start_ticks as f64 * ctx.ns_per_tick) as u64,
        comm: stat.comm,
        filename,
        argv,
        argv_truncated,
        exe: exe_id,
        exe_path,
        cgroup: pick_cgroup(&cgroup_text),
        source: Source::Sweep,
    };
    Ok(Some(Proc {
        exec,
        netns: netns_of(ctx.proc_root, pid),
    }))
}

/// Identity and path of /proc/PID/exe, as the kernel's exec event gives
/// them: userspace st_dev, nlink 0 when deleted, memfd flagged.
fn read_exe(dir: &Path) -> Option<(ExeId, String)> {
    let link_path = dir.join("exe");
    let meta = std::fs::metadata(&link_path).ok()?;
    let link = std::fs::read_link(&link_path).ok()?;
    let parsed = ExeLink::parse(&link, meta.nlink());
    let path = parsed.display();
    let name = match &parsed {
        ExeLink::Memfd(name) => name.clone(),
        ExeLink::File(p) | ExeLink::Deleted(p) => p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let id = ExeId {
        dev: meta.dev(),
        ino: meta.ino(),
        nlink: meta.nlink() as u32,
        memfd: matches!(parsed, ExeLink::Memfd(_)),
        name,
        unknown: false,
    };
    Some((id, path))
}

/// The TCP sockets processes hold: outbound connections and listeners.
/// A connection is outbound when its local port is not one the namespace
/// listens on: the accepted side of an inbound connection shares the
/// listener's port, the connecting side has an ephemeral one.
fn tcp_sockets(
    proc_root: &Path,
    procs: &[Proc],
    now: Mono,
    errors: &mut usize,
) -> (Vec<Connect>, Vec<Listen>) {
    let mut members: HashMap<NetNs, Vec<u32>> = HashMap::new();
    for p in procs {
        members.entry(p.netns).or_default().push(p.exec.tgid);
    }
    let tables = tables(proc_root, &members, errors);
    // inode → (remote, state)
    let mut outbound: HashMap<u64, (SocketAddr, u8)> = HashMap::new();
    // inode → local address
    let mut listeners: HashMap<u64, SocketAddr> = HashMap::new();
    for entries in tables.values() {
        for e in entries
            .iter()
            .filter(|e| e.state == TCP_LISTEN && e.inode != 0)
        {
            listeners.insert(e.inode, e.local);
        }
        let listening: HashSet<u16> = entries
            .iter()
            .filter(|e| e.state == TCP_LISTEN)
            .map(|e| e.local.port())
            .collect();
        for e in entries {
            let connecting = matches!(e.state, TCP_ESTABLISHED | TCP_SYN_SENT);
            if connecting && e.inode != 0 && !listening.contains(&e.local.port()) {
                outbound.insert(e.inode, (e.remote, e.state));
            }
        }
    }
    let wanted: HashSet<u64> = outbound.keys().chain(listeners.keys()).copied().collect();
    let pids: Vec<u32> = procs.iter().map(|p| p.exec.tgid).collect();
    let by_tgid: HashMap<u32, &Exec> = procs.iter().map(|p| (p.exec.tgid, &p.exec)).collect();
    // (tgid, inode) ordered: one event per process per socket, stable order.
    let mut held: BTreeMap<(u32, u64), (SocketAddr, u8)> = BTreeMap::new();
    let mut listening: BTreeMap<(u32, u64), SocketAddr> = BTreeMap::new();
    for (inode, tgids) in owners(proc_root, &pids, &wanted) {
        for tgid in tgids {
            if let Some(&sock) = outbound.get(&inode) {
                held.insert((tgid, inode), sock);
            }
            if let Some(&local) = listeners.get(&inode) {
                listening.insert((tgid, inode), local);
            }
        }
    }
    let listens = listening
        .into_iter()
        .filter_map(|((tgid, _inode), local)| {
            let exec = by_tgid.get(&tgid)?;
            Some(Listen {
                time: now,
                tgid,
                pid: tgid,
                uid: exec.uid,
                comm: exec.comm.clone(),
                local: Some((normalize(local.ip()).0, local.port())),
                source: Source::Sweep,
            })
        })
        .collect();
    let connects = held
        .into_iter()
        .filter_map(|((tgid, _inode), (remote, state))| {
            let exec = by_tgid.get(&tgid)?;
            let (daddr, v4_mapped): (IpAddr, bool) = normalize(remote.ip());
            Some(Connect {
                time: now,
                tgid,
                pid: tgid,
                uid: exec.uid,
                comm: exec.comm.clone(),
                daddr,
                dport: remote.port(),
                // SYN_SENT: the kernel would have said EINPROGRESS
                result: if state == TCP_SYN_SENT {
                    ConnectResult::InProgress
                } else {
                    ConnectResult::Connected
                },
                cookie: 0,
                v4_mapped,
                source: Source::Sweep,
            })
        })
        .collect();
    (connects, listens)
}

#[cfg(test)]
mod tests;
