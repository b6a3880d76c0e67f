//! `fastpath monitor` end to end, on the demo cluster: the events the programs write for real
//! packets (a pod's spoofed frame, a ping across nodes), as lines, JSON and a pcap file that
//! tcpdump reads; no event at all without a monitor; a reader that stops reading loses events
//! (counted) but no packet; a killed monitor's request lapses within a second; the pinned maps
//! carry BTF that bpftool prints by field name.

use std::{
    io::{BufRead as _, BufReader, Read as _},
    net::Ipv4Addr,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use control::{config::Mode, datapath, netns::Netns};
use serde_json::Value;
use tests::{TestCluster, cni::CniHost, fastpath, frames, probe};

const A1: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
const A2: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 3);
const B1: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 2);
/// A source no pod has.
const SPOOFED: Ipv4Addr = Ipv4Addr::new(198, 18, 9, 9);
const SPOOF_PORT: u16 = 45000;

/// A running `fastpath monitor`, its stderr read line by line as it comes.
struct Monitor {
    child: Child,
    stderr: mpsc::Receiver<String>,
    stderr_seen: Vec<String>,
}

impl Monitor {
    /// Starts `fastpath monitor ARGS` under `prefix` (inside `netns` when given) and waits until
    /// it says it reads.
    fn start(prefix: &str, netns: Option<&Netns>, args: &[&str]) -> Self {
        let mut child = fastpath(prefix, netns)
            .arg("monitor")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("fastpath monitor starts");
        let (tx, stderr) = mpsc::channel();
        let pipe = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut m = Self {
            child,
            stderr,
            stderr_seen: Vec::new(),
        };
        m.wait_for_stderr("monitor: reading", Duration::from_secs(10));
        m
    }

    fn wait_for_stderr(&mut self, text: &str, within: Duration) -> String {
        let end = Instant::now() + within;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    self.stderr_seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "monitor printed no '{text}' within {within:?}; stderr: {:?}",
                    self.stderr_seen
                ),
            }
        }
    }

    /// SIGTERM, then what it printed: stdout, and stderr's lines.
    fn stop(self) -> (String, Vec<String>) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("SIGTERM to the monitor");
        self.finish()
    }

    /// Waits for it to exit by itself (--seconds, --count).
    fn finish(mut self) -> (String, Vec<String>) {
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut out)
            .expect("monitor output");
        let status = self.child.wait().expect("monitor exits");
        self.stderr_seen.extend(self.stderr.iter());
        assert!(
            status.success(),
            "monitor failed: {status}; stderr: {:?}",
            self.stderr_seen
        );
        (out, std::mem::take(&mut self.stderr_seen))
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A UDP frame from a1's own MAC to a2 with a source address that is not a1's.
fn spoofed_frame(tc: &TestCluster) -> Vec<u8> {
    let a1_mac = tc.mac_of(&tc.pod_netns("a1"), "eth0");
    let a2_mac = tc.mac_of(&tc.pod_netns("a2"), "eth0");
    frames::ipv4_udp(
        a2_mac,
        a1_mac,
        frames::Ipv4 {
            src: SPOOFED.octets(),
            dst: A2.octets(),
            ..frames::Ipv4::default()
        },
        SPOOF_PORT,
        b"spoofed",
    )
}

fn pin_dir(tc: &TestCluster, node: &str) -> std::path::PathBuf {
    tc.cluster.pin_dir(tc.cluster.config.node(node).unwrap())
}

fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn a_spoofed_packet_is_one_drop_event_as_a_line_as_json_and_in_a_pcap_file() {
    for (mode, program) in [(Mode::Tc, "tc_pod"), (Mode::Xdp, "xdp_pod")] {
        let tc = TestCluster::demo_in(mode);
        let prefix = tc.cluster.prefix().to_string();
        let a1 = tc.pod_netns("a1");
        let frame = spoofed_frame(&tc);

        let text = Monitor::start(&prefix, None, &["--seconds", "2"]);
        probe::send_raw_frame(&a1, "eth0", &frame);
        let (out, _) = text.finish();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "{mode:?}: one drop, one line: {out}");
        for part in [
            program,
            "drop",
            "spoofed-ip",
            "a1",
            &format!("{SPOOFED}:40000 → {A2}:{SPOOF_PORT} udp"),
        ] {
            assert!(
                lines[0].contains(part),
                "{mode:?}: no '{part}' in {}",
                lines[0]
            );
        }

        let pcap = std::env::temp_dir().join(format!("{prefix}monitor.pcap"));
        let json = Monitor::start(
            &prefix,
            None,
            &["--json", "--seconds", "2", "--pcap", pcap.to_str().unwrap()],
        );
        probe::send_raw_frame(&a1, "eth0", &frame);
        let (out, stderr) = json.finish();
        let events = json_lines(&out);
        assert_eq!(events.len(), 1, "{mode:?}: one drop, one object: {out}");
        let e = &events[0];
        assert_eq!(e["source"], "a");
        assert_eq!(e["program"], program);
        assert_eq!(e["verdict"], "drop");
        assert_eq!(e["reason"], "spoofed-ip");
        assert_eq!(e["interface"], "a1");
        assert_eq!(e["src"], SPOOFED.to_string());
        assert_eq!(e["dst"], A2.to_string());
        assert_eq!(e["protocol"], "udp");
        assert_eq!(e["src_port"], 40000);
        assert_eq!(e["dst_port"], SPOOF_PORT);
        assert_eq!(e["len"], frame.len());
        assert_eq!(e["cap_len"], frame.len());
        assert!(
            stderr.iter().any(|l| l.contains("1 events shown, 0 lost")),
            "{stderr:?}"
        );

        let read = Command::new("tcpdump")
            .args(["-nn", "-r"])
            .arg(&pcap)
            .output()
            .expect("tcpdump runs");
        let shown = String::from_utf8_lossy(&read.stdout);
        let _ = std::fs::remove_file(&pcap);
        assert!(read.status.success(), "tcpdump -r: {read:?}");
        assert_eq!(shown.lines().count(), 1, "{shown}");
        assert!(
            shown.contains(&format!(
                "{SPOOFED}.40000 > {A2}.{SPOOF_PORT}: UDP, length 7"
            )),
            "tcpdump shows: {shown}"
        );
    }
}

#[test]
fn trace_during_a_ping_shows_each_decision_on_both_nodes() {
    let tc = TestCluster::demo_in(Mode::Tc);
    let prefix = tc.cluster.prefix().to_string();
    let a1 = tc.pod_netns("a1");
    let m = Monitor::start(&prefix, None, &["--type", "trace", "--json"]);
    assert!(probe::ping(&a1, B1, 3, &["-i", "0.2"]));
    assert!(probe::ping(&a1, A2, 2, &["-i", "0.2"]));
    let (out, _) = m.stop();
    let events = json_lines(&out);
    let icmp = |e: &&Value, src: Ipv4Addr, dst: Ipv4Addr| {
        e["src"] == src.to_string() && e["dst"] == dst.to_string() && e["protocol"] == "icmp"
    };
    let count = |source: &str, reason: &str, from: &str, to: Option<&str>, src, dst| {
        events
            .iter()
            .filter(|e| {
                e["source"] == source
                    && e["reason"] == reason
                    && e["interface"] == from
                    && to.is_none_or(|t| e["target_interface"] == t)
                    && icmp(e, src, dst)
            })
            .count()
    };
    // Echo requests a1 → b1: encapsulated on a (the event names the pods inside), decapsulated
    // on b to b1; replies the other way.
    assert_eq!(count("a", "encapsulated", "a1", None, A1, B1), 3, "{out}");
    assert_eq!(
        count("b", "decapsulated", "fp-ul0", Some("b1"), A1, B1),
        3,
        "{out}"
    );
    assert_eq!(count("b", "encapsulated", "b1", None, B1, A1), 3, "{out}");
    assert_eq!(
        count("a", "decapsulated", "fp-ul0", Some("a1"), B1, A1),
        3,
        "{out}"
    );
    assert_eq!(count("a", "switched", "a1", Some("a2"), A1, A2), 2, "{out}");
    assert_eq!(count("a", "switched", "a2", Some("a1"), A2, A1), 2, "{out}");
    let encapsulated = events
        .iter()
        .find(|e| e["reason"] == "encapsulated")
        .unwrap();
    assert_eq!(encapsulated["inner"]["vni"], 42, "{encapsulated}");
    assert_eq!(
        encapsulated["inner"]["src"],
        A1.to_string(),
        "{encapsulated}"
    );
}

#[test]
fn without_a_monitor_the_programs_write_no_event() {
    let tc = TestCluster::demo_in(Mode::Tc);
    let prefix = tc.cluster.prefix().to_string();
    let a1 = tc.pod_netns("a1");
    let frame = spoofed_frame(&tc);
    let dirs = [pin_dir(&tc, "a"), pin_dir(&tc, "b")];
    let produced = || -> Vec<u64> {
        dirs.iter()
            .map(|d| datapath::events_produced(d).unwrap())
            .collect()
    };
    let flow = || {
        assert!(probe::ping(&a1, B1, 5, &["-i", "0.05"]));
        assert!(probe::ping(&a1, A2, 5, &["-i", "0.05"]));
        probe::send_raw_frames(&a1, "eth0", &frame, 20);
    };

    let before = produced();
    flow();
    assert_eq!(produced(), before, "events written with no monitor");

    // The same flow with a monitor moves both rings: the check above can fail.
    let m = Monitor::start(&prefix, None, &["--type", "trace"]);
    flow();
    let during = produced();
    let (out, _) = m.stop();
    assert!(
        during.iter().zip(&before).all(|(d, b)| d > b),
        "rings did not move with a monitor: {before:?} → {during:?}; {out}"
    );

    // And after it: its request is cleared, nothing is written.
    let after = produced();
    flow();
    assert_eq!(produced(), after, "events written after the monitor left");
}

#[test]
fn a_reader_that_stops_reading_loses_events_counted_and_no_packet() {
    let tc = TestCluster::demo_in(Mode::Tc);
    let prefix = tc.cluster.prefix().to_string();
    let a1 = tc.pod_netns("a1");
    let frame = spoofed_frame(&tc);
    let lost_everywhere = || -> u64 {
        ["a", "b"]
            .iter()
            .map(|n| {
                let maps = datapath::MonitorMaps::open(&pin_dir(&tc, n)).unwrap();
                maps.lost().unwrap().iter().sum::<u64>()
            })
            .sum()
    };
    let before = lost_everywhere();
    // Its output is never read: the pipe fills, then the monitor's backlog, then the ring.
    let m = Monitor::start(&prefix, None, &["--type", "all", "--json"]);
    let ping = probe::background_ping(&a1, B1, 300);
    for _ in 0..10 {
        probe::send_raw_frames(&a1, "eth0", &frame, 1000);
        std::thread::sleep(Duration::from_millis(100));
    }
    let (sent, received) = probe::ping_result(ping);
    assert_eq!((sent, received), (300, 300), "the datapath lost packets");
    let lost_in_maps: u64 = datapath::MonitorMaps::open(&pin_dir(&tc, "a"))
        .unwrap()
        .lost()
        .unwrap()
        .iter()
        .sum();
    assert!(lost_in_maps > 0, "the ring never filled");
    // `fastpath stats` reports them too.
    let stats = fastpath(&prefix, None)
        .args(["stats", "--json"])
        .output()
        .unwrap();
    let nodes: Value = serde_json::from_slice(&stats.stdout).unwrap();
    let node_a = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == "a")
        .unwrap();
    assert!(
        node_a["monitor_events_lost"]["tc_pod"].as_u64() > Some(0),
        "no lost events of tc_pod in stats: {nodes}"
    );
    let in_stats: u64 = node_a["monitor_events_lost"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert!(
        in_stats >= lost_in_maps,
        "read after the maps, so not fewer: {nodes}"
    );
    let mut m = m;
    let moved = m.wait_for_stderr("events lost since the start", Duration::from_secs(3));
    assert!(moved.contains("a:"), "{moved}");
    let (_, stderr) = m.stop();
    let last = stderr.last().unwrap();
    let lost: u64 = last
        .split(", ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no lost count in the last line: {stderr:?}"));
    // What it reports is what the maps counted while it ran (a program run on the other CPU
    // as the request was cleared may still add one or two after its last reading).
    let counted = lost_everywhere() - before;
    assert!(
        lost > 0 && lost <= counted && counted <= lost + 5,
        "{lost} reported, {counted} counted: {stderr:?}"
    );
}

#[test]
fn a_killed_monitors_request_lapses_within_a_second() {
    let tc = TestCluster::demo_in(Mode::Tc);
    let prefix = tc.cluster.prefix().to_string();
    let a1 = tc.pod_netns("a1");
    let dir = pin_dir(&tc, "a");
    let produced = || datapath::events_produced(&dir).unwrap();

    let mut m = Monitor::start(&prefix, None, &["--type", "trace"]);
    let before = produced();
    assert!(probe::ping(&a1, A2, 2, &["-i", "0.1"]));
    assert!(produced() > before, "no events while the monitor ran");
    m.child.kill().expect("SIGKILL");
    let killed = Instant::now();
    m.child.wait().unwrap();
    // Its request is still in the map, flags and all: only the lease ends it.
    let left = datapath::MonitorMaps::open(&dir).unwrap().config().unwrap();
    assert_ne!(
        left.flags, 0,
        "the request was cleared; the lease is not what is tested"
    );
    std::thread::sleep(Duration::from_secs(1).saturating_sub(killed.elapsed()));
    let lapsed = produced();
    assert!(probe::ping(&a1, A2, 3, &["-i", "0.1"]));
    assert_eq!(
        produced(),
        lapsed,
        "events written a second after the monitor was killed"
    );

    // The next monitor takes over: the kernel released the dead one's lock.
    let next = Monitor::start(&prefix, None, &["--type", "trace"]);
    assert!(probe::ping(&a1, A2, 1, &[]));
    let (out, _) = next.stop();
    assert!(out.contains("switched"), "{out}");
}

#[test]
fn a_second_monitor_of_a_node_is_refused_by_name() {
    let tc = TestCluster::demo_in(Mode::Tc);
    let prefix = tc.cluster.prefix().to_string();
    let first = Monitor::start(&prefix, None, &["--node", "a"]);
    let second = fastpath(&prefix, None)
        .args(["monitor", "--node", "a", "--seconds", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success());
    assert!(
        err.contains(&format!(
            "another monitor (pid {}) is reading a",
            first.child.id()
        )),
        "{err}"
    );
    // Another node is free.
    let other = Monitor::start(&prefix, None, &["--node", "b"]);
    drop(other);
    drop(first);
}

#[test]
fn bpftool_prints_every_pinned_maps_fields_by_name() {
    let tc = TestCluster::demo_in(Mode::Tc);
    let dir = pin_dir(&tc, "a");
    let expected: [(&str, &[&str]); 10] = [
        ("ENDPOINTS_V2", &["ifindex", "owner", "mac"]),
        ("ENDPOINTS6_V1", &["ifindex", "owner", "mac"]),
        ("SOURCES_V3", &["ip", "mac", "ip6"]),
        (
            "NODE_V3",
            &[
                "gateway_mac",
                "gateway_ip",
                "flags",
                "vtep_mac",
                "vni",
                "gateway6",
            ],
        ),
        (
            "REMOTES_V2",
            &["prefix_len", "data", "underlay_ip", "vtep_mac"],
        ),
        (
            "REMOTES6_V1",
            &["prefix_len", "data", "underlay_ip", "vtep_mac"],
        ),
        ("PEERS_V2", &["flags"]),
        ("COUNTERS_V2", &["packets", "bytes"]),
        (
            "MONITOR_V1",
            &["flags", "sample", "snap_len", "lease_until_ns"],
        ),
        ("EVENTS_LOST_V1", &["events"]),
    ];
    for (map, fields) in expected {
        let out = Command::new("bpftool")
            .args(["map", "dump", "pinned"])
            .arg(dir.join(map))
            .output()
            .expect("bpftool runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "bpftool map dump {map}: {out:?}");
        for field in fields {
            assert!(
                text.contains(&format!("\"{field}\":")),
                "{map}: no field {field} in {text}"
            );
        }
    }
    // Every pinned map is one of these, or one the kernel takes no BTF types for.
    let mut pinned: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(|c: char| c.is_ascii_uppercase()))
        .collect();
    pinned.sort();
    let mut named: Vec<String> = expected.iter().map(|(m, _)| m.to_string()).collect();
    named.extend(["DEVMAP_V2".to_string(), "EVENTS_V1".to_string()]);
    named.sort();
    assert_eq!(pinned, named);
}

#[test]
fn a_pin_of_an_older_layout_is_replaced_on_up_and_said_in_one_line() {
    let tc = TestCluster::demo();
    let dir = pin_dir(&tc, "a");
    std::fs::create_dir_all(&dir).unwrap();
    // What a fastpath before layout versions pinned: the endpoint map by its bare name.
    let made = Command::new("bpftool")
        .args(["map", "create"])
        .arg(dir.join("ENDPOINTS"))
        .args([
            "type", "hash", "key", "4", "value", "16", "entries", "16", "name",
        ])
        .arg("ENDPOINTS")
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let changes = tc.up();
    let said: Vec<&String> = changes
        .iter()
        .filter(|c| c.contains("another layout"))
        .collect();
    assert_eq!(said.len(), 1, "{changes:?}");
    assert!(
        said[0].contains("node a") && said[0].contains("(ENDPOINTS)"),
        "{said:?}"
    );
    assert!(!dir.join("ENDPOINTS").exists());
    assert!(dir.join(datapath::ENDPOINTS).exists());
    assert!(probe::ping(&tc.pod_netns("a1"), B1, 2, &["-i", "0.2"]));
}

#[test]
fn a_cni_networks_drops_are_monitored_with_its_pods_names() {
    let host = CniHost::new();
    let conf = host.standalone("198.18.60.0/24");
    let c1 = host.container("c1");
    let c2 = host.container("c2");
    let r1 = host
        .exec("ADD", "c1-monitored", Some(c1.netns()), &conf)
        .expect_ok();
    let r2 = host
        .exec("ADD", "c2-monitored", Some(c2.netns()), &conf)
        .expect_ok();
    let (ip1, ip2) = (tests::cni::address_of(&r1), tests::cni::address_of(&r2));
    let mac = |ns: &Netns| tests::mac_of(&tests::runtime(), ns, "eth0");
    let frame = frames::ipv4_udp(
        mac(c2.netns()),
        mac(c1.netns()),
        frames::Ipv4 {
            src: SPOOFED.octets(),
            dst: ip2.octets(),
            ..frames::Ipv4::default()
        },
        SPOOF_PORT,
        b"spoofed",
    );
    let data_dir = host.data_dir();
    let m = Monitor::start(
        &host.prefix,
        Some(&host.node),
        &[
            "--cni",
            &host.network,
            "--cni-data-dir",
            data_dir.to_str().unwrap(),
            "--json",
        ],
    );
    probe::send_raw_frame(c1.netns(), "eth0", &frame);
    assert!(probe::ping(c1.netns(), ip2, 1, &[]), "{ip1} → {ip2}");
    let (out, _) = m.stop();
    let events = json_lines(&out);
    assert_eq!(events.len(), 1, "{out}");
    let e = &events[0];
    assert_eq!(e["source"], format!("cni:{}", host.network));
    assert_eq!(e["reason"], "spoofed-ip");
    assert_eq!(e["interface"], "c1-monitored");
    assert_eq!(e["dst"], ip2.to_string());
    for (id, c) in [("c1-monitored", &c1), ("c2-monitored", &c2)] {
        host.exec("DEL", id, Some(c.netns()), &conf).expect_ok();
    }
}

#[test]
fn a_cni_network_pinned_with_an_older_layout_takes_del_check_and_add() {
    let host = CniHost::new();
    let conf = host.standalone("198.18.61.0/24");
    let (c1, c2, c3) = (
        host.container("c1"),
        host.container("c2"),
        host.container("c3"),
    );
    let r1 = host
        .exec("ADD", "c1-layout", Some(c1.netns()), &conf)
        .expect_ok();
    host.exec("ADD", "c2-layout", Some(c2.netns()), &conf)
        .expect_ok();
    // What an older fastpath left: maps under names without this layout's versions, programs
    // of another build. The filters on c1's and c2's veths keep running them.
    let dir = host.pin_dir();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let old = if let Some(map) = name.strip_suffix("_V2").or(name.strip_suffix("_V1")) {
            map.to_string()
        } else if let Some(hook) = name.strip_prefix("prog-") {
            format!("prog-{}-0000000000000000", hook.split('-').next().unwrap())
        } else {
            continue;
        };
        std::fs::rename(dir.join(&name), dir.join(old)).unwrap();
    }
    assert!(!datapath::maps_pinned(&dir));

    // CHECK says what is wrong instead of failing to open a map.
    let mut check_conf = conf.clone();
    check_conf["prevResult"] = r1.clone();
    let check = host.exec("CHECK", "c1-layout", Some(c1.netns()), &check_conf);
    assert!(!check.success);
    assert!(
        check.json["msg"]
            .as_str()
            .unwrap_or("")
            .contains("another layout")
            || check.json["details"]
                .as_str()
                .unwrap_or("")
                .contains("another layout"),
        "{}",
        check.json
    );
    // DEL (not the network's last) and ADD work, and replace the old maps.
    host.exec("DEL", "c2-layout", Some(c2.netns()), &conf)
        .expect_ok();
    assert!(datapath::maps_pinned(&dir));
    assert!(!dir.join("ENDPOINTS").exists());
    let r3 = host
        .exec("ADD", "c3-layout", Some(c3.netns()), &conf)
        .expect_ok();
    let (ip1, ip3) = (tests::cni::address_of(&r1), tests::cni::address_of(&r3));
    assert!(probe::ping(c3.netns(), ip1, 1, &[]), "{ip3} → {ip1}");
    assert!(probe::ping(c1.netns(), ip3, 1, &[]), "{ip1} → {ip3}");
    for (id, c) in [("c1-layout", &c1), ("c3-layout", &c3)] {
        host.exec("DEL", id, Some(c.netns()), &conf).expect_ok();
    }
}
