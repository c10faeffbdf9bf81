//! `sensor::decode`: the only parser of kernel record bytes.

use miner_ebpf_common::{
    AF_INET, AF_INET6, ARGS_LEN, COMM_LEN, ConnectRecord, ExecRecord, ExitRecord, FlowStatsRecord,
    ForkRecord, FpuRecord, Header, HintRecord, ListenRecord, PEEK_LEN, PayloadRecord, RecordKind,
};
use proptest::prelude::*;

use super::cases;
use crate::event::Event;
use crate::sensor::decode::{DecodeError, decode};

fn bytes_of<T: Copy>(v: &T) -> Vec<u8> {
    // SAFETY: T is a Pod record of the ABI crate; we only read its bytes.
    unsafe { std::slice::from_raw_parts(v as *const T as *const u8, std::mem::size_of::<T>()) }
        .to_vec()
}

fn header(kind: u16, ktime_ns: u64) -> Vec<u8> {
    bytes_of(&Header {
        kind,
        _pad: 0,
        cpu: 0,
        ktime_ns,
    })
}

/// The layout size and address family offset (if any) of a known kind.
fn layout(kind: RecordKind) -> usize {
    match kind {
        RecordKind::Exec => std::mem::size_of::<ExecRecord>(),
        RecordKind::Fork => std::mem::size_of::<ForkRecord>(),
        RecordKind::Exit => std::mem::size_of::<ExitRecord>(),
        RecordKind::Connect => std::mem::size_of::<ConnectRecord>(),
        RecordKind::Payload => std::mem::size_of::<PayloadRecord>(),
        RecordKind::Listen => std::mem::size_of::<ListenRecord>(),
        RecordKind::FlowStats => std::mem::size_of::<FlowStatsRecord>(),
        RecordKind::Fpu => std::mem::size_of::<FpuRecord>(),
        RecordKind::Hint => std::mem::size_of::<HintRecord>(),
    }
}

const KINDS: [RecordKind; RecordKind::ALL.len()] = RecordKind::ALL;

fn non_nul(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(1u8..=255, 0..=max)
}

proptest! {
    #![proptest_config(cases(10_000))]

    /// Any bytes at all: an event or a typed error, never a panic; shorter
    /// than a header is always `Truncated`.
    #[test]
    fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..1200)) {
        let res = decode(&buf);
        if buf.len() < std::mem::size_of::<Header>() {
            let is_truncated = matches!(res, Err(DecodeError::Truncated { .. }));
            prop_assert!(is_truncated, "{:?}", res);
        }
    }

    /// A known kind with any body: decodes exactly when the body covers
    /// the layout (and, for addresses, the family is v4 or v6).
    #[test]
    fn known_kind_decodes_iff_the_layout_is_complete(
        k in 0usize..KINDS.len(),
        body in proptest::collection::vec(any::<u8>(), 0..1200),
    ) {
        let kind = KINDS[k];
        let mut buf = header(kind as u16, 1);
        buf.extend_from_slice(&body);
        let res = decode(&buf);
        if buf.len() < layout(kind) {
            let is_truncated = matches!(
                res,
                Err(DecodeError::Truncated { expected, got, .. })
                    if expected == layout(kind) && got == buf.len()
            );
            prop_assert!(is_truncated, "{:?}", res);
        } else {
            match (&res, kind) {
                (
                    Err(DecodeError::BadFamily(f, _)),
                    RecordKind::Connect | RecordKind::Payload | RecordKind::Listen,
                ) => {
                    prop_assert!(*f != AF_INET && *f != AF_INET6);
                }
                (Ok(ev), _) => prop_assert_eq!(ev.kind(), match kind {
                    RecordKind::Exec => "exec",
                    RecordKind::Fork => "fork",
                    RecordKind::Exit => "exit",
                    RecordKind::Connect => "connect",
                    RecordKind::Payload => "payload",
                    RecordKind::Listen => "listen",
                    RecordKind::FlowStats => "flow_stats",
                    RecordKind::Fpu => "fpu",
                    RecordKind::Hint => "hint",
                }),
                // A hint whose kind this build does not know.
                (Err(DecodeError::UnknownHint(_)), RecordKind::Hint) => {}
                _ => prop_assert!(false, "{:?} for a complete {:?}", res, kind),
            }
        }
    }

    /// Kinds this binary does not know are refused by number, whatever
    /// follows (values far above any kind the ABI will assign soon).
    #[test]
    fn unknown_kinds_are_refused(kind in 100u16.., body in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut buf = header(kind, 1);
        buf.extend_from_slice(&body);
        prop_assert_eq!(decode(&buf), Err(DecodeError::UnknownKind(kind)));
    }

    /// An exec record carrying any comm, file name and argv bytes (as a
    /// hostile process chooses them) decodes to exactly those strings,
    /// invalid UTF-8 replaced, lengths clamped to the record.
    #[test]
    fn exec_strings_round_trip_lossily(
        comm in non_nul(COMM_LEN - 1),
        filename in non_nul(200),
        args in proptest::collection::vec(non_nul(40), 0..8),
        args_len_extra in 0u16..600,
        tgid in any::<u32>(),
        ktime in any::<u64>(),
    ) {
        // SAFETY: all-zero is a valid ExecRecord.
        let mut r: ExecRecord = unsafe { std::mem::zeroed() };
        r.header = Header { kind: RecordKind::Exec as u16, _pad: 0, cpu: 0, ktime_ns: ktime };
        r.tgid = tgid;
        r.comm[..comm.len()].copy_from_slice(&comm);
        r.filename[..filename.len()].copy_from_slice(&filename);
        r.filename_len = filename.len() as u16;
        let mut block = Vec::new();
        for a in &args {
            block.extend_from_slice(a);
            block.push(0);
        }
        block.truncate(ARGS_LEN);
        r.args[..block.len()].copy_from_slice(&block);
        // A length past the buffer (a corrupt or hostile record) is clamped.
        r.args_len = block.len() as u16 + args_len_extra;
        let Ok(Event::Exec(e)) = decode(&bytes_of(&r)) else {
            return Err(TestCaseError::fail("exec did not decode"));
        };
        prop_assert_eq!(e.tgid, tgid);
        prop_assert_eq!(e.time.ns(), ktime);
        prop_assert_eq!(&e.comm, &String::from_utf8_lossy(&comm));
        prop_assert_eq!(&e.filename, &String::from_utf8_lossy(&filename));
        let fits = args.iter().map(|a| a.len() + 1).sum::<usize>() <= ARGS_LEN;
        if args_len_extra == 0 && fits {
            let want: Vec<String> = args
                .iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            prop_assert_eq!(&e.argv, &want);
        }
        prop_assert!(e.argv.len() <= ARGS_LEN);
    }

    /// A payload record's `captured` length never reads past the peek
    /// buffer, and the data is exactly the captured prefix.
    #[test]
    fn payload_capture_is_clamped(
        captured in any::<u16>(),
        data in proptest::collection::vec(any::<u8>(), PEEK_LEN..=PEEK_LEN),
        v6 in any::<bool>(),
    ) {
        // SAFETY: all-zero is a valid PayloadRecord.
        let mut r: PayloadRecord = unsafe { std::mem::zeroed() };
        r.header = Header { kind: RecordKind::Payload as u16, _pad: 0, cpu: 0, ktime_ns: 1 };
        r.family = if v6 { AF_INET6 } else { AF_INET };
        r.captured = captured;
        r.data.copy_from_slice(&data);
        let Ok(Event::Payload(p)) = decode(&bytes_of(&r)) else {
            return Err(TestCaseError::fail("payload did not decode"));
        };
        let n = usize::from(captured).min(PEEK_LEN);
        prop_assert_eq!(&p.data[..], &data[..n]);
    }
}
