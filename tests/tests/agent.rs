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
    // Every pod reaches every other: on its node and across nodes.
    let pods: Vec<(&str, u32)> = NODES
        .iter()
        .flat_map(|(node, _)| [(*node, 1), (*node, 2)])
        .collect();
    for from in &pods {
        for to in pods.iter().filter(|to| *to != from) {
            agents.wait_pods_reachable(*from, *to, Duration::from_secs(20));
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
    // A 10 ms ping from a to b goes on while b's agent is killed and started again.
    let ping = tests::probe::background_ping(&agents.pod_netns("a"), agents.pod_address("b"), 500);
    std::thread::sleep(Duration::from_secs(1));
    agents.stop("b", Signal::SIGKILL);
    // Its node forwards on without it: pinned programs and maps.
    agents.wait_reachable("c", "b", Duration::from_secs(2));
    agents.start("b", 2);
    let start = std::time::Instant::now();
    while !agents.log("b").contains("peers: a, c") {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{}",
            agents.log("b")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(agents.pod_cidr("b", Duration::from_secs(1)), before);
    let (sent, received) = tests::probe::ping_result(ping);
    assert_eq!(
        (sent, received),
        (500, 500),
        "a -> b lost packets across b's restart"
    );
    // SIGTERM: the agent stops, the datapath stays.
    agents.stop("b", Signal::SIGTERM);
    assert!(
        agents.log("b").contains("the datapath stays as it is"),
        "{}",
        agents.log("b")
    );
    agents.wait_reachable("a", "b", Duration::from_secs(2));
}

/// The time from a joining node's record appearing in etcd to the first packet another node's
/// program encapsulates towards it, with a 10 ms ping already running towards the new pod.
#[test]
fn nodes_that_join_are_reached_soon_after_their_record_appears() {
    let mut agents = three_agents();
    agents.wait_reachable("a", "c", Duration::from_secs(20));
    let mut took = Vec::new();
    for (name, i) in [("d", 4), ("e", 5), ("f", 6)] {
        // The watch is opened before the agent starts: the record's creation is seen as it
        // happens.
        let mut record = agents.watch_node_record(name);
        agents.start(name, i);
        let dst = agents.pod_address(name);
        let encapsulated = || agents.counted("a", Hook::Tc, REDIRECT_ENCAPSULATED);
        let before = encapsulated();
        let ping = tests::probe::background_ping(&agents.pod_netns("a"), dst, 500);
        let created = record.wait(Duration::from_secs(20));
        while encapsulated() == before {
            assert!(
                created.elapsed() < Duration::from_secs(5),
                "a encapsulated nothing towards {name} within 5 s of its record; a's log:\n{}",
                agents.log("a")
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        took.push(created.elapsed());
        let _ = tests::probe::ping_result(ping);
        // Every pod reaches the new node's pods.
        for from in ["a", "b", "c"] {
            for to_pod in [1, 2] {
                agents.wait_pods_reachable((from, 1), (name, to_pod), Duration::from_secs(5));
            }
        }
    }
    took.sort();
    println!(
        "record to first encapsulated packet: {:?} (p50 {:?})",
        took,
        took[took.len() / 2]
    );
}

/// A 10 ms ping between two nodes' pods goes on while etcd loses its leader, then while every
/// member is down for 10 s: agents report themselves degraded, touch nothing, and converge when
/// etcd is back, withdrawing a node whose agent died meanwhile.
#[test]
fn etcd_losing_its_leader_or_going_away_loses_no_packet() {
    let mut agents = three_agents();
    agents.wait_reachable("a", "b", Duration::from_secs(20));
    agents.wait_reachable("a", "c", Duration::from_secs(20));
    let ping = tests::probe::background_ping(&agents.pod_netns("a"), agents.pod_address("b"), 1800);

    let leader = agents.etcd.leader();
    agents.etcd.stop_member(leader);
    std::thread::sleep(Duration::from_secs(2));
    agents.etcd.start_member(leader);
    std::thread::sleep(Duration::from_secs(1));

    agents.etcd.stop_all();
    // c's agent dies while etcd is away: nobody can see it go until etcd is back.
    agents.stop("c", Signal::SIGKILL);
    std::thread::sleep(Duration::from_secs(10));
    for name in ["a", "b"] {
        assert!(
            agents.log(name).contains("degraded: etcd"),
            "{name}: {}",
            agents.log(name)
        );
    }
    agents.etcd.start_stopped();
    agents.etcd.wait_writable(Duration::from_secs(20));

    let (sent, received) = tests::probe::ping_result(ping);
    assert_eq!(
        (sent, received),
        (1800, 1800),
        "a -> b lost packets; logs:\na: {}\nb: {}",
        agents.log("a"),
        agents.log("b")
    );
    // c's lease runs out after etcd is back: a withdraws its route.
    let c = agents.pod_cidr("c", Duration::from_secs(1));
    agents.wait_withdrawn("a", c, Duration::from_secs(15));
    // Each loss of etcd is logged once and each return once: the lines alternate (how many
    // losses an agent sees depends on which of its requests meet the leader's loss), and each
    // agent ends back.
    for name in ["a", "b"] {
        let start = std::time::Instant::now();
        loop {
            let log = agents.log(name);
            let states: Vec<&str> = log
                .lines()
                .filter_map(|l| {
                    if l.contains("degraded: etcd") {
                        Some("down")
                    } else if l.contains("etcd is back") {
                        Some("back")
                    } else {
                        None
                    }
                })
                .collect();
            assert!(!states.is_empty(), "{name} logged no outage: {log}");
            for (i, state) in states.iter().enumerate() {
                let expected = if i % 2 == 0 { "down" } else { "back" };
                assert_eq!(*state, expected, "{name}'s line {i} of {states:?}: {log}");
            }
            if states.last() == Some(&"back") {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{name} not back: {log}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A node that leaves is withdrawn by the others at once, and one whose agent dies with it is
/// withdrawn when its lease runs out; a 10 ms ping between the other two loses nothing.
#[test]
fn nodes_that_leave_or_die_are_withdrawn_without_disturbing_the_others() {
    let mut agents = three_agents();
    agents.start("d", 4);
    for to in ["b", "c", "d"] {
        agents.wait_reachable("a", to, Duration::from_secs(20));
    }
    let (c, d) = (
        agents.pod_cidr("c", Duration::from_secs(1)),
        agents.pod_cidr("d", Duration::from_secs(1)),
    );
    let ping = tests::probe::background_ping(&agents.pod_netns("a"), agents.pod_address("b"), 600);
    agents.leave("c", 3);
    let left = agents.wait_withdrawn("a", c, Duration::from_secs(2));
    agents.wait_withdrawn("b", c, Duration::from_secs(2));
    agents.stop("d", Signal::SIGKILL);
    let died = agents.wait_withdrawn("a", d, Duration::from_secs(10));
    agents.wait_withdrawn("b", d, Duration::from_secs(2));
    assert!(
        died >= Duration::from_secs(2),
        "d withdrawn before its lease (3 s) could expire: {died:?}"
    );
    println!("withdrawn: c {left:?} after it left, d {died:?} after its agent died (TTL 3 s)");
    let (sent, received) = tests::probe::ping_result(ping);
    assert_eq!((sent, received), (600, 600), "a -> b lost packets");
}

/// Records nobody may install: each ignored with one log line naming its key, nothing routed.
#[test]
fn bad_records_are_ignored_logged_once_and_never_installed() {
    let agents = three_agents();
    agents.wait_reachable("a", "b", Duration::from_secs(20));
    agents.wait_reachable("a", "c", Duration::from_secs(20));
    let routed_before = agents.routed("a");
    let b_cidr = agents.pod_cidr("b", Duration::from_secs(1));
    let a_cidr = agents.pod_cidr("a", Duration::from_secs(1));
    let record = |name: &str, ip: &str, cidr: &str| {
        format!(
            r#"{{"version":1,"name":"{name}","underlay_ip":"{ip}","pod_cidr":"{cidr}","vtep_mac":"02:fa:c6:12:00:09","vni":42,"port":4789,"mode":"tc"}}"#
        )
    };
    let bad = [
        ("junk", "{not a record".to_string()),
        ("thief", record("thief", "198.18.0.9", &b_cidr.to_string())),
        ("mine", record("mine", "198.18.0.10", &a_cidr.to_string())),
        ("twin", record("twin", "198.18.0.1", "198.18.79.0/24")),
        ("outside", record("outside", "198.18.0.11", "198.19.5.0/24")),
        ("liar", record("other", "198.18.0.12", "198.18.78.0/24")),
        // Past the record's checks, refused by the node description's rules.
        (
            "hostbits",
            record("hostbits", "198.18.0.13", "198.18.77.5/24"),
        ),
        (
            "name-too-long",
            record("name-too-long", "198.18.0.14", "198.18.76.0/24"),
        ),
    ];
    for (name, value) in &bad {
        agents.put_record(name, value);
    }
    // Written once more: still one line each.
    for (name, value) in &bad {
        agents.put_record(name, value);
    }
    let key = |name: &str| format!("{}/nodes/{name}", agents.key_prefix);
    let start = std::time::Instant::now();
    while bad
        .iter()
        .any(|(n, _)| !agents.log("a").contains(&format!("ignoring {}:", key(n))))
    {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{}",
            agents.log("a")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = agents.log("a");
    for (name, _) in &bad {
        assert_eq!(
            log.matches(&format!("ignoring {}:", key(name))).count(),
            1,
            "{log}"
        );
    }
    assert_eq!(agents.routed("a"), routed_before);
    agents.wait_reachable("a", "b", Duration::from_secs(1));
}

/// The agents' resident memory with 3 peers, then with 100 more peer records in etcd.
#[test]
fn agent_memory_with_three_and_a_hundred_peers() {
    let agents = three_agents();
    agents.wait_reachable("a", "c", Duration::from_secs(20));
    let three = agents.resident_kib("a");
    for i in 0..100u32 {
        let name = format!("sim{i}");
        let ip = format!("198.18.1.{}", i + 10);
        // Pod CIDRs /28 out of 198.18.72.0/20, inside the cluster network.
        let cidr = format!("198.18.{}.{}/28", 72 + i / 16, (i % 16) * 16);
        agents.put_record(
            &name,
            &format!(
                r#"{{"version":1,"name":"{name}","underlay_ip":"{ip}","pod_cidr":"{cidr}","vtep_mac":"02:fa:c6:12:01:{:02x}","vni":42,"port":4789,"mode":"tc"}}"#,
                i
            ),
        );
    }
    let start = std::time::Instant::now();
    while agents.routed("a").len() < 102 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{}",
            agents.log("a")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let hundred = agents.resident_kib("a");
    println!("agent resident memory: {three} KiB with 2 peers, {hundred} KiB with 102 peers");
}

/// Packets of one program, verdict and reason in a scrape: (labels, value).
fn packet_samples(text: &str) -> Vec<((String, String, String), f64)> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("the Prometheus text format");
    scrape
        .samples
        .into_iter()
        .filter(|s| s.metric == "fastpath_datapath_packets_total")
        .map(|s| {
            let label = |k: &str| s.labels.get(k).unwrap_or_default().to_string();
            let value = match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
                other => panic!("{other:?}"),
            };
            ((label("program"), label("verdict"), label("reason")), value)
        })
        .collect()
}

/// `/metrics` parses as Prometheus text, its packet counters agree with `fastpath stats`, and
/// `/healthz` says degraded while etcd is away.
#[test]
fn metrics_agree_with_stats_and_health_follows_etcd() {
    let mut agents = three_agents();
    agents.wait_reachable("a", "b", Duration::from_secs(20));
    agents.wait_reachable("a", "c", Duration::from_secs(20));
    let (status, health) = agents.http_get("a", "/healthz");
    assert!(
        status.contains("200") && health == "ok\n",
        "{status} {health}"
    );

    let (status, before) = agents.http_get("a", "/metrics");
    assert!(status.contains("200"), "{status}");
    let stats = tests::fastpath(&agents.prefix, None)
        .args(["stats", "--json", "--config"])
        .arg(agents.stats_config("a", 1))
        .output()
        .unwrap();
    assert!(
        stats.status.success(),
        "{}",
        String::from_utf8_lossy(&stats.stderr)
    );
    let (_, after) = agents.http_get("a", "/metrics");
    let (before, after) = (packet_samples(&before), packet_samples(&after));
    assert!(!before.is_empty(), "no packet counters in /metrics");
    let nodes: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    let mut compared = 0;
    for row in nodes[0]["counters"].as_array().unwrap() {
        if row["program"] == "nft-guard" {
            continue;
        }
        let key = (
            row["program"].as_str().unwrap().to_string(),
            row["verdict"].as_str().unwrap().to_string(),
            row["reason"].as_str().unwrap().to_string(),
        );
        let packets = row["packets"].as_f64().unwrap();
        let at = |samples: &[((String, String, String), f64)]| {
            samples
                .iter()
                .find(|(k, _)| *k == key)
                .map_or(0.0, |(_, v)| *v)
        };
        // Read between the two scrapes: the counters only grow.
        assert!(
            at(&before) <= packets && packets <= at(&after),
            "{key:?}: /metrics {} then {}, stats {packets}",
            at(&before),
            at(&after)
        );
        compared += 1;
    }
    assert!(compared >= 2, "stats listed {compared} program counters");
    // The monitor's lost events, by program, also while nothing was lost.
    let (_, text) = agents.http_get("a", "/metrics");
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let mut lost: Vec<String> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "fastpath_monitor_events_lost_total")
        .map(|s| s.labels.get("program").unwrap_or_default().to_string())
        .collect();
    lost.sort();
    assert_eq!(lost, ["tc_pod", "tc_underlay", "xdp_pod"], "{text}");

    agents.etcd.stop_all();
    let start = std::time::Instant::now();
    loop {
        let (status, body) = agents.http_get("a", "/healthz");
        if status.contains("503") && body.starts_with("degraded: etcd") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{status} {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, metrics) = agents.http_get("a", "/metrics");
    assert!(metrics.contains("fastpath_etcd_connected 0"), "{metrics}");
    agents.etcd.start_stopped();
    let start = std::time::Instant::now();
    while agents.http_get("a", "/healthz").1 != "ok\n" {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{}",
            agents.log("a")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// etcd serving clients over TLS with client certificates: agents given the CA and a client
/// certificate find each other; one without a client certificate is refused by etcd and says
/// so on /healthz, and never becomes anyone's peer.
#[test]
fn agents_reach_a_tls_etcd_with_client_certificates_and_nothing_else_does() {
    let mut agents = Agents::new(EtcdCluster::start_tls(3));
    agents.start("a", 1);
    agents.start("b", 2);
    agents.wait_reachable("a", "b", Duration::from_secs(20));
    agents.wait_reachable("b", "a", Duration::from_secs(20));

    let ca_only = agents.tls_args(false);
    agents.start_with("c", 3, &ca_only);
    let start = std::time::Instant::now();
    loop {
        let (status, body) = agents.http_get("c", "/healthz");
        if status.contains("503") && body.starts_with("degraded: etcd") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{status} {body}\n{}",
            agents.log("c")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(agents.routed("a").len(), 1, "a routes only to b");
}
