//! The rows of the benchmark (the datapaths compared) and the topology each one runs on. The
//! fastpath rows use a cluster of their own (the demo description under the prefix `fpbench-`),
//! switched between modes; the limit and reference rows are namespaces of their own. The kernel
//! path's and the fast path's rows run once over IPv4 and once over IPv6, between the same
//! dual-stack pods; the other rows are IPv4 only.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::{Context as _, Result};
use serde::Serialize;

use super::{
    load::Path,
    monitor_load::MonitorProcess,
    tun::{self, Tunnel},
};
use control::{
    cluster::{self, Cluster, POD_IFNAME},
    config::{self, ClusterConfig, Mode, NodeConfig, PodConfig},
    datapath::{self, EndpointEntry, Maps, Owner, PeerEntry},
    guard,
    mac::Mac,
    netlink::Netlink,
    netns::{self, Netns},
    ownership::Ownership,
    topology::{self, Endpoint},
};

/// Every namespace the benchmark makes starts with this.
pub const PREFIX: &str = "fpbench-";
/// Namespaces outside the cluster (limit and reference rows).
const EXTRA: &str = "fpbench-x-";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Group {
    SameNode,
    CrossNode,
}

impl Group {
    pub fn name(self) -> &'static str {
        match self {
            Group::SameNode => "same node",
            Group::CrossNode => "cross node",
        }
    }
}

/// The IP family a row's traffic is: the pods' IPv4 or their IPv6 addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::Ipv4, Family::Ipv6];

    pub fn name(self) -> &'static str {
        match self {
            Family::Ipv4 => "IPv4",
            Family::Ipv6 => "IPv6",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// What no datapath between two pods can beat: no bridge, no program, or no device at all.
    Limit,
    /// The kernel path the fast path replaces; ratios are against it.
    Kernel,
    /// Another kernel datapath, for reference.
    Reference,
    FastPath,
    /// The userspace tunnel fastpath's design leaves behind.
    Baseline,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Row {
    Loopback,
    Veth,
    Bridge,
    BridgeIpv6,
    Macvlan,
    XdpSame,
    XdpSameIpv6,
    TcSame,
    TcSameIpv6,
    /// `TcSame` with 10,000 more endpoints and 1,000 remote CIDRs in the maps.
    TcSameScaled,
    /// `TcSame` while `fastpath monitor` reads every drop (none in this traffic).
    TcSameDropMonitor,
    /// `TcSame` while `fastpath monitor` traces one decision in 100.
    TcSameTraceMonitor,
    Vxlan,
    VxlanIpv6,
    XdpCross,
    XdpCrossIpv6,
    TcCross,
    TcCrossIpv6,
    /// `TcCross` with 10,000 more endpoints and 1,000 remote CIDRs in the maps.
    TcCrossScaled,
    Tun,
}

impl Row {
    /// Every row, in the order a round runs them: an IPv6 row right after its IPv4 twin, so the
    /// two are measured moments apart, in the same mode.
    pub const ALL: [Row; 20] = [
        Row::Loopback,
        Row::Veth,
        Row::Bridge,
        Row::BridgeIpv6,
        Row::Macvlan,
        Row::XdpSame,
        Row::XdpSameIpv6,
        Row::TcSame,
        Row::TcSameIpv6,
        Row::TcSameScaled,
        Row::TcSameDropMonitor,
        Row::TcSameTraceMonitor,
        Row::Vxlan,
        Row::VxlanIpv6,
        Row::XdpCross,
        Row::XdpCrossIpv6,
        Row::TcCross,
        Row::TcCrossIpv6,
        Row::TcCrossScaled,
        Row::Tun,
    ];

    pub fn family(self) -> Family {
        if self.ipv4() == self {
            Family::Ipv4
        } else {
            Family::Ipv6
        }
    }

    /// The row of the same datapath over IPv4: the row itself for an IPv4 row, and what tells
    /// the IPv6 rows from the others.
    pub fn ipv4(self) -> Row {
        match self {
            Row::BridgeIpv6 => Row::Bridge,
            Row::XdpSameIpv6 => Row::XdpSame,
            Row::TcSameIpv6 => Row::TcSame,
            Row::VxlanIpv6 => Row::Vxlan,
            Row::XdpCrossIpv6 => Row::XdpCross,
            Row::TcCrossIpv6 => Row::TcCross,
            row => row,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Row::Loopback => "loopback",
            Row::Veth => "veth pair",
            Row::Bridge | Row::BridgeIpv6 => "kernel bridge",
            Row::Macvlan => "macvlan bridge",
            Row::XdpSame | Row::XdpSameIpv6 | Row::XdpCross | Row::XdpCrossIpv6 => "fastpath xdp",
            Row::TcSame | Row::TcSameIpv6 | Row::TcCross | Row::TcCrossIpv6 => "fastpath tc",
            Row::TcSameScaled | Row::TcCrossScaled => "fastpath tc, 10k entries",
            Row::TcSameDropMonitor => "fastpath tc, drop monitor",
            Row::TcSameTraceMonitor => "fastpath tc, trace 1/100",
            Row::Vxlan | Row::VxlanIpv6 => "kernel vxlan",
            Row::Tun => "tun tunnel",
        }
    }

    /// The name with the group and, for IPv6, the family: tells rows of one datapath apart.
    pub fn label(self) -> String {
        match self.family() {
            Family::Ipv4 => format!("{} ({})", self.name(), self.group().name()),
            Family::Ipv6 => format!(
                "{} ({}, {})",
                self.name(),
                self.group().name(),
                Family::Ipv6.name()
            ),
        }
    }

    pub fn group(self) -> Group {
        match self {
            Row::Vxlan
            | Row::VxlanIpv6
            | Row::XdpCross
            | Row::XdpCrossIpv6
            | Row::TcCross
            | Row::TcCrossIpv6
            | Row::TcCrossScaled
            | Row::Tun => Group::CrossNode,
            Row::Loopback
            | Row::Veth
            | Row::Bridge
            | Row::BridgeIpv6
            | Row::Macvlan
            | Row::XdpSame
            | Row::XdpSameIpv6
            | Row::TcSame
            | Row::TcSameIpv6
            | Row::TcSameScaled
            | Row::TcSameDropMonitor
            | Row::TcSameTraceMonitor => Group::SameNode,
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            Row::Loopback | Row::Veth => Kind::Limit,
            Row::Bridge | Row::BridgeIpv6 | Row::Vxlan | Row::VxlanIpv6 => Kind::Kernel,
            Row::Macvlan => Kind::Reference,
            Row::XdpSame
            | Row::XdpSameIpv6
            | Row::TcSame
            | Row::TcSameIpv6
            | Row::TcSameScaled
            | Row::TcSameDropMonitor
            | Row::TcSameTraceMonitor
            | Row::XdpCross
            | Row::XdpCrossIpv6
            | Row::TcCross
            | Row::TcCrossIpv6
            | Row::TcCrossScaled => Kind::FastPath,
            Row::Tun => Kind::Baseline,
        }
    }

    /// The cluster mode the row runs the bench cluster in, for the rows that use it.
    fn mode(self) -> Option<Mode> {
        match self {
            Row::Bridge | Row::BridgeIpv6 | Row::Vxlan | Row::VxlanIpv6 | Row::Tun => {
                Some(Mode::Kernel)
            }
            Row::XdpSame | Row::XdpSameIpv6 | Row::XdpCross | Row::XdpCrossIpv6 => Some(Mode::Xdp),
            Row::TcSame
            | Row::TcSameIpv6
            | Row::TcCross
            | Row::TcCrossIpv6
            | Row::TcSameScaled
            | Row::TcCrossScaled
            | Row::TcSameDropMonitor
            | Row::TcSameTraceMonitor => Some(Mode::Tc),
            Row::Loopback | Row::Veth | Row::Macvlan => None,
        }
    }
}

/// Extra map entries of the scaled rows.
const SCALE_ENDPOINTS: u32 = 10_000;
const SCALE_REMOTES: u32 = 1_000;

const LOOPBACK_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 11, 1);
const VETH_A: Ipv4Addr = Ipv4Addr::new(198, 18, 10, 1);
const VETH_B: Ipv4Addr = Ipv4Addr::new(198, 18, 10, 2);
const MACVLAN_A: Ipv4Addr = Ipv4Addr::new(198, 18, 12, 1);
const MACVLAN_B: Ipv4Addr = Ipv4Addr::new(198, 18, 12, 2);

/// Everything the rows run on. `close` (or a later `clean_leftovers`) removes it all.
pub struct Topology {
    cluster: Cluster,
    pod_mtu: u32,
    tunnel: Option<Tunnel>,
    /// The monitor rows' reader, stopped when the next row is prepared.
    monitor: Option<MonitorProcess>,
}

fn extra(name: &str) -> Netns {
    Netns::named(format!("{EXTRA}{name}"))
}

/// Removes whatever an earlier benchmark left (a killed run): the cluster and the extra
/// namespaces, found by their prefix.
pub async fn clean_leftovers() -> Result<()> {
    cluster::down(&Ownership::new(PREFIX)).await?;
    for name in netns::list_with_prefix(EXTRA)? {
        Netns::named(name).delete()?;
    }
    Ok(())
}

impl Topology {
    pub async fn build() -> Result<Self> {
        clean_leftovers().await?;
        let config = ClusterConfig::load(None)?;
        let pod_mtu = config::node_pod_mtu(&config.nodes[0]);
        let topology = Self {
            cluster: Cluster::new(config, PREFIX),
            pod_mtu,
            tunnel: None,
            monitor: None,
        };
        cluster::up(&topology.cluster).await?;

        topology::create_namespace(&extra("lo")).await?;
        Netlink::open(&extra("lo"))?
            .add_address("lo", LOOPBACK_ADDR.into(), 32)
            .await?;

        let (a, b) = (extra("veth-a"), extra("veth-b"));
        for ns in [&a, &b] {
            topology::create_namespace(ns).await?;
        }
        let ends = [
            Endpoint {
                netns: a,
                dev: "veth-a".into(),
                addr: VETH_A,
            },
            Endpoint {
                netns: b,
                dev: "veth-b".into(),
                addr: VETH_B,
            },
        ];
        topology::connect(&ends[0], &ends[1], 30).await?;
        for end in &ends {
            Netlink::open(&end.netns)?
                .set_mtu(&end.dev, pod_mtu)
                .await?;
        }

        // macvlan in bridge mode: two devices on one parent (a veth end, up, its peer up too).
        let parent = extra("mv-parent");
        topology::create_namespace(&parent).await?;
        let nl = Netlink::open(&parent)?;
        nl.create_veth("mv-up0", "mv-up1", &parent).await?;
        nl.set_up("mv-up0").await?;
        nl.set_up("mv-up1").await?;
        for (ns, dev, addr) in [("mv-a", "mv-a", MACVLAN_A), ("mv-b", "mv-b", MACVLAN_B)] {
            let ns = extra(ns);
            topology::create_namespace(&ns).await?;
            nl.create_macvlan(dev, "mv-up0", &ns).await?;
            let inner = Netlink::open(&ns)?;
            inner.add_address(dev, addr.into(), 24).await?;
            inner.set_mtu(dev, pod_mtu).await?;
            inner.set_up(dev).await?;
        }
        Ok(topology)
    }

    fn find_pod(&self, name: &str) -> (&NodeConfig, &PodConfig) {
        self.cluster
            .config
            .nodes
            .iter()
            .find_map(|n| n.pods.iter().find(|p| p.name == name).map(|p| (n, p)))
            .expect("the demo cluster's pods")
    }

    fn pod(&self, name: &str, family: Family) -> (Netns, IpAddr) {
        let (node, pod) = self.find_pod(name);
        let addr = match family {
            Family::Ipv4 => pod
                .address
                .expect("the demo cluster's pods are dual-stack")
                .into(),
            Family::Ipv6 => pod
                .address6
                .expect("the demo cluster's pods are dual-stack")
                .into(),
        };
        (self.cluster.pod_netns(node, pod), addr)
    }

    fn pod_path(&self, from: &str, to: &str, family: Family) -> Path {
        let ((from, from_addr), (to, to_addr)) = (self.pod(from, family), self.pod(to, family));
        Path {
            from,
            from_addr,
            to,
            to_addr,
            to_dev: POD_IFNAME.into(),
        }
    }

    /// The kernel rows are the plain kernel path fastpath is measured against (a bridge, flannel's
    /// VXLAN and UDP modes), which has no guard. The next row's `up` puts the guards back.
    fn remove_guards(&self) -> Result<()> {
        let table = guard::table_name(PREFIX);
        for node in &self.cluster.config.nodes {
            guard::remove(&self.cluster.node_netns(node), &table)?;
        }
        Ok(())
    }

    /// Makes the machine ready for `row` and returns where its traffic goes.
    pub async fn prepare(&mut self, row: Row) -> Result<Path> {
        self.tunnel = None;
        self.monitor = None;
        if let Some(mode) = row.mode() {
            self.cluster.mode_override = Some(mode);
            cluster::up(&self.cluster)
                .await
                .with_context(|| format!("switching the bench cluster to {mode}"))?;
            if mode == Mode::Kernel {
                self.remove_guards()?;
            }
        }
        if matches!(row, Row::TcSameScaled | Row::TcCrossScaled) {
            self.fill_maps()?;
        }
        let monitor_args: &[&str] = match row {
            Row::TcSameDropMonitor => &["--type", "drop"],
            Row::TcSameTraceMonitor => &["--type", "trace", "--sample", "100"],
            _ => &[],
        };
        if !monitor_args.is_empty() {
            let (node, _) = self.find_pod(cluster_pods(row.group()).0);
            self.monitor = Some(MonitorProcess::start(
                PREFIX,
                &node.name,
                &self.cluster.pin_dir(node),
                monitor_args,
            )?);
        }
        Ok(match row {
            Row::Loopback => Path {
                from: extra("lo"),
                from_addr: LOOPBACK_ADDR.into(),
                to: extra("lo"),
                to_addr: LOOPBACK_ADDR.into(),
                to_dev: "lo".into(),
            },
            Row::Veth => Path {
                from: extra("veth-a"),
                from_addr: VETH_A.into(),
                to: extra("veth-b"),
                to_addr: VETH_B.into(),
                to_dev: "veth-b".into(),
            },
            Row::Macvlan => Path {
                from: extra("mv-a"),
                from_addr: MACVLAN_A.into(),
                to: extra("mv-b"),
                to_addr: MACVLAN_B.into(),
                to_dev: "mv-b".into(),
            },
            Row::Bridge
            | Row::BridgeIpv6
            | Row::XdpSame
            | Row::XdpSameIpv6
            | Row::TcSame
            | Row::TcSameIpv6
            | Row::TcSameScaled
            | Row::TcSameDropMonitor
            | Row::TcSameTraceMonitor
            | Row::Vxlan
            | Row::VxlanIpv6
            | Row::XdpCross
            | Row::XdpCrossIpv6
            | Row::TcCross
            | Row::TcCrossIpv6
            | Row::TcCrossScaled => {
                let (from, to) = cluster_pods(row.group());
                self.pod_path(from, to, row.family())
            }
            Row::Tun => {
                let (from, to) = cluster_pods(row.group());
                let path = self.pod_path(from, to, Family::Ipv4);
                // The tunnel baseline is an IPv4 row: its relays route a /32 per pod.
                let ipv4 = |pod: &str| {
                    (self.find_pod(pod).1.address).expect("the demo cluster's pods have IPv4")
                };
                let (from_pod, to_pod) = (ipv4(from), ipv4(to));
                let node = |n: &str| self.cluster.config.node(n).expect("demo node");
                let (a, b) = (node("a"), node("b"));
                let (ns_a, ns_b) = (self.cluster.node_netns(a), self.cluster.node_netns(b));
                self.tunnel = Some(
                    Tunnel::start(
                        tun::End {
                            netns: &ns_a,
                            underlay: a.underlay.address.addr(),
                            remote_pod: to_pod,
                            mtu: self.pod_mtu,
                        },
                        tun::End {
                            netns: &ns_b,
                            underlay: b.underlay.address.addr(),
                            remote_pod: from_pod,
                            mtu: self.pod_mtu,
                        },
                    )
                    .await?,
                );
                path
            }
        })
    }

    /// The ids of the node programs a fast-path row's packets pass: those on the sending pod's
    /// host-side veth (tc_pod or xdp_pod) and, across nodes, those on the receiving node's underlay
    /// (tc_underlay). Read from the devices, so they are what is attached now.
    pub async fn program_ids(&self, row: Row) -> Result<Vec<u32>> {
        let (from, to) = cluster_pods(row.group());
        let (node, pod) = self.find_pod(from);
        let netns = self.cluster.node_netns(node);
        let veth = Cluster::pod_veth(pod);
        let mut ids = datapath::tcx_ingress_program_ids(&netns, &veth)?;
        ids.extend(Netlink::open(&netns)?.xdp_program_id(&veth).await?);
        if row.group() == Group::CrossNode {
            let (node, _) = self.find_pod(to);
            ids.extend(datapath::tcx_ingress_program_ids(
                &self.cluster.node_netns(node),
                &node.underlay.device,
            )?);
        }
        Ok(ids)
    }

    /// Adds `SCALE_ENDPOINTS` endpoints and `SCALE_REMOTES` remote CIDRs to every node's maps,
    /// in 198.19.0.0/16 where no pod lives, so lookups for the real pods search full maps. The
    /// next mode switch's sync removes them.
    fn fill_maps(&self) -> Result<()> {
        let nodes = &self.cluster.config.nodes;
        for (i, node) in nodes.iter().enumerate() {
            let peer = &nodes[(i + 1) % nodes.len()];
            let endpoints: Vec<EndpointEntry> = (0..SCALE_ENDPOINTS)
                .map(|n| {
                    let [_, _, hi, lo] = n.to_be_bytes();
                    EndpointEntry {
                        ip: Some(Ipv4Addr::new(198, 19, hi, lo)),
                        ip6: None,
                        // No device has these: the entries are looked past, never used.
                        ifindex: 1_000_000 + n,
                        mac: Mac([0x02, 0xfb, 0, 0, hi, lo]),
                    }
                })
                .collect();
            let remotes: Vec<PeerEntry> = (0..SCALE_REMOTES)
                .map(|n| PeerEntry {
                    pod_cidr: ipnet::Ipv4Net::new(
                        Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 128, 0)) + n * 32),
                        27,
                    )
                    .ok(),
                    pod_cidr6: None,
                    underlay_ip: peer.underlay.address.addr(),
                    vtep_mac: Mac::vtep(peer.underlay.address.addr()),
                })
                .collect();
            Maps::open(&self.cluster.pin_dir(node))?
                .insert_unrouted(
                    Owner::node(self.cluster.node_netns(node).label()),
                    &endpoints,
                    &remotes,
                )
                .with_context(|| format!("filling the maps of bench node '{}'", node.name))?;
        }
        Ok(())
    }

    /// Removes everything the benchmark made.
    pub async fn close(mut self) -> Result<()> {
        self.tunnel = None;
        self.monitor = None;
        clean_leftovers().await
    }
}

/// The demo cluster's pods a group's rows send between.
fn cluster_pods(group: Group) -> (&'static str, &'static str) {
    match group {
        Group::SameNode => ("a1", "a2"),
        Group::CrossNode => ("a1", "b1"),
    }
}

/// What a row's packets go through, for the report.
pub fn describe(row: Row) -> &'static str {
    match row {
        Row::Loopback => "one namespace, lo: no device between sender and receiver",
        Row::Veth => "two namespaces joined by a veth pair: no bridge, no program",
        Row::Bridge | Row::BridgeIpv6 => "pod veth -> bridge -> pod veth",
        Row::Macvlan => "two macvlan devices in bridge mode on one parent",
        Row::XdpSame | Row::XdpSameIpv6 => "xdp_pod redirects veth -> veth",
        Row::TcSame | Row::TcSameIpv6 => "tc_pod redirects veth -> pod (bpf_redirect_peer)",
        Row::TcSameScaled | Row::TcCrossScaled => {
            "as fastpath tc, with 10,000 more endpoints and 1,000 remote CIDRs in the maps"
        }
        Row::TcSameDropMonitor => {
            "as fastpath tc, while `fastpath monitor` reads every drop (the traffic has none)"
        }
        Row::TcSameTraceMonitor => {
            "as fastpath tc, while `fastpath monitor --type trace --sample 100` reads events"
        }
        Row::Vxlan | Row::VxlanIpv6 => {
            "bridge, routing, kernel VXLAN device, underlay veth, and back"
        }
        Row::XdpCross | Row::XdpCrossIpv6 => "xdp_pod encapsulates, tc_underlay decapsulates",
        Row::TcCross | Row::TcCrossIpv6 => "tc_pod encapsulates, tc_underlay decapsulates",
        Row::Tun => "tun device + userspace UDP relay in each node (flannel UDP mode)",
    }
}
