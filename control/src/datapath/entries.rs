//! What the control plane writes into the maps, and the map values it becomes.

use std::net::Ipv4Addr;

use datapath_common::maps::{Endpoint, Remote, Source};

/// The overlay part of a node's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverlaySettings {
    pub vtep_mac: [u8; 6],
    pub vni: u32,
    pub port: u16,
    pub underlay_ifindex: u32,
    pub underlay_ip: Ipv4Addr,
    pub underlay_mtu: u32,
}

/// A peer node as the overlay maps describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerEntry {
    pub pod_cidr: ipnet::Ipv4Net,
    pub underlay_ip: Ipv4Addr,
    pub vtep_mac: [u8; 6],
}

impl PeerEntry {
    /// The REMOTES entry: (prefix length, network, value).
    pub(super) fn remote(&self) -> (u32, u32, Remote) {
        let value = Remote {
            underlay_ip: u32::from_ne_bytes(self.underlay_ip.octets()),
            vtep_mac: self.vtep_mac,
            _pad: [0; 2],
        };
        (
            u32::from(self.pod_cidr.prefix_len()),
            u32::from_ne_bytes(self.pod_cidr.network().octets()),
            value,
        )
    }
}

/// A local pod as the maps describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointEntry {
    pub ip: Ipv4Addr,
    /// The pod's host-side veth.
    pub ifindex: u32,
    pub mac: [u8; 6],
}

impl EndpointEntry {
    /// The ENDPOINTS entry: the pod's address → where its frames go.
    pub(super) fn endpoint(&self) -> (u32, Endpoint) {
        let value = Endpoint {
            ifindex: self.ifindex,
            flags: 0,
            mac: self.mac,
            _pad: [0; 2],
        };
        (u32::from_ne_bytes(self.ip.octets()), value)
    }

    /// The SOURCES entry: the pod's veth → the address and MAC it may send from.
    pub(super) fn source(&self) -> (u32, Source) {
        let value = Source {
            ip: u32::from_ne_bytes(self.ip.octets()),
            mac: self.mac,
            _pad: [0; 2],
        };
        (self.ifindex, value)
    }
}
