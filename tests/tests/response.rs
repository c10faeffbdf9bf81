//! Response against the real kernel: egress blocks through the connect
//! hooks, and what happens to them when the daemon dies. Needs root.

mod common;

use std::{
    net::{TcpListener, TcpStream},
    process::{Command, Stdio},
    time::Duration,
};

use common::Harness;
use minerwatch::sensor::{Sensor, SensorConfig};

/// Connect from a fresh python3 child; Ok(()) or the errno name.
fn connect_from_child(port: u16) -> std::process::Child {
    Command::new("python3")
        .args([
            "-c",
            &format!(
                "import socket,sys,time\ntime.sleep(0.3)\ns=socket.socket()\ntry:\n s.connect(('127.0.0.1',{port}))\n print('ok')\nexcept OSError as e:\n print(e.errno)\n"
            ),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3")
}

fn result(child: std::process::Child) -> String {
    let out = child.wait_with_output().expect("wait");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn blocked_tgid_gets_eperm_while_others_still_connect() {
    let _h = Harness::start(); // keep a reader draining events
    let mut sensor = Sensor::load(&SensorConfig::default()).expect("load");
    let mut bl = sensor.take_blocklist().expect("blocklist");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();

    let blocked = connect_from_child(port);
    bl.block_tgid(blocked.id()).unwrap();
    let free = connect_from_child(port);
    assert_eq!(
        result(blocked),
        libc::EPERM.to_string(),
        "blocked tgid refused with EPERM"
    );
    assert_eq!(
        result(free),
        "ok",
        "another process to the same port is unaffected"
    );
}

#[test]
fn blocked_pool_endpoint_refuses_everyone_including_v4_mapped() {
    let mut sensor = Sensor::load(&SensorConfig::default()).expect("load");
    let mut bl = sensor.take_blocklist().expect("blocklist");
    let pool = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = pool.local_addr().unwrap().port();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let other_port = other.local_addr().unwrap().port();
    bl.block_dest("127.0.0.1".parse().unwrap(), port).unwrap();

    let e = TcpStream::connect(("127.0.0.1", port)).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EPERM));
    let mapped: std::net::SocketAddr = format!("[::ffff:127.0.0.1]:{port}").parse().unwrap();
    let e = TcpStream::connect(mapped).unwrap_err();
    assert_eq!(
        e.raw_os_error(),
        Some(libc::EPERM),
        "v4-mapped cannot bypass a v4 block"
    );
    TcpStream::connect(("127.0.0.1", other_port)).expect("other endpoints still reachable");

    bl.unblock_dest("127.0.0.1".parse().unwrap(), port).unwrap();
    TcpStream::connect(("127.0.0.1", port)).expect("unblocked");
}

/// Blocks live in maps and links owned by the daemon; they are not pinned,
/// so they end with it. Deliberate: a tgid block left behind by a crashed
/// daemon would hit whatever process reuses that pid next, and nobody would
/// be left to lift it. A restarted daemon re-detects a still-running miner
/// (startup sweep) and blocks it again.
#[test]
fn blocks_end_when_the_daemon_dies() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    {
        let mut sensor = Sensor::load(&SensorConfig::default()).expect("load");
        let mut bl = sensor.take_blocklist().expect("blocklist");
        bl.block_dest("127.0.0.1".parse().unwrap(), port).unwrap();
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
        drop(bl);
        drop(sensor); // what a crash does to our fds
    }
    std::thread::sleep(Duration::from_millis(100));
    TcpStream::connect(("127.0.0.1", port)).expect("block gone with the daemon");
}
