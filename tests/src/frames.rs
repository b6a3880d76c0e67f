//! Crafted Ethernet frames for BPF_PROG_TEST_RUN.

pub const POD_MAC: [u8; 6] = [0x02, 0xfa, 0x57, 0x00, 0x00, 0x01];
pub const PEER_MAC: [u8; 6] = [0x02, 0xfa, 0x57, 0x00, 0x00, 0x02];
pub const BROADCAST: [u8; 6] = [0xff; 6];

pub const ETH_IPV4: u16 = 0x0800;
pub const ETH_ARP: u16 = 0x0806;
pub const ETH_IPV6: u16 = 0x86dd;
pub const ETH_VLAN: u16 = 0x8100;

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

/// A UDP datagram in an IPv4 packet in an Ethernet frame, from the pod to its peer.
pub fn udp_frame(h: Ipv4, payload: &[u8]) -> Vec<u8> {
    let mut udp = Vec::with_capacity(8 + payload.len());
    udp.extend_from_slice(&40000u16.to_be_bytes());
    udp.extend_from_slice(&9u16.to_be_bytes());
    udp.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    ethernet(PEER_MAC, POD_MAC, ETH_IPV4, &ipv4(h, &udp))
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
}
