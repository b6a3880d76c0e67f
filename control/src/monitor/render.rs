//! An event as a person reads it (one line) and as a script does (one JSON object).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use datapath_common::{
    events::{Event, FAMILY_IPV4, FAMILY_IPV6},
    reasons::{self, Reason, Verdict, program, program_name},
};
use serde::Serialize;

use super::source::{Names, Source};

/// An event with everything named: what both renderings print.
#[derive(Debug, Serialize)]
pub struct Shown {
    /// Nanoseconds since the epoch.
    pub time_unix_ns: u64,
    /// The node's name, or `cni:<network>`.
    pub source: String,
    pub program: String,
    pub verdict: &'static str,
    pub reason: String,
    pub ifindex: u32,
    /// The pod whose veth it is, else the device's name.
    pub interface: Option<String>,
    pub target_ifindex: u32,
    pub target_interface: Option<String>,
    /// The frame's ethertype (`ipv4`, `arp`, `0x88cc`, ...), when captured.
    pub ethertype: Option<String>,
    #[serde(flatten)]
    pub tuple: Option<Tuple>,
    /// The packet inside a VXLAN frame, read from the captured bytes.
    pub inner: Option<Inner>,
    pub len: u32,
    pub cap_len: u32,
    /// The captured bytes, as hex.
    pub data: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Tuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: String,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
}

#[derive(Debug, Serialize)]
pub struct Inner {
    pub vni: u32,
    #[serde(flatten)]
    pub tuple: Tuple,
}

impl Shown {
    /// `event` from `source`; `clock_offset_ns` turns its monotonic time into the epoch's.
    pub fn new(event: &Event, source: &Source, names: &Names, clock_offset_ns: u64) -> Self {
        let data = &event.data[..(event.cap_len as usize).min(event.data.len())];
        Self {
            time_unix_ns: event.time_ns.wrapping_add(clock_offset_ns),
            source: source.label.clone(),
            program: program_name(event.program)
                .map_or_else(|| format!("program{}", event.program), str::to_string),
            verdict: Verdict::from_number(event.verdict).map_or("unknown", Verdict::name),
            reason: Reason(event.reason).name().to_string(),
            ifindex: event.ifindex,
            interface: names.of(event.ifindex),
            target_ifindex: event.target_ifindex,
            target_interface: names.of(event.target_ifindex),
            ethertype: data
                .get(12..14)
                .map(|t| ethertype_name(u16::from_be_bytes([t[0], t[1]]))),
            tuple: tuple(event),
            // Only frames a program made or took as VXLAN: a pod's own UDP to the port is the
            // pod's, whatever it carries.
            inner: source
                .vxlan_port
                .filter(|_| {
                    event.program == program::TC_UNDERLAY
                        || Reason(event.reason) == reasons::REDIRECT_ENCAPSULATED
                })
                .and_then(|port| vxlan_inner(data, port)),
            len: event.len,
            cap_len: event.cap_len,
            data: data.iter().map(|b| format!("{b:02x}")).collect(),
        }
    }

    /// Whether the event concerns `pod`: it arrived on or went to the pod's veth, or is addressed
    /// to the pod, or comes from the pod's address other than through another pod's veth (where
    /// the source is whatever that pod wrote: `is_pod` tells pods' names).
    pub fn concerns(&self, pod: &str, addresses: &[IpAddr], is_pod: impl Fn(&str) -> bool) -> bool {
        let named = |i: &Option<String>| i.as_deref() == Some(pod);
        let from_another_pod = self
            .interface
            .as_deref()
            .is_some_and(|i| i != pod && is_pod(i));
        let addressed = |t: &Tuple| {
            addresses.contains(&t.dst) || (!from_another_pod && addresses.contains(&t.src))
        };
        named(&self.interface)
            || named(&self.target_interface)
            || self.tuple.as_ref().is_some_and(addressed)
            || self.inner.as_ref().is_some_and(|i| addressed(&i.tuple))
    }

    /// One line: time, source, program, verdict/reason, devices, addresses, length.
    pub fn line(&self) -> String {
        let secs = self.time_unix_ns / 1_000_000_000;
        let micros = self.time_unix_ns % 1_000_000_000 / 1000;
        let (h, m, s) = (secs / 3600 % 24, secs / 60 % 60, secs % 60);
        let mut devices = self.interface.clone().unwrap_or_else(|| "-".into());
        if let Some(target) = &self.target_interface {
            devices = format!("{devices} → {target}");
        }
        let mut line = format!(
            "{h:02}:{m:02}:{s:02}.{micros:06} {:<8} {:<11} {:<8} {:<26} {:<20}",
            self.source, self.program, self.verdict, self.reason, devices
        );
        match (&self.tuple, &self.ethertype) {
            (Some(t), _) => line.push_str(&format!(" {}", t.describe())),
            (None, Some(ethertype)) => line.push_str(&format!(" {ethertype}")),
            (None, None) => line.push_str(" (not captured)"),
        }
        if let Some(inner) = &self.inner {
            line.push_str(&format!(
                " [vxlan vni {}: {}]",
                inner.vni,
                inner.tuple.describe()
            ));
        }
        line.push_str(&format!(" len {}", self.len));
        line
    }
}

impl Tuple {
    fn describe(&self) -> String {
        let end = |addr: &IpAddr, port: Option<u16>| match (addr, port) {
            (IpAddr::V6(a), Some(p)) => format!("[{a}]:{p}"),
            (a, Some(p)) => format!("{a}:{p}"),
            (a, None) => a.to_string(),
        };
        format!(
            "{} → {} {}",
            end(&self.src, self.src_port),
            end(&self.dst, self.dst_port),
            self.protocol
        )
    }
}

fn ethertype_name(ethertype: u16) -> String {
    match ethertype {
        0x0800 => "ipv4".into(),
        0x0806 => "arp".into(),
        0x86dd => "ipv6".into(),
        0x8100 => "vlan".into(),
        0x88a8 => "qinq".into(),
        t => format!("0x{t:04x}"),
    }
}

fn protocol_name(protocol: u8) -> String {
    match protocol {
        0 => "ipv6-hop-by-hop".into(),
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmp6".into(),
        p => format!("proto {p}"),
    }
}

/// The addresses and ports the program read from the packet.
fn tuple(event: &Event) -> Option<Tuple> {
    let (src, dst) = match event.family {
        FAMILY_IPV4 => {
            let v4 = |a: &[u8; 16]| IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]));
            (v4(&event.src_addr), v4(&event.dst_addr))
        }
        FAMILY_IPV6 => (
            IpAddr::V6(Ipv6Addr::from(event.src_addr)),
            IpAddr::V6(Ipv6Addr::from(event.dst_addr)),
        ),
        _ => return None,
    };
    let ported = event.protocol == 6 || event.protocol == 17;
    let port = |p: u16| (ported && (event.src_port, event.dst_port) != (0, 0)).then_some(p);
    Some(Tuple {
        src,
        dst,
        protocol: protocol_name(event.protocol),
        src_port: port(event.src_port),
        dst_port: port(event.dst_port),
    })
}

/// The IPv4 or IPv6 packet inside a VXLAN frame (Ethernet, IPv4, UDP to `port`, VXLAN, Ethernet,
/// IP), as far as `data` holds it.
fn vxlan_inner(data: &[u8], port: u16) -> Option<Inner> {
    let be16 = |at: usize| Some(u16::from_be_bytes(data.get(at..at + 2)?.try_into().ok()?));
    if be16(12)? != 0x0800 {
        return None;
    }
    let ihl = usize::from(*data.get(14)? & 0x0f) * 4;
    let udp = 14 + ihl;
    if *data.get(23)? != 17 || be16(udp + 2)? != port {
        return None;
    }
    let vxlan = udp + 8;
    let vni = data.get(vxlan + 4..vxlan + 7)?;
    let vni = u32::from_be_bytes([0, vni[0], vni[1], vni[2]]);
    let inner = vxlan + 8;
    let ip = inner + 14;
    match be16(inner + 12)? {
        0x0800 => {}
        0x86dd => {
            return Some(Inner {
                vni,
                tuple: inner_ipv6(data, ip)?,
            });
        }
        _ => return None,
    }
    let header = data.get(ip..ip + 20)?;
    let inner_ihl = usize::from(header[0] & 0x0f) * 4;
    let protocol = header[9];
    let fragment = u16::from_be_bytes([header[6], header[7]]) & 0x1fff != 0;
    let ports = (!fragment && (protocol == 6 || protocol == 17))
        .then(|| data.get(ip + inner_ihl..ip + inner_ihl + 4))
        .flatten();
    Some(Inner {
        vni,
        tuple: Tuple {
            src: IpAddr::V4(Ipv4Addr::new(
                header[12], header[13], header[14], header[15],
            )),
            dst: IpAddr::V4(Ipv4Addr::new(
                header[16], header[17], header[18], header[19],
            )),
            protocol: protocol_name(protocol),
            src_port: ports.map(|p| u16::from_be_bytes([p[0], p[1]])),
            dst_port: ports.map(|p| u16::from_be_bytes([p[2], p[3]])),
        },
    })
}

/// The 5-tuple of the IPv6 packet at `ip` in `data`; ports only when TCP or UDP follows the
/// header directly.
fn inner_ipv6(data: &[u8], ip: usize) -> Option<Tuple> {
    let header = data.get(ip..ip + 40)?;
    let address = |at: usize| -> IpAddr {
        let octets: [u8; 16] = header[at..at + 16].try_into().expect("16 bytes");
        IpAddr::V6(Ipv6Addr::from(octets))
    };
    let protocol = header[6];
    let ports = (protocol == 6 || protocol == 17)
        .then(|| data.get(ip + 40..ip + 44))
        .flatten();
    Some(Tuple {
        src: address(8),
        dst: address(24),
        protocol: protocol_name(protocol),
        src_port: ports.map(|p| u16::from_be_bytes([p[0], p[1]])),
        dst_port: ports.map(|p| u16::from_be_bytes([p[2], p[3]])),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VXLAN frame as tc_pod leaves it: outer 198.18.0.1 → 198.18.0.2:4789, VNI 42, inner UDP
    /// 198.18.1.2:5000 → 198.18.2.2:53.
    fn vxlan_frame() -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f.extend([0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0]);
        f.extend([198, 18, 0, 1, 198, 18, 0, 2]);
        f.extend([0x12, 0x34, 0x12, 0xb5, 0, 0, 0, 0]);
        f.extend([0x08, 0, 0, 0, 0, 0, 42, 0]);
        let mut inner = vec![0u8; 14];
        inner[12..14].copy_from_slice(&[0x08, 0x00]);
        f.extend(inner);
        f.extend([0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0]);
        f.extend([198, 18, 1, 2, 198, 18, 2, 2]);
        f.extend([0x13, 0x88, 0, 53, 0, 8, 0, 0]);
        f
    }

    #[test]
    fn the_packet_inside_a_vxlan_frame_is_read_from_the_captured_bytes() {
        let inner = vxlan_inner(&vxlan_frame(), 4789).expect("inner packet");
        assert_eq!(inner.vni, 42);
        assert_eq!(inner.tuple.src, "198.18.1.2".parse::<IpAddr>().unwrap());
        assert_eq!(inner.tuple.dst, "198.18.2.2".parse::<IpAddr>().unwrap());
        assert_eq!(inner.tuple.protocol, "udp");
        assert_eq!(
            (inner.tuple.src_port, inner.tuple.dst_port),
            (Some(5000), Some(53))
        );
    }

    #[test]
    fn an_ipv6_packet_inside_vxlan_is_read_too() {
        let mut frame = vxlan_frame();
        frame.truncate(50 + 14);
        frame[50 + 12..50 + 14].copy_from_slice(&[0x86, 0xdd]);
        frame.extend([0x60, 0, 0, 0, 0, 8, 6, 63]);
        frame.extend("2001:db8:1::2".parse::<Ipv6Addr>().unwrap().octets());
        frame.extend("2001:db8:2::2".parse::<Ipv6Addr>().unwrap().octets());
        frame.extend([0x13, 0x88, 0, 80]);
        let inner = vxlan_inner(&frame, 4789).expect("inner packet");
        assert_eq!(inner.tuple.src, "2001:db8:1::2".parse::<IpAddr>().unwrap());
        assert_eq!(inner.tuple.dst, "2001:db8:2::2".parse::<IpAddr>().unwrap());
        assert_eq!(inner.tuple.protocol, "tcp");
        assert_eq!(
            (inner.tuple.src_port, inner.tuple.dst_port),
            (Some(5000), Some(80))
        );
        assert!(vxlan_inner(&frame[..50 + 14 + 39], 4789).is_none());
    }

    #[test]
    fn frames_to_another_port_or_cut_short_have_no_inner_packet() {
        let frame = vxlan_frame();
        assert!(vxlan_inner(&frame, 8472).is_none());
        for len in [0, 13, 40, 49, 60, 83] {
            assert!(vxlan_inner(&frame[..len], 4789).is_none(), "{len} bytes");
        }
    }
}
