//! The devices, addresses and routes of an attachment: made by the plugin in standalone mode,
//! found in the previous plugin's result in chained mode, and verified by CHECK.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Context as _, Result, bail};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::{
    node::JoinedNode,
    spec::{CniResult, Interface, IpConfig, Route},
};
use crate::{
    config, fnv,
    mac::Mac,
    netlink::{LinkView, Netlink},
    netns::Netns,
    pod_bridge::PodBridge,
    pod_veth::{PodAddressing, PodVeth},
};

/// What the fast path needs to know about an attachment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub host_veth: String,
    pub address: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// The IPv6 address and gateway of a dual-stack attachment.
    pub address6: Option<Ipv6Net>,
    pub gateway6: Option<Ipv6Addr>,
    pub container_mac: Mac,
    /// The bridge the host veth is a port of, and its MAC (the pods' gateway MAC).
    pub bridge: String,
    pub bridge_mac: Mac,
}

/// The host-side veth of an attachment in standalone mode: derived from the network, container
/// and interface, so DEL and GC find it with or without a record.
pub fn host_veth_name(network: &str, container_id: &str, ifname: &str) -> String {
    let hash = fnv::fnv1a(&[network, "/", container_id, "/", ifname]);
    format!("fpc{:010x}", hash & 0xff_ffff_ffff)
}

/// The start of the alias of every device this plugin makes for `network`.
pub fn network_alias(network: &str) -> String {
    format!("fastpath-cni {network}")
}

/// The alias that marks a device as made by this plugin for this attachment.
pub fn veth_alias(network: &str, container_id: &str, ifname: &str) -> String {
    format!("{} {container_id} {ifname}", network_alias(network))
}

/// The IPv4 address (with gateway) the IPAM result gives the attachment.
pub fn ipv4_of(result: &CniResult, interface: Option<usize>) -> Result<(Ipv4Net, Ipv4Addr)> {
    let ip = result
        .ips
        .iter()
        .filter(|ip| interface.is_none() || ip.interface.is_none() || ip.interface == interface)
        .find_map(|ip| ip.ipv4().map(|net| (net, ip.ipv4_gateway())))
        .context("the IPAM result has no IPv4 address (fastpath needs one: the pod's MAC and the gateway entry come from it; IPv6 comes beside it)")?;
    let gateway = match ip.1 {
        Some(g) => g,
        None => {
            ip.0.hosts()
                .next()
                .context("the IPAM subnet has no host address for a gateway")?
        }
    };
    Ok((ip.0, gateway))
}

/// The IPv6 address (with gateway) the IPAM result gives the attachment, when it gives one (a
/// second range, dual stack). Without a gateway in the result, the prefix's first address.
pub fn ipv6_of(result: &CniResult, interface: Option<usize>) -> Option<(Ipv6Net, Ipv6Addr)> {
    let (address, gateway) = result
        .ips
        .iter()
        .filter(|ip| interface.is_none() || ip.interface.is_none() || ip.interface == interface)
        .find_map(|ip| ip.ipv6().map(|net| (net, ip.ipv6_gateway())))?;
    Some((
        address,
        gateway.unwrap_or_else(|| config::first_host6(address)),
    ))
}

pub struct Standalone<'a> {
    pub network: &'a str,
    pub container_id: &'a str,
    pub ifname: &'a str,
    pub container: &'a Netns,
    pub bridge: &'a str,
    pub mtu: u32,
    pub host_veth: &'a str,
    /// The fastpath node the network joined: its bridge is used as it is.
    pub node: Option<&'a JoinedNode>,
}

/// The netlink connections of a standalone attachment, and the bridge its veth is a port of.
pub struct StandaloneLinks {
    host: Netlink,
    inside: Netlink,
    bridge: LinkView,
    alias: String,
}

impl Standalone<'_> {
    /// Makes the bridge if needed, and the veth pair into the container (its MAC derived from the
    /// address IPAM gave), both ends down.
    pub async fn create(&self, ipam: &CniResult) -> Result<StandaloneLinks> {
        let (address, _) = ipv4_of(ipam, None)?;
        let host = Netlink::open(&Netns::host())?;
        let inside = Netlink::open(self.container)?;
        let bridge = self.ensure_bridge(&host).await?;
        let links = StandaloneLinks {
            host,
            inside,
            bridge,
            alias: veth_alias(self.network, self.container_id, self.ifname),
        };
        self.veth(&links)
            .create(Some(Mac::pod(address.addr())), &mut Vec::new())
            .await?;
        Ok(links)
    }

    fn veth<'l>(&'l self, links: &'l StandaloneLinks) -> PodVeth<'l> {
        PodVeth {
            host: &links.host,
            host_veth: self.host_veth,
            alias: &links.alias,
            bridge: &links.bridge,
            pod: &links.inside,
            ifname: self.ifname,
            mtu: self.mtu,
            napi: self.node.is_some(),
        }
    }

    /// Gives the bridge the gateway address and the container its address, MAC and routes;
    /// returns the attachment and the result to print.
    pub async fn configure(
        &self,
        links: &StandaloneLinks,
        ipam: &CniResult,
    ) -> Result<(Attachment, CniResult)> {
        let (address, gateway) = ipv4_of(ipam, None)?;
        let v6 = ipv6_of(ipam, None);
        if self.node.is_none() {
            let gateways = std::iter::once((IpAddr::from(gateway), address.prefix_len()))
                .chain(v6.map(|(a, g)| (IpAddr::from(g), a.prefix_len())));
            for (gateway, prefix_len) in gateways {
                links
                    .host
                    .add_address(self.bridge, gateway, prefix_len)
                    .await
                    .with_context(|| format!("gateway {gateway} on bridge {}", self.bridge))?;
            }
        }
        let mut routes = Vec::new();
        for route in &ipam.routes {
            let Ok(dst) = route.dst.parse::<IpNet>() else {
                continue;
            };
            let gw = match (&route.gw, dst, v6) {
                (Some(gw), ..) => gw
                    .parse::<IpAddr>()
                    .ok()
                    .filter(|gw| gw.is_ipv4() == dst.addr().is_ipv4())
                    .with_context(|| {
                        format!("route to {dst}: gateway '{gw}' is not an address of its family")
                    })?,
                (None, IpNet::V4(_), _) => gateway.into(),
                (None, IpNet::V6(_), Some((_, gateway6))) => gateway6.into(),
                // An IPv6 route without an IPv6 address has nowhere to go.
                (None, IpNet::V6(_), None) => continue,
            };
            routes.push((dst, gw));
        }
        let addressing = PodAddressing {
            address: Some(address),
            address6: v6.map(|(a, _)| a),
            routes,
        };
        self.veth(links)
            .configure_pod(&addressing, &mut Vec::new())
            .await?;
        let container_mac = addressing.mac();
        let bridge_mac = links
            .bridge
            .mac
            .with_context(|| format!("bridge {} has no MAC", self.bridge))?;
        let host_mac = links
            .host
            .link_view(self.host_veth)
            .await?
            .and_then(|l| l.mac);
        let result = CniResult {
            cni_version: String::new(),
            interfaces: vec![
                Interface {
                    name: self.bridge.to_string(),
                    mac: Some(bridge_mac.to_string()),
                    ..Interface::default()
                },
                Interface {
                    name: self.host_veth.to_string(),
                    mac: host_mac.map(|m| m.to_string()),
                    ..Interface::default()
                },
                Interface {
                    name: self.ifname.to_string(),
                    mac: Some(container_mac.to_string()),
                    mtu: Some(self.mtu),
                    sandbox: Some(self.container.label().to_string()),
                },
            ],
            ips: std::iter::once((address.to_string(), gateway.to_string()))
                .chain(v6.map(|(a, g)| (a.to_string(), g.to_string())))
                .map(|(address, gateway)| IpConfig {
                    address,
                    gateway: Some(gateway),
                    interface: Some(2),
                })
                .collect(),
            routes: addressing
                .routes
                .iter()
                .map(|(dst, gw)| Route {
                    dst: dst.to_string(),
                    gw: Some(gw.to_string()),
                })
                .collect(),
            dns: ipam.dns.clone(),
        };
        Ok((
            Attachment {
                host_veth: self.host_veth.to_string(),
                address,
                gateway,
                address6: v6.map(|(a, _)| a),
                gateway6: v6.map(|(_, g)| g),
                container_mac,
                bridge: self.bridge.to_string(),
                bridge_mac,
            },
            result,
        ))
    }

    /// Brings the host end of the attachment up, once the fast path holds its entry and checks
    /// what it sends, and announces its address: a container re-created with it (a runtime's DEL
    /// and ADD on a live namespace) has the same MAC, and this covers neighbours that knew the
    /// address at another.
    pub async fn open(&self, links: &StandaloneLinks) -> Result<()> {
        self.veth(links).open(true, &mut Vec::new()).await
    }

    /// The network's bridge, up; created when missing (its gateway address comes with IPAM). A
    /// joined node's bridge is `fastpath up`'s to make and configure: it must be there.
    async fn ensure_bridge(&self, host: &Netlink) -> Result<LinkView> {
        if let Some(node) = self.node {
            return match host.link_view(self.bridge).await? {
                Some(link) if link.kind.as_deref() == Some("bridge") => Ok(link),
                _ => bail!(
                    "node '{}' has no bridge {} here: bring the node up (`fastpath up`) before its pods",
                    node.name,
                    self.bridge
                ),
            };
        }
        let bridge = PodBridge {
            nl: host,
            name: self.bridge,
            mac: Mac::cni_bridge(self.network),
            alias: &network_alias(self.network),
        };
        bridge.ensure(&mut Vec::new()).await.with_context(|| {
            format!(
                "the network's bridge (\"bridge\": \"{}\"; name another there)",
                self.bridge
            )
        })
    }
}

/// Deletes the standalone host veth of an attachment (its peer in the container goes with it), if
/// it is there and is this attachment's ([`check_veth`]).
pub async fn delete_veth(host: &Netlink, host_veth: &str, alias: &str) -> Result<()> {
    if check_veth(host, host_veth, alias).await? {
        host.delete_link(host_veth).await?;
    }
    Ok(())
}

/// Whether the standalone host veth of an attachment is there and may be deleted: it carries
/// this attachment's alias, or no alias at all (an ADD killed between creating the veth and
/// labelling it; the name is derived from this attachment). A device of the same name with
/// another alias is not ours: an error, and it is left alone.
pub async fn check_veth(host: &Netlink, host_veth: &str, alias: &str) -> Result<bool> {
    match host.link_view(host_veth).await? {
        Some(link) if link.alias.as_deref().is_none_or(|a| a == alias) => Ok(true),
        Some(link) => bail!(
            "device {host_veth} exists but is not this attachment's (alias {:?}); left alone",
            link.alias
        ),
        None => Ok(false),
    }
}

/// Takes the host veth of a chained attachment down, if it is still there.
pub async fn take_down(host: &Netlink, host_veth: &str) -> Result<()> {
    if host.link_view(host_veth).await?.is_some_and(|l| l.up) {
        host.set_down(host_veth).await?;
    }
    Ok(())
}

/// In a chain after the `bridge` plugin: the host veth, bridge, address and MACs its result
/// names for this container's interface.
pub async fn find_chained(prev: &CniResult, ifname: &str) -> Result<Attachment> {
    let container = prev
        .interfaces
        .iter()
        .position(|i| i.name == ifname && i.sandbox.as_deref().is_some_and(|s| !s.is_empty()))
        .with_context(|| format!("prevResult lists no interface '{ifname}' in a sandbox"))?;
    let (address, gateway) = ipv4_of(prev, Some(container))?;
    let v6 = ipv6_of(prev, Some(container));
    let host = Netlink::open(&Netns::host())?;
    let (mut veths, mut bridges) = (Vec::new(), Vec::new());
    for i in prev
        .interfaces
        .iter()
        .filter(|i| i.sandbox.as_deref().is_none_or(str::is_empty))
    {
        if let Some(link) = host.link_view(&i.name).await? {
            match link.kind.as_deref() {
                Some("veth") => veths.push(link),
                Some("bridge") => bridges.push(link),
                _ => {}
            }
        }
    }
    let bridge = bridges.first().context(
        "prevResult names no bridge on this host: fastpath-cni chains after the bridge plugin",
    )?;
    let veth = veths
        .iter()
        .find(|v| v.master == Some(bridge.index))
        .with_context(|| {
            format!(
                "prevResult names no host veth that is a port of bridge {}",
                bridge.name
            )
        })?;
    let container_mac: Mac = match &prev.interfaces[container].mac {
        Some(mac) => mac
            .parse()
            .with_context(|| format!("prevResult's MAC of '{ifname}'"))?,
        None => bail!("prevResult gives no MAC for '{ifname}'"),
    };
    Ok(Attachment {
        host_veth: veth.name.clone(),
        address,
        gateway,
        address6: v6.map(|(a, _)| a),
        gateway6: v6.map(|(_, g)| g),
        container_mac,
        bridge: bridge.name.clone(),
        bridge_mac: bridge
            .mac
            .with_context(|| format!("bridge {} has no MAC", bridge.name))?,
    })
}

/// CHECK's view of the container side: the interface is there, up, holding `addresses` (IPv4,
/// and IPv6 on a dual-stack attachment), and every route of `routes` is there. Returns what is
/// missing.
pub async fn check_container(
    container: &Netns,
    ifname: &str,
    addresses: &[IpNet],
    routes: &[Route],
) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    let inside = Netlink::open(container)?;
    let Some(link) = inside.link_view(ifname).await? else {
        return Ok(vec![format!("interface {ifname} in {}", container.label())]);
    };
    if !link.up {
        missing.push(format!("{ifname} is down"));
    }
    let present = inside.addresses(link.index).await?;
    for address in addresses.iter().filter(|a| !present.contains(a)) {
        missing.push(format!("address {address} on {ifname}"));
    }
    let present = inside.routes(link.index).await?;
    for route in routes {
        let Ok(dst) = route.dst.parse::<IpNet>() else {
            continue;
        };
        let gw: Option<IpAddr> = route.gw.as_deref().and_then(|g| g.parse().ok());
        if !present
            .iter()
            .any(|(d, g)| *d == dst && (gw.is_none() || *g == gw))
        {
            missing.push(format!(
                "route to {dst}{}",
                gw.map(|g| format!(" via {g}")).unwrap_or_default()
            ));
        }
    }
    Ok(missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_veth_names_are_stable_valid_and_distinct() {
        let a = host_veth_name("net", "c1", "eth0");
        assert_eq!(a, host_veth_name("net", "c1", "eth0"));
        assert!(a.len() <= 15 && a.starts_with("fpc"), "{a}");
        assert_ne!(a, host_veth_name("net", "c2", "eth0"));
        assert_ne!(a, host_veth_name("net", "c1", "eth1"));
        assert_ne!(a, host_veth_name("other", "c1", "eth0"));
    }
}
