//! The payload classifier (`detect::classify`, public API only): what a
//! flow's first bytes speak must not depend on how the JSON is laid out,
//! and nothing that is not a mining request may be called one.

use proptest::prelude::*;

use super::cases;
use crate::detect::{Protocol, classify};

/// A JSON value we can render with arbitrary layout.
#[derive(Debug, Clone)]
enum J {
    Str(String),
    Num(u64),
    Bool(bool),
    Null,
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

fn s(v: &str) -> J {
    J::Str(v.into())
}

/// Renders `v` with `ws` (cycled) between every pair of tokens.
fn render(v: &J, ws: &[&str], i: &mut usize, out: &mut String) {
    fn gap(ws: &[&str], i: &mut usize, out: &mut String) {
        if !ws.is_empty() {
            out.push_str(ws[*i % ws.len()]);
            *i += 1;
        }
    }
    match v {
        J::Str(x) => out.push_str(&serde_json::to_string(x).unwrap_or_default()),
        J::Num(n) => out.push_str(&n.to_string()),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::Null => out.push_str("null"),
        J::Arr(items) => {
            out.push('[');
            for (k, item) in items.iter().enumerate() {
                gap(ws, i, out);
                if k > 0 {
                    out.push(',');
                    gap(ws, i, out);
                }
                render(item, ws, i, out);
            }
            gap(ws, i, out);
            out.push(']');
        }
        J::Obj(fields) => {
            out.push('{');
            for (k, (key, val)) in fields.iter().enumerate() {
                gap(ws, i, out);
                if k > 0 {
                    out.push(',');
                    gap(ws, i, out);
                }
                out.push_str(&serde_json::to_string(key).unwrap_or_default());
                gap(ws, i, out);
                out.push(':');
                gap(ws, i, out);
                render(val, ws, i, out);
            }
            gap(ws, i, out);
            out.push('}');
        }
    }
}

/// Mining requests as real clients send them, with what they are.
fn mining_requests(id: u64, word: &str) -> Vec<(&'static str, J, Protocol)> {
    vec![
        (
            "stratum subscribe (cpuminer)",
            J::Obj(vec![
                ("id".into(), J::Num(id)),
                ("method".into(), s("mining.subscribe")),
                ("params".into(), J::Arr(vec![s("cpuminer-opt/3.23.4")])),
            ]),
            Protocol::StratumV1,
        ),
        (
            "stratum authorize",
            J::Obj(vec![
                ("id".into(), J::Num(id)),
                ("method".into(), s("mining.authorize")),
                (
                    "params".into(),
                    J::Arr(vec![s(&format!("{word}.rig")), s("x")]),
                ),
            ]),
            Protocol::StratumV1,
        ),
        (
            "xmrig login",
            J::Obj(vec![
                ("id".into(), J::Num(id)),
                ("jsonrpc".into(), s("2.0")),
                ("method".into(), s("login")),
                (
                    "params".into(),
                    J::Obj(vec![
                        (
                            "login".into(),
                            s(
                                "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A",
                            ),
                        ),
                        ("pass".into(), s(word)),
                        (
                            "agent".into(),
                            s("XMRig/6.21.0 (Linux x86_64) libuv/1.44.2 gcc/11.4.0"),
                        ),
                        ("algo".into(), J::Arr(vec![s("rx/0"), s("cn/r")])),
                    ]),
                ),
            ]),
            Protocol::XmrigLogin,
        ),
        (
            "xmrig submit",
            J::Obj(vec![
                ("id".into(), J::Num(id)),
                ("jsonrpc".into(), s("2.0")),
                ("method".into(), s("submit")),
                (
                    "params".into(),
                    J::Obj(vec![
                        ("id".into(), s(word)),
                        ("job_id".into(), s("1")),
                        ("nonce".into(), s("0000a1b2")),
                        (
                            "result".into(),
                            s("e1364b8782719d7683e2ccd3d8f724bc59dfa780a9e960e7c0e0046acdb40100"),
                        ),
                    ]),
                ),
            ]),
            Protocol::XmrigLogin,
        ),
        (
            "eth submitLogin",
            J::Obj(vec![
                ("id".into(), J::Num(id)),
                ("jsonrpc".into(), s("2.0")),
                ("method".into(), s("eth_submitLogin")),
                (
                    "params".into(),
                    J::Arr(vec![s("0x3f5ce5fbfe3e9af3971dd833d26ba9b5c936f0be")]),
                ),
            ]),
            Protocol::EthStratum,
        ),
    ]
}

/// Benign look-alikes: JSON-RPC that is not mining.
fn benign_requests(id: u64, word: &str) -> Vec<(&'static str, J)> {
    vec![
        (
            "eth_blockNumber",
            J::Obj(vec![
                ("jsonrpc".into(), s("2.0")),
                ("id".into(), J::Num(id)),
                ("method".into(), s("eth_blockNumber")),
                ("params".into(), J::Arr(vec![])),
            ]),
        ),
        (
            "LSP didOpen",
            J::Obj(vec![
                ("jsonrpc".into(), s("2.0")),
                ("method".into(), s("textDocument/didOpen")),
                (
                    "params".into(),
                    J::Obj(vec![
                        ("uri".into(), s(&format!("file:///{word}.rs"))),
                        ("dirty".into(), J::Bool(true)),
                        ("version".into(), J::Null),
                    ]),
                ),
            ]),
        ),
        (
            "bitcoind getblockchaininfo",
            J::Obj(vec![
                ("jsonrpc".into(), s("1.0")),
                ("id".into(), s(word)),
                ("method".into(), s("getblockchaininfo")),
                ("params".into(), J::Arr(vec![])),
            ]),
        ),
        (
            "a login that is not a miner's",
            J::Obj(vec![
                ("id".into(), J::Num(id)),
                ("method".into(), s("user.login")),
                (
                    "params".into(),
                    J::Obj(vec![
                        ("user".into(), s(word)),
                        ("pass".into(), s("hunter2")),
                    ]),
                ),
            ]),
        ),
    ]
}

fn shuffled<T: Clone>(v: &[T], seed: u64) -> Vec<T> {
    let mut out = v.to_vec();
    let mut x = seed | 1;
    for i in (1..out.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.swap(i, (x % (i as u64 + 1)) as usize);
    }
    out
}

/// The same value with every object's fields reordered.
fn reorder(v: &J, seed: u64) -> J {
    match v {
        J::Obj(fields) => J::Obj(
            shuffled(fields, seed)
                .into_iter()
                .enumerate()
                .map(|(k, (key, val))| (key, reorder(&val, seed.wrapping_add(k as u64 + 1))))
                .collect(),
        ),
        J::Arr(items) => J::Arr(items.iter().map(|x| reorder(x, seed)).collect()),
        other => other.clone(),
    }
}

/// JSON's own whitespace, as pretty-printers and hand-written clients use.
fn layout() -> impl Strategy<Value = Vec<&'static str>> {
    proptest::collection::vec(
        prop_oneof![
            Just(""),
            Just(" "),
            Just("  "),
            Just("\t"),
            Just("\n"),
            Just("\r\n"),
            Just("\n    ")
        ],
        0..12,
    )
}

fn word() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_.-]{1,16}"
}

proptest! {
    #![proptest_config(cases(2_000))]

    /// A mining request is the same protocol whatever its whitespace and
    /// field order, with or without a trailing newline, after leading
    /// whitespace.
    #[test]
    fn mining_is_stable_under_whitespace_and_field_order(
        id in any::<u64>(),
        w in word(),
        ws in layout(),
        seed in any::<u64>(),
        lead in prop_oneof![Just(""), Just(" "), Just("\n"), Just("\r\n\t")],
        newline in any::<bool>(),
    ) {
        for (name, req, want) in mining_requests(id, &w) {
            let mut text = String::from(lead);
            render(&reorder(&req, seed), &ws, &mut 0, &mut text);
            if newline {
                text.push('\n');
            }
            prop_assert_eq!(classify(text.as_bytes()), want, "{}: {}", name, text);
        }
    }

    /// Non-mining JSON-RPC stays non-mining however it is laid out.
    #[test]
    fn benign_json_rpc_is_never_mining(
        id in any::<u64>(),
        w in word(),
        ws in layout(),
        seed in any::<u64>(),
    ) {
        for (name, req) in benign_requests(id, &w) {
            let mut text = String::new();
            render(&reorder(&req, seed), &ws, &mut 0, &mut text);
            text.push('\n');
            let got = classify(text.as_bytes());
            prop_assert!(!got.is_mining(), "{}: {:?} for {}", name, got, text);
            prop_assert_eq!(got, Protocol::OtherJsonRpc, "{}: {}", name, text);
        }
    }
}

proptest! {
    #![proptest_config(cases(10_000))]

    /// Bytes with no `{` hold no JSON object: never a JSON mining
    /// protocol (Stratum v1, XMRig, eth), whatever else they are.
    #[test]
    fn no_json_object_no_json_mining(
        buf in proptest::collection::vec(any::<u8>().prop_map(|b| if b == b'{' { b'(' } else { b }), 0..400),
    ) {
        let got = classify(&buf);
        prop_assert!(
            !matches!(got, Protocol::StratumV1 | Protocol::XmrigLogin | Protocol::EthStratum),
            "{:?} for {:?}", got, buf
        );
    }

    /// Binary Stratum v2 needs its frame header (extension 0, message
    /// type 0 = SetupConnection): anything else is not called v2.
    #[test]
    fn stratum_v2_needs_its_frame_header(buf in proptest::collection::vec(any::<u8>(), 0..400)) {
        let got = classify(&buf);
        if got == Protocol::StratumV2 {
            prop_assert!(buf.len() >= 11 && buf[0] == 0 && buf[1] == 0 && buf[2] == 0, "{:?}", buf);
        }
    }

    /// Printable text that is not JSON (HTTP, SMTP, shell, prose) is never
    /// mining.
    #[test]
    fn printable_non_json_text_is_never_mining(text in "[ -z|~]{0,200}") {
        let got = classify(text.as_bytes());
        prop_assert!(!got.is_mining(), "{:?} for {:?}", got, text);
    }
}
