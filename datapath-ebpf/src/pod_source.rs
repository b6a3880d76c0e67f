//! What a pod may send. Every frame from a registered pod veth passes these checks before the fast
//! path decides anything about it, so whatever the program then redirects, encapsulates or hands
//! to the kernel speaks only in the pod's own name. A frame that fails is dropped, never passed:
//! the kernel path behind the program checks nothing (a learning bridge, no reverse-path filter,
//! a VXLAN socket that decapsulates for anyone who reaches it).

use datapath_common::{
    maps::{NODE_OVERLAY, NodeConfig, Source},
    reasons::*,
};
use network_types::{
    arp::ArpHdr,
    eth::{EthHdr, EtherType},
    ip::{IpProto, Ipv4Hdr},
    udp::UdpHdr,
};

use crate::{
    classify::{IPV4_OFFSET, Ip, ipv4_header_len, is_vlan},
    maps::{ENDPOINTS, REMOTES},
    nd,
    packet::Packet,
};

const ARP_HTYPE_ETHERNET: u16 = 1;
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;

/// Checks a frame that arrived on the veth of the pod `source` describes. `vlan_tagged`: the
/// kernel already took a VLAN tag off the frame into the packet's metadata (TC only; XDP sees the
/// tag in the frame). Err is the reason to drop it; an IP frame's checked header comes back, so
/// that nobody parses it again.
#[inline(always)]
pub fn check<'a>(
    pkt: &'a Packet,
    eth: &EthHdr,
    source: &Source,
    vlan_tagged: bool,
    node: Option<&NodeConfig>,
) -> Result<Option<Ip<'a>>, Reason> {
    if eth.src_addr != source.mac {
        return Err(DROP_SPOOFED_MAC);
    }
    if vlan_tagged {
        return Err(DROP_POD_VLAN);
    }
    match eth.ether_type {
        t if t == EtherType::Ipv4 as u16 => ipv4(pkt, source, node).map(|ip| Some(Ip::V4(ip))),
        t if t == EtherType::Arp as u16 => arp(pkt, source).map(|()| None),
        t if t == EtherType::Ipv6 as u16 => nd::check(pkt, source).map(|ip| Some(Ip::V6(ip))),
        t if is_vlan(t) => Err(DROP_POD_VLAN),
        _ => Err(DROP_POD_OTHER_ETHERTYPE),
    }
}

/// Any IPv4 header length, fragment or destination: the source is the pod's, and UDP to the
/// overlay's port goes to pods only.
#[inline(always)]
fn ipv4<'a>(
    pkt: &'a Packet,
    source: &Source,
    node: Option<&NodeConfig>,
) -> Result<&'a Ipv4Hdr, Reason> {
    let ip = pkt
        .ptr_at::<Ipv4Hdr>(EthHdr::LEN)
        .ok_or(DROP_POD_IPV4_MALFORMED)?;
    // SAFETY: ptr_at checked that a whole Ipv4Hdr lies inside the frame.
    let ip = unsafe { &*ip };
    let header_len = ipv4_header_len(ip).ok_or(DROP_POD_IPV4_MALFORMED)?;
    // An IPv6-only pod (no IPv4 address: all zeros) sends no IPv4 at all.
    if ip.src_addr != source.ip || source.ip == [0; 4] {
        return Err(DROP_SPOOFED_IP);
    }
    let Some(node) = node else {
        return Ok(ip);
    };
    // Later fragments carry no port; their first fragment is checked here, and the kernel
    // reassembles nothing without it.
    if node.vxlan_port == 0
        || ip.proto != IpProto::Udp as u8
        || u16::from_be_bytes(ip.frags) & IPV4_OFFSET != 0
    {
        return Ok(ip);
    }
    // A whole datagram or first fragment always holds the whole UDP header (the caller made the
    // headers linear): without it, nobody can tell where it is going.
    let udp = pkt
        .ptr_at::<UdpHdr>(EthHdr::LEN + header_len)
        .ok_or(DROP_POD_IPV4_MALFORMED)?;
    // SAFETY: ptr_at checked the UDP header lies inside the frame.
    if (unsafe { (*udp).dst }) == node.vxlan_port.to_be_bytes() && !is_pod(ip.dst_addr, node) {
        return Err(DROP_POD_VXLAN);
    }
    Ok(ip)
}

/// A pod on this node, or (with the overlay on) in a peer's pod CIDR: VXLAN between pods is the
/// pods' business, and a peer's decapsulation checks what reaches its own addresses.
#[inline(always)]
fn is_pod(ip: [u8; 4], node: &NodeConfig) -> bool {
    // SAFETY: the map returns a valid pointer or none; entries are plain data.
    if unsafe { ENDPOINTS.get(ip) }.is_some() {
        return true;
    }
    node.flags & NODE_OVERLAY != 0
        && REMOTES
            .get(&aya_ebpf::maps::lpm_trie::Key::new(32, ip))
            .is_some()
}

/// Ethernet/IPv4 ARP whose sender is the pod: its MAC, its address (or 0.0.0.0 in a probe).
#[inline(always)]
fn arp(pkt: &Packet, source: &Source) -> Result<(), Reason> {
    let arp = pkt
        .ptr_at::<ArpHdr>(EthHdr::LEN)
        .ok_or(DROP_ARP_MALFORMED)?;
    // SAFETY: ptr_at checked that a whole ArpHdr lies inside the frame.
    let arp = unsafe { &*arp };
    let op = u16::from_be_bytes(arp.oper);
    if u16::from_be_bytes(arp.htype) != ARP_HTYPE_ETHERNET
        || arp.ptype != (EtherType::Ipv4 as u16).to_ne_bytes()
        || arp.hlen != 6
        || arp.plen != 4
        || (op != ARP_REQUEST && op != ARP_REPLY)
    {
        return Err(DROP_ARP_MALFORMED);
    }
    let sender_ip = arp.spa;
    let probe = op == ARP_REQUEST && sender_ip == [0; 4];
    // An IPv6-only pod has no IPv4 address to resolve or announce.
    if arp.sha != source.mac || (sender_ip != source.ip && !probe) || source.ip == [0; 4] {
        return Err(DROP_ARP_SPOOFED);
    }
    Ok(())
}
