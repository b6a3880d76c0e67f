//! Every same-node forwarding decision, in both programs, on crafted frames (BPF_PROG_TEST_RUN):
//! the verdict, the reason counted, and the bytes the program leaves; and every hostile frame of
//! the corpus (`tests::hostile`) a pod can send, dropped under its reason, with its honest twin
//! let through.

use std::net::Ipv4Addr;

use control::{
    datapath::{self, Datapath, EndpointEntry, Hook, OverlaySettings, Owner},
    mac::Mac,
};
use datapath_common::reasons::*;
use tests::{
    TestRunNetns,
    frames::{self, BROADCAST, ETH_ARP, Ipv4, PEER_MAC, POD_MAC, checksum},
    hostile::{self, PodScene},
    runtime,
};

const GW_MAC: [u8; 6] = [0x02, 0xfa, 0x57, 0x00, 0x00, 0xfe];
const OTHER_MAC: [u8; 6] = [0x02, 0xfa, 0x57, 0x00, 0x00, 0x77];
const SENDER: [u8; 4] = [198, 18, 1, 2];
const RECEIVER: [u8; 4] = [198, 18, 1, 3];
const GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const UNDERLAY: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const VNI: u32 = 42;
const VXLAN_PORT: u16 = 4789;

struct Verdicts {
    pass: u32,
    drop: u32,
    redirect: u32,
}

fn verdicts(hook: Hook) -> Verdicts {
    match hook {
        Hook::Xdp => Verdicts {
            pass: 2,
            drop: 1,
            redirect: 4,
        },
        Hook::Tc => Verdicts {
            pass: 0,
            drop: 2,
            redirect: 7,
        },
        Hook::TcUnderlay => unreachable!("pod programs only"),
    }
}

/// A frame from the sender pod (its MAC, its IP) to `dst_mac`/`dst_ip`.
fn from_sender(dst_mac: [u8; 6], ip: Ipv4) -> Vec<u8> {
    let mut f = frames::udp_frame(ip, b"payload");
    f[..6].copy_from_slice(&dst_mac);
    f
}

fn ip(dst: [u8; 4]) -> Ipv4 {
    Ipv4 {
        src: SENDER,
        dst,
        ..Ipv4::default()
    }
}

/// Runs every decision through `hook` inside a namespace of the test's own, where the sender's
/// veth is loopback (ifindex 1, where test runs place a frame) and the receiver's a real veth.
fn decisions(hook: Hook) {
    let rt = runtime();
    let TestRunNetns { ns, rx_index } = TestRunNetns::new(&rt, "decide");
    let _inside = ns.netns().enter().unwrap();

    let mut dp = Datapath::load(None).unwrap();
    // With the overlay's settings: the VXLAN port is one of the things a pod's frames are checked
    // against.
    let overlay = OverlaySettings {
        vtep_mac: Mac::vtep(UNDERLAY),
        vni: VNI,
        port: VXLAN_PORT,
        underlay_ifindex: rx_index,
        underlay_ip: UNDERLAY,
        underlay_mtu: 1500,
    };
    dp.maps_mut()
        .set_node(Mac(GW_MAC), Some(GATEWAY), None, Some(&overlay))
        .unwrap();
    let entries = [
        EndpointEntry {
            ip: Some(SENDER.into()),
            ip6: None,
            ifindex: 1,
            mac: Mac(POD_MAC),
        },
        EndpointEntry {
            ip: Some(RECEIVER.into()),
            ip6: None,
            ifindex: rx_index,
            mac: Mac(PEER_MAC),
        },
    ];
    assert_eq!(
        dp.maps_mut()
            .sync_endpoints(ns.netns(), Owner::node(ns.netns().label()), &entries, None)
            .unwrap(),
        6,
        "2 endpoints, 2 sources, 2 devmap"
    );
    assert_eq!(
        dp.maps_mut()
            .sync_endpoints(ns.netns(), Owner::node(ns.netns().label()), &entries, None)
            .unwrap(),
        0,
        "a second sync changes nothing"
    );

    let v = verdicts(hook);
    let arp_spoof = frames::ethernet(BROADCAST, OTHER_MAC, ETH_ARP, &[0; 28]);
    let arp = frames::ethernet(
        PEER_MAC,
        POD_MAC,
        ETH_ARP,
        &frames::arp(1, POD_MAC, SENDER.into(), [0; 6], RECEIVER.into()),
    );
    let mut spoofed_mac = from_sender(PEER_MAC, ip(RECEIVER));
    spoofed_mac[6..12].copy_from_slice(&OTHER_MAC);
    let cases: Vec<(Reason, Vec<u8>, u32)> = vec![
        (
            REDIRECT_SWITCHED,
            from_sender(PEER_MAC, ip(RECEIVER)),
            v.redirect,
        ),
        (
            REDIRECT_ROUTED,
            from_sender(GW_MAC, ip(RECEIVER)),
            v.redirect,
        ),
        (
            PASS_TTL_EXPIRED,
            from_sender(
                GW_MAC,
                Ipv4 {
                    ttl: 1,
                    ..ip(RECEIVER)
                },
            ),
            v.pass,
        ),
        (
            PASS_NO_ENDPOINT,
            from_sender(GW_MAC, ip([198, 18, 1, 77])),
            v.pass,
        ),
        (
            PASS_NOT_ADDRESSED_TO_ENDPOINT,
            from_sender(OTHER_MAC, ip(RECEIVER)),
            v.pass,
        ),
        (
            DROP_SPOOFED_IP,
            from_sender(
                PEER_MAC,
                Ipv4 {
                    src: [198, 18, 1, 99],
                    ..ip(RECEIVER)
                },
            ),
            v.drop,
        ),
        (DROP_SPOOFED_MAC, spoofed_mac, v.drop),
        (DROP_SPOOFED_MAC, arp_spoof, v.drop),
        (PASS_ARP, arp, v.pass),
    ];
    for (reason, frame, want) in cases {
        let before = datapath::packets(&dp.maps().counters().unwrap(), hook, reason);
        let (verdict, out) = dp.run_on_frame(hook, &frame).unwrap();
        assert_eq!(verdict, want, "{reason}: verdict of {}", hook.program());
        let after = datapath::packets(&dp.maps().counters().unwrap(), hook, reason);
        assert_eq!(after, before + 1, "{reason}: counted once under its reason");
        match reason {
            REDIRECT_ROUTED => {
                assert_eq!(out[..6], PEER_MAC, "routed: destination MAC is the pod's");
                assert_eq!(out[6..12], GW_MAC, "routed: source MAC is the gateway's");
                assert_eq!(out[14 + 8], 63, "routed: TTL decremented");
                assert_eq!(
                    checksum(&out[14..34]),
                    0,
                    "routed: IPv4 header checksum still valid"
                );
                assert_eq!(out[34..], frame[34..], "routed: payload untouched");
            }
            _ => assert_eq!(out, frame, "{reason}: frame unchanged"),
        }
    }

    hostile_frames_are_dropped(&mut dp, hook, rx_index);

    // A frame from a device that is not a registered pod veth is left to the kernel.
    dp.maps_mut()
        .sync_endpoints(
            ns.netns(),
            Owner::node(ns.netns().label()),
            &entries[1..],
            None,
        )
        .unwrap();
    let (verdict, _) = dp
        .run_on_frame(hook, &from_sender(PEER_MAC, ip(RECEIVER)))
        .unwrap();
    assert_eq!(verdict, v.pass);
    assert_eq!(
        datapath::packets(&dp.maps().counters().unwrap(), hook, PASS_NOT_FROM_POD),
        1
    );
}

/// The pod-side corpus, from the sender (the pod on ifindex 1) against the receiver.
fn hostile_frames_are_dropped(dp: &mut Datapath, hook: Hook, rx_index: u32) {
    let v = verdicts(hook);
    let scene = PodScene {
        attacker_mac: POD_MAC,
        attacker_ip: SENDER.into(),
        next_hop_mac: PEER_MAC,
        victim_ip: RECEIVER.into(),
        victim_mac: PEER_MAC,
        victim_port: 9,
        forged_ip: Ipv4Addr::new(198, 18, 1, 99),
        gateway_mac: GW_MAC,
        gateway_ip: GATEWAY,
        vtep_mac: Mac::vtep(UNDERLAY).0,
        vni: VNI,
        vxlan_port: VXLAN_PORT,
        same_node: true,
    };
    let program = hook.program();
    for case in hostile::pod_cases(&scene) {
        let name = case.reason;
        let before = datapath::packets(&dp.maps().counters().unwrap(), hook, name);
        let mut drops = 0;
        for frame in &case.frames {
            let (verdict, _) = dp
                .run_on_frame(hook, frame)
                .unwrap_or_else(|e| panic!("{}: {}", case.name, control::error::chain(&e)));
            drops += u64::from(verdict == v.drop);
        }
        let after = datapath::packets(&dp.maps().counters().unwrap(), hook, name);
        assert_eq!(drops, case.dropped, "{program}: {}: dropped", case.name);
        assert_eq!(
            after - before,
            case.dropped,
            "{program}: {}: counted under {name}",
            case.name
        );
        for frame in case.twin.iter().flatten() {
            let (verdict, _) = dp.run_on_frame(hook, frame).unwrap();
            assert_ne!(
                verdict, v.drop,
                "{program}: the honest twin of '{}' is let through (rx {rx_index})",
                case.name
            );
        }
    }
}

#[test]
fn xdp_makes_every_forwarding_decision() {
    decisions(Hook::Xdp);
}

#[test]
fn tc_makes_every_forwarding_decision() {
    decisions(Hook::Tc);
}

/// The endpoint maps' writers (a node, the CNI networks joined to it) keep each other's entries:
/// each sync changes only its owner's, an address another owner's live device holds is refused,
/// and one whose device is gone is taken over.
#[test]
fn map_writers_keep_each_others_entries() {
    let rt = runtime();
    let TestRunNetns { ns, rx_index } = TestRunNetns::new(&rt, "owners");
    let nl = rt
        .block_on(async { control::netlink::Netlink::open(ns.netns()) })
        .unwrap();
    let veth = |name: &str| {
        rt.block_on(nl.create_veth(name, &format!("{name}p"), ns.netns()))
            .unwrap();
        rt.block_on(nl.index(name)).unwrap()
    };
    let mut dp = Datapath::load(None).unwrap();
    let (node, network) = (Owner::node("node-a"), Owner::cni_network("net-1"));
    assert_ne!(node, network);
    let entry = |ip: [u8; 4], ifindex: u32| EndpointEntry {
        ip: Some(ip.into()),
        ip6: None,
        ifindex,
        mac: Mac(POD_MAC),
    };
    // What the maps hold.
    let held = |dp: &Datapath| -> Held {
        let maps = dp.maps();
        let mut endpoints: Vec<_> = maps
            .endpoints()
            .unwrap()
            .into_iter()
            .map(|(ip, e)| (ip, e.ifindex, e.owner))
            .collect();
        let mut sources: Vec<u32> = maps.sources().unwrap().iter().map(|(k, _)| *k).collect();
        let mut targets = maps.redirect_targets().unwrap();
        endpoints.sort();
        sources.sort();
        targets.sort();
        (endpoints, sources, targets)
    };
    // The node's underlay, which only the node's entries need as a redirect target.
    let ul = veth("ul0");
    let sync = |dp: &mut Datapath, owner: Owner, entries: &[EndpointEntry]| {
        let underlay = (owner == node).then_some(ul);
        dp.maps_mut()
            .sync_endpoints(ns.netns(), owner, entries, underlay)
    };
    let (lo, rx) = (1, rx_index);
    sync(&mut dp, node, &[entry(SENDER, lo)]).unwrap();
    sync(&mut dp, network, &[entry(RECEIVER, rx)]).unwrap();
    let both = (
        vec![
            (SENDER.into(), lo, node.id()),
            (RECEIVER.into(), rx, network.id()),
        ],
        vec![lo, rx],
        sorted(vec![lo, rx, ul]),
    );
    assert_eq!(held(&dp), both, "each owner's entry is there");
    // Each owner's sync again (the node's with nothing new) leaves the other's alone.
    assert_eq!(sync(&mut dp, node, &[entry(SENDER, lo)]).unwrap(), 0);
    assert_eq!(sync(&mut dp, network, &[entry(RECEIVER, rx)]).unwrap(), 0);
    assert_eq!(held(&dp), both);

    // The network claims the node's pod's address: refused while that device lives.
    let err = sync(&mut dp, network, &[entry(SENDER, rx)]).unwrap_err();
    assert!(
        matches!(&err, control::error::DatapathError::AddressHeld { device, .. } if device == "lo"),
        "{err}"
    );
    assert_eq!(held(&dp), both, "a refused sync changes nothing");

    // An IPv6 address is held the same way, and checked before either family is written: the
    // network's claim on the node's pod's IPv6 address, with an IPv4 address of its own, leaves
    // even the IPv4 map as it was.
    let pod6 = std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
    let dual = |ip: [u8; 4], ifindex: u32| EndpointEntry {
        ip6: Some(pod6),
        ..entry(ip, ifindex)
    };
    sync(&mut dp, node, &[dual(SENDER, lo)]).unwrap();
    assert_eq!(held(&dp), both);
    let err = sync(&mut dp, network, &[dual([198, 18, 1, 77], rx)]).unwrap_err();
    assert!(
        matches!(&err, control::error::DatapathError::AddressHeld { ip, device }
            if device == "lo" && *ip == std::net::IpAddr::V6(pod6)),
        "{err}"
    );
    assert_eq!(
        held(&dp),
        both,
        "a sync refused over IPv6 changes no IPv4 entry"
    );
    sync(&mut dp, node, &[entry(SENDER, lo)]).unwrap();

    // The node's pod moves to another device, which then goes: its address can be taken, and
    // the gone device's source and redirect entries go with it.
    let gone = veth("gone0");
    sync(&mut dp, node, &[entry(SENDER, gone)]).unwrap();
    rt.block_on(nl.delete_link("gone0")).unwrap();
    sync(&mut dp, network, &[entry(SENDER, rx)]).unwrap();
    assert_eq!(
        held(&dp),
        (
            vec![(SENDER.into(), rx, network.id())],
            vec![rx],
            sorted(vec![rx, ul])
        )
    );

    // Entries from before owners were recorded: one on a live device is nobody's to take...
    let old = veth("old0");
    dp.maps_mut()
        .insert_unrouted(Owner::BEFORE_OWNERS, &[entry(RECEIVER, old)], &[])
        .unwrap();
    let err = sync(&mut dp, node, &[entry(RECEIVER, lo)]).unwrap_err();
    assert!(
        matches!(&err, control::error::DatapathError::AddressHeld { device, .. } if device == "old0"),
        "{err}"
    );
    // ...but its own device's writer's, who also drops it when it no longer wants it...
    sync(&mut dp, network, &[entry(SENDER, rx), entry(RECEIVER, old)]).unwrap();
    sync(&mut dp, network, &[entry(SENDER, rx)]).unwrap();
    assert_eq!(
        held(&dp),
        (
            vec![(SENDER.into(), rx, network.id())],
            vec![rx],
            sorted(vec![rx, ul])
        )
    );
    // ...and anyone's once its device is gone, its source entry with it.
    dp.maps_mut()
        .insert_unrouted(Owner::BEFORE_OWNERS, &[entry(RECEIVER, old)], &[])
        .unwrap();
    rt.block_on(nl.delete_link("old0")).unwrap();
    sync(&mut dp, node, &[entry(RECEIVER, lo)]).unwrap();
    assert_eq!(
        held(&dp),
        (
            vec![
                (SENDER.into(), rx, network.id()),
                (RECEIVER.into(), lo, node.id())
            ],
            vec![lo, rx],
            sorted(vec![lo, rx, ul])
        )
    );

    // An owner with nothing left removes only its own.
    sync(&mut dp, node, &[]).unwrap();
    assert_eq!(
        held(&dp),
        (
            vec![(SENDER.into(), rx, network.id())],
            vec![rx],
            sorted(vec![rx, ul])
        ),
    );
    sync(&mut dp, network, &[]).unwrap();
    assert_eq!(
        held(&dp),
        (vec![], vec![], vec![ul]),
        "the node's underlay stays"
    );
}

/// Endpoints (address, device, owner id), source devices, redirect targets.
type Held = (Vec<(Ipv4Addr, u32, u32)>, Vec<u32>, Vec<u32>);

fn sorted(mut v: Vec<u32>) -> Vec<u32> {
    v.sort();
    v
}
