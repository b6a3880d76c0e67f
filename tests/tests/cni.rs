//! fastpath-cni as runtimes run it: the specification's commands and error codes, standalone and
//! chained attachments with traffic on the fast path, DEL and GC leaving nothing behind, 50
//! parallel ADDs, and ADDs killed part-way.

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::unix::process::CommandExt as _,
    time::{Duration, Instant},
};

use control::{
    datapath::{self, Hook},
    netns::{Netns, OwnedNetns},
};
use datapath_common::reasons::*;
use serde_json::{Value, json};
use tests::{
    cni::{CniHost, Reply, address_of, address6_of, readme_conflist},
    probe::{self, pattern},
};

fn netns_path(ns: &OwnedNetns) -> String {
    format!("/run/netns/{}", ns.netns().name().unwrap())
}

fn with(conf: &Value, key: &str, value: Value) -> Value {
    let mut c = conf.clone();
    c[key] = value;
    c
}

const MB: usize = 1 << 20;

#[test]
fn version_lists_what_is_supported_and_other_versions_are_refused() {
    let host = CniHost::new();
    let env = [("CNI_COMMAND", "VERSION".to_string())];
    let v = host.run(&env, br#"{"cniVersion":"1.0.0"}"#).expect_ok();
    assert_eq!(v["cniVersion"], "1.0.0");
    let supported: Vec<&str> = v["supportedVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(supported, ["1.0.0", "1.1.0"]);

    let c = host.container("c");
    let conf = host.standalone("198.18.161.0/24");
    for old in ["0.4.0", "0.3.1", "2.0.0"] {
        let reply = host.exec(
            "ADD",
            "c",
            Some(c.netns()),
            &with(&conf, "cniVersion", json!(old)),
        );
        reply.expect_code(1);
    }
    host.assert_clean();
}

#[test]
fn every_error_has_its_code() {
    let host = CniHost::new();
    let c = host.container("c");
    let conf = host.standalone("198.18.162.0/24");
    let bytes = |v: &Value| serde_json::to_vec(v).unwrap();
    let env = |pairs: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
        pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
    };
    let netns = netns_path(&c);

    // Invalid environment (4).
    for pairs in [
        vec![("CNI_COMMAND", "FROB")],
        vec![
            ("CNI_COMMAND", "ADD"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_NETNS", &netns),
        ],
        vec![
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_IFNAME", "eth0"),
        ],
        vec![
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c/../x"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_NETNS", &netns),
        ],
        vec![
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_IFNAME", "eth0:with-colon"),
            ("CNI_NETNS", &netns),
        ],
        vec![
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", "novalue"),
        ],
    ] {
        host.run(&env(&pairs), &bytes(&conf)).expect_code(4);
    }

    // Decoding failures (6): not JSON, a required key missing.
    host.exec("ADD", "c", Some(c.netns()), &json!(null))
        .expect_code(6);
    host.run(&CniHost::env("ADD", "c", Some(c.netns())), b"{not json")
        .expect_code(6);
    let mut nameless = conf.clone();
    nameless.as_object_mut().unwrap().remove("name");
    host.exec("ADD", "c", Some(c.netns()), &nameless)
        .expect_code(6);

    // Invalid network configuration (7).
    let mut no_ipam = conf.clone();
    no_ipam.as_object_mut().unwrap().remove("ipam");
    for bad in [
        with(&conf, "mode", json!("warp")),
        with(&conf, "name", json!("a/b")),
        with(&conf, "mtu", json!(100)),
        with(&conf, "bridge", json!("much-too-long-bridge")),
        with(&conf, "dataDir", json!("relative/dir")),
        with(&conf, "ipam", json!({ "type": "no-such-ipam" })),
        no_ipam,
    ] {
        host.exec("ADD", "c", Some(c.netns()), &bad).expect_code(7);
    }
    // A "node" that cannot be joined: the message says what is wrong with it.
    for (bad, says) in [
        (
            json!({ "config": "relative.toml", "name": "a" }),
            "absolute path",
        ),
        (
            json!({ "config": "/nonexistent/cluster.toml", "name": "a" }),
            "/nonexistent/cluster.toml",
        ),
        (json!("a"), "must be an object"),
        (
            json!({ "config": "/x.toml", "name": "a", "vni": 1 }),
            "unknown key \"vni\"",
        ),
    ] {
        let out = host.exec("ADD", "c", Some(c.netns()), &with(&conf, "node", bad));
        out.expect_code(7);
        assert!(
            out.json["msg"].as_str().unwrap().contains(says),
            "{}",
            out.json
        );
    }
    // CHECK needs prevResult.
    host.exec("CHECK", "c", Some(c.netns()), &conf)
        .expect_code(7);

    // The container's namespace does not exist (3); CHECK of an unknown container (3).
    let gone = vec![
        ("CNI_COMMAND", "ADD".to_string()),
        ("CNI_CONTAINERID", "c".to_string()),
        ("CNI_IFNAME", "eth0".to_string()),
        ("CNI_NETNS", "/run/netns/fpt-no-such-namespace".to_string()),
        ("CNI_PATH", tests::cni::REFERENCE_PLUGINS.to_string()),
    ];
    host.run(&gone, &bytes(&conf)).expect_code(3);
    let prev = json!({ "cniVersion": "1.0.0", "ips": [{ "address": "198.18.162.9/24" }] });
    host.exec(
        "CHECK",
        "unknown",
        Some(c.netns()),
        &with(&conf, "prevResult", prev),
    )
    .expect_code(3);

    // Try again later (11): another invocation holds the network for longer than lockTimeout.
    let lock_dir = host.data_dir().join(&host.network);
    std::fs::create_dir_all(&lock_dir).unwrap();
    let file = std::fs::File::create(lock_dir.join("lock")).unwrap();
    let held = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let started = Instant::now();
    host.exec(
        "ADD",
        "c",
        Some(c.netns()),
        &with(&conf, "lockTimeout", json!(0.3)),
    )
    .expect_code(11);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "it waited first"
    );
    drop(held);

    // STATUS (1.1.0): ready with a runnable IPAM plugin, unavailable (50) without one.
    let conf11 = with(&conf, "cniVersion", json!("1.1.0"));
    let status = |path: &str| {
        host.run(
            &[
                ("CNI_COMMAND", "STATUS".to_string()),
                ("CNI_PATH", path.to_string()),
            ],
            &bytes(&conf11),
        )
    };
    let ok = status(tests::cni::REFERENCE_PLUGINS);
    assert!(ok.success, "STATUS: {} {}", ok.json, ok.stderr);
    assert_eq!(ok.json, Value::Null, "STATUS prints nothing on success");
    status("/nonexistent").expect_code(50);

    // GC without the list of valid attachments would remove them all: refused (7).
    host.run(
        &[
            ("CNI_COMMAND", "GC".to_string()),
            ("CNI_PATH", tests::cni::REFERENCE_PLUGINS.to_string()),
        ],
        &bytes(&conf11),
    )
    .expect_code(7);

    host.assert_clean();
}

/// Pings both ways and sends 1 MB of TCP (IPv4 or IPv6); returns how many packets tc_pod switched
/// meanwhile.
fn traffic(
    host: &CniHost,
    a: &Netns,
    a_ip: impl Into<IpAddr>,
    b: &Netns,
    b_ip: impl Into<IpAddr>,
) -> u64 {
    let (a_ip, b_ip) = (a_ip.into(), b_ip.into());
    let before = host.packets(Hook::Tc, REDIRECT_SWITCHED);
    assert!(probe::ping(a, b_ip, 3, &[]), "ping {a_ip} -> {b_ip}");
    assert!(probe::ping(b, a_ip, 3, &[]), "ping {b_ip} -> {a_ip}");
    let got = probe::tcp_transfer(a, b, b_ip, MB);
    assert!(got == pattern(MB), "TCP {a_ip} -> {b_ip} byte for byte");
    host.packets(Hook::Tc, REDIRECT_SWITCHED) - before
}

#[test]
fn standalone_pods_talk_on_the_fast_path_and_del_removes_everything() {
    let host = CniHost::new();
    let (c1, c2) = (host.container("c1"), host.container("c2"));
    let conf = host.standalone("198.18.163.0/24");

    let r1 = host.exec("ADD", "c1", Some(c1.netns()), &conf).expect_ok();
    let r2 = host.exec("ADD", "c2", Some(c2.netns()), &conf).expect_ok();
    assert_eq!(r1["cniVersion"], "1.0.0");
    let (ip1, ip2) = (address_of(&r1), address_of(&r2));
    assert_ne!(ip1, ip2);
    let container_if = r1["ips"][0]["interface"].as_u64().unwrap() as usize;
    assert_eq!(r1["interfaces"][container_if]["name"], "eth0");
    assert_eq!(r1["interfaces"][container_if]["sandbox"], netns_path(&c1));
    assert_eq!(r1["ips"][0]["gateway"], "198.18.163.1");
    assert_eq!(r1["routes"][0]["dst"], "0.0.0.0/0");

    let veths = host.links_named("fpc");
    assert_eq!(veths.len(), 2, "{veths:?}");
    // The first ADD loaded the programs and pinned them; the second loaded none: both veths run
    // the pinned program, as their one ingress filter, and nothing through tcx.
    let pinned = datapath::pinned_program_id(&host.pin_dir(), Hook::Tc).unwrap();
    let rt = tests::runtime();
    let nl = rt
        .block_on(async { control::netlink::Netlink::open(&host.node) })
        .unwrap();
    for veth in &veths {
        assert_eq!(
            rt.block_on(nl.ingress_bpf_filters(veth)).unwrap(),
            [("tc_pod".to_string(), pinned)],
            "{veth}"
        );
        assert_eq!(
            datapath::tcx_ingress_program_ids(&host.node, veth).unwrap(),
            Vec::<u32>::new(),
            "{veth}"
        );
    }
    let entries: BTreeSet<Ipv4Addr> = host.endpoint_entries().iter().map(|e| e.0).collect();
    assert_eq!(entries, BTreeSet::from([ip1, ip2]));

    let switched = traffic(&host, c1.netns(), ip1, c2.netns(), ip2);
    assert!(
        switched >= 12,
        "pings and TCP went through tc_pod: {switched} switched"
    );

    // CHECK passes on what ADD made, and fails with its code once a route is gone.
    host.exec(
        "CHECK",
        "c1",
        Some(c1.netns()),
        &with(&conf, "prevResult", r1.clone()),
    )
    .expect_ok();
    let out = std::process::Command::new("ip")
        .args(["-n", c1.netns().name().unwrap(), "route", "del", "default"])
        .status()
        .unwrap();
    assert!(out.success());
    let broken = host.exec(
        "CHECK",
        "c1",
        Some(c1.netns()),
        &with(&conf, "prevResult", r1),
    );
    broken.expect_code(101);
    assert!(
        broken.json["msg"]
            .as_str()
            .unwrap()
            .contains("route to 0.0.0.0/0"),
        "{}",
        broken.json
    );

    // A record lost (a wiped dataDir): DEL as a runtime sends it, with the cached result as
    // prevResult, still releases the veth (found by its derived name) and the address.
    let c3 = host.container("c3");
    let r3 = host.exec("ADD", "c3", Some(c3.netns()), &conf).expect_ok();
    std::fs::remove_file(host.data_dir().join(&host.network).join("c3:eth0.json")).unwrap();
    host.exec(
        "DEL",
        "c3",
        Some(c3.netns()),
        &with(&conf, "prevResult", r3),
    )
    .expect_ok();
    assert_eq!(host.links_named("fpc").len(), 2, "c3's veth went");
    assert_eq!(host.allocations(), [ip1, ip2], "c3's address went");
    assert_eq!(host.endpoint_entries().len(), 2, "c3's map entry went");

    // DEL: c1's veth, address and map entry go; DEL again and DEL of an unknown container pass.
    host.exec("DEL", "c1", Some(c1.netns()), &conf).expect_ok();
    assert_eq!(host.links_named("fpc").len(), 1);
    assert_eq!(host.allocations(), [ip2]);
    assert_eq!(host.endpoint_entries().len(), 1);
    host.exec("DEL", "c1", Some(c1.netns()), &conf).expect_ok();
    host.exec("DEL", "never-added", None, &conf).expect_ok();

    // DEL after the container's namespace is gone.
    let c2_path = netns_path(&c2);
    drop(c2);
    let env: Vec<_> = CniHost::env("DEL", "c2", None)
        .into_iter()
        .chain([("CNI_NETNS", c2_path)])
        .collect();
    host.run(&env, &serde_json::to_vec(&conf).unwrap())
        .expect_ok();
    host.assert_clean();
}

/// Once the first ADD has loaded and pinned the programs, ADD and DEL create nothing in the
/// kernel's BPF: no program, map or BTF, not even the feature probes a library may run first (a
/// DEVMAP created and freed makes the next device deletion wait behind its RCU grace periods).
#[test]
fn adds_after_the_first_and_dels_create_no_bpf_object() {
    let host = CniHost::new();
    let (c1, c2) = (host.container("c1"), host.container("c2"));
    let conf = host.standalone("198.18.169.0/24");
    let creating = |calls: &[String]| -> Vec<String> {
        calls
            .iter()
            .filter(|c| {
                matches!(
                    c.as_str(),
                    "BPF_PROG_LOAD" | "BPF_MAP_CREATE" | "BPF_BTF_LOAD"
                )
            })
            .cloned()
            .collect()
    };

    let (first, calls) = host.exec_tracing_bpf("ADD", "c1", Some(c1.netns()), &conf);
    first.expect_ok();
    assert!(
        calls.iter().any(|c| c == "BPF_PROG_LOAD"),
        "the first ADD loads the programs, and the trace shows it: {calls:?}"
    );
    for command in ["ADD", "DEL"] {
        let (reply, calls) = host.exec_tracing_bpf(command, "c2", Some(c2.netns()), &conf);
        reply.expect_ok();
        assert!(
            calls.iter().any(|c| c == "BPF_OBJ_GET"),
            "{command} opens the pins: {calls:?}"
        );
        assert_eq!(
            creating(&calls),
            Vec::<String>::new(),
            "{command}: {calls:?}"
        );
    }
    host.exec("DEL", "c1", Some(c1.netns()), &conf).expect_ok();
    host.assert_clean();
}

#[test]
fn chained_after_the_bridge_plugin_it_accelerates_that_plugins_veths() {
    let host = CniHost::new();
    let (c1, c2) = (host.container("c1"), host.container("c2"));
    let bridge_conf = host.bridge_plugin("198.18.164.0/24");
    let ours = |prev: &Value| host.chained(prev);
    let mut results = Vec::new();
    for (id, c) in [("c1", &c1), ("c2", &c2)] {
        let prev = host
            .run_reference(
                "bridge",
                &CniHost::env("ADD", id, Some(c.netns())),
                &bridge_conf,
            )
            .expect_ok();
        let out = host
            .exec("ADD", id, Some(c.netns()), &ours(&prev))
            .expect_ok();
        assert_eq!(out, prev, "the chain's result passes through unchanged");
        results.push(prev);
    }
    let (ip1, ip2) = (address_of(&results[0]), address_of(&results[1]));
    assert_eq!(host.endpoint_entries().len(), 2);
    let switched = traffic(&host, c1.netns(), ip1, c2.netns(), ip2);
    assert!(
        switched >= 12,
        "the bridge plugin's pods on tc_pod: {switched} switched"
    );
    host.exec("CHECK", "c1", Some(c1.netns()), &ours(&results[0]))
        .expect_ok();

    // DEL runs in reverse order: ours first (the veth stays: it is the bridge plugin's).
    for (i, (id, c)) in [("c1", &c1), ("c2", &c2)].into_iter().enumerate() {
        host.exec("DEL", id, Some(c.netns()), &ours(&results[i]))
            .expect_ok();
        let links = tests::runtime().block_on(async {
            control::netlink::Netlink::open(&host.node)
                .unwrap()
                .links()
                .await
                .unwrap()
        });
        assert_eq!(
            links
                .iter()
                .filter(|l| l.kind.as_deref() == Some("veth"))
                .count(),
            2 - i,
            "fastpath-cni leaves the bridge plugin's veth to it"
        );
        // ...without its program: the veth's filter went with the DEL.
        let veth = results[i]["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| {
                i["sandbox"].as_str().is_none_or(str::is_empty)
                    && i["name"] != bridge_conf["bridge"]
            })
            .and_then(|i| i["name"].as_str())
            .unwrap()
            .to_string();
        let rt = tests::runtime();
        let nl = rt
            .block_on(async { control::netlink::Netlink::open(&host.node) })
            .unwrap();
        let filters = rt.block_on(nl.ingress_bpf_filters(&veth)).unwrap();
        assert_eq!(filters, Vec::new(), "{veth} after DEL");
        host.run_reference(
            "bridge",
            &CniHost::env("DEL", id, Some(c.netns())),
            &bridge_conf,
        )
        .expect_ok();
    }
    host.assert_clean();
}

#[test]
fn gc_removes_the_attachments_the_runtime_no_longer_lists() {
    let host = CniHost::new();
    let conf = host.standalone("198.18.165.0/24");
    let containers: Vec<OwnedNetns> = ["c1", "c2", "c3"]
        .iter()
        .map(|t| host.container(t))
        .collect();
    let mut ips = Vec::new();
    for (i, c) in containers.iter().enumerate() {
        let r = host
            .exec("ADD", &format!("c{}", i + 1), Some(c.netns()), &conf)
            .expect_ok();
        ips.push(address_of(&r));
    }
    gc(
        &host,
        &conf,
        json!([{ "containerID": "c2", "ifname": "eth0" }]),
    )
    .expect_ok();
    assert_eq!(host.allocations(), [ips[1]]);
    assert_eq!(host.links_named("fpc").len(), 1);
    let entries: Vec<Ipv4Addr> = host.endpoint_entries().iter().map(|e| e.0).collect();
    assert_eq!(entries, [ips[1]]);
    assert_eq!(host.records(), ["c2:eth0.json"]);
    assert!(
        probe::ping(
            containers[1].netns(),
            Ipv4Addr::new(198, 18, 165, 1),
            1,
            &[]
        ),
        "the kept container still reaches its gateway"
    );
    gc(&host, &conf, json!([])).expect_ok();
    host.assert_clean();
}

#[test]
fn fifty_parallel_adds_get_fifty_addresses_and_map_entries() {
    const N: usize = 50;
    let host = CniHost::new();
    let conf = host.standalone("198.18.166.0/24");
    let containers: Vec<OwnedNetns> = (0..N).map(|i| host.container(&format!("p{i}"))).collect();
    let children: Vec<_> = containers
        .iter()
        .enumerate()
        .map(|(i, c)| {
            host.start(
                host.command(&CniHost::env("ADD", &format!("p{i}"), Some(c.netns()))),
                &conf,
            )
        })
        .collect();
    let mut ips = BTreeSet::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let json: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        assert!(
            out.status.success(),
            "ADD: {json} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ips.insert(address_of(&json));
    }
    assert_eq!(ips.len(), N, "distinct addresses");
    let entries: BTreeSet<Ipv4Addr> = host.endpoint_entries().iter().map(|e| e.0).collect();
    assert_eq!(entries, ips, "one map entry per container");
    assert_eq!(host.allocations().len(), N);

    let dels: Vec<_> = (0..N)
        .map(|i| {
            host.start(
                host.command(&CniHost::env("DEL", &format!("p{i}"), None)),
                &conf,
            )
        })
        .collect();
    for child in dels {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "DEL: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    host.assert_clean();
}

#[test]
fn an_add_killed_at_any_point_is_cleaned_by_del_or_gc() {
    let host = CniHost::new();
    let conf = host.standalone("198.18.167.0/24");
    // How long a whole ADD takes here, to spread the kills over it.
    let probe_ns = host.container("probe");
    let started = Instant::now();
    host.exec("ADD", "probe", Some(probe_ns.netns()), &conf)
        .expect_ok();
    let full = started.elapsed();
    host.exec("DEL", "probe", None, &conf).expect_ok();
    host.assert_clean();

    const KILLS: u32 = 10;
    for i in 0..KILLS {
        let c = host.container(&format!("k{i}"));
        let id = format!("k{i}");
        let mut cmd = host.command(&CniHost::env("ADD", &id, Some(c.netns())));
        // Its own process group, so the kill takes the IPAM plugin it may be running with it.
        cmd.process_group(0);
        let mut child = host.start(cmd, &conf);
        std::thread::sleep(full * i / (KILLS - 1));
        let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = child.wait();
        let cleaned: Reply = if i % 2 == 0 {
            host.exec("DEL", &id, Some(c.netns()), &conf)
        } else {
            gc(&host, &conf, json!([]))
        };
        assert!(
            cleaned.success,
            "cleanup after a kill at {:?}: {}",
            full * i / (KILLS - 1),
            cleaned.json
        );
        host.assert_clean();
    }
}

/// GC with `valid` as the valid attachments.
fn gc(host: &CniHost, conf: &Value, valid: Value) -> Reply {
    let mut c = with(conf, "cniVersion", json!("1.1.0"));
    c["cni.dev/valid-attachments"] = valid;
    host.run(
        &[
            ("CNI_COMMAND", "GC".to_string()),
            ("CNI_PATH", tests::cni::REFERENCE_PLUGINS.to_string()),
        ],
        &serde_json::to_vec(&c).unwrap(),
    )
}

#[test]
fn an_add_killed_at_each_step_is_undone_by_del_gc_or_a_retried_add() {
    use std::os::unix::process::ExitStatusExt as _;
    let host = CniHost::new();
    let conf = host.standalone("198.18.168.0/24");
    for (i, step) in control::cni::CRASH_POINTS.iter().enumerate() {
        for cleanup in ["DEL", "GC", "ADD"] {
            let id = format!("s{i}{}", cleanup.to_lowercase());
            let c = host.container(&id);
            let mut env = CniHost::env("ADD", &id, Some(c.netns()));
            env.push(("FASTPATH_CNI_KILL_AT", step.to_string()));
            let out = host
                .start(host.command(&env), &conf)
                .wait_with_output()
                .unwrap();
            assert_eq!(out.status.signal(), Some(9), "{step}: killed there");
            // What the step had done is there, for the cleanup to find.
            assert_eq!(host.records().len(), 1, "{step}: the record");
            assert_eq!(
                host.allocations().len(),
                usize::from(i >= 1),
                "{step}: address"
            );
            assert_eq!(
                host.links_named("fpc").len(),
                usize::from(i >= 2),
                "{step}: veth"
            );
            match cleanup {
                "DEL" => host.exec("DEL", &id, Some(c.netns()), &conf).expect_ok(),
                "GC" => gc(&host, &conf, json!([])).expect_ok(),
                _ if *step == "record-complete" => {
                    // Finished but for the maps: a second ADD is refused, DEL then cleans.
                    host.exec("ADD", &id, Some(c.netns()), &conf)
                        .expect_code(100);
                    host.exec("DEL", &id, Some(c.netns()), &conf).expect_ok()
                }
                _ => {
                    // The runtime retries: the leftovers are undone first, then ADD works.
                    let r = host.exec("ADD", &id, Some(c.netns()), &conf).expect_ok();
                    assert_eq!(host.endpoint_entries().len(), 1, "{step}: retried ADD");
                    host.exec("DEL", &id, Some(c.netns()), &with(&conf, "prevResult", r))
                        .expect_ok()
                }
            };
            host.assert_clean();
        }
    }
}

#[test]
fn the_readme_conflists_work_as_written() {
    for kind in ["standalone", "chained"] {
        let host = CniHost::new();
        let mut list = readme_conflist(kind);
        // As written, but with this test's state directories and a network name of its own.
        list["name"] = json!(host.network);
        for plugin in list["plugins"].as_array_mut().unwrap() {
            if plugin.get("ipam").is_some() {
                plugin["ipam"]["dataDir"] = json!(host.ipam_dir());
            }
            if plugin["type"] == "fastpath-cni" {
                plugin["dataDir"] = json!(host.data_dir());
            }
        }
        let (c1, c2) = (host.container("c1"), host.container("c2"));
        let r1 = host.conflist_add(&list, "c1", c1.netns());
        let r2 = host.conflist_add(&list, "c2", c2.netns());
        let switched = traffic(
            &host,
            c1.netns(),
            address_of(&r1),
            c2.netns(),
            address_of(&r2),
        );
        assert!(switched >= 12, "{kind}: {switched} switched");
        // Dual stack: both addresses in the result, the pod and the maps; IPv6 switched too.
        let (v6_1, v6_2) = (address6_of(&r1), address6_of(&r2));
        let entries6: BTreeSet<Ipv6Addr> = host.endpoint_entries6().iter().map(|e| e.0).collect();
        assert_eq!(entries6, BTreeSet::from([v6_1, v6_2]), "{kind}");
        let switched = traffic(&host, c1.netns(), v6_1, c2.netns(), v6_2);
        assert!(switched >= 12, "{kind}: {switched} IPv6 packets switched");
        let mut allocated = vec![v6_1, v6_2];
        allocated.sort();
        assert_eq!(
            host.allocations6(),
            allocated,
            "{kind}: IPv6 from the second range"
        );
        // CHECK verifies the IPv6 address too.
        let conf = list["plugins"].as_array().unwrap().last().unwrap().clone();
        let check = |result: &Value| {
            let mut conf = conf.clone();
            conf["cniVersion"] = list["cniVersion"].clone();
            conf["name"] = list["name"].clone();
            conf["prevResult"] = result.clone();
            host.exec("CHECK", "c1", Some(c1.netns()), &conf)
        };
        check(&r1).expect_ok();
        let gone = format!("{v6_1}/64");
        let ok = std::process::Command::new("ip")
            .args([
                "-n",
                c1.netns().name().unwrap(),
                "-6",
                "addr",
                "del",
                &gone,
                "dev",
                "eth0",
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok, "{kind}: remove {gone}");
        let broken = check(&r1);
        broken.expect_code(101);
        assert!(
            broken.json["msg"].as_str().unwrap().contains(&gone),
            "{kind}: {}",
            broken.json
        );

        let out = host
            .command_of(&tests::cni::plugin_bin(), &[])
            .args(["show", "--json", "--data-dir"])
            .arg(host.data_dir())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "show: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
        let attachments = shown[0]["attachments"].as_array().unwrap();
        assert_eq!(attachments.len(), 2, "{kind}: {shown}");
        assert!(
            attachments.iter().all(|a| a["fast_path"] == true),
            "{kind}: show says both pods are on the fast path: {shown}"
        );

        host.conflist_del(&list, "c1", &r1);
        host.conflist_del(&list, "c2", &r2);
        host.assert_clean();
    }
}
