//! How `fastpath up` fails: bad files are refused before anything is created, names that belong
//! to someone else are never taken over, and an interrupted `up` is finished by `up` or `down`.

use std::{net::Ipv4Addr, process::Output, time::Duration};

use control::{
    config::DEFAULT_CONFIG,
    netlink::Netlink,
    netns::{Netns, OwnedNetns},
    ownership::Ownership,
};
use tests::{PrefixGuard, TestCluster, fastpath, probe, runtime, unique_netns_name, unique_prefix};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

fn assert_nothing_under(prefix: &str) {
    let left = control::netns::list_with_prefix(prefix).unwrap();
    assert!(left.is_empty(), "namespaces left under {prefix}: {left:?}");
    let records = Ownership::new(prefix).claimed_netns().unwrap();
    assert!(
        records.is_empty(),
        "ownership records left under {prefix}: {records:?}"
    );
}

#[test]
fn a_bad_config_is_refused_naming_the_field_and_nothing_is_created() {
    tests::require_root();
    let dir = std::env::temp_dir().join(unique_prefix());
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        ("vni = 42", "vni = 0", "vxlan.vni = 0"),
        (
            "address = \"198.18.2.3\"",
            "address = \"198.18.9.3\"",
            "address = 198.18.9.3",
        ),
        ("vni = 42", "vni = 42\nspeed = 11", "unknown field `speed`"),
        ("mtu = 1500 }", "mtu = 600 }", "underlay.mtu = 600"),
    ];
    for (i, (from, to, expected)) in cases.iter().enumerate() {
        let file = dir.join(format!("bad-{i}.toml"));
        std::fs::write(&file, DEFAULT_CONFIG.replacen(from, to, 1)).unwrap();
        let prefix = PrefixGuard::new();
        let out = fastpath(&prefix.0, None)
            .arg("up")
            .arg("--config")
            .arg(&file)
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.starts_with("fastpath: error: ") && err.contains(expected),
            "expected {expected:?} in: {err}"
        );
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert_nothing_under(&prefix.0);
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_namespace_fastpath_did_not_create_is_refused_and_left_alone() {
    let tc = TestCluster::demo();
    let squatter = OwnedNetns::create(format!("{}a", tc.cluster.prefix())).unwrap();
    let err = tc
        .rt
        .block_on(control::cluster::up(&tc.cluster))
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains(&format!(
            "'{}a' exists but was not created by fastpath",
            tc.cluster.prefix()
        )),
        "{msg}"
    );
    assert!(
        squatter.netns().exists(),
        "the foreign namespace is untouched"
    );
    assert_eq!(
        tc.namespaces_left(),
        vec![squatter.netns().name().unwrap().to_string()]
    );
}

/// A "real node": fastpath runs in a namespace standing in for a machine's root namespace, where
/// the underlay is the user's device and a bridge name may already be taken.
#[test]
fn a_real_node_keeps_the_users_devices_and_refuses_foreign_names() {
    tests::require_root();
    let rt = runtime();
    let machine = OwnedNetns::create(unique_netns_name("machine")).unwrap();
    let remote = OwnedNetns::create(unique_netns_name("remote")).unwrap();
    let nl = rt
        .block_on(async { Netlink::open(machine.netns()) })
        .unwrap();
    rt.block_on(async {
        nl.create_veth("eth1", "eth1", remote.netns())
            .await
            .unwrap();
        nl.add_address("eth1", "198.18.0.1".parse().unwrap(), 24)
            .await
            .unwrap();
        nl.set_up("eth1").await.unwrap();
        nl.create_bridge("fp-br0", None).await.unwrap();
    });
    let config = r#"
        [[node]]
        name = "real"
        pod_cidr = "198.18.1.0/24"
        underlay = { device = "eth1", address = "198.18.0.1/24" }
        pods = [ { name = "r1", address = "198.18.1.2" }, { name = "r2", address = "198.18.1.3" } ]
    "#;
    let file = std::env::temp_dir().join(format!("{}real.toml", unique_prefix()));
    std::fs::write(&file, config).unwrap();
    // The machine namespace goes first, taking the real node's devices with it; the guard then
    // removes the pods' namespaces.
    let guard = PrefixGuard::new();
    let prefix = guard.0.clone();
    let up = || {
        fastpath(&prefix, Some(machine.netns()))
            .arg("up")
            .arg("--config")
            .arg(&file)
            .output()
            .unwrap()
    };

    // The bridge name is taken by a device fastpath did not create.
    let out = up();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .contains("device 'fp-br0' in netns host exists but was not created by fastpath"),
        "{}",
        stderr(&out)
    );
    assert!(
        rt.block_on(nl.link_view("fp-br0"))
            .unwrap()
            .is_some_and(|b| b.alias.is_none()),
        "left as it was"
    );

    rt.block_on(nl.delete_link("fp-br0")).unwrap();
    let out = up();
    assert!(out.status.success(), "{}", stderr(&out));
    let pods = [
        Netns::named(format!("{prefix}real-r1")),
        Netns::named(format!("{prefix}real-r2")),
    ];
    assert!(
        probe::ping(&pods[0], Ipv4Addr::new(198, 18, 1, 3), 2, &[]),
        "r1 -> r2 on a real node"
    );
    let table = control::guard::table_name(&prefix);
    let guarded = || control::guard::installed(machine.netns(), &table).unwrap();
    assert!(guarded(), "the node's guard is in its namespace");

    let out = fastpath(&prefix, Some(machine.netns()))
        .arg("down")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_nothing_under(&prefix);
    assert!(!guarded(), "down removed the guard");
    let left: Vec<String> = rt
        .block_on(nl.links())
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(
        left,
        vec!["lo".to_string(), "eth1".to_string()],
        "only the user's devices remain"
    );
    let eth1 = rt.block_on(nl.link_view("eth1")).unwrap().unwrap();
    assert!(
        eth1.up
            && rt.block_on(nl.ipv4_addresses(eth1.index)).unwrap()
                == vec!["198.18.0.1/24".parse().unwrap()]
    );
    std::fs::remove_file(file).unwrap();
}

#[test]
fn an_up_killed_midway_is_finished_by_up_or_cleaned_by_down() {
    let tc = TestCluster::demo();
    let prefix = tc.cluster.prefix().to_string();
    for (round, delay_ms) in [5u64, 30, 80, 150, 300].into_iter().enumerate() {
        let mut child = fastpath(&prefix, None)
            .arg("up")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        child.wait().unwrap();
        if round % 2 == 0 {
            let out = fastpath(&prefix, None).arg("down").output().unwrap();
            assert!(
                out.status.success(),
                "down after a kill at {delay_ms} ms: {}",
                stderr(&out)
            );
            assert_nothing_under(&prefix);
        } else {
            tc.up();
            assert!(
                tc.status().healthy(),
                "up after a kill at {delay_ms} ms: {:#?}",
                tc.status()
            );
            let pods = tc.pods();
            assert!(
                probe::ping(&pods[0].2, pods[3].1, 1, &[]),
                "a1 -> b2 after a kill at {delay_ms} ms"
            );
        }
    }
}

#[test]
fn a_namespace_left_half_created_is_finished_by_up() {
    let tc = TestCluster::demo();
    // What a kill between "create the mount point" and "mount the namespace" leaves: the
    // ownership record and a plain file.
    let name = format!("{}a", tc.cluster.prefix());
    tc.cluster.ownership.claim_netns(&name, Some("a")).unwrap();
    std::fs::create_dir_all(control::netns::NETNS_RUN_DIR).unwrap();
    std::fs::write(format!("{}/{name}", control::netns::NETNS_RUN_DIR), b"").unwrap();
    assert!(!Netns::named(name.clone()).is_mounted());

    let changes = tc.up().join("\n");
    assert!(
        changes.contains(&format!("removed the unmounted netns file {name}")),
        "{changes}"
    );
    assert!(Netns::named(name).is_mounted());
    assert!(tc.status().healthy(), "{:#?}", tc.status());
}

#[test]
fn a_real_node_with_a_wrong_underlay_is_refused_before_anything_changes() {
    tests::require_root();
    let machine = OwnedNetns::create(unique_netns_name("machine")).unwrap();
    let ip_forward = || {
        machine
            .netns()
            .run(|| std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward"))
            .unwrap()
            .unwrap()
    };
    let before = ip_forward();
    let config = r#"
        [[node]]
        name = "real"
        pod_cidr = "198.18.1.0/24"
        underlay = { device = "eth9", address = "198.18.0.1/24" }
        pods = [ { name = "r1", address = "198.18.1.2" } ]
    "#;
    let file = std::env::temp_dir().join(format!("{}wrong.toml", unique_prefix()));
    std::fs::write(&file, config).unwrap();
    let guard = PrefixGuard::new();
    let out = fastpath(&guard.0, Some(machine.netns()))
        .arg("up")
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    std::fs::remove_file(file).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("underlay.device 'eth9' does not exist"),
        "{}",
        stderr(&out)
    );
    assert_eq!(ip_forward(), before, "forwarding untouched");
    assert_nothing_under(&guard.0);
}

#[test]
fn status_and_stats_of_a_cluster_that_is_not_up_say_so() {
    tests::require_root();
    let prefix = tests::unique_prefix();
    let stats = fastpath(&prefix, None).arg("stats").output().unwrap();
    assert!(stats.status.success(), "stats: {}", stderr(&stats));
    let text = String::from_utf8_lossy(&stats.stdout);
    assert!(text.contains("(no fast path loaded)"), "{text}");
    let status = fastpath(&prefix, None)
        .args(["status", "--json"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&status.stdout)
        .unwrap_or_else(|e| panic!("status --json: {e}: {}", stderr(&status)));
    for node in json["nodes"].as_array().unwrap() {
        assert_eq!(node["present"], false, "{node}");
        assert!(node["guard"].is_null(), "{node}");
    }
    assert_nothing_under(&prefix);
}
