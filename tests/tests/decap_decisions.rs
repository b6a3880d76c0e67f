//! Every decision of the underlay program (`tc_underlay`) on crafted packets (BPF_PROG_TEST_RUN):
//! the verdict, the reason counted, and for a decapsulated packet the frame it hands the pod; and
//! every hostile frame of the corpus (`tests::hostile`) an underlay host can send, dropped under
//! its reason, with its honest twin let through. Frames arrive on a veth of the test's own
//! (`rx0`), which stands for the underlay device: the kernel types them host, broadcast or other
//! host by its MAC.

use std::net::Ipv4Addr;

use control::{
    datapath::{self, Datapath, EndpointEntry, Hook, OverlaySettings, Owner, PeerEntry},
    mac::Mac,
};
use datapath_common::reasons::*;
use tests::{
    TestRunNetns,
    frames::{self, ETH_ARP, Ipv4, PEER_MAC, checksum},
    hostile::{self, UnderlayScene},
    runtime,
    vxlan::{self, FLAG_I},
};

const GW_MAC: [u8; 6] = [0x02, 0xfa, 0x57, 0x00, 0x00, 0xfe];
const OTHER_MAC: [u8; 6] = [0x02, 0xfa, 0x57, 0x00, 0x00, 0x77];
const PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SELF: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const STRANGER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 99);
const REMOTE_POD: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
const LOCAL_POD: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 2);
const GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
const VNI: u32 = 42;
const PORT: u16 = 4789;

const PASS: u32 = 0; // TC_ACT_OK
const DROP: u32 = 2; // TC_ACT_SHOT
const REDIRECT: u32 = 7; // TC_ACT_REDIRECT

fn outer(src: Ipv4Addr, node_mac: [u8; 6]) -> vxlan::Outer {
    vxlan::Outer {
        src_mac: OTHER_MAC,
        dst_mac: node_mac,
        src,
        dst: SELF,
        port: PORT,
    }
}

/// A UDP datagram from a pod behind PEER to LOCAL_POD, as PEER's VXLAN device frames it.
fn inner(src: Ipv4Addr, dst_mac: [u8; 6], ttl: u8) -> Vec<u8> {
    let mut f = vxlan::inner_udp((Mac::vtep(PEER).0, dst_mac), src, LOCAL_POD, 9, b"payload");
    f[14 + 8] = ttl;
    f[14 + 10..14 + 12].copy_from_slice(&[0, 0]);
    let sum = checksum(&f[14..34]);
    f[14 + 10..14 + 12].copy_from_slice(&sum.to_be_bytes());
    f
}

fn good_inner() -> Vec<u8> {
    inner(REMOTE_POD, Mac::vtep(SELF).0, 64)
}

/// The outer IPv4 header replaced by `h` (its addresses and flags), MACs, UDP and the rest kept.
fn with_outer_ip(frame: &[u8], h: Ipv4) -> Vec<u8> {
    frames::with_ipv4_header(frame, |_| h)
}

fn outer_ip(src: Ipv4Addr) -> Ipv4 {
    Ipv4 {
        src: src.octets(),
        dst: SELF.octets(),
        ..Ipv4::default()
    }
}

#[test]
fn every_underlay_decision() {
    let rt = runtime();
    let TestRunNetns { ns, rx_index } = TestRunNetns::new(&rt, "decap");
    let _inside = ns.netns().enter().unwrap();

    let node_mac = tests::mac_of(&rt, ns.netns(), "rx0");
    let outer = |src| outer(src, node_mac);
    let mut dp = Datapath::load(None).unwrap();
    let overlay = OverlaySettings {
        vtep_mac: Mac::vtep(SELF),
        vni: VNI,
        port: PORT,
        underlay_ifindex: 1,
        underlay_ip: SELF,
        underlay_mtu: 1500,
    };
    dp.maps_mut()
        .set_node(Mac(GW_MAC), Some(GATEWAY), None, Some(&overlay))
        .unwrap();
    let peers = [PeerEntry {
        pod_cidr: Some("198.18.1.0/24".parse().unwrap()),
        pod_cidr6: None,
        underlay_ip: PEER,
        vtep_mac: Mac::vtep(PEER),
    }];
    assert_eq!(
        dp.maps_mut().sync_peers(&peers).unwrap(),
        2,
        "one CIDR, one peer"
    );
    assert_eq!(
        dp.maps_mut().sync_peers(&peers).unwrap(),
        0,
        "a second sync changes nothing"
    );
    let pod = EndpointEntry {
        ip: Some(LOCAL_POD),
        ip6: None,
        ifindex: rx_index,
        mac: Mac(PEER_MAC),
    };
    dp.maps_mut()
        .sync_endpoints(ns.netns(), Owner::node(ns.netns().label()), &[pod], None)
        .unwrap();

    let good = vxlan::frame(&outer(PEER), FLAG_I, VNI, &good_inner());
    let mut reserved = good.clone();
    reserved[49] = 1; // the byte after the VNI
    let mut short_vxlan = good[..34 + 8 + 4].to_vec(); // UDP header and half a VXLAN header
    let udp_len = (8 + 4u16).to_be_bytes();
    short_vxlan[38..40].copy_from_slice(&udp_len);
    let short_vxlan = with_outer_ip(&short_vxlan, outer_ip(PEER));
    let first_fragment = |src| {
        with_outer_ip(
            &good,
            Ipv4 {
                frags: 0x2000,
                ..outer_ip(src)
            },
        )
    };
    let cases: Vec<(Reason, Vec<u8>, u32)> = vec![
        (
            PASS_NOT_OVERLAY,
            frames::ethernet(node_mac, OTHER_MAC, ETH_ARP, &[0; 28]),
            PASS,
        ),
        (
            PASS_NOT_OVERLAY,
            with_outer_ip(
                &vxlan::frame(
                    &vxlan::Outer {
                        port: 53,
                        ..outer(STRANGER)
                    },
                    FLAG_I,
                    VNI,
                    &good_inner(),
                ),
                outer_ip(STRANGER),
            ),
            PASS,
        ),
        // A later fragment: its first one decides.
        (
            PASS_NOT_OVERLAY,
            with_outer_ip(
                &good,
                Ipv4 {
                    frags: 0x0004,
                    ..outer_ip(STRANGER)
                },
            ),
            PASS,
        ),
        (
            PASS_OTHER_VNI,
            vxlan::frame(&outer(PEER), FLAG_I, VNI + 1, &good_inner()),
            PASS,
        ),
        (
            DROP_UNKNOWN_PEER,
            vxlan::frame(&outer(STRANGER), FLAG_I, VNI, &good_inner()),
            DROP,
        ),
        (DROP_UNKNOWN_PEER, first_fragment(STRANGER), DROP),
        (PASS_OVERLAY_FRAGMENT, first_fragment(PEER), PASS),
        (DROP_VXLAN_TRUNCATED, short_vxlan, DROP),
        (
            DROP_VXLAN_TRUNCATED,
            vxlan::frame(&outer(PEER), FLAG_I, VNI, &good_inner()[..14 + 10]),
            DROP,
        ),
        (
            DROP_VXLAN_BAD_FLAGS,
            vxlan::frame(&outer(PEER), 0x0c, VNI, &good_inner()),
            DROP,
        ),
        (
            DROP_VXLAN_BAD_FLAGS,
            vxlan::frame(&outer(PEER), 0, VNI, &good_inner()),
            DROP,
        ),
        (DROP_VXLAN_BAD_FLAGS, reserved, DROP),
        (
            DROP_VXLAN_OUTER_OPTIONS,
            with_outer_ip(
                &good,
                Ipv4 {
                    ihl: 6,
                    ..outer_ip(PEER)
                },
            ),
            DROP,
        ),
        (
            DROP_VXLAN_NOT_FOR_VTEP,
            vxlan::frame(&outer(PEER), FLAG_I, VNI, &inner(REMOTE_POD, OTHER_MAC, 64)),
            DROP,
        ),
        (
            DROP_INNER_SPOOFED,
            vxlan::frame(
                &outer(PEER),
                FLAG_I,
                VNI,
                &inner(Ipv4Addr::new(198, 18, 3, 3), Mac::vtep(SELF).0, 64),
            ),
            DROP,
        ),
        (
            PASS_TTL_EXPIRED,
            vxlan::frame(
                &outer(PEER),
                FLAG_I,
                VNI,
                &inner(REMOTE_POD, Mac::vtep(SELF).0, 1),
            ),
            PASS,
        ),
        (REDIRECT_DECAPSULATED, good.clone(), REDIRECT),
    ];

    for (reason, frame, want) in &cases {
        let before = datapath::packets(&dp.maps().counters().unwrap(), Hook::TcUnderlay, *reason);
        let (verdict, out) = dp
            .run_on_frame_from(Hook::TcUnderlay, frame, rx_index)
            .unwrap();
        assert_eq!(verdict, *want, "{reason}: verdict");
        let after = datapath::packets(&dp.maps().counters().unwrap(), Hook::TcUnderlay, *reason);
        assert_eq!(after, before + 1, "{reason}: counted once");
        if verdict == PASS {
            assert_eq!(&out, frame, "{reason}: passed unchanged");
        }
    }

    // What the pod gets: the inner frame, addressed as routing to the pod would address it.
    let (_, out) = dp
        .run_on_frame_from(Hook::TcUnderlay, &good, rx_index)
        .unwrap();
    let expected_len = good.len() - 50;
    assert_eq!(out.len(), expected_len, "outer 50 bytes removed");
    assert_eq!(out[..6], PEER_MAC, "to the pod's MAC");
    assert_eq!(out[6..12], GW_MAC, "from the gateway's MAC");
    assert_eq!(out[14 + 8], 63, "TTL one less");
    assert_eq!(
        checksum(&out[14..34]),
        0,
        "IPv4 header checksum still verifies"
    );
    assert_eq!(
        out[34..],
        good_inner()[34..],
        "UDP header and payload untouched"
    );

    hostile_frames_are_dropped(&mut dp, node_mac, rx_index);
}

/// The underlay-side corpus, arriving on rx0 (the node's underlay).
fn hostile_frames_are_dropped(dp: &mut Datapath, node_mac: [u8; 6], rx_index: u32) {
    let scene = UnderlayScene {
        peer_ip: PEER,
        peer_mac: OTHER_MAC,
        peer_vtep_mac: Mac::vtep(PEER).0,
        peer_pod: REMOTE_POD,
        node_ip: SELF,
        node_mac,
        node_vtep_mac: Mac::vtep(SELF).0,
        gateway_ip: GATEWAY,
        stranger_ip: STRANGER,
        forged_pod: Ipv4Addr::new(198, 18, 2, 3),
        victim_ip: LOCAL_POD,
        victim_port: 9,
        vni: VNI,
        vxlan_port: PORT,
    };
    for case in hostile::underlay_cases(&scene) {
        let name = case.reason;
        let count = |dp: &Datapath| {
            datapath::packets(&dp.maps().counters().unwrap(), Hook::TcUnderlay, name)
        };
        let before = count(dp);
        let mut drops = 0;
        for frame in &case.frames {
            let (verdict, _) = dp
                .run_on_frame_from(Hook::TcUnderlay, frame, rx_index)
                .unwrap_or_else(|e| panic!("{}: {}", case.name, control::error::chain(&e)));
            drops += u64::from(verdict == DROP);
        }
        assert_eq!(drops, case.dropped, "{}: dropped", case.name);
        assert_eq!(
            count(dp) - before,
            case.dropped,
            "{}: counted under {name}",
            case.name
        );
        for frame in case.twin.iter().flatten() {
            let (verdict, _) = dp
                .run_on_frame_from(Hook::TcUnderlay, frame, rx_index)
                .unwrap();
            assert_ne!(
                verdict, DROP,
                "the honest twin of '{}' is let through",
                case.name
            );
        }
    }
}

const REMOTE_POD6: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
const LOCAL_POD6: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2);
const GATEWAY6: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1);

/// An IPv6 packet from `src` to `dst` with `next` and `payload`, hop limit `hop_limit`, framed
/// as PEER's VXLAN device frames it (inner MACs: PEER's VTEP to ours).
fn inner6(
    src: std::net::Ipv6Addr,
    dst: std::net::Ipv6Addr,
    next: u8,
    payload: &[u8],
    hop_limit: u8,
) -> Vec<u8> {
    let mut ip = frames::ipv6(src.octets(), dst.octets(), next, payload);
    ip[7] = hop_limit;
    frames::ethernet(Mac::vtep(SELF).0, Mac::vtep(PEER).0, frames::ETH_IPV6, &ip)
}

/// Every decision on VXLAN with IPv6 inside, and on plain IPv6 on the underlay.
#[test]
fn every_ipv6_underlay_decision() {
    let rt = runtime();
    let TestRunNetns { ns, rx_index } = TestRunNetns::new(&rt, "decap6");
    let _inside = ns.netns().enter().unwrap();
    let node_mac = tests::mac_of(&rt, ns.netns(), "rx0");
    let outer = |src| outer(src, node_mac);
    let mut dp = Datapath::load(None).unwrap();
    let overlay = OverlaySettings {
        vtep_mac: Mac::vtep(SELF),
        vni: VNI,
        port: PORT,
        underlay_ifindex: 1,
        underlay_ip: SELF,
        underlay_mtu: 1500,
    };
    dp.maps_mut()
        .set_node(Mac(GW_MAC), Some(GATEWAY), Some(GATEWAY6), Some(&overlay))
        .unwrap();
    let peers = [PeerEntry {
        pod_cidr: Some("198.18.1.0/24".parse().unwrap()),
        pod_cidr6: Some("2001:db8:1::/64".parse().unwrap()),
        underlay_ip: PEER,
        vtep_mac: Mac::vtep(PEER),
    }];
    assert_eq!(
        dp.maps_mut().sync_peers(&peers).unwrap(),
        3,
        "two prefixes, one peer"
    );
    let pod = EndpointEntry {
        ip: Some(LOCAL_POD),
        ip6: Some(LOCAL_POD6),
        ifindex: rx_index,
        mac: Mac(PEER_MAC),
    };
    dp.maps_mut()
        .sync_endpoints(ns.netns(), Owner::node(ns.netns().label()), &[pod], None)
        .unwrap();

    let udp = |src| vxlan::udp_segment(src, LOCAL_POD6.into(), 9, b"payload");
    let good_inner = inner6(REMOTE_POD6, LOCAL_POD6, 17, &udp(REMOTE_POD6.into()), 64);
    let in_vxlan = |inner: &[u8]| vxlan::frame(&outer(PEER), FLAG_I, VNI, inner);
    let good = in_vxlan(&good_inner);
    let forged = std::net::Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 3);
    let first_fragment = with_outer_ip(
        &good,
        Ipv4 {
            frags: 0x2000,
            ..outer_ip(PEER)
        },
    );
    let mut version5 = good_inner.clone();
    version5[14] = 0x50;
    // Plain IPv6 (no VXLAN) on the underlay, from `src`.
    let plain = |src: std::net::Ipv6Addr| {
        let ip = frames::ipv6(src.octets(), LOCAL_POD6.octets(), 17, &udp(src.into()));
        frames::ethernet(node_mac, OTHER_MAC, frames::ETH_IPV6, &ip)
    };
    let hop_by_hop = [
        [17, 0, 1, 4, 0, 0, 0, 0].as_slice(),
        &udp(REMOTE_POD6.into()),
    ]
    .concat();
    let fragment_header = [
        [17, 0, 0, 1, 0, 0, 0, 7].as_slice(),
        &udp(REMOTE_POD6.into()),
    ]
    .concat();
    let cases: Vec<(Reason, Vec<u8>, u32)> = vec![
        (
            DROP_INNER_SPOOFED,
            in_vxlan(&inner6(forged, LOCAL_POD6, 17, &udp(forged.into()), 64)),
            DROP,
        ),
        (
            DROP_INNER_SPOOFED,
            in_vxlan(&inner6(
                LOCAL_POD6,
                LOCAL_POD6,
                17,
                &udp(LOCAL_POD6.into()),
                64,
            )),
            DROP,
        ),
        (PASS_OVERLAY_FRAGMENT, first_fragment, PASS),
        (
            PASS_IPV6_FRAGMENT,
            in_vxlan(&inner6(REMOTE_POD6, LOCAL_POD6, 44, &fragment_header, 64)),
            PASS,
        ),
        (
            PASS_IPV6_EXTENSION,
            in_vxlan(&inner6(REMOTE_POD6, LOCAL_POD6, 0, &hop_by_hop, 64)),
            PASS,
        ),
        (
            PASS_NO_ENDPOINT,
            in_vxlan(&inner6(
                REMOTE_POD6,
                GATEWAY6,
                17,
                &udp(REMOTE_POD6.into()),
                64,
            )),
            PASS,
        ),
        (
            PASS_TTL_EXPIRED,
            in_vxlan(&inner6(
                REMOTE_POD6,
                LOCAL_POD6,
                17,
                &udp(REMOTE_POD6.into()),
                1,
            )),
            PASS,
        ),
        (DROP_VXLAN_INNER_MALFORMED, in_vxlan(&version5), DROP),
        (DROP_UNDERLAY_POD_SOURCE, plain(LOCAL_POD6), DROP),
        (DROP_UNDERLAY_POD_SOURCE, plain(REMOTE_POD6), DROP),
        (DROP_UNDERLAY_POD_SOURCE, plain(GATEWAY6), DROP),
        (
            DROP_UNDERLAY_POD_SOURCE,
            frames::tagged(&plain(REMOTE_POD6), &[(0x8100, 0), (0x8100, 0)]),
            DROP,
        ),
        (PASS_NOT_OVERLAY, plain(forged), PASS),
        (REDIRECT_DECAPSULATED, good.clone(), REDIRECT),
    ];
    for (reason, frame, want) in &cases {
        let before = datapath::packets(&dp.maps().counters().unwrap(), Hook::TcUnderlay, *reason);
        let (verdict, out) = dp
            .run_on_frame_from(Hook::TcUnderlay, frame, rx_index)
            .unwrap();
        assert_eq!(verdict, *want, "{reason}: verdict");
        let after = datapath::packets(&dp.maps().counters().unwrap(), Hook::TcUnderlay, *reason);
        assert_eq!(after, before + 1, "{reason}: counted once");
        if verdict == PASS {
            assert_eq!(&out, frame, "{reason}: passed unchanged");
        }
    }

    // What the pod gets: the inner IPv6 packet, addressed as routing to the pod would.
    let (_, out) = dp
        .run_on_frame_from(Hook::TcUnderlay, &good, rx_index)
        .unwrap();
    assert_eq!(out.len(), good.len() - 50, "outer 50 bytes removed");
    assert_eq!(out[..6], PEER_MAC, "to the pod's MAC");
    assert_eq!(out[6..12], GW_MAC, "from the gateway's MAC");
    assert_eq!(out[12..14], [0x86, 0xdd], "an IPv6 frame");
    assert_eq!(out[14 + 7], 63, "hop limit one less");
    assert_eq!(
        out[14 + 8..],
        good_inner[14 + 8..],
        "addresses, UDP and payload untouched"
    );
}
