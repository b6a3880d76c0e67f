//! IPv6 beside IPv4 (the demo cluster is dual-stack), end to end: pods on one node and across
//! nodes reach each other over IPv6 in every mode and every pair of modes, with what `up` made
//! (addresses, routes, neighbours) in place and left alone by a second run; the overlay MTU holds
//! for IPv6 too; what crosses the underlay is standard VXLAN with IPv6 inside; and nobody speaks
//! IPv6 in another's name: not a pod, not a peer, not a host on the underlay.

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket},
    process::Command,
    time::Duration,
};

use control::{config::Mode, datapath::Hook, guard, mac::Mac, netns::Netns};
use datapath_common::reasons::*;
use tests::{
    TestCluster,
    capture::Capture,
    frames::{self, ETH_IPV6},
    pod_program,
    probe::{self, pattern},
    vxlan::{self, FLAG_I},
    witness,
};

const A1: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
const A2: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 3);
const B1: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2);
const B2: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 3);
const GATEWAY_A: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
const UNDERLAY_A: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 18, 0, 1);
const UNDERLAY_B: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 18, 0, 2);
const UNDERLAY_DEV: &str = "fp-ul0";
const BRIDGE: &str = "fp-br0";
const VNI: u32 = 42;
const VXLAN_PORT: u16 = 4789;
const PINGS: u32 = 3;
const DATAGRAMS: u32 = 100;
const TRANSFER: usize = 1024 * 1024;
/// Largest ICMPv6 echo payload a DF ping fits in the pods' 1450-byte MTU (1450 - 40 - 8).
const LARGEST_PING6: usize = 1402;
/// How long a frame gets to arrive where it should not.
const SETTLE: Duration = Duration::from_millis(250);

fn node_of(pod: &str) -> &'static str {
    if pod.starts_with('a') { "a" } else { "b" }
}

/// What the fast path counted for a flow from `from_node` to `to_node`: redirects by the
/// sender's pod program (switched on one node, encapsulated across), and across nodes the
/// receiver's decapsulations. Zero where a node runs no program.
fn redirects(tc: &TestCluster, modes: (Mode, Mode), from_node: &str, to_node: &str) -> (u64, u64) {
    let mode_of = |node: &str| if node == "a" { modes.0 } else { modes.1 };
    let sent = pod_program(mode_of(from_node)).map_or(0, |hook| {
        let reason = if from_node == to_node {
            REDIRECT_SWITCHED
        } else {
            REDIRECT_ENCAPSULATED
        };
        tc.counted(from_node, hook, reason)
    });
    let received = if from_node != to_node && mode_of(to_node) != Mode::Kernel {
        tc.counted(to_node, Hook::TcUnderlay, REDIRECT_DECAPSULATED)
    } else {
        0
    };
    (sent, received)
}

/// Ping, UDP and a byte-exact TCP transfer over IPv6 from pod `from` to pod `to`; the receiver
/// counts no checksum error, and the programs on the way forwarded the packets.
fn ipv6_flows(tc: &TestCluster, modes: (Mode, Mode), from: &str, (to, to_addr): (&str, Ipv6Addr)) {
    let mode_of = |node: &str| if node == "a" { modes.0 } else { modes.1 };
    let (from_node, to_node) = (node_of(from), node_of(to));
    let what = format!(
        "{from} ({}) -> {to} ({}) over IPv6",
        mode_of(from_node),
        mode_of(to_node)
    );
    let (src, dst) = (tc.pod_netns(from), tc.pod_netns(to));
    let before = redirects(tc, modes, from_node, to_node);
    let (snmp, snmp6) = (witness::snmp(&dst), witness::snmp6(&dst));

    assert!(probe::ping(&src, to_addr, PINGS, &[]), "{what}: ping");
    assert_eq!(
        probe::udp_delivered(&src, &dst, to_addr, DATAGRAMS, 300),
        DATAGRAMS,
        "{what}: UDP delivered"
    );
    let got = probe::tcp_transfer(&src, &dst, to_addr, TRANSFER);
    assert!(
        got.len() == TRANSFER && got == pattern(TRANSFER),
        "{what}: TCP transfer of {TRANSFER} bytes arrived as {} bytes, not byte-exact",
        got.len()
    );

    let (snmp_after, snmp6_after) = (witness::snmp(&dst), witness::snmp6(&dst));
    assert_eq!(
        (
            snmp6_after.udp6_in_csum_errors,
            snmp6_after.icmp6_in_csum_errors,
            snmp_after.tcp_in_csum_errors
        ),
        (
            snmp6.udp6_in_csum_errors,
            snmp6.icmp6_in_csum_errors,
            snmp.tcp_in_csum_errors
        ),
        "{what}: checksum errors at the receiver"
    );
    assert!(
        snmp6_after.udp6_in_datagrams - snmp6.udp6_in_datagrams >= u64::from(DATAGRAMS),
        "{what}: the receiver's stack took the datagrams"
    );
    // Every echo request and datagram, whichever program was on the way.
    let least = u64::from(PINGS + DATAGRAMS);
    let after = redirects(tc, modes, from_node, to_node);
    if pod_program(mode_of(from_node)).is_some() {
        let sent = after.0 - before.0;
        assert!(
            sent >= least,
            "{what}: the sender's program redirected {sent}"
        );
    }
    if from_node != to_node && mode_of(to_node) != Mode::Kernel {
        let taken = after.1 - before.1;
        assert!(taken >= least, "{what}: the receiver decapsulated {taken}");
    }
}

#[test]
fn ipv6_reaches_pods_on_the_node_and_across_in_every_mode_and_mode_pair() {
    let mut tc = TestCluster::demo();
    let pairs = [
        (Mode::Kernel, Mode::Kernel),
        (Mode::Tc, Mode::Tc),
        (Mode::Xdp, Mode::Xdp),
        (Mode::Tc, Mode::Kernel),
        (Mode::Kernel, Mode::Xdp),
        (Mode::Xdp, Mode::Tc),
    ];
    for modes in pairs {
        tc.set_modes(modes.0, modes.1);
        ipv6_flows(&tc, modes, "a1", ("a2", A2));
        ipv6_flows(&tc, modes, "a1", ("b1", B1));
        ipv6_flows(&tc, modes, "b2", ("a2", A2));
        // IPv4 beside it is untouched.
        let v4 = tc.pods().into_iter().find(|p| p.0 == "b1").unwrap().1;
        assert!(
            probe::ping(&tc.pod_netns("a1"), v4, 1, &[]),
            "{modes:?}: IPv4"
        );
    }
}

/// `ip -j` output of `args` in `netns`.
fn ip_json(netns: &Netns, args: &[&str]) -> serde_json::Value {
    let out = Command::new("ip")
        .args(["-n", netns.name().unwrap(), "-j"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "ip {args:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The IPv6 addresses of `dev` other than link-local, with their prefix lengths and flags.
fn global_addresses(netns: &Netns, dev: &str) -> Vec<(String, u64, bool)> {
    let links = ip_json(netns, &["-6", "addr", "show", "dev", dev]);
    links[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["scope"] == "global")
        .map(|a| {
            (
                a["local"].as_str().unwrap().to_string(),
                a["prefixlen"].as_u64().unwrap(),
                a["tentative"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

#[test]
fn up_gives_every_device_its_ipv6_addresses_routes_and_neighbours_and_keeps_them() {
    let tc = TestCluster::demo_in(Mode::Tc);
    let (node_a, a1) = (tc.node_netns("a"), tc.pod_netns("a1"));
    let untentative = |addr: &str, len: u64| vec![(addr.to_string(), len, false)];
    assert_eq!(
        global_addresses(&a1, "eth0"),
        untentative("2001:db8:1::2", 64)
    );
    assert_eq!(
        global_addresses(&node_a, BRIDGE),
        untentative("2001:db8:1::1", 64)
    );
    assert_eq!(
        global_addresses(&node_a, "fp-vxlan"),
        untentative("2001:db8:1::", 128)
    );
    let default = ip_json(&a1, &["-6", "route", "show", "default"]);
    assert_eq!(default[0]["gateway"], "2001:db8:1::1", "{default}");
    let to_b = ip_json(&node_a, &["-6", "route", "show", "2001:db8:2::/64"]);
    assert_eq!(
        (&to_b[0]["gateway"], &to_b[0]["dev"]),
        (&"2001:db8:2::".into(), &"fp-vxlan".into()),
        "{to_b}"
    );
    assert!(to_b[0]["flags"].to_string().contains("onlink"), "{to_b}");
    let neighbours = ip_json(&node_a, &["-6", "neigh", "show", "dev", "fp-vxlan"]);
    let peer = neighbours
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["dst"] == "2001:db8:2::")
        .unwrap_or_else(|| panic!("no neighbour entry for b's next hop: {neighbours}"));
    assert_eq!(peer["lladdr"], Mac::vtep(UNDERLAY_B).to_string());
    assert!(peer["state"].to_string().contains("PERMANENT"), "{peer}");
    assert_eq!(
        probe::sysctl(&node_a, "net/ipv6/conf/all/forwarding", None),
        "1"
    );

    assert_eq!(tc.up(), Vec::<String>::new(), "a second up changes nothing");

    // Taken away behind fastpath's back, they come back.
    for args in [
        vec!["-6", "route", "del", "2001:db8:2::/64", "dev", "fp-vxlan"],
        vec!["-6", "addr", "del", "2001:db8:1::1/64", "dev", BRIDGE],
    ] {
        let ok = Command::new("ip")
            .args(["-n", node_a.name().unwrap()])
            .args(&args)
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip {args:?}");
    }
    let changes = tc.up();
    assert!(
        changes.iter().any(|c| c.contains("routed 2001:db8:2::/64"))
            && changes
                .iter()
                .any(|c| c.contains("added address 2001:db8:1::1/64 to fp-br0")),
        "{changes:?}"
    );
    assert!(probe::ping(&a1, B1, 1, &[]), "b1 over IPv6 again");

    // `fastpath check` echoes over both families.
    let out = tests::fastpath(tc.cluster.prefix(), None)
        .args(["check", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let probes: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ipv6 = probes
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["to_address"].as_str().unwrap().contains(':'))
        .count();
    assert_eq!(
        ipv6, 12,
        "every ordered pair of the four pods over IPv6: {probes}"
    );
}

/// The largest DF-sized IPv6 packet crosses; with the pod's MTU raised past the overlay's, a
/// bigger one gets packet-too-big for the overlay MTU from the node.
fn ipv6_mtu_is_respected(mode: Mode) {
    let tc = TestCluster::demo_in(mode);
    let a1 = tc.pod_netns("a1");
    let largest = LARGEST_PING6.to_string();
    assert!(
        probe::ping(&a1, B1, 2, &["-M", "do", "-s", &largest]),
        "{mode}: ping of {LARGEST_PING6} bytes a1 -> b1"
    );
    let node_a = tc.node_netns("a");
    for (ns, dev) in [(&a1, "eth0"), (&node_a, "fp-a1")] {
        let ok = Command::new("ip")
            .args(["-n", ns.name().unwrap(), "link", "set", dev, "mtu", "1500"])
            .status()
            .unwrap()
            .success();
        assert!(ok, "raise the MTU of {dev}");
    }
    let out = Command::new("ip")
        .args(["netns", "exec", a1.name().unwrap()])
        .args(["ping", "-n", "-c", "1", "-W", "2", "-M", "do", "-s", "1452"])
        .arg(B1.to_string())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && text.contains("Packet too big: mtu=1450"),
        "{mode}: a 1500-byte IPv6 packet gets packet-too-big for 1450: {text}"
    );
}

#[test]
fn kernel_mode_answers_too_big_ipv6_with_packet_too_big() {
    ipv6_mtu_is_respected(Mode::Kernel);
}

#[test]
fn tc_mode_answers_too_big_ipv6_with_packet_too_big() {
    ipv6_mtu_is_respected(Mode::Tc);
}

#[test]
fn xdp_mode_answers_too_big_ipv6_with_packet_too_big() {
    ipv6_mtu_is_respected(Mode::Xdp);
}

/// Captures what node b's underlay device receives while a1 sends b1 ICMPv6, UDP and TCP (on b:
/// an XDP redirect into a's underlay veth passes no capture on a): every VXLAN frame from a is
/// standard, with a1's and b1's IPv6 addresses inside.
fn underlay_carries_ipv6_in_standard_vxlan(mode: Mode) {
    let tc = TestCluster::demo_in(mode);
    let (a1, b1) = (tc.pod_netns("a1"), tc.pod_netns("b1"));
    let capture = Capture::start(&tc.node_netns("b"), UNDERLAY_DEV);
    assert!(probe::ping(&a1, B1, PINGS, &[]), "{mode}: ping");
    assert_eq!(
        probe::udp_delivered(&a1, &b1, B1, 20, 200),
        20,
        "{mode}: UDP"
    );
    assert_eq!(
        probe::tcp_transfer(&a1, &b1, B1, 64 * 1024).len(),
        64 * 1024,
        "{mode}: TCP"
    );
    std::thread::sleep(SETTLE);
    let frames = capture.finish();
    let from_a: Vec<_> = frames
        .iter()
        .filter(|f| {
            !f.outgoing && vxlan::is_udp_to(f, VXLAN_PORT) && f.data[26..30] == UNDERLAY_A.octets()
        })
        .collect();
    assert!(from_a.len() >= 20, "{mode}: {} VXLAN frames", from_a.len());
    let mut protocols = std::collections::BTreeSet::new();
    for f in from_a {
        let p = vxlan::parse(f).unwrap_or_else(|e| panic!("{mode}: not standard VXLAN: {e}"));
        assert_eq!(
            (p.outer_src, p.outer_dst, p.port, p.vni),
            (UNDERLAY_A, UNDERLAY_B, VXLAN_PORT, VNI),
            "{mode}: outer addresses, port, VNI"
        );
        assert_eq!(
            (p.inner_src_mac, p.inner_dst_mac),
            (Mac::vtep(UNDERLAY_A).0, Mac::vtep(UNDERLAY_B).0),
            "{mode}: inner MACs are the VTEPs'"
        );
        assert_eq!(
            (p.inner_src, p.inner_dst),
            (IpAddr::V6(A1), IpAddr::V6(B1)),
            "{mode}: inner addresses"
        );
        assert_eq!(
            p.inner_ttl, 63,
            "{mode}: hop limit one less, routed on node a"
        );
        protocols.insert(p.inner_proto);
    }
    assert_eq!(
        protocols.into_iter().collect::<Vec<_>>(),
        [6, 17, 58],
        "{mode}: TCP, UDP and ICMPv6 all seen"
    );
}

#[test]
fn kernel_mode_carries_ipv6_in_standard_vxlan() {
    underlay_carries_ipv6_in_standard_vxlan(Mode::Kernel);
}

#[test]
fn tc_mode_carries_ipv6_in_standard_vxlan() {
    underlay_carries_ipv6_in_standard_vxlan(Mode::Tc);
}

#[test]
fn xdp_mode_carries_ipv6_in_standard_vxlan() {
    underlay_carries_ipv6_in_standard_vxlan(Mode::Xdp);
}

/// A UDP socket a victim pod listens on, at its IPv6 address.
struct Victim(UdpSocket);

impl Victim {
    fn bind(netns: &Netns, addr: Ipv6Addr) -> Self {
        let socket = netns
            .run(|| UdpSocket::bind(SocketAddr::new(addr.into(), 0)))
            .unwrap()
            .unwrap();
        socket.set_nonblocking(true).unwrap();
        Self(socket)
    }

    fn port(&self) -> u16 {
        self.0.local_addr().unwrap().port()
    }

    /// The sources of what arrived since the last call.
    fn arrivals(&self) -> Vec<IpAddr> {
        std::thread::sleep(SETTLE);
        let mut buf = [0u8; 2048];
        let mut from = Vec::new();
        while let Ok((_, addr)) = self.0.recv_from(&mut buf) {
            from.push(addr.ip());
        }
        from
    }
}

/// An IPv6 UDP frame from `src` to the victim, hop limit 64.
fn udp6_frame(macs: ([u8; 6], [u8; 6]), src: Ipv6Addr, dst: Ipv6Addr, port: u16) -> Vec<u8> {
    let mut frame = vxlan::inner_udp(macs, src, dst, port, b"fastpath ipv6");
    frame[14 + 7] = 64;
    frame
}

/// From a1's eth0, raw frames to a victim (a2 on the node, b1 across) from another pod's IPv6
/// address: dropped and counted; the same frame from a1's own address arrives.
fn pods_cannot_send_from_another_pods_ipv6_address(mode: Mode) {
    let tc = TestCluster::demo_in(mode);
    let hook = pod_program(mode).unwrap();
    let (node_a, a1) = (tc.node_netns("a"), tc.pod_netns("a1"));
    let a1_mac = tc.mac_of(&a1, "eth0");
    let gateway_mac = tc.mac_of(&node_a, BRIDGE);
    for (victim, victim_addr, forged) in [("a2", A2, B2), ("b1", B1, A2)] {
        let sink = Victim::bind(&tc.pod_netns(victim), victim_addr);
        let send = |src: Ipv6Addr| {
            let frame = udp6_frame((a1_mac, gateway_mac), src, victim_addr, sink.port());
            probe::send_raw_frame(&a1, "eth0", &frame);
        };
        // Neighbours first, so the honest frame is not held up by resolution.
        assert!(probe::ping(&a1, victim_addr, 1, &[]));
        let before = tc.counted("a", hook, DROP_SPOOFED_IPV6);
        send(forged);
        send(GATEWAY_A);
        send(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x99));
        assert_eq!(sink.arrivals(), Vec::<IpAddr>::new(), "{mode}: to {victim}");
        assert_eq!(
            tc.counted("a", hook, DROP_SPOOFED_IPV6) - before,
            3,
            "{mode}: counted as spoofed-ipv6"
        );
        send(A1);
        assert_eq!(
            sink.arrivals(),
            vec![IpAddr::V6(A1)],
            "{mode}: the honest twin reaches {victim}"
        );
        // Its own link-local address is its own, but it does not leave its link: the programs
        // leave it to the kernel, which routes it back onto the same link (the node's bridge,
        // to a2) and nowhere else (to b1).
        let before = tc.counted("a", hook, PASS_IPV6_LINK_LOCAL);
        let link_local = Ipv6Addr::from(frames::link_local(a1_mac));
        send(link_local);
        let expected = if victim == "a2" {
            vec![IpAddr::V6(link_local)]
        } else {
            Vec::new()
        };
        assert_eq!(sink.arrivals(), expected, "{mode}: link-local to {victim}");
        assert_eq!(
            tc.counted("a", hook, PASS_IPV6_LINK_LOCAL) - before,
            1,
            "{mode}: link-local to {victim}, passed"
        );
    }
}

#[test]
fn in_tc_mode_no_pod_sends_from_another_pods_ipv6_address() {
    pods_cannot_send_from_another_pods_ipv6_address(Mode::Tc);
}

#[test]
fn in_xdp_mode_no_pod_sends_from_another_pods_ipv6_address() {
    pods_cannot_send_from_another_pods_ipv6_address(Mode::Xdp);
}

/// From node b's underlay device (the peer, or anyone on its wire): VXLAN to node a with inner
/// IPv6 from outside b's prefix, and plain IPv6 claiming a pod's address (also behind two VLAN
/// priority tags, past which the guard's ingress hook does not look). None reaches a1; the same
/// VXLAN from b's own pod does, whole or as outer fragments.
fn peers_speak_only_for_their_own_ipv6_pods(mode: Mode) {
    let tc = TestCluster::demo_in(mode);
    let (node_a, node_b, a1) = (tc.node_netns("a"), tc.node_netns("b"), tc.pod_netns("a1"));
    let sink = Victim::bind(&a1, A1);
    let outer = vxlan::Outer {
        src_mac: tc.mac_of(&node_b, UNDERLAY_DEV),
        dst_mac: tc.mac_of(&node_a, UNDERLAY_DEV),
        src: UNDERLAY_B,
        dst: UNDERLAY_A,
        port: VXLAN_PORT,
    };
    let vteps = (Mac::vtep(UNDERLAY_B).0, Mac::vtep(UNDERLAY_A).0);
    let in_vxlan = |src: Ipv6Addr| {
        let inner = udp6_frame(vteps, src, A1, sink.port());
        vxlan::frame(&outer, FLAG_I, VNI, &inner)
    };
    let send = |frame: &[u8]| probe::send_raw_frame(&node_b, UNDERLAY_DEV, frame);
    assert!(
        probe::ping(&tc.pod_netns("b1"), A1, 1, &[]),
        "{mode}: warm up"
    );

    let stranger = Ipv6Addr::new(0x2001, 0xdb8, 7, 0, 0, 0, 0, 1);
    let underlay = |reason| tc.counted("a", Hook::TcUnderlay, reason);
    let (spoofed_before, pod_source_before, fragment_before) = (
        underlay(DROP_INNER_SPOOFED),
        underlay(DROP_UNDERLAY_POD_SOURCE),
        underlay(PASS_OVERLAY_FRAGMENT),
    );
    let guard_before = tc.guarded("a");
    send(&in_vxlan(A2));
    if mode != Mode::Kernel {
        // The kernel path would deliver it: its VXLAN device does not know whose prefix is whose.
        send(&in_vxlan(stranger));
    }
    // From an underlay address that is no peer's, with b's own pod's address inside.
    let unknown_peer = {
        let inner = udp6_frame(vteps, B2, A1, sink.port());
        let from_stranger = vxlan::Outer {
            src: std::net::Ipv4Addr::new(198, 18, 0, 99),
            ..outer
        };
        vxlan::frame(&from_stranger, FLAG_I, VNI, &inner)
    };
    let unknown_before = (
        underlay(DROP_UNKNOWN_PEER),
        guard_before[guard::VXLAN_UNKNOWN_PEER],
    );
    send(&unknown_peer);
    let plain = frames::ethernet(
        outer.dst_mac,
        outer.src_mac,
        ETH_IPV6,
        &udp6_frame(vteps, B1, A1, sink.port())[14..],
    );
    send(&plain);
    if mode != Mode::Kernel {
        // With no program the kernel strips the tags past the guard's hook: kernel mode's own
        // limit (see the README), for IPv4 too.
        send(&frames::tagged(&plain, &[(0x8100, 0), (0x8100, 0)]));
    }
    assert_eq!(sink.arrivals(), Vec::<IpAddr>::new(), "{mode}");
    let guard_after = tc.guarded("a");
    let by_guard = |rule: &str| guard_after[rule] - guard_before[rule];
    let unknown = if mode == Mode::Kernel {
        guard_after[guard::VXLAN_UNKNOWN_PEER] - unknown_before.1
    } else {
        underlay(DROP_UNKNOWN_PEER) - unknown_before.0
    };
    assert_eq!(
        unknown, 1,
        "{mode}: VXLAN with IPv6 inside from an unknown peer"
    );
    if mode == Mode::Kernel {
        assert_eq!(
            by_guard(guard::UNDERLAY_POD_SOURCE6),
            1,
            "{mode}: plain IPv6 from b1's address on the underlay"
        );
        // No program: the kernel's VXLAN device takes a peer's word for any address but this
        // node's own pods'.
        assert_eq!(by_guard(guard::OWN_POD_SOURCE6), 1, "{mode}");
    } else {
        assert_eq!(
            underlay(DROP_UNDERLAY_POD_SOURCE) - pod_source_before,
            2,
            "{mode}: plain IPv6 from b1's address, untagged and behind priority tags"
        );
        assert_eq!(
            underlay(DROP_INNER_SPOOFED) - spoofed_before,
            2,
            "{mode}: inner IPv6 sources outside b's prefix"
        );
    }
    send(&in_vxlan(B2));
    assert_eq!(
        sink.arrivals(),
        vec![IpAddr::V6(B2)],
        "{mode}: b's own pod's IPv6 arrives"
    );

    // Outer fragments (a kernel-mode peer's VXLAN over a path with a smaller MTU): the first is
    // checked and left to the kernel to reassemble, whose VXLAN device delivers the whole.
    let outer_fragments = |inner_src: Ipv6Addr| {
        let whole = in_vxlan(inner_src);
        let h = frames::Ipv4 {
            src: UNDERLAY_B.octets(),
            dst: UNDERLAY_A.octets(),
            ..frames::Ipv4::default()
        };
        let first = (whole.len() - 34 - 8) / 8 * 8;
        frames::fragments(h, &whole[34..], first)
            .map(|ip| frames::ethernet(outer.dst_mac, outer.src_mac, frames::ETH_IPV4, &ip))
    };
    let spoofed_before = underlay(DROP_INNER_SPOOFED);
    for fragment in outer_fragments(A2) {
        send(&fragment);
    }
    assert_eq!(
        sink.arrivals(),
        Vec::<IpAddr>::new(),
        "{mode}: forged, in fragments"
    );
    for fragment in outer_fragments(B2) {
        send(&fragment);
    }
    assert_eq!(
        sink.arrivals(),
        vec![IpAddr::V6(B2)],
        "{mode}: b's own pod's IPv6 in outer fragments arrives"
    );
    if mode != Mode::Kernel {
        assert_eq!(
            (
                underlay(DROP_INNER_SPOOFED) - spoofed_before,
                underlay(PASS_OVERLAY_FRAGMENT) - fragment_before
            ),
            (1, 1),
            "{mode}: the forged first fragment dropped, the honest one passed"
        );
    }
}

#[test]
fn in_kernel_mode_peers_speak_only_for_their_own_ipv6_pods() {
    peers_speak_only_for_their_own_ipv6_pods(Mode::Kernel);
}

#[test]
fn in_tc_mode_peers_speak_only_for_their_own_ipv6_pods() {
    peers_speak_only_for_their_own_ipv6_pods(Mode::Tc);
}

#[test]
fn in_xdp_mode_peers_speak_only_for_their_own_ipv6_pods() {
    peers_speak_only_for_their_own_ipv6_pods(Mode::Xdp);
}

/// `packet` (an IPv6 packet) with its hop limit set to `hop_limit`.
fn with_hop_limit(mut packet: Vec<u8>, hop_limit: u8) -> Vec<u8> {
    packet[7] = hop_limit;
    packet
}

/// `udp` (a UDP segment from `src` to `dst`) as two IPv6 fragments, the first carrying 32 bytes.
fn fragments6(src: Ipv6Addr, dst: Ipv6Addr, udp: &[u8]) -> [Vec<u8>; 2] {
    const UDP: u8 = 17;
    const FRAGMENT: u8 = 44;
    let id = 0x4650_0001u32.to_be_bytes();
    let header = |offset: usize, more: bool| {
        let field = ((offset / 8) << 3) as u16 | u16::from(more);
        [[UDP, 0].as_slice(), &field.to_be_bytes(), &id].concat()
    };
    let (first, rest) = udp.split_at(32);
    [
        frames::ipv6(
            src.octets(),
            dst.octets(),
            FRAGMENT,
            &[header(0, true), first.to_vec()].concat(),
        ),
        frames::ipv6(
            src.octets(),
            dst.octets(),
            FRAGMENT,
            &[header(32, false), rest.to_vec()].concat(),
        ),
    ]
    .map(|p| with_hop_limit(p, 64))
}

/// From a1, to a victim on its node and one across: IPv6 the programs do not parse is left to the
/// kernel, counted under its reason by a's pod program (and, across, by b's underlay program),
/// and the kernel does with it what it does: forwards what it can, answers a hop limit of one
/// with time exceeded rather than forwarding it.
fn ipv6_the_programs_do_not_parse_takes_the_kernel_path(mode: Mode) {
    let tc = TestCluster::demo_in(mode);
    let hook = pod_program(mode).unwrap();
    let (node_a, a1) = (tc.node_netns("a"), tc.pod_netns("a1"));
    let (a1_mac, gateway_mac) = (tc.mac_of(&a1, "eth0"), tc.mac_of(&node_a, BRIDGE));
    for (victim, victim_addr) in [("a2", A2), ("b1", B1)] {
        let across = victim == "b1";
        let sink = Victim::bind(&tc.pod_netns(victim), victim_addr);
        assert!(probe::ping(&a1, victim_addr, 1, &[]), "{mode}: {victim}");
        let udp = vxlan::udp_segment(A1.into(), victim_addr.into(), sink.port(), &pattern(64));
        let ipv6 = |next: u8, payload: &[u8]| {
            with_hop_limit(
                frames::ipv6(A1.octets(), victim_addr.octets(), next, payload),
                64,
            )
        };
        // Hop-by-hop options: PadN, to the header's eight bytes.
        let hop_by_hop = [[17, 0, 1, 4, 0, 0, 0, 0].as_slice(), &udp].concat();
        let cases = [
            (
                "hop limit 1",
                vec![with_hop_limit(ipv6(17, &udp), 1)],
                PASS_TTL_EXPIRED,
                false,
            ),
            (
                "hop-by-hop options",
                vec![ipv6(0, &hop_by_hop)],
                PASS_IPV6_EXTENSION,
                true,
            ),
            (
                "two fragments",
                fragments6(A1, victim_addr, &udp).to_vec(),
                PASS_IPV6_FRAGMENT,
                true,
            ),
        ];
        for (what, packets, reason, arrives) in cases {
            let sent = packets.len() as u64;
            let before = (
                tc.counted("a", hook, reason),
                tc.counted("b", Hook::TcUnderlay, reason),
            );
            for packet in &packets {
                let frame = frames::ethernet(gateway_mac, a1_mac, ETH_IPV6, packet);
                probe::send_raw_frame(&a1, "eth0", &frame);
            }
            let expected = if arrives {
                vec![IpAddr::V6(A1)]
            } else {
                vec![]
            };
            assert_eq!(sink.arrivals(), expected, "{mode}: {what} to {victim}");
            assert_eq!(
                tc.counted("a", hook, reason) - before.0,
                sent,
                "{mode}: {what} to {victim}, counted by a's {hook:?} program"
            );
            if across && arrives {
                assert_eq!(
                    tc.counted("b", Hook::TcUnderlay, reason) - before.1,
                    sent,
                    "{mode}: {what} to {victim}, counted by b's underlay program"
                );
            }
        }
    }
}

#[test]
fn in_tc_mode_ipv6_the_programs_do_not_parse_takes_the_kernel_path() {
    ipv6_the_programs_do_not_parse_takes_the_kernel_path(Mode::Tc);
}

#[test]
fn in_xdp_mode_ipv6_the_programs_do_not_parse_takes_the_kernel_path() {
    ipv6_the_programs_do_not_parse_takes_the_kernel_path(Mode::Xdp);
}

/// The demo's topology with IPv6 only: no IPv4 pod CIDR, no IPv4 pod addresses.
const IPV6_ONLY_CLUSTER: &str = r#"
mode = "tc"

[[node]]
name = "a"
simulated = true
pod_cidr6 = "2001:db8:1::/64"
underlay = { device = "fp-ul0", address = "198.18.0.1/24", mtu = 1500 }
pods = [
  { name = "a1", address6 = "2001:db8:1::2" },
  { name = "a2", address6 = "2001:db8:1::3" },
]

[[node]]
name = "b"
simulated = true
pod_cidr6 = "2001:db8:2::/64"
underlay = { device = "fp-ul0", address = "198.18.0.2/24", mtu = 1500 }
pods = [
  { name = "b1", address6 = "2001:db8:2::2" },
  { name = "b2", address6 = "2001:db8:2::3" },
]

[[underlay_link]]
nodes = ["a", "b"]
"#;

/// IPv6 instead of IPv4: pods on one node and across reach each other in every mode, `check`
/// echoes over IPv6 only, and a pod with no IPv4 address sends no IPv4 or ARP past the programs.
#[test]
fn an_ipv6_only_cluster_carries_ipv6_in_every_mode() {
    let config = control::config::ClusterConfig::parse(IPV6_ONLY_CLUSTER, "ipv6-only").unwrap();
    let mut tc = TestCluster::with_config(config);
    for mode in [Mode::Kernel, Mode::Tc, Mode::Xdp] {
        tc.cluster.mode_override = Some(mode);
        tc.up();
        let modes = (mode, mode);
        ipv6_flows(&tc, modes, "a1", ("a2", A2));
        ipv6_flows(&tc, modes, "a1", ("b1", B1));
        ipv6_flows(&tc, modes, "b2", ("a2", A2));
        let probes = control::reach::check_all(&tc.cluster, Duration::from_secs(2));
        assert!(
            probes.len() == 12
                && probes
                    .iter()
                    .all(|p| p.rtt_us.is_some() && p.to_address.is_ipv6()),
            "{mode}: every pair over IPv6: {probes:?}"
        );
        let addresses = ip_json(&tc.pod_netns("a1"), &["-4", "addr", "show", "dev", "eth0"]);
        assert!(
            addresses[0]["addr_info"]
                .as_array()
                .is_none_or(Vec::is_empty),
            "{mode}: no IPv4 on a1: {addresses}"
        );
        let Some(hook) = pod_program(mode) else {
            continue;
        };
        // IPv4 (from any source, 0.0.0.0 included) and ARP from a pod that has no IPv4 address.
        let a1 = tc.pod_netns("a1");
        let (a1_mac, gateway_mac) = (
            tc.mac_of(&a1, "eth0"),
            tc.mac_of(&tc.node_netns("a"), BRIDGE),
        );
        let (ip_before, arp_before) = (
            tc.counted("a", hook, DROP_SPOOFED_IP),
            tc.counted("a", hook, DROP_ARP_SPOOFED),
        );
        for src in [[0, 0, 0, 0], [198, 18, 1, 2]] {
            let ipv4 = frames::Ipv4 {
                src,
                dst: [198, 18, 1, 3],
                ..frames::Ipv4::default()
            };
            probe::send_raw_frame(
                &a1,
                "eth0",
                &frames::ipv4_udp(gateway_mac, a1_mac, ipv4, 9, b"v4"),
            );
        }
        let probe_arp = frames::arp(
            1,
            a1_mac,
            [0, 0, 0, 0].into(),
            [0; 6],
            [198, 18, 1, 3].into(),
        );
        probe::send_raw_frame(
            &a1,
            "eth0",
            &frames::ethernet(frames::BROADCAST, a1_mac, frames::ETH_ARP, &probe_arp),
        );
        assert_eq!(
            (
                tc.counted("a", hook, DROP_SPOOFED_IP) - ip_before,
                tc.counted("a", hook, DROP_ARP_SPOOFED) - arp_before
            ),
            (2, 1),
            "{mode}: IPv4 and ARP from an IPv6-only pod"
        );
    }
}
