//! The egress payload peek's budgets against the running kernel: what a
//! socket costs is bounded by the socket, so these count the records each
//! kind of socket produces over more packets than its budget. Needs root.

mod common;

use std::{
    io::Write,
    net::{TcpListener, TcpStream},
    time::Duration,
};

use common::Harness;
use minerwatch::event::{Event, Payload};

/// Packets a socket sends in each test: more than any budget.
const PACKETS: usize = 12;

/// A connected pair on loopback: (client, accepted).
fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let c = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
    let (a, _) = l.accept().expect("accept");
    for s in [&c, &a] {
        s.set_nodelay(true).expect("nodelay");
    }
    (c, a)
}

/// Sends each message as its own packet (no delay, a pause between).
fn send_each(s: &mut TcpStream, msgs: &[Vec<u8>]) {
    for m in msgs {
        s.write_all(m).expect("write");
        std::thread::sleep(Duration::from_millis(15));
    }
}

fn json_lines(tag: &str) -> Vec<Vec<u8>> {
    (0..PACKETS)
        .map(|i| format!("{{\"id\":{i},\"method\":\"{tag}\",\"params\":[]}}\n").into_bytes())
        .collect()
}

/// Peeks of the packets `from` sent (by its local port), in order, after
/// the records had time to arrive.
fn peeks_from(h: &Harness, from: &TcpStream) -> Vec<Payload> {
    let port = from.local_addr().expect("addr").port();
    std::thread::sleep(Duration::from_millis(400));
    h.matching(|e| matches!(e, Event::Payload(p) if p.sport == port))
        .into_iter()
        .filter_map(|e| match e {
            Event::Payload(p) => Some(p),
            _ => None,
        })
        .collect()
}

#[test]
fn a_connected_flow_is_peeked_for_its_first_three_packets_only() {
    let h = Harness::start();
    let (mut c, _a) = pair();
    let msgs = json_lines("mining.subscribe");
    send_each(&mut c, &msgs);
    let p = peeks_from(&h, &c);
    let idx: Vec<u8> = p.iter().map(|p| p.packet_index).collect();
    assert_eq!(idx, [0, 1, 2], "three packets peeked, then none: {p:?}");
    for (i, p) in p.iter().enumerate() {
        assert_eq!(p.data, msgs[i]);
        assert_eq!(p.tgid, Some(std::process::id()));
        assert!(!p.untracked);
    }
}

#[test]
fn a_proxy_handshake_raises_the_budget_to_eight_packets() {
    let h = Harness::start();
    let (mut c, _a) = pair();
    let mut msgs =
        vec![b"CONNECT pool.example:3333 HTTP/1.1\r\nHost: pool.example:3333\r\n\r\n".to_vec()];
    msgs.extend(json_lines("login"));
    send_each(&mut c, &msgs);
    let idx: Vec<u8> = peeks_from(&h, &c).iter().map(|p| p.packet_index).collect();
    assert_eq!(idx, (0..8).collect::<Vec<u8>>());
}

#[test]
fn a_socket_that_predates_the_agent_is_peeked_once_at_its_first_json_packet() {
    // Both ends exist before the programs load: neither connect was seen.
    let (mut c, mut a) = pair();
    let h = Harness::start();
    let msgs = json_lines("submit");
    send_each(&mut c, &msgs);
    let p = peeks_from(&h, &c);
    assert_eq!(p.len(), 1, "one peek of the untracked flow: {p:?}");
    assert!(p[0].untracked);
    assert_eq!(
        p[0].data, msgs[0],
        "its first payload packet after the load"
    );

    // A JSON reply from the accepted end: the same budget.
    let replies = json_lines("job");
    send_each(&mut a, &replies);
    let p = peeks_from(&h, &a);
    assert_eq!(p.len(), 1, "one peek of the accepted socket: {p:?}");
    assert_eq!(p[0].data, replies[0]);
}

#[test]
fn an_untracked_socket_is_done_after_four_payload_packets() {
    let (mut c, _a) = pair();
    let h = Harness::start();
    let mut msgs: Vec<Vec<u8>> = (0..4).map(|i| format!("line {i}\n").into_bytes()).collect();
    msgs.extend(json_lines("submit"));
    send_each(&mut c, &msgs);
    let p = peeks_from(&h, &c);
    assert!(
        p.is_empty(),
        "JSON after four other payload packets is past the budget: {p:?}"
    );

    // Within the budget, JSON after other payload is still seen; an
    // accepted socket (made while the programs watch) is untracked too.
    let (_c, mut a) = pair();
    let mut msgs: Vec<Vec<u8>> = (0..3).map(|i| format!("line {i}\n").into_bytes()).collect();
    msgs.extend(json_lines("keepalived"));
    send_each(&mut a, &msgs);
    let p = peeks_from(&h, &a);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].untracked);
    assert_eq!(p[0].data, msgs[3]);
}
