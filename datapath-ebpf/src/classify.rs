//! Sorts a frame into "IPv4 the fast path parses" or a pass reason. Anything not fully understood
//! is a pass reason: the kernel path stays the fallback for everything the fast path does not
//! handle.

use datapath_common::reasons::*;
use network_types::{
    eth::{EthHdr, EtherType},
    ip::Ipv4Hdr,
};

use crate::packet::Packet;

/// More-fragments flag and fragment offset in the IPv4 `frags` field (host order).
pub const IPV4_MF_AND_OFFSET: u16 = 0x3fff;

pub enum Frame<'a> {
    /// Unicast IPv4 with a plain 20-byte header, not a fragment.
    Ipv4(&'a Ipv4Hdr),
    /// Anything else, with the reason it goes to the kernel.
    Other(u32),
}

/// Sorts the frame whose Ethernet header is `eth` and whose network header starts at `l3` (14 for
/// a pod's frame, 64 for the inner frame of a VXLAN packet).
#[inline(always)]
pub fn frame<'a>(pkt: &'a Packet, eth: &EthHdr, l3: usize) -> Frame<'a> {
    // The group bit of the first octet marks broadcast and multicast.
    if eth.dst_addr[0] & 1 != 0 {
        return Frame::Other(PASS_L2_MULTICAST);
    }
    match eth.ether_type {
        t if t == EtherType::Ipv4 as u16 => ipv4(pkt, l3),
        t if t == EtherType::Arp as u16 => Frame::Other(PASS_ARP),
        t if t == EtherType::Ipv6 as u16 => Frame::Other(PASS_IPV6),
        _ => Frame::Other(PASS_OTHER_ETHERTYPE),
    }
}

#[inline(always)]
fn ipv4(pkt: &Packet, l3: usize) -> Frame<'_> {
    let Some(ip) = pkt.ptr_at::<Ipv4Hdr>(l3) else {
        return Frame::Other(PASS_TRUNCATED);
    };
    // SAFETY: ptr_at checked that a whole Ipv4Hdr lies inside the frame.
    let ip = unsafe { &*ip };
    if ip.vihl != 0x45 {
        // Version 4 with a 20-byte header is all the fast path parses.
        return Frame::Other(if ip.version() == 4 && ip.ihl() > 20 {
            PASS_IPV4_OPTIONS
        } else {
            PASS_IPV4_MALFORMED
        });
    }
    if u16::from_be_bytes(ip.frags) & IPV4_MF_AND_OFFSET != 0 {
        return Frame::Other(PASS_IPV4_FRAGMENT);
    }
    Frame::Ipv4(ip)
}
