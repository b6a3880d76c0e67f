//! Sorts a frame into "IPv4 or IPv6 the fast path parses" or a pass reason. Anything not fully
//! understood is a pass reason: the kernel path stays the fallback for everything the fast path
//! does not handle.

use datapath_common::reasons::*;
use network_types::{
    eth::{EthHdr, EtherType},
    ip::{IpProto, Ipv4Hdr, Ipv6Hdr},
};

use crate::packet::Packet;

/// More-fragments flag and fragment offset in the IPv4 `frags` field (host order), together and
/// apart.
pub const IPV4_MF_AND_OFFSET: u16 = 0x3fff;
pub const IPV4_MF: u16 = 0x2000;
pub const IPV4_OFFSET: u16 = 0x1fff;

/// IPv6 next-header values the fast path looks at.
pub const IPV6_FRAGMENT: u8 = 44;
pub const ICMPV6: u8 = 58;
/// ICMPv6 neighbour discovery message types: router solicitation to redirect.
const ND_TYPES: core::ops::RangeInclusive<u8> = 133..=137;

pub enum Frame<'a> {
    /// Unicast IP the fast path forwards: IPv4 with a plain 20-byte header, not a fragment; or
    /// IPv6 with TCP, UDP or ICMPv6 (no neighbour discovery) right behind its header.
    Ip(Ip<'a>),
    /// Anything else, with the reason it goes to the kernel.
    Other(Reason),
}

/// An IP header the fast path forwards, either family.
#[derive(Clone, Copy)]
pub enum Ip<'a> {
    V4(&'a Ipv4Hdr),
    V6(&'a Ipv6Hdr),
}

impl Ip<'_> {
    /// TTL or hop limit.
    #[inline(always)]
    pub fn hop_limit(&self) -> u8 {
        match self {
            Ip::V4(ip) => ip.ttl,
            Ip::V6(ip) => ip.hop_limit,
        }
    }

    /// The transport protocol: IPv4's protocol, or IPv6's next header (which is the transport
    /// header for whatever the fast path forwards).
    #[inline(always)]
    pub fn proto(&self) -> u8 {
        match self {
            Ip::V4(ip) => ip.proto,
            Ip::V6(ip) => ip.next_hdr,
        }
    }

    /// The header's length, where the transport header starts: the fast path forwards IPv4
    /// without options and IPv6 without extension headers only.
    #[inline(always)]
    pub fn header_len(&self) -> usize {
        match self {
            Ip::V4(_) => Ipv4Hdr::LEN,
            Ip::V6(_) => Ipv6Hdr::LEN,
        }
    }
}

/// An 802.1Q or 802.1ad tag's ethertype.
#[inline(always)]
pub fn is_vlan(ether_type: u16) -> bool {
    ether_type == EtherType::Ieee8021q as u16 || ether_type == EtherType::Ieee8021ad as u16
}

/// The length of `ip`'s header when it is version 4 with a length from 20 to 60 bytes.
#[inline(always)]
pub fn ipv4_header_len(ip: &Ipv4Hdr) -> Option<usize> {
    let len = usize::from(ip.vihl & 0x0f) * 4;
    (ip.vihl >> 4 == 4 && len >= Ipv4Hdr::LEN).then_some(len)
}

/// Sorts the frame whose Ethernet header is `eth`, its network header right behind it.
#[inline(always)]
pub fn frame<'a>(pkt: &'a Packet, eth: &EthHdr) -> Frame<'a> {
    if is_group(eth) {
        return Frame::Other(PASS_L2_MULTICAST);
    }
    match eth.ether_type {
        t if t == EtherType::Ipv4 as u16 => {
            let Some(ip) = pkt.ptr_at::<Ipv4Hdr>(EthHdr::LEN) else {
                return Frame::Other(PASS_TRUNCATED);
            };
            // SAFETY: ptr_at checked that a whole Ipv4Hdr lies inside the frame.
            let ip = unsafe { &*ip };
            if ipv4_header_len(ip).is_none() {
                return Frame::Other(PASS_IPV4_MALFORMED);
            }
            plain_ipv4(ip)
        }
        t if t == EtherType::Arp as u16 => Frame::Other(PASS_ARP),
        t if t == EtherType::Ipv6 as u16 => {
            let Some(ip) = pkt.ptr_at::<Ipv6Hdr>(EthHdr::LEN) else {
                return Frame::Other(PASS_TRUNCATED);
            };
            // SAFETY: ptr_at checked that a whole Ipv6Hdr lies inside the frame.
            let ip = unsafe { &*ip };
            if ip.vcf[0] >> 4 != 6 {
                return Frame::Other(PASS_IPV6_MALFORMED);
            }
            plain_ipv6(pkt, ip)
        }
        _ => Frame::Other(PASS_OTHER_ETHERTYPE),
    }
}

/// Sorts a frame to `eth`'s destination whose IPv6 header `ip` is already known to be valid.
#[inline(always)]
pub fn ipv6_frame<'a>(pkt: &Packet, eth: &EthHdr, ip: &'a Ipv6Hdr) -> Frame<'a> {
    if is_group(eth) {
        return Frame::Other(PASS_L2_MULTICAST);
    }
    plain_ipv6(pkt, ip)
}

/// A valid IPv6 header: the fast path forwards TCP, UDP and ICMPv6 right behind it, and leaves
/// neighbour discovery, fragments and extension headers to the kernel.
#[inline(always)]
fn plain_ipv6<'a>(pkt: &Packet, ip: &'a Ipv6Hdr) -> Frame<'a> {
    match ip.next_hdr {
        n if n == IpProto::Tcp as u8 || n == IpProto::Udp as u8 => Frame::Ip(Ip::V6(ip)),
        ICMPV6 => {
            // Type, code and checksum: a one-byte bounds check compiles to a comparison the
            // verifier takes as no range at all.
            let Some(icmp) = pkt.ptr_at::<[u8; 4]>(EthHdr::LEN + Ipv6Hdr::LEN) else {
                return Frame::Other(PASS_TRUNCATED);
            };
            // SAFETY: ptr_at checked the bytes lie inside the frame.
            let [icmp_type, ..] = unsafe { *icmp };
            if ND_TYPES.contains(&icmp_type) {
                Frame::Other(PASS_NEIGHBOUR_DISCOVERY)
            } else {
                Frame::Ip(Ip::V6(ip))
            }
        }
        IPV6_FRAGMENT => Frame::Other(PASS_IPV6_FRAGMENT),
        _ => Frame::Other(PASS_IPV6_EXTENSION),
    }
}

/// Sorts a frame to `eth`'s destination whose IPv4 header `ip` is already known to be valid.
#[inline(always)]
pub fn ipv4_frame<'a>(eth: &EthHdr, ip: &'a Ipv4Hdr) -> Frame<'a> {
    if is_group(eth) {
        return Frame::Other(PASS_L2_MULTICAST);
    }
    plain_ipv4(ip)
}

/// The group bit of the first octet marks broadcast and multicast.
#[inline(always)]
fn is_group(eth: &EthHdr) -> bool {
    eth.dst_addr[0] & 1 != 0
}

/// A valid IPv4 header: the fast path parses 20 bytes without fragment bits.
#[inline(always)]
fn plain_ipv4(ip: &Ipv4Hdr) -> Frame<'_> {
    if ip.vihl != 0x45 {
        return Frame::Other(PASS_IPV4_OPTIONS);
    }
    if u16::from_be_bytes(ip.frags) & IPV4_MF_AND_OFFSET != 0 {
        return Frame::Other(PASS_IPV4_FRAGMENT);
    }
    Frame::Ip(Ip::V4(ip))
}
