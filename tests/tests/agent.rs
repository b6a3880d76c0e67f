//! `fastpath agent` end to end: simulated nodes on one underlay segment, each run by its own
//! agent process, given only its own node description and a real 3-member etcd cluster.

use std::time::Duration;

use control::datapath::Hook;
use datapath_common::reasons::*;
use nix::sys::signal::Signal;
use tests::{agents::Agents, etcd::EtcdCluster};

const NODES: [(&str, u8); 3] = [("a", 1), ("b", 2), ("c", 3)];

fn three_agents() -> Agents {
    let mut agents = Agents::new(EtcdCluster::start(3));
    for (name, i) in NODES {
        agents.start(name, i);
    }
    agents
}

#[test]
fn agents_find_each_other_and_every_pod_reaches_every_pod_encapsulated() {
    let agents = three_agents();
    // Three nodes started together lease three distinct subnets.
    let cidrs: Vec<_> = NODES
        .iter()
        .map(|(n, _)| agents.pod_cidr(n, Duration::from_secs(20)))
        .collect();
    assert!(
        cidrs[0] != cidrs[1] && cidrs[1] != cidrs[2] && cidrs[0] != cidrs[2],
        "{cidrs:?}"
    );
    for (from, _) in NODES {
        for (to, _) in NODES.iter().filter(|(to, _)| *to != from) {
            agents.wait_reachable(from, to, Duration::from_secs(20));
        }
    }
    // Every node's pod program encapsulated towards the two others, and its underlay program
    // decapsulated what they sent.
    for (name, _) in NODES {
        let encapsulated = agents.counted(name, Hook::Tc, REDIRECT_ENCAPSULATED);
        let decapsulated = agents.counted(name, Hook::TcUnderlay, REDIRECT_DECAPSULATED);
        assert!(encapsulated >= 2, "{name}: {encapsulated} encapsulated");
        assert!(decapsulated >= 2, "{name}: {decapsulated} decapsulated");
    }
}

#[test]
fn an_agent_killed_and_restarted_keeps_its_subnet_and_its_node_forwarding() {
    let mut agents = three_agents();
    for (to, _) in &NODES[1..] {
        agents.wait_reachable("a", to, Duration::from_secs(20));
    }
    let before = agents.pod_cidr("b", Duration::from_secs(1));
    agents.stop("b", Signal::SIGKILL);
    // Its node forwards on without it: pinned programs and maps.
    agents.wait_reachable("a", "b", Duration::from_secs(2));
    agents.start("b", 2);
    agents.wait_reachable("c", "b", Duration::from_secs(20));
    assert_eq!(agents.pod_cidr("b", Duration::from_secs(1)), before);
    // SIGTERM: the agent stops, the datapath stays.
    agents.stop("b", Signal::SIGTERM);
    assert!(
        agents.log("b").contains("the datapath stays as it is"),
        "{}",
        agents.log("b")
    );
    agents.wait_reachable("a", "b", Duration::from_secs(2));
}
