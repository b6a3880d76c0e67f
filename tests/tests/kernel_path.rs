//! The control plane end to end: the demo cluster comes up, every pod reaches every other (over
//! the bridge or the fast path on one node, over VXLAN across nodes) in every mode, `up`
//! converges, `down` leaves nothing.

use control::{config::Mode, netlink::Netlink, ownership::Ownership};
use datapath_common::reasons::*;
use tests::{
    TestCluster,
    probe::{self, pattern},
};

const TRANSFER: usize = 512 * 1024;

/// Every pod pings every other and sends it bytes that arrive intact, in `mode`; then `down`.
fn every_pod_reaches_every_other_and_down_leaves_nothing(mode: Mode) {
    let tc = TestCluster::demo_in(mode);
    assert!(tc.status().healthy(), "{:#?}", tc.status());

    let pods = tc.pods();
    assert_eq!(pods.len(), 4);
    for (name_a, _, ns_a) in &pods {
        for (name_b, addr_b, ns_b) in &pods {
            if name_a == name_b {
                continue;
            }
            assert!(
                probe::ping(ns_a, *addr_b, 2, &[]),
                "ping {name_a} -> {name_b} ({addr_b})"
            );
            let got = probe::tcp_transfer(ns_a, ns_b, *addr_b, TRANSFER);
            assert_eq!(got.len(), TRANSFER, "{name_a} -> {name_b}: bytes received");
            assert!(
                got == pattern(TRANSFER),
                "{name_a} -> {name_b}: bytes differ"
            );
        }
    }

    let removed = tc
        .rt
        .block_on(control::cluster::down(&tc.cluster.ownership))
        .expect("down");
    let namespaces = removed.iter().filter(|r| r.starts_with("netns ")).count();
    assert_eq!(namespaces, 6, "2 node + 4 pod namespaces: {removed:?}");
    let pins = removed.iter().filter(|r| r.starts_with("pins ")).count();
    assert_eq!(
        pins,
        if mode == Mode::Kernel { 0 } else { 1 },
        "{removed:?}"
    );
    for node in &tc.cluster.config.nodes {
        assert!(
            !tc.cluster.pin_dir(node).exists(),
            "pins of node {} removed",
            node.name
        );
    }
    assert!(
        tc.namespaces_left().is_empty(),
        "{:?}",
        tc.namespaces_left()
    );
    assert!(
        Ownership::new(tc.cluster.prefix())
            .claimed_netns()
            .unwrap()
            .is_empty()
    );
    // A second down finds nothing and succeeds.
    assert!(
        tc.rt
            .block_on(control::cluster::down(&tc.cluster.ownership))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn kernel_mode_every_pod_reaches_every_other_and_down_leaves_nothing() {
    every_pod_reaches_every_other_and_down_leaves_nothing(Mode::Kernel);
}

#[test]
fn tc_mode_every_pod_reaches_every_other_and_down_leaves_nothing() {
    every_pod_reaches_every_other_and_down_leaves_nothing(Mode::Tc);
}

#[test]
fn xdp_mode_every_pod_reaches_every_other_and_down_leaves_nothing() {
    every_pod_reaches_every_other_and_down_leaves_nothing(Mode::Xdp);
}

#[test]
fn the_largest_df_ping_that_fits_the_pod_mtu_crosses_nodes_and_one_byte_more_does_not() {
    let tc = TestCluster::demo();
    tc.up();
    let pods = tc.pods();
    let (a1, b1) = (&pods[0], &pods[2]);
    // Pod MTU 1450 = 20 (IPv4) + 8 (ICMP) + 1422.
    assert!(probe::ping(&a1.2, b1.1, 1, &["-M", "do", "-s", "1422"]));
    assert!(!probe::ping(&a1.2, b1.1, 1, &["-M", "do", "-s", "1423"]));
}

#[test]
fn a_second_up_changes_nothing() {
    let tc = TestCluster::demo();
    tc.up();
    let before = serde_json::to_value(tc.status()).unwrap();
    assert_eq!(tc.up(), Vec::<String>::new());
    assert_eq!(serde_json::to_value(tc.status()).unwrap(), before);
}

#[test]
fn up_restores_what_was_removed_or_changed_behind_its_back() {
    let tc = TestCluster::demo();
    tc.up();
    let node_a = tc.node_netns("a");
    let nl = tc.rt.block_on(async { Netlink::open(&node_a) }).unwrap();
    tc.rt.block_on(async {
        nl.delete_link("fp-vxlan").await.unwrap();
        nl.delete_link("fp-a2").await.unwrap();
        nl.set_mtu("fp-br0", 1300).await.unwrap();
        nl.del_address("fp-br0", "198.18.1.1/24".parse().unwrap())
            .await
            .unwrap();
        nl.add_address("fp-br0", "198.18.1.99".parse().unwrap(), 24)
            .await
            .unwrap();
    });
    assert!(!tc.status().healthy());

    let changes = tc.up().join("\n");
    for expected in [
        "created VXLAN device fp-vxlan",
        "created veth for pod a2 fp-a2",
        "set MTU of fp-br0 in netns",
        "removed address 198.18.1.99/24 from fp-br0",
        "added address 198.18.1.1/24 to fp-br0",
    ] {
        assert!(
            changes.contains(expected),
            "missing {expected:?} in:\n{changes}"
        );
    }
    assert!(tc.status().healthy());
    let pods = tc.pods();
    // Across nodes through the new VXLAN device, and to the pod whose veth was recreated.
    assert!(
        probe::ping(&pods[2].2, pods[0].1, 2, &[]),
        "b1 -> a1 after repair"
    );
    // The recreated veth is a new device: it has its own program again (the demo runs in tc
    // mode), and a1 -> a2 takes the fast path, not the bridge.
    let status = tc.status();
    let a2_host = &status.nodes[0].pods[1].host_veth;
    assert_eq!(a2_host.name, "fp-a2");
    assert_eq!(
        a2_host.tcx_programs.len(),
        1,
        "tc_pod on the recreated fp-a2: {a2_host:?}"
    );
    let node_a = tc.cluster.config.node("a").unwrap();
    let switched = || {
        control::datapath::pinned_counters(&tc.cluster.pin_dir(node_a))
            .unwrap()
            .iter()
            .filter(|r| r.reason == REDIRECT_SWITCHED)
            .map(|r| r.packets)
            .sum::<u64>()
    };
    let before = switched();
    assert!(
        probe::ping(&pods[0].2, pods[1].1, 2, &[]),
        "a1 -> a2 after repair"
    );
    assert!(
        switched() >= before + 4,
        "a1 <-> a2 redirected after repair"
    );
    assert_eq!(tc.up(), Vec::<String>::new());
}

#[test]
fn clusters_under_overlapping_prefixes_leave_each_other_alone() {
    let outer = TestCluster::demo();
    let inner_prefix = format!("{}x-", outer.cluster.prefix());
    let inner = TestCluster::with_prefix(
        control::config::ClusterConfig::load(None).unwrap(),
        &inner_prefix,
    );
    inner.up();
    outer.up();
    // The outer prefix is a prefix of every inner name: neither up nor down may treat them as its own.
    assert!(
        inner.status().healthy(),
        "outer up left the inner cluster intact"
    );
    let removed = outer
        .rt
        .block_on(control::cluster::down(&outer.cluster.ownership))
        .unwrap();
    assert!(
        removed.iter().all(|r| !r.contains(&inner_prefix)),
        "outer down removed only its own: {removed:?}"
    );
    assert!(inner.status().healthy(), "inner cluster still up");
    assert_eq!(inner.namespaces_left().len(), 6);
    let node = inner.cluster.config.node("a").unwrap();
    assert!(inner.cluster.pin_dir(node).exists(), "inner pins kept");
}

#[test]
fn a_node_removed_from_the_config_leaves_no_namespace_or_pins() {
    let mut tc = TestCluster::demo_in(Mode::Tc);
    let node_b = tc.cluster.config.node("b").unwrap().clone();
    assert!(tc.cluster.pin_dir(&node_b).exists());
    tc.cluster.config.nodes.retain(|n| n.name == "a");
    tc.cluster.config.underlay_links.clear();
    let changes = tc.up().join("\n");
    assert!(changes.contains("removed pins of node b"), "{changes}");
    assert!(
        !tc.cluster.pin_dir(&node_b).exists(),
        "node b's pins are gone"
    );
    let left = tc.namespaces_left();
    assert_eq!(left.len(), 3, "node a and its two pods: {left:?}");
    // (Node a's underlay veth went with node b's namespace; its pods still reach each other.)
    let pods = tc.pods();
    assert!(probe::ping(&pods[0].2, pods[1].1, 2, &[]), "a1 -> a2");
}
