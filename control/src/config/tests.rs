use super::*;

fn parse(text: &str) -> Result<ClusterConfig> {
    ClusterConfig::parse(text, "test.toml")
}

/// The embedded demo with `from` replaced by `to` (which must occur).
fn demo_with(from: &str, to: &str) -> String {
    assert!(DEFAULT_CONFIG.contains(from), "demo config has no {from:?}");
    DEFAULT_CONFIG.replacen(from, to, 1)
}

fn error_of(text: &str) -> String {
    format!("{:#}", parse(text).expect_err("config must be refused"))
}

#[test]
fn the_embedded_demo_is_two_linked_simulated_nodes_with_two_pods_each() {
    let c = ClusterConfig::load(None).unwrap();
    assert_eq!(c.nodes.len(), 2);
    assert!(c.nodes.iter().all(|n| n.simulated && n.pods.len() == 2));
    assert_eq!(c.underlay_peer_of("a").unwrap().name, "b");
    assert_eq!(node_pod_mtu(&c.nodes[0]), 1450);
    let peers = c.vxlan_peers_of(&c.nodes[0]);
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].underlay_ip, Ipv4Addr::new(198, 18, 0, 2));
    assert_eq!(peers[0].vtep_mac, Mac([0x02, 0xfa, 198, 18, 0, 2]));
    for n in &c.nodes {
        for p in &n.pods {
            assert!(crate::traffic::is_test_address(p.address.unwrap().into()));
        }
    }
}

#[test]
fn each_bad_value_is_named_with_its_field() {
    let with_peer_mac = |mac: &str| {
        format!(
            "{DEFAULT_CONFIG}\n[[peer]]\nname = \"far\"\nunderlay_ip = \"198.18.0.10\"\npod_cidr = \"198.18.5.0/24\"\nvtep_mac = \"{mac}\"\n"
        )
    };
    let cases = [
        (
            demo_with("vni = 42", "vni = 16777216"),
            "vxlan.vni = 16777216",
        ),
        (
            with_peer_mac("02:aa:bb:cc:dd"),
            "'02:aa:bb:cc:dd' is not a MAC address",
        ),
        (
            with_peer_mac("03:aa:bb:cc:dd:ee"),
            "vtep_mac = '03:aa:bb:cc:dd:ee': must be a unicast address",
        ),
        (demo_with("port = 4789", "port = 0"), "vxlan.port = 0"),
        (
            demo_with("address = \"198.18.1.2\"", "address = \"198.18.5.2\""),
            "address = 198.18.5.2",
        ),
        (
            demo_with("address = \"198.18.1.3\"", "address = \"198.18.1.2\""),
            "address = 198.18.1.2: already used",
        ),
        (
            demo_with("name = \"a2\"", "name = \"b1\""),
            "pod.name = 'b1'",
        ),
        (
            demo_with("name = \"a1\"", "name = \"A1\""),
            "pod.name = 'A1'",
        ),
        (
            demo_with(
                "pod_cidr = \"198.18.1.0/24\"",
                "pod_cidr = \"198.18.0.0/22\"",
            ),
            "pod_cidr 198.18.0.0/22 overlaps pod_cidr 198.18.2.0/24 of node 'b'",
        ),
        (
            demo_with(
                "pod_cidr = \"198.18.1.0/24\"",
                "pod_cidr = \"198.18.1.7/24\"",
            ),
            "pod_cidr = 198.18.1.7/24",
        ),
        (
            demo_with("gateway = \"198.18.1.1\"", "gateway = \"198.18.9.1\""),
            "gateway = 198.18.9.1",
        ),
        (demo_with("# mtu = 1450", "mtu = 1460"), "mtu = 1460"),
        (
            demo_with(
                "bridge = \"fp-br0\"",
                "bridge = \"a-very-long-bridge-name\"",
            ),
            "bridge = 'a-very-long-bridge-name'",
        ),
        (
            demo_with("device = \"fp-ul0\"", "device = \"fp-br0\""),
            "must be different devices",
        ),
        (
            demo_with("nodes = [\"a\", \"b\"]", "nodes = [\"a\", \"c\"]"),
            "no node is called 'c'",
        ),
        (demo_with("mode = \"tc\"", "mode = \"turbo\""), "turbo"),
        (
            demo_with("vni = 42", "vni = 42\ncolour = \"blue\""),
            "colour",
        ),
        (
            demo_with("address = \"198.18.0.2/24\"", "address = \"198.18.0.1/24\""),
            "underlay.address = 198.18.0.1",
        ),
        (
            demo_with("mtu = 1500 }", "mtu = 9000 }"),
            "underlay.mtu 9000 and 1500 differ",
        ),
    ];
    for (text, expected) in cases {
        let err = error_of(&text);
        assert!(err.contains(expected), "expected {expected:?} in: {err}");
        assert!(err.starts_with("test.toml"), "errors name the file: {err}");
    }
}

#[test]
fn each_bad_ipv6_value_is_named_with_its_field() {
    let with_peer6 = |cidr6: &str| {
        format!(
            "{DEFAULT_CONFIG}\n[[peer]]\nname = \"far\"\nunderlay_ip = \"198.18.0.10\"\npod_cidr = \"198.18.5.0/24\"\npod_cidr6 = \"{cidr6}\"\n"
        )
    };
    let cidr6_a = "pod_cidr6 = \"2001:db8:1::/64\"";
    let cases = [
        (
            demo_with(cidr6_a, "pod_cidr6 = \"2001:db8:1::5/64\""),
            "pod_cidr6 = 2001:db8:1::5/64: must be a network address (e.g. 2001:db8:1::/64)",
        ),
        (
            demo_with(cidr6_a, "pod_cidr6 = \"2001:db8:1::/127\""),
            "prefix of /126 or shorter",
        ),
        (
            demo_with(cidr6_a, "pod_cidr6 = \"fe80::/64\""),
            "pod_cidr6 = fe80::/64: overlaps link-local addresses",
        ),
        (
            demo_with(cidr6_a, "pod_cidr6 = \"ff02::/64\""),
            "overlaps multicast addresses",
        ),
        (
            demo_with(cidr6_a, "pod_cidr6 = \"::ffff:0:0/104\""),
            "overlaps IPv4-mapped addresses",
        ),
        (
            demo_with(cidr6_a, "pod_cidr6 = \"2001:db8::/32\""),
            "node 'a': pod_cidr6 2001:db8::/32 overlaps pod_cidr6 2001:db8:2::/64 of node 'b'",
        ),
        (
            with_peer6("2001:db8:2:0:8000::/65"),
            "pod_cidr6 2001:db8:2::/64 overlaps pod_cidr6 2001:db8:2:0:8000::/65 of peer 'far'",
        ),
        (
            with_peer6("2001:db8:7::1/64"),
            "peer 'far': pod_cidr6 = 2001:db8:7::1/64: must be a network address",
        ),
        (
            demo_with(
                "gateway6 = \"2001:db8:1::1\"",
                "gateway6 = \"2001:db8:1::\"",
            ),
            "gateway6 = 2001:db8:1::: must be an address inside pod_cidr6 2001:db8:1::/64 other than its network address",
        ),
        (
            demo_with(
                "gateway6 = \"2001:db8:1::1\"",
                "gateway6 = \"2001:db8:9::1\"",
            ),
            "gateway6 = 2001:db8:9::1",
        ),
        (
            demo_with(
                "address6 = \"2001:db8:1::2\"",
                "address6 = \"2001:db8:2::2\"",
            ),
            "pod 'a1': address6 = 2001:db8:2::2: must be an address inside pod_cidr6 2001:db8:1::/64",
        ),
        (
            demo_with(
                "address6 = \"2001:db8:1::3\"",
                "address6 = \"2001:db8:1::2\"",
            ),
            "pod 'a2': address6 = 2001:db8:1::2: already used by the gateway or another pod",
        ),
        (
            demo_with(
                "address6 = \"2001:db8:1::2\"",
                "address6 = \"2001:db8:1::1\"",
            ),
            "address6 = 2001:db8:1::1: already used by the gateway",
        ),
        (
            demo_with(", address6 = \"2001:db8:1::2\"", ""),
            "pod 'a1': no address6: every pod on a node with pod_cidr6 has an IPv6 address",
        ),
        (
            demo_with(cidr6_a, ""),
            "node 'a': gateway6 is set but pod_cidr6 is not",
        ),
        (
            demo_with(
                &format!(
                    "{cidr6_a}  # optional: IPv6 beside IPv4; every pod then has an address6\ngateway6 = \"2001:db8:1::1\""
                ),
                "",
            ),
            "node 'a': pod 'a1': address6 is set but the node has no pod_cidr6",
        ),
        (
            demo_with("# mtu = 1450", "mtu = 1200"),
            "mtu = 1200: pods with IPv6 (pod_cidr6) need an MTU of 1280 or more",
        ),
        (
            demo_with("address6 = \"2001:db8:1::2\"", "address6 = \"198.18.1.9\""),
            "invalid IPv6 address syntax",
        ),
    ];
    for (text, expected) in cases {
        let err = error_of(&text);
        assert!(err.contains(expected), "expected {expected:?} in: {err}");
        assert!(err.starts_with("test.toml"), "errors name the file: {err}");
    }
}

#[test]
fn ipv6_is_optional_and_its_gateway_defaults_to_the_first_address() {
    let demo = ClusterConfig::load(None).unwrap();
    for node in &demo.nodes {
        let cidr6 = node.pod_cidr6.expect("the demo is dual-stack");
        let first = Ipv6Addr::from(u128::from(cidr6.network()) + 1);
        assert_eq!(node_gateway6(node), Some(first));
        for pod in &node.pods {
            let address6 = pod.address6.expect("every demo pod has IPv6");
            assert!(cidr6.contains(&address6));
            assert!(crate::traffic::is_test_address(address6.into()));
        }
    }
    let defaulted = parse(&demo_with("gateway6 = \"2001:db8:1::1\"", "# no gateway6")).unwrap();
    assert_eq!(
        node_gateway6(&defaulted.nodes[0]),
        Some("2001:db8:1::1".parse().unwrap())
    );
    let peers = defaulted.vxlan_peers_of(&defaulted.nodes[0]);
    assert_eq!(peers[0].pod_cidr6, Some("2001:db8:2::/64".parse().unwrap()));
    let text = r#"
        [[node]]
        name = "solo"
        pod_cidr = "198.18.4.0/24"
        underlay = { device = "eth1", address = "198.18.0.9/24" }
        pods = [{ name = "p", address = "198.18.4.2" }]
    "#;
    let ipv4_only = parse(text).unwrap();
    assert_eq!(node_gateway6(&ipv4_only.nodes[0]), None);
}

/// An IPv6-only node: no pod_cidr, pods with address6 only.
const IPV6_ONLY: &str = r#"
    [[node]]
    name = "six"
    pod_cidr6 = "2001:db8:6::/64"
    underlay = { device = "eth1", address = "198.18.0.9/24" }
    pods = [
      { name = "p1", address6 = "2001:db8:6::2" },
      { name = "p2", address6 = "2001:db8:6::3" },
    ]

    [[peer]]
    name = "far"
    underlay_ip = "198.18.0.10"
    pod_cidr6 = "2001:db8:7::/64"
"#;

#[test]
fn a_node_and_a_peer_may_be_ipv6_only() {
    let c = parse(IPV6_ONLY).unwrap();
    let node = &c.nodes[0];
    assert_eq!(node_gateway(node), None);
    assert_eq!(node_gateway6(node), Some("2001:db8:6::1".parse().unwrap()));
    assert_eq!(node_bridge_mac(node), Mac([0x02, 0xf8, 0, 0, 0, 1]));
    assert_eq!(node.pods[0].mac(), Mac([0x02, 0xf9, 0, 0, 0, 2]));
    let peers = c.vxlan_peers_of(node);
    assert_eq!(
        (peers[0].pod_cidr, peers[0].pod_cidr6),
        (None, Some("2001:db8:7::/64".parse().unwrap()))
    );
}

#[test]
fn an_ipv6_only_description_is_as_strict() {
    let cases = [
        (
            IPV6_ONLY.replace("pod_cidr6 = \"2001:db8:6::/64\"\n", ""),
            "node 'six': no pod_cidr and no pod_cidr6",
        ),
        (
            IPV6_ONLY.replace(
                "{ name = \"p1\", address6",
                "{ name = \"p1\", address = \"198.18.6.2\", address6",
            ),
            "node 'six': pod 'p1': address is set but the node has no pod_cidr",
        ),
        (
            IPV6_ONLY.replace(
                "pod_cidr6 = \"2001:db8:6::/64\"\n",
                "pod_cidr6 = \"2001:db8:6::/64\"\ngateway = \"198.18.6.1\"\n",
            ),
            "node 'six': gateway is set but pod_cidr is not",
        ),
        (
            IPV6_ONLY.replace(
                "address6 = \"2001:db8:6::3\"",
                "address6 = \"2001:db8:6:0:1::2\"",
            ),
            "pods 'p1' and 'p2' would get the same MAC 02:f9:00:00:00:02",
        ),
        (
            IPV6_ONLY.replace(
                "pod_cidr6 = \"2001:db8:7::/64\"",
                "pod_cidr6 = \"2001:db8:6::/48\"",
            ),
            "pod_cidr6 2001:db8:6::/64 overlaps pod_cidr6 2001:db8:6::/48 of peer 'far'",
        ),
        (
            IPV6_ONLY.replace("pod_cidr6 = \"2001:db8:7::/64\"", ""),
            "peer 'far': no pod_cidr and no pod_cidr6",
        ),
        (
            format!(
                "{IPV6_ONLY}\n[[node]]\nname = \"four\"\nsimulated = true\npod_cidr = \"198.18.4.0/24\"\nunderlay = {{ device = \"eth2\", address = \"198.18.0.11/24\" }}\npods = [{{ name = \"q\" }}]\n"
            ),
            "node 'four': pod 'q': no address: every pod on a node with pod_cidr has an IPv4 address",
        ),
    ];
    for (text, expected) in cases {
        let err = error_of(&text);
        assert!(err.contains(expected), "expected {expected:?} in: {err}");
    }
}

#[test]
fn a_node_without_pods_or_peers_and_a_real_node_are_fine() {
    let text = r#"
        [[node]]
        name = "solo"
        pod_cidr = "198.18.4.0/24"
        underlay = { device = "eth1", address = "198.18.0.9/24" }

        [[peer]]
        name = "far"
        underlay_ip = "198.18.0.10"
        pod_cidr = "198.18.5.0/24"
        vtep_mac = "02:aa:bb:cc:dd:ee"
    "#;
    let c = parse(text).unwrap();
    let node = &c.nodes[0];
    assert!(!node.simulated);
    assert_eq!(node_gateway(node), Some(Ipv4Addr::new(198, 18, 4, 1)));
    assert_eq!(c.mode_of(node), Mode::Kernel);
    assert_eq!(
        c.vxlan_peers_of(node)[0].vtep_mac,
        Mac([0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee])
    );
}

#[test]
fn the_readme_example_is_a_valid_description_of_the_demo() {
    let readme = include_str!("../../../README.md");
    let section = &readme[readme.find("## The node description").expect("section")..];
    let start = section.find("```toml\n").expect("toml block") + "```toml\n".len();
    let block = &section[start..start + section[start..].find("```").expect("block end")];
    let c = parse(block).expect("the README's example parses");
    let demo = ClusterConfig::load(None).unwrap();
    assert_eq!(
        serde_json::to_value(&c).unwrap(),
        serde_json::to_value(&demo).unwrap(),
        "the README shows the embedded demo"
    );
}
