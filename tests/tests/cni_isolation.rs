//! fastpath-cni's pods are held to the same rules as a node's: standalone, chained after the
//! reference `bridge` plugin, and joined to a fastpath node, a pod reaches no other pod as someone
//! else (the hostile corpus of `tests::hostile`, sent from the pod's eth0), gets the pod settings,
//! and a container re-added on its live namespace is reachable at once.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    path::PathBuf,
    process::Command,
    time::Duration,
};

use control::{config::Mode, mac::Mac, netns::Netns, traffic::UdpSink};
use datapath_common::reasons::DROP_POD_VXLAN;
use serde_json::Value;
use tests::{
    TestCluster,
    cni::{ClusterFile, CniHost, address_of},
    hostile::{self, PodScene},
    mac_of, probe, runtime,
};

const PORT: u16 = 7001;

/// The pod settings fastpath gives every pod interface.
#[track_caller]
fn assert_pod_settings(netns: &Netns) {
    for path in [
        "net/ipv6/conf/eth0/accept_ra",
        "net/ipv6/conf/eth0/accept_redirects",
        "net/ipv4/conf/eth0/accept_redirects",
        "net/ipv4/conf/all/accept_redirects",
    ] {
        assert_eq!(
            probe::sysctl(netns, path, None),
            "0",
            "{path} in {}",
            netns.label()
        );
    }
    // The kernel announces the pod's address when its interface comes up or its MAC is set.
    assert_eq!(
        probe::sysctl(netns, "net/ipv4/conf/eth0/arp_notify", None),
        "1",
        "arp_notify in {}",
        netns.label()
    );
}

/// The pod corpus from `attacker` against `victim` (listening on `victim_ip`), counted in the maps
/// pinned under `pins`. `gateway` is the pods' bridge in `bridge_ns`; `overlay` says whether the
/// node has a VXLAN port to protect (the VTEP MAC of its VXLAN device).
struct Attack<'a> {
    attacker: &'a Netns,
    victim: &'a Netns,
    victim_ip: Ipv4Addr,
    gateway: (&'a Netns, &'a str, Ipv4Addr),
    overlay: Option<[u8; 6]>,
    pins: PathBuf,
}

impl Attack<'_> {
    fn run(&self) {
        let rt = runtime();
        let attacker_mac = mac_of(&rt, self.attacker, "eth0");
        let victim_mac = mac_of(&rt, self.victim, "eth0");
        let attacker_ip = interface_address(self.attacker);
        let (bridge_ns, bridge, gateway_ip) = self.gateway;
        let scene = PodScene {
            attacker_mac,
            attacker_ip,
            next_hop_mac: victim_mac,
            victim_ip: self.victim_ip,
            victim_mac,
            victim_port: PORT,
            // Someone else's address on the same subnet.
            forged_ip: {
                let [a, b, c, _] = attacker_ip.octets();
                Ipv4Addr::new(a, b, c, 250)
            },
            gateway_mac: mac_of(&rt, bridge_ns, bridge),
            gateway_ip,
            vtep_mac: self.overlay.unwrap_or([0x02, 0, 0, 0, 0, 0]),
            vni: 42,
            vxlan_port: 4789,
            same_node: true,
        };
        let sink = UdpSink::bind(self.victim, SocketAddrV4::new(self.victim_ip, PORT)).unwrap();
        let cases = hostile::pod_cases(&scene);
        let mut sent = 0;
        for case in cases
            .iter()
            .filter(|c| c.reaches_victim)
            // Without an overlay the node has no VXLAN socket to protect.
            .filter(|c| self.overlay.is_some() || c.reason != DROP_POD_VXLAN)
        {
            hostile::attack(
                case,
                &sink,
                &|frame| probe::send_raw_frame(self.attacker, "eth0", frame),
                &|| {
                    let rows = control::datapath::pinned_counters(&self.pins).unwrap();
                    control::datapath::packets(&rows, control::datapath::Hook::Tc, case.reason)
                },
            );
            sent += 1;
        }
        assert!(sent >= 8, "the corpus has its cases");
    }
}

/// The IPv4 address of eth0 in `netns`.
fn interface_address(netns: &Netns) -> Ipv4Addr {
    let out = Command::new("ip")
        .args([
            "-n",
            netns.name().unwrap(),
            "-4",
            "-o",
            "address",
            "show",
            "dev",
            "eth0",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .and_then(|ip| ip.parse().ok())
        .unwrap_or_else(|| panic!("no IPv4 on eth0 in {}: {text}", netns.label()))
}

#[test]
fn a_standalone_networks_pod_reaches_no_pod_as_someone_else() {
    let host = CniHost::new();
    let (c1, c2) = (host.container("c1"), host.container("c2"));
    let conf = host.standalone("198.18.165.0/24");
    host.exec("ADD", "c1", Some(c1.netns()), &conf).expect_ok();
    let r2 = host.exec("ADD", "c2", Some(c2.netns()), &conf).expect_ok();
    for c in [&c1, &c2] {
        assert_pod_settings(c.netns());
    }
    Attack {
        attacker: c1.netns(),
        victim: c2.netns(),
        victim_ip: address_of(&r2),
        gateway: (
            &host.node,
            control::cni::DEFAULT_BRIDGE,
            Ipv4Addr::new(198, 18, 165, 1),
        ),
        overlay: None,
        pins: host.pin_dir(),
    }
    .run();
    for (id, c) in [("c1", &c1), ("c2", &c2)] {
        host.exec("DEL", id, Some(c.netns()), &conf).expect_ok();
    }
    host.assert_clean();
}

#[test]
fn a_pod_chained_after_the_bridge_plugin_reaches_no_pod_as_someone_else() {
    let host = CniHost::new();
    let (c1, c2) = (host.container("c1"), host.container("c2"));
    let bridge_conf = host.bridge_plugin("198.18.166.0/24");
    let ours = |prev: &Value| host.chained(prev);
    let mut results = Vec::new();
    for (id, c) in [("c1", &c1), ("c2", &c2)] {
        let env = CniHost::env("ADD", id, Some(c.netns()));
        let prev = host.run_reference("bridge", &env, &bridge_conf).expect_ok();
        host.exec("ADD", id, Some(c.netns()), &ours(&prev))
            .expect_ok();
        assert_pod_settings(c.netns());
        results.push(prev);
    }
    Attack {
        attacker: c1.netns(),
        victim: c2.netns(),
        victim_ip: address_of(&results[1]),
        gateway: (&host.node, "fpbr0", Ipv4Addr::new(198, 18, 166, 1)),
        overlay: None,
        pins: host.pin_dir(),
    }
    .run();
    for (i, (id, c)) in [("c1", &c1), ("c2", &c2)].into_iter().enumerate() {
        host.exec("DEL", id, Some(c.netns()), &ours(&results[i]))
            .expect_ok();
        let env = CniHost::env("DEL", id, Some(c.netns()));
        host.run_reference("bridge", &env, &bridge_conf).expect_ok();
    }
    host.assert_clean();
}

#[test]
fn a_pod_of_a_network_joined_to_a_node_reaches_none_of_the_nodes_pods_as_someone_else() {
    let tc = TestCluster::demo_in(Mode::Tc);
    let cluster_file = ClusterFile::write(&tc);
    let node_a = tc.cluster.config.node("a").unwrap();
    let pins = tc.cluster.pin_dir(node_a);
    let host = CniHost::on_node(&tc.node_netns("a"), pins.clone());
    let conf = host.node_conf(&cluster_file, tc.cluster.prefix());
    let c1 = host.container("c1");
    host.exec("ADD", "c1", Some(c1.netns()), &conf).expect_ok();
    assert_pod_settings(c1.netns());
    Attack {
        attacker: c1.netns(),
        victim: &tc.pod_netns("a2"),
        victim_ip: Ipv4Addr::new(198, 18, 1, 3),
        gateway: (&tc.node_netns("a"), "fp-br0", Ipv4Addr::new(198, 18, 1, 1)),
        overlay: Some(Mac::vtep(node_a.underlay.address.addr()).0),
        pins,
    }
    .run();
    host.exec("DEL", "c1", Some(c1.netns()), &conf).expect_ok();
}

#[test]
fn a_container_re_added_on_its_live_namespace_is_reachable_at_once() {
    let host = CniHost::new();
    let (c1, c2) = (host.container("c1"), host.container("c2"));
    let conf = host.standalone("198.18.167.0/24");
    host.exec("ADD", "c1", Some(c1.netns()), &conf).expect_ok();
    let r2 = host.exec("ADD", "c2", Some(c2.netns()), &conf).expect_ok();
    let ip2 = address_of(&r2);
    // A runtime's reload: DEL and ADD on the live namespace, keeping the address (host-local
    // takes it from CNI_ARGS).
    let reload = || {
        host.exec("DEL", "c2", Some(c2.netns()), &conf).expect_ok();
        let mut env = CniHost::env("ADD", "c2", Some(c2.netns()));
        for (key, value) in &mut env {
            if *key == "CNI_ARGS" {
                *value = format!("IgnoreUnknown=1;IP={ip2}");
            }
        }
        host.run(&env, &serde_json::to_vec(&conf).unwrap())
            .expect_ok()
    };
    let mac = |result: &Value| {
        result["interfaces"][2]["mac"]
            .as_str()
            .expect("the container interface's MAC in the result")
            .to_string()
    };

    // c1 knows c2's MAC from before; the re-added c2 has the same one.
    assert!(probe::ping(c1.netns(), ip2, 2, &[]));
    let again = reload();
    assert_eq!(address_of(&again), ip2, "the same address");
    assert_eq!(mac(&again), mac(&r2), "the same MAC");
    let resumed = probe::time_to_first_reply(c1.netns(), ip2);
    assert!(
        resumed < Duration::from_secs(1),
        "c1 reached the re-added c2 after {resumed:?}"
    );

    // c1 holds another MAC for c2's address: the re-added c2's gratuitous ARP puts it right.
    probe::hold_neighbour(c1.netns(), ip2, [0x02, 0, 0, 0, 0, 0x99]);
    reload();
    let resumed = probe::time_to_first_reply(c1.netns(), ip2);
    assert!(
        resumed < Duration::from_secs(1),
        "c1, holding a stale MAC, reached the re-added c2 after {resumed:?}"
    );
    for (id, c) in [("c1", &c1), ("c2", &c2)] {
        host.exec("DEL", id, Some(c.netns()), &conf).expect_ok();
    }
    host.assert_clean();
}
