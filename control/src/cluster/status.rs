//! `fastpath status`: what is actually on the machine for each node and pod, read back from the
//! kernel, next to what the config asks for.

use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use anyhow::Result;
use ipnet::IpNet;
use serde::Serialize;

use super::{Cluster, POD_IFNAME};
use crate::{
    config::{self, Mode, VXLAN_OVERHEAD},
    datapath::{self, Hook, LoadedPrograms},
    guard,
    netlink::{LinkView, Netlink},
    netns::Netns,
};

#[derive(Debug, Serialize)]
pub struct ClusterStatus {
    pub prefix: String,
    pub nodes: Vec<NodeStatus>,
}

#[derive(Debug, Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub netns: String,
    pub present: bool,
    /// The mode the config asks for.
    pub mode: Mode,
    /// The mode the pods run in, from the programs attached to their host veths (None with no
    /// pod veth present).
    pub running_mode: Option<RunningMode>,
    /// The node's nftables guard table (see `guard`), when it is there.
    pub guard: Option<String>,
    pub devices: Vec<DeviceStatus>,
    pub pods: Vec<PodStatus>,
    pub peers: Vec<config::VxlanPeer>,
}

/// What runs on a node's pods, read from the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunningMode {
    Kernel,
    Xdp,
    Tc,
    /// Pods in different modes (an `up` that stopped half-way, or pods attached by hand).
    Mixed,
}

impl RunningMode {
    fn of_pods(pods: &[PodStatus], programs: &LoadedPrograms) -> Option<Self> {
        let mut modes = pods.iter().filter(|p| p.host_veth.present).map(|p| {
            match programs.pod_hook(p.host_veth.xdp_program, &p.host_veth.tcx_programs) {
                Some(Hook::Xdp) => RunningMode::Xdp,
                Some(_) => RunningMode::Tc,
                None => RunningMode::Kernel,
            }
        });
        let first = modes.next()?;
        Some(if modes.all(|m| m == first) {
            first
        } else {
            RunningMode::Mixed
        })
    }

    fn is(self, mode: Mode) -> bool {
        matches!(
            (self, mode),
            (RunningMode::Kernel, Mode::Kernel)
                | (RunningMode::Xdp, Mode::Xdp)
                | (RunningMode::Tc, Mode::Tc)
        )
    }

    fn name(self) -> &'static str {
        match self {
            RunningMode::Kernel => "kernel",
            RunningMode::Xdp => "xdp",
            RunningMode::Tc => "tc",
            RunningMode::Mixed => "mixed",
        }
    }
}

#[derive(Debug, Serialize)]
pub struct DeviceStatus {
    pub role: &'static str,
    pub name: String,
    pub present: bool,
    pub kind: Option<String>,
    pub up: bool,
    pub mtu: Option<u32>,
    pub expected_mtu: u32,
    /// Both families, without the IPv6 link-local address every interface has.
    pub addresses: Vec<IpNet>,
    pub xdp_program: Option<u32>,
    pub tcx_programs: Vec<u32>,
}

#[derive(Debug, Serialize)]
pub struct PodStatus {
    pub name: String,
    pub netns: String,
    /// Its IPv4 and IPv6 addresses: one of them, or both.
    pub address: Option<Ipv4Addr>,
    pub address6: Option<Ipv6Addr>,
    pub present: bool,
    pub host_veth: DeviceStatus,
    pub interface: DeviceStatus,
    pub default_via: Option<Ipv4Addr>,
    pub default_via6: Option<Ipv6Addr>,
}

impl ClusterStatus {
    /// True when every namespace and device is there, up, with the MTU the config asks for.
    pub fn healthy(&self) -> bool {
        self.nodes.iter().all(|n| {
            n.present
                && n.guard.is_some()
                && n.devices.iter().all(DeviceStatus::healthy)
                && n.pods
                    .iter()
                    .all(|p| p.present && p.host_veth.healthy() && p.interface.healthy())
        })
    }
}

impl DeviceStatus {
    fn healthy(&self) -> bool {
        self.present && self.up && self.mtu == Some(self.expected_mtu)
    }
}

async fn device(
    nl: Option<&Netlink>,
    role: &'static str,
    name: &str,
    expected_mtu: u32,
) -> Result<DeviceStatus> {
    let view: Option<LinkView> = match nl {
        Some(nl) => nl.link_view(name).await?,
        None => None,
    };
    let mut status = DeviceStatus {
        role,
        name: name.to_string(),
        present: view.is_some(),
        kind: None,
        up: false,
        mtu: None,
        expected_mtu,
        addresses: Vec::new(),
        xdp_program: None,
        tcx_programs: Vec::new(),
    };
    if let (Some(nl), Some(view)) = (nl, view) {
        status.kind = view.kind.clone();
        status.up = view.up;
        status.mtu = Some(view.mtu);
        status.addresses = nl.addresses(view.index).await?;
        status.xdp_program = view.xdp_program;
        status.tcx_programs =
            datapath::tcx_ingress_program_ids(nl.netns(), name).unwrap_or_default();
    }
    Ok(status)
}

pub async fn status(cluster: &Cluster) -> Result<ClusterStatus> {
    let programs = LoadedPrograms::read();
    let mut nodes = Vec::new();
    for node in &cluster.config.nodes {
        let netns = cluster.node_netns(node);
        let nl = if netns.exists() {
            Some(Netlink::open(&netns)?)
        } else {
            None
        };
        let pod_mtu = config::node_pod_mtu(node);
        let devices = vec![
            device(
                nl.as_ref(),
                "underlay",
                &node.underlay.device,
                node.underlay.mtu,
            )
            .await?,
            device(nl.as_ref(), "bridge", &node.bridge, pod_mtu).await?,
            device(
                nl.as_ref(),
                "vxlan",
                &cluster.config.vxlan.device,
                node.underlay.mtu - VXLAN_OVERHEAD,
            )
            .await?,
        ];
        let mut pods = Vec::new();
        for pod in &node.pods {
            let pod_ns = cluster.pod_netns(node, pod);
            let pod_nl = if pod_ns.exists() {
                Some(Netlink::open(&pod_ns)?)
            } else {
                None
            };
            let interface = device(pod_nl.as_ref(), "pod", POD_IFNAME, pod_mtu).await?;
            let (mut default_via, mut default_via6) = (None, None);
            if let (Some(pod_nl), true) = (&pod_nl, interface.present) {
                let index = pod_nl.index(POD_IFNAME).await?;
                for (dst, gateway) in pod_nl.routes(index).await? {
                    match (dst.prefix_len(), gateway) {
                        (0, Some(IpAddr::V4(gateway))) => default_via = Some(gateway),
                        (0, Some(IpAddr::V6(gateway))) => default_via6 = Some(gateway),
                        _ => {}
                    }
                }
            }
            pods.push(PodStatus {
                name: pod.name.clone(),
                netns: label(&pod_ns),
                address: pod.address,
                address6: pod.address6,
                present: pod_nl.is_some(),
                host_veth: device(nl.as_ref(), "pod-host", &Cluster::pod_veth(pod), pod_mtu)
                    .await?,
                interface,
                default_via,
                default_via6,
            });
        }
        let table = guard::table_name(cluster.prefix());
        let guard = guard::installed(&netns, &table)?.then_some(table);
        nodes.push(NodeStatus {
            name: node.name.clone(),
            netns: label(&netns),
            present: nl.is_some(),
            mode: cluster.config.mode_of(node),
            running_mode: RunningMode::of_pods(&pods, &programs),
            guard,
            devices,
            pods,
            peers: cluster.config.vxlan_peers_of(node),
        });
    }
    Ok(ClusterStatus {
        prefix: cluster.prefix().to_string(),
        nodes,
    })
}

fn label(netns: &Netns) -> String {
    netns.label().to_string()
}

/// A report for people: one block per node.
pub fn render(status: &ClusterStatus) -> String {
    let mut out = String::new();
    for node in &status.nodes {
        let mode = match node.running_mode {
            Some(running) if !running.is(node.mode) => {
                format!(
                    "mode {} running, {} in the config",
                    running.name(),
                    node.mode
                )
            }
            _ => format!("mode {}", node.mode),
        };
        let _ = writeln!(
            out,
            "node {} (netns {}, {mode}){}",
            node.name,
            node.netns,
            if node.present { "" } else { ": NOT UP" }
        );
        for d in &node.devices {
            let _ = writeln!(out, "  {:<9} {}", d.role, device_line(d));
        }
        let guard = node.guard.as_ref().map_or("MISSING".to_string(), |t| {
            format!("nftables tables inet and netdev {t}")
        });
        let _ = writeln!(out, "  {:<9} {guard}", "guard");
        for p in &node.pods {
            let mut addresses = Vec::new();
            let mut via = Vec::new();
            if let Some(address) = p.address {
                addresses.push(address.to_string());
                via.push(
                    p.default_via
                        .map_or("no default route".into(), |g| format!("via {g}")),
                );
            }
            if let Some(address6) = p.address6 {
                addresses.push(address6.to_string());
                via.push(
                    p.default_via6
                        .map_or("no IPv6 default route".into(), |g| format!("via {g}")),
                );
            }
            let (address, via) = (addresses.join(" "), via.join(", "));
            let _ = writeln!(
                out,
                "  pod {:<5} {address} in netns {}, {via}",
                p.name, p.netns
            );
            let _ = writeln!(out, "    eth0    {}", device_line(&p.interface));
            let _ = writeln!(out, "    host    {}", device_line(&p.host_veth));
        }
        for peer in &node.peers {
            let cidrs: Vec<String> = (peer.pod_cidr.map(|c| c.to_string()).into_iter())
                .chain(peer.pod_cidr6.map(|c| c.to_string()))
                .collect();
            let _ = writeln!(
                out,
                "  peer {} {} via {} (VTEP {})",
                peer.name,
                cidrs.join(" "),
                peer.underlay_ip,
                peer.vtep_mac
            );
        }
    }
    let _ = writeln!(
        out,
        "{}",
        if status.healthy() {
            "all devices up with the configured MTU, every node guarded"
        } else {
            "NOT HEALTHY: see the lines above"
        }
    );
    out
}

fn device_line(d: &DeviceStatus) -> String {
    if !d.present {
        return format!("{} MISSING", d.name);
    }
    let mut line = format!(
        "{} {} {} mtu {}",
        d.name,
        d.kind.as_deref().unwrap_or("?"),
        if d.up { "up" } else { "DOWN" },
        d.mtu.unwrap_or(0)
    );
    if d.mtu != Some(d.expected_mtu) {
        let _ = write!(line, " (config says {})", d.expected_mtu);
    }
    if !d.addresses.is_empty() {
        let addrs: Vec<String> = d.addresses.iter().map(ToString::to_string).collect();
        let _ = write!(line, " {}", addrs.join(" "));
    }
    if let Some(id) = d.xdp_program {
        let _ = write!(line, " xdp prog {id}");
    }
    if !d.tcx_programs.is_empty() {
        let _ = write!(line, " tcx progs {:?}", d.tcx_programs);
    }
    line
}
