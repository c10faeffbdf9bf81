//! Property tests of the /proc parsers: the kernel writes these files, but
//! a process chooses parts of them (comm, cmdline, mount paths), so any
//! bytes must be survived and the well-formed ones read back exactly.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;

use super::parse::{
    cgroup_v2_path, cgroup2_mount, parse_addr, parse_cmdline, parse_ids, parse_stat, parse_tcp,
    pick_cgroup, socket_inode,
};
use crate::proptests::cases;

/// How the kernel prints an address in /proc/net/tcp (each 32-bit word of
/// the network-order address as a native-endian `%08X`).
fn proc_addr(a: &SocketAddr) -> String {
    let octets: Vec<u8> = match a.ip() {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    let words: String = octets
        .chunks(4)
        .map(|w| format!("{:08X}", u32::from_ne_bytes([w[0], w[1], w[2], w[3]])))
        .collect();
    format!("{words}:{:04X}", a.port())
}

proptest! {
    #![proptest_config(cases(10_000))]

    /// Arbitrary text into every text parser: no panic.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,300}|[ -~\\n()\\\\:0-9]{0,300}") {
        let _ = parse_stat(&text);
        let _ = parse_ids(&text);
        let _ = pick_cgroup(&text);
        let _ = cgroup_v2_path(&text);
        let _ = cgroup2_mount(&text);
        let _ = parse_tcp(&text, false);
        let _ = parse_tcp(&text, true);
        let _ = parse_addr(&text, false);
        let _ = parse_addr(&text, true);
        let _ = socket_inode(text.as_bytes());
    }

    /// A stat line whose comm holds anything a process can set with
    /// prctl (spaces, parentheses, digits, "S 1 2") reads back exactly.
    #[test]
    fn stat_comm_is_read_to_the_last_paren(
        pid in 1u32..4_194_304,
        comm in "[^\\x00\\n]{0,15}",
        ppid in any::<u32>(),
        flags in any::<u32>(),
        start in any::<u64>(),
    ) {
        let line = format!(
            "{pid} ({comm}) S {ppid} 1 1 0 -1 {flags} 0 0 0 0 5 6 0 0 20 0 1 0 {start} 1000 10 18446744073709551615\n"
        );
        let st = parse_stat(&line).ok_or_else(|| TestCaseError::fail(line.clone()))?;
        prop_assert_eq!(st.pid, pid);
        prop_assert_eq!(&st.comm, &comm);
        prop_assert_eq!(st.ppid, ppid);
        prop_assert_eq!(st.flags, flags);
        prop_assert_eq!(st.start_ticks, start);
    }

    /// A cmdline of any argument bytes reads back as those arguments
    /// (lossy UTF-8), truncated at the limit and said to be.
    #[test]
    fn cmdline_round_trips(
        args in proptest::collection::vec(proptest::collection::vec(1u8..=255, 1..30), 0..10),
        max in 0usize..400,
    ) {
        let mut bytes = Vec::new();
        for a in &args {
            bytes.extend_from_slice(a);
            bytes.push(0);
        }
        let (got, truncated) = parse_cmdline(&bytes, max);
        prop_assert_eq!(truncated, bytes.len() > max);
        if !truncated {
            let want: Vec<String> = args.iter().map(|a| String::from_utf8_lossy(a).into_owned()).collect();
            prop_assert_eq!(got, want);
        } else {
            prop_assert!(got.iter().map(|a| a.len()).sum::<usize>() <= max * 3);
        }
        let (any_bytes, _) = parse_cmdline(&args.concat(), max);
        prop_assert!(any_bytes.len() <= 1, "no NUL: one argument at most");
    }

    /// /proc/net/tcp lines: every address and port comes back.
    #[test]
    fn tcp_lines_round_trip(
        v4 in any::<[u8; 4]>(),
        v6 in any::<[u8; 16]>(),
        lport in any::<u16>(),
        rport in any::<u16>(),
        state in any::<u8>(),
        inode in any::<u64>(),
        use_v6 in any::<bool>(),
    ) {
        let (local, remote) = if use_v6 {
            (
                SocketAddr::new(IpAddr::V6(Ipv6Addr::from(v6)), lport),
                SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), rport),
            )
        } else {
            (
                SocketAddr::new(IpAddr::V4(Ipv4Addr::from(v4)), lport),
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), rport),
            )
        };
        let text = format!(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: {} {} {:02X} 00000000:00000000 00:00000000 00000000     0        0 {inode} 1 0000000000000000 100 0 0 10 0\n",
            proc_addr(&local),
            proc_addr(&remote),
            state
        );
        let entries = parse_tcp(&text, use_v6);
        prop_assert_eq!(entries.len(), 1);
        prop_assert_eq!(entries[0].local, local);
        prop_assert_eq!(entries[0].remote, remote);
        prop_assert_eq!(entries[0].state, state);
        prop_assert_eq!(entries[0].inode, inode);
    }

    /// A cgroup2 mount point with any characters mountinfo escapes (space,
    /// tab, newline, backslash) comes back unescaped.
    #[test]
    fn mountinfo_paths_are_unescaped(dir in "[a-z \\t\\n\\\\]{1,20}") {
        let escaped: String = dir
            .chars()
            .map(|c| match c {
                ' ' => "\\040".to_owned(),
                '\t' => "\\011".to_owned(),
                '\n' => "\\012".to_owned(),
                '\\' => "\\134".to_owned(),
                c => c.to_string(),
            })
            .collect();
        let mountinfo = format!("30 1 0:26 / /sys/fs/{escaped} rw,nosuid - cgroup2 cgroup2 rw\n");
        prop_assert_eq!(
            cgroup2_mount(&mountinfo),
            Some(std::path::PathBuf::from(format!("/sys/fs/{dir}")))
        );
    }

    /// `socket:[N]` for any N, nothing else.
    #[test]
    fn socket_links(n in any::<u64>(), junk in "[^\\]]{0,10}") {
        prop_assert_eq!(socket_inode(format!("socket:[{n}]").as_bytes()), Some(n));
        prop_assert_eq!(socket_inode(format!("pipe:[{n}]").as_bytes()), None);
        let junk_link = format!("socket:[{junk}]");
        if junk.parse::<u64>().is_err() {
            prop_assert_eq!(socket_inode(junk_link.as_bytes()), None);
        }
    }
}
