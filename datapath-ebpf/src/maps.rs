//! The maps the control plane fills (endpoints, sources, node settings, remote pod CIDRs, peers,
//! redirect targets).

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, DevMapHash, HashMap, LpmTrie},
};
use datapath_common::maps::{Endpoint, MAX_ENDPOINTS, MAX_PEERS, NodeConfig, Remote, Source};

/// Pod IPv4 (network order) → where the pod is.
#[map]
pub static ENDPOINTS: HashMap<u32, Endpoint> = HashMap::with_max_entries(MAX_ENDPOINTS, 0);

/// Host-side veth ifindex → the address and MAC its pod may send from.
#[map]
pub static SOURCES: HashMap<u32, Source> = HashMap::with_max_entries(MAX_ENDPOINTS, 0);

/// One entry: this node's settings.
#[map]
pub static NODE: Array<NodeConfig> = Array::with_max_entries(1, 0);

/// Remote pod CIDR (network order) → the peer node that has it.
#[map]
pub static REMOTES: LpmTrie<u32, Remote> = LpmTrie::with_max_entries(MAX_PEERS, BPF_F_NO_PREALLOC);

/// Underlay IPv4 of every peer (network order) → PEER_KNOWN: the sources VXLAN is taken from.
#[map]
pub static PEERS: HashMap<u32, u8> = HashMap::with_max_entries(MAX_PEERS, 0);

/// XDP redirect targets: host-side veth ifindex → itself, and the underlay device.
#[map]
pub static DEVMAP: DevMapHash = DevMapHash::with_max_entries(MAX_ENDPOINTS, 0);
