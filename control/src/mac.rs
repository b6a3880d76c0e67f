//! MAC addresses: one type from where an address enters (a config file, a netlink attribute, a
//! CNI result or record) to where it leaves (a map entry, a netlink request, printed output), and
//! the MACs fastpath derives for what it creates.

use std::{
    fmt,
    net::{Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A MAC address; printed and parsed as six hex bytes separated by ':' (`02:fd:c6:12:01:02`).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// The MAC of a pod interface fastpath creates: derived from the pod's IPv4 address, so a
    /// pod re-created with the same address (a CNI DEL and ADD on a live container, `fastpath
    /// up` re-adding a pod) has the MAC its neighbours' ARP caches and the fast path's maps
    /// still hold.
    pub fn pod(ip: Ipv4Addr) -> Self {
        Self::derived(0xfd, ip.octets())
    }

    /// The MAC of an IPv6-only pod's interface: derived from the last four bytes of its IPv6
    /// address, for the same reason (the configuration makes sure a node's pods differ there).
    pub fn pod6(ip: Ipv6Addr) -> Self {
        Self::derived(0xf9, last_four(ip))
    }

    /// The MAC of a pod with these addresses: from its IPv4 address ([`Mac::pod`]), or from its
    /// IPv6 one when it has none ([`Mac::pod6`]). None for a pod with no address.
    pub fn pod_of(v4: Option<Ipv4Addr>, v6: Option<Ipv6Addr>) -> Option<Self> {
        v4.map(Self::pod).or(v6.map(Self::pod6))
    }

    /// An IPv6-only node's bridge MAC, from the last four bytes of its IPv6 gateway address.
    pub fn node_bridge6(gateway: Ipv6Addr) -> Self {
        Self::derived(0xf8, last_four(gateway))
    }

    /// A node's bridge MAC: derived from its gateway address, fixed so that the pods' gateway
    /// MAC stays what the fast path's maps say (a bridge left to itself takes the lowest MAC of
    /// its ports, which changes as pods come and go).
    pub fn node_bridge(gateway: Ipv4Addr) -> Self {
        Self::derived(0xfb, gateway.octets())
    }

    /// A node's VXLAN MAC: derived from its underlay address so that peers can compute it
    /// without asking.
    pub fn vtep(underlay_ip: Ipv4Addr) -> Self {
        Self::derived(0xfa, underlay_ip.octets())
    }

    /// The bridge MAC of a standalone CNI network, fixed for the same reason as a node's: from
    /// the network's name, as the bridge is made before IPAM gives a gateway.
    pub fn cni_bridge(network: &str) -> Self {
        Self::derived(
            0xfc,
            crate::fnv::fnv1a(&[network]).to_be_bytes()[..4]
                .try_into()
                .unwrap(),
        )
    }

    /// Locally administered unicast (02), a byte that says what it belongs to (f8 IPv6-only node
    /// bridges, f9 IPv6-only pods, fa VXLAN devices, fb node bridges, fc standalone CNI bridges,
    /// fd pods), then four bytes of its seed.
    fn derived(kind: u8, [a, b, c, d]: [u8; 4]) -> Self {
        Self([0x02, kind, a, b, c, d])
    }
}

fn last_four(ip: Ipv6Addr) -> [u8; 4] {
    let [.., a, b, c, d] = ip.octets();
    [a, b, c, d]
}

impl TryFrom<&[u8]> for Mac {
    type Error = InvalidMac;

    /// A link-layer address as netlink carries it: six bytes, or it is no Ethernet MAC.
    fn try_from(bytes: &[u8]) -> Result<Self, InvalidMac> {
        bytes
            .try_into()
            .map(Self)
            .map_err(|_| InvalidMac(format!("{} bytes", bytes.len())))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Text that is not a MAC address; says what it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a MAC address (six hex bytes separated by ':')")]
pub struct InvalidMac(String);

impl FromStr for Mac {
    type Err = InvalidMac;

    fn from_str(text: &str) -> Result<Self, InvalidMac> {
        let invalid = || InvalidMac(text.to_string());
        let mut octets = [0u8; 6];
        let mut parts = text.split(':');
        for octet in &mut octets {
            let part = parts.next().ok_or_else(invalid)?;
            if part.is_empty() || part.len() > 2 {
                return Err(invalid());
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| invalid())?;
        }
        match parts.next() {
            Some(_) => Err(invalid()),
            None => Ok(Self(octets)),
        }
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_it_prints_and_nothing_else() {
        let mac = Mac([0x02, 0xfd, 0xc6, 0x12, 0x01, 0x0a]);
        assert_eq!(mac.to_string(), "02:fd:c6:12:01:0a");
        assert_eq!("02:fd:c6:12:01:0a".parse(), Ok(mac));
        assert_eq!("02:FD:C6:12:1:A".parse(), Ok(mac));
        for bad in [
            "",
            "02:fd:c6:12:01",
            "02:fd:c6:12:01:0a:00",
            "02:fd:c6:12:01:",
            "02:fd:c6:12:01:100",
            "02-fd-c6-12-01-0a",
            "02:fd:c6:12:01:0g",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
        let json = serde_json::to_string(&mac).unwrap();
        assert_eq!(json, "\"02:fd:c6:12:01:0a\"");
        assert_eq!(serde_json::from_str::<Mac>(&json).unwrap(), mac);
        assert!(serde_json::from_str::<Mac>("\"nope\"").is_err());
    }

    #[test]
    fn derived_macs_are_local_unicast_and_say_what_they_belong_to() {
        let ip = Ipv4Addr::new(198, 18, 1, 2);
        let pod = Mac::pod(ip);
        assert_eq!(pod.to_string(), "02:fd:c6:12:01:02");
        assert_eq!(pod.0[0] & 0x01, 0, "unicast");
        assert_eq!(pod.0[0] & 0x02, 0x02, "locally administered");
        assert_ne!(pod, Mac::pod(Ipv4Addr::new(198, 18, 1, 3)));
        assert_ne!(pod, Mac::node_bridge(ip), "not a bridge's");
        assert_eq!(Mac::node_bridge(ip).0[1], 0xfb);
        assert_eq!(Mac::vtep(ip).0[1], 0xfa);
        assert_eq!(Mac::cni_bridge("net").0[..2], [0x02, 0xfc]);
        assert_ne!(Mac::cni_bridge("net"), Mac::cni_bridge("other"));
    }
}
