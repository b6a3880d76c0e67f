//! A pod's veth pair, made and configured one way for every pod: a node's (`fastpath up`) and a
//! standalone CNI network's (`fastpath-cni`). The two differ only in what they say: names, alias,
//! addresses, routes, whether the pod may receive XDP redirects. `up` also corrects a pair that
//! exists, and is told every change; the CNI always makes a new one.

use std::net::IpAddr;

use anyhow::{Context as _, Result};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::{
    ethtool, link_state,
    mac::Mac,
    netlink::{LinkView, Netlink, VethPair},
    pod_link,
};

/// One pod's veth pair: the host end (a port of the pod network's bridge) and the pod's
/// interface.
pub struct PodVeth<'a> {
    /// The namespace of the host end: a node's, or the host's for a CNI network.
    pub host: &'a Netlink,
    pub host_veth: &'a str,
    /// Marks the host end as its maker's.
    pub alias: &'a str,
    /// The bridge the host end is a port of.
    pub bridge: &'a LinkView,
    /// The pod's namespace and its interface there.
    pub pod: &'a Netlink,
    pub ifname: &'a str,
    pub mtu: u32,
    /// NAPI (GRO) on both ends, as a node's pods have it: a node that may run in xdp mode
    /// redirects other pods' frames to this one as XDP frames, which a veth takes only when the
    /// receiving end runs NAPI (see ethtool.rs).
    pub napi: bool,
}

/// The pod's addressing: its IPv4 and IPv6 addresses (one of them, or both; its MAC is derived
/// from the IPv4 one, or the IPv6 one without), and its routes (destination and gateway).
pub struct PodAddressing {
    pub address: Option<Ipv4Net>,
    pub address6: Option<Ipv6Net>,
    pub routes: Vec<(IpNet, IpAddr)>,
}

impl PodAddressing {
    pub fn mac(&self) -> Mac {
        Mac::pod_of(
            self.address.map(|a| a.addr()),
            self.address6.map(|a| a.addr()),
        )
        .expect("a pod has an address")
    }

    fn addresses(&self) -> Vec<IpNet> {
        let v4 = self.address.map(IpNet::V4);
        v4.into_iter().chain(self.address6.map(IpNet::V6)).collect()
    }
}

impl PodVeth<'_> {
    /// Creates the pair, both ends down, in one request (names, the pod's namespace, MTU, the
    /// pod's MAC when known, the bridge), labels the host end and gives the pod's interface its
    /// settings ([`pod_link::harden`]). The settings come now, before anything may hold the RTNL
    /// lock for long (a program attach does): the kernel takes IPv6 ones only with that lock,
    /// and retries the write until it gets it.
    pub async fn create(&self, mac: Option<Mac>, changes: &mut Vec<String>) -> Result<()> {
        self.host
            .create_veth_pair(&VethPair {
                name: self.host_veth,
                master: Some(self.bridge.index),
                mtu: Some(self.mtu),
                peer: self.ifname,
                peer_netns: self.pod.netns(),
                peer_mac: mac,
            })
            .await
            .with_context(|| {
                format!(
                    "creating veth {} with '{}' in {}",
                    self.host_veth,
                    self.ifname,
                    self.pod.netns().label()
                )
            })?;
        self.host.set_alias(self.host_veth, self.alias).await?;
        self.harden(changes)
    }

    /// Corrects an existing pair where it differs: the host end's bridge and MTU, the pod
    /// interface's settings.
    pub async fn converge_existing(&self, changes: &mut Vec<String>) -> Result<()> {
        let host = self.view(self.host, self.host_veth).await?;
        if host.master != Some(self.bridge.index) {
            self.host
                .set_master(self.host_veth, self.bridge.index)
                .await?;
            changes.push(format!(
                "attached {} in netns {} to bridge {}",
                self.host_veth,
                self.host.netns().label(),
                self.bridge.name
            ));
        }
        link_state::converge(self.host, &host, self.mtu, None, false, changes).await?;
        self.harden(changes)
    }

    /// Makes the pod's side what `addressing` says: MAC, loopback up, MTU, exactly its address,
    /// up, GRO, its routes. The host end is not touched: traffic flows once [`PodVeth::open`]
    /// brings it up. Returns whether the MAC changed (its neighbours then need telling).
    pub async fn configure_pod(
        &self,
        addressing: &PodAddressing,
        changes: &mut Vec<String>,
    ) -> Result<bool> {
        let (pod, ifname) = (self.pod, self.ifname);
        let ns = pod.netns().label().to_string();
        let view = self.view(pod, ifname).await?;
        let mac = addressing.mac();
        let mac_changed = view.mac != Some(mac);
        if mac_changed {
            pod.set_mac(ifname, mac).await?;
            changes.push(format!(
                "set MAC of {ifname} in netns {ns} to {mac} (derived from its address)"
            ));
        }
        if pod.link_view("lo").await?.is_some_and(|lo| !lo.up) {
            pod.set_up("lo").await?;
            changes.push(format!("brought lo in netns {ns} up"));
        }
        let addresses = addressing.addresses();
        link_state::converge(pod, &view, self.mtu, Some(&addresses), true, changes).await?;
        if self.napi {
            ensure_gro(pod, ifname, changes)?;
        }
        // Routes through a gateway need the interface up, not its carrier.
        let routes = pod.routes(view.index).await?;
        for &(dst, gateway) in &addressing.routes {
            if !routes.contains(&(dst, Some(gateway))) {
                pod.replace_route(dst, Some(gateway), ifname, false)
                    .await
                    .with_context(|| format!("route to {dst} via {gateway} in {ns}"))?;
                changes.push(format!("set route to {dst} via {gateway} in netns {ns}"));
            }
        }
        Ok(mac_changed)
    }

    /// Brings the host end up: from here the pod's frames flow, so its checks (the fast path's
    /// program and entries, or the node's guard) must be in place. With `announce`, the pod's
    /// address is announced once both ends carry frames (see [`pod_link::announce`]).
    pub async fn open(&self, announce: bool, changes: &mut Vec<String>) -> Result<()> {
        let host = self.view(self.host, self.host_veth).await?;
        if !host.up {
            self.host.set_up(self.host_veth).await?;
            changes.push(format!(
                "brought {} in netns {} up",
                self.host_veth,
                self.host.netns().label()
            ));
        }
        if self.napi {
            ensure_gro(self.host, self.host_veth, changes)?;
        }
        if announce {
            pod_link::announce(self.host, self.host_veth, self.pod, self.ifname)
                .await
                .with_context(|| {
                    format!(
                        "announcing the address of {} in {}",
                        self.ifname,
                        self.pod.netns().label()
                    )
                })?;
        }
        Ok(())
    }

    fn harden(&self, changes: &mut Vec<String>) -> Result<()> {
        let (netns, ifname) = (self.pod.netns(), self.ifname);
        let set = pod_link::harden(netns, ifname)
            .with_context(|| format!("settings of {ifname} in {}", netns.label()))?;
        if !set.is_empty() {
            changes.push(format!("netns {}: set {}", netns.label(), set.join(" ")));
        }
        Ok(())
    }

    async fn view(&self, nl: &Netlink, name: &str) -> Result<LinkView> {
        nl.link_view(name)
            .await?
            .with_context(|| format!("device '{name}' vanished from {}", nl.netns().label()))
    }
}

/// GRO on, for NAPI: the kernel starts NAPI only for a veth that is up when GRO is turned on.
fn ensure_gro(nl: &Netlink, dev: &str, changes: &mut Vec<String>) -> Result<()> {
    if ethtool::set_gro(nl.netns(), dev, true)
        .with_context(|| format!("turning GRO on for {dev} in {}", nl.netns().label()))?
    {
        changes.push(format!(
            "turned GRO on for {dev} in netns {}",
            nl.netns().label()
        ));
    }
    Ok(())
}
