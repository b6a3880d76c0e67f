//! A corpus of hostile frames: what a pod, or a host on the underlay, can send to reach another
//! pod as someone else, or to make a node hand another pod's traffic to it. Each case names the
//! reason the programs drop it under and, where there is one, its honest twin, which must still
//! get through. The decision tests run every case through the programs on made-up addresses
//! (BPF_PROG_TEST_RUN); the isolation tests send the same frames from a real pod or underlay host
//! and look at what the victim received.
//!
//! Grow it with every parser change: a new header the programs read is a new way to lie.

use std::{net::Ipv4Addr, time::Duration};

use control::traffic::UdpSink;
use datapath_common::reasons::*;

use crate::{
    frames::{
        self, ETH_ARP, ETH_IPV4, ETH_IPV6, ETH_QINQ, ETH_VLAN, IPPROTO_ICMPV6, Ipv4, link_local,
    },
    vxlan::{self, FLAG_I},
};

/// Hostile frames (several when they go together, like fragments) and what becomes of them.
pub struct Case {
    pub name: &'static str,
    pub frames: Vec<Vec<u8>>,
    /// The reason the program drops them under.
    pub reason: Reason,
    /// How many of `frames` it drops (the others it passes: later fragments, whose first fragment
    /// decides for them).
    pub dropped: u64,
    /// True when, let through, the frames would reach the victim's UDP socket: the isolation
    /// tests send these from a real pod or host. The others (ARP, neighbour discovery, frames the
    /// kernel drops anyway) have tests of their own.
    pub reaches_victim: bool,
    /// The same frames told honestly: they must get through (to the victim's socket when
    /// `reaches_victim`).
    pub twin: Option<Vec<Vec<u8>>>,
}

impl Case {
    fn new(name: &'static str, frames: Vec<Vec<u8>>, reason: Reason) -> Self {
        Self {
            name,
            dropped: frames.len() as u64,
            frames,
            reason,
            reaches_victim: true,
            twin: None,
        }
    }

    fn twin(mut self, twin: Vec<Vec<u8>>) -> Self {
        self.twin = Some(twin);
        self
    }

    fn not_to_victim(mut self) -> Self {
        self.reaches_victim = false;
        self
    }

    fn dropping(mut self, dropped: u64) -> Self {
        self.dropped = dropped;
        self
    }
}

/// A pod that attacks from its own veth, and the pod it attacks.
pub struct PodScene {
    pub attacker_mac: [u8; 6],
    pub attacker_ip: Ipv4Addr,
    /// Where frames for the victim go: its own MAC on the same node, the gateway's across nodes.
    pub next_hop_mac: [u8; 6],
    pub victim_ip: Ipv4Addr,
    /// The victim's MAC (same node) or any other pod's: the one the attacker pretends to be.
    pub victim_mac: [u8; 6],
    pub victim_port: u16,
    /// An address the attacker claims: another pod's.
    pub forged_ip: Ipv4Addr,
    pub gateway_mac: [u8; 6],
    pub gateway_ip: Ipv4Addr,
    /// The node's VXLAN device MAC, the overlay's VNI and port.
    pub vtep_mac: [u8; 6],
    pub vni: u32,
    pub vxlan_port: u16,
    /// The victim is on the attacker's node: a frame to the broadcast MAC still reaches it.
    pub same_node: bool,
}

const PAYLOAD: &[u8] = b"hostile?";
/// Extension header types (IPv6 next-header values).
const DEST_OPTIONS: u8 = 60;
const FRAGMENT: u8 = 44;
const ALL_NODES: [u8; 16] = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

impl PodScene {
    fn header(&self, src: Ipv4Addr) -> Ipv4 {
        Ipv4 {
            src: src.octets(),
            dst: self.victim_ip.octets(),
            ..Ipv4::default()
        }
    }

    /// UDP to the victim from `src`, under header `h` (its addresses set here).
    fn udp_to_victim(&self, src: Ipv4Addr, h: Ipv4) -> Vec<u8> {
        frames::ipv4_udp(
            self.next_hop_mac,
            self.attacker_mac,
            Ipv4 {
                src: src.octets(),
                dst: self.victim_ip.octets(),
                ..h
            },
            self.victim_port,
            PAYLOAD,
        )
    }

    fn plain(&self, src: Ipv4Addr) -> Vec<u8> {
        self.udp_to_victim(src, Ipv4::default())
    }

    fn with_options(&self, src: Ipv4Addr) -> Vec<u8> {
        self.udp_to_victim(
            src,
            Ipv4 {
                ihl: 6,
                ..Ipv4::default()
            },
        )
    }

    fn fragmented(&self, src: Ipv4Addr) -> Vec<Vec<u8>> {
        let l4 = frames::udp(40000, self.victim_port, &[0x5a; 24]);
        frames::fragments(
            Ipv4 {
                frags: 0,
                ..self.header(src)
            },
            &l4,
            16,
        )
        .map(|ip| frames::ethernet(self.next_hop_mac, self.attacker_mac, ETH_IPV4, &ip))
        .to_vec()
    }

    fn broadcast(&self, src: Ipv4Addr) -> Vec<u8> {
        let mut f = self.plain(src);
        f[..6].copy_from_slice(&[0xff; 6]);
        f
    }

    fn arp(&self, op: u16, sha: [u8; 6], spa: Ipv4Addr) -> Vec<u8> {
        frames::ethernet(
            self.victim_mac,
            self.attacker_mac,
            ETH_ARP,
            &frames::arp(op, sha, spa, self.victim_mac, self.victim_ip),
        )
    }

    fn own_link_local(&self) -> [u8; 16] {
        link_local(self.attacker_mac)
    }

    /// An ICMPv6 message of `kind` from `src` to the all-nodes group, behind the 8-byte extension
    /// headers `before` (their type, their bytes; the next-header fields are chained here).
    fn icmpv6(&self, src: [u8; 16], kind: u8, body: &[u8], before: &[(u8, [u8; 8])]) -> Vec<u8> {
        let mut payload = Vec::new();
        for (i, (_, header)) in before.iter().enumerate() {
            let mut h = *header;
            h[0] = before.get(i + 1).map_or(IPPROTO_ICMPV6, |(kind, _)| *kind);
            payload.extend_from_slice(&h);
        }
        payload.extend_from_slice(&frames::icmpv6(src, ALL_NODES, kind, body));
        let first = before.first().map_or(IPPROTO_ICMPV6, |(kind, _)| *kind);
        frames::ethernet(
            frames::ipv6_multicast_mac(ALL_NODES),
            self.attacker_mac,
            ETH_IPV6,
            &frames::ipv6(src, ALL_NODES, first, &payload),
        )
    }

    /// A router advertisement: router lifetime 1800 s, prefix 2001:db8:66::/64 for address
    /// autoconfiguration, the sender's link-layer address.
    fn router_advert(&self, before: &[(u8, [u8; 8])]) -> Vec<u8> {
        let mut body = vec![64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0];
        body.extend_from_slice(&[1, 1]);
        body.extend_from_slice(&self.attacker_mac);
        body.extend_from_slice(&[3, 4, 64, 0xc0]);
        body.extend_from_slice(&[0, 0, 0x70, 0x80, 0, 0, 0x70, 0x80, 0, 0, 0, 0]);
        body.extend_from_slice(&[
            0x20, 0x01, 0x0d, 0xb8, 0, 0x66, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ]);
        self.icmpv6(self.own_link_local(), 134, &body, before)
    }

    fn neighbour_advert(&self, target: [u8; 16], mac: [u8; 6]) -> Vec<u8> {
        // Override and solicited flags off, then the target, then a target link-layer option.
        let mut body = vec![0x20, 0, 0, 0];
        body.extend_from_slice(&target);
        body.extend_from_slice(&[2, 1]);
        body.extend_from_slice(&mac);
        self.icmpv6(self.own_link_local(), 136, &body, &[])
    }

    /// A neighbour solicitation from `src` for `target`, with a source link-layer address option
    /// when `mac` is given.
    fn neighbour_solicit(&self, src: [u8; 16], target: [u8; 16], mac: Option<[u8; 6]>) -> Vec<u8> {
        let mut body = vec![0, 0, 0, 0];
        body.extend_from_slice(&target);
        if let Some(mac) = mac {
            body.extend_from_slice(&[1, 1]);
            body.extend_from_slice(&mac);
        }
        self.icmpv6(src, 135, &body, &[])
    }

    fn echo_request(&self, src: [u8; 16]) -> Vec<u8> {
        self.icmpv6(src, 128, &[0, 1, 0, 1], &[])
    }
}

/// What a pod may try against the pod of `s`.
pub fn pod_cases(s: &PodScene) -> Vec<Case> {
    let (me, forged) = (s.attacker_ip, s.forged_ip);
    let one = |f: Vec<u8>| vec![f];
    let vxlan_inner = vxlan::inner_udp(
        (s.victim_mac, s.vtep_mac),
        forged,
        s.victim_ip,
        s.victim_port,
        PAYLOAD,
    );
    let vxlan_to_gateway = frames::ipv4_udp(
        s.gateway_mac,
        s.attacker_mac,
        Ipv4 {
            src: me.octets(),
            dst: s.gateway_ip.octets(),
            ..Ipv4::default()
        },
        s.vxlan_port,
        &[
            &[FLAG_I, 0, 0, 0][..],
            &(s.vni << 8).to_be_bytes(),
            &vxlan_inner,
        ]
        .concat(),
    );
    // Padding only; and a first fragment (offset 0, more to come).
    let dest_options = (DEST_OPTIONS, [0, 0, 1, 4, 0, 0, 0, 0]);
    let fragment_header = (FRAGMENT, [0, 0, 0, 1, 0, 0, 0, 7]);
    let too_many = [dest_options; 5];
    let victim = link_local(s.victim_mac);
    let mut zero_length_option =
        s.neighbour_solicit(s.own_link_local(), victim, Some(s.attacker_mac));
    let last = zero_length_option.len() - 7;
    zero_length_option[last] = 0;
    let mut cases = vec![
        Case::new("forged source", one(s.plain(forged)), DROP_SPOOFED_IP).twin(one(s.plain(me))),
        Case::new(
            "forged source, IP options",
            one(s.with_options(forged)),
            DROP_SPOOFED_IP,
        )
        .twin(one(s.with_options(me))),
        Case::new(
            "forged source, fragments",
            s.fragmented(forged),
            DROP_SPOOFED_IP,
        )
        .twin(s.fragmented(me)),
        Case::new(
            "forged source behind two VLAN priority tags",
            one(frames::tagged(
                &s.plain(forged),
                &[(ETH_VLAN, 0), (ETH_VLAN, 0)],
            )),
            DROP_POD_VLAN,
        )
        .twin(one(s.plain(me))),
        Case::new(
            "VLAN 7",
            one(frames::tagged(&s.plain(me), &[(ETH_VLAN, 7)])),
            DROP_POD_VLAN,
        )
        .twin(one(s.plain(me))),
        Case::new(
            "802.1ad and 802.1Q tags",
            one(frames::tagged(
                &s.plain(me),
                &[(ETH_QINQ, 0), (ETH_VLAN, 0)],
            )),
            DROP_POD_VLAN,
        ),
        Case::new(
            "forged MAC",
            one({
                let mut f = s.plain(me);
                f[6..12].copy_from_slice(&s.victim_mac);
                f
            }),
            DROP_SPOOFED_MAC,
        ),
        Case::new(
            "VXLAN to the gateway's overlay port, inner packet forged",
            one(vxlan_to_gateway),
            DROP_POD_VXLAN,
        ),
        Case::new(
            "IPv4 version 5",
            one(s.udp_to_victim(
                me,
                Ipv4 {
                    version: 5,
                    ..Ipv4::default()
                },
            )),
            DROP_POD_IPV4_MALFORMED,
        )
        .not_to_victim(),
        Case::new(
            "unknown ethertype",
            one(frames::ethernet(
                s.next_hop_mac,
                s.attacker_mac,
                0x88b5,
                &[0; 46],
            )),
            DROP_POD_OTHER_ETHERTYPE,
        )
        .not_to_victim(),
        Case::new(
            "802.3 length field",
            one(frames::ethernet(
                s.next_hop_mac,
                s.attacker_mac,
                46,
                &[0x42; 46],
            )),
            DROP_POD_OTHER_ETHERTYPE,
        )
        .not_to_victim(),
        Case::new(
            "ARP reply claiming the gateway's address",
            one(s.arp(2, s.attacker_mac, s.gateway_ip)),
            DROP_ARP_SPOOFED,
        )
        .not_to_victim()
        .twin(one(s.arp(2, s.attacker_mac, me))),
        Case::new(
            "gratuitous ARP for the victim's address",
            one(s.arp(1, s.attacker_mac, s.victim_ip)),
            DROP_ARP_SPOOFED,
        )
        .not_to_victim()
        .twin(one(s.arp(1, s.attacker_mac, Ipv4Addr::UNSPECIFIED))),
        Case::new(
            "ARP with another sender MAC",
            one(s.arp(2, s.gateway_mac, me)),
            DROP_ARP_SPOOFED,
        )
        .not_to_victim(),
        Case::new(
            "ARP reply from 0.0.0.0",
            one(s.arp(2, s.attacker_mac, Ipv4Addr::UNSPECIFIED)),
            DROP_ARP_SPOOFED,
        )
        .not_to_victim(),
        Case::new(
            "ARP for another protocol",
            one({
                let mut f = s.arp(2, s.attacker_mac, me);
                f[16..18].copy_from_slice(&0x86ddu16.to_be_bytes());
                f
            }),
            DROP_ARP_MALFORMED,
        )
        .not_to_victim(),
        Case::new(
            "ARP cut short",
            one(s.arp(2, s.attacker_mac, me)[..14 + 20].to_vec()),
            DROP_ARP_MALFORMED,
        )
        .not_to_victim(),
        Case::new(
            "router advertisement",
            one(s.router_advert(&[])),
            DROP_ND_ROUTER_ADVERT,
        )
        .not_to_victim()
        .twin(one(s.echo_request(s.own_link_local()))),
        Case::new(
            "router advertisement behind a destination options header",
            one(s.router_advert(&[dest_options])),
            DROP_ND_ROUTER_ADVERT,
        )
        .not_to_victim(),
        Case::new(
            "router advertisement in a first fragment",
            one(s.router_advert(&[fragment_header])),
            DROP_ND_ROUTER_ADVERT,
        )
        .not_to_victim(),
        Case::new(
            "redirect",
            one(s.icmpv6(s.own_link_local(), 137, &[0; 36], &[])),
            DROP_ND_REDIRECT,
        )
        .not_to_victim(),
        Case::new(
            "neighbour advertisement for the victim's address",
            one(s.neighbour_advert(link_local(s.victim_mac), s.attacker_mac)),
            DROP_ND_SPOOFED,
        )
        .not_to_victim()
        .twin(one(s.neighbour_advert(s.own_link_local(), s.attacker_mac))),
        Case::new(
            "neighbour advertisement with another MAC",
            one(s.neighbour_advert(s.own_link_local(), s.victim_mac)),
            DROP_ND_SPOOFED,
        )
        .not_to_victim(),
        Case::new(
            "neighbour solicitation with another MAC",
            one(s.neighbour_solicit(s.own_link_local(), victim, Some(s.gateway_mac))),
            DROP_ND_SPOOFED,
        )
        .not_to_victim()
        .twin(vec![
            s.neighbour_solicit(s.own_link_local(), victim, Some(s.attacker_mac)),
            s.neighbour_solicit([0; 16], s.own_link_local(), None),
        ]),
        Case::new(
            "duplicate address detection for the victim's address",
            one(s.neighbour_solicit([0; 16], victim, None)),
            DROP_ND_SPOOFED,
        )
        .not_to_victim(),
        Case::new(
            "IPv6 from the victim's link-local address",
            one(s.echo_request(link_local(s.victim_mac))),
            DROP_SPOOFED_IPV6,
        )
        .not_to_victim(),
        Case::new(
            "IPv6 from an address the pod was not given",
            one(s.echo_request([
                0x20, 0x01, 0x0d, 0xb8, 0, 0x66, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
            ])),
            DROP_SPOOFED_IPV6,
        )
        .not_to_victim(),
        Case::new(
            "IPv6 from the unspecified address, not neighbour discovery",
            one(s.echo_request([0; 16])),
            DROP_SPOOFED_IPV6,
        )
        .not_to_victim(),
        Case::new(
            "more extension headers than the program follows",
            one(s.icmpv6(s.own_link_local(), 128, &[0, 1, 0, 1], &too_many)),
            DROP_POD_IPV6_MALFORMED,
        )
        .not_to_victim(),
        Case::new(
            "neighbour discovery option of length zero",
            one(zero_length_option),
            DROP_POD_IPV6_MALFORMED,
        )
        .not_to_victim(),
    ];
    if s.same_node {
        // Across nodes the kernel does not route a frame that was not addressed to it.
        cases.push(
            Case::new(
                "forged source to the broadcast MAC",
                one(s.broadcast(forged)),
                DROP_SPOOFED_IP,
            )
            .twin(one(s.broadcast(me))),
        );
    }
    cases
}

/// A node's underlay device and the hosts around it: a peer node, and an underlay host that
/// attacks it (with the peer's address or its own).
pub struct UnderlayScene {
    pub peer_ip: Ipv4Addr,
    pub peer_mac: [u8; 6],
    pub peer_vtep_mac: [u8; 6],
    /// A pod of the peer: an inner source the peer may use.
    pub peer_pod: Ipv4Addr,
    pub node_ip: Ipv4Addr,
    pub node_mac: [u8; 6],
    pub node_vtep_mac: [u8; 6],
    /// The node's pods' gateway: an address of the node itself.
    pub gateway_ip: Ipv4Addr,
    /// An underlay address that is no peer's.
    pub stranger_ip: Ipv4Addr,
    /// A pod address that is not the peer's (the victim's neighbour, say).
    pub forged_pod: Ipv4Addr,
    pub victim_ip: Ipv4Addr,
    pub victim_port: u16,
    pub vni: u32,
    pub vxlan_port: u16,
}

impl UnderlayScene {
    fn outer(&self, src: Ipv4Addr) -> vxlan::Outer {
        vxlan::Outer {
            src_mac: self.peer_mac,
            dst_mac: self.node_mac,
            src,
            dst: self.node_ip,
            port: self.vxlan_port,
        }
    }

    /// UDP from `src` to the victim, as the peer's VXLAN device frames it.
    fn inner(&self, src: Ipv4Addr) -> Vec<u8> {
        self.inner_with(src, PAYLOAD)
    }

    fn inner_with(&self, src: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
        vxlan::inner_udp(
            (self.peer_vtep_mac, self.node_vtep_mac),
            src,
            self.victim_ip,
            self.victim_port,
            payload,
        )
    }

    fn vxlan(&self, outer_src: Ipv4Addr, inner: &[u8]) -> Vec<u8> {
        vxlan::frame(&self.outer(outer_src), FLAG_I, self.vni, inner)
    }

    /// The VXLAN packet carrying `inner`, as two outer fragments.
    fn outer_fragments(&self, inner: &[u8]) -> Vec<Vec<u8>> {
        let whole = self.vxlan(self.peer_ip, inner);
        let h = Ipv4 {
            src: self.peer_ip.octets(),
            dst: self.node_ip.octets(),
            frags: 0,
            ..Ipv4::default()
        };
        let first = (whole.len() - 34 - 8) / 8 * 8;
        frames::fragments(h, &whole[34..], first)
            .map(|ip| frames::ethernet(self.node_mac, self.peer_mac, ETH_IPV4, &ip))
            .to_vec()
    }

    /// The inner frame's datagram as two inner fragments.
    fn inner_fragments(&self, src: Ipv4Addr) -> Vec<Vec<u8>> {
        let l4 = frames::udp(40000, self.victim_port, &[0x5a; 24]);
        let h = Ipv4 {
            src: src.octets(),
            dst: self.victim_ip.octets(),
            frags: 0,
            ..Ipv4::default()
        };
        frames::fragments(h, &l4, 16)
            .map(|ip| {
                let inner = frames::ethernet(self.node_vtep_mac, self.peer_vtep_mac, ETH_IPV4, &ip);
                self.vxlan(self.peer_ip, &inner)
            })
            .to_vec()
    }

    fn plain(&self, src: Ipv4Addr) -> Vec<u8> {
        frames::ipv4_udp(
            self.node_mac,
            self.peer_mac,
            Ipv4 {
                src: src.octets(),
                dst: self.victim_ip.octets(),
                ..Ipv4::default()
            },
            self.victim_port,
            PAYLOAD,
        )
    }
}

/// What an underlay host may try against the node of `s` and its pod.
pub fn underlay_cases(s: &UnderlayScene) -> Vec<Case> {
    let one = |f: Vec<u8>| vec![f];
    let honest = s.vxlan(s.peer_ip, &s.inner(s.peer_pod));
    let from_stranger = s.vxlan(s.stranger_ip, &s.inner(s.peer_pod));
    let forged_inner = s.inner(s.forged_pod);
    let with_outer_dst = |dst_mac: [u8; 6], dst: Ipv4Addr| {
        let mut outer = s.outer(s.peer_ip);
        outer.dst_mac = dst_mac;
        outer.dst = dst;
        vxlan::frame(&outer, FLAG_I, s.vni, &s.inner(s.peer_pod))
    };
    let nested_inner = {
        let innermost = s.inner(s.forged_pod);
        let vxlan_payload = [
            &[FLAG_I, 0, 0, 0][..],
            &(s.vni << 8).to_be_bytes(),
            &innermost,
        ]
        .concat();
        frames::ethernet(
            s.node_vtep_mac,
            s.peer_vtep_mac,
            ETH_IPV4,
            &frames::ipv4(
                Ipv4 {
                    src: s.peer_pod.octets(),
                    dst: s.gateway_ip.octets(),
                    ..Ipv4::default()
                },
                &frames::udp(40000, s.vxlan_port, &vxlan_payload),
            ),
        )
    };
    vec![
        Case::new(
            "VXLAN from an address that is no peer",
            one(from_stranger.clone()),
            DROP_UNKNOWN_PEER,
        )
        .twin(one(honest.clone())),
        Case::new(
            "VXLAN from no peer behind two VLAN priority tags",
            one(frames::tagged(
                &from_stranger,
                &[(ETH_VLAN, 0), (ETH_VLAN, 0)],
            )),
            DROP_VXLAN_VLAN,
        )
        .twin(one(honest.clone())),
        Case::new(
            "VXLAN from no peer behind 802.1ad and 802.1Q priority tags",
            one(frames::tagged(
                &from_stranger,
                &[(ETH_QINQ, 0), (ETH_VLAN, 0)],
            )),
            DROP_VXLAN_VLAN,
        ),
        Case::new(
            "VXLAN from no peer behind four VLAN priority tags",
            one(frames::tagged(&from_stranger, &[(ETH_VLAN, 0); 4])),
            DROP_UNDERLAY_VLAN_DEPTH,
        )
        .twin(one(honest.clone())),
        Case::new(
            "VXLAN to another host's address",
            one(with_outer_dst(s.node_mac, Ipv4Addr::new(198, 18, 0, 77))),
            DROP_VXLAN_NOT_FOR_NODE,
        ),
        Case::new(
            "VXLAN to the broadcast MAC",
            one(with_outer_dst([0xff; 6], s.node_ip)),
            DROP_VXLAN_NOT_FOR_NODE,
        ),
        Case::new(
            "VXLAN to a multicast group",
            one(with_outer_dst(
                [0x01, 0x00, 0x5e, 0x01, 0x01, 0x01],
                Ipv4Addr::new(239, 1, 1, 1),
            )),
            DROP_VXLAN_NOT_FOR_NODE,
        ),
        Case::new(
            "VXLAN to another host's MAC",
            one(with_outer_dst([0x02, 0xfa, 0x57, 0, 0, 0x77], s.node_ip)),
            DROP_VXLAN_NOT_FOR_NODE,
        ),
        Case::new(
            "outer IP options, inner source forged",
            one(frames::with_ipv4_header(
                &s.vxlan(s.peer_ip, &forged_inner),
                |h| Ipv4 { ihl: 6, ..h },
            )),
            DROP_VXLAN_OUTER_OPTIONS,
        ),
        Case::new(
            "inner IP options, inner source forged",
            one(s.vxlan(
                s.peer_ip,
                &frames::with_ipv4_header(&forged_inner, |h| Ipv4 { ihl: 6, ..h }),
            )),
            DROP_INNER_SPOOFED,
        )
        .twin(one(s.vxlan(
            s.peer_ip,
            &frames::with_ipv4_header(&s.inner(s.peer_pod), |h| Ipv4 { ihl: 6, ..h }),
        ))),
        Case::new(
            "inner fragments, inner source forged",
            s.inner_fragments(s.forged_pod),
            DROP_INNER_SPOOFED,
        )
        .twin(s.inner_fragments(s.peer_pod)),
        // Long enough that the first fragment holds every inner header, as a real one does.
        Case::new(
            "outer fragments, inner source forged",
            s.outer_fragments(&s.inner_with(s.forged_pod, &[0x5a; 64])),
            DROP_INNER_SPOOFED,
        )
        .dropping(1)
        .twin(s.outer_fragments(&s.inner_with(s.peer_pod, &[0x5a; 64]))),
        Case::new(
            "inner ARP",
            one(s.vxlan(
                s.peer_ip,
                &frames::ethernet(
                    s.node_vtep_mac,
                    s.peer_vtep_mac,
                    ETH_ARP,
                    &frames::arp(2, s.peer_vtep_mac, s.forged_pod, [0; 6], s.victim_ip),
                ),
            )),
            DROP_VXLAN_INNER_NOT_IP,
        )
        .not_to_victim(),
        Case::new(
            "inner IPv4 version 5",
            one(s.vxlan(
                s.peer_ip,
                &frames::with_ipv4_header(&s.inner(s.peer_pod), |h| Ipv4 { version: 5, ..h }),
            )),
            DROP_VXLAN_INNER_MALFORMED,
        )
        .not_to_victim(),
        Case::new(
            "inner frame to the broadcast MAC",
            one(s.vxlan(s.peer_ip, &{
                let mut f = s.inner(s.peer_pod);
                f[..6].copy_from_slice(&[0xff; 6]);
                f
            })),
            DROP_VXLAN_NOT_FOR_VTEP,
        ),
        Case::new(
            "VXLAN in VXLAN to the node's own overlay port",
            one(s.vxlan(s.peer_ip, &nested_inner)),
            DROP_VXLAN_NESTED,
        ),
        Case::new(
            "a pod's address outside VXLAN",
            one(s.plain(s.peer_pod)),
            DROP_UNDERLAY_POD_SOURCE,
        )
        .twin(one(s.plain(s.stranger_ip))),
    ]
}

/// Sends `case`'s frames with `send`; asserts that the victim's socket got nothing and that
/// `count` moved by what the case drops; then sends its twin and asserts that it arrives.
pub fn attack(case: &Case, sink: &UdpSink, send: &dyn Fn(&[u8]), count: &dyn Fn() -> u64) {
    /// How long a frame gets to arrive where it should not.
    const SETTLE: Duration = Duration::from_millis(250);
    let (received, before) = (sink.received(), count());
    for frame in &case.frames {
        send(frame);
    }
    std::thread::sleep(SETTLE);
    assert_eq!(
        sink.received(),
        received,
        "'{}' reached the victim",
        case.name
    );
    assert_eq!(
        count() - before,
        case.dropped,
        "'{}': counted under {}",
        case.name,
        case.reason
    );
    if let Some(twin) = &case.twin {
        for frame in twin {
            send(frame);
        }
        assert_eq!(
            sink.wait_for(received + 1, Duration::from_secs(3)),
            received + 1,
            "the honest twin of '{}' arrives",
            case.name
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_drops_at_least_one_frame_under_a_drop_reason() {
        let mac = |n| [0x02, 0xfa, 0x57, 0, 0, n];
        let ip = |n| Ipv4Addr::new(198, 18, 1, n);
        let pod = PodScene {
            attacker_mac: mac(1),
            attacker_ip: ip(2),
            next_hop_mac: mac(2),
            victim_ip: ip(3),
            victim_mac: mac(2),
            victim_port: 9,
            forged_ip: ip(4),
            gateway_mac: mac(3),
            gateway_ip: ip(1),
            vtep_mac: mac(4),
            vni: 42,
            vxlan_port: 4789,
            same_node: true,
        };
        let underlay = UnderlayScene {
            peer_ip: ip(10),
            peer_mac: mac(10),
            peer_vtep_mac: mac(11),
            peer_pod: ip(12),
            node_ip: ip(20),
            node_mac: mac(20),
            node_vtep_mac: mac(21),
            gateway_ip: ip(1),
            stranger_ip: ip(99),
            forged_pod: ip(3),
            victim_ip: ip(3),
            victim_port: 9,
            vni: 42,
            vxlan_port: 4789,
        };
        let cases: Vec<Case> = pod_cases(&pod)
            .into_iter()
            .chain(underlay_cases(&underlay))
            .collect();
        // Every reason isolation added (from pod-vlan on) has a hostile frame of its own.
        for info in REASONS
            .iter()
            .filter(|r| r.id >= DROP_POD_VLAN && r.verdict == Verdict::Drop)
        {
            assert!(
                cases.iter().any(|c| c.reason == info.id),
                "no hostile frame is dropped under {}",
                info.name
            );
        }
        for case in cases {
            let info = case.reason.info().unwrap();
            assert_eq!(info.verdict, Verdict::Drop, "{}", case.name);
            assert!(
                case.dropped >= 1 && case.dropped <= case.frames.len() as u64,
                "{}",
                case.name
            );
        }
    }
}
