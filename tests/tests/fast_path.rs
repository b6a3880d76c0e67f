//! The same-node fast path end to end: pods on one node reach each other through the XDP or TC
//! program, the bridge never sees their traffic, checksums stay valid, forged sources are dropped,
//! unknown destinations still take the kernel path, and mode switches lose nothing.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    process::Stdio,
    time::Duration,
};

use control::{
    cluster::{self, RunningMode},
    config::Mode,
    datapath::{self, CounterRow, Datapath, Hook},
    mac::Mac,
    netlink::Netlink,
    netns::Netns,
    traffic::{self, UdpSink},
};
use datapath_common::reasons::*;
use tests::{
    TestCluster, fastpath,
    frames::{self, Ipv4},
    probe::{self, pattern},
    witness::{self, BridgeWitness},
};

const A1: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
const A2: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 3);
const NOBODY: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 77);
const UDP_COUNT: u64 = 200;
const PINGS: u32 = 5;
const TRANSFER: usize = 2 * 1024 * 1024;

fn pod_ns(tc: &TestCluster, name: &str) -> Netns {
    tc.pod_netns(name)
}

fn pod_mac(tc: &TestCluster, name: &str) -> [u8; 6] {
    tc.mac_of(&pod_ns(tc, name), "eth0")
}

fn counters(tc: &TestCluster) -> Vec<CounterRow> {
    let node = tc.cluster.config.node("a").unwrap();
    datapath::pinned_counters(&tc.cluster.pin_dir(node)).unwrap()
}

/// Packets counted under `reason`, by any program.
fn count(rows: &[CounterRow], reason: Reason) -> u64 {
    rows.iter()
        .filter(|r| r.reason == reason)
        .map(|r| r.packets)
        .sum()
}

fn redirected(rows: &[CounterRow]) -> u64 {
    rows.iter()
        .filter(|r| r.verdict == "redirect")
        .map(|r| r.packets)
        .sum()
}

/// Ping, UDP and a TCP transfer a1 -> a2; returns the bridge's pod-to-pod count for the flows.
fn same_node_flows(tc: &TestCluster, witness: &BridgeWitness) -> u64 {
    let (a1, a2) = (pod_ns(tc, "a1"), pod_ns(tc, "a2"));
    let before = witness::snmp(&a2);
    let bridge_before = witness.pod_to_pod();

    assert!(probe::ping(&a1, A2, PINGS, &[]), "ping a1 -> a2");
    let sink = UdpSink::bind(&a2, SocketAddrV4::new(A2, 0)).unwrap();
    let sent = traffic::send_udp(
        &a1,
        A1,
        sink.local_addr(),
        UDP_COUNT,
        200,
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(sent, UDP_COUNT);
    assert_eq!(
        sink.wait_for(UDP_COUNT, Duration::from_secs(5)),
        UDP_COUNT,
        "UDP a1 -> a2 delivered"
    );
    let got = probe::tcp_transfer(&a1, &a2, A2, TRANSFER);
    assert!(
        got.len() == TRANSFER && got == pattern(TRANSFER),
        "TCP a1 -> a2 byte for byte"
    );

    let after = witness::snmp(&a2);
    assert!(
        after.udp_in_datagrams >= before.udp_in_datagrams + UDP_COUNT,
        "{before:?} -> {after:?}"
    );
    assert_eq!(
        after.udp_in_csum_errors, before.udp_in_csum_errors,
        "UDP checksum errors at a2"
    );
    assert_eq!(
        after.tcp_in_csum_errors, before.tcp_in_csum_errors,
        "TCP checksum errors at a2"
    );
    witness.pod_to_pod() - bridge_before
}

fn fast_path_bypasses_the_bridge(mode: Mode) {
    let tc = TestCluster::demo_in(mode);
    let witness = BridgeWitness::install(&tc.node_netns("a"), A1, A2, NOBODY);
    let before = redirected(&counters(&tc));
    let bridged = same_node_flows(&tc, &witness);
    let rows = counters(&tc);
    let flow = u64::from(PINGS) * 2 + UDP_COUNT;
    assert!(
        redirected(&rows) - before >= flow,
        "{mode}: redirected {} < {flow}: {rows:?}",
        redirected(&rows) - before
    );
    assert_eq!(
        bridged, 0,
        "{mode}: the bridge forwarded none of the a1 -> a2 flow"
    );
    assert_eq!(
        count(&rows, DROP_SPOOFED_IP) + count(&rows, DROP_SPOOFED_MAC),
        0
    );
}

#[test]
fn xdp_mode_carries_same_node_traffic_past_the_bridge_with_valid_checksums() {
    fast_path_bypasses_the_bridge(Mode::Xdp);
}

#[test]
fn tc_mode_carries_same_node_traffic_past_the_bridge_with_valid_checksums() {
    fast_path_bypasses_the_bridge(Mode::Tc);
}

#[test]
fn kernel_mode_sends_the_same_flows_through_the_bridge() {
    let tc = TestCluster::demo_in(Mode::Kernel);
    let witness = BridgeWitness::install(&tc.node_netns("a"), A1, A2, NOBODY);
    let bridged = same_node_flows(&tc, &witness);
    assert!(
        bridged >= u64::from(PINGS) + UDP_COUNT,
        "the bridge forwarded {bridged}"
    );
    let node = tc.cluster.config.node("a").unwrap();
    assert!(
        datapath::pinned_links(&tc.cluster.pin_dir(node))
            .unwrap()
            .is_empty(),
        "no programs attached"
    );
}

fn forged_sources_are_dropped_and_unknown_destinations_take_the_kernel_path(mode: Mode) {
    let tc = TestCluster::demo_in(mode);
    let witness = BridgeWitness::install(&tc.node_netns("a"), A1, A2, NOBODY);
    let (a1, a2) = (pod_ns(&tc, "a1"), pod_ns(&tc, "a2"));
    let (a1_mac, a2_mac) = (pod_mac(&tc, "a1"), pod_mac(&tc, "a2"));
    let sink = UdpSink::bind(&a2, SocketAddrV4::new(A2, 9)).unwrap();
    let frame = |src_mac: [u8; 6], src_ip: [u8; 4]| {
        let mut f = frames::udp_frame(
            Ipv4 {
                src: src_ip,
                dst: A2.octets(),
                ..Ipv4::default()
            },
            b"forged?",
        );
        f[..6].copy_from_slice(&a2_mac);
        f[6..12].copy_from_slice(&src_mac);
        f
    };

    // The honest frame arrives: the injection itself works.
    probe::send_raw_frame(&a1, "eth0", &frame(a1_mac, A1.octets()));
    assert_eq!(
        sink.wait_for(1, Duration::from_secs(2)),
        1,
        "{mode}: the honest raw frame arrives"
    );

    let before = counters(&tc);
    probe::send_raw_frame(&a1, "eth0", &frame(a1_mac, [198, 18, 1, 99]));
    probe::send_raw_frame(&a1, "eth0", &frame([0x02, 0, 0, 0, 0, 0x99], A1.octets()));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.received(), 1, "{mode}: no forged frame reached a2");
    let after = counters(&tc);
    assert_eq!(
        count(&after, DROP_SPOOFED_IP),
        count(&before, DROP_SPOOFED_IP) + 1,
        "{mode}"
    );
    assert_eq!(
        count(&after, DROP_SPOOFED_MAC),
        count(&before, DROP_SPOOFED_MAC) + 1,
        "{mode}"
    );

    // An address no pod has: a1 resolves it (a static entry) and sends; the program passes it
    // and the bridge sees it.
    let nl = tc.rt.block_on(async { Netlink::open(&a1) }).unwrap();
    tc.rt
        .block_on(nl.replace_neighbour("eth0", NOBODY.into(), Mac([0x02, 0xfa, 0, 0, 0, 0x77])))
        .unwrap();
    let sent = traffic::send_udp(
        &a1,
        A1,
        SocketAddrV4::new(NOBODY, 9),
        10,
        64,
        Duration::from_secs(2),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let rows = counters(&tc);
    assert!(
        count(&rows, PASS_NO_ENDPOINT) >= count(&after, PASS_NO_ENDPOINT) + sent,
        "{mode}: {rows:?}"
    );
    assert!(
        witness.unknown() >= sent,
        "{mode}: the bridge saw {} of {sent}",
        witness.unknown()
    );
}

#[test]
fn xdp_drops_forged_sources_and_passes_unknown_destinations() {
    forged_sources_are_dropped_and_unknown_destinations_take_the_kernel_path(Mode::Xdp);
}

#[test]
fn tc_drops_forged_sources_and_passes_unknown_destinations() {
    forged_sources_are_dropped_and_unknown_destinations_take_the_kernel_path(Mode::Tc);
}

#[test]
fn switching_modes_under_a_10ms_ping_loses_nothing() {
    let mut tc = TestCluster::demo_in(Mode::Kernel);
    let a1 = pod_ns(&tc, "a1");
    let mut ping = probe::background_ping(&a1, A2, 1200);
    for mode in [
        Mode::Xdp,
        Mode::Tc,
        Mode::Kernel,
        Mode::Tc,
        Mode::Xdp,
        Mode::Kernel,
    ] {
        tc.cluster.mode_override = Some(mode);
        let changes = tc.up();
        assert!(!changes.is_empty(), "switching to {mode} changed something");
        let program = match mode {
            Mode::Xdp => Some(Hook::Xdp),
            Mode::Tc => Some(Hook::Tc),
            Mode::Kernel => None,
        };
        let redirected_by = |rows: &[CounterRow]| -> u64 {
            rows.iter()
                .filter(|r| {
                    Some(r.program) == program.map(Hook::program) && r.verdict == "redirect"
                })
                .map(|r| r.packets)
                .sum()
        };
        let before = redirected_by(&counters(&tc));
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            ping.try_wait().unwrap().is_none(),
            "the ping ended before the switches did: give it a higher count"
        );
        if program.is_some() {
            // 500 ms of a 10 ms ping: about 50 echoes and 50 replies, fewer on a loaded machine.
            let carried = redirected_by(&counters(&tc)) - before;
            assert!(
                carried >= 20,
                "{mode} carried the ping: {carried} redirected"
            );
        }
    }
    let (sent, received) = probe::ping_result(ping);
    assert_eq!(
        received,
        sent,
        "{} of {sent} pings lost across six mode switches",
        sent - received
    );
    assert!(sent >= 1190, "ping ran: {sent}");
}

#[test]
fn the_datapath_outlives_a_killed_control_plane() {
    let tc = TestCluster::demo();
    let prefix = tc.cluster.prefix().to_string();
    let out = fastpath(&prefix, None)
        .args(["up", "--mode", "tc"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a1 = pod_ns(&tc, "a1");
    let ping = probe::background_ping(&a1, A2, 300);
    for delay_ms in [20, 60, 120] {
        std::thread::sleep(Duration::from_millis(300));
        let mut child = fastpath(&prefix, None)
            .args(["up", "--mode", "tc"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let (sent, received) = probe::ping_result(ping);
    assert_eq!(
        received, sent,
        "pings lost while control planes were killed"
    );

    // A fresh process still sees the programs and the counters.
    let status = fastpath(&prefix, None)
        .args(["status", "--json"])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let a1_host = &status["nodes"][0]["pods"][0]["host_veth"];
    assert_eq!(a1_host["name"], "fp-a1");
    assert_eq!(
        a1_host["tcx_programs"].as_array().map(Vec::len),
        Some(1),
        "{a1_host}"
    );
    let stats = fastpath(&prefix, None)
        .args(["stats", "--json"])
        .output()
        .unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    let switched: u64 = stats[0]["counters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["program"] == Hook::Tc.program() && c["reason"] == REDIRECT_SWITCHED.name())
        .map(|c| c["packets"].as_u64().unwrap())
        .sum();
    assert!(
        switched >= u64::from(sent) * 2,
        "switched {switched} for {sent} echo round trips"
    );
}

#[test]
fn the_maps_follow_pods_as_they_come_and_go() {
    let mut tc = TestCluster::demo_in(Mode::Tc);
    let a2_mac = pod_mac(&tc, "a2");
    let a1 = pod_ns(&tc, "a1");
    let node = tc
        .cluster
        .config
        .nodes
        .iter()
        .position(|n| n.name == "a")
        .unwrap();

    // a2 leaves: its namespace goes and the maps forget it, so a frame to its old address and MAC
    // is no longer redirected.
    let a2 = tc.cluster.config.nodes[node].pods.pop().expect("a2");
    assert_eq!(a2.name, "a2");
    let changes = tc.up().join("\n");
    assert!(
        changes.contains("fast-path map entries of node a"),
        "{changes}"
    );
    let mut frame = frames::udp_frame(
        Ipv4 {
            src: A1.octets(),
            dst: A2.octets(),
            ..Ipv4::default()
        },
        b"gone?",
    );
    frame[..6].copy_from_slice(&a2_mac);
    frame[6..12].copy_from_slice(&pod_mac(&tc, "a1"));
    let before = counters(&tc);
    probe::send_raw_frame(&a1, "eth0", &frame);
    std::thread::sleep(Duration::from_millis(200));
    let after = counters(&tc);
    assert_eq!(
        count(&after, PASS_NO_ENDPOINT),
        count(&before, PASS_NO_ENDPOINT) + 1
    );
    assert_eq!(
        redirected(&after),
        redirected(&before),
        "nothing redirected to a pod that left"
    );

    // a2 comes back (a new veth, a new ifindex): the fast path reaches it again.
    tc.cluster.config.nodes[node].pods.push(a2);
    tc.up();
    let before = redirected(&counters(&tc));
    assert!(probe::ping(&a1, A2, 3, &[]), "a1 -> a2 after it came back");
    assert!(
        redirected(&counters(&tc)) >= before + 6,
        "echoes and replies redirected"
    );
}

#[test]
fn up_puts_its_own_build_of_a_program_into_a_link_that_runs_another() {
    let tc = TestCluster::demo_in(Mode::Tc);
    let a1 = pod_ns(&tc, "a1");
    let dir = tc.cluster.pin_dir(tc.cluster.config.node("a").unwrap());
    let link = datapath::pinned_links(&dir)
        .unwrap()
        .into_iter()
        .find(|l| l.dev == "fp-a1" && l.hook == Hook::Tc)
        .expect("a1's tc link");
    let pin = link.hook.link_pin(&dir, &link.dev, link.ifindex);
    // Another program in a1's link, as an older fastpath would have left it: tc_pod of another
    // load, with maps of its own where the fast path is off, which passes a1's frames to the
    // kernel path.
    let other = Datapath::load(None).unwrap();
    let program = other.program_fd(datapath::TC_POD).unwrap();
    assert!(datapath::run_in_link(&pin, program).unwrap());
    assert!(
        !datapath::run_in_link(&pin, program).unwrap(),
        "already runs it"
    );
    let before = redirected(&counters(&tc));
    assert!(probe::ping(&a1, A2, 3, &[]));
    assert_eq!(
        redirected(&counters(&tc)) - before,
        3,
        "only a2's replies take the fast path"
    );

    let changes = tc.up().join("\n");
    assert!(
        changes.contains("replaced an older build of tc_pod on fp-a1"),
        "{changes}"
    );
    assert!(pin.exists(), "the same link, pinned where it was");
    let before = redirected(&counters(&tc));
    assert!(probe::ping(&a1, A2, 3, &[]));
    assert_eq!(redirected(&counters(&tc)) - before, 6, "both ways again");
    assert!(
        tc.up().is_empty(),
        "a second up finds its own build everywhere"
    );
}

#[test]
fn status_shows_the_mode_the_pods_run_in_beside_the_configured_one() {
    let mut tc = TestCluster::demo_in(Mode::Xdp);
    let status = tc.status();
    for node in &status.nodes {
        assert_eq!(node.mode, Mode::Tc, "the demo's configured mode");
        assert_eq!(node.running_mode, Some(RunningMode::Xdp), "{node:#?}");
    }
    let text = cluster::render_status(&status);
    assert!(
        text.contains("mode xdp running, tc in the config"),
        "{text}"
    );

    tc.cluster.mode_override = None;
    tc.up();
    let status = tc.status();
    assert!(
        status
            .nodes
            .iter()
            .all(|n| n.running_mode == Some(RunningMode::Tc)),
        "{status:#?}"
    );
    let text = cluster::render_status(&status);
    assert!(!text.contains("in the config"), "{text}");

    // a1 loses its link: node a runs two modes.
    let dir = tc.cluster.pin_dir(tc.cluster.config.node("a").unwrap());
    let link = datapath::pinned_links(&dir)
        .unwrap()
        .into_iter()
        .find(|l| l.dev == "fp-a1")
        .expect("a1's link");
    assert!(datapath::detach_pinned(&dir, &link).unwrap());
    let status = tc.status();
    let a = status.nodes.iter().find(|n| n.name == "a").unwrap();
    assert_eq!(a.running_mode, Some(RunningMode::Mixed));
    assert!(
        cluster::render_status(&status).contains("mode mixed running, tc in the config"),
        "{}",
        cluster::render_status(&status)
    );
}
