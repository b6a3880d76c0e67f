//! The maps the control plane fills (endpoints, sources, node settings, remote pod CIDRs, peers,
//! redirect targets). BTF definitions, so that `bpftool map dump` names their fields. Each name
//! ends in the version of its layout (key, value, type, size): a pin of another layout is never
//! taken for this one, because its name differs (see the control plane's `datapath::object`).

use aya_ebpf::{
    btf_maps::{Array, DevMapHash, HashMap, LpmTrie},
    macros::btf_map,
};
use datapath_common::maps::{Endpoint, MAX_ENDPOINTS, MAX_PEERS, NodeConfig, Peer, Remote, Source};

/// Pod IPv4 → where the pod is.
#[btf_map(name = "ENDPOINTS_V2")]
pub static ENDPOINTS: HashMap<[u8; 4], Endpoint, { MAX_ENDPOINTS as usize }> = HashMap::new();

/// Pod IPv6 → where the pod is.
#[btf_map(name = "ENDPOINTS6_V1")]
pub static ENDPOINTS6: HashMap<[u8; 16], Endpoint, { MAX_ENDPOINTS as usize }> = HashMap::new();

/// Host-side veth ifindex → the addresses and MAC its pod may send from.
#[btf_map(name = "SOURCES_V3")]
pub static SOURCES: HashMap<u32, Source, { MAX_ENDPOINTS as usize }> = HashMap::new();

/// One entry: this node's settings.
#[btf_map(name = "NODE_V3")]
pub static NODE: Array<NodeConfig, 1> = Array::new();

/// Remote pod CIDR → the peer node that has it.
#[btf_map(name = "REMOTES_V2")]
pub static REMOTES: LpmTrie<[u8; 4], Remote, { MAX_PEERS as usize }> = LpmTrie::new();

/// Remote IPv6 pod prefix → the peer node that has it.
#[btf_map(name = "REMOTES6_V1")]
pub static REMOTES6: LpmTrie<[u8; 16], Remote, { MAX_PEERS as usize }> = LpmTrie::new();

/// Underlay IPv4 of every peer → PEER_KNOWN: the sources VXLAN is taken from.
#[btf_map(name = "PEERS_V2")]
pub static PEERS: HashMap<[u8; 4], Peer, { MAX_PEERS as usize }> = HashMap::new();

/// XDP redirect targets: host-side veth ifindex → itself, and the underlay device. The kernel
/// takes no BTF types for a devmap, so bpftool shows this one in hex.
#[btf_map(name = "DEVMAP_V2")]
pub static DEVMAP: DevMapHash<{ MAX_ENDPOINTS as usize }> = DevMapHash::new();
