//! IPv4 header checksums: a full one for headers the programs build, an incremental one (RFC 1624)
//! for the TTL they decrement.

use network_types::ip::Ipv4Hdr;

/// Folds a 32-bit one's-complement sum to 16 bits.
#[inline(always)]
fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// The checksum of a 20-byte IPv4 header (its own checksum field taken as zero).
#[inline(always)]
pub fn ipv4_header(ip: &Ipv4Hdr) -> [u8; 2] {
    let word = |b: [u8; 2]| u32::from(u16::from_be_bytes(b));
    let sum = word([ip.vihl, ip.tos])
        + word(ip.tot_len)
        + word(ip.id)
        + word(ip.frags)
        + word([ip.ttl, ip.proto])
        + word([ip.src_addr[0], ip.src_addr[1]])
        + word([ip.src_addr[2], ip.src_addr[3]])
        + word([ip.dst_addr[0], ip.dst_addr[1]])
        + word([ip.dst_addr[2], ip.dst_addr[3]]);
    (!fold(sum)).to_be_bytes()
}

/// Does what forwarding does to a header: TTL one less, checksum updated to match.
///
/// # Safety
/// `ip` points to a whole IPv4 header inside the packet, and nothing else refers to it.
#[inline(always)]
pub unsafe fn decrement_ttl(ip: *mut Ipv4Hdr) {
    // SAFETY: the caller's guarantee.
    unsafe {
        let old = u16::from_be_bytes([(*ip).ttl, (*ip).proto]);
        (*ip).ttl -= 1;
        let new = u16::from_be_bytes([(*ip).ttl, (*ip).proto]);
        let sum = u32::from(!u16::from_be_bytes((*ip).check)) + u32::from(!old) + u32::from(new);
        (*ip).check = (!fold(sum)).to_be_bytes();
    }
}
