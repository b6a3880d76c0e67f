//! The agent's etcd side against a real 3-member etcd cluster on 127.0.0.1: pod CIDR leases
//! taken in transactions, node records held by leases, and a directory that lists and then
//! watches them, checking every record before it becomes a peer.

use std::{
    sync::{Arc, Barrier},
    time::{Duration, Instant},
};

use agent::{
    directory::{self, Directory},
    error::SubnetError,
    keys::Keys,
    record::{FORMAT_VERSION, Local, NodeRecord, Rejection},
    subnets::{self, ClusterNetwork},
};
use control::{config::Mode, mac::Mac};
use etcd_client::Client;
use ipnet::Ipv4Net;
use tests::etcd::EtcdCluster;

fn network() -> ClusterNetwork {
    ClusterNetwork::new("198.18.64.0/20".parse().unwrap(), 24).unwrap()
}

fn connect(rt: &tokio::runtime::Runtime, etcd: &EtcdCluster) -> Client {
    rt.block_on(Client::connect(etcd.endpoints(), None))
        .expect("etcd client")
}

#[test]
fn nodes_claiming_together_get_distinct_subnets_and_keep_them() {
    tests::require_root();
    let etcd = EtcdCluster::start(3);
    let keys = Keys::new("/fastpath-test/subnets-together");
    let rt = tests::runtime();
    let mut client = connect(&rt, &etcd);
    let stored = rt
        .block_on(subnets::ensure_network(&mut client, &keys, Some(network())))
        .unwrap();
    assert_eq!(stored, network());

    // Three agents at the same instant, each with its own connection.
    let start = Arc::new(Barrier::new(3));
    let claims: Vec<_> = ["n1", "n2", "n3"]
        .into_iter()
        .map(|node| {
            let (start, endpoints, keys) = (start.clone(), etcd.endpoints(), keys.clone());
            std::thread::spawn(move || {
                let rt = tests::runtime();
                let mut client = rt.block_on(Client::connect(endpoints, None)).unwrap();
                let network = rt
                    .block_on(subnets::ensure_network(&mut client, &keys, None))
                    .unwrap();
                start.wait();
                let cidr = rt
                    .block_on(subnets::claim(&mut client, &keys, &network, node))
                    .unwrap();
                (node, cidr)
            })
        })
        .collect();
    let mut got: Vec<(&str, Ipv4Net)> = claims.into_iter().map(|t| t.join().unwrap()).collect();
    got.sort();
    let cidrs: Vec<Ipv4Net> = got.iter().map(|(_, c)| *c).collect();
    for (i, c) in cidrs.iter().enumerate() {
        assert!(network().network.contains(c) && c.prefix_len() == 24, "{c}");
        assert!(!cidrs[..i].contains(c), "two nodes got {c}: {got:?}");
    }

    // Restarted, each finds its own again; one leaving gives its subnet back.
    for (node, cidr) in &got {
        let again = rt
            .block_on(subnets::claim(&mut client, &keys, &network(), node))
            .unwrap();
        assert_eq!(again, *cidr, "{node} keeps its subnet");
    }
    rt.block_on(subnets::release(&mut client, &keys, "n2"))
        .unwrap();
    let mut leased = rt.block_on(subnets::leases(&mut client, &keys)).unwrap();
    leased.sort();
    let mut expected = vec![(got[0].1, "n1".to_string()), (got[2].1, "n3".to_string())];
    expected.sort();
    assert_eq!(leased, expected);

    // The network is stored once: an agent told another one is refused, naming both.
    let other = ClusterNetwork::new("198.18.128.0/20".parse().unwrap(), 24).unwrap();
    match rt.block_on(subnets::ensure_network(&mut client, &keys, Some(other))) {
        Err(SubnetError::NetworkMismatch { stored, given, .. }) => {
            assert_eq!(stored, "198.18.64.0/20 in /24s");
            assert_eq!(given, "198.18.128.0/20 in /24s");
        }
        other => panic!("{other:?}"),
    }

    // A full network says so.
    let small = Keys::new("/fastpath-test/subnets-full");
    let tiny = ClusterNetwork::new("198.18.96.0/23".parse().unwrap(), 24).unwrap();
    rt.block_on(subnets::ensure_network(&mut client, &small, Some(tiny)))
        .unwrap();
    for node in ["x", "y"] {
        rt.block_on(subnets::claim(&mut client, &small, &tiny, node))
            .unwrap();
    }
    assert!(matches!(
        rt.block_on(subnets::claim(&mut client, &small, &tiny, "z")),
        Err(SubnetError::Exhausted { .. })
    ));
}

fn record(name: &str, i: u8) -> NodeRecord {
    let underlay_ip = std::net::Ipv4Addr::new(198, 18, 0, i);
    NodeRecord {
        version: FORMAT_VERSION,
        name: name.into(),
        underlay_ip,
        pod_cidr: Ipv4Net::new(std::net::Ipv4Addr::new(198, 18, 64 + i, 0), 24).unwrap(),
        vtep_mac: Mac::vtep(underlay_ip),
        vni: 42,
        port: 4789,
        mode: Mode::Tc,
    }
}

fn names(peers: &[NodeRecord]) -> Vec<&str> {
    peers.iter().map(|p| p.name.as_str()).collect()
}

/// Follows `directory`'s watch until `done` holds for it, or `within` passes; returns how long it
/// took.
fn watch_until(
    rt: &tokio::runtime::Runtime,
    directory: &mut Directory,
    stream: &mut etcd_client::WatchStream,
    within: Duration,
    done: impl Fn(&Directory) -> bool,
) -> Duration {
    let start = Instant::now();
    while !done(directory) {
        let left = within.saturating_sub(start.elapsed());
        let response = rt
            .block_on(async { tokio::time::timeout(left, stream.message()).await })
            .unwrap_or_else(|_| panic!("not within {within:?}"))
            .unwrap()
            .expect("the watch goes on");
        directory.apply(&response).unwrap();
    }
    start.elapsed()
}

#[test]
fn records_reach_every_watcher_and_go_with_their_node_or_its_lease() {
    tests::require_root();
    let etcd = EtcdCluster::start(3);
    let keys = Keys::new("/fastpath-test/directory");
    let rt = tests::runtime();
    let mut client = connect(&rt, &etcd);
    let local = Local {
        name: "c".into(),
        underlay_ip: "198.18.0.3".parse().unwrap(),
        pod_cidr: "198.18.67.0/24".parse().unwrap(),
        vni: 42,
        port: 4789,
        network: network().network,
        underlay_range: None,
    };

    // Node a is there before the listing; b comes after, while the watch runs.
    let ttl = Duration::from_secs(3);
    let a = rt
        .block_on(directory::register(
            &mut client,
            &keys,
            &record("a", 1),
            ttl,
        ))
        .unwrap();
    let mut dir = Directory::new(keys.clone());
    rt.block_on(dir.list(&mut client)).unwrap();
    assert_eq!(names(&dir.peers(&local).0), ["a"]);
    let mut stream = rt.block_on(dir.watch(&mut client)).unwrap();
    let published = Instant::now();
    let b = rt
        .block_on(directory::register(
            &mut client,
            &keys,
            &record("b", 2),
            ttl,
        ))
        .unwrap();
    let peers_are = |want: &'static [&'static str]| {
        let local = local.clone();
        move |d: &Directory| names(&d.peers(&local).0) == want
    };
    let second = Duration::from_secs(1);
    watch_until(&rt, &mut dir, &mut stream, second, peers_are(&["a", "b"]));
    println!(
        "b's record published and seen by the watcher in {:?}",
        published.elapsed()
    );

    // A restarted agent takes its live lease over: same lease, the record never went.
    let again = rt
        .block_on(directory::register(
            &mut client,
            &keys,
            &record("b", 2),
            ttl,
        ))
        .unwrap();
    assert_eq!(again, b);

    // Records that must not become peers: each ignored with its reason, the rest untouched.
    let mut bad_cidr = record("thief", 9);
    bad_cidr.pod_cidr = local.pod_cidr;
    for (key, value) in [
        (keys.node("junk"), "{\"version\": 1".to_string()),
        (keys.node("thief"), bad_cidr.to_json()),
        (keys.node("liar"), record("a", 10).to_json()),
    ] {
        rt.block_on(client.put(key, value, None)).unwrap();
    }
    watch_until(&rt, &mut dir, &mut stream, second, |d| {
        d.peers(&local).1.len() == 3
    });
    let (peers, ignored) = dir.peers(&local);
    assert_eq!(names(&peers), ["a", "b"]);
    let reasons: Vec<(String, Rejection)> =
        ignored.into_iter().map(|i| (i.key, i.reason)).collect();
    assert!(
        matches!(&reasons[0], (k, Rejection::Unreadable(_)) if *k == keys.node("junk")),
        "{reasons:?}"
    );
    assert_eq!(reasons[1], (keys.node("thief"), Rejection::ClaimsOwnCidr));
    assert_eq!(
        reasons[2],
        (
            keys.node("liar"),
            Rejection::NameMismatch {
                key_name: "liar".into()
            }
        )
    );

    // a leaves: withdrawn at once. b's lease is renewed once, then no more (as when its agent
    // is killed): withdrawn when the lease expires, not before.
    rt.block_on(async {
        let (mut keeper, mut answers) = client.lease_keep_alive(b.lease).await.unwrap();
        keeper.keep_alive().await.unwrap();
        answers.message().await.unwrap();
    });
    let renewed = Instant::now();
    rt.block_on(directory::deregister(&mut client, &keys, "a", Some(a)))
        .unwrap();
    watch_until(&rt, &mut dir, &mut stream, second, peers_are(&["b"]));
    watch_until(&rt, &mut dir, &mut stream, ttl * 3, peers_are(&[]));
    let expired = renewed.elapsed();
    assert!(
        expired >= ttl,
        "b went {expired:?} after its renewal, before its TTL {ttl:?}"
    );
    println!("b withdrawn {expired:?} after its last renewal (lease TTL {ttl:?})");
}
