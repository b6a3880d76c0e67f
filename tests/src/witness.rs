//! Independent witnesses of where packets went: nftables counters in the bridge family (what the
//! bridge saw) and the kernel's SNMP counters in a pod (checksum errors, datagrams delivered).

use std::{net::Ipv4Addr, process::Command};

use control::netns::Netns;

const TABLE: &str = "fpwitness";

/// Counters on a node's bridge: frames it forwarded between two pods, frames entering it for an
/// address. Lives in the node's namespace, so it goes with it.
pub struct BridgeWitness {
    node: String,
}

fn nft(node: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", node, "nft"])
        .args(args)
        .output()
        .expect("nft runs (apt package nftables)");
    assert!(
        out.status.success(),
        "nft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

impl BridgeWitness {
    /// Installs counters for frames the bridge forwards from `from` to `to`, and for frames
    /// entering the bridge towards `unknown`.
    pub fn install(node: &Netns, from: Ipv4Addr, to: Ipv4Addr, unknown: Ipv4Addr) -> Self {
        let node = node.name().expect("named").to_string();
        nft(&node, &["add", "table", "bridge", TABLE]);
        nft(
            &node,
            &["add chain bridge fpwitness podfwd { type filter hook forward priority 0; }"],
        );
        nft(
            &node,
            &["add chain bridge fpwitness bridgein { type filter hook prerouting priority 0; }"],
        );
        let (from, to, unknown) = (from.to_string(), to.to_string(), unknown.to_string());
        nft(
            &node,
            &[
                "add",
                "rule",
                "bridge",
                TABLE,
                "podfwd",
                "ip",
                "saddr",
                &from,
                "ip",
                "daddr",
                &to,
                "counter",
                "comment",
                "\"pod-to-pod\"",
            ],
        );
        nft(
            &node,
            &[
                "add",
                "rule",
                "bridge",
                TABLE,
                "bridgein",
                "ip",
                "daddr",
                &unknown,
                "counter",
                "comment",
                "\"unknown\"",
            ],
        );
        Self { node }
    }

    fn counter(&self, comment: &str) -> u64 {
        let json: serde_json::Value =
            serde_json::from_str(&nft(&self.node, &["-j", "list", "table", "bridge", TABLE]))
                .unwrap();
        for item in json["nftables"].as_array().unwrap() {
            let rule = &item["rule"];
            if rule["comment"] == comment {
                for expr in rule["expr"].as_array().unwrap() {
                    if let Some(packets) = expr["counter"]["packets"].as_u64() {
                        return packets;
                    }
                }
            }
        }
        panic!("no counter {comment} in {json}");
    }

    /// Frames the bridge forwarded between the two pods.
    pub fn pod_to_pod(&self) -> u64 {
        self.counter("pod-to-pod")
    }

    /// Frames that entered the bridge towards the unknown address.
    pub fn unknown(&self) -> u64 {
        self.counter("unknown")
    }
}

/// A pod's SNMP counters that matter here.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct Snmp {
    pub udp_in_datagrams: u64,
    pub udp_in_csum_errors: u64,
    pub tcp_in_csum_errors: u64,
}

/// Reads /proc/net/snmp as the pod's namespace sees it.
pub fn snmp(pod: &Netns) -> Snmp {
    // thread-self: /proc/self/net would show the main thread's namespace.
    let text = pod
        .run(|| std::fs::read_to_string("/proc/thread-self/net/snmp"))
        .unwrap()
        .unwrap();
    let field = |proto: &str, name: &str| -> u64 {
        let mut lines = text.lines().filter(|l| l.starts_with(&format!("{proto}:")));
        let (names, values) = (lines.next().unwrap(), lines.next().unwrap());
        let i = names
            .split_whitespace()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("{proto} {name}"));
        values.split_whitespace().nth(i).unwrap().parse().unwrap()
    };
    Snmp {
        udp_in_datagrams: field("Udp", "InDatagrams"),
        udp_in_csum_errors: field("Udp", "InCsumErrors"),
        tcp_in_csum_errors: field("Tcp", "InCsumErrors"),
    }
}

/// A pod's IPv6 counters that matter here (TCP's are shared with IPv4, in [`Snmp`]).
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct Snmp6 {
    pub udp6_in_datagrams: u64,
    pub udp6_in_csum_errors: u64,
    pub icmp6_in_csum_errors: u64,
}

/// Reads /proc/net/snmp6 (one "name value" per line) as the pod's namespace sees it.
pub fn snmp6(pod: &Netns) -> Snmp6 {
    let text = pod
        .run(|| std::fs::read_to_string("/proc/thread-self/net/snmp6"))
        .unwrap()
        .unwrap();
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| {
                let (n, v) = l.split_once(char::is_whitespace)?;
                (n == name).then(|| v.trim().parse().unwrap())
            })
            .unwrap_or_else(|| panic!("snmp6 {name}"))
    };
    Snmp6 {
        udp6_in_datagrams: field("Udp6InDatagrams"),
        udp6_in_csum_errors: field("Udp6InCsumErrors"),
        icmp6_in_csum_errors: field("Icmp6InCsumErrors"),
    }
}
