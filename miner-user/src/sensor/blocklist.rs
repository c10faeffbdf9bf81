//! The response's handle on the kernel's egress block maps. The connect
//! hooks refuse (EPERM) connects from a blocked tgid, and to a blocked
//! endpoint from anyone.

use std::net::IpAddr;

use aya::maps::{HashMap as BpfHashMap, MapData};
use miner_ebpf_common::DestKey;

pub struct Blocklist {
    tgids: BpfHashMap<MapData, u32, u8>,
    dests: BpfHashMap<MapData, DestKey, u8>,
}

/// Endpoints are keyed as IPv6; IPv4 as `::ffff:a.b.c.d`, matching the
/// kernel's normalisation of v4-mapped connects.
pub fn dest_key(addr: IpAddr, port: u16) -> DestKey {
    let v6 = match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(v6, |v4| v4.to_ipv6_mapped()),
    };
    DestKey {
        addr: v6.octets(),
        port,
        _pad: [0; 6],
    }
}

impl Blocklist {
    pub fn new(
        tgids: BpfHashMap<MapData, u32, u8>,
        dests: BpfHashMap<MapData, DestKey, u8>,
    ) -> Self {
        Blocklist { tgids, dests }
    }

    pub fn block_tgid(&mut self, tgid: u32) -> Result<(), aya::maps::MapError> {
        self.tgids.insert(tgid, 1, 0)
    }

    pub fn unblock_tgid(&mut self, tgid: u32) -> Result<(), aya::maps::MapError> {
        self.tgids.remove(&tgid)
    }

    /// Port 0 blocks every port of the address.
    pub fn block_dest(&mut self, addr: IpAddr, port: u16) -> Result<(), aya::maps::MapError> {
        self.dests.insert(dest_key(addr, port), 1, 0)
    }

    pub fn unblock_dest(&mut self, addr: IpAddr, port: u16) -> Result<(), aya::maps::MapError> {
        self.dests.remove(&dest_key(addr, port))
    }
}
