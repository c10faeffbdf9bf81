//! Parsers for /proc text formats: pure functions, tested on fixtures.
//!
//! Every field here is written by the kernel but some of it is chosen by
//! the process (comm, cmdline), so nothing may assume it is well-formed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

/// The fields of `/proc/PID/stat` the sweep needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stat {
    pub pid: u32,
    pub comm: String,
    pub state: char,
    pub ppid: u32,
    pub flags: u32,
    /// Field 22: clock ticks after boot.
    pub start_ticks: u64,
}

/// `PF_KTHREAD` in the stat flags: a kernel thread, which has no binary.
pub(crate) const PF_KTHREAD: u32 = 0x0020_0000;

/// `pid (comm) state ppid …`. comm may hold spaces and parentheses
/// (`prctl(PR_SET_NAME)` takes any bytes), so it ends at the *last* `)`.
pub(crate) fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text.get(..open)?.trim().parse().ok()?;
    let comm = text.get(open + 1..close)?.to_string();
    // Fields after comm; field N of proc(5) is at index N - 3.
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    Some(Stat {
        pid,
        comm,
        state: rest.first()?.chars().next()?,
        ppid: rest.get(1)?.parse().ok()?,
        flags: rest.get(6)?.parse().ok()?,
        start_ticks: rest.get(19)?.parse().ok()?,
    })
}

/// Real uid and gid from `/proc/PID/status` (`Uid:\treal\teff\tsaved\tfs`),
/// the ids the kernel's exec event reports.
pub(crate) fn parse_ids(status: &str) -> Option<(u32, u32)> {
    let first = |key: &str| -> Option<u32> {
        let line = status.lines().find_map(|l| l.strip_prefix(key))?;
        line.split_whitespace().next()?.parse().ok()
    };
    Some((first("Uid:")?, first("Gid:")?))
}

/// NUL-separated arguments, at most `max_bytes` of them. A process that
/// rewrote its title (setproctitle) may have no NULs: one argument then.
pub(crate) fn parse_cmdline(bytes: &[u8], max_bytes: usize) -> (Vec<String>, bool) {
    let truncated = bytes.len() > max_bytes;
    let bytes = &bytes[..bytes.len().min(max_bytes)];
    let bytes = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    if bytes.is_empty() {
        return (Vec::new(), truncated);
    }
    let args = bytes
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    (args, truncated)
}

/// Path components that name container runtimes in cgroup paths.
const CONTAINER_MARKERS: &[&str] = &[
    "kubepods",
    "docker",
    "containerd",
    "crio",
    "libpod",
    "lxc",
    "machine.slice",
];

/// The cgroup that best identifies the process's container. Pure v2: the
/// `0::` line. Hybrid or v1: the v2 line only if it names a container,
/// else the first v1 line that does, else the first non-root v1 path
/// (some runtimes only place processes in a few controllers).
pub(crate) fn pick_cgroup(text: &str) -> Option<String> {
    let lines: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (id, _controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            Some((id, path))
        })
        .collect();
    let names_container = |p: &str| CONTAINER_MARKERS.iter().any(|m| p.contains(m));
    let v2 = lines.iter().find(|(id, _)| *id == "0").map(|(_, p)| *p);
    let v1 = || lines.iter().filter(|(id, _)| *id != "0").map(|(_, p)| *p);
    if let Some(p) = v2
        && (lines.len() == 1 || names_container(p))
    {
        return Some(p.to_string());
    }
    v1().find(|p| names_container(p))
        .or_else(|| v1().find(|p| *p != "/"))
        .or(v2)
        .or_else(|| v1().next())
        .map(str::to_string)
}

/// The `0::` (cgroup v2) path, for the cgroup id.
pub(crate) fn cgroup_v2_path(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("0::"))
}

/// Mount point of cgroup2 from a mountinfo: `id parent maj:min root mount
/// opts… - fstype source superopts`.
pub(crate) fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|l| {
        let (before, after) = l.split_once(" - ")?;
        if after.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        Some(PathBuf::from(unescape(before.split(' ').nth(4)?)))
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// TCP states as printed in /proc/net/tcp.
pub(crate) const TCP_ESTABLISHED: u8 = 0x01;
pub(crate) const TCP_SYN_SENT: u8 = 0x02;
pub(crate) const TCP_LISTEN: u8 = 0x0A;

/// One socket line of /proc/net/tcp or tcp6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TcpEntry {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: u8,
    pub inode: u64,
}

/// `sl local rem st tx:rx tr:when retrnsmt uid timeout inode …`; the header
/// and any malformed line are skipped.
pub(crate) fn parse_tcp(text: &str, v6: bool) -> Vec<TcpEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            Some(TcpEntry {
                local: parse_addr(f.get(1)?, v6)?,
                remote: parse_addr(f.get(2)?, v6)?,
                state: u8::from_str_radix(f.get(3)?, 16).ok()?,
                inode: f.get(9)?.parse().ok()?,
            })
        })
        .collect()
}

/// `0100007F:1F90`. The kernel prints each 32-bit word of the (network
/// order) address as a *native* integer with `%08X`, so on little-endian
/// machines the bytes of every word appear reversed; the port is already
/// in host order.
pub(crate) fn parse_addr(s: &str, v6: bool) -> Option<SocketAddr> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        Some(
            u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16)
                .ok()?
                .to_ne_bytes(),
        )
    };
    let ip = if v6 {
        if addr.len() != 32 {
            return None;
        }
        let mut octets = [0u8; 16];
        for i in 0..4 {
            octets[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
        }
        IpAddr::V6(Ipv6Addr::from(octets))
    } else {
        if addr.len() != 8 {
            return None;
        }
        IpAddr::V4(Ipv4Addr::from(word(0)?))
    };
    Some(SocketAddr::new(ip, port))
}

/// A v4-mapped v6 address (`::ffff:1.2.3.4`, a dual-stack socket talking
/// IPv4) as the v4 address it is; `true` when it was mapped.
pub(crate) fn normalize(ip: IpAddr) -> (IpAddr, bool) {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => (IpAddr::V4(v4), true),
            None => (ip, false),
        },
        v4 => (v4, false),
    }
}

/// `socket:[12345]` → 12345.
pub(crate) fn socket_inode(link: &[u8]) -> Option<u64> {
    let inner = link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(inner).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (comm, state, ppid, start ticks); `None`: unparseable.
    type StatWant = Option<(&'static str, char, u32, u64)>;

    #[test]
    fn stat_lines_with_hostile_comms() {
        let tail = "S 1 1234 1234 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 987654 1000 200";
        let cases: &[(String, StatWant)] = &[
            (
                format!("1234 (a b) c) {tail}"),
                Some(("a b) c", 'S', 1, 987654)),
            ),
            (
                format!("1234 (xmrig) {tail}"),
                Some(("xmrig", 'S', 1, 987654)),
            ),
            (format!("1234 (() {tail}"), Some(("(", 'S', 1, 987654))),
            (format!("1234 () {tail}"), Some(("", 'S', 1, 987654))),
            ("1234 (truncated) S 1".to_string(), None),
            ("garbage".to_string(), None),
        ];
        for (line, want) in cases {
            let got = parse_stat(line).map(|s| (s.comm, s.state, s.ppid, s.start_ticks));
            assert_eq!(
                got,
                want.map(|(c, s, p, t)| (c.to_string(), s, p, t)),
                "{line}"
            );
        }
        let kthread = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 2 0 0";
        assert_ne!(parse_stat(kthread).unwrap().flags & PF_KTHREAD, 0);
        assert_eq!(
            parse_stat(&format!("1234 (x) {tail}")).unwrap().flags & PF_KTHREAD,
            0
        );
    }

    #[test]
    fn status_gives_real_ids() {
        let status = "Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t100\t100\t100\t100\n";
        assert_eq!(parse_ids(status), Some((1000, 100)));
        assert_eq!(parse_ids("Name:\tx\n"), None);
    }

    #[test]
    fn cmdline_splits_on_nuls() {
        let cases: &[(&[u8], &[&str], bool)] = &[
            (
                b"./xmrig\0-o\0pool:3333\0",
                &["./xmrig", "-o", "pool:3333"],
                false,
            ),
            (b"nginx: worker process", &["nginx: worker process"], false), // setproctitle
            (b"a\0\0b\0", &["a", "", "b"], false),
            (b"", &[], false),
            (b"abcdef\0gh\0", &["abcd"], true),
        ];
        for (bytes, want, trunc) in cases {
            let (args, t) = parse_cmdline(bytes, if *trunc { 4 } else { 4096 });
            let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
            assert_eq!((args, t), (want, *trunc), "{bytes:?}");
        }
    }

    #[test]
    fn picks_the_cgroup_that_names_the_container() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-ab.scope\n",
                Some("/kubepods.slice/kubepods-pod1.slice/cri-containerd-ab.scope"),
            ),
            (
                "0::/user.slice/session-1.scope\n",
                Some("/user.slice/session-1.scope"),
            ),
            (
                "12:pids:/docker/abc\n1:name=systemd:/docker/abc\n0::/\n",
                Some("/docker/abc"),
            ),
            // this machine: hybrid, only the memory controller names it
            (
                "9:name=systemd:/\n4:memory:/process_api/b50d\n0::/\n",
                Some("/process_api/b50d"),
            ),
            ("9:name=systemd:/\n0::/\n", Some("/")),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(pick_cgroup(text).as_deref(), *want, "{text}");
        }
        assert_eq!(cgroup_v2_path("4:memory:/x\n0::/a/b\n"), Some("/a/b"));
    }

    #[test]
    fn finds_the_cgroup2_mount() {
        let mi = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                  41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount(mi),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let spaced = "41 31 0:38 / /mnt/cg\\040two rw shared:1 - cgroup2 none rw\n";
        assert_eq!(cgroup2_mount(spaced), Some(PathBuf::from("/mnt/cg two")));
        assert_eq!(
            cgroup2_mount("32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"),
            None
        );
    }

    #[test]
    fn parses_tcp_tables() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
           0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 548 1 0000000000000000 100 0 0 10 0\n\
           1: 0100007F:AFA3 0100007F:0D05 01 00000000:00000000 03:00000D66 00000000  1000        0 98765 3 0000000000000000\n\
           2: 6401A8C0:C350 08080808:115C 02 00000000:00000000 00:00000000 00000000     0        0 4242 1\n\
           3: broken\n";
        let e = parse_tcp(v4, false);
        assert_eq!(e.len(), 3);
        assert_eq!(
            (e[0].local, e[0].state, e[0].inode),
            ("0.0.0.0:2024".parse().unwrap(), TCP_LISTEN, 548)
        );
        assert_eq!(
            (e[1].local, e[1].remote),
            (
                "127.0.0.1:44963".parse().unwrap(),
                "127.0.0.1:3333".parse().unwrap()
            )
        );
        assert_eq!((e[1].state, e[1].inode), (TCP_ESTABLISHED, 98765));
        assert_eq!(
            (e[2].local, e[2].remote),
            (
                "192.168.1.100:50000".parse().unwrap(),
                "8.8.8.8:4444".parse().unwrap()
            )
        );
        assert_eq!(e[2].state, TCP_SYN_SENT);

        let v6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
           0: 00000000000000000000000001000000:0D05 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1\n\
           1: 0000000000000000FFFF00000100007F:9C40 0000000000000000FFFF00000100007F:0D05 01 00000000:00000000 00:00000000 00000000     0        0 222 1\n\
           2: B80D0120000000000000000001000000:9C41 B80D0120000000000000000002000000:115C 01 00000000:00000000 00:00000000 00000000     0        0 333 1\n";
        let e = parse_tcp(v6, true);
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].local, "[::1]:3333".parse().unwrap());
        assert_eq!(e[1].remote, "[::ffff:127.0.0.1]:3333".parse().unwrap());
        assert_eq!(
            normalize(e[1].remote.ip()),
            ("127.0.0.1".parse().unwrap(), true)
        );
        assert_eq!(e[2].local, "[2001:db8::1]:40001".parse().unwrap());
        assert_eq!(e[2].remote, "[2001:db8::2]:4444".parse().unwrap());
        assert_eq!(
            normalize(e[2].remote.ip()),
            ("2001:db8::2".parse().unwrap(), false)
        );
        // a v4 address in a v6 table is malformed, not misread
        assert!(parse_addr("0100007F:0D05", true).is_none());
    }

    #[test]
    fn socket_links() {
        assert_eq!(socket_inode(b"socket:[98765]"), Some(98765));
        for l in [
            &b"pipe:[1]"[..],
            b"/dev/null",
            b"socket:[x]",
            b"anon_inode:[eventfd]",
        ] {
            assert_eq!(socket_inode(l), None);
        }
    }
}
