//! fastpath-cni joined to a node `fastpath up` built: its pods take the node's bridge, MTU and
//! maps, reach pods on the other node through the node's in-program VXLAN, and the node and the
//! network each keep their own map entries and links true without touching the other's.

use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, Ipv6Addr},
};

use control::{
    config::Mode,
    datapath::{self, Hook},
    netlink::Netlink,
};
use datapath_common::reasons::*;
use serde_json::{Value, json};
use tests::{
    TestCluster,
    cni::{ClusterFile, CniHost, address_of, address6_of},
    probe::{self, pattern},
};

const A1: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
const A2: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 3);
const B1: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 2);
const A1_6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
const A2_6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 3);
const B1_6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2);
/// Largest ICMP payload a DF ping fits in the overlay MTU (1450 - 20 - 8).
const LARGEST_PING: usize = 1422;

fn entries(host: &CniHost) -> BTreeSet<Ipv4Addr> {
    host.endpoint_entries().iter().map(|e| e.0).collect()
}

#[test]
fn a_network_joined_to_a_node_rides_its_overlay_and_leaves_its_pods_alone() {
    let mut tc = TestCluster::demo_in(Mode::Tc);
    let file = ClusterFile::write(&tc);
    let prefix = tc.cluster.prefix().to_string();
    let node_a = tc.cluster.config.node("a").unwrap();
    let host = CniHost::on_node(&tc.node_netns("a"), tc.cluster.pin_dir(node_a));
    let good = host.node_conf(&file, &prefix);
    let c1 = host.container("c1");

    // What cannot join the node is refused with "invalid configuration", naming why, and leaves
    // nothing: no address, veth or record (some are refused only after IPAM answered).
    let refused = |conf: &Value, says: &str| {
        let out = host.exec("ADD", "c1", Some(c1.netns()), conf);
        out.expect_code(7);
        let msg = out.json["msg"].as_str().unwrap();
        assert!(msg.contains(says), "{says}: {msg}");
        assert_eq!(
            host.allocations(),
            Vec::<Ipv4Addr>::new(),
            "{says}: address"
        );
        assert_eq!(
            host.links_named("fpc"),
            Vec::<String>::new(),
            "{says}: veth"
        );
        assert_eq!(host.records(), Vec::<String>::new(), "{says}: record");
    };
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut conf = good.clone();
        edit(&mut conf);
        conf
    };
    refused(&with(&|c| c["node"]["name"] = json!("z")), "no node 'z'");
    refused(
        &with(&|c| c["mtu"] = json!(9000)),
        "\"mtu\" comes from node 'a'",
    );
    // An IPAM range outside the node's pod CIDR.
    refused(
        &with(&|c| {
            c["ipam"]["ranges"] = json!([[{ "subnet": "198.18.9.0/24", "gateway": "198.18.9.1" }]])
        }),
        "198.18.1.0/24",
    );
    // An IPAM range that hands out an address the cluster file gives a1.
    refused(
        &with(&|c| {
            c["ipam"]["ranges"] = json!([[{
                "subnet": "198.18.1.0/24", "rangeStart": "198.18.1.2", "rangeEnd": "198.18.1.2",
                "gateway": "198.18.1.1",
            }]])
        }),
        "own pods",
    );
    // "node" in a chain (after another plugin's prevResult).
    refused(
        &with(&|c| c["prevResult"] = json!({ "cniVersion": "1.0.0", "ips": [] })),
        "standalone network",
    );

    let r1 = host.exec("ADD", "c1", Some(c1.netns()), &good).expect_ok();
    let ip1 = address_of(&r1);
    assert_eq!(ip1, Ipv4Addr::new(198, 18, 1, 100));
    assert_eq!(r1["interfaces"][0]["name"], "fp-br0", "the node's bridge");
    // Its fixed MAC (derived from the gateway 198.18.1.1): a port joining does not move it.
    assert_eq!(r1["interfaces"][0]["mac"], "02:fb:c6:12:01:01");
    assert_eq!(r1["interfaces"][2]["mtu"], 1450, "the overlay MTU");
    let mtu = tc.rt.block_on(async {
        Netlink::open(c1.netns())
            .unwrap()
            .link_view("eth0")
            .await
            .unwrap()
            .unwrap()
            .mtu
    });
    assert_eq!(mtu, 1450);
    assert_eq!(entries(&host), BTreeSet::from([A1, A2, ip1]));

    // Across nodes, both ways, through node a's encapsulation and decapsulation.
    let counted = |hook: Hook, reason: Reason| host.packets(hook, reason);
    let (encap, decap) = (
        counted(Hook::Tc, REDIRECT_ENCAPSULATED),
        counted(Hook::TcUnderlay, REDIRECT_DECAPSULATED),
    );
    let b1 = tc.pod_netns("b1");
    assert!(probe::ping(c1.netns(), B1, 3, &[]), "ping c1 -> b1");
    assert!(probe::ping(&b1, ip1, 3, &[]), "ping b1 -> c1");
    let df = LARGEST_PING.to_string();
    assert!(
        probe::ping(c1.netns(), B1, 2, &["-M", "do", "-s", &df]),
        "the largest DF ping of the overlay MTU"
    );
    let sent = probe::tcp_transfer(c1.netns(), &b1, B1, 2 << 20);
    assert!(sent == pattern(2 << 20), "TCP c1 -> b1 byte for byte");
    let (encap, decap) = (
        counted(Hook::Tc, REDIRECT_ENCAPSULATED) - encap,
        counted(Hook::TcUnderlay, REDIRECT_DECAPSULATED) - decap,
    );
    assert!(
        encap >= 8,
        "c1's packets were encapsulated in-program: {encap}; counters {:?}",
        datapath::pinned_counters(&host.pin_dir()).unwrap()
    );
    assert!(
        decap >= 8,
        "b1's packets to c1 were decapsulated in-program: {decap}"
    );

    // Dual stack: c1's IPv6 address from the node's prefix, in the node's maps, across nodes
    // both ways through the node's IPv6 encapsulation and decapsulation.
    let ip6 = address6_of(&r1);
    assert_eq!(ip6, Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x100));
    let entries6: BTreeSet<Ipv6Addr> = host.endpoint_entries6().iter().map(|e| e.0).collect();
    assert_eq!(entries6, BTreeSet::from([A1_6, A2_6, ip6]));
    let (encap, decap) = (
        counted(Hook::Tc, REDIRECT_ENCAPSULATED),
        counted(Hook::TcUnderlay, REDIRECT_DECAPSULATED),
    );
    assert!(probe::ping(c1.netns(), B1_6, 3, &[]), "ping c1 -> b1, IPv6");
    assert!(probe::ping(&b1, ip6, 3, &[]), "ping b1 -> c1, IPv6");
    let sent = probe::tcp_transfer(c1.netns(), &b1, B1_6, 1 << 20);
    assert!(
        sent == pattern(1 << 20),
        "TCP c1 -> b1 over IPv6 byte for byte"
    );
    let (encap, decap) = (
        counted(Hook::Tc, REDIRECT_ENCAPSULATED) - encap,
        counted(Hook::TcUnderlay, REDIRECT_DECAPSULATED) - decap,
    );
    assert!(
        encap >= 6 && decap >= 6,
        "IPv6: {encap} encapsulated, {decap} decapsulated"
    );

    // Same node: the node's pod and the network's pod switch straight to each other.
    let switched = counted(Hook::Tc, REDIRECT_SWITCHED);
    let a1 = tc.pod_netns("a1");
    assert!(probe::ping(&a1, ip1, 3, &[]), "ping a1 -> c1");
    assert!(probe::ping(c1.netns(), A1, 3, &[]), "ping c1 -> a1");
    let switched = counted(Hook::Tc, REDIRECT_SWITCHED) - switched;
    assert!(
        switched >= 12,
        "a1 <-> c1 on the fast path: {switched} switched"
    );

    // The node converging again keeps c1's link and entry: CHECK still passes.
    tc.up();
    let mut check = good.clone();
    check["prevResult"] = r1.clone();
    host.exec("CHECK", "c1", Some(c1.netns()), &check)
        .expect_ok();

    // The node switched to xdp: a1's xdp_pod redirects to c1 (whose end runs NAPI for it),
    // c1 keeps tc_pod; back to tc before DEL.
    tc.cluster.mode_override = Some(Mode::Xdp);
    tc.up();
    let xdp_switched = counted(Hook::Xdp, REDIRECT_SWITCHED);
    assert!(probe::ping(&a1, ip1, 3, &[]), "ping a1 -> c1 in xdp mode");
    assert!(
        probe::ping(c1.netns(), A1, 3, &[]),
        "ping c1 -> a1 in xdp mode"
    );
    let xdp_switched = counted(Hook::Xdp, REDIRECT_SWITCHED) - xdp_switched;
    assert!(
        xdp_switched >= 6,
        "a1 -> c1 through xdp_pod: {xdp_switched}"
    );
    host.exec("CHECK", "c1", Some(c1.netns()), &check)
        .expect_ok();
    tc.cluster.mode_override = Some(Mode::Tc);
    tc.up();

    // A pod added to the cluster file at c1's address: `up` refuses to take over c1's entry.
    tc.cluster.config.nodes[0]
        .pods
        .push(control::config::PodConfig {
            name: "a3".into(),
            address: Some(ip1),
            address6: Some("2001:db8:1::100".parse().unwrap()),
        });
    let taken_over = tc.rt.block_on(control::cluster::up(&tc.cluster));
    let msg = format!("{:#}", taken_over.expect_err("an address held by c1"));
    assert!(
        msg.contains("198.18.1.100 is already in the fast-path maps"),
        "{msg}"
    );
    tc.cluster.config.nodes[0].pods.pop();
    tc.up();
    let encap = counted(Hook::Tc, REDIRECT_ENCAPSULATED);
    assert!(probe::ping(c1.netns(), B1, 3, &[]), "c1 still reaches b1");
    assert!(
        counted(Hook::Tc, REDIRECT_ENCAPSULATED) >= encap + 3,
        "c1's entries (endpoint, source, redirect) survived the node's re-ups"
    );

    // A second network joined to the same node: its pod and c1 reach each other, and taking
    // either network's pod out leaves the other's entry.
    let other = CniHost::on_node(&tc.node_netns("a"), host.pin_dir());
    let mut other_conf = other.node_conf(&file, &prefix);
    other_conf["ipam"]["ranges"][0][0]["rangeStart"] = json!("198.18.1.130");
    other_conf["ipam"]["ranges"][1][0]["rangeStart"] = json!("2001:db8:1::130");
    let d1 = other.container("d1");
    let rd = other
        .exec("ADD", "d1", Some(d1.netns()), &other_conf)
        .expect_ok();
    let ip_d1 = address_of(&rd);
    assert_eq!(entries(&host), BTreeSet::from([A1, A2, ip1, ip_d1]));
    let switched = counted(Hook::Tc, REDIRECT_SWITCHED);
    assert!(probe::ping(d1.netns(), ip1, 3, &[]), "ping d1 -> c1");
    assert!(
        counted(Hook::Tc, REDIRECT_SWITCHED) >= switched + 6,
        "d1 <-> c1 switched"
    );
    other_conf["prevResult"] = rd;
    other
        .exec("DEL", "d1", Some(d1.netns()), &other_conf)
        .expect_ok();
    assert_eq!(
        entries(&host),
        BTreeSet::from([A1, A2, ip1]),
        "c1's entry stays"
    );
    host.exec("CHECK", "c1", Some(c1.netns()), &check)
        .expect_ok();

    // DEL takes c1 out and leaves the node's pods and pins as they were.
    let mut del = good.clone();
    del["prevResult"] = r1;
    host.exec("DEL", "c1", Some(c1.netns()), &del).expect_ok();
    assert_eq!(entries(&host), BTreeSet::from([A1, A2]));
    assert!(host.pin_dir().exists(), "the node's pins stay");
    assert_eq!(host.links_named("fpc"), Vec::<String>::new());
    assert_eq!(host.allocations(), Vec::<Ipv4Addr>::new());
    assert_eq!(host.allocations6(), Vec::<Ipv6Addr>::new());
    // An IPv6 range outside the node's IPv6 pod prefix (last: IPAM moves on from the IPv4
    // address it gave before the refusal).
    refused(
        &with(&|c| {
            c["ipam"]["ranges"][1] =
                json!([{ "subnet": "2001:db8:9::/64", "gateway": "2001:db8:9::1" }])
        }),
        "2001:db8:1::/64",
    );
    assert_eq!(
        host.endpoint_entries6().len(),
        2,
        "the node's pods' IPv6 entries stay"
    );
    assert_eq!(host.records(), Vec::<String>::new());
    let encap = counted(Hook::Tc, REDIRECT_ENCAPSULATED);
    assert!(probe::ping(&a1, B1, 3, &[]), "a1 still reaches b1");
    assert!(
        counted(Hook::Tc, REDIRECT_ENCAPSULATED) > encap,
        "on the fast path"
    );
}
