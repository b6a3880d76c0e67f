//! What the control plane writes into the maps, and the map values it becomes.

use std::net::{Ipv4Addr, Ipv6Addr};

use datapath_common::maps::{Endpoint, Remote, Source};

use crate::mac::Mac;

/// The overlay part of a node's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverlaySettings {
    pub vtep_mac: Mac,
    pub vni: u32,
    pub port: u16,
    pub underlay_ifindex: u32,
    pub underlay_ip: Ipv4Addr,
    pub underlay_mtu: u32,
}

/// A peer node as the overlay maps describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerEntry {
    pub pod_cidr: Option<ipnet::Ipv4Net>,
    pub pod_cidr6: Option<ipnet::Ipv6Net>,
    pub underlay_ip: Ipv4Addr,
    pub vtep_mac: Mac,
}

impl PeerEntry {
    /// The REMOTES entry, when the peer's pods have IPv4: (prefix length, network, value).
    pub(super) fn remote(&self) -> Option<(u32, [u8; 4], Remote)> {
        let cidr = self.pod_cidr?;
        Some((
            u32::from(cidr.prefix_len()),
            cidr.network().octets(),
            self.value(),
        ))
    }

    /// The REMOTES6 entry, when the peer's pods have IPv6.
    pub(super) fn remote6(&self) -> Option<(u32, [u8; 16], Remote)> {
        let cidr = self.pod_cidr6?;
        Some((
            u32::from(cidr.prefix_len()),
            cidr.network().octets(),
            self.value(),
        ))
    }

    fn value(&self) -> Remote {
        Remote {
            underlay_ip: self.underlay_ip.octets(),
            vtep_mac: self.vtep_mac.0,
            _pad: [0; 2],
        }
    }
}

/// Who wrote an endpoint entry. Several writers share one node's maps: the node's `fastpath up`
/// (its own pods) and every CNI network joined to the node (their pods). The rule, the only one:
/// each writer adds, changes and removes only the entries that carry its id, and an address held
/// by another writer's live device is refused, never taken over. The id is stored in each entry,
/// so no writer has to guess from device names whose an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner(u32);

impl Owner {
    /// What entries written before owners were recorded hold: nobody's. Such an entry is taken
    /// by the owner that writes an entry for its device, or any owner once the device is gone.
    pub const BEFORE_OWNERS: Owner = Owner(0);

    /// The pods of node `netns` (its namespace's label: unique among nodes).
    pub fn node(netns: &str) -> Self {
        Self::named(&["node ", netns])
    }

    /// The pods of CNI network `network`.
    pub fn cni_network(network: &str) -> Self {
        Self::named(&["cni ", network])
    }

    fn named(parts: &[&str]) -> Self {
        let hash = crate::fnv::fnv1a(parts);
        // 0 is what entries from before owners were recorded hold: nobody's.
        Self(((hash >> 32) as u32 ^ hash as u32).max(1))
    }

    pub fn id(self) -> u32 {
        self.0
    }
}

/// A local pod as the maps describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointEntry {
    /// Its IPv4 address, when it has one (an IPv6-only pod has none).
    pub ip: Option<Ipv4Addr>,
    /// Its IPv6 address, when it is dual-stack.
    pub ip6: Option<Ipv6Addr>,
    /// The pod's host-side veth.
    pub ifindex: u32,
    pub mac: Mac,
}

impl EndpointEntry {
    /// The ENDPOINTS entry: the pod's address → where its frames go, and who says so.
    pub(super) fn endpoint(&self, owner: Owner) -> Option<([u8; 4], Endpoint)> {
        Some((self.ip?.octets(), self.value(owner)))
    }

    /// The ENDPOINTS6 entry, when the pod has an IPv6 address.
    pub(super) fn endpoint6(&self, owner: Owner) -> Option<([u8; 16], Endpoint)> {
        Some((self.ip6?.octets(), self.value(owner)))
    }

    fn value(&self, owner: Owner) -> Endpoint {
        Endpoint {
            ifindex: self.ifindex,
            owner: owner.id(),
            mac: self.mac.0,
            _pad: [0; 2],
        }
    }

    /// The SOURCES entry: the pod's veth → the addresses and MAC it may send from.
    pub(super) fn source(&self) -> (u32, Source) {
        // All zeros where the pod has no address of that family: the programs take nothing of
        // that family from it.
        let value = Source {
            ip: self.ip.map_or([0; 4], |ip| ip.octets()),
            mac: self.mac.0,
            _pad: [0; 2],
            ip6: self.ip6.map_or([0; 16], |ip6| ip6.octets()),
        };
        (self.ifindex, value)
    }
}
