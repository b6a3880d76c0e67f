//! The cross-node overlay end to end: pods on two nodes reach each other in every pair of modes
//! (eBPF encapsulation and decapsulation on one side, the kernel's VXLAN device on the other, or
//! both), what goes over the underlay is standard VXLAN that fits the underlay MTU, and VXLAN that
//! is not from a peer or not well formed never reaches a pod.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    process::Command,
    time::Duration,
};

use control::{
    config::Mode,
    datapath::{self, CounterRow, Hook},
    mac::Mac,
    netns::Netns,
    traffic::{self, UdpSink},
};
use datapath_common::reasons::*;
use tests::{
    TestCluster,
    capture::Capture,
    pod_program,
    probe::{self, pattern},
    vxlan::{self, FLAG_I},
    witness,
};

const A1: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
const B1: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 2);
const UNDERLAY_A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const UNDERLAY_B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const UNDERLAY_DEV: &str = "fp-ul0";
const VNI: u32 = 42;
const PORT: u16 = 4789;
const UNDERLAY_MTU: usize = 1500;
const PINGS: u32 = 5;
const UDP_COUNT: u64 = 200;
const TRANSFER: usize = 2 * 1024 * 1024;
/// Largest ICMP payload a DF ping fits in the pods' 1450-byte MTU (1450 - 20 - 8).
const LARGEST_PING: usize = 1422;

fn pod_ns(tc: &TestCluster, name: &str) -> Netns {
    tc.pod_netns(name)
}

fn counters(tc: &TestCluster, node: &str) -> Vec<CounterRow> {
    let node = tc.cluster.config.node(node).unwrap();
    datapath::pinned_counters(&tc.cluster.pin_dir(node)).unwrap_or_default()
}

/// Packets `hook`'s program on `node` counted under `reason`.
fn counted(tc: &TestCluster, node: &str, hook: Hook, reason: Reason) -> u64 {
    datapath::packets(&counters(tc, node), hook, reason)
}

/// The demo cluster, both nodes in `mode`.
fn cluster_in(mode: Mode) -> TestCluster {
    let mut tc = TestCluster::demo();
    tc.set_modes(mode, mode);
    tc
}

/// Ping, UDP and a byte-exact TCP transfer from pod `from` to pod `to` (on the other node);
/// checks the flows arrived, with no checksum error at the receiver, and that the eBPF sides
/// counted them as encapsulated and decapsulated.
fn cross_node_flows(
    tc: &TestCluster,
    (from, from_node, from_mode): (&str, &str, Mode),
    to: (&str, Ipv4Addr, &str, Mode),
) {
    let (to, to_addr, to_node, to_mode) = to;
    let (src, dst) = (pod_ns(tc, from), pod_ns(tc, to));
    let what = format!("{from} ({from_mode}) -> {to} ({to_mode})");
    let encap = |tc: &TestCluster| {
        pod_program(from_mode).map_or(0, |p| counted(tc, from_node, p, REDIRECT_ENCAPSULATED))
    };
    let decap = |tc: &TestCluster| counted(tc, to_node, Hook::TcUnderlay, REDIRECT_DECAPSULATED);
    let (encap_before, decap_before) = (encap(tc), decap(tc));
    let snmp_before = witness::snmp(&dst);

    assert!(probe::ping(&src, to_addr, PINGS, &[]), "{what}: ping");
    let sink = UdpSink::bind(&dst, SocketAddrV4::new(to_addr, 0)).unwrap();
    let from_addr = tc.pods().into_iter().find(|p| p.0 == from).unwrap().1;
    let sent = traffic::send_udp(
        &src,
        from_addr,
        sink.local_addr(),
        UDP_COUNT,
        300,
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(sent, UDP_COUNT, "{what}: UDP sent");
    assert_eq!(
        sink.wait_for(UDP_COUNT, Duration::from_secs(5)),
        UDP_COUNT,
        "{what}: UDP delivered"
    );
    let got = probe::tcp_transfer(&src, &dst, to_addr, TRANSFER);
    assert!(
        got.len() == TRANSFER && got == pattern(TRANSFER),
        "{what}: TCP byte for byte ({} of {TRANSFER} bytes)",
        got.len()
    );

    let snmp_after = witness::snmp(&dst);
    assert_eq!(
        (snmp_after.udp_in_csum_errors, snmp_after.tcp_in_csum_errors),
        (
            snmp_before.udp_in_csum_errors,
            snmp_before.tcp_in_csum_errors
        ),
        "{what}: UDP/TCP checksum errors at {to}"
    );
    // Echo requests (or replies) and datagrams are single packets: each one counts once.
    let flow = u64::from(PINGS) + UDP_COUNT;
    if from_mode != Mode::Kernel {
        let n = encap(tc) - encap_before;
        assert!(
            n >= flow,
            "{what}: {n} encapsulated at {from_node}, < {flow}"
        );
    }
    if to_mode != Mode::Kernel {
        let n = decap(tc) - decap_before;
        assert!(n >= flow, "{what}: {n} decapsulated at {to_node}, < {flow}");
    }
}

#[test]
fn every_mode_pair_carries_ping_udp_and_tcp_across_nodes() {
    let mut tc = TestCluster::demo();
    let pairs = [
        (Mode::Xdp, Mode::Xdp),
        (Mode::Tc, Mode::Tc),
        (Mode::Xdp, Mode::Tc),
        (Mode::Xdp, Mode::Kernel),
        (Mode::Tc, Mode::Kernel),
        (Mode::Kernel, Mode::Kernel),
        // And back, so each node also switches while its peer keeps its mode.
        (Mode::Kernel, Mode::Tc),
        (Mode::Kernel, Mode::Xdp),
        (Mode::Tc, Mode::Xdp),
    ];
    for (a, b) in pairs {
        tc.set_modes(a, b);
        cross_node_flows(&tc, ("a1", "a", a), ("b1", B1, "b", b));
        cross_node_flows(&tc, ("b1", "b", b), ("a1", A1, "a", a));
    }
}

#[test]
fn switching_one_node_under_cross_node_ping_loses_nothing() {
    let mut tc = cluster_in(Mode::Tc);
    let ping = probe::background_ping(&pod_ns(&tc, "a1"), B1, 800);
    for a in [
        Mode::Xdp,
        Mode::Kernel,
        Mode::Tc,
        Mode::Kernel,
        Mode::Xdp,
        Mode::Tc,
    ] {
        tc.set_modes(a, Mode::Tc);
        std::thread::sleep(Duration::from_millis(400));
    }
    let (sent, received) = probe::ping_result(ping);
    assert_eq!(
        (sent, received),
        (800, 800),
        "six switches of node a under a 10 ms ping to b1"
    );
}

/// What a1 -> b1 traffic put on the underlay: the VXLAN frames node b received from node a (XDP
/// redirects bypass captures on the sending device), and how many of those node a sent were GSO
/// packets.
struct Wire {
    received: Vec<tests::capture::Frame>,
    sent_gso: usize,
}

/// Captures on both underlay ends while a1 pings, sends UDP to and streams TCP to b1.
fn capture_cross_node_traffic(tc: &TestCluster) -> Wire {
    let (a1, b1) = (pod_ns(tc, "a1"), pod_ns(tc, "b1"));
    let at_a = Capture::start(&tc.node_netns("a"), UNDERLAY_DEV);
    let at_b = Capture::start(&tc.node_netns("b"), UNDERLAY_DEV);
    assert!(probe::ping(&a1, B1, 3, &[]), "ping a1 -> b1");
    let sink = UdpSink::bind(&b1, SocketAddrV4::new(B1, 0)).unwrap();
    traffic::send_udp(&a1, A1, sink.local_addr(), 50, 300, Duration::from_secs(5)).unwrap();
    assert_eq!(sink.wait_for(50, Duration::from_secs(5)), 50);
    let got = probe::tcp_transfer(&a1, &b1, B1, TRANSFER);
    assert_eq!(got.len(), TRANSFER);
    std::thread::sleep(Duration::from_millis(200));
    let from_a = |f: &tests::capture::Frame| {
        vxlan::is_udp_to(f, PORT) && f.data[26..30] == UNDERLAY_A.octets()
    };
    let sent_gso = at_a
        .finish()
        .iter()
        .filter(|f| f.outgoing && from_a(f) && f.gso_size != 0)
        .count();
    let received = at_b
        .finish()
        .into_iter()
        .filter(|f| !f.outgoing && from_a(f))
        .collect();
    Wire { received, sent_gso }
}

fn underlay_carries_standard_vxlan_within_the_mtu(mode: Mode) {
    let tc = cluster_in(mode);
    let Wire { received, sent_gso } = capture_cross_node_traffic(&tc);
    assert!(
        received.len() >= 50,
        "{mode}: {} VXLAN frames",
        received.len()
    );
    let (vtep_a, vtep_b) = (Mac::vtep(UNDERLAY_A).0, Mac::vtep(UNDERLAY_B).0);
    let mut protocols = std::collections::BTreeSet::new();
    for f in &received {
        let p = vxlan::parse(f).unwrap_or_else(|e| panic!("{mode}: not standard VXLAN: {e}"));
        assert_eq!(
            (p.outer_src, p.outer_dst, p.port, p.vni),
            (UNDERLAY_A, UNDERLAY_B, PORT, VNI),
            "{mode}: outer addresses, port, VNI"
        );
        assert_eq!(
            (p.inner_src_mac, p.inner_dst_mac),
            (vtep_a, vtep_b),
            "{mode}: inner MACs are the VTEPs', as the kernel's VXLAN device sets them"
        );
        assert_eq!(
            (p.inner_src, p.inner_dst),
            (A1.into(), B1.into()),
            "{mode}: inner addresses"
        );
        assert_eq!(
            p.inner_ttl, 63,
            "{mode}: inner TTL one less, as routing on node a leaves it"
        );
        assert!(
            p.wire_l3_len <= UNDERLAY_MTU,
            "{mode}: {}-byte packet on a {UNDERLAY_MTU}-byte underlay",
            p.wire_l3_len
        );
        assert!(
            p.source_port >= 32768,
            "{mode}: source port {}",
            p.source_port
        );
        protocols.insert(p.inner_proto);
    }
    assert_eq!(
        protocols.into_iter().collect::<Vec<_>>(),
        [1, 6, 17],
        "{mode}: ICMP, TCP and UDP all seen"
    );
    if mode != Mode::Xdp {
        // The bulk TCP stays one GSO packet down to the underlay, as on the kernel path. (XDP on
        // the pod's veth takes GSO away from the pod; its frames are single packets.)
        assert!(sent_gso > 0, "{mode}: no GSO packet reached the underlay");
    }
    if mode != Mode::Kernel {
        let encapsulated = counted(&tc, "a", pod_program(mode).unwrap(), REDIRECT_ENCAPSULATED);
        let decapsulated = counted(&tc, "b", Hook::TcUnderlay, REDIRECT_DECAPSULATED);
        assert!(
            encapsulated.min(decapsulated) >= received.len() as u64,
            "{mode}: {encapsulated} encapsulated, {decapsulated} decapsulated, {} frames on the underlay",
            received.len()
        );
    }
}

#[test]
fn xdp_mode_sends_standard_vxlan_within_the_underlay_mtu() {
    underlay_carries_standard_vxlan_within_the_mtu(Mode::Xdp);
}

#[test]
fn tc_mode_sends_standard_vxlan_within_the_underlay_mtu_and_keeps_gso() {
    underlay_carries_standard_vxlan_within_the_mtu(Mode::Tc);
}

#[test]
fn kernel_mode_sends_the_same_vxlan() {
    underlay_carries_standard_vxlan_within_the_mtu(Mode::Kernel);
}

/// The largest DF ping fits; raised to the underlay's 1500, a pod's too-big DF packet takes the
/// kernel path, which answers with fragmentation-needed for the overlay MTU.
fn mtu_is_respected(mode: Mode) {
    let tc = cluster_in(mode);
    let a1 = pod_ns(&tc, "a1");
    let largest = LARGEST_PING.to_string();
    assert!(
        probe::ping(&a1, B1, 2, &["-M", "do", "-s", &largest]),
        "{mode}: DF ping of {LARGEST_PING} bytes a1 -> b1"
    );
    let one_more = (LARGEST_PING + 1).to_string();
    assert!(
        !probe::ping(&a1, B1, 1, &["-M", "do", "-s", &one_more]),
        "{mode}: {} bytes do not fit the pod MTU",
        LARGEST_PING + 1
    );

    // Both ends of a1's veth at 1500: the pod can now send what cannot be encapsulated.
    let node_a = tc.node_netns("a");
    for (ns, dev) in [(&a1, "eth0"), (&node_a, "fp-a1")] {
        let ok = Command::new("ip")
            .args(["-n", ns.name().unwrap(), "link", "set", dev, "mtu", "1500"])
            .status()
            .unwrap()
            .success();
        assert!(ok, "raise the MTU of {dev}");
    }
    let too_big_before = pod_program(mode).map_or(0, |p| counted(&tc, "a", p, PASS_TOO_BIG));
    let out = Command::new("ip")
        .args(["netns", "exec", a1.name().unwrap()])
        .args(["ping", "-n", "-c", "1", "-W", "2", "-M", "do", "-s", "1472"])
        .arg(B1.to_string())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && text.contains("mtu = 1450"),
        "{mode}: a 1500-byte DF packet gets fragmentation-needed for 1450: {text}"
    );
    if let Some(p) = pod_program(mode) {
        let n = counted(&tc, "a", p, PASS_TOO_BIG) - too_big_before;
        assert!(
            n >= 1,
            "{mode}: the too-big packet was counted and passed: {n}"
        );
    }
}

#[test]
fn xdp_mode_respects_the_overlay_mtu() {
    mtu_is_respected(Mode::Xdp);
}

#[test]
fn tc_mode_respects_the_overlay_mtu() {
    mtu_is_respected(Mode::Tc);
}

#[test]
fn kernel_mode_respects_the_overlay_mtu() {
    mtu_is_respected(Mode::Kernel);
}

#[test]
fn vxlan_not_from_a_peer_or_not_well_formed_never_reaches_a_pod() {
    let tc = cluster_in(Mode::Tc);
    let (node_a, b1) = (tc.node_netns("a"), pod_ns(&tc, "b1"));
    let sink = UdpSink::bind(&b1, SocketAddrV4::new(B1, 0)).unwrap();
    let outer = |src: Ipv4Addr| vxlan::Outer {
        src_mac: tc.mac_of(&node_a, UNDERLAY_DEV),
        dst_mac: tc.mac_of(&tc.node_netns("b"), UNDERLAY_DEV),
        src,
        dst: UNDERLAY_B,
        port: PORT,
    };
    let vteps = (Mac::vtep(UNDERLAY_A).0, Mac::vtep(UNDERLAY_B).0);
    let inner =
        |src: Ipv4Addr| vxlan::inner_udp(vteps, src, B1, sink.local_addr().port(), b"fastpath");
    let good = vxlan::frame(&outer(UNDERLAY_A), FLAG_I, VNI, &inner(A1));
    let mut truncated = good.clone();
    truncated.truncate(50 + 14 + 10); // ends inside the inner IPv4 header
    let cases = [
        (
            PASS_OTHER_VNI,
            vxlan::frame(&outer(UNDERLAY_A), FLAG_I, VNI + 1, &inner(A1)),
        ),
        (
            DROP_UNKNOWN_PEER,
            vxlan::frame(
                &outer(Ipv4Addr::new(198, 18, 0, 99)),
                FLAG_I,
                VNI,
                &inner(A1),
            ),
        ),
        (DROP_VXLAN_TRUNCATED, truncated),
        (
            DROP_VXLAN_BAD_FLAGS,
            vxlan::frame(&outer(UNDERLAY_A), 0x0c, VNI, &inner(A1)),
        ),
        (
            DROP_INNER_SPOOFED,
            vxlan::frame(
                &outer(UNDERLAY_A),
                FLAG_I,
                VNI,
                &inner(Ipv4Addr::new(198, 18, 2, 3)),
            ),
        ),
    ];
    let count = |reason: Reason| counted(&tc, "b", Hook::TcUnderlay, reason);

    // The same frame, well formed and from a peer, arrives: the test can see a delivery.
    let delivered = count(REDIRECT_DECAPSULATED);
    tests::probe::send_raw_frame(&node_a, UNDERLAY_DEV, &good);
    assert_eq!(
        sink.wait_for(1, Duration::from_secs(2)),
        1,
        "the good frame reached b1"
    );
    assert_eq!(count(REDIRECT_DECAPSULATED), delivered + 1);

    for (reason, frame) in &cases {
        let before = count(*reason);
        tests::probe::send_raw_frame(&node_a, UNDERLAY_DEV, frame);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(count(*reason), before + 1, "counted under {reason}");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.received(), 1, "only the good frame reached b1");

    tests::probe::send_raw_frame(&node_a, UNDERLAY_DEV, &good);
    assert_eq!(
        sink.wait_for(2, Duration::from_secs(2)),
        2,
        "b1 still takes good frames"
    );
}
