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
            assert!(crate::traffic::is_test_address(p.address.into()));
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
    assert_eq!(node_gateway(node), Ipv4Addr::new(198, 18, 4, 1));
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
