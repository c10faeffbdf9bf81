//! Detector scenarios for flows behind proxies, inside WebSocket and in
//! TLS: the verdicts match the direct case, the evidence names proxy and
//! destination, and the look-alikes (HTTP through a proxy to a pool port,
//! a JSON WebSocket client, a busy TLS client without ALPN) stay silent.

use std::collections::BTreeMap;

use super::protocol::websocket;
use super::tests::build::*;
use super::tests::run_with;
use super::*;
use crate::event::*;

const POOL: &str = "203.0.113.50";
const PROXY: &str = "10.0.0.5";

/// One payload record of a kernel-tracked flow, with its sequence number.
#[allow(clippy::too_many_arguments)]
fn seg(
    t: u64,
    tgid: u32,
    cookie: u64,
    addr: &str,
    port: u16,
    idx: u8,
    seq: u32,
    data: &[u8],
) -> Event {
    Event::Payload(Payload {
        time: ms(t),
        tgid: Some(tgid),
        cookie,
        saddr: ip("10.0.0.2"),
        sport: 40_000,
        daddr: ip(addr),
        dport: port,
        payload_len: data.len() as u32,
        packet_index: idx,
        seq: Some(seq),
        continuation: false,
        untracked: false,
        data: data[..data.len().min(256)].to_vec(),
    })
}

/// The flow's packets, sent 1 ms apart from `t`, sequence numbers from 1.
fn flow(t: u64, tgid: u32, cookie: u64, addr: &str, port: u16, packets: &[Vec<u8>]) -> Vec<Event> {
    let mut seq = 1u32;
    packets
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let e = seg(t + i as u64, tgid, cookie, addr, port, i as u8, seq, p);
            seq = seq.wrapping_add(p.len() as u32);
            e
        })
        .collect()
}

fn socks5_to(ip4: [u8; 4], port: u16) -> Vec<Vec<u8>> {
    let mut req = vec![5, 1, 0, 1];
    req.extend_from_slice(&ip4);
    req.extend_from_slice(&port.to_be_bytes());
    vec![vec![5, 1, 0], req]
}

fn connect_to(dest: &str) -> Vec<u8> {
    format!("CONNECT {dest} HTTP/1.1\r\nHost: {dest}\r\n\r\n").into_bytes()
}

fn ws_upgrade() -> Vec<u8> {
    b"GET /proxy HTTP/1.1\r\nHost: 10.0.0.8:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".to_vec()
}

fn rules_of(verdicts: &[Verdict]) -> BTreeMap<(Rule, u32), Severity> {
    let mut m = BTreeMap::new();
    for v in verdicts {
        let e = m.entry((v.rule, v.tgid)).or_insert(v.severity);
        *e = (*e).max(v.severity);
    }
    m
}

fn unverified(tgid: u32, path: &str, cores: f64) -> Vec<Event> {
    let mut v = vec![
        exec(T0, tgid, 1, path, &["kworker"]),
        provenance(T0 + 80, tgid, path, false),
    ];
    v.extend(cpu_series(T0 + 300, 40, &[tgid], |_| cores));
    v
}

fn run(events: Vec<Event>, until: u64) -> Vec<Verdict> {
    run_with(DetectorConfig::default(), events, until).0
}

#[test]
fn a_login_through_socks5_is_the_same_verdict_as_without_a_proxy() {
    let path = "/tmp/.x/kworker";
    let mut direct = unverified(10, path, 1.0);
    direct.push(connect(T0 + 20, 10, POOL, 3333, 7));
    direct.push(seg(T0 + 30, 10, 7, POOL, 3333, 0, 1, &xmrig_login()));
    let mut proxied = unverified(10, path, 1.0);
    proxied.push(connect(T0 + 20, 10, PROXY, 1080, 7));
    let mut packets = socks5_to([203, 0, 113, 50], 3333);
    packets.push(xmrig_login());
    proxied.extend(flow(T0 + 30, 10, 7, PROXY, 1080, &packets));
    let want = rules_of(&run(direct, T0 + 42_000));
    let got = run(proxied, T0 + 42_000);
    assert_eq!(rules_of(&got), want, "{got:#?}");
    assert!(want.contains_key(&(Rule::PoolProtocolUnverified, 10)));
    let v = got
        .iter()
        .find(|v| v.rule == Rule::PoolProtocolUnverified)
        .unwrap();
    let e = v.evidence_of(Signal::PoolProtocol).unwrap();
    assert_eq!(
        e.detail,
        "xmrig-login to 203.0.113.50:3333 via socks5 proxy 10.0.0.5:1080"
    );
    assert_eq!(e.time, ms(T0 + 32), "the login's packet");
}

#[test]
fn the_destination_asked_of_a_proxy_counts_as_a_pool_endpoint() {
    // TLS through CONNECT to a pool port, and through SOCKS5 to a pool's
    // domain on 443: no payload evidence, the destination decides.
    let hello = super::protocol::tls::tests::hello(&[0x1301], &[(0x000b, vec![1, 0])]);
    for (tgid, first, want_signal) in [
        (20u32, connect_to("203.0.113.50:3333"), "tls_pool_port"),
        (
            21,
            [
                &[5u8, 1, 0, 5, 1, 0, 3, 19][..],
                b"pool.supportxmr.com",
                &443u16.to_be_bytes(),
            ]
            .concat(),
            "tls_pool_port",
        ),
    ] {
        let mut ev = unverified(tgid, "/tmp/.x/kworker", 1.0);
        ev.push(connect(T0 + 20, tgid, PROXY, 8080, 9));
        ev.extend(flow(T0 + 30, tgid, 9, PROXY, 8080, &[first, hello.clone()]));
        let verdicts = run(ev, T0 + 42_000);
        assert_eq!(
            rules_of(&verdicts),
            BTreeMap::from([((Rule::PoolPortBusyUnverified, tgid), Severity::High)]),
            "{verdicts:#?}"
        );
        let e = &verdicts[0].evidence;
        let conn = e.iter().find(|e| e.signal.name() == want_signal).unwrap();
        assert!(
            conn.detail.contains("via http-connect proxy 10.0.0.5:8080")
                || conn.detail.contains("via socks5 proxy 10.0.0.5:8080"),
            "{}",
            conn.detail
        );
        assert!(conn.detail.contains("JA4 t12i010100_"), "{}", conn.detail);
    }
}

#[test]
fn http_through_a_proxy_to_a_pool_port_is_silent() {
    let mut ev = unverified(30, "/home/dev/bin/agent", 1.0);
    ev.push(connect(T0 + 20, 30, PROXY, 3128, 11));
    ev.extend(flow(
        T0 + 30,
        30,
        11,
        PROXY,
        3128,
        &[connect_to("203.0.113.50:3333"), http_get()],
    ));
    let verdicts = run(ev, T0 + 42_000);
    assert!(verdicts.is_empty(), "{verdicts:#?}");
}

#[test]
fn pool_endpoints_never_name_a_proxy() {
    let mut ev = unverified(40, "/tmp/.x/kworker", 1.0);
    ev.push(connect(T0 + 20, 40, PROXY, 1080, 12));
    let mut packets = socks5_to([203, 0, 113, 50], 3333);
    packets.push(xmrig_login());
    ev.extend(flow(T0 + 30, 40, 12, PROXY, 1080, &packets));
    let (verdicts, det) = run_with(DetectorConfig::default(), ev, T0 + 10_000);
    assert!(!verdicts.is_empty());
    // Blocking the proxy would cut off its other clients; the miner's
    // tgids are blocked instead.
    assert!(
        det.pool_endpoints(40).is_empty(),
        "{:?}",
        det.pool_endpoints(40)
    );
}

fn node_ws(tgid: u32, message: &[u8]) -> Vec<Event> {
    let path = "/usr/bin/node";
    let mut ev = vec![
        exec(T0, tgid, 1, path, &["node", "client.js"]),
        provenance(T0 + 80, tgid, path, true),
        connect(T0 + 20, tgid, "10.0.0.8", 8080, 13),
    ];
    let frame =
        websocket::client_frame(websocket::OP_TEXT, true, message, [0x11, 0x22, 0x33, 0x44]);
    ev.extend(flow(
        T0 + 30,
        tgid,
        13,
        "10.0.0.8",
        8080,
        &[ws_upgrade(), frame],
    ));
    ev.extend(cpu_series(T0 + 300, 40, &[tgid], |_| 1.0));
    ev
}

#[test]
fn a_packaged_node_mining_over_websocket_is_pool_protocol_busy() {
    let login = format!(
        r#"{{"id":1,"jsonrpc":"2.0","method":"login","params":{{"login":"{WALLET}","pass":"x","agent":"node-miner/1.0","algo":["rx/0"]}}}}"#
    );
    let verdicts = run(node_ws(50, login.as_bytes()), T0 + 42_000);
    assert_eq!(
        rules_of(&verdicts),
        BTreeMap::from([((Rule::PoolProtocolBusy, 50), Severity::High)]),
        "{verdicts:#?}"
    );
    let e = verdicts[0].evidence_of(Signal::PoolProtocol).unwrap();
    assert_eq!(
        e.detail,
        "xmrig-login to 10.0.0.8:8080, over WebSocket ws://10.0.0.8:8080/proxy"
    );
    // The same node talking JSON-RPC to a price feed: silent.
    let sub = br#"{"jsonrpc":"2.0","id":1,"method":"subscribe","params":{"channel":"prices"}}"#;
    let verdicts = run(node_ws(51, sub), T0 + 42_000);
    assert!(verdicts.is_empty(), "{verdicts:#?}");
}

/// An unverified process holding a TLS flow without ALPN (or with ALPN),
/// idle for `idle_s` seconds, then on both cores; flow counters after 25 s.
fn tls_client(tgid: u32, alpn: bool, cmdline: bool, idle_s: u64) -> Vec<Event> {
    let path = "/opt/agent/agent";
    let argv: &[&str] = if cmdline {
        &[
            "agent",
            "-o",
            "stratum+tcp://203.0.113.50:3333",
            "-u",
            WALLET,
        ]
    } else {
        &["agent"]
    };
    let mut exts = vec![super::protocol::tls::tests::sni_ext("api.example")];
    if alpn {
        exts.push(super::protocol::tls::tests::alpn_ext(&["h2"]));
    }
    let hello = super::protocol::tls::tests::hello(&[0x1301], &exts);
    let mut ev = vec![
        exec(T0, tgid, 1, path, argv),
        provenance(T0 + 80, tgid, path, false),
        connect(T0 + 20, tgid, "10.0.0.9", 8443, 14),
        seg(T0 + 30, tgid, 14, "10.0.0.9", 8443, 0, 1, &hello),
        Event::FlowStats(FlowStats {
            time: ms(T0 + 25_030),
            tgid: Some(tgid),
            cookie: 14,
            packets: 30,
            bytes: 30 * 120,
            max_len: hello.len() as u32,
            since: ms(T0 + 30),
        }),
    ];
    ev.extend(cpu_series(T0 + idle_s * 1000, 20, &[tgid], |_| 2.0));
    ev
}

fn two_cpus() -> DetectorConfig {
    DetectorConfig {
        online_cpus: 2,
        ..DetectorConfig::default()
    }
}

#[test]
fn weak_tls_evidence_never_alerts_alone_and_joins_a_verdict() {
    let (alone, _) = run_with(two_cpus(), tls_client(60, false, false, 0), T0 + 50_000);
    assert!(alone.is_empty(), "weak evidence alone: {alone:#?}");
    // With a miner command line, once busy after 30 s: the verdict carries
    // the TLS flow's shape.
    let (v, _) = run_with(two_cpus(), tls_client(61, false, true, 30), T0 + 55_000);
    let cmd = v
        .iter()
        .find(|v| v.rule == Rule::MinerCommandLine)
        .unwrap_or_else(|| panic!("{v:#?}"));
    let weak = cmd
        .evidence_of(Signal::TlsIdleNoAlpn)
        .unwrap_or_else(|| panic!("{:#?}", cmd.evidence));
    assert!(
        weak.detail.starts_with(
            "TLS without ALPN to 10.0.0.9:8443, server name api.example, JA4 t12d010100_"
        ),
        "{}",
        weak.detail
    );
    assert!(
        weak.detail.contains("open 25 s, 30 records of 120 bytes"),
        "{}",
        weak.detail
    );
    // An HTTP client's TLS (ALPN h2) is not the shape.
    let (v, _) = run_with(two_cpus(), tls_client(62, true, true, 30), T0 + 55_000);
    let cmd = v.iter().find(|v| v.rule == Rule::MinerCommandLine).unwrap();
    assert!(
        cmd.evidence
            .iter()
            .all(|e| e.signal != Signal::TlsIdleNoAlpn)
    );
    // Half the machine is not "every core".
    let (v, _) = run_with(
        DetectorConfig {
            online_cpus: 4,
            ..DetectorConfig::default()
        },
        tls_client(63, false, true, 30),
        T0 + 55_000,
    );
    let cmd = v.iter().find(|v| v.rule == Rule::MinerCommandLine).unwrap();
    assert!(
        cmd.evidence
            .iter()
            .all(|e| e.signal != Signal::TlsIdleNoAlpn)
    );
}

#[test]
fn a_retransmitted_handshake_packet_changes_nothing() {
    let mut ev = unverified(70, "/tmp/.x/kworker", 1.0);
    ev.push(connect(T0 + 20, 70, PROXY, 1080, 15));
    let hs = socks5_to([203, 0, 113, 50], 3333);
    ev.push(seg(T0 + 30, 70, 15, PROXY, 1080, 0, 1, &hs[0]));
    // The greeting again (a retransmission), then the rest.
    ev.push(seg(T0 + 31, 70, 15, PROXY, 1080, 1, 1, &hs[0]));
    ev.push(seg(T0 + 32, 70, 15, PROXY, 1080, 2, 4, &hs[1]));
    ev.push(seg(
        T0 + 33,
        70,
        15,
        PROXY,
        1080,
        3,
        14,
        &stratum_subscribe(),
    ));
    let verdicts = run(ev, T0 + 5_000);
    assert!(
        verdicts
            .iter()
            .any(|v| v.rule == Rule::PoolProtocolUnverified
                && v.evidence.iter().any(|e| e.detail
                    == "stratum-v1 to 203.0.113.50:3333 via socks5 proxy 10.0.0.5:1080")),
        "{verdicts:#?}"
    );
}
