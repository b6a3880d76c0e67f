//! The node description: what `fastpath up` builds. Parsed from TOML, then checked as a whole
//! before anything is created, so a bad file leaves the machine untouched. Every error names the
//! field and the value at fault.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use anyhow::{Context as _, Result, bail};
use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::{ifname, mac::Mac};

/// The demo cluster `fastpath up` builds when no file is given.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

/// Bytes VXLAN adds around a pod's frame: outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8.
pub const VXLAN_OVERHEAD: u32 = 50;

/// Smallest MTU fastpath accepts anywhere (IPv4 hosts must take 576-byte datagrams).
const MIN_MTU: u32 = 576;

/// Smallest pod MTU on a node with IPv6 pods (RFC 8200: every link carries 1280-byte packets).
const MIN_MTU_IPV6: u32 = 1280;

/// Host-side pod veths are named `fp-<pod>`.
pub const POD_VETH_PREFIX: &str = "fp-";

/// The datapath a node runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The plain kernel path: bridge, routing, kernel VXLAN device. No programs attached.
    Kernel,
    /// XDP on the pods' veths (same-node redirect, VXLAN encapsulation); VXLAN decapsulation in
    /// TC on the underlay device.
    Xdp,
    /// TC (tcx) on the pods' veths (same-node redirect, VXLAN encapsulation) and on the underlay
    /// device (VXLAN decapsulation).
    Tc,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Kernel => "kernel",
            Mode::Xdp => "xdp",
            Mode::Tc => "tc",
        })
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Datapath of every node that does not name its own.
    #[serde(default = "default_mode")]
    pub mode: Mode,
    #[serde(default)]
    pub vxlan: VxlanConfig,
    #[serde(rename = "node")]
    pub nodes: Vec<NodeConfig>,
    /// Nodes outside this file that the nodes here reach over VXLAN.
    #[serde(rename = "peer", default)]
    pub peers: Vec<PeerConfig>,
    /// Simulated underlay: veth pairs joining two simulated nodes' underlay devices.
    #[serde(rename = "underlay_link", default)]
    pub underlay_links: Vec<UnderlayLink>,
    /// Simulated underlay: one L2 network (a bridge in a namespace of its own) that any number
    /// of simulated nodes' underlay devices plug into.
    #[serde(rename = "underlay_segment", default)]
    pub underlay_segments: Vec<UnderlaySegment>,
}

fn default_mode() -> Mode {
    Mode::Kernel
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VxlanConfig {
    #[serde(default = "default_vni")]
    pub vni: u32,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default = "default_vxlan_device")]
    pub device: String,
}

fn default_vni() -> u32 {
    42
}
fn default_port() -> u16 {
    4789
}
fn default_vxlan_device() -> String {
    "fp-vxlan".into()
}

impl Default for VxlanConfig {
    fn default() -> Self {
        Self {
            vni: default_vni(),
            port: default_port(),
            device: default_vxlan_device(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub name: String,
    /// In a namespace of its own (a simulated node) rather than the namespace fastpath runs in.
    #[serde(default)]
    pub simulated: bool,
    #[serde(default = "default_bridge")]
    pub bridge: String,
    /// The node's IPv4 pod CIDR: every pod then has an `address` in it. A node has this,
    /// `pod_cidr6`, or both (dual stack).
    pub pod_cidr: Option<Ipv4Net>,
    /// The bridge's address and the pods' default route; default: the CIDR's first address.
    pub gateway: Option<Ipv4Addr>,
    /// The node's IPv6 pod prefix, beside the IPv4 one (dual stack) or instead of it: every pod
    /// then has an `address6` in it.
    pub pod_cidr6: Option<Ipv6Net>,
    /// The bridge's IPv6 address and the pods' IPv6 default route; default: the prefix's first
    /// address after the network address (which is the VXLAN device's, as for IPv4).
    pub gateway6: Option<Ipv6Addr>,
    /// Pod MTU; default: the underlay MTU less the VXLAN overhead.
    pub mtu: Option<u32>,
    pub mode: Option<Mode>,
    pub underlay: UnderlayConfig,
    #[serde(default)]
    pub pods: Vec<PodConfig>,
}

fn default_bridge() -> String {
    "fp-br0".into()
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UnderlayConfig {
    pub device: String,
    /// The node's underlay address with its prefix length, e.g. "198.18.0.1/24".
    pub address: Ipv4Net,
    #[serde(default = "default_underlay_mtu")]
    pub mtu: u32,
}

fn default_underlay_mtu() -> u32 {
    1500
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PodConfig {
    pub name: String,
    /// Its IPv4 address, inside the node's `pod_cidr`.
    pub address: Option<Ipv4Addr>,
    /// Its IPv6 address, inside the node's `pod_cidr6`.
    pub address6: Option<Ipv6Addr>,
}

impl PodConfig {
    /// The MAC of its interface, derived from its IPv4 address, or from its IPv6 address when it
    /// has none (see [`Mac::pod`]). Validation makes sure it has one and that the MACs of a
    /// node's pods differ.
    pub fn mac(&self) -> Mac {
        Mac::pod_of(self.address, self.address6).expect("validation gives every pod an address")
    }

    /// Its addresses: IPv4, then IPv6.
    pub fn addresses(&self) -> Vec<IpAddr> {
        let v4 = self.address.map(IpAddr::V4);
        v4.into_iter()
            .chain(self.address6.map(IpAddr::V6))
            .collect()
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub name: String,
    pub underlay_ip: Ipv4Addr,
    /// Its IPv4 pod CIDR and IPv6 pod prefix: one of them, or both.
    pub pod_cidr: Option<Ipv4Net>,
    pub pod_cidr6: Option<Ipv6Net>,
    /// The MAC of the peer's VXLAN device; default: derived from its underlay address the way
    /// fastpath derives its own.
    pub vtep_mac: Option<Mac>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UnderlayLink {
    pub nodes: [String; 2],
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UnderlaySegment {
    /// Its namespace is `<prefix><name>`. Nodes of several `fastpath up` runs (each node's own
    /// agent) under one prefix share a segment of one name.
    pub name: String,
    pub nodes: Vec<String>,
}

impl ClusterConfig {
    /// Parses and validates `text`; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let config: Self = toml::from_str(text).map_err(|e| {
            // toml's own rendering spans several lines; one line with a position reads better.
            let at = e.span().map_or(String::new(), |span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!(":{line}:{column}")
            });
            anyhow::anyhow!("{origin}{at}: {}", e.message().trim())
        })?;
        config.validate().with_context(|| origin.to_string())?;
        Ok(config)
    }

    /// Reads `path`, or the embedded demo cluster when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                Self::parse(&text, &path.display().to_string())
            }
            None => Self::parse(DEFAULT_CONFIG, "the embedded demo cluster"),
        }
    }

    pub fn node(&self, name: &str) -> Option<&NodeConfig> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The mode `node` runs in.
    pub fn mode_of(&self, node: &NodeConfig) -> Mode {
        node.mode.unwrap_or(self.mode)
    }

    /// The underlay link `node` is part of, and the node at its other end.
    pub fn underlay_peer_of(&self, node: &str) -> Option<&NodeConfig> {
        self.underlay_links.iter().find_map(|l| match &l.nodes {
            [a, b] if a == node => self.node(b),
            [a, b] if b == node => self.node(a),
            _ => None,
        })
    }

    /// The underlay segment `node` is plugged into.
    pub fn underlay_segment_of(&self, node: &str) -> Option<&UnderlaySegment> {
        self.underlay_segments
            .iter()
            .find(|s| s.nodes.iter().any(|n| n == node))
    }

    /// Every node a node reaches over VXLAN: the other nodes in the file, then the external peers.
    pub fn vxlan_peers_of(&self, node: &NodeConfig) -> Vec<VxlanPeer> {
        let mut peers: Vec<VxlanPeer> = self
            .nodes
            .iter()
            .filter(|n| n.name != node.name)
            .map(|n| VxlanPeer {
                name: n.name.clone(),
                underlay_ip: n.underlay.address.addr(),
                pod_cidr: n.pod_cidr,
                pod_cidr6: n.pod_cidr6,
                vtep_mac: Mac::vtep(n.underlay.address.addr()),
            })
            .collect();
        peers.extend(self.peers.iter().map(|p| VxlanPeer {
            name: p.name.clone(),
            underlay_ip: p.underlay_ip,
            pod_cidr: p.pod_cidr,
            pod_cidr6: p.pod_cidr6,
            vtep_mac: p.vtep_mac.unwrap_or_else(|| Mac::vtep(p.underlay_ip)),
        }));
        peers
    }

    /// Every rule of a node description; `parse` applies it, and so does whoever changes a
    /// parsed one (the agent adding etcd's peers).
    pub fn validate(&self) -> Result<()> {
        if self.nodes.is_empty() {
            bail!("no [[node]]: describe at least one node");
        }
        if self.vxlan.vni == 0 || self.vxlan.vni >= 1 << 24 {
            bail!("vxlan.vni = {}: must be 1..16777215", self.vxlan.vni);
        }
        if self.vxlan.port == 0 {
            bail!("vxlan.port = 0: must be a UDP port number");
        }
        check_ifname("vxlan.device", &self.vxlan.device)?;

        let mut node_names = HashSet::new();
        let mut pod_names = HashSet::new();
        let mut underlay_ips = HashSet::new();
        let mut cidrs: Vec<(String, Ipv4Net)> = Vec::new();
        let mut cidrs6: Vec<(String, Ipv6Net)> = Vec::new();
        let mut real_nodes = 0;
        for node in &self.nodes {
            let at = format!("node '{}'", node.name);
            check_name("node.name", &node.name, 8)?;
            if !node_names.insert(&node.name) {
                bail!("node.name = '{}': two nodes have this name", node.name);
            }
            if !node.simulated {
                real_nodes += 1;
            }
            check_ifname(&format!("{at}: bridge"), &node.bridge)?;
            check_ifname(&format!("{at}: underlay.device"), &node.underlay.device)?;
            let names = [&node.bridge, &node.underlay.device, &self.vxlan.device];
            if names.iter().collect::<HashSet<_>>().len() != names.len() {
                bail!(
                    "{at}: bridge '{}', underlay.device '{}' and vxlan.device '{}' must be different devices",
                    node.bridge,
                    node.underlay.device,
                    self.vxlan.device
                );
            }
            if node.underlay.mtu < MIN_MTU + VXLAN_OVERHEAD || node.underlay.mtu > 65535 {
                bail!(
                    "{at}: underlay.mtu = {}: must be {}..65535",
                    node.underlay.mtu,
                    MIN_MTU + VXLAN_OVERHEAD
                );
            }
            let pod_mtu = node_pod_mtu(node);
            if pod_mtu < MIN_MTU || pod_mtu > node.underlay.mtu - VXLAN_OVERHEAD {
                bail!(
                    "{at}: mtu = {pod_mtu}: pods' MTU must be {MIN_MTU}..{} (underlay.mtu {} less {VXLAN_OVERHEAD} bytes of VXLAN)",
                    node.underlay.mtu - VXLAN_OVERHEAD,
                    node.underlay.mtu
                );
            }
            let underlay_ip = node.underlay.address.addr();
            if node.underlay.address.prefix_len() > 30
                || !is_host(node.underlay.address, underlay_ip)
            {
                bail!(
                    "{at}: underlay.address = {}: must be a host address with a prefix of /30 or shorter",
                    node.underlay.address
                );
            }
            if !underlay_ips.insert(underlay_ip) {
                bail!("{at}: underlay.address = {underlay_ip}: another node has this address");
            }
            if node.pod_cidr.is_none() && node.pod_cidr6.is_none() {
                bail!(
                    "{at}: no pod_cidr and no pod_cidr6: give the node an IPv4 or IPv6 pod prefix, or both"
                );
            }
            for pod in &node.pods {
                check_name(
                    "pod.name",
                    &pod.name,
                    ifname::MAX_LEN - POD_VETH_PREFIX.len(),
                )?;
                if !pod_names.insert(&pod.name) {
                    bail!(
                        "pod.name = '{}': two pods have this name (pod names are cluster-wide)",
                        pod.name
                    );
                }
            }
            if let Some(cidr) = validate_ipv4(node, &at)? {
                cidrs.push((at.clone(), cidr));
            }
            if let Some(cidr6) = validate_ipv6(node, &at)? {
                cidrs6.push((at.clone(), cidr6));
            }
            // Interfaces of one bridge need MACs of their own; those derived from IPv6 addresses
            // take only their last four bytes.
            let mut macs = HashMap::new();
            for pod in &node.pods {
                if let Some(other) = macs.insert(pod.mac(), &pod.name) {
                    bail!(
                        "{at}: pods '{other}' and '{}' would get the same MAC {} (derived from the last four bytes of their IPv6 addresses): give them addresses that differ there",
                        pod.name,
                        pod.mac()
                    );
                }
            }
        }
        if real_nodes > 1 {
            bail!(
                "{real_nodes} nodes have simulated = false: only one node can be this machine's namespace"
            );
        }
        for peer in &self.peers {
            let at = format!("peer '{}'", peer.name);
            check_name("peer.name", &peer.name, 8)?;
            if !node_names.insert(&peer.name) {
                bail!(
                    "peer.name = '{}': a node or another peer has this name",
                    peer.name
                );
            }
            if !underlay_ips.insert(peer.underlay_ip) {
                bail!(
                    "{at}: underlay_ip = {}: another node has this address",
                    peer.underlay_ip
                );
            }
            match peer.pod_cidr {
                Some(cidr) if cidr != cidr.trunc() => {
                    bail!("{at}: pod_cidr = {cidr}: must be a network address")
                }
                None if peer.pod_cidr6.is_none() => bail!(
                    "{at}: no pod_cidr and no pod_cidr6: a peer has an IPv4 or IPv6 pod prefix, or both"
                ),
                _ => {}
            }
            if let Some(mac) = peer.vtep_mac
                && (mac.0[0] & 1 != 0 || mac == Mac::default())
            {
                bail!("{at}: vtep_mac = '{mac}': must be a unicast address");
            }
            if let Some(cidr) = peer.pod_cidr {
                cidrs.push((at.clone(), cidr));
            }
            if let Some(cidr6) = peer.pod_cidr6 {
                check_pod_cidr6(&at, cidr6)?;
                cidrs6.push((at, cidr6));
            }
        }
        for (i, (at_a, a)) in cidrs6.iter().enumerate() {
            for (at_b, b) in &cidrs6[i + 1..] {
                if a.contains(b) || b.contains(a) {
                    bail!("{at_a}: pod_cidr6 {a} overlaps pod_cidr6 {b} of {at_b}");
                }
            }
        }
        for (i, (at_a, a)) in cidrs.iter().enumerate() {
            for (at_b, b) in &cidrs[i + 1..] {
                if a.contains(b) || b.contains(a) {
                    bail!("{at_a}: pod_cidr {a} overlaps pod_cidr {b} of {at_b}");
                }
            }
            for ip in &underlay_ips {
                if a.contains(ip) {
                    bail!("{at_a}: pod_cidr {a} contains the underlay address {ip}");
                }
            }
        }
        let mut linked = HashSet::new();
        for link in &self.underlay_links {
            let [a, b] = &link.nodes;
            if a == b {
                bail!("underlay_link.nodes = ['{a}', '{b}']: a link joins two different nodes");
            }
            for name in [a, b] {
                let Some(node) = self.node(name) else {
                    bail!("underlay_link.nodes: no node is called '{name}'");
                };
                if !node.simulated {
                    bail!(
                        "underlay_link.nodes: node '{name}' is not simulated; fastpath only creates underlays between simulated nodes"
                    );
                }
                if !linked.insert(name) {
                    bail!(
                        "underlay_link.nodes: node '{name}' is in two underlay links; a simulated node has one"
                    );
                }
            }
            let (na, nb) = (self.node(a).unwrap(), self.node(b).unwrap());
            if na.underlay.address.trunc() != nb.underlay.address.trunc() {
                bail!(
                    "underlay_link ['{a}', '{b}']: underlay addresses {} and {} are not in one subnet",
                    na.underlay.address,
                    nb.underlay.address
                );
            }
            if na.underlay.mtu != nb.underlay.mtu {
                bail!(
                    "underlay_link ['{a}', '{b}']: underlay.mtu {} and {} differ; a veth has one MTU",
                    na.underlay.mtu,
                    nb.underlay.mtu
                );
            }
        }
        self.validate_segments(&mut linked)?;
        for node in &self.nodes {
            if node.simulated && !linked.contains(&node.name) && self.nodes.len() > 1 {
                bail!(
                    "node '{}' is simulated but in no [[underlay_link]] or [[underlay_segment]]: it would have no way to reach the others",
                    node.name
                );
            }
        }
        Ok(())
    }

    /// Segments: named apart from every node and pod namespace, joining simulated nodes that
    /// are in no other link or segment, whose underlays share a subnet and an MTU.
    fn validate_segments<'a>(&'a self, linked: &mut HashSet<&'a String>) -> Result<()> {
        let mut names = HashSet::new();
        for segment in &self.underlay_segments {
            let at = format!("underlay_segment '{}'", segment.name);
            check_name("underlay_segment.name", &segment.name, 8)?;
            if !names.insert(&segment.name) {
                bail!("{at}: two segments have this name");
            }
            // Its namespace, <prefix><name>, must not be a node's or a pod's.
            let clash = self.nodes.iter().any(|n| {
                n.name == segment.name
                    || n.pods
                        .iter()
                        .any(|p| format!("{}-{}", n.name, p.name) == segment.name)
            });
            if clash {
                bail!("{at}: a node or pod namespace would have the segment's name");
            }
            if segment.nodes.is_empty() {
                bail!("{at}: nodes = []: a segment joins at least one node");
            }
            let mut members: Vec<&NodeConfig> = Vec::new();
            for name in &segment.nodes {
                let Some(node) = self.node(name) else {
                    bail!("{at}: no node is called '{name}'");
                };
                if !node.simulated {
                    bail!(
                        "{at}: node '{name}' is not simulated; fastpath only creates underlays between simulated nodes"
                    );
                }
                if !linked.insert(name) {
                    bail!(
                        "{at}: node '{name}' is in another underlay link or segment; a simulated node has one"
                    );
                }
                if let Some(first) = members.first() {
                    if first.underlay.address.trunc() != node.underlay.address.trunc() {
                        bail!(
                            "{at}: underlay addresses {} ('{}') and {} ('{name}') are not in one subnet",
                            first.underlay.address,
                            first.name,
                            node.underlay.address
                        );
                    }
                    if first.underlay.mtu != node.underlay.mtu {
                        bail!(
                            "{at}: underlay.mtu {} ('{}') and {} ('{name}') differ; a segment has one MTU",
                            first.underlay.mtu,
                            first.name,
                            node.underlay.mtu
                        );
                    }
                }
                members.push(node);
            }
        }
        Ok(())
    }
}

/// A node's IPv4 settings (`at` names the node in errors); returns its CIDR when it has one: a
/// network address, the gateway and every pod a distinct host address inside it.
fn validate_ipv4(node: &NodeConfig, at: &str) -> Result<Option<Ipv4Net>> {
    let Some(cidr) = node.pod_cidr else {
        if node.gateway.is_some() {
            bail!("{at}: gateway is set but pod_cidr is not: give the node an IPv4 pod CIDR");
        }
        if let Some(pod) = node.pods.iter().find(|p| p.address.is_some()) {
            bail!(
                "{at}: pod '{}': address is set but the node has no pod_cidr",
                pod.name
            );
        }
        return Ok(None);
    };
    if cidr != cidr.trunc() || cidr.prefix_len() > 30 {
        bail!(
            "{at}: pod_cidr = {cidr}: must be a network address (e.g. {}) with a prefix of /30 or shorter",
            cidr.trunc()
        );
    }
    let gateway = node_gateway(node).expect("the node has pod_cidr");
    if !is_host(cidr, gateway) {
        bail!("{at}: gateway = {gateway}: must be a host address inside pod_cidr {cidr}");
    }
    let mut addresses = HashSet::from([gateway]);
    for pod in &node.pods {
        let Some(address) = pod.address else {
            bail!(
                "{at}: pod '{}': no address: every pod on a node with pod_cidr has an IPv4 address",
                pod.name
            );
        };
        if !is_host(cidr, address) {
            bail!(
                "{at}: pod '{}': address = {address}: must be a host address inside pod_cidr {cidr}",
                pod.name
            );
        }
        if !addresses.insert(address) {
            bail!(
                "{at}: pod '{}': address = {address}: already used by the gateway or another pod",
                pod.name
            );
        }
    }
    Ok(Some(cidr))
}

/// A node's IPv6 settings (`at` names the node in errors); returns its prefix when it has one.
/// As for IPv4: the prefix is a network address, the gateway and every pod a distinct address
/// inside it other than the network address (the VXLAN device's), and the pods' MTU carries IPv6.
fn validate_ipv6(node: &NodeConfig, at: &str) -> Result<Option<Ipv6Net>> {
    let Some(cidr) = node.pod_cidr6 else {
        if node.gateway6.is_some() {
            bail!("{at}: gateway6 is set but pod_cidr6 is not: give the node an IPv6 pod prefix");
        }
        if let Some(pod) = node.pods.iter().find(|p| p.address6.is_some()) {
            bail!(
                "{at}: pod '{}': address6 is set but the node has no pod_cidr6",
                pod.name
            );
        }
        return Ok(None);
    };
    check_pod_cidr6(at, cidr)?;
    let pod_mtu = node_pod_mtu(node);
    if pod_mtu < MIN_MTU_IPV6 {
        bail!(
            "{at}: mtu = {pod_mtu}: pods with IPv6 (pod_cidr6) need an MTU of {MIN_MTU_IPV6} or more"
        );
    }
    let gateway = node_gateway6(node).expect("the node has pod_cidr6");
    if !is_host6(cidr, gateway) {
        bail!(
            "{at}: gateway6 = {gateway}: must be an address inside pod_cidr6 {cidr} other than its network address"
        );
    }
    let mut addresses = HashSet::from([gateway]);
    for pod in &node.pods {
        let Some(address) = pod.address6 else {
            bail!(
                "{at}: pod '{}': no address6: every pod on a node with pod_cidr6 has an IPv6 address",
                pod.name
            );
        };
        if !is_host6(cidr, address) {
            bail!(
                "{at}: pod '{}': address6 = {address}: must be an address inside pod_cidr6 {cidr} other than its network address",
                pod.name
            );
        }
        if !addresses.insert(address) {
            bail!(
                "{at}: pod '{}': address6 = {address}: already used by the gateway or another pod",
                pod.name
            );
        }
    }
    Ok(Some(cidr))
}

/// An IPv6 pod prefix: a network address of global or unique-local unicast space, with room for
/// the VXLAN device, the gateway and a pod.
fn check_pod_cidr6(at: &str, cidr: Ipv6Net) -> Result<()> {
    if cidr != cidr.trunc() || cidr.prefix_len() > 126 {
        bail!(
            "{at}: pod_cidr6 = {cidr}: must be a network address (e.g. {}) with a prefix of /126 or shorter",
            cidr.trunc()
        );
    }
    let network = cidr.network();
    let special = [
        ("the unspecified or loopback address", "::/127"),
        ("IPv4-mapped addresses", "::ffff:0:0/96"),
        ("link-local addresses", "fe80::/10"),
        ("multicast addresses", "ff00::/8"),
    ];
    for (what, range) in special {
        let range: Ipv6Net = range.parse().expect("a valid prefix");
        if range.contains(&network) || cidr.contains(&range.network()) {
            bail!("{at}: pod_cidr6 = {cidr}: overlaps {what} ({range})");
        }
    }
    Ok(())
}

/// The pods' MTU on `node`.
pub fn node_pod_mtu(node: &NodeConfig) -> u32 {
    node.mtu.unwrap_or(node.underlay.mtu - VXLAN_OVERHEAD)
}

/// The gateway (bridge) address of `node`, when it has IPv4 pods.
pub fn node_gateway(node: &NodeConfig) -> Option<Ipv4Addr> {
    let cidr = node.pod_cidr?;
    Some(node.gateway.unwrap_or_else(|| first_host(cidr)))
}

/// The MAC of `node`'s bridge, derived from its IPv4 gateway, or its IPv6 one on an IPv6-only
/// node (see [`Mac::node_bridge`]).
pub fn node_bridge_mac(node: &NodeConfig) -> Mac {
    node_gateway(node)
        .map(Mac::node_bridge)
        .or(node_gateway6(node).map(Mac::node_bridge6))
        .expect("validation gives every node a pod prefix")
}

/// The IPv6 gateway (bridge) address of `node`, when it has IPv6 pods.
pub fn node_gateway6(node: &NodeConfig) -> Option<Ipv6Addr> {
    let cidr = node.pod_cidr6?;
    Some(node.gateway6.unwrap_or_else(|| first_host6(cidr)))
}

/// The address after `net`'s network address (which is the subnet-router anycast address, the
/// VXLAN device's): a node's default IPv6 gateway, and an IPAM range's.
pub fn first_host6(net: Ipv6Net) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(net.network()) + 1)
}

/// True when `addr` is inside `net` and is not its network address (the subnet-router anycast
/// address, which fastpath gives the VXLAN device).
fn is_host6(net: Ipv6Net, addr: Ipv6Addr) -> bool {
    net.contains(&addr) && addr != net.network()
}

fn first_host(net: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + 1)
}

/// True when `addr` is inside `net` and is neither its network nor its broadcast address.
fn is_host(net: Ipv4Net, addr: Ipv4Addr) -> bool {
    net.contains(&addr) && addr != net.network() && addr != net.broadcast()
}

fn check_name(field: &str, name: &str, max: usize) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if !ok {
        bail!(
            "{field} = '{name}': use 1..{max} characters from a-z, 0-9 and '-', not starting with '-'"
        );
    }
    Ok(())
}

fn check_ifname(field: &str, name: &str) -> Result<()> {
    ifname::check(name).map_err(|e| anyhow::anyhow!("{field} = '{name}': {e}"))
}

/// A node reached over VXLAN, with everything the routes and FDB need.
#[derive(Clone, Debug, Serialize)]
pub struct VxlanPeer {
    pub name: String,
    pub underlay_ip: Ipv4Addr,
    pub pod_cidr: Option<Ipv4Net>,
    pub pod_cidr6: Option<Ipv6Net>,
    pub vtep_mac: Mac,
}

#[cfg(test)]
mod tests;
