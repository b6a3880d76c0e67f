//! The embedded eBPF object: its programs, the hooks they run at, its maps' names, and the
//! identity of this build of it.

use serde::Serialize;

/// The programs and maps, compiled from crate `datapath-ebpf` by build.rs.
pub(super) static DATAPATH_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/datapath"));

pub const XDP_POD: &str = "xdp_pod";
pub const TC_POD: &str = "tc_pod";
pub const TC_UNDERLAY: &str = "tc_underlay";
// Map names end in their layout's version (see `datapath-ebpf/src/maps.rs`): a map whose key,
// value, type or size changes gets the next one, so the pins of an older layout are told apart
// by name and replaced, never opened as this one.
pub(super) const COUNTERS: &str = "COUNTERS_V2";
pub const ENDPOINTS: &str = "ENDPOINTS_V2";
pub const ENDPOINTS6: &str = "ENDPOINTS6_V1";
pub(super) const SOURCES: &str = "SOURCES_V3";
pub(super) const NODE: &str = "NODE_V3";
pub(super) const REMOTES: &str = "REMOTES_V2";
pub(super) const REMOTES6: &str = "REMOTES6_V1";
pub(super) const PEERS: &str = "PEERS_V2";
pub(super) const DEVMAP: &str = "DEVMAP_V2";
pub(super) const MONITOR: &str = "MONITOR_V1";
pub(super) const EVENTS: &str = "EVENTS_V1";
pub(super) const EVENTS_LOST: &str = "EVENTS_LOST_V1";
/// Every map, pinned under a node's or network's directory by these names.
pub(super) const MAPS: [&str; 12] = [
    COUNTERS,
    ENDPOINTS,
    ENDPOINTS6,
    SOURCES,
    NODE,
    REMOTES,
    REMOTES6,
    PEERS,
    DEVMAP,
    MONITOR,
    EVENTS,
    EVENTS_LOST,
];

/// Where fastpath pins each node's maps, programs and links.
pub const PIN_ROOT: &str = "/sys/fs/bpf/fastpath";

/// Where a program hooks into a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    /// XDP in native (driver) mode.
    Xdp,
    /// TC ingress through tcx.
    Tc,
    /// TC ingress through tcx on the underlay device: VXLAN decapsulation.
    #[value(skip)]
    TcUnderlay,
}

impl Hook {
    pub fn program(self) -> &'static str {
        match self {
            Hook::Xdp => XDP_POD,
            Hook::Tc => TC_POD,
            Hook::TcUnderlay => TC_UNDERLAY,
        }
    }

    /// The hook's short name, in the names of its pins.
    pub(super) fn name(self) -> &'static str {
        match self {
            Hook::Xdp => "xdp",
            Hook::Tc => "tc",
            Hook::TcUnderlay => "underlay",
        }
    }

    /// Every hook: a node's or network's programs are pinned, and its links, by hook.
    pub(super) const ALL: [Hook; 3] = [Hook::Xdp, Hook::Tc, Hook::TcUnderlay];
}

/// This build of the object, as 16 hex digits (a hash of its bytes, taken by build.rs): pinned
/// programs carry it in their names, so a node keeps using its programs until a fastpath with
/// other ones comes.
pub(super) const BUILD_ID: &str = env!("FASTPATH_DATAPATH_BUILD");
