//! `fastpath up`: makes the machine match the config. Every step looks first and acts only on a
//! difference, so a second run changes nothing, a device removed behind fastpath's back comes
//! back, and a wrong MTU or address is put right. Each change is reported in words.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Context as _, Result, bail};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::{Cluster, POD_IFNAME, Scope};
use crate::{
    config::{self, NodeConfig, PodConfig, UnderlaySegment, VXLAN_OVERHEAD},
    ethtool,
    guard::{self, Guard},
    link_state,
    mac::Mac,
    netlink::{LinkView, Netlink, VethPair, VxlanEntry, VxlanSpec},
    netns::Netns,
    ownership::Ownership,
    pod_bridge::PodBridge,
    pod_veth::{PodAddressing, PodVeth},
};

/// The bridge in an underlay segment's namespace, and the prefix of its ports (`ul-<node>`).
const SEGMENT_BRIDGE: &str = "seg0";
const SEGMENT_PORT_PREFIX: &str = "ul-";

/// Brings the cluster to the state its config describes; returns what was changed.
pub async fn up(cluster: &Cluster) -> Result<Vec<String>> {
    let _lock = cluster
        .ownership
        .lock()
        .context("locking this prefix's ownership records")?;
    let mut r = Reconciler {
        cluster,
        changes: Vec::new(),
    };
    // A real node's underlay is checked before anything changes: a wrong device leaves the
    // machine as it was.
    for node in cluster.config.nodes.iter().filter(|n| !n.simulated) {
        r.check_real_underlay(node).await?;
    }
    r.remove_stale_namespaces()?;
    r.remove_stale_pins()?;
    for node in &cluster.config.nodes {
        let netns = cluster.node_netns(node);
        if node.simulated {
            r.ensure_netns(&netns, Some(&node.name)).await?;
        }
        r.ensure_forwarding(&netns, node.pod_cidr6.is_some())?;
    }
    for link in &cluster.config.underlay_links {
        let [a, b] = &link.nodes;
        let (a, b) = (
            cluster.config.node(a).expect("validated"),
            cluster.config.node(b).expect("validated"),
        );
        r.ensure_underlay_link(a, b).await?;
    }
    for segment in &cluster.config.underlay_segments {
        r.ensure_segment(segment).await?;
    }
    for node in &cluster.config.nodes {
        let config = &cluster.config;
        if node.simulated
            && config.underlay_peer_of(&node.name).is_none()
            && config.underlay_segment_of(&node.name).is_none()
        {
            r.ensure_unlinked_underlay(node).await?;
        }
    }
    r.create_pod_namespaces()?;
    for node in &cluster.config.nodes {
        r.ensure_bridge(node).await?;
        r.ensure_vxlan(node).await?;
        r.ensure_peers(node).await?;
        r.ensure_guard(node)?;
        for pod in &node.pods {
            r.ensure_pod(node, pod).await?;
        }
        r.remove_stale_pod_veths(node).await?;
        r.ensure_mode(node).await?;
    }
    Ok(r.changes)
}

pub(super) struct Reconciler<'a> {
    pub(super) cluster: &'a Cluster,
    changes: Vec<String>,
}

impl Reconciler<'_> {
    pub(super) fn changed(&mut self, what: String) {
        log::info!("{what}");
        self.changes.push(what);
    }

    /// Namespaces this instance claimed that the config no longer has (a removed pod or node);
    /// scoped to its own nodes, only those claimed for one of them.
    fn remove_stale_namespaces(&mut self) -> Result<()> {
        let desired = self.cluster.desired_netns();
        let ownership = &self.cluster.ownership;
        for name in ownership
            .claimed_netns()
            .context("reading fastpath's ownership records")?
        {
            if desired.contains(&name) {
                continue;
            }
            if self.cluster.scope == Scope::OwnNodes {
                let node = ownership.netns_node(&name);
                if node.is_none_or(|n| self.cluster.config.node(&n).is_none()) {
                    continue;
                }
            }
            Netns::named(name.clone()).delete()?;
            self.cluster.ownership.release_netns(&name)?;
            self.changed(format!("removed netns {name} (no longer in the config)"));
        }
        Ok(())
    }

    /// Pins of nodes the config no longer has: removing them detaches those nodes' programs.
    /// Scoped to its own nodes, every other node's pins are another `up`'s.
    fn remove_stale_pins(&mut self) -> Result<()> {
        if self.cluster.scope == Scope::OwnNodes {
            return Ok(());
        }
        let root = super::prefix_pin_dir(self.cluster.prefix());
        let Ok(entries) = std::fs::read_dir(&root) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if self.cluster.config.node(&name).is_none() {
                std::fs::remove_dir_all(entry.path())
                    .with_context(|| format!("removing {}", entry.path().display()))?;
                self.changed(format!(
                    "removed pins of node {name} (no longer in the config)"
                ));
            }
        }
        Ok(())
    }

    /// Creates the pods' missing namespaces, several at once: the kernel takes about ten
    /// milliseconds to make one, mostly waiting, and the waits overlap (a hundred pods' take a
    /// second one by one). `ensure_pod` then finds them there.
    fn create_pod_namespaces(&mut self) -> Result<()> {
        const AT_ONCE: usize = 8;
        let missing: Vec<(Netns, &str)> = self
            .cluster
            .config
            .nodes
            .iter()
            .flat_map(|node| {
                node.pods
                    .iter()
                    .map(|pod| (self.cluster.pod_netns(node, pod), node.name.as_str()))
            })
            .filter(|(netns, _)| !netns.exists())
            .collect();
        let ownership = &self.cluster.ownership;
        for batch in missing.chunks(AT_ONCE) {
            let made: Vec<_> = std::thread::scope(|scope| {
                let threads: Vec<_> = batch
                    .iter()
                    .map(|(netns, node)| {
                        scope.spawn(|| claim_and_create(ownership, netns, Some(node)))
                    })
                    .collect();
                threads
                    .into_iter()
                    .map(|t| t.join().expect("namespace creation does not panic"))
                    .collect()
            });
            // Every namespace made is reported before the first failure is.
            let mut failed = None;
            for ((netns, _), made) in batch.iter().zip(made) {
                match made {
                    Ok(()) => self.changed(format!("created netns {}", netns.label())),
                    Err(e) => failed = failed.or(Some(e)),
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Creates `netns` (for `node`, or for the instance) when missing; refuses one that exists
    /// and is not fastpath's.
    async fn ensure_netns(&mut self, netns: &Netns, node: Option<&str>) -> Result<()> {
        let name = netns.name().expect("only named namespaces are created");
        let ownership = &self.cluster.ownership;
        if netns.exists() && ownership.owns_netns(name) && !netns.is_mounted() {
            // Killed between creating the mount point and mounting the namespace on it.
            netns.delete()?;
            self.changed(format!(
                "removed the unmounted netns file {name} an interrupted up left"
            ));
        }
        if netns.exists() {
            if !ownership.owns_netns(name) {
                bail!(
                    "network namespace '{name}' exists but was not created by fastpath: refusing to use it \
                     (remove it, or choose another --prefix)"
                );
            }
        } else {
            claim_and_create(ownership, netns, node)?;
            self.changed(format!("created netns {name}"));
        }
        let nl = Netlink::open(netns)?;
        if nl.link_view("lo").await?.is_some_and(|lo| !lo.up) {
            nl.set_up("lo").await?;
        }
        Ok(())
    }

    /// Nodes route between their pods, the VXLAN device and the underlay; IPv6 too when its
    /// pods have IPv6.
    fn ensure_forwarding(&mut self, netns: &Netns, ipv6: bool) -> Result<()> {
        let label = netns.label().to_string();
        let mut families = vec![("IPv4", "net/ipv4/ip_forward")];
        if ipv6 {
            families.push(("IPv6", "net/ipv6/conf/all/forwarding"));
        }
        for (family, sysctl) in families {
            let changed = netns
                .ensure_sysctls(&[(sysctl.to_string(), "1")])
                .with_context(|| format!("enabling {family} forwarding in netns {label}"))?;
            if !changed.is_empty() {
                self.changed(format!("enabled {family} forwarding in netns {label}"));
            }
        }
        Ok(())
    }

    /// Returns `name` in `nl`'s namespace when it is there with `kind`; removes it when it has
    /// another kind and is fastpath's; refuses to touch it when it is not fastpath's.
    async fn existing_link(
        &mut self,
        nl: &Netlink,
        netns_owned: bool,
        name: &str,
        kind: &str,
    ) -> Result<Option<LinkView>> {
        let Some(view) = nl.link_view(name).await? else {
            return Ok(None);
        };
        let ns = nl.netns().label().to_string();
        if !self.cluster.ownership.may_modify(netns_owned, &view) {
            bail!(
                "device '{name}' in netns {ns} exists but was not created by fastpath (its alias is not '{}'): \
                 refusing to change it; rename it or choose another name in the config",
                self.cluster.ownership.device_alias()
            );
        }
        if view.kind.as_deref() != Some(kind) {
            nl.delete_link(name).await?;
            self.changed(format!(
                "removed {name} in netns {ns}: it was a {} device, not a {kind}",
                view.kind.as_deref().unwrap_or("plain")
            ));
            return Ok(None);
        }
        Ok(Some(view))
    }

    /// Labels a device fastpath just created as its own.
    async fn mark_created(&mut self, nl: &Netlink, name: &str, what: &str) -> Result<()> {
        nl.set_alias(name, &self.cluster.ownership.device_alias())
            .await?;
        self.changed(format!(
            "created {what} {name} in netns {}",
            nl.netns().label()
        ));
        Ok(())
    }

    /// Sets MTU, the exact IPv4 addresses (when given) and up state of `name`, where they differ.
    async fn converge_link(
        &mut self,
        nl: &Netlink,
        name: &str,
        mtu: u32,
        addresses: Option<&[IpNet]>,
    ) -> Result<()> {
        let view = nl.link_view(name).await?.with_context(|| {
            format!("device '{name}' vanished from netns {}", nl.netns().label())
        })?;
        let mut changes = Vec::new();
        let converged = link_state::converge(nl, &view, mtu, addresses, true, &mut changes).await;
        for change in changes {
            self.changed(change);
        }
        converged
    }

    /// The veth pair that stands for the wire between two simulated nodes.
    async fn ensure_underlay_link(&mut self, a: &NodeConfig, b: &NodeConfig) -> Result<()> {
        let (ns_a, ns_b) = (self.cluster.node_netns(a), self.cluster.node_netns(b));
        let (nl_a, nl_b) = (Netlink::open(&ns_a)?, Netlink::open(&ns_b)?);
        let (dev_a, dev_b) = (&a.underlay.device, &b.underlay.device);
        let end_a = self.existing_link(&nl_a, true, dev_a, "veth").await?;
        let end_b = self.existing_link(&nl_b, true, dev_b, "veth").await?;
        if end_a.is_none() || end_b.is_none() {
            // A veth end alone joins nothing; remove it and make the pair anew.
            nl_a.delete_link(dev_a).await?;
            nl_b.delete_link(dev_b).await?;
            nl_a.create_veth(dev_a, dev_b, &ns_b).await?;
            self.mark_created(&nl_a, dev_a, "underlay veth").await?;
            self.mark_created(&nl_b, dev_b, "underlay veth").await?;
        }
        self.converge_link(
            &nl_a,
            dev_a,
            a.underlay.mtu,
            Some(&[a.underlay.address.into()]),
        )
        .await?;
        self.converge_link(
            &nl_b,
            dev_b,
            b.underlay.mtu,
            Some(&[b.underlay.address.into()]),
        )
        .await?;
        // xdp mode redirects encapsulated frames into the underlay veth, whose far end must run
        // NAPI to take them.
        self.ensure_napi([(&nl_a, dev_a.as_str()), (&nl_b, dev_b.as_str())])
    }

    /// The bridge that stands for an L2 network between any number of simulated nodes, and each
    /// node's veth into it. A node's veth goes with the node's namespace, so a node that leaves
    /// the config (or stops, in another `up` under this prefix) leaves nothing on the bridge.
    async fn ensure_segment(&mut self, segment: &UnderlaySegment) -> Result<()> {
        let netns = self.cluster.segment_netns(segment);
        self.ensure_netns(&netns, None).await?;
        let nl = Netlink::open(&netns)?;
        if self
            .existing_link(&nl, true, SEGMENT_BRIDGE, "bridge")
            .await?
            .is_none()
        {
            nl.create_bridge(SEGMENT_BRIDGE, None).await?;
            self.mark_created(&nl, SEGMENT_BRIDGE, "underlay segment bridge")
                .await?;
        }
        let config = &self.cluster.config;
        let members: Vec<&NodeConfig> = segment
            .nodes
            .iter()
            .map(|n| config.node(n).expect("validated"))
            .collect();
        let mtu = members[0].underlay.mtu;
        self.converge_link(&nl, SEGMENT_BRIDGE, mtu, Some(&[]))
            .await?;
        let bridge = nl.index(SEGMENT_BRIDGE).await?;
        for node in &members {
            self.ensure_segment_port(&nl, bridge, node).await?;
        }
        // The port of a node whose namespace is gone: the kernel deletes it with that namespace,
        // but later (namespaces are torn down by a work queue); until then it would look like a
        // way to that node. Another `up`'s node under this prefix (an agent's) keeps its port.
        for link in nl.links().await? {
            let Some(name) = link.name.strip_prefix(SEGMENT_PORT_PREFIX) else {
                continue;
            };
            let node_netns = Netns::named(format!("{}{name}", self.cluster.prefix()));
            if members.iter().any(|m| m.name == name) || node_netns.exists() {
                continue;
            }
            nl.delete_link(&link.name).await?;
            self.changed(format!(
                "removed {} from underlay segment {}: node '{name}' is gone",
                link.name,
                nl.netns().label()
            ));
        }
        Ok(())
    }

    /// `node`'s underlay device, a veth whose other end (`ul-<node>`) is a port of the segment's
    /// bridge (`bridge`, in `seg`'s namespace).
    async fn ensure_segment_port(
        &mut self,
        seg: &Netlink,
        bridge: u32,
        node: &NodeConfig,
    ) -> Result<()> {
        let node_ns = self.cluster.node_netns(node);
        let nl = Netlink::open(&node_ns)?;
        let dev = &node.underlay.device;
        let port = format!("{SEGMENT_PORT_PREFIX}{}", node.name);
        let end_node = self.existing_link(&nl, true, dev, "veth").await?;
        let end_seg = self.existing_link(seg, true, &port, "veth").await?;
        let joined = end_seg.as_ref().is_some_and(|v| v.master == Some(bridge));
        if end_node.is_none() || end_seg.is_none() || !joined {
            // A veth end alone, or one that is no port of the bridge, joins nothing: made anew.
            nl.delete_link(dev).await?;
            seg.delete_link(&port).await?;
            seg.create_veth_pair(&VethPair {
                name: &port,
                master: Some(bridge),
                mtu: Some(node.underlay.mtu),
                peer: dev,
                peer_netns: &node_ns,
                peer_mac: None,
            })
            .await?;
            self.mark_created(seg, &port, "underlay segment port")
                .await?;
            self.mark_created(&nl, dev, "underlay veth").await?;
        }
        self.converge_link(seg, &port, node.underlay.mtu, Some(&[]))
            .await?;
        self.converge_link(
            &nl,
            dev,
            node.underlay.mtu,
            Some(&[node.underlay.address.into()]),
        )
        .await?;
        // As for an underlay link: xdp mode redirects into the node's end.
        self.ensure_napi([(&nl, dev.as_str()), (seg, port.as_str())])
    }

    /// NAPI on both ends of a veth pair, for good: see ethtool.rs for why it never changes
    /// afterwards. The kernel starts NAPI (and marks the peer as an XDP redirect target) only for
    /// a veth that is up when GRO is turned on, so this comes after both ends are up.
    fn ensure_napi(&mut self, ends: [(&Netlink, &str); 2]) -> Result<()> {
        for (nl, dev) in ends {
            if ethtool::set_gro(nl.netns(), dev, true)
                .with_context(|| format!("turning GRO on for {dev}"))?
            {
                self.changed(format!(
                    "turned GRO on for {dev} in netns {}",
                    nl.netns().label()
                ));
            }
        }
        Ok(())
    }

    /// A simulated node in no underlay link (a one-node cluster, or a node whose peer left the
    /// config) still has its underlay address and VXLAN device, on a bridge without ports: a
    /// device that holds an address and reaches nothing (kernels without the dummy module have
    /// bridges). Its old veth end goes now, not whenever the kernel finishes tearing down the peer's
    /// namespace: until then it would look like a way to the peer.
    async fn ensure_unlinked_underlay(&mut self, node: &NodeConfig) -> Result<()> {
        let nl = Netlink::open(&self.cluster.node_netns(node))?;
        let dev = &node.underlay.device;
        if self
            .existing_link(&nl, true, dev, "bridge")
            .await?
            .is_none()
        {
            nl.create_bridge(dev, None).await?;
            self.mark_created(&nl, dev, "underlay (a portless bridge: no underlay link)")
                .await?;
        }
        self.converge_link(
            &nl,
            dev,
            node.underlay.mtu,
            Some(&[node.underlay.address.into()]),
        )
        .await
    }

    /// A real node's underlay is the user's device: fastpath checks it and changes nothing.
    async fn check_real_underlay(&mut self, node: &NodeConfig) -> Result<()> {
        let nl = Netlink::open(&self.cluster.node_netns(node))?;
        let dev = &node.underlay.device;
        let Some(view) = nl.link_view(dev).await? else {
            bail!(
                "node '{}': underlay.device '{dev}' does not exist",
                node.name
            );
        };
        let addresses = nl.ipv4_addresses(view.index).await?;
        if !addresses.contains(&node.underlay.address) {
            bail!(
                "node '{}': underlay.device '{dev}' does not have underlay.address {} (it has {}); \
                 fastpath does not configure devices it did not create",
                node.name,
                node.underlay.address,
                list(&addresses)
            );
        }
        if view.mtu < node.underlay.mtu {
            bail!(
                "node '{}': underlay.device '{dev}' has MTU {}, below underlay.mtu {}",
                node.name,
                view.mtu,
                node.underlay.mtu
            );
        }
        Ok(())
    }

    async fn ensure_bridge(&mut self, node: &NodeConfig) -> Result<()> {
        let nl = Netlink::open(&self.cluster.node_netns(node))?;
        let owned = self.cluster.owns_node_netns(node);
        let mac = config::node_bridge_mac(node);
        // A device of the bridge's name that is fastpath's but no bridge goes first.
        self.existing_link(&nl, owned, &node.bridge, "bridge")
            .await?;
        let alias = self.cluster.ownership.device_alias();
        let bridge = PodBridge {
            nl: &nl,
            name: &node.bridge,
            mac,
            alias: &alias,
        };
        let mut changes = Vec::new();
        let view = bridge.ensure(&mut changes).await;
        for change in changes {
            self.changed(change);
        }
        if view?.mac != Some(mac) {
            nl.set_mac(&node.bridge, mac).await?;
            self.changed(format!(
                "set MAC of {} in netns {} to {mac}",
                node.bridge,
                nl.netns().label(),
            ));
        }
        let gateway = node
            .pod_cidr
            .zip(config::node_gateway(node))
            .map(|(cidr, gateway)| {
                IpNet::V4(Ipv4Net::new(gateway, cidr.prefix_len()).expect("valid prefix"))
            });
        let gateway6 = node
            .pod_cidr6
            .zip(config::node_gateway6(node))
            .map(|(cidr, gateway)| {
                IpNet::V6(Ipv6Net::new(gateway, cidr.prefix_len()).expect("valid prefix"))
            });
        let addresses: Vec<IpNet> = gateway.into_iter().chain(gateway6).collect();
        self.converge_link(
            &nl,
            &node.bridge,
            config::node_pod_mtu(node),
            Some(&addresses),
        )
        .await
    }

    async fn ensure_vxlan(&mut self, node: &NodeConfig) -> Result<()> {
        let nl = Netlink::open(&self.cluster.node_netns(node))?;
        let owned = self.cluster.owns_node_netns(node);
        let vx = &self.cluster.config.vxlan;
        let spec = VxlanSpec {
            vni: vx.vni,
            local: node.underlay.address.addr(),
            port: vx.port,
            underlay_index: nl.index(&node.underlay.device).await?,
        };
        let existing = self.existing_link(&nl, owned, &vx.device, "vxlan").await?;
        let matches = existing
            .as_ref()
            .and_then(|v| v.vxlan.as_ref())
            .is_some_and(|v| {
                v.vni == Some(spec.vni)
                    && v.local == Some(spec.local)
                    && v.port == Some(spec.port)
                    && v.underlay_index == Some(spec.underlay_index)
                    && v.learning == Some(false)
            });
        if existing.is_some() && !matches {
            // VXLAN id, port and addresses cannot be changed in place.
            nl.delete_link(&vx.device).await?;
            self.changed(format!(
                "removed {} in netns {}: its VXLAN settings differed from the config",
                vx.device,
                nl.netns().label()
            ));
        }
        if !matches {
            nl.create_vxlan(&vx.device, &spec)
                .await
                .map_err(|e| match e {
                    crate::error::NetlinkError::Unsupported { .. } => {
                        anyhow::anyhow!("{e}: this kernel lacks VXLAN (CONFIG_VXLAN)")
                    }
                    e => e.into(),
                })?;
            self.mark_created(&nl, &vx.device, "VXLAN device").await?;
            link_state::skip_dad(&nl, &vx.device)?;
        }
        let mac = Mac::vtep(spec.local);
        if nl.link_view(&vx.device).await?.and_then(|v| v.mac) != Some(mac) {
            nl.set_mac(&vx.device, mac).await?;
            self.changed(format!("set MAC of {} to {}", vx.device, mac));
        }
        // The VXLAN device carries the pod CIDRs' network addresses, as flannel does: they are
        // the next hops peers route this node's pods through.
        let addresses = vxlan_addresses(node);
        self.converge_link(
            &nl,
            &vx.device,
            node.underlay.mtu - VXLAN_OVERHEAD,
            Some(&addresses),
        )
        .await
    }

    /// Route, neighbour and FDB entry for every peer: pods there are reached through the VXLAN
    /// device, with no multicast learning.
    async fn ensure_peers(&mut self, node: &NodeConfig) -> Result<()> {
        let nl = Netlink::open(&self.cluster.node_netns(node))?;
        let dev = &self.cluster.config.vxlan.device;
        let peers = self.cluster.config.vxlan_peers_of(node);
        let index = nl.index(dev).await?;
        let routes = nl.routes(index).await?;
        let wanted: Vec<(IpNet, IpAddr)> = peers
            .iter()
            .flat_map(|p| overlay_routes(p.pod_cidr, p.pod_cidr6))
            .collect();
        // The kernel's own route to the device's IPv6 address (an address's prefix route).
        let own = vxlan_addresses(node);
        for (dst, gateway) in &routes {
            let kernels = gateway.is_none() && own.contains(dst);
            if !kernels && !wanted.iter().any(|(cidr, _)| cidr == dst) {
                nl.del_route(*dst, dev).await?;
                self.changed(format!(
                    "removed route to {dst} via {dev} (no such peer in the config)"
                ));
            }
        }
        // A peer that went leaves nothing behind: its neighbour entry, its FDB entry.
        for entry in nl.vxlan_entries(dev).await? {
            let what = match &entry {
                VxlanEntry::Neighbour { ip, mac, .. }
                    if !peers.iter().any(|p| {
                        p.vtep_mac == *mac
                            && overlay_routes(p.pod_cidr, p.pod_cidr6)
                                .iter()
                                .any(|(_, next_hop)| next_hop == ip)
                    }) =>
                {
                    format!("neighbour {ip} → {mac}")
                }
                VxlanEntry::Fdb { mac, dst, .. }
                    if !peers
                        .iter()
                        .any(|p| p.vtep_mac == *mac && p.underlay_ip == *dst) =>
                {
                    format!("FDB entry {mac} → {dst}")
                }
                _ => continue,
            };
            nl.del_vxlan_entry(dev, entry).await?;
            self.changed(format!(
                "removed {what} from {dev} in netns {} (no such peer in the config)",
                nl.netns().label()
            ));
        }
        for peer in &peers {
            nl.replace_vxlan_fdb(dev, peer.vtep_mac, peer.underlay_ip)
                .await?;
            for (cidr, next_hop) in overlay_routes(peer.pod_cidr, peer.pod_cidr6) {
                nl.replace_neighbour(dev, next_hop, peer.vtep_mac).await?;
                if !routes.contains(&(cidr, Some(next_hop))) {
                    nl.replace_route(cidr, Some(next_hop), dev, true).await?;
                    self.changed(format!(
                        "routed {cidr} (node {}) via {dev} to {} in netns {}",
                        peer.name,
                        peer.underlay_ip,
                        nl.netns().label()
                    ));
                }
            }
        }
        Ok(())
    }

    /// The node's nftables guard (see `guard`), in every mode: in kernel mode it is the only
    /// check there is.
    fn ensure_guard(&mut self, node: &NodeConfig) -> Result<()> {
        let config = &self.cluster.config;
        let netns = self.cluster.node_netns(node);
        let peers = config.vxlan_peers_of(node);
        let spec = Guard {
            table: guard::table_name(self.cluster.prefix()),
            underlay_device: node.underlay.device.clone(),
            underlay_ip: node.underlay.address.addr(),
            vxlan_port: config.vxlan.port,
            vni: config.vxlan.vni,
            vxlan_device: config.vxlan.device.clone(),
            pod_cidr: node.pod_cidr,
            pod_cidr6: node.pod_cidr6,
            peers: peers.iter().map(|p| p.underlay_ip).collect(),
            peer_cidrs: peers.iter().filter_map(|p| p.pod_cidr).collect(),
            peer_cidrs6: peers.iter().filter_map(|p| p.pod_cidr6).collect(),
        };
        if guard::ensure(&netns, &spec)
            .with_context(|| format!("node '{}': kernel-path guard", node.name))?
        {
            self.changed(format!(
                "installed the kernel-path guard (nftables tables inet and netdev {}) in netns {}",
                spec.table,
                netns.label()
            ));
        }
        Ok(())
    }

    async fn ensure_pod(&mut self, node: &NodeConfig, pod: &PodConfig) -> Result<()> {
        let node_ns = self.cluster.node_netns(node);
        let pod_ns = self.cluster.pod_netns(node, pod);
        self.ensure_netns(&pod_ns, Some(&node.name)).await?;
        let (nl_node, nl_pod) = (Netlink::open(&node_ns)?, Netlink::open(&pod_ns)?);
        let host_end = Cluster::pod_veth(pod);
        let owned = self.cluster.owns_node_netns(node);
        let host = self
            .existing_link(&nl_node, owned, &host_end, "veth")
            .await?;
        let inside = self
            .existing_link(&nl_pod, true, POD_IFNAME, "veth")
            .await?;
        let created = host.is_none() || inside.is_none();
        let alias = self.cluster.ownership.device_alias();
        let bridge = nl_node
            .link_view(&node.bridge)
            .await?
            .with_context(|| format!("bridge {} vanished", node.bridge))?;
        let veth = PodVeth {
            host: &nl_node,
            host_veth: &host_end,
            alias: &alias,
            bridge: &bridge,
            pod: &nl_pod,
            ifname: POD_IFNAME,
            mtu: config::node_pod_mtu(node),
            napi: true,
        };
        let default = |any: IpAddr| IpNet::new(any, 0).expect("/0");
        let mut routes = Vec::new();
        if let Some(gateway) = config::node_gateway(node) {
            routes.push((default(Ipv4Addr::UNSPECIFIED.into()), gateway.into()));
        }
        if let Some(gateway6) = config::node_gateway6(node) {
            routes.push((default(Ipv6Addr::UNSPECIFIED.into()), gateway6.into()));
        }
        let address = node
            .pod_cidr
            .zip(pod.address)
            .map(|(cidr, address)| Ipv4Net::new(address, cidr.prefix_len()).expect("valid prefix"));
        let address6 = node
            .pod_cidr6
            .zip(pod.address6)
            .map(|(cidr, address)| Ipv6Net::new(address, cidr.prefix_len()).expect("valid prefix"));
        let addressing = PodAddressing {
            address,
            address6,
            routes,
        };
        // Every change is reported, also those made before a step fails.
        let mut changes = Vec::new();
        let done = async {
            if created {
                nl_node.delete_link(&host_end).await?;
                nl_pod.delete_link(POD_IFNAME).await?;
                veth.create(Some(addressing.mac()), &mut changes).await?;
                changes.push(format!(
                    "created veth for pod {} {host_end} in netns {}",
                    pod.name,
                    nl_node.netns().label()
                ));
            } else {
                veth.converge_existing(&mut changes).await?;
            }
            let mac_changed = veth.configure_pod(&addressing, &mut changes).await?;
            // Neighbours that knew the pod's address at another MAC (from before an upgrade that
            // made MACs follow addresses) learn this one now, not when their entry times out.
            veth.open(created || mac_changed, &mut changes).await
        }
        .await;
        for change in changes {
            self.changed(change);
        }
        done.with_context(|| format!("pod {}", pod.name))
    }

    /// Pod veths on the node whose pod is gone from the config.
    async fn remove_stale_pod_veths(&mut self, node: &NodeConfig) -> Result<()> {
        let nl = Netlink::open(&self.cluster.node_netns(node))?;
        let owned = self.cluster.owns_node_netns(node);
        let wanted: Vec<String> = node.pods.iter().map(Cluster::pod_veth).collect();
        for link in nl.links().await? {
            let ours = link.name.starts_with(config::POD_VETH_PREFIX)
                && link.kind.as_deref() == Some("veth")
                && link.name != node.underlay.device
                && self.cluster.ownership.may_modify(owned, &link)
                && link.alias.as_deref() == Some(self.cluster.ownership.device_alias().as_str());
            if ours && !wanted.contains(&link.name) {
                nl.delete_link(&link.name).await?;
                self.changed(format!(
                    "removed {} (its pod is no longer in the config)",
                    link.name
                ));
            }
        }
        Ok(())
    }
}

/// Records fastpath's ownership of `netns` (for `node`), then creates it: an interrupted `up` leaves a record
/// without a namespace, never a namespace of ours without a record.
fn claim_and_create(ownership: &Ownership, netns: &Netns, node: Option<&str>) -> Result<()> {
    let name = netns
        .name()
        .expect("fastpath creates named namespaces only");
    ownership
        .claim_netns(name, node)
        .with_context(|| format!("recording ownership of netns {name}"))?;
    Ok(netns.create()?)
}

/// The routes to a node's pods over the overlay, by family: the pod CIDR, and the next hop peers
/// route it through, its network address (which the node's VXLAN device carries).
fn overlay_routes(pod_cidr: Option<Ipv4Net>, pod_cidr6: Option<Ipv6Net>) -> Vec<(IpNet, IpAddr)> {
    let v4 = pod_cidr.map(|cidr| (IpNet::V4(cidr), IpAddr::V4(cidr.network())));
    let v6 = pod_cidr6.map(|cidr| (IpNet::V6(cidr), IpAddr::V6(cidr.network())));
    v4.into_iter().chain(v6).collect()
}

/// The addresses of a node's VXLAN device: its next hops (host prefixes).
fn vxlan_addresses(node: &NodeConfig) -> Vec<IpNet> {
    overlay_routes(node.pod_cidr, node.pod_cidr6)
        .into_iter()
        .map(|(_, next_hop)| IpNet::from(next_hop))
        .collect()
}

fn list(addresses: &[Ipv4Net]) -> String {
    if addresses.is_empty() {
        return "none".into();
    }
    addresses
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
