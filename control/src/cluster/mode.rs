//! The datapath part of `up`: keeps each node's pinned maps true (node settings, one entry per
//! pod, one per peer) and its programs attached as its mode says: xdp_pod or tc_pod on every pod's
//! veth, and tc_underlay (VXLAN decapsulation) on the underlay device in both eBPF modes. A mode
//! switch never leaves a pod without a path: the new program is attached before the old one is
//! detached, and the offloads xdp mode needs are set before its program attaches and restored
//! only after it is gone.

use anyhow::{Context as _, Result};

use super::{Cluster, POD_IFNAME, up::Reconciler};
use crate::{
    config::{self, Mode, NodeConfig},
    datapath::{self, EndpointEntry, Hook, Maps, OverlaySettings, Owner, PeerEntry, PinnedAttach},
    ethtool,
    mac::Mac,
    netlink::Netlink,
};

impl Reconciler<'_> {
    pub(super) async fn ensure_mode(&mut self, node: &NodeConfig) -> Result<()> {
        let cluster = self.cluster;
        let mode = cluster.mode_of(node);
        let dir = cluster.pin_dir(node);
        let node_ns = cluster.node_netns(node);
        let pods: Vec<_> = node
            .pods
            .iter()
            .map(|p| (p, Cluster::pod_veth(p), cluster.pod_netns(node, p)))
            .collect();

        let nl = Netlink::open(&node_ns)?;
        let underlay = &node.underlay.device;
        // Checked or created by the steps before; were it missing, the node would get no overlay.
        let underlay_index = nl.link_view(underlay).await?.map(|l| l.index);
        let wanted = match mode {
            Mode::Kernel => None,
            Mode::Xdp => Some(Hook::Xdp),
            Mode::Tc => Some(Hook::Tc),
        };
        // Pinned links on devices that are no longer pods, or of a hook this mode does not use,
        // go after the wanted ones are in place (below); devices of removed pods are gone anyway.
        // Held until the end: joined CNI networks rewrite the same maps (see datapath::lock_pins).
        let mut _pins_lock = None;
        if let Some(hook) = wanted {
            let pinned = datapath::ensure_pinned(&dir)
                .with_context(|| format!("loading the fast path for node '{}'", node.name))?;
            if pinned.loaded {
                self.changed(format!(
                    "loaded and pinned the fast-path programs of node {}",
                    node.name
                ));
            }
            if !pinned.replaced_maps.is_empty() {
                self.changed(format!(
                    "node {}: maps pinned with another layout ({}) replaced by this build's; their entries are written again",
                    node.name,
                    pinned.replaced_maps.join(", ")
                ));
            }
            _pins_lock = Some(datapath::lock_pins(&dir)?);
            if datapath::clear_lapsed_request(&dir)? {
                log::info!(
                    "node {}: cleared the request of a monitor that died",
                    node.name
                );
            }
            let mut maps = Maps::open(&dir)?;
            let bridge_mac = nl
                .link_view(&node.bridge)
                .await?
                .and_then(|b| b.mac)
                .with_context(|| format!("bridge {} has no MAC", node.bridge))?;
            let overlay = underlay_index.map(|ifindex| OverlaySettings {
                vtep_mac: Mac::vtep(node.underlay.address.addr()),
                vni: cluster.config.vxlan.vni,
                port: cluster.config.vxlan.port,
                underlay_ifindex: ifindex,
                underlay_ip: node.underlay.address.addr(),
                underlay_mtu: node.underlay.mtu,
            });
            maps.set_node(
                bridge_mac,
                config::node_gateway(node),
                config::node_gateway6(node),
                overlay.as_ref(),
            )?;
            let peers: Vec<PeerEntry> = cluster
                .config
                .vxlan_peers_of(node)
                .into_iter()
                .map(|p| PeerEntry {
                    pod_cidr: p.pod_cidr,
                    pod_cidr6: p.pod_cidr6,
                    underlay_ip: p.underlay_ip,
                    vtep_mac: p.vtep_mac,
                })
                .collect();
            let mut entries = Vec::new();
            for (pod, veth, _) in &pods {
                entries.push(EndpointEntry {
                    ip: pod.address,
                    ip6: pod.address6,
                    ifindex: nl.index(veth).await?,
                    // `ensure_pod`, a step before, gave the pod this MAC.
                    mac: pod.mac(),
                });
            }
            let n = maps.sync_peers(&peers)?
                + maps.sync_endpoints(
                    &node_ns,
                    Owner::node(node_ns.label()),
                    &entries,
                    underlay_index,
                )?;
            if n > 0 {
                self.changed(format!(
                    "updated {n} fast-path map entries of node {}",
                    node.name
                ));
            }
            if hook == Hook::Xdp {
                // Pods compute their own checksums, and write their VLAN tags into the frame,
                // before any frame of theirs becomes an XDP frame.
                for (pod, _, pod_ns) in &pods {
                    self.set_pod_offloads(pod_ns, &pod.name, false)?;
                }
            }
            // Decapsulation first: a peer may start sending once this node's pods do.
            let targets = underlay_index
                .map(|_| (Hook::TcUnderlay, underlay))
                .into_iter()
                .chain(pods.iter().map(|(_, veth, _)| (hook, veth)));
            for (hook, dev) in targets {
                let done = match datapath::attach_pinned(&dir, hook, &node_ns, dev)? {
                    PinnedAttach::Kept => continue,
                    PinnedAttach::Attached => "attached",
                    PinnedAttach::Replaced => "replaced an older build of",
                };
                self.changed(format!(
                    "{done} {} on {dev} (node {})",
                    hook.program(),
                    node.name
                ));
            }
        }
        // Links of other hooks, of devices that are no longer pods, and of devices recreated
        // since (another ifindex under the same name: that link is defunct). Links on devices
        // that were never this node's pods are a joined CNI network's, and stay.
        let mut current = Vec::new();
        for (_, veth, _) in &pods {
            if let Some(link) = nl.link_view(veth).await? {
                current.push((veth.clone(), link.index));
            }
        }
        for link in datapath::pinned_links(&dir)? {
            if link.hook != Hook::TcUnderlay && !is_node_device(&link.dev, underlay) {
                continue;
            }
            let keep = if link.hook == Hook::TcUnderlay {
                wanted.is_some() && link.dev == *underlay && Some(link.ifindex) == underlay_index
            } else {
                Some(link.hook) == wanted && current.contains(&(link.dev.clone(), link.ifindex))
            };
            if !keep && datapath::detach_pinned(&dir, &link)? {
                self.changed(format!(
                    "detached {} from {} (ifindex {}, node {})",
                    link.hook.program(),
                    link.dev,
                    link.ifindex,
                    node.name
                ));
            }
        }
        if wanted != Some(Hook::Xdp) {
            for (pod, _, pod_ns) in &pods {
                self.set_pod_offloads(pod_ns, &pod.name, true)?;
            }
        }
        Ok(())
    }

    /// The offloads whose state an XDP frame loses: TX checksums, VLAN tag insertion.
    fn set_pod_offloads(
        &mut self,
        pod_ns: &crate::netns::Netns,
        pod: &str,
        on: bool,
    ) -> Result<()> {
        let state = if on { "on" } else { "off (xdp mode)" };
        if ethtool::set_tx_checksum(pod_ns, POD_IFNAME, on)
            .with_context(|| format!("setting TX checksum offload of {POD_IFNAME} in pod {pod}"))?
        {
            self.changed(format!(
                "pod {pod}: {POD_IFNAME} TX checksum offload {state}"
            ));
        }
        if ethtool::set_vlan_tag_insertion(pod_ns, POD_IFNAME, on)
            .with_context(|| format!("setting VLAN tag insertion of {POD_IFNAME} in pod {pod}"))?
        {
            self.changed(format!(
                "pod {pod}: {POD_IFNAME} VLAN tag insertion {state}"
            ));
        }
        Ok(())
    }
}

/// True for the devices whose program links a node keeps: its pods' veths and its underlay
/// device. The other links pinned with its programs are a joined CNI network's (see `cni`).
/// (Map entries say whose they are themselves: `datapath::Owner`.)
fn is_node_device(name: &str, underlay: &str) -> bool {
    name.starts_with(config::POD_VETH_PREFIX) || name == underlay
}
