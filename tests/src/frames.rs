//! Crafted Ethernet frames: for BPF_PROG_TEST_RUN, and sent from pods and underlay hosts.

use std::net::Ipv4Addr;

pub const POD_MAC: [u8; 6] = [0x02, 0xfa, 0x57, 0x00, 0x00, 0x01];
pub const PEER_MAC: [u8; 6] = [0x02, 0xfa, 0x57, 0x00, 0x00, 0x02];
pub const BROADCAST: [u8; 6] = [0xff; 6];

pub const ETH_IPV4: u16 = 0x0800;
pub const ETH_ARP: u16 = 0x0806;
pub const ETH_IPV6: u16 = 0x86dd;
pub const ETH_VLAN: u16 = 0x8100;
pub const ETH_QINQ: u16 = 0x88a8;
pub const IPPROTO_ICMPV6: u8 = 58;

/// An Ethernet header followed by `payload`.
pub fn ethernet(dst: [u8; 6], src: [u8; 6], ether_type: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ether_type.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

pub use control::reach::checksum;

/// Knobs for an IPv4 header; `Default` is a plain 20-byte UDP header, TTL 64.
#[derive(Clone, Copy)]
pub struct Ipv4 {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub ttl: u8,
    /// Header length in 32-bit words (5 = no options).
    pub ihl: u8,
    pub version: u8,
    /// Flags and fragment offset, host order (0x2000 = more fragments).
    pub frags: u16,
    pub proto: u8,
}

impl Default for Ipv4 {
    fn default() -> Self {
        Self {
            src: [198, 18, 0, 1],
            dst: [198, 18, 0, 2],
            ttl: 64,
            ihl: 5,
            version: 4,
            frags: 0x4000, // don't fragment
            proto: 17,
        }
    }
}

/// An IPv4 packet with header `h` (options zero-filled) and `payload`, checksum set.
pub fn ipv4(h: Ipv4, payload: &[u8]) -> Vec<u8> {
    let hlen = usize::from(h.ihl) * 4;
    let total = (hlen.max(20) + payload.len()) as u16;
    let mut p = vec![0u8; hlen.max(20)];
    p[0] = (h.version << 4) | h.ihl;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p[6..8].copy_from_slice(&h.frags.to_be_bytes());
    p[8] = h.ttl;
    p[9] = h.proto;
    p[12..16].copy_from_slice(&h.src);
    p[16..20].copy_from_slice(&h.dst);
    let c = checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// A UDP datagram (to port 9) in an IPv4 packet in an Ethernet frame, from the pod to its peer.
pub fn udp_frame(h: Ipv4, payload: &[u8]) -> Vec<u8> {
    ipv4_udp(PEER_MAC, POD_MAC, h, 9, payload)
}

/// `frame` (Ethernet, then IPv4 without options) with its IPv4 header made anew by `h` from one
/// with the present header's addresses; MACs and payload kept, checksum set.
pub fn with_ipv4_header(frame: &[u8], h: impl FnOnce(Ipv4) -> Ipv4) -> Vec<u8> {
    let present = Ipv4 {
        src: frame[26..30].try_into().expect("four bytes"),
        dst: frame[30..34].try_into().expect("four bytes"),
        ..Ipv4::default()
    };
    let mut f = frame[..14].to_vec();
    f.extend_from_slice(&ipv4(h(present), &frame[34..]));
    f
}

/// A UDP header and `payload`; checksum zero (none), which IPv4 receivers accept.
pub fn udp(source_port: u16, port: u16, payload: &[u8]) -> Vec<u8> {
    let mut udp = Vec::with_capacity(8 + payload.len());
    udp.extend_from_slice(&source_port.to_be_bytes());
    udp.extend_from_slice(&port.to_be_bytes());
    udp.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    udp
}

/// An Ethernet frame from `src_mac` to `dst_mac` with IPv4 header `h` carrying UDP to `port`.
pub fn ipv4_udp(dst_mac: [u8; 6], src_mac: [u8; 6], h: Ipv4, port: u16, payload: &[u8]) -> Vec<u8> {
    ethernet(
        dst_mac,
        src_mac,
        ETH_IPV4,
        &ipv4(h, &udp(40000, port, payload)),
    )
}

/// `frame` with VLAN tags (TPID, VID), outermost first, between its MACs and its ethertype.
pub fn tagged(frame: &[u8], tags: &[(u16, u16)]) -> Vec<u8> {
    let mut f = frame[..12].to_vec();
    for (tpid, vid) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&frame[12..]);
    f
}

/// The IPv4 datagram `l4` under header `h` as two fragments, the first carrying `first` bytes of
/// it (a multiple of 8).
pub fn fragments(h: Ipv4, l4: &[u8], first: usize) -> [Vec<u8>; 2] {
    assert!(first.is_multiple_of(8) && first < l4.len());
    [
        ipv4(Ipv4 { frags: 0x2000, ..h }, &l4[..first]),
        ipv4(
            Ipv4 {
                frags: (first / 8) as u16,
                ..h
            },
            &l4[first..],
        ),
    ]
}

/// An Ethernet/IPv4 ARP message (1 request, 2 reply).
pub fn arp(op: u16, sha: [u8; 6], spa: Ipv4Addr, tha: [u8; 6], tpa: Ipv4Addr) -> Vec<u8> {
    let mut a = vec![0, 1, 0x08, 0, 6, 4];
    a.extend_from_slice(&op.to_be_bytes());
    a.extend_from_slice(&sha);
    a.extend_from_slice(&spa.octets());
    a.extend_from_slice(&tha);
    a.extend_from_slice(&tpa.octets());
    a
}

/// The link-local address the kernel derives from `mac` (modified EUI-64).
pub fn link_local(mac: [u8; 6]) -> [u8; 16] {
    [
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        mac[0] ^ 0x02,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ]
}

/// An IPv6 packet: header (hop limit 255, as neighbour discovery needs) and `payload`.
pub fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[next, 255]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

/// An ICMPv6 message of `kind` with `body` after the checksum, its checksum set for `src`/`dst`.
pub fn icmpv6(src: [u8; 16], dst: [u8; 16], kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, 0, 0, 0];
    m.extend_from_slice(body);
    let mut pseudo = Vec::with_capacity(40 + m.len());
    pseudo.extend_from_slice(&src);
    pseudo.extend_from_slice(&dst);
    pseudo.extend_from_slice(&(m.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, IPPROTO_ICMPV6]);
    pseudo.extend_from_slice(&m);
    let sum = checksum(&pseudo);
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    m
}

/// The Ethernet multicast address of an IPv6 multicast address (RFC 2464).
pub fn ipv6_multicast_mac(dst: [u8; 16]) -> [u8; 6] {
    [0x33, 0x33, dst[12], dst[13], dst[14], dst[15]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_checksum_verifies_to_zero() {
        let p = ipv4(Ipv4::default(), b"x");
        assert_eq!(checksum(&p[..20]), 0);
        assert_eq!(u16::from_be_bytes([p[2], p[3]]), 21);
    }

    #[test]
    fn fragments_cover_the_datagram_once() {
        let l4 = udp(1, 2, &[7; 40]);
        let [first, second] = fragments(Ipv4::default(), &l4, 16);
        assert_eq!(u16::from_be_bytes([first[6], first[7]]), 0x2000);
        assert_eq!(u16::from_be_bytes([second[6], second[7]]), 2);
        assert_eq!([&first[20..], &second[20..]].concat(), l4);
    }

    #[test]
    fn icmpv6_checksum_verifies_with_its_pseudo_header() {
        let (src, dst) = (link_local(POD_MAC), link_local(PEER_MAC));
        let m = icmpv6(src, dst, 128, &[0, 1, 0, 1]);
        let mut pseudo = [&src[..], &dst[..]].concat();
        pseudo.extend_from_slice(&(m.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, IPPROTO_ICMPV6]);
        pseudo.extend_from_slice(&m);
        assert_eq!(checksum(&pseudo), 0);
        assert_eq!(link_local(POD_MAC)[8], 0x00, "the U/L bit flipped");
    }
}
