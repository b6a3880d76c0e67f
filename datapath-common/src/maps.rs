//! Keys and values of the maps the control plane fills and the programs read.

use bytemuck::{Pod, Zeroable};

/// Entries the endpoint maps have room for (pods on one node).
pub const MAX_ENDPOINTS: u32 = 16384;

/// A pod on this node, keyed by its IPv4 address (bytes as in the packet: bpftool prints them
/// as the address's four numbers).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Endpoint {
    /// The pod's host-side veth: where frames for the pod are redirected.
    pub ifindex: u32,
    /// Who wrote the entry (the control plane's `Owner` id; 0 before owners were recorded). The
    /// programs never read it: several writers share a node's maps, and each keeps only its own.
    pub owner: u32,
    /// The MAC of the pod's own interface (eth0 inside the pod).
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// What a pod may send from: its host-side veth's ifindex keys this in the source map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Source {
    /// The pod's IPv4 address, as in the packet; all zeros when it has none (IPv6 only).
    pub ip: [u8; 4],
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
    /// The pod's IPv6 address, as in the packet; all zeros when it has none (it then speaks IPv6
    /// from its link-local address only).
    pub ip6: [u8; 16],
}

/// Node-wide settings, in a one-entry array so the control plane can change them at run time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct NodeConfig {
    /// The bridge's MAC: frames a pod addresses to it are routed, not switched.
    pub gateway_mac: [u8; 6],
    pub _pad: [u8; 2],
    /// The bridge's IPv4 address.
    pub gateway_ip: [u8; 4],
    /// `NODE_*` flags.
    pub flags: u32,
    /// The MAC of the node's VXLAN device (VTEP): inner frames from peers are addressed to it,
    /// and frames this node encapsulates carry it as their source.
    pub vtep_mac: [u8; 6],
    /// VXLAN UDP destination port.
    pub vxlan_port: u16,
    /// VXLAN network identifier (24 bits), host order.
    pub vni: u32,
    /// The underlay device: where encapsulated frames leave, and the output device of the route
    /// lookup that finds their next hop.
    pub underlay_ifindex: u32,
    /// The node's underlay IPv4 address (outer source).
    pub underlay_ip: [u8; 4],
    /// Largest outer IPv4 packet the underlay carries (the configured underlay MTU).
    pub underlay_mtu: u32,
    /// The bridge's IPv6 address; all zeros on a node without IPv6 pods.
    pub gateway6: [u8; 16],
}

/// NodeConfig::flags: the fast path is on. Off, the programs count and pass everything.
pub const NODE_FAST_PATH: u32 = 1;
/// NodeConfig::flags: the overlay fields are set; pods' frames to remote pods are encapsulated
/// and VXLAN from peers is decapsulated. Off, cross-node traffic takes the kernel's VXLAN device.
pub const NODE_OVERLAY: u32 = 2;

/// Entries the remote-pod-CIDR and peer maps have room for (nodes in the overlay).
pub const MAX_PEERS: u32 = 4096;

/// A remote pod CIDR's node, the value of the LPM map keyed by pod CIDR.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Remote {
    /// The peer's underlay IPv4 address (outer destination).
    pub underlay_ip: [u8; 4],
    /// The MAC of the peer's VXLAN device: the inner destination MAC, as the kernel's neighbour
    /// entry for the peer would give it.
    pub vtep_mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// The peers map's value: the key (a peer's underlay address) is what matters, VXLAN from any
/// other address is dropped. A struct rather than a bare number so that `bpftool map dump` names
/// the field.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Peer {
    /// `PEER_*` flags.
    pub flags: u32,
}

/// Peer::flags: the underlay address is a known peer.
pub const PEER_KNOWN: u32 = 1;

#[cfg(feature = "user")]
mod user {
    unsafe impl aya::Pod for super::Endpoint {}
    unsafe impl aya::Pod for super::Source {}
    unsafe impl aya::Pod for super::NodeConfig {}
    unsafe impl aya::Pod for super::Remote {}
    unsafe impl aya::Pod for super::Peer {}
}

const _: () = assert!(core::mem::size_of::<Endpoint>() == 16);
const _: () = assert!(core::mem::size_of::<Source>() == 28);
const _: () = assert!(core::mem::size_of::<NodeConfig>() == 56);
const _: () = assert!(core::mem::size_of::<Remote>() == 12);
const _: () = assert!(core::mem::size_of::<Peer>() == 4);
