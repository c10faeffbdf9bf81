//! TCP sockets of every network namespace, and the processes holding them.
//!
//! /proc/net/tcp has no pid column: a socket is tied to a process only by
//! its inode appearing as `socket:[N]` among the process's fds. Each
//! process's `/proc/PID/net/tcp` shows the table of *its* network
//! namespace, so reading one process per namespace covers containers too.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;
use std::net::IpAddr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::parse::{TcpEntry, normalize, parse_tcp, socket_inode};
use super::{ProcfsError, vanished};

/// A network namespace, by its nsfs inode; `Pid` when the namespace link
/// could not be read (that process's table is then read on its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum NetNs {
    Inode(u64, u64),
    Pid(u32),
}

pub(crate) fn netns_of(proc_root: &Path, pid: u32) -> NetNs {
    match std::fs::metadata(proc_root.join(pid.to_string()).join("ns/net")) {
        Ok(m) => NetNs::Inode(m.dev(), m.ino()),
        Err(_) => NetNs::Pid(pid),
    }
}

/// The TCP table (v4 and v6) of each namespace, read through the first of
/// its processes still alive. `errors` counts tables unreadable for a
/// reason other than the process exiting.
pub(crate) fn tables(
    proc_root: &Path,
    members: &HashMap<NetNs, Vec<u32>>,
    errors: &mut usize,
) -> HashMap<NetNs, Vec<TcpEntry>> {
    let mut out = HashMap::new();
    for (ns, pids) in members {
        for &pid in pids {
            match read_table(proc_root, pid) {
                Ok(Some(t)) => {
                    out.insert(*ns, t);
                    break;
                }
                Ok(None) => continue, // exited: try the next member
                Err(e) => {
                    log::debug!("tcp table of pid {pid}: {e}");
                    *errors += 1;
                    break;
                }
            }
        }
    }
    out
}

fn read_table(proc_root: &Path, pid: u32) -> io::Result<Option<Vec<TcpEntry>>> {
    let dir = proc_root.join(pid.to_string()).join("net");
    let mut entries = Vec::new();
    for (file, v6) in [("tcp", false), ("tcp6", true)] {
        match std::fs::read_to_string(dir.join(file)) {
            Ok(text) => entries.extend(parse_tcp(&text, v6)),
            // No IPv6 in this namespace (or kernel) is normal.
            Err(e) if v6 && e.kind() == io::ErrorKind::NotFound => {}
            Err(e) if vanished(&e) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Ok(Some(entries))
}

/// For each inode in `wanted`, the tgids with an fd on it. A socket
/// inherited across fork is held by several processes; all are returned.
pub(crate) fn owners(
    proc_root: &Path,
    pids: &[u32],
    wanted: &HashSet<u64>,
) -> HashMap<u64, BTreeSet<u32>> {
    let mut found: HashMap<u64, BTreeSet<u32>> = HashMap::new();
    if wanted.is_empty() {
        return found;
    }
    for &pid in pids {
        let Ok(fds) = std::fs::read_dir(proc_root.join(pid.to_string()).join("fd")) else {
            continue; // exited, or not ours to read
        };
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            if let Some(inode) = socket_inode(link.as_os_str().as_bytes())
                && wanted.contains(&inode)
            {
                found.entry(inode).or_default().insert(pid);
            }
        }
    }
    found
}

type Endpoint = (IpAddr, u16);

/// A TCP flow as the egress hook sees it: `s` is the local end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    pub saddr: IpAddr,
    pub sport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
}

/// Finds the process behind a flow opened before the agent (no connect
/// event, so no cookie to link it): the socket whose 4-tuple matches, then
/// the process holding that socket. A full /proc walk, so meant for the
/// rare untracked payload, and batched when there are several.
#[derive(Debug, Clone)]
pub struct FlowResolver {
    proc_root: PathBuf,
}

impl FlowResolver {
    pub fn new(proc_root: impl Into<PathBuf>) -> Self {
        FlowResolver {
            proc_root: proc_root.into(),
        }
    }

    /// The host tgid holding the flow's socket (the lowest, if inherited by
    /// several); `None` when no socket matches any more.
    pub fn resolve(&self, flow: &Flow) -> Result<Option<u32>, ProcfsError> {
        Ok(self
            .resolve_all(std::slice::from_ref(flow))?
            .pop()
            .flatten())
    }

    /// One walk of /proc for all `flows`; results in the same order.
    pub fn resolve_all(&self, flows: &[Flow]) -> Result<Vec<Option<u32>>, ProcfsError> {
        let pids = super::list_pids(&self.proc_root)?;
        let mut members: HashMap<NetNs, Vec<u32>> = HashMap::new();
        for &pid in &pids {
            members
                .entry(netns_of(&self.proc_root, pid))
                .or_default()
                .push(pid);
        }
        let mut errors = 0;
        let tables = tables(&self.proc_root, &members, &mut errors);
        // v4-mapped and plain v4 ends compare equal
        let key = |ip: IpAddr, port: u16| -> Endpoint { (normalize(ip).0, port) };
        let mut inode_of: HashMap<(Endpoint, Endpoint), u64> = HashMap::new();
        for e in tables.values().flatten().filter(|e| e.inode != 0) {
            inode_of.insert(
                (
                    key(e.local.ip(), e.local.port()),
                    key(e.remote.ip(), e.remote.port()),
                ),
                e.inode,
            );
        }
        let inodes: Vec<Option<u64>> = flows
            .iter()
            .map(|f| {
                inode_of
                    .get(&(key(f.saddr, f.sport), key(f.daddr, f.dport)))
                    .copied()
            })
            .collect();
        let wanted: HashSet<u64> = inodes.iter().flatten().copied().collect();
        let held = owners(&self.proc_root, &pids, &wanted);
        Ok(inodes
            .into_iter()
            .map(|i| held.get(&i?).and_then(|tgids| tgids.first().copied()))
            .collect())
    }
}
