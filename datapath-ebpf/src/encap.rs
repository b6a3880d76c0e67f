//! VXLAN encapsulation of a pod's frame for a pod on a peer node (RFC 7348), built the way a
//! kernel-mode peer's VXLAN device expects it: the inner frame is what this node's kernel would
//! have put into its VXLAN device after routing (our VTEP MAC to the peer's, TTL or hop limit one
//! less), and the outer headers are what that device would have put around it (UDP checksum
//! zero, source port from a hash of the inner flow). The underlay is IPv4; the pod's packet is
//! IPv4 or IPv6.
//!
//! Layout after encapsulation, the same for XDP and TC:
//! `outer Ethernet (0) | outer IPv4 (14) | UDP (34) | VXLAN (42) | inner Ethernet (50) | inner IP (64)`

use core::{
    mem::{self, MaybeUninit},
    ptr,
};

use aya_ebpf::{
    bindings::{
        BPF_F_ADJ_ROOM_ENCAP_L2_ETH, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4, BPF_F_ADJ_ROOM_ENCAP_L4_UDP,
        BPF_F_ADJ_ROOM_FIXED_GSO, BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NO_NEIGH,
        BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LOOKUP_OUTPUT, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT,
        bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, bpf_fib_lookup, xdp_action,
    },
    helpers::{
        bpf_fib_lookup as fib_lookup, bpf_redirect, bpf_redirect_neigh, bpf_xdp_adjust_head,
    },
    programs::{TcContext, XdpContext},
};
use datapath_common::{
    maps::{NodeConfig, Remote},
    reasons::*,
};
use network_types::{
    eth::{EthHdr, EtherType},
    ip::{IpProto, Ipv4Hdr, Ipv6Hdr},
    udp::UdpHdr,
    vxlan::VxlanHdr,
};

use crate::{
    classify::Ip,
    csum, forward,
    maps::{DEVMAP, NODE},
    packet::{self, Packet},
};

/// Bytes put in front of a pod's frame: outer Ethernet, IPv4, UDP and VXLAN headers.
pub const OVERHEAD: usize = EthHdr::LEN + Ipv4Hdr::LEN + UdpHdr::LEN + VxlanHdr::LEN;
const OUTER_IP: usize = EthHdr::LEN;
const OUTER_UDP: usize = OUTER_IP + Ipv4Hdr::LEN;
const VXLAN: usize = OUTER_UDP + UdpHdr::LEN;
const INNER_ETH: usize = VXLAN + VxlanHdr::LEN;
const INNER_IP: usize = INNER_ETH + EthHdr::LEN;

/// The kernel's default source port range for VXLAN (its ephemeral range, 32768..60999).
const SOURCE_PORT_MIN: u32 = 32768;
const SOURCE_PORT_MAX: u32 = 61000;

/// Outer TTL, as the kernel's VXLAN device uses without a configured one (ip_default_ttl).
const OUTER_TTL: u8 = 64;
/// Don't-fragment: fastpath only encapsulates what fits the underlay MTU, so an outer packet never
/// needs fragmenting; too-big frames take the kernel path.
const IPV4_DF: u16 = 0x4000;
const AF_INET: u8 = 2;

/// Where an encapsulated frame leaves: the device and the MACs for the underlay hop.
pub struct NextHop {
    pub ifindex: u32,
    /// None: the neighbour is not resolved yet (a TC caller lets bpf_redirect_neigh resolve it).
    pub macs: Option<([u8; 6], [u8; 6])>,
}

/// Looks up the route from this node's underlay address to the peer's, as the kernel's VXLAN
/// device would for its outer packet. `outer_len` is the outer IPv4 length of one packet on the
/// wire, which the lookup checks against the route's MTU.
#[inline(always)]
pub fn next_hop(
    ctx: *mut core::ffi::c_void,
    node: &NodeConfig,
    peer: &Remote,
    outer_len: u32,
) -> Result<NextHop, Reason> {
    if outer_len > node.underlay_mtu || outer_len > u32::from(u16::MAX) {
        return Err(PASS_TOO_BIG);
    }
    let mut storage = MaybeUninit::uninit();
    let params = zeroed_fib_params(&mut storage);
    params.family = AF_INET;
    params.l4_protocol = IpProto::Udp as u8;
    params.__bindgen_anon_1.tot_len = outer_len as u16;
    params.ifindex = node.underlay_ifindex;
    params.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(node.underlay_ip);
    params.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(peer.underlay_ip);
    // SAFETY: params is a valid bpf_fib_lookup of the size passed.
    let ret = unsafe {
        fib_lookup(
            ctx,
            params,
            mem::size_of::<bpf_fib_lookup>() as i32,
            BPF_FIB_LOOKUP_OUTPUT,
        )
    };
    match ret as u32 {
        BPF_FIB_LKUP_RET_SUCCESS => Ok(NextHop {
            ifindex: params.ifindex,
            macs: Some((params.smac, params.dmac)),
        }),
        BPF_FIB_LKUP_RET_NO_NEIGH => Ok(NextHop {
            ifindex: params.ifindex,
            macs: None,
        }),
        BPF_FIB_LKUP_RET_FRAG_NEEDED => Err(PASS_TOO_BIG),
        _ => Err(PASS_NO_UNDERLAY_ROUTE),
    }
}

// zeroed_fib_params writes whole 32-bit words.
const _: () = assert!(
    mem::size_of::<bpf_fib_lookup>().is_multiple_of(4) && mem::align_of::<bpf_fib_lookup>() >= 4
);

/// Zeroes lookup parameters in place, in 32-bit stores: `mem::zeroed` (or a zeroed value moved
/// into place) compiles to a call to a byte-at-a-time memset subprogram.
#[inline(always)]
fn zeroed_fib_params(storage: &mut MaybeUninit<bpf_fib_lookup>) -> &mut bpf_fib_lookup {
    let words = storage.as_mut_ptr().cast::<u32>();
    for i in 0..mem::size_of::<bpf_fib_lookup>() / 4 {
        // SAFETY: within the struct, which is 4-byte aligned and a multiple of 4 bytes long.
        unsafe { ptr::write_volatile(words.add(i), 0) };
    }
    // SAFETY: every byte is written; all zeroes is a valid value of every field (plain data).
    unsafe { storage.assume_init_mut() }
}

/// The outer UDP source port for a pod's frame: a hash of its flow (addresses, protocol, and the
/// ports of TCP and UDP), so one flow keeps one port and flows spread over ECMP paths and RSS
/// queues. Read before the headers are added.
#[inline(always)]
pub fn source_port(pkt: &Packet, ip: &Ip) -> u16 {
    let proto = ip.proto();
    let mut h = match ip {
        Ip::V4(ip) => {
            u32::from_ne_bytes(ip.src_addr) ^ u32::from_ne_bytes(ip.dst_addr).rotate_left(16)
        }
        Ip::V6(ip) => fold(&ip.src_addr) ^ fold(&ip.dst_addr).rotate_left(16),
    } ^ u32::from(proto);
    if (proto == IpProto::Tcp as u8 || proto == IpProto::Udp as u8)
        && let Some(ports) = pkt.ptr_at::<u32>(EthHdr::LEN + ip.header_len())
    {
        // SAFETY: ptr_at checked the four port bytes lie inside the frame.
        h ^= unsafe { core::ptr::read_unaligned(ports) }.rotate_left(8);
    }
    // murmur3's finaliser: every input bit moves the high bits the port is taken from.
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    let span = u64::from(SOURCE_PORT_MAX - SOURCE_PORT_MIN);
    (((u64::from(h) * span) >> 32) as u32 + SOURCE_PORT_MIN) as u16
}

/// An IPv6 address folded into 32 bits, read in 4-byte words (a byte-wise loop over 16 bytes
/// costs the verifier and the packet four times the instructions).
#[inline(always)]
fn fold(addr: &[u8; 16]) -> u32 {
    let words = addr.as_ptr().cast::<u32>();
    // SAFETY: 16 readable bytes are four unaligned u32s.
    unsafe {
        words.read_unaligned()
            ^ words.add(1).read_unaligned()
            ^ words.add(2).read_unaligned()
            ^ words.add(3).read_unaligned()
    }
}

/// What goes into the headers in front of the pod's frame.
pub struct Outer<'a> {
    pub node: &'a NodeConfig,
    pub peer: &'a Remote,
    /// Underlay (source, destination) MACs; None when bpf_redirect_neigh fills them in.
    pub macs: Option<([u8; 6], [u8; 6])>,
    pub source_port: u16,
    /// The outer IPv4 total length: the whole (possibly GSO) packet's, or 0 when it exceeds 16
    /// bits, which the kernel reads as "take the length from the packet" for GSO TCP.
    pub tot_len: u16,
    /// The pod's packet is IPv6.
    pub ipv6: bool,
}

/// Writes the 64 bytes of outer Ethernet, IPv4, UDP, VXLAN and inner Ethernet headers in front of
/// the pod's IP header (room for them already made) and decrements the inner TTL or hop limit.
/// False when the frame is too short, which room-making rules out.
#[inline(always)]
pub fn write(pkt: &Packet, o: &Outer) -> bool {
    let (Some(eth), Some(ip), Some(udp), Some(vxlan), Some(inner_eth)) = (
        pkt.ptr_at_mut::<EthHdr>(0),
        pkt.ptr_at_mut::<Ipv4Hdr>(OUTER_IP),
        pkt.ptr_at_mut::<UdpHdr>(OUTER_UDP),
        pkt.ptr_at_mut::<VxlanHdr>(VXLAN),
        pkt.ptr_at_mut::<EthHdr>(INNER_ETH),
    ) else {
        return false;
    };
    if !forward::decrement_hop_limit(pkt, INNER_IP, o.ipv6) {
        return false;
    }
    let udp_len = if o.tot_len == 0 {
        0
    } else {
        o.tot_len - Ipv4Hdr::LEN as u16
    };
    let mut outer_ip = Ipv4Hdr {
        vihl: 0x45,
        tos: 0,
        tot_len: o.tot_len.to_be_bytes(),
        id: [0; 2],
        frags: IPV4_DF.to_be_bytes(),
        ttl: OUTER_TTL,
        proto: IpProto::Udp as u8,
        check: [0; 2],
        src_addr: o.node.underlay_ip,
        dst_addr: o.peer.underlay_ip,
    };
    outer_ip.check = csum::ipv4_header(&outer_ip);
    let vni = o.node.vni.to_be_bytes();
    // SAFETY: ptr_at_mut checked every header lies inside the frame; they do not overlap each
    // other or the map values and locals copied into them.
    unsafe {
        let (src_mac, dst_mac) = match &o.macs {
            Some((src, dst)) => (src, dst),
            None => (&[0; 6], &[0; 6]),
        };
        packet::write_bytes(&raw mut (*eth).src_addr, src_mac);
        packet::write_bytes(&raw mut (*eth).dst_addr, dst_mac);
        (*eth).ether_type = EtherType::Ipv4 as u16;
        *ip = outer_ip;
        (*udp).src = o.source_port.to_be_bytes();
        (*udp).dst = o.node.vxlan_port.to_be_bytes();
        (*udp).len = udp_len.to_be_bytes();
        (*udp).check = [0; 2];
        // Flags, 3 reserved bytes, VNI, 1 reserved byte (RFC 7348).
        packet::write_bytes(
            vxlan.cast::<[u8; VxlanHdr::LEN]>(),
            &[
                network_types::vxlan::VXLAN_I_FLAG_MASK,
                0,
                0,
                0,
                vni[1],
                vni[2],
                vni[3],
                0,
            ],
        );
        packet::write_bytes(&raw mut (*inner_eth).src_addr, &o.node.vtep_mac);
        packet::write_bytes(&raw mut (*inner_eth).dst_addr, &o.peer.vtep_mac);
        (*inner_eth).ether_type = forward::ether_type(o.ipv6);
    }
    true
}

/// The pod's IP header in a frame about to be encapsulated.
#[inline(always)]
fn pod_ip<'a>(pkt: &'a Packet, ipv6: bool) -> Option<Ip<'a>> {
    // SAFETY: ptr_at checked the header lies inside the frame.
    unsafe {
        if ipv6 {
            Some(Ip::V6(&*pkt.ptr_at::<Ipv6Hdr>(EthHdr::LEN)?))
        } else {
            Some(Ip::V4(&*pkt.ptr_at::<Ipv4Hdr>(EthHdr::LEN)?))
        }
    }
}

/// Encapsulates in XDP: room in front of the frame, headers written, redirect to the underlay
/// through the devmap. Returns the reason when it is not `encapsulated`.
#[inline(always)]
pub fn xdp(ctx: &XdpContext, pkt: &Packet, peer: &Remote, ipv6: bool) -> (Option<Reason>, u32) {
    let pass = |reason| (Some(reason), xdp_action::XDP_PASS);
    let Some(node) = NODE.get(0) else {
        return pass(PASS_FAST_PATH_OFF);
    };
    let Some(ip) = pod_ip(pkt, ipv6) else {
        return pass(PASS_TRUNCATED);
    };
    let source_port = source_port(pkt, &ip);
    // No GSO in XDP: the frame is one packet.
    let outer_len = (pkt.len() - EthHdr::LEN + OVERHEAD) as u32;
    let hop = match next_hop(ctx.ctx.cast(), node, peer, outer_len) {
        Ok(hop) => hop,
        Err(reason) => return pass(reason),
    };
    let Some(macs) = hop.macs else {
        return pass(PASS_UNDERLAY_NO_NEIGH);
    };
    if DEVMAP.get_ifindex(hop.ifindex).is_none() {
        return pass(PASS_REDIRECT_FAILED);
    }
    // SAFETY: a helper call on this program's own context.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(OVERHEAD as i32)) } != 0 {
        return pass(PASS_ADJUST_FAILED);
    }
    let pkt = Packet::new(ctx.data(), ctx.data_end());
    let outer = Outer {
        node,
        peer,
        macs: Some(macs),
        source_port,
        tot_len: outer_len as u16,
        ipv6,
    };
    if !write(&pkt, &outer) {
        return (Some(DROP_ENCAP_FAILED), xdp_action::XDP_DROP);
    }
    match DEVMAP.redirect(hop.ifindex, 0) {
        Ok(verdict) => (None, verdict),
        Err(_) => (Some(DROP_ENCAP_FAILED), xdp_action::XDP_DROP),
    }
}

/// The length of one outer IPv4 packet on the wire: of the whole skb, or for a GSO skb of one of
/// the segments the kernel will cut it into (inner headers + gso_size). None for a GSO skb whose
/// segments fastpath cannot size.
#[inline(always)]
fn tc_outer_len(ctx: &TcContext, pkt: &Packet, ip: &Ip) -> Option<u32> {
    // SAFETY: the context's skb pointer is valid for the program's run.
    let gso_size = unsafe { (*ctx.skb.skb).gso_size };
    if gso_size == 0 {
        return Some(ctx.len() - EthHdr::LEN as u32 + OVERHEAD as u32);
    }
    let (proto, l3_header) = (ip.proto(), ip.header_len());
    let l4_header = if proto == IpProto::Tcp as u8 {
        // The data offset: the high nibble of the TCP header's 13th byte, in 32-bit words.
        let offset = pkt.ptr_at::<u8>(EthHdr::LEN + l3_header + 12)?;
        // SAFETY: ptr_at checked the byte lies inside the frame.
        u32::from(unsafe { *offset } >> 4) * 4
    } else if proto == IpProto::Udp as u8 {
        UdpHdr::LEN as u32
    } else {
        return None;
    };
    Some(l3_header as u32 + l4_header + gso_size + OVERHEAD as u32)
}

/// Encapsulates in TC with bpf_skb_adjust_room, which marks the skb as encapsulated (inner headers,
/// SKB_GSO_UDP_TUNNEL): a GSO packet stays one packet here and is segmented where the kernel
/// path would segment it, at the underlay device (or in its hardware). FIXED_GSO keeps gso_size:
/// the pod's MTU already leaves room for the VXLAN headers. The outer UDP checksum is zero, so
/// segmenting needs no outer checksum either. Returns the reason when it is not `encapsulated`.
#[inline(always)]
pub fn tc(ctx: &TcContext, pkt: &Packet, peer: &Remote, ipv6: bool) -> (Option<Reason>, i32) {
    let pass = |reason| (Some(reason), TC_ACT_OK);
    let Some(node) = NODE.get(0) else {
        return pass(PASS_FAST_PATH_OFF);
    };
    let Some(ip) = pod_ip(pkt, ipv6) else {
        return pass(PASS_TRUNCATED);
    };
    let Some(outer_len) = tc_outer_len(ctx, pkt, &ip) else {
        return pass(PASS_TOO_BIG);
    };
    let total = ctx.len() - EthHdr::LEN as u32 + OVERHEAD as u32;
    let source_port = source_port(pkt, &ip);
    let hop = match next_hop(ctx.skb.skb.cast(), node, peer, outer_len) {
        Ok(hop) => hop,
        Err(reason) => return pass(reason),
    };
    let flags = u64::from(
        BPF_F_ADJ_ROOM_FIXED_GSO
            | BPF_F_ADJ_ROOM_ENCAP_L3_IPV4
            | BPF_F_ADJ_ROOM_ENCAP_L4_UDP
            | BPF_F_ADJ_ROOM_ENCAP_L2_ETH,
    ) | encap_l2_len(EthHdr::LEN);
    if ctx
        .adjust_room(OVERHEAD as i32, BPF_ADJ_ROOM_MAC, flags)
        .is_err()
    {
        return pass(PASS_ADJUST_FAILED);
    }
    let pkt = Packet::new(ctx.data(), ctx.data_end());
    let outer = Outer {
        node,
        peer,
        macs: hop.macs,
        source_port,
        // Above 16 bits only for a GSO skb, whose segments get their own lengths.
        tot_len: if total > u32::from(u16::MAX) {
            0
        } else {
            total as u16
        },
        ipv6,
    };
    if !write(&pkt, &outer) {
        return (Some(DROP_ENCAP_FAILED), TC_ACT_SHOT);
    }
    // SAFETY: helper calls with plain integer arguments (no neighbour parameters).
    let ret = unsafe {
        if hop.macs.is_some() {
            bpf_redirect(hop.ifindex, 0)
        } else {
            // The kernel resolves the underlay neighbour, queueing the packet meanwhile.
            bpf_redirect_neigh(hop.ifindex, core::ptr::null_mut(), 0, 0)
        }
    } as i32;
    if ret == TC_ACT_REDIRECT {
        (None, ret)
    } else {
        (Some(DROP_ENCAP_FAILED), TC_ACT_SHOT)
    }
}

/// BPF_F_ADJ_ROOM_ENCAP_L2(len): the inner MAC header length, in the flags' top byte.
#[inline(always)]
fn encap_l2_len(len: usize) -> u64 {
    ((len as u64) & 0xff) << 56
}
