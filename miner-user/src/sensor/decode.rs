//! Kernel records → owned [`Event`]s. The only place that knows byte layouts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use miner_ebpf_common::{
    AF_INET, AF_INET6, CONNECT_FLAG_V4_MAPPED, ConnectRecord, EXEC_FLAG_ARGS_TRUNCATED,
    EXEC_FLAG_EXE_UNKNOWN, EXEC_FLAG_MEMFD, ExecRecord, ExitRecord, FlowStatsRecord, ForkRecord,
    FpuRecord, Header, HintRecord, LISTEN_FLAG_ADDR_UNKNOWN, ListenRecord, MXCSR_STATE_MASK,
    PAYLOAD_FLAG_CONTINUATION, PAYLOAD_FLAG_UNTRACKED_FLOW, PEEK_LEN, PayloadRecord, RecordKind,
};

use crate::event::{
    Connect, ConnectResult, Event, ExeId, Exec, Exit, FlowStats, Fork, Fpu, Hint, HintKind, Listen,
    Payload, Source,
};
use crate::time::Mono;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {got} bytes is shorter than its {kind} layout ({expected} bytes)")]
    Truncated {
        kind: &'static str,
        got: usize,
        expected: usize,
    },
    #[error("unknown record kind {0}; the eBPF object is newer than this binary")]
    UnknownKind(u16),
    #[error("unknown address family {0} in a {1} record")]
    BadFamily(u16, &'static str),
    #[error("unknown hint kind {0}; the eBPF object is newer than this binary")]
    UnknownHint(u16),
}

/// Read a `T` from the start of `buf`, or say how short it was.
fn read_pod<T: Copy>(buf: &[u8], kind: &'static str) -> Result<T, DecodeError> {
    let expected = std::mem::size_of::<T>();
    if buf.len() < expected {
        return Err(DecodeError::Truncated {
            kind,
            got: buf.len(),
            expected,
        });
    }
    // SAFETY: length checked; T is a #[repr(C)] Pod record from the ABI
    // crate (every bit pattern valid); read_unaligned tolerates any offset.
    Ok(unsafe { std::ptr::read_unaligned(buf.as_ptr() as *const T) })
}

pub fn decode(buf: &[u8]) -> Result<Event, DecodeError> {
    let header: Header = read_pod(buf, "header")?;
    let kind = RecordKind::try_from(header.kind).map_err(DecodeError::UnknownKind)?;
    Ok(match kind {
        RecordKind::Exec => Event::Exec(exec(&read_pod::<ExecRecord>(buf, "exec")?)),
        RecordKind::Fork => Event::Fork(fork(&read_pod::<ForkRecord>(buf, "fork")?)),
        RecordKind::Exit => Event::Exit(exit(&read_pod::<ExitRecord>(buf, "exit")?)),
        RecordKind::Connect => {
            Event::Connect(connect(&read_pod::<ConnectRecord>(buf, "connect")?)?)
        }
        RecordKind::Payload => {
            Event::Payload(payload(&read_pod::<PayloadRecord>(buf, "payload")?)?)
        }
        RecordKind::Listen => Event::Listen(listen(&read_pod::<ListenRecord>(buf, "listen")?)?),
        RecordKind::FlowStats => {
            Event::FlowStats(flow_stats(&read_pod::<FlowStatsRecord>(buf, "flow_stats")?))
        }
        RecordKind::Fpu => Event::Fpu(fpu(&read_pod::<FpuRecord>(buf, "fpu")?)),
        RecordKind::Hint => Event::Hint(hint(&read_pod::<HintRecord>(buf, "hint")?)?),
    })
}

/// The kernel timestamp of a record without decoding it (poll-lag metric).
pub fn ktime(buf: &[u8]) -> Option<Mono> {
    read_pod::<Header>(buf, "header")
        .ok()
        .map(|h| Mono(h.ktime_ns))
}

/// A NUL-terminated (or `len`-bounded) C string, lossily as UTF-8.
fn cstr(bytes: &[u8], len: Option<usize>) -> String {
    let bytes = match len {
        Some(n) => &bytes[..n.min(bytes.len())],
        None => bytes,
    };
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Kernel `s_dev` (`MAJOR << 20 | MINOR`) → userspace `st_dev`.
pub fn kernel_dev_to_user(s_dev: u32) -> u64 {
    let major = s_dev >> 20;
    let minor = s_dev & 0xf_ffff;
    libc::makedev(major, minor)
}

fn split_args(block: &[u8]) -> Vec<String> {
    let mut args: Vec<String> = block
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    // The block ends with a NUL, which leaves one empty tail.
    if args.last().is_some_and(String::is_empty) {
        args.pop();
    }
    args
}

fn exec(r: &ExecRecord) -> Exec {
    let unknown = r.flags & EXEC_FLAG_EXE_UNKNOWN != 0;
    let args_len = (r.args_len as usize).min(r.args.len());
    Exec {
        time: Mono(r.header.ktime_ns),
        tgid: r.tgid,
        pid: r.pid,
        ppid: r.ppid,
        uid: r.uid,
        gid: r.gid,
        cgroup_id: r.cgroup_id,
        start_boottime_ns: r.start_boottime_ns,
        comm: cstr(&r.comm, None),
        filename: cstr(&r.filename, Some(r.filename_len as usize)),
        argv: split_args(&r.args[..args_len]),
        argv_truncated: r.flags & EXEC_FLAG_ARGS_TRUNCATED != 0,
        exe: ExeId {
            dev: if unknown {
                0
            } else {
                kernel_dev_to_user(r.exe_dev)
            },
            ino: r.exe_ino,
            nlink: r.exe_nlink,
            memfd: r.flags & EXEC_FLAG_MEMFD != 0,
            name: cstr(&r.exe_name, Some(r.exe_name_len as usize)),
            unknown,
        },
        exe_path: None,
        cgroup: None,
        source: Source::Kernel,
    }
}

fn fork(r: &ForkRecord) -> Fork {
    Fork {
        time: Mono(r.header.ktime_ns),
        parent_tgid: r.parent_tgid,
        child_tgid: r.child_tgid,
        child_start_boottime_ns: r.child_start_boottime_ns,
        comm: cstr(&r.comm, None),
    }
}

fn exit(r: &ExitRecord) -> Exit {
    Exit {
        time: Mono(r.header.ktime_ns),
        tgid: r.tgid,
        status: ((r.exit_code >> 8) & 0xff) as i32,
        signal: (r.exit_code & 0x7f) as i32,
        cpu_ns: r.cpu_ns,
        comm: cstr(&r.comm, None),
    }
}

fn addr(family: u16, bytes: &[u8; 16], kind: &'static str) -> Result<IpAddr, DecodeError> {
    match family {
        AF_INET => Ok(IpAddr::V4(Ipv4Addr::new(
            bytes[0], bytes[1], bytes[2], bytes[3],
        ))),
        AF_INET6 => Ok(IpAddr::V6(Ipv6Addr::from(*bytes))),
        other => Err(DecodeError::BadFamily(other, kind)),
    }
}

fn connect(r: &ConnectRecord) -> Result<Connect, DecodeError> {
    Ok(Connect {
        time: Mono(r.header.ktime_ns),
        tgid: r.tgid,
        pid: r.pid,
        uid: r.uid,
        comm: cstr(&r.comm, None),
        daddr: addr(r.family, &r.daddr, "connect")?,
        dport: r.dport,
        result: ConnectResult::from_ret(r.ret),
        cookie: r.cookie,
        v4_mapped: r.flags & CONNECT_FLAG_V4_MAPPED != 0,
        source: Source::Kernel,
    })
}

fn listen(r: &ListenRecord) -> Result<Listen, DecodeError> {
    let local = if r.flags & LISTEN_FLAG_ADDR_UNKNOWN != 0 {
        None
    } else {
        Some((addr(r.family, &r.addr, "listen")?, r.port))
    };
    Ok(Listen {
        time: Mono(r.header.ktime_ns),
        tgid: r.tgid,
        pid: r.pid,
        uid: r.uid,
        comm: cstr(&r.comm, None),
        local,
        source: Source::Kernel,
    })
}

fn payload(r: &PayloadRecord) -> Result<Payload, DecodeError> {
    let untracked = r.flags & PAYLOAD_FLAG_UNTRACKED_FLOW != 0;
    let n = (r.captured as usize).min(PEEK_LEN);
    Ok(Payload {
        time: Mono(r.header.ktime_ns),
        tgid: if untracked || r.tgid == 0 {
            None
        } else {
            Some(r.tgid)
        },
        cookie: r.cookie,
        saddr: addr(r.family, &r.saddr, "payload")?,
        sport: r.sport,
        daddr: addr(r.family, &r.daddr, "payload")?,
        dport: r.dport,
        payload_len: r.payload_len,
        packet_index: r.packet_index,
        // Untracked flows are peeked once, mid-stream: no stream to rebuild.
        seq: (!untracked).then_some(r.seq),
        continuation: r.flags & PAYLOAD_FLAG_CONTINUATION != 0,
        untracked,
        data: r.data[..n].to_vec(),
    })
}

fn flow_stats(r: &FlowStatsRecord) -> FlowStats {
    FlowStats {
        time: Mono(r.header.ktime_ns),
        tgid: (r.tgid != 0).then_some(r.tgid),
        cookie: r.cookie,
        packets: r.packets,
        bytes: r.bytes,
        max_len: r.max_len,
        since: Mono(r.first_ns),
    }
}

fn fpu(r: &FpuRecord) -> Fpu {
    Fpu {
        time: Mono(r.header.ktime_ns),
        tgid: r.tgid,
        pid: r.pid,
        comm: cstr(&r.comm, None),
        mxcsr: (r.mxcsr & MXCSR_STATE_MASK) as u16,
        seen: r.seen,
    }
}

fn hint(r: &HintRecord) -> Result<Hint, DecodeError> {
    use miner_ebpf_common::HintKind as K;
    let kind = match K::try_from(r.kind).map_err(DecodeError::UnknownHint)? {
        K::HugepagesSysctl => HintKind::HugepagesSysctl,
        K::HugepagesSysfs => HintKind::HugepagesSysfs,
        K::HugetlbMap => HintKind::HugetlbMap,
        K::MsrOpen => HintKind::MsrOpen,
    };
    let n = (r.data_len as usize).min(r.data.len());
    Ok(Hint {
        time: Mono(r.header.ktime_ns),
        tgid: r.tgid,
        pid: r.pid,
        uid: r.uid,
        comm: cstr(&r.comm, None),
        hint: kind,
        value: r.value,
        path: cstr(&r.data, Some(n)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use miner_ebpf_common::{COMM_LEN, ExecRecord};

    fn bytes_of<T: Copy>(v: &T) -> Vec<u8> {
        // SAFETY: T is a Pod record; we only read its bytes.
        unsafe { std::slice::from_raw_parts(v as *const T as *const u8, std::mem::size_of::<T>()) }
            .to_vec()
    }

    fn header(kind: RecordKind) -> Header {
        Header {
            kind: kind as u16,
            _pad: 0,
            cpu: 1,
            ktime_ns: 42,
        }
    }

    fn exec_record() -> ExecRecord {
        // SAFETY: all-zero is a valid ExecRecord.
        let mut r: ExecRecord = unsafe { std::mem::zeroed() };
        r.header = header(RecordKind::Exec);
        r.tgid = 100;
        r.pid = 100;
        r.ppid = 1;
        r.comm[..4].copy_from_slice(b"xmr\0");
        let f = b"/tmp/.x/kworker";
        r.filename[..f.len()].copy_from_slice(f);
        r.filename_len = f.len() as u16;
        let a = b"kworker\0-o\0pool:3333\0";
        r.args[..a.len()].copy_from_slice(a);
        r.args_len = a.len() as u16;
        r.exe_dev = (8 << 20) | 1;
        r.exe_ino = 77;
        r.exe_nlink = 0;
        r.flags = EXEC_FLAG_MEMFD;
        let n = b"memfd:x";
        r.exe_name[..n.len()].copy_from_slice(n);
        r.exe_name_len = n.len() as u16;
        r
    }

    #[test]
    fn decodes_an_exec_record() {
        let Event::Exec(e) = decode(&bytes_of(&exec_record())).unwrap() else {
            panic!("not exec")
        };
        assert_eq!((e.tgid, e.ppid, e.time), (100, 1, Mono(42)));
        assert_eq!(e.comm, "xmr");
        assert_eq!(e.filename, "/tmp/.x/kworker");
        assert_eq!(e.argv, vec!["kworker", "-o", "pool:3333"]);
        assert!(e.exe.memfd && e.exe.nlink == 0 && !e.exe.unknown);
        assert_eq!(e.exe.name, "memfd:x");
        assert_eq!(e.exe.dev, libc::makedev(8, 1));
        assert_eq!(COMM_LEN, 16);
    }

    #[test]
    fn truncated_and_unknown_records_are_errors_not_panics() {
        let full = bytes_of(&exec_record());
        for n in [0, 1, 15, 16, 100, full.len() - 1] {
            assert!(decode(&full[..n]).is_err(), "len {n}");
        }
        let mut unknown = full.clone();
        unknown[0] = 99;
        assert_eq!(decode(&unknown), Err(DecodeError::UnknownKind(99)));
        let mut conn: ConnectRecord = unsafe { std::mem::zeroed() };
        conn.header = header(RecordKind::Connect);
        conn.family = 7;
        assert!(matches!(
            decode(&bytes_of(&conn)),
            Err(DecodeError::BadFamily(7, _))
        ));
    }

    #[test]
    fn decodes_connect_and_payload_addresses() {
        let mut c: ConnectRecord = unsafe { std::mem::zeroed() };
        c.header = header(RecordKind::Connect);
        c.family = AF_INET;
        c.daddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        c.dport = 3333;
        c.ret = -libc::ECONNREFUSED;
        c.flags = CONNECT_FLAG_V4_MAPPED;
        let Event::Connect(e) = decode(&bytes_of(&c)).unwrap() else {
            panic!()
        };
        assert_eq!(e.daddr, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(e.result, ConnectResult::Refused);
        assert!(e.v4_mapped);

        let mut p: PayloadRecord = unsafe { std::mem::zeroed() };
        p.header = header(RecordKind::Payload);
        p.family = AF_INET6;
        p.daddr[15] = 1;
        p.captured = 3;
        p.data[..3].copy_from_slice(b"{\"i");
        p.flags = PAYLOAD_FLAG_UNTRACKED_FLOW;
        p.tgid = 9;
        let Event::Payload(e) = decode(&bytes_of(&p)).unwrap() else {
            panic!()
        };
        assert_eq!(e.daddr, "::1".parse::<IpAddr>().unwrap());
        assert_eq!(e.data, b"{\"i");
        assert_eq!(e.tgid, None, "untracked flows have no trustworthy tgid");
        assert_eq!(e.seq, None, "an untracked peek is mid-stream");

        p.flags = PAYLOAD_FLAG_CONTINUATION;
        p.seq = 0xffff_ff00;
        p.packet_index = 2;
        let Event::Payload(e) = decode(&bytes_of(&p)).unwrap() else {
            panic!()
        };
        assert_eq!(
            (e.tgid, e.seq, e.continuation),
            (Some(9), Some(0xffff_ff00), true)
        );
    }

    #[test]
    fn decodes_flow_stats() {
        let mut r: FlowStatsRecord = unsafe { std::mem::zeroed() };
        r.header = header(RecordKind::FlowStats);
        r.header.ktime_ns = 30_000;
        r.cookie = 77;
        r.tgid = 12;
        r.packets = 9;
        r.bytes = 1800;
        r.max_len = 517;
        r.first_ns = 10_000;
        let Event::FlowStats(e) = decode(&bytes_of(&r)).unwrap() else {
            panic!()
        };
        assert_eq!(
            (
                e.time, e.since, e.tgid, e.cookie, e.packets, e.bytes, e.max_len
            ),
            (Mono(30_000), Mono(10_000), Some(12), 77, 9, 1800, 517)
        );
        assert!(decode(&bytes_of(&r)[..40]).is_err());
    }

    #[test]
    fn decodes_listen_records_with_and_without_an_address() {
        let mut l: ListenRecord = unsafe { std::mem::zeroed() };
        l.header = header(RecordKind::Listen);
        l.tgid = 700;
        l.pid = 701;
        l.family = AF_INET;
        l.addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        l.port = 8080;
        l.comm[..7].copy_from_slice(b"python3");
        let Event::Listen(e) = decode(&bytes_of(&l)).unwrap() else {
            panic!("not listen")
        };
        assert_eq!((e.tgid, e.pid, e.comm.as_str()), (700, 701, "python3"));
        assert_eq!(e.local, Some(("127.0.0.1".parse().unwrap(), 8080)));
        l.family = AF_INET6;
        l.addr = [0; 16];
        let Event::Listen(e) = decode(&bytes_of(&l)).unwrap() else {
            panic!()
        };
        assert_eq!(e.local, Some(("::".parse().unwrap(), 8080)));
        l.family = 0;
        l.flags = LISTEN_FLAG_ADDR_UNKNOWN;
        let Event::Listen(e) = decode(&bytes_of(&l)).unwrap() else {
            panic!()
        };
        assert_eq!(e.local, None, "a listen whose address was unreadable");
        l.flags = 0;
        assert!(matches!(
            decode(&bytes_of(&l)),
            Err(DecodeError::BadFamily(0, "listen"))
        ));
    }

    #[test]
    fn exit_code_splits_status_and_signal() {
        let mut x: ExitRecord = unsafe { std::mem::zeroed() };
        x.header = header(RecordKind::Exit);
        x.exit_code = 3 << 8;
        let Event::Exit(e) = decode(&bytes_of(&x)).unwrap() else {
            panic!()
        };
        assert_eq!((e.status, e.signal), (3, 0));
        x.exit_code = 9;
        let Event::Exit(e) = decode(&bytes_of(&x)).unwrap() else {
            panic!()
        };
        assert_eq!((e.status, e.signal), (0, 9));
    }

    #[test]
    fn decodes_fpu_and_hint_records() {
        let mut f: FpuRecord = unsafe { std::mem::zeroed() };
        f.header = header(RecordKind::Fpu);
        f.tgid = 7;
        f.pid = 8;
        f.mxcsr = 0xBFC0 | 0x21; // sticky exception flags are dropped
        f.seen = (1 << 12) | (1 << 13);
        f.comm[..4].copy_from_slice(b"rx0\0");
        let Event::Fpu(e) = decode(&bytes_of(&f)).unwrap() else {
            panic!("not fpu")
        };
        assert_eq!((e.tgid, e.pid, e.mxcsr, e.seen), (7, 8, 0xBFC0, 0x3000));
        assert_eq!(e.comm, "rx0");

        let mut h: HintRecord = unsafe { std::mem::zeroed() };
        h.header = header(RecordKind::Hint);
        h.tgid = 9;
        h.kind = miner_ebpf_common::HintKind::HugepagesSysctl as u16;
        let p = b"/proc/sys/vm/nr_hugepages";
        h.data[..p.len()].copy_from_slice(p);
        h.data_len = p.len() as u16;
        let Event::Hint(e) = decode(&bytes_of(&h)).unwrap() else {
            panic!("not hint")
        };
        assert_eq!(
            (e.hint, e.path.as_str()),
            (HintKind::HugepagesSysctl, "/proc/sys/vm/nr_hugepages")
        );
        h.data_len = 200; // clamped, not a panic
        assert!(decode(&bytes_of(&h)).is_ok());
        h.kind = 99;
        assert_eq!(decode(&bytes_of(&h)), Err(DecodeError::UnknownHint(99)));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x1234_5678u64;
        for len in 0..700 {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (seed >> 56) as u8
                })
                .collect();
            let _ = decode(&buf);
        }
    }
}
