//! Pod isolation end to end, on the demo cluster: nothing a pod or a host on the underlay sends
//! reaches a pod as someone else, or makes a node hand a pod's traffic to another, in any mode
//! with programs, and through the kernel path behind them (the node's nftables guard, which also
//! covers kernel mode). Each attack is sent the way an attacker would (raw frames from a pod's
//! eth0 or an underlay host's NIC, plain sockets as an unprivileged user), with the victim
//! listening on a real socket; each has an honest twin that still arrives.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    process::Command,
    time::{Duration, Instant},
};

use control::{
    config::{self, ClusterConfig, Mode},
    datapath::{self, Hook},
    guard,
    mac::Mac,
    netns::Netns,
    traffic::UdpSink,
};
use datapath_common::reasons::*;
use tests::{
    TestCluster,
    capture::Capture,
    frames::{self, ETH_IPV6, IPPROTO_ICMPV6, link_local},
    hostile::{self, Case, PodScene, UnderlayScene},
    probe,
    vxlan::{self, FLAG_I},
};

const A1: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
const A2: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 3);
const B1: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 2);
const B2: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 3);
const GATEWAY_A: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const GATEWAY_B: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
const UNDERLAY_A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const UNDERLAY_B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const UNDERLAY_DEV: &str = "fp-ul0";
const BRIDGE: &str = "fp-br0";
const VNI: u32 = 42;
const VXLAN_PORT: u16 = 4789;
/// Where victims listen.
const PORT: u16 = 7001;
/// How long a frame gets to arrive where it should not.
const SETTLE: Duration = Duration::from_millis(250);

fn pod_program(mode: Mode) -> Hook {
    match mode {
        Mode::Xdp => Hook::Xdp,
        Mode::Tc => Hook::Tc,
        Mode::Kernel => unreachable!("no program in kernel mode"),
    }
}

/// Packets `node`'s programs counted under `reason`, whichever program counted them.
fn counted(tc: &TestCluster, node: &str, reason: Reason) -> u64 {
    let dir = tc.cluster.pin_dir(tc.cluster.config.node(node).unwrap());
    let rows = datapath::pinned_counters(&dir).unwrap();
    rows.iter()
        .filter(|r| r.reason == reason)
        .map(|r| r.packets)
        .sum()
}

fn pod_scene(tc: &TestCluster, victim: &str) -> PodScene {
    let (node_a, a1) = (tc.node_netns("a"), tc.pod_netns("a1"));
    let gateway_mac = tc.mac_of(&node_a, BRIDGE);
    let a2_mac = tc.mac_of(&tc.pod_netns("a2"), "eth0");
    let same_node = victim == "a2";
    PodScene {
        attacker_mac: tc.mac_of(&a1, "eth0"),
        attacker_ip: A1,
        next_hop_mac: if same_node { a2_mac } else { gateway_mac },
        victim_ip: if same_node { A2 } else { B1 },
        victim_mac: a2_mac,
        victim_port: PORT,
        forged_ip: if same_node { B2 } else { A2 },
        gateway_mac,
        gateway_ip: GATEWAY_A,
        vtep_mac: Mac::vtep(UNDERLAY_A).0,
        vni: VNI,
        vxlan_port: VXLAN_PORT,
        same_node,
    }
}

fn hostile_pods_reach_no_pod(mode: Mode) {
    let tc = TestCluster::demo_in(mode);
    let a1 = tc.pod_netns("a1");
    for (victim, ip) in [("a2", A2), ("b1", B1)] {
        let scene = pod_scene(&tc, victim);
        let sink = UdpSink::bind(&tc.pod_netns(victim), SocketAddrV4::new(ip, PORT)).unwrap();
        for case in hostile::pod_cases(&scene)
            .iter()
            .filter(|c| c.reaches_victim)
        {
            hostile::attack(
                case,
                &sink,
                &|frame| probe::send_raw_frame(&a1, "eth0", frame),
                &|| counted(&tc, "a", case.reason),
            );
        }
    }
    let rows = datapath::pinned_counters(&tc.cluster.pin_dir(tc.cluster.config.node("a").unwrap()))
        .unwrap();
    assert!(
        rows.iter()
            .filter(|r| r.verdict == "drop")
            .all(|r| r.program == pod_program(mode).program()),
        "{rows:?}"
    );
}

#[test]
fn in_tc_mode_no_pod_reaches_another_as_someone_else() {
    hostile_pods_reach_no_pod(Mode::Tc);
}

#[test]
fn in_xdp_mode_no_pod_reaches_another_as_someone_else() {
    hostile_pods_reach_no_pod(Mode::Xdp);
}

/// VXLAN from a pod's plain UDP socket, as an unprivileged user, to each address of either node
/// whose VXLAN socket might take it; each carries a datagram from b2's address to a victim.
fn vxlan_from_a_pod_socket_reaches_nobody(mode: Mode) {
    let tc = TestCluster::demo_in(mode);
    let a1 = tc.pod_netns("a1");
    let sinks = [
        UdpSink::bind(&tc.pod_netns("a2"), SocketAddrV4::new(A2, PORT)).unwrap(),
        UdpSink::bind(&tc.pod_netns("b1"), SocketAddrV4::new(B1, PORT)).unwrap(),
    ];
    // The node whose VXLAN device would decapsulate, by the address the datagram goes to.
    let targets = [
        (GATEWAY_A, UNDERLAY_A),
        (UNDERLAY_A, UNDERLAY_A),
        (UNDERLAY_B, UNDERLAY_B),
        (GATEWAY_B, UNDERLAY_B),
        (Ipv4Addr::new(198, 18, 2, 0), UNDERLAY_B),
    ];
    let payload = |decapsulator: Ipv4Addr, victim: Ipv4Addr| {
        let inner = vxlan::inner_udp(
            // From a MAC that is not the decapsulating device's own (it drops those as looped).
            ([0x02, 0, 0, 0, 0, 0x42], Mac::vtep(decapsulator).0),
            B2,
            victim,
            PORT,
            b"from b2, honestly",
        );
        [&[FLAG_I, 0, 0, 0][..], &(VNI << 8).to_be_bytes(), &inner].concat()
    };
    let drops = |node: &str| -> u64 {
        if mode == Mode::Kernel {
            tc.guarded(node).values().sum()
        } else {
            counted(&tc, node, DROP_POD_VXLAN) + counted(&tc, node, DROP_VXLAN_NESTED)
        }
    };
    let before = drops("a") + drops("b");
    for (to, decapsulator) in targets {
        for victim in [A2, B1] {
            probe::send_udp_unprivileged(
                &a1,
                SocketAddrV4::new(to, VXLAN_PORT),
                &payload(decapsulator, victim),
            );
        }
    }
    std::thread::sleep(SETTLE * 2);
    for sink in &sinks {
        assert_eq!(sink.received(), 0, "{mode}: a VXLAN payload was delivered");
    }
    let dropped = drops("a") + drops("b") - before;
    assert_eq!(
        dropped,
        2 * targets.len() as u64,
        "{mode}: each injection dropped and counted once"
    );
    // Between pods, the overlay's port is an ordinary port.
    let twin = UdpSink::bind(&tc.pod_netns("b1"), SocketAddrV4::new(B1, VXLAN_PORT)).unwrap();
    probe::send_udp_unprivileged(
        &a1,
        SocketAddrV4::new(B1, VXLAN_PORT),
        &payload(UNDERLAY_B, A2),
    );
    assert_eq!(
        twin.wait_for(1, Duration::from_secs(3)),
        1,
        "{mode}: pod to pod"
    );
}

#[test]
fn in_tc_mode_vxlan_from_a_pod_socket_reaches_nobody() {
    vxlan_from_a_pod_socket_reaches_nobody(Mode::Tc);
}

#[test]
fn in_xdp_mode_vxlan_from_a_pod_socket_reaches_nobody() {
    vxlan_from_a_pod_socket_reaches_nobody(Mode::Xdp);
}

#[test]
fn in_kernel_mode_the_guard_keeps_vxlan_from_a_pod_socket_from_anybody() {
    vxlan_from_a_pod_socket_reaches_nobody(Mode::Kernel);
}

fn underlay_scene(tc: &TestCluster) -> UnderlayScene {
    UnderlayScene {
        peer_ip: UNDERLAY_A,
        peer_mac: tc.mac_of(&tc.node_netns("a"), UNDERLAY_DEV),
        peer_vtep_mac: Mac::vtep(UNDERLAY_A).0,
        peer_pod: A1,
        node_ip: UNDERLAY_B,
        node_mac: tc.mac_of(&tc.node_netns("b"), UNDERLAY_DEV),
        node_vtep_mac: Mac::vtep(UNDERLAY_B).0,
        gateway_ip: GATEWAY_B,
        stranger_ip: Ipv4Addr::new(198, 18, 0, 99),
        forged_pod: B2,
        victim_ip: B1,
        victim_port: PORT,
        vni: VNI,
        vxlan_port: VXLAN_PORT,
    }
}

/// The underlay corpus, sent from node a's underlay device (a host on node b's underlay: the
/// peer itself, or anyone using the peer's or its own address).
fn hostile_underlay_hosts_reach_no_pod(mode: Mode) {
    let tc = TestCluster::demo_in(mode);
    let node_a = tc.node_netns("a");
    let sink = UdpSink::bind(&tc.pod_netns("b1"), SocketAddrV4::new(B1, PORT)).unwrap();
    for case in hostile::underlay_cases(&underlay_scene(&tc))
        .iter()
        .filter(|c| c.reaches_victim)
    {
        hostile::attack(
            case,
            &sink,
            &|frame| probe::send_raw_frame(&node_a, UNDERLAY_DEV, frame),
            &|| counted(&tc, "b", case.reason),
        );
    }
}

#[test]
fn in_tc_mode_no_underlay_host_reaches_a_pod_as_someone_else() {
    hostile_underlay_hosts_reach_no_pod(Mode::Tc);
}

#[test]
fn in_xdp_mode_no_underlay_host_reaches_a_pod_as_someone_else() {
    hostile_underlay_hosts_reach_no_pod(Mode::Xdp);
}

/// The guard's rule for an underlay case in kernel mode, where no program runs; None for the cases
/// the kernel drops by itself (not addressed to it) and for those kernel mode lets through, as the
/// plain bridge-and-VXLAN setup it stands for does (a peer's forged inner sources).
fn guard_rule(case: &Case) -> Option<&'static str> {
    match case.reason {
        DROP_UNKNOWN_PEER | DROP_VXLAN_VLAN | DROP_UNDERLAY_VLAN_DEPTH => {
            Some(guard::VXLAN_UNKNOWN_PEER)
        }
        DROP_VXLAN_NESTED => Some(guard::VXLAN_NOT_FROM_UNDERLAY),
        DROP_UNDERLAY_POD_SOURCE => Some(guard::UNDERLAY_POD_SOURCE),
        DROP_VXLAN_NOT_FOR_NODE if case.name.contains("broadcast") => {
            Some(guard::VXLAN_NOT_UNICAST)
        }
        _ => None,
    }
}

#[test]
fn in_kernel_mode_the_guard_takes_vxlan_only_from_peers_and_pods_only_from_their_node() {
    let tc = TestCluster::demo_in(Mode::Kernel);
    let node_a = tc.node_netns("a");
    let sink = UdpSink::bind(&tc.pod_netns("b1"), SocketAddrV4::new(B1, PORT)).unwrap();
    let cases = hostile::underlay_cases(&underlay_scene(&tc));
    let mut covered = 0;
    for case in &cases {
        let Some(rule) = guard_rule(case) else {
            continue;
        };
        covered += 1;
        hostile::attack(
            case,
            &sink,
            &|frame| probe::send_raw_frame(&node_a, UNDERLAY_DEV, frame),
            &|| tc.guarded("b")[rule],
        );
    }
    assert!(covered >= 6, "the guard's cases are in the corpus");
}

#[test]
fn up_puts_back_a_guard_changed_behind_its_back() {
    let tc = TestCluster::demo_in(Mode::Kernel);
    let node_a = tc.node_netns("a");
    let table = guard::table_name(tc.cluster.prefix());
    let nft = |command: &str| {
        let out = Command::new("ip")
            .args(["netns", "exec", node_a.name().unwrap(), "nft"])
            .arg(command)
            .output()
            .unwrap();
        assert!(out.status.success(), "nft {command}: {out:?}");
    };
    for tamper in [
        format!("flush chain inet {table} vxlan"),
        format!("delete element inet {table} peers {{ {UNDERLAY_B} }}"),
    ] {
        nft(&tamper);
        let changes = tc.up().join("\n");
        assert!(
            changes.contains(&format!(
                "installed the kernel-path guard (nftables tables inet and netdev {table})"
            )),
            "after '{tamper}': {changes}"
        );
        assert!(tc.up().is_empty(), "a second up leaves the guard alone");
        assert_eq!(tc.guarded("a").len(), guard::RULES.len());
    }
}

/// Node a with a third pod: the attacker a1, the victim a2 and its neighbour a3.
fn three_pod_cluster(mode: Mode) -> TestCluster {
    let mut config = ClusterConfig::load(None).unwrap();
    config.nodes[0].pods.push(config::PodConfig {
        name: "a3".into(),
        address: Some(Ipv4Addr::new(198, 18, 1, 4)),
        address6: Some("2001:db8:1::4".parse().unwrap()),
    });
    let mut tc = TestCluster::with_config(config);
    tc.cluster.mode_override = Some(mode);
    tc.up();
    tc
}

fn arp_poisoning_intercepts_nothing(mode: Mode) {
    let tc = three_pod_cluster(mode);
    let (a1, a2, a3) = (tc.pod_netns("a1"), tc.pod_netns("a2"), tc.pod_netns("a3"));
    let a3_ip = Ipv4Addr::new(198, 18, 1, 4);
    let attacker = tc.mac_of(&a1, "eth0");
    let (a2_mac, a3_mac) = (tc.mac_of(&a2, "eth0"), tc.mac_of(&a3, "eth0"));
    let gateway_mac = tc.mac_of(&tc.node_netns("a"), BRIDGE);
    let reply = |to_mac: [u8; 6], claimed: Ipv4Addr, to: Ipv4Addr| {
        frames::ethernet(
            to_mac,
            attacker,
            frames::ETH_ARP,
            &frames::arp(2, attacker, claimed, to_mac, to),
        )
    };
    let poison = [
        // To a2: the gateway and a3 are at the attacker's MAC.
        reply(a2_mac, GATEWAY_A, A2),
        reply(a2_mac, a3_ip, A2),
        // To a3 and to the node: a2 is at the attacker's MAC.
        reply(a3_mac, A2, a3_ip),
        reply(gateway_mac, A2, GATEWAY_A),
        // To everyone: a2 is at the attacker's MAC.
        frames::ethernet(
            [0xff; 6],
            attacker,
            frames::ETH_ARP,
            &frames::arp(1, attacker, A2, [0; 6], A2),
        ),
    ];
    let capture = Capture::start(&a1, "eth0");
    let before = counted(&tc, "a", DROP_ARP_SPOOFED);
    let pings = [
        probe::background_ping(&a2, a3_ip, 200),
        probe::background_ping(&a2, B1, 200),
    ];
    let mut sent = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1800) {
        for frame in &poison {
            probe::send_raw_frame(&a1, "eth0", frame);
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for (ping, to) in pings.into_iter().zip(["a3", "b1"]) {
        let (transmitted, received) = probe::ping_result(ping);
        assert_eq!(
            (transmitted, received),
            (200, 200),
            "{mode}: a2's 10 ms ping to {to} lost none"
        );
    }
    let frames = capture.finish();
    let intercepted = frames
        .iter()
        .filter(|f| !f.outgoing && f.data.len() >= 34 && f.data[12..14] == [0x08, 0x00])
        .filter(|f| f.data[26..30] == A2.octets() || f.data[30..34] == A2.octets())
        .count();
    assert_eq!(intercepted, 0, "{mode}: a1 received none of a2's packets");
    assert_eq!(
        counted(&tc, "a", DROP_ARP_SPOOFED) - before,
        sent,
        "{mode}: every forged ARP dropped and counted"
    );
}

#[test]
fn in_tc_mode_arp_poisoning_neither_intercepts_nor_loses_a_packet() {
    arp_poisoning_intercepts_nothing(Mode::Tc);
}

#[test]
fn in_xdp_mode_arp_poisoning_neither_intercepts_nor_loses_a_packet() {
    arp_poisoning_intercepts_nothing(Mode::Xdp);
}

fn ip6(netns: &Netns, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["-n", netns.name().unwrap(), "-6"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "ip -6 {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn link_local_text(mac: [u8; 6]) -> String {
    std::net::Ipv6Addr::from(link_local(mac)).to_string()
}

/// A router advertisement (default router, a prefix to configure an address from) and a redirect
/// from a1 to a2, whose settings are opened to take them (as a pod's own root could): in modes
/// with programs, the programs drop both; in kernel mode, only the settings fastpath gives pods
/// stand in the way, so it runs with those.
fn router_messages_from_a_pod_change_no_routes(mode: Mode) {
    let tc = TestCluster::demo_in(mode);
    let (a1, a2) = (tc.pod_netns("a1"), tc.pod_netns("a2"));
    let (a1_mac, a2_mac) = (tc.mac_of(&a1, "eth0"), tc.mac_of(&a2, "eth0"));
    assert_eq!(
        probe::sysctl(&a2, "net/ipv6/conf/eth0/accept_ra", None),
        "0"
    );
    assert_eq!(
        probe::sysctl(&a2, "net/ipv6/conf/eth0/accept_redirects", None),
        "0"
    );
    assert_eq!(
        probe::sysctl(&a2, "net/ipv4/conf/all/accept_redirects", None),
        "0"
    );
    if mode != Mode::Kernel {
        probe::sysctl(&a2, "net/ipv6/conf/eth0/accept_ra", Some("2"));
        probe::sysctl(&a2, "net/ipv6/conf/eth0/accept_redirects", Some("1"));
    }
    let (a1_ll, a2_ll) = (link_local(a1_mac), link_local(a2_mac));
    // a1 is a2's router to 2001:db8:99::/64, so a redirect from it is one the kernel would take.
    ip6(
        &a2,
        &[
            "route",
            "add",
            "2001:db8:99::/64",
            "via",
            &link_local_text(a1_mac),
            "dev",
            "eth0",
        ],
    );
    let scene = pod_scene(&tc, "a2");
    let advert = hostile::pod_cases(&scene)
        .into_iter()
        .find(|c| c.reason == DROP_ND_ROUTER_ADVERT)
        .unwrap()
        .frames
        .remove(0);
    let better: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34];
    let destination: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5,
    ];
    let redirect = frames::ethernet(
        a2_mac,
        a1_mac,
        ETH_IPV6,
        &frames::ipv6(
            a1_ll,
            a2_ll,
            IPPROTO_ICMPV6,
            &frames::icmpv6(
                a1_ll,
                a2_ll,
                137,
                &[[0; 4].as_slice(), &better, &destination].concat(),
            ),
        ),
    );
    let (adverts, redirects) = if mode == Mode::Kernel {
        (0, 0)
    } else {
        (
            counted(&tc, "a", DROP_ND_ROUTER_ADVERT),
            counted(&tc, "a", DROP_ND_REDIRECT),
        )
    };
    probe::send_raw_frame(&a1, "eth0", &advert);
    probe::send_raw_frame(&a1, "eth0", &redirect);
    std::thread::sleep(SETTLE * 2);
    let routes = ip6(&a2, &["route", "show"]);
    let defaults: Vec<&str> = routes.lines().filter(|l| l.contains("default")).collect();
    assert!(
        defaults.len() == 1 && defaults[0].starts_with("default via 2001:db8:1::1 "),
        "{mode}: a2 took a default route besides fastpath's (via its gateway): {routes}"
    );
    let addresses = ip6(&a2, &["address", "show", "dev", "eth0"]);
    assert!(
        !addresses.contains("2001:db8:66"),
        "{mode}: a2 configured an address from the advertised prefix: {addresses}"
    );
    let path = ip6(&a2, &["route", "get", "2001:db8:99::5"]);
    assert!(
        path.contains(&link_local_text(a1_mac)) && !path.contains("fe80::1234"),
        "{mode}: a2's path to 2001:db8:99::5 was redirected: {path}"
    );
    if mode != Mode::Kernel {
        assert_eq!(
            counted(&tc, "a", DROP_ND_ROUTER_ADVERT),
            adverts + 1,
            "{mode}"
        );
        assert_eq!(counted(&tc, "a", DROP_ND_REDIRECT), redirects + 1, "{mode}");
    }
    // Link-local IPv6 between pods still works, once duplicate address detection is done.
    for pod in [&a1, &a2] {
        let start = Instant::now();
        while ip6(pod, &["address", "show", "dev", "eth0"]).contains("tentative") {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{mode}: DAD never ends"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let ping = Command::new("ip")
        .args([
            "netns",
            "exec",
            a1.name().unwrap(),
            "ping",
            "-6",
            "-c",
            "1",
            "-W",
            "2",
        ])
        .arg(format!("{}%eth0", link_local_text(a2_mac)))
        .output()
        .unwrap();
    assert!(
        ping.status.success(),
        "{mode}: a1 pings a2's link-local address"
    );
}

#[test]
fn in_tc_mode_router_advertisements_and_redirects_from_a_pod_change_no_routes() {
    router_messages_from_a_pod_change_no_routes(Mode::Tc);
}

#[test]
fn in_xdp_mode_router_advertisements_and_redirects_from_a_pod_change_no_routes() {
    router_messages_from_a_pod_change_no_routes(Mode::Xdp);
}

/// A pod's VLAN device (on a kernel that has them; this one has not) hands its tags to the veth
/// beside the frame, where XDP does not see them; in xdp mode fastpath has the pod's stack write
/// them into the frame, where xdp_pod drops them as `pod-vlan` (the corpus's tagged frames), and
/// gives the setting back in the other modes.
#[test]
fn in_xdp_mode_pods_write_their_vlan_tags_into_the_frame() {
    let mut tc = TestCluster::demo_in(Mode::Xdp);
    let insertion = |tc: &TestCluster| {
        control::ethtool::vlan_tag_insertion(&tc.pod_netns("a1"), "eth0").unwrap()
    };
    assert_eq!(
        insertion(&tc),
        [false, false],
        "xdp: 802.1Q and 802.1ad tags in the frame"
    );
    tc.cluster.mode_override = Some(Mode::Tc);
    let changes = tc.up().join("\n");
    assert!(
        changes.contains("pod a1: eth0 VLAN tag insertion on"),
        "{changes}"
    );
    assert_eq!(
        insertion(&tc),
        [true, true],
        "tc sees tags beside the frame"
    );
}

#[test]
fn in_kernel_mode_pod_settings_refuse_router_advertisements_and_redirects() {
    router_messages_from_a_pod_change_no_routes(Mode::Kernel);
}

#[test]
fn a_pod_recreated_by_up_is_reachable_at_once() {
    let mut tc = TestCluster::demo_in(Mode::Tc);
    let a1 = tc.pod_netns("a1");
    let mac = tc.mac_of(&tc.pod_netns("a2"), "eth0");
    let recreate = |tc: &mut TestCluster| {
        let a2 = tc.cluster.config.nodes[0].pods.remove(1);
        tc.up();
        tc.cluster.config.nodes[0].pods.push(a2);
        tc.up();
    };
    // a1 knows a2's MAC from before; the re-created a2 has the same one.
    assert!(probe::ping(&a1, A2, 2, &[]));
    recreate(&mut tc);
    assert_eq!(tc.mac_of(&tc.pod_netns("a2"), "eth0"), mac, "a2's MAC");
    let resumed = probe::time_to_first_reply(&a1, A2);
    assert!(
        resumed < Duration::from_secs(1),
        "a1 reached the re-created a2 after {resumed:?}"
    );
    // a1 holds another MAC for a2's address (an a2 from before MACs followed addresses): the
    // re-created a2's gratuitous ARP puts it right.
    probe::hold_neighbour(&a1, A2, [0x02, 0, 0, 0, 0, 0x99]);
    recreate(&mut tc);
    let resumed = probe::time_to_first_reply(&a1, A2);
    assert!(
        resumed < Duration::from_secs(1),
        "a1, holding a stale MAC, reached the re-created a2 after {resumed:?}"
    );
}
