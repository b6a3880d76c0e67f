//! A simulated underlay segment: any number of simulated nodes on one L2 network (a bridge in a
//! namespace of its own), with no veth per pair of nodes. Pods on every node reach every other,
//! the cross-node traffic encapsulated and decapsulated by the programs; a node that leaves takes
//! its port off the segment.

use std::time::Duration;

use control::{
    config::{ClusterConfig, Mode},
    datapath::{self, Hook},
    netlink::Netlink,
    reach,
};
use datapath_common::reasons::*;
use tests::TestCluster;

/// Nodes a, b, c on segment "lan", one pod each.
fn three_nodes(mode: Mode) -> ClusterConfig {
    let mut text = format!("mode = \"{mode}\"\n");
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        let n = i + 1;
        text.push_str(&format!(
            r#"
[[node]]
name = "{name}"
simulated = true
pod_cidr = "198.18.{n}.0/24"
underlay = {{ device = "fp-ul0", address = "198.18.0.{n}/24", mtu = 1500 }}
pods = [{{ name = "{name}1", address = "198.18.{n}.2" }}]
"#
        ));
    }
    text.push_str("\n[[underlay_segment]]\nname = \"lan\"\nnodes = [\"a\", \"b\", \"c\"]\n");
    ClusterConfig::parse(&text, "three nodes on a segment").unwrap()
}

fn unreachable(tc: &TestCluster) -> Vec<String> {
    reach::check_all(&tc.cluster, Duration::from_secs(2))
        .into_iter()
        .filter(|p| p.rtt_us.is_none())
        .map(|p| format!("{} -> {} ({}): {:?}", p.from, p.to, p.to_address, p.error))
        .collect()
}

/// The segment bridge's ports, by name.
fn ports(tc: &TestCluster) -> Vec<String> {
    let segment = &tc.cluster.config.underlay_segments[0];
    let netns = tc.cluster.segment_netns(segment);
    let nl = tc.rt.block_on(async { Netlink::open(&netns) }).unwrap();
    let links = tc.rt.block_on(nl.links()).unwrap();
    let bridge = links.iter().find(|l| l.name == "seg0").expect("the bridge");
    let mut ports: Vec<String> = links
        .iter()
        .filter(|l| l.master == Some(bridge.index))
        .map(|l| l.name.clone())
        .collect();
    ports.sort();
    ports
}

fn counted(tc: &TestCluster, node: &str, hook: Hook, reason: Reason) -> u64 {
    let node = tc.cluster.config.node(node).unwrap();
    let rows = datapath::pinned_counters(&tc.cluster.pin_dir(node)).unwrap_or_default();
    datapath::packets(&rows, hook, reason)
}

fn every_pod_reaches_every_pod_across_one_segment(mode: Mode, pod_hook: Hook) {
    let tc = TestCluster::with_config(three_nodes(mode));
    tc.up();
    assert_eq!(ports(&tc), ["ul-a", "ul-b", "ul-c"]);
    assert_eq!(unreachable(&tc), Vec::<String>::new());
    // Each of the 6 ordered pairs crosses nodes: every node encapsulated its pod's echoes to two
    // others, and decapsulated theirs.
    for node in ["a", "b", "c"] {
        let encapsulated = counted(&tc, node, pod_hook, REDIRECT_ENCAPSULATED);
        let decapsulated = counted(&tc, node, Hook::TcUnderlay, REDIRECT_DECAPSULATED);
        assert!(encapsulated >= 2, "{node}: {encapsulated} encapsulated");
        assert!(decapsulated >= 2, "{node}: {decapsulated} decapsulated");
    }
    // A converged `up` changes nothing, the segment included.
    assert_eq!(tc.up(), Vec::<String>::new());

    // c leaves: its namespace goes, and its port with it; a and b still reach each other.
    let mut tc = tc;
    tc.cluster.config.nodes.retain(|n| n.name != "c");
    tc.cluster.config.underlay_segments[0]
        .nodes
        .retain(|n| n != "c");
    tc.up();
    assert_eq!(ports(&tc), ["ul-a", "ul-b"]);
    assert_eq!(unreachable(&tc), Vec::<String>::new());
    // Nothing of c is left on a's VXLAN device: no route, neighbour or FDB entry (as `ip` and
    // `bridge` list them).
    let a = tc.node_netns("a");
    for (cmd, args) in [
        ("ip", &["route", "show", "dev", "fp-vxlan"][..]),
        ("ip", &["neigh", "show", "dev", "fp-vxlan"]),
        ("bridge", &["fdb", "show", "dev", "fp-vxlan"]),
    ] {
        let out = std::process::Command::new(cmd)
            .args(["-n", a.name().unwrap()])
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{cmd} {args:?}");
        assert!(
            text.contains("198.18.2.") || text.contains("198.18.0.2"),
            "{cmd} {args:?}: b's entry: {text}"
        );
        assert!(
            !text.contains("198.18.3.") && !text.contains("198.18.0.3") && !text.contains(":00:03"),
            "{cmd} {args:?} still lists c: {text}"
        );
    }
}

#[test]
fn tc_mode_pods_on_three_nodes_of_one_segment_reach_each_other() {
    every_pod_reaches_every_pod_across_one_segment(Mode::Tc, Hook::Tc);
}

#[test]
fn xdp_mode_pods_on_three_nodes_of_one_segment_reach_each_other() {
    every_pod_reaches_every_pod_across_one_segment(Mode::Xdp, Hook::Xdp);
}

#[test]
fn a_segment_is_named_apart_and_joins_nodes_of_one_subnet_and_mtu() {
    let base = three_nodes(Mode::Tc);
    let text = |edit: &dyn Fn(&mut ClusterConfig)| {
        let mut c = base.clone();
        edit(&mut c);
        toml::to_string(&c).unwrap()
    };
    let refused = |edit: &dyn Fn(&mut ClusterConfig), says: &str| {
        let err = ClusterConfig::parse(&text(edit), "edited")
            .err()
            .unwrap_or_else(|| panic!("accepted; wanted an error with {says:?}"));
        let msg = format!("{err:#}");
        assert!(msg.contains(says), "{msg}");
    };
    refused(
        &|c| c.underlay_segments[0].name = "a".into(),
        "a node or pod namespace would have the segment's name",
    );
    refused(
        &|c| c.underlay_segments[0].name = "b-b1".into(),
        "a node or pod namespace would have the segment's name",
    );
    refused(
        &|c| c.nodes[2].underlay.address = "198.18.9.3/24".parse().unwrap(),
        "are not in one subnet",
    );
    refused(&|c| c.nodes[1].underlay.mtu = 9000, "a segment has one MTU");
    refused(
        &|c| c.underlay_segments[0].nodes.push("d".into()),
        "no node is called 'd'",
    );
    refused(
        &|c| c.underlay_segments[0].nodes.retain(|n| n != "c"),
        "node 'c' is simulated but in no [[underlay_link]] or [[underlay_segment]]",
    );
    refused(
        &|c| {
            c.underlay_links.push(control::config::UnderlayLink {
                nodes: ["a".into(), "b".into()],
            })
        },
        "node 'a' is in another underlay link or segment",
    );
}

/// One node of `three_nodes`, the others as its static peers: what each node's agent runs.
fn own_node(name: &str) -> ClusterConfig {
    let all = three_nodes(Mode::Tc);
    let mut config = all.clone();
    config.nodes.retain(|n| n.name == name);
    config.underlay_segments[0].nodes = vec![name.to_string()];
    config.peers = all
        .nodes
        .iter()
        .filter(|n| n.name != name)
        .map(|n| control::config::PeerConfig {
            name: n.name.clone(),
            underlay_ip: n.underlay.address.addr(),
            pod_cidr: n.pod_cidr,
            pod_cidr6: n.pod_cidr6,
            vtep_mac: None,
        })
        .collect();
    config
}

#[test]
fn nodes_brought_up_apart_under_one_prefix_share_the_segment_and_keep_each_others_namespaces() {
    let prefix = tests::unique_prefix();
    let mut clusters: Vec<TestCluster> = ["a", "b", "c"]
        .iter()
        .map(|name| {
            let mut tc = TestCluster::with_prefix(own_node(name), &prefix);
            tc.cluster.scope = control::cluster::Scope::OwnNodes;
            tc.up();
            tc
        })
        .collect();
    let (a, c) = (&clusters[0], &clusters[2]);
    assert_eq!(ports(a), ["ul-a", "ul-b", "ul-c"]);
    // a's up again, after b's and c's: theirs stay.
    assert_eq!(a.up(), Vec::<String>::new());
    let pod = |tc: &TestCluster, name: &str| tc.pod_netns(name);
    let address = |n: u8| std::net::Ipv4Addr::new(198, 18, n, 2);
    for (from, to) in [("a1", 3), ("c1", 1), ("c1", 2)] {
        let tc = if from == "a1" { a } else { c };
        assert!(
            tests::probe::ping(&pod(tc, from), address(to), 2, &[]),
            "{from} -> 198.18.{to}.2"
        );
    }
    // a drops its pod: only that namespace goes (dropping any of them would run `down` on the
    // whole prefix: all three stay till the end).
    let a = &mut clusters[0];
    let before = a.namespaces_left();
    a.cluster.config.nodes[0].pods.clear();
    a.up();
    let gone: Vec<String> = before
        .into_iter()
        .filter(|n| !a.namespaces_left().contains(n))
        .collect();
    assert_eq!(gone, [format!("{prefix}a-a1")]);
}
