//! The node's kernel-path guard: two nftables tables in the node's namespace that check, at the
//! kernel's own doors, what the programs check in front of them. It covers what reaches the kernel
//! path past the programs (kernel mode, where none runs; a frame a program passes; a gap in a
//! program's parsing):
//!
//! - VXLAN for the overlay's VNI is taken only on the underlay device, from a peer, addressed to
//!   the node's underlay address in a frame for the node's own MAC. The kernel's VXLAN socket
//!   listens on every address of the node and decapsulates for anyone: a pod sending to its
//!   gateway's VXLAN port, or VXLAN nested in a peer's VXLAN, would otherwise be delivered as
//!   whoever it claims. Other VNIs on the same port are another overlay's (Docker swarm's, say).
//! - A packet claiming a pod's address never comes from the underlay device (peers' pods come in
//!   VXLAN), and a peer never speaks for this node's own pods.
//!
//! The VXLAN door is an `inet` table's input hook, which sees only what the node itself takes (and
//! sees it reassembled). The address checks are a `netdev` table's ingress hooks on the underlay
//! and VXLAN devices: an `inet` prerouting hook would put every bridged pod packet through bridge
//! netfilter's IPv4 emulation (measured: 20% of the bridge path's packet rate). The kernel binds
//! the ingress hooks to the devices by name, also to a device created again.
//!
//! Both tables are replaced as a whole, in one nftables transaction, whenever they differ from what
//! they should hold: a rule that carries a digest of all of them, their chains' rules in order
//! and their sets' sizes are compared, so intact tables are left alone (their counters keep
//! counting) and a flushed chain or set is put back.

use std::{
    io::Write as _,
    net::Ipv4Addr,
    process::{Command, Stdio},
};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::Serialize;

use crate::{error::GuardError, fnv, netns::Netns};

/// The name the guard's counters go by beside the programs' (`fastpath stats`).
pub const PROGRAM: &str = "nft-guard";

pub const UNDERLAY_POD_SOURCE: &str = "underlay-pod-source";
pub const UNDERLAY_POD_SOURCE6: &str = "underlay-pod-source-ipv6";
pub const OWN_POD_SOURCE: &str = "own-pod-source-from-overlay";
pub const OWN_POD_SOURCE6: &str = "own-pod-source-from-overlay-ipv6";
pub const VXLAN_NOT_FROM_UNDERLAY: &str = "vxlan-not-from-underlay";
pub const VXLAN_OVER_IPV6: &str = "vxlan-over-ipv6";
pub const VXLAN_UNKNOWN_PEER: &str = "vxlan-unknown-peer";
pub const VXLAN_NOT_FOR_NODE: &str = "vxlan-not-for-node";
pub const VXLAN_NOT_UNICAST: &str = "vxlan-not-unicast";

/// The guard's drop rules by the name they count under, with what each means.
pub const RULES: [(&str, &str); 9] = [
    (
        UNDERLAY_POD_SOURCE,
        "a packet on the underlay device (not in VXLAN) claims the address of a pod, this node's \
         or a peer's",
    ),
    (
        UNDERLAY_POD_SOURCE6,
        "an IPv6 packet on the underlay device (not in VXLAN) claims the address of a pod, this \
         node's or a peer's",
    ),
    (
        OWN_POD_SOURCE,
        "a packet from the VXLAN device claims an address of this node's own pods",
    ),
    (
        OWN_POD_SOURCE6,
        "an IPv6 packet from the VXLAN device claims an address of this node's own pods",
    ),
    (
        VXLAN_NOT_FROM_UNDERLAY,
        "VXLAN for the node that did not arrive on its underlay device (from a pod, or nested \
         in a peer's VXLAN)",
    ),
    (
        VXLAN_OVER_IPV6,
        "VXLAN over IPv6: the overlay's underlay is IPv4",
    ),
    (
        VXLAN_UNKNOWN_PEER,
        "VXLAN from an underlay address that is not a peer's",
    ),
    (
        VXLAN_NOT_FOR_NODE,
        "VXLAN whose outer destination is not the node's underlay address",
    ),
    (
        VXLAN_NOT_UNICAST,
        "VXLAN in a frame not addressed to the underlay device's own MAC (broadcast, multicast, \
         another host's)",
    ),
];

/// The drop rules of each chain, in order (the `input` chain holds only the door to `vxlan`).
const CHAINS: [(&str, &[&str]); 3] = [
    (
        "vxlan",
        &[
            VXLAN_NOT_FROM_UNDERLAY,
            VXLAN_OVER_IPV6,
            VXLAN_UNKNOWN_PEER,
            VXLAN_NOT_FOR_NODE,
            VXLAN_NOT_UNICAST,
        ],
    ),
    ("underlay", &[UNDERLAY_POD_SOURCE, UNDERLAY_POD_SOURCE6]),
    ("overlay", &[OWN_POD_SOURCE, OWN_POD_SOURCE6]),
];

/// What a node's guard holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guard {
    /// The nftables tables' name (one table each in families inet and netdev), one per fastpath
    /// instance: see [`table_name`].
    pub table: String,
    pub underlay_device: String,
    pub underlay_ip: Ipv4Addr,
    pub vxlan_port: u16,
    pub vni: u32,
    pub vxlan_device: String,
    /// This node's pod CIDR and IPv6 pod prefix: one of them, or both.
    pub pod_cidr: Option<Ipv4Net>,
    pub pod_cidr6: Option<Ipv6Net>,
    /// Every peer's underlay address.
    pub peers: Vec<Ipv4Addr>,
    /// The peers' pod CIDRs and IPv6 pod prefixes.
    pub peer_cidrs: Vec<Ipv4Net>,
    pub peer_cidrs6: Vec<Ipv6Net>,
}

/// The guard tables' name for the fastpath instance under `prefix`: instances sharing a namespace
/// (real nodes of different clusters) keep apart.
pub fn table_name(prefix: &str) -> String {
    format!("fastpath-{prefix}")
}

/// One rule's counter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GuardCounter {
    pub reason: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

fn elements<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    if items.is_empty() {
        String::new()
    } else {
        format!(" elements = {{ {} }};", items.join(", "))
    }
}

/// The comment of the rule that sends the overlay's VXLAN into the `vxlan` chain, followed by the
/// digest of all the rules.
const DOOR: &str = "vxlan-door";

/// The families of the guard's two tables, which share a name.
const FAMILIES: [&str; 2] = ["inet", "netdev"];

impl Guard {
    /// Both tables' sets and chains, by family; `{digest}` stands for the digest of this very
    /// text.
    fn bodies(&self) -> [String; 2] {
        let peers = elements(&self.peers);
        let cidrs = elements(self.pod_cidrs());
        let cidrs6 = elements(self.pod_cidrs6());
        let own = elements(self.pod_cidr);
        let own6 = elements(self.pod_cidr6);
        let Guard {
            underlay_device,
            underlay_ip,
            vxlan_port,
            vni,
            vxlan_device,
            ..
        } = self;
        // @th,96,24: the VNI, 24 bits from the fourth byte of the VXLAN header after UDP's eight.
        let inet = format!(
            r#"  set peers {{ type ipv4_addr;{peers} }}
  chain input {{
    type filter hook input priority filter; policy accept;
    udp dport {vxlan_port} @th,96,24 {vni} jump vxlan comment "{DOOR} {{digest}}"
  }}
  chain vxlan {{
    iifname != "{underlay_device}" counter drop comment "{VXLAN_NOT_FROM_UNDERLAY}"
    meta nfproto ipv6 counter drop comment "{VXLAN_OVER_IPV6}"
    ip saddr != @peers counter drop comment "{VXLAN_UNKNOWN_PEER}"
    ip daddr != {underlay_ip} counter drop comment "{VXLAN_NOT_FOR_NODE}"
    meta pkttype != host counter drop comment "{VXLAN_NOT_UNICAST}"
  }}
"#
        );
        let netdev = format!(
            r#"  set pod_cidrs {{ type ipv4_addr; flags interval;{cidrs} }}
  set pod_cidrs6 {{ type ipv6_addr; flags interval;{cidrs6} }}
  set own_pod_cidrs {{ type ipv4_addr; flags interval;{own} }}
  set own_pod_cidrs6 {{ type ipv6_addr; flags interval;{own6} }}
  chain underlay {{
    type filter hook ingress device "{underlay_device}" priority -500; policy accept;
    ip saddr @pod_cidrs counter drop comment "{UNDERLAY_POD_SOURCE}"
    ip6 saddr @pod_cidrs6 counter drop comment "{UNDERLAY_POD_SOURCE6}"
  }}
  chain overlay {{
    type filter hook ingress device "{vxlan_device}" priority -500; policy accept;
    ip saddr @own_pod_cidrs counter drop comment "{OWN_POD_SOURCE}"
    ip6 saddr @own_pod_cidrs6 counter drop comment "{OWN_POD_SOURCE6}"
  }}
"#
        );
        [inet, netdev]
    }

    fn pod_cidrs(&self) -> Vec<Ipv4Net> {
        self.pod_cidr
            .into_iter()
            .chain(self.peer_cidrs.iter().copied())
            .collect()
    }

    fn pod_cidrs6(&self) -> Vec<Ipv6Net> {
        self.pod_cidr6
            .into_iter()
            .chain(self.peer_cidrs6.iter().copied())
            .collect()
    }

    fn digest(&self) -> String {
        format!(
            "{:016x}",
            fnv::fnv1a(&self.bodies().each_ref().map(String::as_str))
        )
    }

    /// What the tables' listings must show: every chain's rules by their comments, in order, and
    /// every set's size.
    fn expected_shape(&self) -> Shape {
        let door = (
            "input".to_string(),
            vec![format!("{DOOR} {}", self.digest())],
        );
        let drops = CHAINS.iter().map(|(chain, rules)| {
            let rules = rules.iter().map(ToString::to_string).collect();
            (chain.to_string(), rules)
        });
        Shape {
            chains: std::iter::once(door).chain(drops).collect(),
            sets: vec![
                ("peers".into(), self.peers.len()),
                ("pod_cidrs".into(), self.pod_cidrs().len()),
                ("pod_cidrs6".into(), self.pod_cidrs6().len()),
                ("own_pod_cidrs".into(), usize::from(self.pod_cidr.is_some())),
                (
                    "own_pod_cidrs6".into(),
                    usize::from(self.pod_cidr6.is_some()),
                ),
            ],
        }
        .sorted()
    }

    /// The nftables script that replaces both tables atomically: it first makes sure there is a
    /// table of each to delete.
    fn script(&self) -> String {
        let table = &self.table;
        let digest = self.digest();
        let mut script = String::new();
        for family in FAMILIES {
            script.push_str(&format!(
                "table {family} {table} {{}}\ndelete table {family} {table}\n"
            ));
        }
        for (family, body) in FAMILIES.iter().zip(self.bodies()) {
            script.push_str(&format!(
                "table {family} {table} {{\n  comment \"fastpath: pod isolation on the kernel path\"\n{}}}\n",
                body.replace("{digest}", &digest)
            ));
        }
        script
    }
}

/// Guard tables as their listings show them: chains with their rules' comments in order, sets
/// with their sizes, both sorted by name.
#[derive(Debug, PartialEq, Eq)]
struct Shape {
    chains: Vec<(String, Vec<String>)>,
    sets: Vec<(String, usize)>,
}

impl Shape {
    fn sorted(mut self) -> Self {
        self.chains.sort();
        self.sets.sort();
        self
    }

    /// The shape of tables from their `nft -j list table` listings.
    fn of(listings: &[serde_json::Value]) -> Self {
        let mut shape = Shape {
            chains: Vec::new(),
            sets: Vec::new(),
        };
        let items = listings
            .iter()
            .flat_map(|l| l["nftables"].as_array().into_iter().flatten());
        for item in items {
            if let Some(name) = item["chain"]["name"].as_str() {
                shape.chains.push((name.to_string(), Vec::new()));
            } else if let Some(name) = item["set"]["name"].as_str() {
                let size = item["set"]["elem"].as_array().map_or(0, Vec::len);
                shape.sets.push((name.to_string(), size));
            } else if let Some(chain) = item["rule"]["chain"].as_str() {
                let comment = item["rule"]["comment"].as_str().unwrap_or("").to_string();
                if let Some((_, rules)) = shape.chains.iter_mut().find(|(c, _)| c == chain) {
                    rules.push(comment);
                }
            }
        }
        shape.sorted()
    }
}

/// Runs `nft` with `args` in `netns`, `input` on its standard input.
fn nft(netns: &Netns, args: &[&str], input: Option<&str>) -> Result<String, GuardError> {
    let output = netns
        .run(|| {
            let mut child = Command::new("nft")
                .args(args)
                .stdin(if input.is_some() {
                    Stdio::piped()
                } else {
                    Stdio::null()
                })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()?;
            if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
                stdin.write_all(text.as_bytes())?;
            }
            child.wait_with_output()
        })?
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => GuardError::NftMissing,
            _ => GuardError::Run {
                netns: netns.label().to_string(),
                source,
            },
        })?;
    if !output.status.success() {
        return Err(GuardError::Refused {
            args: args.join(" "),
            netns: netns.label().to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The families in which `netns` has a table `table`: none when the namespace is not there, or
/// the machine has no nft (nothing could have made one).
fn families_with(netns: &Netns, table: &str) -> Result<Vec<&'static str>, GuardError> {
    if !netns.exists() {
        return Ok(Vec::new());
    }
    let tables = match nft(netns, &["list", "tables"], None) {
        Ok(tables) => tables,
        Err(GuardError::NftMissing) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(FAMILIES
        .into_iter()
        .filter(|family| {
            tables
                .lines()
                .any(|l| l.trim() == format!("table {family} {table}"))
        })
        .collect())
}

/// Makes the guard tables in `netns` hold what `guard` says; returns whether it had to change
/// them.
pub fn ensure(netns: &Netns, guard: &Guard) -> Result<bool, GuardError> {
    if let Some(listings) = json_listings(netns, &guard.table)?
        && Shape::of(&listings) == guard.expected_shape()
    {
        return Ok(false);
    }
    nft(netns, &["-f", "-"], Some(&guard.script()))?;
    Ok(true)
}

/// Whether both guard tables `table` are in `netns`.
pub fn installed(netns: &Netns, table: &str) -> Result<bool, GuardError> {
    Ok(families_with(netns, table)?.len() == FAMILIES.len())
}

/// Both tables' listings (`nft -j`), or None when either is missing.
fn json_listings(netns: &Netns, table: &str) -> Result<Option<Vec<serde_json::Value>>, GuardError> {
    if !installed(netns, table)? {
        return Ok(None);
    }
    FAMILIES
        .iter()
        .map(|family| {
            let text = nft(netns, &["-j", "list", "table", family, table], None)?;
            serde_json::from_str(&text).map_err(|e| GuardError::Listing(e.to_string()))
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

/// Removes the tables `table` from `netns`; returns whether there were any. Without nft there can
/// be none (fastpath makes them with nft).
pub fn remove(netns: &Netns, table: &str) -> Result<bool, GuardError> {
    let families = families_with(netns, table)?;
    for family in &families {
        nft(netns, &["delete", "table", family, table], None)?;
    }
    Ok(!families.is_empty())
}

/// The counters of every rule of the tables `table` in `netns`, in [`RULES`] order; None when
/// they are not there.
pub fn counters(netns: &Netns, table: &str) -> Result<Option<Vec<GuardCounter>>, GuardError> {
    let Some(listings) = json_listings(netns, table)? else {
        return Ok(None);
    };
    let mut counters: Vec<GuardCounter> = RULES
        .iter()
        .map(|(reason, _)| GuardCounter {
            reason,
            packets: 0,
            bytes: 0,
        })
        .collect();
    let items = listings
        .iter()
        .flat_map(|l| l["nftables"].as_array().into_iter().flatten());
    for rule in items.filter_map(|item| item.get("rule")) {
        let Some(counter) = counters
            .iter_mut()
            .find(|c| rule["comment"].as_str() == Some(c.reason))
        else {
            continue;
        };
        for expr in rule["expr"].as_array().into_iter().flatten() {
            if let Some(c) = expr.get("counter") {
                counter.packets += c["packets"].as_u64().unwrap_or(0);
                counter.bytes += c["bytes"].as_u64().unwrap_or(0);
            }
        }
    }
    Ok(Some(counters))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn guard() -> Guard {
        Guard {
            table: table_name("fp-"),
            underlay_device: "fp-ul0".into(),
            underlay_ip: Ipv4Addr::new(198, 18, 0, 1),
            vxlan_port: 4789,
            vni: 42,
            vxlan_device: "fp-vxlan".into(),
            pod_cidr: Some("198.18.1.0/24".parse().unwrap()),
            pod_cidr6: Some("2001:db8:1::/64".parse().unwrap()),
            peers: vec![Ipv4Addr::new(198, 18, 0, 2)],
            peer_cidrs: vec!["198.18.2.0/24".parse().unwrap()],
            peer_cidrs6: vec!["2001:db8:2::/64".parse().unwrap()],
        }
    }

    #[test]
    fn every_rule_counts_under_a_name_of_its_own_and_the_door_is_the_overlays() {
        let g = guard();
        let script = g.script();
        for (name, _) in RULES {
            assert_eq!(
                script.matches(&format!("comment \"{name}\"")).count(),
                1,
                "{name} in\n{script}"
            );
        }
        assert!(script.contains("elements = { 198.18.0.2 }"), "{script}");
        assert!(
            script.contains("elements = { 198.18.1.0/24, 198.18.2.0/24 }"),
            "{script}"
        );
        assert!(
            script.contains("elements = { 2001:db8:1::/64, 2001:db8:2::/64 }")
                && script.contains("set own_pod_cidrs6 { type ipv6_addr; flags interval; elements = { 2001:db8:1::/64 }; }"),
            "{script}"
        );
        assert!(
            script.contains("hook ingress device \"fp-ul0\"")
                && script.contains("hook ingress device \"fp-vxlan\""),
            "{script}"
        );
        assert!(
            script.contains(&format!(
                "udp dport 4789 @th,96,24 42 jump vxlan comment \"vxlan-door {}\"",
                g.digest()
            )),
            "{script}"
        );
        assert!(!script.contains("{digest}"), "{script}");
    }

    #[test]
    fn every_rule_sits_in_one_chain() {
        for (name, _) in RULES {
            let places = CHAINS
                .iter()
                .filter(|(_, rules)| rules.contains(&name))
                .count();
            assert_eq!(places, 1, "{name}");
        }
        let listed: usize = CHAINS.iter().map(|(_, rules)| rules.len()).sum();
        assert_eq!(listed, RULES.len());
    }

    #[test]
    fn a_guard_without_peers_has_empty_sets_and_its_digest_follows_its_rules() {
        let mut lonely = guard();
        lonely.peers.clear();
        lonely.peer_cidrs.clear();
        lonely.peer_cidrs6.clear();
        assert!(
            lonely.script().contains("set peers { type ipv4_addr; }"),
            "{}",
            lonely.script()
        );
        assert_ne!(lonely.digest(), guard().digest());
        assert_eq!(guard().digest(), guard().digest());
    }

    /// Listings in the shape `nft -j list table` prints them for `g`'s two tables, with
    /// `drop_rule` left out when given.
    fn listings_of(g: &Guard, drop_rule: Option<&str>) -> Vec<serde_json::Value> {
        let mut items = vec![json!({"metainfo": {"version": "1.0.6"}})];
        for (name, size) in &g.expected_shape().sets {
            let elem: Vec<u32> = (0..*size as u32).collect();
            items.push(json!({"set": {"name": name, "elem": elem}}));
        }
        for (chain, comments) in &g.expected_shape().chains {
            items.push(json!({"chain": {"name": chain}}));
            for comment in comments.iter().filter(|c| Some(c.as_str()) != drop_rule) {
                items.push(json!({"rule": {"chain": chain, "comment": comment, "expr": []}}));
            }
        }
        // Where one table ends and the other begins does not change the shape.
        let second = items.split_off(items.len() / 2);
        vec![json!({ "nftables": items }), json!({ "nftables": second })]
    }

    #[test]
    fn listings_match_only_the_tables_they_should_be() {
        let g = guard();
        assert_eq!(Shape::of(&listings_of(&g, None)), g.expected_shape());
        assert_ne!(
            Shape::of(&listings_of(&g, Some("vxlan-unknown-peer"))),
            g.expected_shape(),
            "a rule gone"
        );
        let mut more_peers = guard();
        more_peers.peers.push(Ipv4Addr::new(198, 18, 0, 3));
        more_peers.peer_cidrs.push("198.18.3.0/24".parse().unwrap());
        assert_ne!(
            Shape::of(&listings_of(&g, None)),
            more_peers.expected_shape(),
            "another peer"
        );
    }
}
