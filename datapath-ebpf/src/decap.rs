//! The decision for a packet arriving on the underlay device: VXLAN from a known peer for a local
//! pod is decapsulated; other underlay traffic is left to the kernel; everything else that is
//! VXLAN to the overlay's port for its VNI is checked as far as the kernel's VXLAN device would go
//! with it, and dropped when it fails: from an address that is no peer, not addressed to this
//! node, in a VLAN tag, with an inner frame that is not the peer's own pods' IPv4 or
//! IPv6, or malformed.
//!
//! Why those drop rather than pass: with the fast path on, the node's kernel VXLAN device is still
//! there (it is the fallback path and a kernel-mode peer's counterpart) and would decapsulate
//! VXLAN from any source and route it to a pod. A frame passed to the kernel must already be one
//! the fast path would accept; only the work (reassembly, options, ICMP) is left to the kernel.
//! The node's nftables guard (`control::guard`) checks the same at the VXLAN socket, for whatever
//! reaches it past this program.

use aya_ebpf::maps::lpm_trie::Key;
use datapath_common::{
    maps::{Endpoint, NODE_FAST_PATH, NODE_OVERLAY, NodeConfig},
    reasons::*,
};
use network_types::{
    eth::{EthHdr, EtherType},
    ip::{IpProto, Ipv4Hdr, Ipv6Hdr},
    udp::UdpHdr,
    vlan::VlanHdr,
    vxlan::{VXLAN_I_FLAG_MASK, VxlanHdr},
};

use crate::{
    classify::{
        ICMPV6, IPV4_MF, IPV4_MF_AND_OFFSET, IPV4_OFFSET, IPV6_FRAGMENT, ipv4_header_len, is_vlan,
    },
    encap::OVERHEAD,
    forward::Rewrite,
    maps::{ENDPOINTS, ENDPOINTS6, NODE, PEERS, REMOTES, REMOTES6},
    nd,
    packet::Packet,
};

/// Where the inner frame starts when the outer IPv4 header has no options.
const INNER_ETH: usize = OVERHEAD;
const INNER_IP: usize = INNER_ETH + EthHdr::LEN;
/// skb->pkt_type of a frame addressed to the receiving device's own MAC.
const PACKET_HOST: u32 = 0;
/// VLAN tags the program looks through on the underlay (802.1ad + 802.1Q); a frame with more is
/// dropped.
const MAX_VLAN_TAGS: usize = 2;

/// Bytes decap reads: up to the inner UDP header behind an inner IPv4 header with options, or
/// through two VLAN tags to an outer IPv4 header with options and its UDP header.
pub const HEADERS: u32 = (INNER_IP + 60 + UdpHdr::LEN) as u32;

/// What the kernel knows of a frame before the program sees it.
pub struct Arrival {
    /// skb->pkt_type: whether the frame was addressed to the device's own MAC.
    pub pkt_type: u32,
    /// The kernel already took a VLAN tag off the frame (into the packet's metadata).
    pub vlan_tagged: bool,
}

pub enum Action {
    Pass,
    Drop,
    /// Strip the outer headers, rewrite the inner frame as routing to the pod would, redirect.
    Decap {
        ifindex: u32,
        rewrite: Rewrite,
        /// The inner packet is IPv6.
        ipv6: bool,
    },
}

#[inline(always)]
fn pass(reason: Reason) -> (Reason, Action) {
    (reason, Action::Pass)
}

#[inline(always)]
fn drop(reason: Reason) -> (Reason, Action) {
    (reason, Action::Drop)
}

/// True when VXLAN from `ip` (network order) is taken: the address is a configured peer's.
#[inline(always)]
fn known_peer(ip: [u8; 4]) -> bool {
    // SAFETY: the map returns a valid pointer or none; the value is plain data.
    unsafe { PEERS.get(ip) }.is_some()
}

/// The network header's ethertype and offset, past up to two VLAN tags in the frame, and whether
/// there were any. None when the frame ends inside a tag.
#[inline(always)]
fn untag(pkt: &Packet, eth: &EthHdr) -> Option<(u16, usize, bool)> {
    let (mut ether_type, mut at) = (eth.ether_type, EthHdr::LEN);
    for _ in 0..MAX_VLAN_TAGS {
        if !is_vlan(ether_type) {
            break;
        }
        // SAFETY: ptr_at checked the tag lies inside the frame.
        ether_type = unsafe { (*pkt.ptr_at::<VlanHdr>(at)?).ether_type };
        at += VlanHdr::LEN;
    }
    Some((ether_type, at, at != EthHdr::LEN))
}

/// What to do with a packet that arrived on the underlay device, and the reason to count.
#[inline(always)]
pub fn decide(pkt: &Packet, arrival: &Arrival) -> (Reason, Action) {
    let Some(eth) = pkt.ptr_at::<EthHdr>(0) else {
        return pass(PASS_NOT_OVERLAY);
    };
    // SAFETY: ptr_at checked the header lies inside the frame.
    let eth = unsafe { &*eth };
    // Broadcast and multicast destination MACs are not skipped: the kernel takes UDP in such
    // frames for a unicast IP too, so they must pass the same checks.
    let Some((ether_type, l3, tagged_in_frame)) = untag(pkt, eth) else {
        return pass(PASS_NOT_OVERLAY);
    };
    if is_vlan(ether_type) {
        // The kernel takes off priority tags by itself, all of them, after this program.
        return drop(DROP_UNDERLAY_VLAN_DEPTH);
    }
    if ether_type == EtherType::Ipv6 as u16 {
        return underlay_ipv6(pkt, l3);
    }
    if ether_type != EtherType::Ipv4 as u16 {
        return pass(PASS_NOT_OVERLAY);
    }
    let Some(ip) = pkt.ptr_at::<Ipv4Hdr>(l3) else {
        return pass(PASS_NOT_OVERLAY);
    };
    // SAFETY: ptr_at checked the header lies inside the frame.
    let ip = unsafe { &*ip };
    let Some(header_len) = ipv4_header_len(ip) else {
        // The kernel drops it with its own reason.
        return pass(PASS_NOT_OVERLAY);
    };
    let Some(node) = NODE.get(0) else {
        return pass(PASS_FAST_PATH_OFF);
    };
    if node.flags & (NODE_FAST_PATH | NODE_OVERLAY) != NODE_FAST_PATH | NODE_OVERLAY {
        return pass(PASS_FAST_PATH_OFF);
    }
    let frags = u16::from_be_bytes(ip.frags);
    // Only a whole packet or a first fragment shows its port. A later fragment is judged with its
    // first one, without which the kernel reassembles nothing.
    let first_fragment = frags & IPV4_MF != 0 && frags & IPV4_OFFSET == 0;
    let udp_at = l3 + header_len;
    let udp = pkt.ptr_at::<UdpHdr>(udp_at);
    let to_overlay = ip.proto == IpProto::Udp as u8
        && frags & IPV4_OFFSET == 0
        && match udp {
            // SAFETY: ptr_at checked the UDP header lies inside the frame.
            Some(udp) => (unsafe { (*udp).dst }) == node.vxlan_port.to_be_bytes(),
            // A first fragment too short to show its port could be the start of VXLAN.
            None => first_fragment,
        };
    if !to_overlay {
        return underlay_traffic(ip, node);
    }
    let tagged = tagged_in_frame || arrival.vlan_tagged;
    let vxlan = udp.and_then(|_| pkt.ptr_at::<VxlanHdr>(udp_at + UdpHdr::LEN));
    let Some(vxlan) = vxlan else {
        // Too short to show its VNI: whoever's it is, it is nobody's VXLAN.
        return drop(if tagged {
            DROP_VXLAN_VLAN
        } else if known_peer(ip.src_addr) {
            DROP_VXLAN_TRUNCATED
        } else {
            DROP_UNKNOWN_PEER
        });
    };
    // SAFETY: ptr_at checked the VXLAN header lies inside the frame.
    let vxlan = unsafe { &*vxlan };
    let vni = u32::from_be_bytes([0, vxlan.vni[0], vxlan.vni[1], vxlan.vni[2]]);
    if vni != node.vni {
        // Another overlay on the same port (another VXLAN user on a real node): its business.
        return pass(PASS_OTHER_VNI);
    }
    if tagged {
        return drop(DROP_VXLAN_VLAN);
    }
    // redirect_peer leaves the kernel no chance to drop what was not addressed to this host.
    if ip.dst_addr != node.underlay_ip || arrival.pkt_type != PACKET_HOST {
        return drop(DROP_VXLAN_NOT_FOR_NODE);
    }
    // The kernel's VXLAN device takes exactly these flags and zero reserved fields.
    if vxlan.flags != VXLAN_I_FLAG_MASK || vxlan._reserved1 != [0; 3] || vxlan._reserved2 != 0 {
        return drop(DROP_VXLAN_BAD_FLAGS);
    }
    if !known_peer(ip.src_addr) {
        return drop(DROP_UNKNOWN_PEER);
    }
    if header_len != Ipv4Hdr::LEN {
        return drop(DROP_VXLAN_OUTER_OPTIONS);
    }
    // A non-zero outer UDP checksum (the kernel's VXLAN device sets one by default) is not
    // verified, as RFC 7348 section 5 allows: decapsulation resets a CHECKSUM_UNNECESSARY skb to
    // CHECKSUM_NONE, so the pod's stack verifies the inner checksums itself.
    inner(pkt, ip, node, first_fragment)
}

/// Underlay traffic that is not VXLAN to the overlay's port: the node's own (and whatever it
/// routes), but never in the name of a pod. A pod on another node is reached only through VXLAN
/// from its node; routing a plain packet that claims a pod's address would hand it to the pod.
#[inline(always)]
fn underlay_traffic(ip: &Ipv4Hdr, node: &NodeConfig) -> (Reason, Action) {
    let src = ip.src_addr;
    // An IPv6-only node's gateway has no IPv4 address (all zeros): DHCP from 0.0.0.0 is no claim.
    let gateway = node.gateway_ip != [0; 4] && src == node.gateway_ip;
    // SAFETY: the map returns a valid pointer or none; entries are plain data.
    let local_pod = gateway || unsafe { ENDPOINTS.get(src) }.is_some();
    if local_pod || REMOTES.get(&Key::new(32, src)).is_some() {
        return drop(DROP_UNDERLAY_POD_SOURCE);
    }
    pass(PASS_NOT_OVERLAY)
}

/// Plain IPv6 on the underlay (never VXLAN: the overlay's underlay is IPv4), under IPv4's rule:
/// never in the name of a pod, this node's or a peer's, nor of the gateway. The guard checks the
/// same at the device's ingress, but only for untagged frames: behind stacked VLAN priority tags
/// the kernel hands the packet on without running the hook again.
#[inline(always)]
fn underlay_ipv6(pkt: &Packet, l3: usize) -> (Reason, Action) {
    let Some(ip) = pkt.ptr_at::<Ipv6Hdr>(l3) else {
        return pass(PASS_NOT_OVERLAY);
    };
    // SAFETY: ptr_at checked the header lies inside the frame.
    let src = unsafe { &(*ip).src_addr };
    let Some(node) = NODE.get(0) else {
        return pass(PASS_FAST_PATH_OFF);
    };
    if node.flags & (NODE_FAST_PATH | NODE_OVERLAY) != NODE_FAST_PATH | NODE_OVERLAY {
        return pass(PASS_FAST_PATH_OFF);
    }
    // A node without IPv6 pods has no IPv6 gateway (all zeros): duplicate address detection
    // from :: is no claim.
    let gateway = !nd::is_unspecified(&node.gateway6) && nd::same_address(src, &node.gateway6);
    // SAFETY: the map returns a valid pointer or none; entries are plain data.
    let local_pod = gateway || unsafe { ENDPOINTS6.get(*src) }.is_some();
    if local_pod || REMOTES6.get(&Key::new(128, *src)).is_some() {
        return drop(DROP_UNDERLAY_POD_SOURCE);
    }
    pass(PASS_NOT_OVERLAY)
}

/// The inner frame of VXLAN from a known peer for this overlay (outer IPv4 without options, so
/// the inner frame is at a fixed offset): the peer's own pods' unicast IPv4 to this node, checked
/// before anything is passed. `first_fragment`: the outer packet is the first of several, left to
/// the kernel to reassemble once its inner headers are checked.
#[inline(always)]
fn inner(
    pkt: &Packet,
    outer: &Ipv4Hdr,
    node: &NodeConfig,
    first_fragment: bool,
) -> (Reason, Action) {
    let Some(inner_eth) = pkt.ptr_at::<EthHdr>(INNER_ETH) else {
        return drop(DROP_VXLAN_TRUNCATED);
    };
    // SAFETY: ptr_at checked the inner Ethernet header lies inside the frame.
    let inner_eth = unsafe { &*inner_eth };
    // The VTEP MAC is unicast: broadcast and multicast inner frames fail here too.
    if inner_eth.dst_addr != node.vtep_mac {
        return drop(DROP_VXLAN_NOT_FOR_VTEP);
    }
    if inner_eth.ether_type == EtherType::Ipv6 as u16 {
        return inner_ipv6(pkt, outer, node, first_fragment);
    }
    if inner_eth.ether_type != EtherType::Ipv4 as u16 {
        return drop(DROP_VXLAN_INNER_NOT_IP);
    }
    let Some(inner) = pkt.ptr_at::<Ipv4Hdr>(INNER_IP) else {
        return drop(DROP_VXLAN_TRUNCATED);
    };
    // SAFETY: ptr_at checked the inner IPv4 header lies inside the frame.
    let inner = unsafe { &*inner };
    let Some(inner_header_len) = ipv4_header_len(inner) else {
        return drop(DROP_VXLAN_INNER_MALFORMED);
    };
    // A peer speaks for its own pods only.
    match REMOTES.get(&Key::new(32, inner.src_addr)) {
        Some(owner) if owner.underlay_ip == outer.src_addr => {}
        _ => return drop(DROP_INNER_SPOOFED),
    }
    // SAFETY: the map returns a valid pointer or none; entries are plain data.
    let endpoint = unsafe { ENDPOINTS.get(inner.dst_addr) };
    let inner_frags = u16::from_be_bytes(inner.frags);
    if endpoint.is_none() && inner.proto == IpProto::Udp as u8 && inner_frags & IPV4_OFFSET == 0 {
        let Some(udp) = pkt.ptr_at::<UdpHdr>(INNER_IP + inner_header_len) else {
            return drop(DROP_VXLAN_INNER_MALFORMED);
        };
        // SAFETY: ptr_at checked the inner UDP header lies inside the frame.
        if (unsafe { (*udp).dst }) == node.vxlan_port.to_be_bytes() {
            return drop(DROP_VXLAN_NESTED);
        }
    }
    if first_fragment {
        // The kernel reassembles a peer's fragments; the inner headers above decide for them.
        return pass(PASS_OVERLAY_FRAGMENT);
    }
    if inner_header_len != Ipv4Hdr::LEN {
        return pass(PASS_IPV4_OPTIONS);
    }
    if inner_frags & IPV4_MF_AND_OFFSET != 0 {
        return pass(PASS_IPV4_FRAGMENT);
    }
    let Some(endpoint) = endpoint else {
        return pass(PASS_NO_ENDPOINT);
    };
    to_pod(endpoint, node, inner.ttl, false)
}

/// Decapsulation to the local pod `endpoint`, routed as the kernel would (TTL or hop limit
/// `hop_limit`, ≤ 1 is the kernel's to answer).
#[inline(always)]
fn to_pod(endpoint: &Endpoint, node: &NodeConfig, hop_limit: u8, ipv6: bool) -> (Reason, Action) {
    if hop_limit <= 1 {
        return pass(PASS_TTL_EXPIRED);
    }
    (
        REDIRECT_DECAPSULATED,
        Action::Decap {
            ifindex: endpoint.ifindex,
            rewrite: Rewrite {
                src_mac: node.gateway_mac,
                dst_mac: endpoint.mac,
            },
            ipv6,
        },
    )
}

/// An inner IPv6 packet from a known peer, under the rules IPv4 has: its own pods' only (else
/// dropped); to a local pod, TCP, UDP or ICMPv6 right behind the header and a hop limit to spare,
/// decapsulated; anything else the kernel's VXLAN device takes. Its socket is IPv4-only, so no
/// inner VXLAN over IPv6 is ever decapsulated again.
#[inline(always)]
fn inner_ipv6(
    pkt: &Packet,
    outer: &Ipv4Hdr,
    node: &NodeConfig,
    first_fragment: bool,
) -> (Reason, Action) {
    let Some(inner) = pkt.ptr_at::<Ipv6Hdr>(INNER_IP) else {
        return drop(DROP_VXLAN_TRUNCATED);
    };
    // SAFETY: ptr_at checked the inner IPv6 header lies inside the frame.
    let inner = unsafe { &*inner };
    if inner.vcf[0] >> 4 != 6 {
        return drop(DROP_VXLAN_INNER_MALFORMED);
    }
    match REMOTES6.get(&Key::new(128, inner.src_addr)) {
        Some(owner) if owner.underlay_ip == outer.src_addr => {}
        _ => return drop(DROP_INNER_SPOOFED),
    }
    if first_fragment {
        // The kernel reassembles a peer's fragments; the inner source above decides for them.
        return pass(PASS_OVERLAY_FRAGMENT);
    }
    let next = inner.next_hdr;
    if next == IPV6_FRAGMENT {
        return pass(PASS_IPV6_FRAGMENT);
    }
    if next != IpProto::Tcp as u8 && next != IpProto::Udp as u8 && next != ICMPV6 {
        return pass(PASS_IPV6_EXTENSION);
    }
    // SAFETY: the map returns a valid pointer or none; entries are plain data.
    let Some(endpoint) = (unsafe { ENDPOINTS6.get(inner.dst_addr) }) else {
        return pass(PASS_NO_ENDPOINT);
    };
    to_pod(endpoint, node, inner.hop_limit, true)
}
