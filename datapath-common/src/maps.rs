//! Keys and values of the maps the control plane fills and the programs read.

use bytemuck::{Pod, Zeroable};

/// Entries the endpoint maps have room for (pods on one node).
pub const MAX_ENDPOINTS: u32 = 16384;

/// A pod on this node, keyed by its IPv4 address (network byte order, as in the packet).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Endpoint {
    /// The pod's host-side veth: where frames for the pod are redirected.
    pub ifindex: u32,
    /// `ENDPOINT_*` flags.
    pub flags: u32,
    /// The MAC of the pod's own interface (eth0 inside the pod).
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// What a pod may send from: its host-side veth's ifindex keys this in the source map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Source {
    /// The pod's IPv4 address, network byte order.
    pub ip: u32,
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// Node-wide settings, in a one-entry array so the control plane can change them at run time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct NodeConfig {
    /// The bridge's MAC: frames a pod addresses to it are routed, not switched.
    pub gateway_mac: [u8; 6],
    pub _pad: [u8; 2],
    /// The bridge's IPv4 address, network byte order.
    pub gateway_ip: u32,
    /// `NODE_*` flags.
    pub flags: u32,
}

/// NodeConfig::flags: the fast path is on. Off, the programs count and pass everything.
pub const NODE_FAST_PATH: u32 = 1;

#[cfg(feature = "user")]
mod user {
    unsafe impl aya::Pod for super::Endpoint {}
    unsafe impl aya::Pod for super::Source {}
    unsafe impl aya::Pod for super::NodeConfig {}
}

const _: () = assert!(core::mem::size_of::<Endpoint>() == 16);
const _: () = assert!(core::mem::size_of::<Source>() == 12);
const _: () = assert!(core::mem::size_of::<NodeConfig>() == 16);
