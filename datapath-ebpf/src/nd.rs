//! What a pod may send over IPv6: from its IPv6 address (when it has one) or its link-local
//! address (EUI-64 of its MAC, the kernel's default); from the unspecified address only where
//! neighbour discovery and MLD need it. Neighbour discovery is where one host speaks for
//! others on a link: router advertisements and redirects (a pod is no router) are dropped, and
//! solicitations and advertisements may name only the pod's own address and MAC.
//!
//! The kernel processes neighbour discovery behind any chain of extension headers, so the chain is
//! followed to the upper-layer header; a chain the program cannot follow is dropped.

use datapath_common::{maps::Source, reasons::*};
use network_types::{eth::EthHdr, ip::Ipv6Hdr};

use crate::packet::Packet;

const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const AUTH: u8 = 51;
const DEST_OPTIONS: u8 = 60;
const ICMPV6: u8 = 58;

const ROUTER_SOLICIT: u8 = 133;
const ROUTER_ADVERT: u8 = 134;
const NEIGHBOUR_SOLICIT: u8 = 135;
const NEIGHBOUR_ADVERT: u8 = 136;
const REDIRECT: u8 = 137;
const MLD_REPORT: u8 = 131;
const MLD_DONE: u8 = 132;
const MLD2_REPORT: u8 = 143;

/// ND options that carry a link-layer address: source and target.
const OPTION_SOURCE_LLADDR: u8 = 1;
const OPTION_TARGET_LLADDR: u8 = 2;

/// Extension headers followed before giving up; real traffic has one or two.
const MAX_EXTENSION_HEADERS: usize = 4;
/// ND options read before giving up; real solicitations and advertisements carry one.
const MAX_OPTIONS: usize = 3;
/// Furthest offset into the frame the parser reads from: keeps every offset bounded for the
/// verifier, and is far beyond any header chain a pod has reason to send.
const MAX_OFFSET: usize = 192;

/// Bytes of the frame the checks may read: the caller makes them linear (TC).
pub const HEADERS: u32 = (MAX_OFFSET + 24) as u32;

const IPV6_AT: usize = EthHdr::LEN;

/// Where the upper-layer header of an IPv6 packet is.
enum Upper {
    /// Protocol number and offset of its header in the frame.
    Header(u8, usize),
    /// A later fragment: no upper-layer header in this packet.
    LaterFragment,
}

/// Checks an IPv6 frame from the pod `source` describes; returns its header when it may pass.
#[inline(always)]
pub fn check<'a>(pkt: &'a Packet, source: &Source) -> Result<&'a Ipv6Hdr, Reason> {
    let ip = pkt
        .ptr_at::<Ipv6Hdr>(IPV6_AT)
        .ok_or(DROP_POD_IPV6_MALFORMED)?;
    // SAFETY: ptr_at checked that a whole Ipv6Hdr lies inside the frame.
    let ip = unsafe { &*ip };
    if ip.vcf[0] >> 4 != 6 {
        return Err(DROP_POD_IPV6_MALFORMED);
    }
    let unspecified = is_unspecified(&ip.src_addr);
    if !unspecified && !is_address_of(&ip.src_addr, source) {
        return Err(DROP_SPOOFED_IPV6);
    }
    let (fragmented, upper) = upper_layer(pkt, ip.next_hdr)?;
    let (proto, at) = match upper {
        Upper::Header(proto, at) => (proto, at),
        // Its first fragment was checked; the kernel reassembles nothing without it.
        Upper::LaterFragment => return Ok(ip),
    };
    if proto != ICMPV6 {
        return if unspecified {
            Err(DROP_SPOOFED_IPV6)
        } else {
            Ok(ip)
        };
    }
    // Type, code and checksum: a one-byte bounds check would compile to a comparison the
    // verifier takes as no range at all.
    let icmp = pkt.ptr_at::<[u8; 4]>(at).ok_or(DROP_POD_IPV6_MALFORMED)?;
    // SAFETY: ptr_at checked the bytes lie inside the frame.
    let [icmp_type, ..] = unsafe { *icmp };
    let options_at = match icmp_type {
        ROUTER_ADVERT => return Err(DROP_ND_ROUTER_ADVERT),
        REDIRECT => return Err(DROP_ND_REDIRECT),
        ROUTER_SOLICIT => at + 8,
        NEIGHBOUR_SOLICIT => {
            // From the unspecified address it is duplicate address detection: for the pod's own
            // address only, or it would make another pod give up an address it is setting up.
            if unspecified && !names_itself(pkt, at, source)? {
                return Err(DROP_ND_SPOOFED);
            }
            at + 24
        }
        NEIGHBOUR_ADVERT => {
            if unspecified {
                return Err(DROP_SPOOFED_IPV6);
            }
            if !names_itself(pkt, at, source)? {
                return Err(DROP_ND_SPOOFED);
            }
            at + 24
        }
        MLD_REPORT | MLD_DONE | MLD2_REPORT => return Ok(ip),
        _ if unspecified => return Err(DROP_SPOOFED_IPV6),
        _ => return Ok(ip),
    };
    if fragmented {
        return Err(DROP_POD_IPV6_MALFORMED);
    }
    let end = IPV6_AT + Ipv6Hdr::LEN + usize::from(u16::from_be_bytes(ip.payload_len));
    link_layer_options(pkt, options_at, end, &source.mac).map(|()| ip)
}

/// Whether the solicitation or advertisement at `at` is for the pod's own address (its target).
#[inline(always)]
fn names_itself(pkt: &Packet, at: usize, source: &Source) -> Result<bool, Reason> {
    let target = pkt
        .ptr_at::<[u8; 16]>(at + 8)
        .ok_or(DROP_POD_IPV6_MALFORMED)?;
    // SAFETY: ptr_at checked the target address lies inside the frame.
    Ok(is_address_of(unsafe { &*target }, source))
}

/// Follows the extension header chain from `next` (the IPv6 header's next header). Also says
/// whether the packet is a fragment.
#[inline(always)]
fn upper_layer(pkt: &Packet, mut next: u8) -> Result<(bool, Upper), Reason> {
    let mut at = IPV6_AT + Ipv6Hdr::LEN;
    let mut fragmented = false;
    for _ in 0..MAX_EXTENSION_HEADERS {
        let header = pkt.ptr_at::<[u8; 4]>(at);
        match next {
            HOP_BY_HOP | ROUTING | DEST_OPTIONS | AUTH => {
                // SAFETY: ptr_at checked the first bytes of the header lie inside the frame.
                let [following, len, ..] = unsafe { *header.ok_or(DROP_POD_IPV6_MALFORMED)? };
                // Lengths count 8-byte units beyond the first, 4-byte units beyond two for AH.
                at += if next == AUTH {
                    (usize::from(len) + 2) * 4
                } else {
                    (usize::from(len) + 1) * 8
                };
                next = following;
            }
            FRAGMENT => {
                // SAFETY: as above.
                let [following, _, off_hi, off_lo] =
                    unsafe { *header.ok_or(DROP_POD_IPV6_MALFORMED)? };
                if u16::from_be_bytes([off_hi, off_lo]) & 0xfff8 != 0 {
                    return Ok((true, Upper::LaterFragment));
                }
                fragmented = true;
                next = following;
                at += 8;
            }
            proto => return Ok((fragmented, Upper::Header(proto, at))),
        }
        if at > MAX_OFFSET {
            return Err(DROP_POD_IPV6_MALFORMED);
        }
    }
    match next {
        HOP_BY_HOP | ROUTING | FRAGMENT | DEST_OPTIONS | AUTH => Err(DROP_POD_IPV6_MALFORMED),
        proto => Ok((fragmented, Upper::Header(proto, at))),
    }
}

/// Every source or target link-layer address option between `at` and `end` is `mac`; every option
/// up to `end` is read.
#[inline(always)]
fn link_layer_options(
    pkt: &Packet,
    mut at: usize,
    end: usize,
    mac: &[u8; 6],
) -> Result<(), Reason> {
    for _ in 0..MAX_OPTIONS {
        if at >= end {
            return Ok(());
        }
        if at > MAX_OFFSET {
            return Err(DROP_ND_SPOOFED);
        }
        let option = pkt.ptr_at::<[u8; 8]>(at).ok_or(DROP_ND_SPOOFED)?;
        // SAFETY: ptr_at checked the option's first eight bytes lie inside the frame.
        let [kind, len, a, b, c, d, e, f] = unsafe { *option };
        if len == 0 {
            // RFC 4861 4.6: a node must discard such a packet; nothing should forward it.
            return Err(DROP_POD_IPV6_MALFORMED);
        }
        if (kind == OPTION_SOURCE_LLADDR || kind == OPTION_TARGET_LLADDR)
            && [a, b, c, d, e, f] != *mac
        {
            return Err(DROP_ND_SPOOFED);
        }
        at += usize::from(len) * 8;
    }
    if at >= end {
        Ok(())
    } else {
        Err(DROP_ND_SPOOFED)
    }
}

#[inline(always)]
pub fn is_unspecified(addr: &[u8; 16]) -> bool {
    addr.iter().all(|b| *b == 0)
}

/// `addr` is one of the pod's own: its IPv6 address or its link-local one.
#[inline(always)]
fn is_address_of(addr: &[u8; 16], source: &Source) -> bool {
    is_link_local_of(addr, &source.mac) || is_configured_address_of(addr, source)
}

/// `addr` is the IPv6 address the pod was given (it has one).
#[inline(always)]
pub fn is_configured_address_of(addr: &[u8; 16], source: &Source) -> bool {
    !is_unspecified(&source.ip6) && same_address(addr, &source.ip6)
}

/// Two addresses compared as two 8-byte words: a 16-byte comparison compiles to a call to
/// `bcmp`, which BPF has not.
#[inline(always)]
pub fn same_address(a: &[u8; 16], b: &[u8; 16]) -> bool {
    let (a, b) = (a.as_ptr().cast::<u64>(), b.as_ptr().cast::<u64>());
    // SAFETY: both point to 16 readable bytes.
    unsafe {
        a.read_unaligned() == b.read_unaligned()
            && a.add(1).read_unaligned() == b.add(1).read_unaligned()
    }
}

/// `addr` is fe80::/64 with the modified EUI-64 interface identifier of `mac` (RFC 4291 app. A).
#[inline(always)]
fn is_link_local_of(addr: &[u8; 16], mac: &[u8; 6]) -> bool {
    addr[0] == 0xfe
        && addr[1] == 0x80
        && addr[2..8].iter().all(|b| *b == 0)
        && addr[8] == mac[0] ^ 0x02
        && addr[9] == mac[1]
        && addr[10] == mac[2]
        && addr[11] == 0xff
        && addr[12] == 0xfe
        && addr[13] == mac[3]
        && addr[14] == mac[4]
        && addr[15] == mac[5]
}
