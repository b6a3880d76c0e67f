//! VXLAN on the wire (RFC 7348): frames built for injection, and captured frames taken apart
//! with every header and checksum checked, IPv4 or IPv6 inside.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::{
    capture,
    frames::{self, ETH_IPV4, ETH_IPV6, IPPROTO_ICMPV6, Ipv4, checksum},
};

/// The VXLAN header's flags byte with only the I (VNI valid) flag.
pub const FLAG_I: u8 = 0x08;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
/// Outer Ethernet + IPv4 + UDP + VXLAN: where the inner frame starts.
const INNER: usize = 50;

/// Addresses of an outer packet.
pub struct Outer {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub port: u16,
}

/// `inner` (an Ethernet frame) in VXLAN with `flags` and `vni`, in UDP (checksum zero) from
/// `outer`'s source to its destination.
pub fn frame(outer: &Outer, flags: u8, vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut udp = Vec::with_capacity(16 + inner.len());
    udp.extend_from_slice(&49152u16.to_be_bytes());
    udp.extend_from_slice(&outer.port.to_be_bytes());
    udp.extend_from_slice(&((16 + inner.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&[flags, 0, 0, 0]);
    udp.extend_from_slice(&(vni << 8).to_be_bytes());
    udp.extend_from_slice(inner);
    let ip = frames::ipv4(
        Ipv4 {
            src: outer.src.octets(),
            dst: outer.dst.octets(),
            ..Ipv4::default()
        },
        &udp,
    );
    frames::ethernet(outer.dst_mac, outer.src_mac, ETH_IPV4, &ip)
}

/// A UDP datagram from `src` to `dst:port` (both IPv4 or both IPv6) in an Ethernet frame, UDP
/// checksum set.
pub fn inner_udp(
    macs: ([u8; 6], [u8; 6]),
    src: impl Into<IpAddr>,
    dst: impl Into<IpAddr>,
    port: u16,
    payload: &[u8],
) -> Vec<u8> {
    let (src, dst) = (src.into(), dst.into());
    let udp = udp_segment(src, dst, port, payload);
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let ip = frames::ipv4(
                Ipv4 {
                    src: src.octets(),
                    dst: dst.octets(),
                    ..Ipv4::default()
                },
                &udp,
            );
            frames::ethernet(macs.1, macs.0, ETH_IPV4, &ip)
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let mut ip = frames::ipv6(src.octets(), dst.octets(), IPPROTO_UDP, &udp);
            // A routed packet's hop limit, not neighbour discovery's 255.
            ip[7] = 63;
            frames::ethernet(macs.1, macs.0, ETH_IPV6, &ip)
        }
        _ => panic!("inner_udp from {src} to {dst}: two families"),
    }
}

/// A UDP header from port 40000 to `port` and `payload`, its checksum set for `src`/`dst`.
pub fn udp_segment(src: IpAddr, dst: IpAddr, port: u16, payload: &[u8]) -> Vec<u8> {
    let len = (8 + payload.len()) as u16;
    let mut udp = Vec::with_capacity(usize::from(len));
    udp.extend_from_slice(&40000u16.to_be_bytes());
    udp.extend_from_slice(&port.to_be_bytes());
    udp.extend_from_slice(&len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let sum = l4_checksum(src, dst, IPPROTO_UDP, &udp);
    udp[6..8].copy_from_slice(&sum.to_be_bytes());
    udp
}

/// The one's-complement checksum of `segment` with its IPv4 or IPv6 pseudo-header; 0 verifies a
/// segment that carries its checksum.
fn l4_checksum(src: IpAddr, dst: IpAddr, proto: u8, segment: &[u8]) -> u16 {
    let mut bytes = Vec::with_capacity(40 + segment.len());
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            bytes.extend_from_slice(&src.octets());
            bytes.extend_from_slice(&dst.octets());
            bytes.extend_from_slice(&[0, proto]);
            bytes.extend_from_slice(&(segment.len() as u16).to_be_bytes());
        }
        _ => {
            bytes.extend_from_slice(&octets16(src));
            bytes.extend_from_slice(&octets16(dst));
            bytes.extend_from_slice(&(segment.len() as u32).to_be_bytes());
            bytes.extend_from_slice(&[0, 0, 0, proto]);
        }
    }
    bytes.extend_from_slice(segment);
    checksum(&bytes)
}

fn octets16(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V6(v6) => v6.octets(),
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
    }
}

/// A captured VXLAN frame, taken apart.
#[derive(Debug)]
pub struct Parsed {
    pub outer_src: Ipv4Addr,
    pub outer_dst: Ipv4Addr,
    pub source_port: u16,
    pub port: u16,
    pub vni: u32,
    pub inner_src_mac: [u8; 6],
    pub inner_dst_mac: [u8; 6],
    pub inner_src: IpAddr,
    pub inner_dst: IpAddr,
    /// TTL or hop limit.
    pub inner_ttl: u8,
    /// Protocol or next header (no extension headers are expected).
    pub inner_proto: u8,
    /// Outer IPv4 length of each packet this frame is on the wire: the frame's own, or a
    /// GSO packet's segments'.
    pub wire_l3_len: usize,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn addr(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

/// True for an IPv4 UDP frame to `port`: one that should be VXLAN.
pub fn is_udp_to(f: &capture::Frame, port: u16) -> bool {
    let d = &f.data;
    d.len() >= 38 && be16(d, 12) == ETH_IPV4 && d[23] == IPPROTO_UDP && be16(d, 36) == port
}

/// Parses `f` as VXLAN carrying IPv4 or IPv6, checking every header: outer IPv4 checksum, UDP
/// checksum (zero, correct, or handed to offload), VXLAN flags and reserved fields, inner IPv4
/// checksum, and the inner TCP/UDP/ICMP/ICMPv6 checksum (complete, or handed to offload at
/// exactly its field).
pub fn parse(f: &capture::Frame) -> Result<Parsed, String> {
    let d = &f.data;
    if d.len() < INNER + 14 + 20 {
        return Err(format!(
            "{} bytes: too short for VXLAN with IPv4 inside",
            d.len()
        ));
    }
    if d[14] != 0x45 {
        return Err(format!("outer IPv4 version/IHL {:#x}", d[14]));
    }
    if checksum(&d[14..34]) != 0 {
        return Err("outer IPv4 header checksum".into());
    }
    if d[23] != IPPROTO_UDP {
        return Err(format!("outer protocol {}", d[23]));
    }
    if d[42] != FLAG_I || d[43..46] != [0, 0, 0] || d[49] != 0 {
        return Err(format!("VXLAN flags/reserved {:02x?}", &d[42..50]));
    }
    let vni = u32::from_be_bytes([0, d[46], d[47], d[48]]);
    let inner_mac = |at: usize| -> [u8; 6] { d[at..at + 6].try_into().unwrap() };
    let ip = INNER + 14;
    let inner = match be16(d, INNER + 12) {
        ETH_IPV4 => inner_ipv4(d, ip)?,
        ETH_IPV6 => inner_ipv6(d, ip)?,
        other => return Err(format!("inner ethertype {other:#x}")),
    };
    let Inner {
        src: inner_src,
        dst: inner_dst,
        ttl: inner_ttl,
        proto,
        l4,
        ..
    } = inner;
    let l4_header = match proto {
        IPPROTO_TCP => usize::from(d[l4 + 12] >> 4) * 4,
        IPPROTO_UDP | IPPROTO_ICMP | IPPROTO_ICMPV6 => 8,
        other => return Err(format!("inner protocol {other}")),
    };
    let wire_l3_len = if f.gso_size == 0 {
        f.len - 14
    } else {
        l4 + l4_header + usize::from(f.gso_size) - 14
    };
    check_l4_checksums(f, &inner)?;
    Ok(Parsed {
        outer_src: addr(d, 26),
        outer_dst: addr(d, 30),
        source_port: be16(d, 34),
        port: be16(d, 36),
        vni,
        inner_src_mac: inner_mac(INNER + 6),
        inner_dst_mac: inner_mac(INNER),
        inner_src,
        inner_dst,
        inner_ttl,
        inner_proto: proto,
        wire_l3_len,
    })
}

/// The inner IP header, taken apart.
struct Inner {
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    proto: u8,
    /// Where the transport header starts, and where the packet ends by its IP header.
    l4: usize,
    end: usize,
}

fn inner_ipv4(d: &[u8], ip: usize) -> Result<Inner, String> {
    let ihl = usize::from(d[ip] & 0x0f) * 4;
    if d[ip] >> 4 != 4 || ihl < 20 || d.len() < ip + ihl + 8 {
        return Err(format!("inner IPv4 version/IHL {:#x}", d[ip]));
    }
    if checksum(&d[ip..ip + ihl]) != 0 {
        return Err("inner IPv4 header checksum".into());
    }
    Ok(Inner {
        src: addr(d, ip + 12).into(),
        dst: addr(d, ip + 16).into(),
        ttl: d[ip + 8],
        proto: d[ip + 9],
        l4: ip + ihl,
        end: ip + usize::from(be16(d, ip + 2)),
    })
}

fn inner_ipv6(d: &[u8], ip: usize) -> Result<Inner, String> {
    if d.len() < ip + 40 + 8 || d[ip] >> 4 != 6 {
        return Err(format!("inner IPv6 version {:#x} or too short", d[ip] >> 4));
    }
    let addr6 = |at: usize| -> IpAddr {
        let octets: [u8; 16] = d[at..at + 16].try_into().unwrap();
        Ipv6Addr::from(octets).into()
    };
    Ok(Inner {
        src: addr6(ip + 8),
        dst: addr6(ip + 24),
        ttl: d[ip + 7],
        proto: d[ip + 6],
        l4: ip + 40,
        end: ip + 40 + usize::from(be16(d, ip + 4)),
    })
}

/// Offset of the checksum field in a TCP, UDP, ICMP or ICMPv6 header.
fn field_of(proto: u8) -> usize {
    match proto {
        IPPROTO_TCP => 16,
        IPPROTO_UDP => 6,
        _ => 2,
    }
}

/// Where offload finishes the outer UDP checksum, when it does.
const OUTER_UDP_CSUM: (usize, usize) = (34, 6);

/// Where offload is to write a checksum: (start of the summed bytes, offset of the field).
fn offloaded_at(f: &capture::Frame) -> Option<(usize, usize)> {
    f.needs_csum
        .then(|| (usize::from(f.csum_start), usize::from(f.csum_offset)))
}

/// The outer UDP checksum (zero, as RFC 7348 says it SHOULD be, or correct) and the inner one.
/// A checksum left to offload is first finished here the way a device would: the field holds
/// the pseudo-header sum, the device sums from `csum_start` to the end. A GSO packet's checksums
/// are made when it is cut into segments: only where they will go is checked.
fn check_l4_checksums(f: &capture::Frame, inner: &Inner) -> Result<(), String> {
    let (l4, proto) = (inner.l4, inner.proto);
    let field = field_of(proto);
    let at = offloaded_at(f);
    if at.is_some_and(|at| at != (l4, field) && at != OUTER_UDP_CSUM) {
        return Err(format!(
            "checksum offload at {at:?}: neither the inner protocol {proto} checksum ({l4}+{field}) nor the outer UDP one"
        ));
    }
    if f.gso_size != 0 || f.len > f.data.len() {
        if at.is_none() {
            return Err("a GSO or cut-off frame with no checksum left to offload".into());
        }
        return Ok(());
    }
    let mut d = f.data.clone();
    let end = 14 + usize::from(be16(&d, 16));
    if end > d.len() {
        return Err(format!("outer IPv4 length {} beyond the frame", end - 14));
    }
    if let Some((start, offset)) = at {
        let sum = checksum(&d[start..end]);
        d[start + offset..start + offset + 2].copy_from_slice(&sum.to_be_bytes());
    }
    let outer = be16(&d, 40) == 0
        || l4_checksum(
            addr(&d, 26).into(),
            addr(&d, 30).into(),
            IPPROTO_UDP,
            &d[34..end],
        ) == 0;
    if !outer {
        return Err(format!(
            "outer UDP checksum {:#x} does not verify",
            be16(&d, 40)
        ));
    }
    if inner.end > end {
        return Err("inner IP length beyond the outer packet".into());
    }
    let segment = &d[l4..inner.end];
    let ok = match proto {
        IPPROTO_ICMP => checksum(segment) == 0,
        // A zero UDP checksum means none over IPv4 only (RFC 8200 8.1).
        IPPROTO_UDP if be16(&d, l4 + 6) == 0 => inner.src.is_ipv4(),
        _ => l4_checksum(inner.src, inner.dst, proto, segment) == 0,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("inner protocol {proto} checksum does not verify"))
    }
}
