//! Sorts a frame into "IPv4 the fast path parses" or a pass reason. Anything not fully understood
//! is a pass reason: the kernel path stays the fallback for everything the fast path does not
//! handle.

use datapath_common::reasons::*;
use network_types::{
    eth::{EthHdr, EtherType},
    ip::Ipv4Hdr,
};

use crate::packet::Packet;

/// More-fragments flag and fragment offset in the IPv4 `frags` field (host order), together and
/// apart.
pub const IPV4_MF_AND_OFFSET: u16 = 0x3fff;
pub const IPV4_MF: u16 = 0x2000;
pub const IPV4_OFFSET: u16 = 0x1fff;

pub enum Frame<'a> {
    /// Unicast IPv4 with a plain 20-byte header, not a fragment.
    Ipv4(&'a Ipv4Hdr),
    /// Anything else, with the reason it goes to the kernel.
    Other(Reason),
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
        t if t == EtherType::Ipv6 as u16 => Frame::Other(PASS_IPV6),
        _ => Frame::Other(PASS_OTHER_ETHERTYPE),
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
    Frame::Ipv4(ip)
}
