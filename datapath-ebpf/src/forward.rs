//! The forwarding decision for a pod's frame, shared by the XDP and TC programs: who sent the
//! frame, is it allowed to, and is its destination a pod on this node or behind a peer node.

use aya_ebpf::maps::lpm_trie::Key;
use datapath_common::{
    maps::{Endpoint, NODE_FAST_PATH, NODE_OVERLAY, NodeConfig, Remote, Source},
    reasons::*,
};
use network_types::{
    eth::{EthHdr, EtherType},
    ip::{Ipv4Hdr, Ipv6Hdr},
};

use crate::{
    classify::{self, Frame, Ip},
    csum,
    maps::{DEVMAP, ENDPOINTS, ENDPOINTS6, NODE, REMOTES, REMOTES6, SOURCES},
    nd,
    packet::{self, Packet},
    pod_source,
};

/// MACs to write into a routed frame.
pub struct Rewrite {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
}

pub enum Action {
    Pass,
    Drop,
    /// To a local pod's veth, the frame already rewritten if it is routed.
    Redirect {
        ifindex: u32,
    },
    /// Wrap in VXLAN for the peer node that has the destination's pod CIDR.
    Encap {
        peer: Remote,
        ipv6: bool,
    },
}

pub struct Decision {
    pub reason: Reason,
    pub action: Action,
}

#[inline(always)]
fn pass(reason: Reason) -> Decision {
    Decision {
        reason,
        action: Action::Pass,
    }
}

#[inline(always)]
fn drop(reason: Reason) -> Decision {
    Decision {
        reason,
        action: Action::Drop,
    }
}

/// Decides what to do with a frame that arrived on `ingress_ifindex` (a pod's host-side veth).
/// `vlan_tagged`: the kernel took a VLAN tag off the frame before the program ran (TC). A frame
/// for a routed local pod is rewritten here, so the caller only redirects it.
#[inline(always)]
pub fn decide(pkt: &Packet, ingress_ifindex: u32, vlan_tagged: bool) -> Decision {
    let Some(eth) = pkt.ptr_at::<EthHdr>(0) else {
        return pass(PASS_TRUNCATED);
    };
    // SAFETY: ptr_at checked that a whole EthHdr lies inside the frame.
    let eth = unsafe { &*eth };
    let node = NODE.get(0);
    // SAFETY: the map returns a valid pointer or none; entries are plain data.
    let Some(source) = (unsafe { SOURCES.get(ingress_ifindex) }) else {
        return not_from_pod(pkt, eth, node);
    };
    // Before anything is decided: whatever happens to the frame next, it is the pod's own.
    let frame = match pod_source::check(pkt, eth, source, vlan_tagged, node) {
        Err(reason) => return drop(reason),
        Ok(Some(Ip::V4(ip))) => classify::ipv4_frame(eth, ip),
        Ok(Some(Ip::V6(ip))) => classify::ipv6_frame(pkt, eth, ip),
        Ok(None) => classify::frame(pkt, eth),
    };
    let ip = match frame {
        Frame::Ip(ip) => ip,
        Frame::Other(reason) => return pass(reason),
    };
    let Some(node) = node.filter(|n| n.flags & NODE_FAST_PATH != 0) else {
        return pass(PASS_FAST_PATH_OFF);
    };
    let Some(endpoint) = endpoint_of(&ip) else {
        return remote(eth, &ip, source, node);
    };
    // Switched when addressed to the pod itself, routed when addressed to the gateway.
    let routed = eth.dst_addr != endpoint.mac;
    if routed {
        if eth.dst_addr != node.gateway_mac {
            return pass(PASS_NOT_ADDRESSED_TO_ENDPOINT);
        }
        if ip.hop_limit() <= 1 {
            return pass(PASS_TTL_EXPIRED);
        }
        if !routable(&ip, source) {
            return pass(PASS_IPV6_LINK_LOCAL);
        }
    }
    // Checked before the frame changes: a rewritten frame must not fall back to the kernel path.
    // bpf_redirect_peer cannot tell a vanished device (it drops the packet later); the kernel
    // removes a device's devmap entry when the device goes, so the devmap tells.
    if DEVMAP.get_ifindex(endpoint.ifindex).is_none() {
        return pass(PASS_REDIRECT_FAILED);
    }
    let reason = if routed {
        let rewrite = Rewrite {
            src_mac: node.gateway_mac,
            dst_mac: endpoint.mac,
        };
        if !apply(pkt, &rewrite, matches!(ip, Ip::V6(_))) {
            return pass(PASS_TRUNCATED);
        }
        REDIRECT_ROUTED
    } else {
        REDIRECT_SWITCHED
    };
    Decision {
        reason,
        action: Action::Redirect {
            ifindex: endpoint.ifindex,
        },
    }
}

/// The local pod with `ip`'s destination address.
#[inline(always)]
fn endpoint_of(ip: &Ip) -> Option<&'static Endpoint> {
    // SAFETY: the map returns a valid pointer or none; entries are plain data.
    unsafe {
        match ip {
            Ip::V4(ip) => ENDPOINTS.get(ip.dst_addr),
            Ip::V6(ip) => ENDPOINTS6.get(ip.dst_addr),
        }
    }
}

/// A frame on a device that is no registered pod veth (`fastpath watch`, a veth whose entry is not
/// written yet): counted by kind and left to the kernel.
#[inline(always)]
fn not_from_pod(pkt: &Packet, eth: &EthHdr, node: Option<&NodeConfig>) -> Decision {
    if let Frame::Other(reason) = classify::frame(pkt, eth) {
        return pass(reason);
    }
    if node.is_none_or(|n| n.flags & NODE_FAST_PATH == 0) {
        return pass(PASS_FAST_PATH_OFF);
    }
    pass(PASS_NOT_FROM_POD)
}

/// A destination that is no local pod: a remote pod when a peer has its CIDR and the frame is
/// routed (addressed to the gateway), as the kernel would route it into its VXLAN device.
#[inline(always)]
fn remote(eth: &EthHdr, ip: &Ip, source: &Source, node: &NodeConfig) -> Decision {
    if node.flags & NODE_OVERLAY == 0 {
        return pass(PASS_NO_ENDPOINT);
    }
    let peer = match ip {
        Ip::V4(ip) => REMOTES.get(&Key::new(32, ip.dst_addr)),
        Ip::V6(ip) => REMOTES6.get(&Key::new(128, ip.dst_addr)),
    };
    let Some(peer) = peer else {
        return pass(PASS_NO_ENDPOINT);
    };
    if eth.dst_addr != node.gateway_mac {
        return pass(PASS_NOT_ADDRESSED_TO_ENDPOINT);
    }
    if ip.hop_limit() <= 1 {
        return pass(PASS_TTL_EXPIRED);
    }
    if !routable(ip, source) {
        return pass(PASS_IPV6_LINK_LOCAL);
    }
    Decision {
        reason: REDIRECT_ENCAPSULATED,
        action: Action::Encap {
            peer: *peer,
            ipv6: matches!(ip, Ip::V6(_)),
        },
    }
}

/// Whether `ip` from the pod `source` (whose checks it passed) may be routed or encapsulated:
/// IPv6 only from the pod's own address. From its link-local address (or the unspecified one)
/// it must not leave its link (RFC 4291 2.5.6), which the kernel knows how to tell.
#[inline(always)]
fn routable(ip: &Ip, source: &Source) -> bool {
    match ip {
        Ip::V4(_) => true,
        Ip::V6(ip) => nd::is_configured_address_of(&ip.src_addr, source),
    }
}

/// Does to a routed frame (an IPv6 packet with `ipv6`) what the kernel's forwarding would: new
/// MACs, TTL or hop limit one less (an IPv4 header checksum updated incrementally, RFC 1624;
/// IPv6 has none). The ethertype is written too: behind a decapsulated packet's Ethernet header
/// (the outer one) it still says IPv4.
#[inline(always)]
pub fn apply(pkt: &Packet, rewrite: &Rewrite, ipv6: bool) -> bool {
    let Some(eth) = pkt.ptr_at_mut::<EthHdr>(0) else {
        return false;
    };
    if !decrement_hop_limit(pkt, EthHdr::LEN, ipv6) {
        return false;
    }
    // SAFETY: ptr_at_mut checked the header lies inside the frame; the MACs do not overlap
    // `rewrite`.
    unsafe {
        packet::write_bytes(&raw mut (*eth).src_addr, &rewrite.src_mac);
        packet::write_bytes(&raw mut (*eth).dst_addr, &rewrite.dst_mac);
        (*eth).ether_type = ether_type(ipv6);
    }
    true
}

/// One hop for the IP header at `at` (IPv6 with `ipv6`): TTL one less with the IPv4 header
/// checksum updated incrementally (RFC 1624), or hop limit one less (IPv6 has no checksum).
/// False when the frame is too short for the header.
#[inline(always)]
pub fn decrement_hop_limit(pkt: &Packet, at: usize, ipv6: bool) -> bool {
    if ipv6 {
        let Some(ip) = pkt.ptr_at_mut::<Ipv6Hdr>(at) else {
            return false;
        };
        // SAFETY: ptr_at_mut checked the header lies inside the frame.
        unsafe { (*ip).hop_limit = (*ip).hop_limit.wrapping_sub(1) };
    } else {
        let Some(ip) = pkt.ptr_at_mut::<Ipv4Hdr>(at) else {
            return false;
        };
        // SAFETY: as above.
        unsafe { csum::decrement_ttl(ip) };
    }
    true
}

/// The ethertype of an IPv6 (`ipv6`) or IPv4 packet, as the Ethernet header carries it.
#[inline(always)]
pub fn ether_type(ipv6: bool) -> u16 {
    if ipv6 {
        EtherType::Ipv6 as u16
    } else {
        EtherType::Ipv4 as u16
    }
}
