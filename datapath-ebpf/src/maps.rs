//! The maps the control plane fills (endpoints, sources, node settings, redirect targets).

use aya_ebpf::{
    macros::map,
    maps::{Array, DevMapHash, HashMap},
};
use datapath_common::maps::{Endpoint, MAX_ENDPOINTS, NodeConfig, Source};

/// Pod IPv4 (network order) → where the pod is.
#[map]
pub static ENDPOINTS: HashMap<u32, Endpoint> = HashMap::with_max_entries(MAX_ENDPOINTS, 0);

/// Host-side veth ifindex → the address and MAC its pod may send from.
#[map]
pub static SOURCES: HashMap<u32, Source> = HashMap::with_max_entries(MAX_ENDPOINTS, 0);

/// One entry: this node's settings.
#[map]
pub static NODE: Array<NodeConfig> = Array::with_max_entries(1, 0);

/// XDP redirect targets: host-side veth ifindex → itself.
#[map]
pub static DEVMAP: DevMapHash = DevMapHash::with_max_entries(MAX_ENDPOINTS, 0);
