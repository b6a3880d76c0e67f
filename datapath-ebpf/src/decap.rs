//! The decision for a packet arriving on the underlay device: VXLAN from a known peer for a local
//! pod is decapsulated; other underlay traffic is left to the kernel; VXLAN the kernel's own
//! VXLAN device would wrongly accept (from an address that is no peer, or claiming a pod address
//! of another node) and malformed VXLAN is dropped.
//!
//! Why those drop: with the fast path on, the node's kernel VXLAN device is still there (it is the
//! fallback path and a kernel-mode peer's counterpart) and would decapsulate VXLAN from any source
//! and route it to a pod. Passing such a packet would hand it straight to that device.

use aya_ebpf::maps::lpm_trie::Key;
use datapath_common::{
    maps::{NODE_FAST_PATH, NODE_OVERLAY},
    reasons::*,
};
use network_types::{
    eth::{EthHdr, EtherType},
    ip::{IpProto, Ipv4Hdr},
    udp::UdpHdr,
    vxlan::{VXLAN_I_FLAG_MASK, VxlanHdr},
};

use crate::{
    classify::{self, Frame},
    encap::OVERHEAD,
    forward::Rewrite,
    maps::{ENDPOINTS, NODE, PEERS, REMOTES},
    packet::Packet,
};

const OUTER_IP: usize = EthHdr::LEN;
/// Where the inner frame starts when the outer IPv4 header has no options.
const INNER_ETH: usize = OVERHEAD;
const INNER_IP: usize = INNER_ETH + EthHdr::LEN;
/// Fragment offset bits of the IPv4 `frags` field, and the more-fragments flag.
const IPV4_OFFSET: u16 = 0x1fff;
const IPV4_MF: u16 = 0x2000;

/// Bytes decap reads: up to the end of the inner IPv4 header.
pub const HEADERS: u32 = (INNER_IP + Ipv4Hdr::LEN) as u32;

pub enum Action {
    Pass,
    Drop,
    /// Strip the outer headers, rewrite the inner frame as routing to the pod would, redirect.
    Decap {
        ifindex: u32,
        rewrite: Rewrite,
    },
}

#[inline(always)]
fn pass(reason: u32) -> (u32, Action) {
    (reason, Action::Pass)
}

#[inline(always)]
fn drop(reason: u32) -> (u32, Action) {
    (reason, Action::Drop)
}

/// True when VXLAN from `ip` (network order) is taken: the address is a configured peer's.
#[inline(always)]
fn known_peer(ip: [u8; 4]) -> bool {
    // SAFETY: the map returns a valid pointer or none; the value is a plain byte.
    unsafe { PEERS.get(u32::from_ne_bytes(ip)) }.is_some()
}

/// What to do with a packet that arrived on the underlay device, and the reason to count.
#[inline(always)]
pub fn decide(pkt: &Packet) -> (u32, Action) {
    let (Some(eth), Some(ip)) = (pkt.ptr_at::<EthHdr>(0), pkt.ptr_at::<Ipv4Hdr>(OUTER_IP)) else {
        return pass(PASS_NOT_OVERLAY);
    };
    // SAFETY: ptr_at checked both headers lie inside the frame.
    let (eth, ip) = unsafe { (&*eth, &*ip) };
    // Broadcast and multicast destination MACs are not skipped: the kernel takes UDP in such
    // frames for a unicast IP too, so they must pass the same checks.
    if eth.ether_type != EtherType::Ipv4 as u16
        || ip.vihl >> 4 != 4
        || ip.proto != IpProto::Udp as u8
    {
        return pass(PASS_NOT_OVERLAY);
    }
    let frags = u16::from_be_bytes(ip.frags);
    if frags & IPV4_OFFSET != 0 {
        // A later fragment: without its first fragment (checked below) it is never reassembled.
        return pass(PASS_NOT_OVERLAY);
    }
    let first_fragment = frags & IPV4_MF != 0;
    let header_len = usize::from(ip.vihl & 0x0f) * 4;
    if header_len < Ipv4Hdr::LEN {
        return pass(PASS_NOT_OVERLAY);
    }
    let Some(node) = NODE.get(0) else {
        return pass(PASS_FAST_PATH_OFF);
    };
    if node.flags & (NODE_FAST_PATH | NODE_OVERLAY) != NODE_FAST_PATH | NODE_OVERLAY {
        return pass(PASS_FAST_PATH_OFF);
    }
    let udp_at = OUTER_IP + header_len;
    let Some(udp) = pkt.ptr_at::<UdpHdr>(udp_at) else {
        // A first fragment too short to show its port could be the start of VXLAN from anyone.
        if first_fragment && !known_peer(ip.src_addr) {
            return drop(DROP_UNKNOWN_PEER);
        }
        return pass(PASS_NOT_OVERLAY);
    };
    // SAFETY: ptr_at checked the UDP header lies inside the frame.
    let udp = unsafe { &*udp };
    if udp.dst != node.vxlan_port.to_ne_bytes() {
        return pass(PASS_NOT_OVERLAY);
    }
    let known = known_peer(ip.src_addr);
    if first_fragment {
        // The kernel reassembles a peer's fragments; nobody else's are let through to do so.
        return if known {
            pass(PASS_OVERLAY_FRAGMENT)
        } else {
            drop(DROP_UNKNOWN_PEER)
        };
    }
    let Some(vxlan) = pkt.ptr_at::<VxlanHdr>(udp_at + UdpHdr::LEN) else {
        return drop(DROP_VXLAN_TRUNCATED);
    };
    // SAFETY: ptr_at checked the VXLAN header lies inside the frame.
    let vxlan = unsafe { &*vxlan };
    // The kernel's VXLAN device takes exactly these flags and zero reserved fields.
    if vxlan.flags != VXLAN_I_FLAG_MASK || vxlan._reserved1 != [0; 3] || vxlan._reserved2 != 0 {
        return drop(DROP_VXLAN_BAD_FLAGS);
    }
    let vni = u32::from_be_bytes([0, vxlan.vni[0], vxlan.vni[1], vxlan.vni[2]]);
    if vni != node.vni {
        return pass(PASS_OTHER_VNI);
    }
    if !known {
        return drop(DROP_UNKNOWN_PEER);
    }
    // From a peer, for this overlay: anything not understood from here on goes to the kernel's
    // VXLAN device, which handles it as it would without fastpath.
    if header_len != Ipv4Hdr::LEN {
        return pass(PASS_IPV4_OPTIONS);
    }
    // A non-zero outer UDP checksum (the kernel's VXLAN device sets one by default) is not
    // verified, as RFC 7348 section 5 allows: decapsulation resets a CHECKSUM_UNNECESSARY skb to
    // CHECKSUM_NONE, so the pod's stack verifies the inner checksums itself.
    let (Some(inner_eth), Some(_)) = (
        pkt.ptr_at::<EthHdr>(INNER_ETH),
        pkt.ptr_at::<Ipv4Hdr>(INNER_IP),
    ) else {
        return drop(DROP_VXLAN_TRUNCATED);
    };
    // SAFETY: ptr_at checked the inner Ethernet header lies inside the frame.
    let inner_eth = unsafe { &*inner_eth };
    if inner_eth.dst_addr != node.vtep_mac {
        return pass(PASS_NOT_FOR_VTEP);
    }
    let inner = match classify::frame(pkt, inner_eth, INNER_IP) {
        Frame::Ipv4(inner) => inner,
        Frame::Other(reason) => return pass(reason),
    };
    // SAFETY: the map returns a valid pointer or none; entries are plain data.
    let Some(endpoint) = (unsafe { ENDPOINTS.get(u32::from_ne_bytes(inner.dst_addr)) }) else {
        return pass(PASS_NO_ENDPOINT);
    };
    // A peer speaks for its own pods only.
    match REMOTES.get(Key::new(32, u32::from_ne_bytes(inner.src_addr))) {
        Some(owner) if owner.underlay_ip == u32::from_ne_bytes(ip.src_addr) => {}
        _ => return drop(DROP_INNER_SPOOFED),
    }
    if inner.ttl <= 1 {
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
        },
    )
}
