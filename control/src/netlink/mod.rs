//! Typed rtnetlink operations, one method per operation, each bound to one network namespace.
//!
//! A netlink socket stays in the namespace it was opened in, so a [`Netlink`] is opened inside its
//! namespace once and then used from anywhere. Errors name the device and the namespace.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd,
};

use futures::TryStreamExt as _;
use ipnet::{IpNet, Ipv4Net};
use netlink_packet_route::{
    AddressFamily,
    address::{AddressAttribute, AddressFlags, AddressMessage},
    link::{
        BridgePortState, InfoBridgePort, InfoData, InfoPortData, InfoVeth, InfoVxlan,
        LinkAttribute, LinkFlags, LinkInfo, LinkMessage, LinkXdp, MacVlanMode,
    },
    neighbour::{
        NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
    },
    route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteScope},
};
use rtnetlink::{
    Handle, LinkBridge, LinkMacVlan, LinkMessageBuilder, LinkUnspec, LinkVeth, LinkVxlan,
    RouteMessageBuilder,
};
use serde::Serialize;

use crate::{error::NetlinkError, mac::Mac, netns::Netns};

mod tc_filters;

pub use tc_filters::BpfFilter;

/// What fastpath reads back about a link.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct LinkView {
    pub index: u32,
    pub name: String,
    /// "bridge", "veth", "vxlan", … (None for devices without a kind, like lo).
    pub kind: Option<String>,
    pub mtu: u32,
    pub up: bool,
    /// Up with a carrier and its queue in place: a frame sent now goes out. (A device brought up
    /// before its carrier gets its queue from the kernel's link watch a moment after the carrier
    /// comes; until then, what it sends is dropped without an error.)
    pub transmits: bool,
    /// Index of the bridge this link is a port of.
    pub master: Option<u32>,
    /// For a bridge port: whether the bridge takes what arrives on it now. A port is enabled by
    /// the kernel's link watch once its carrier comes, which can be after its peer transmits;
    /// until then the bridge drops what the port receives, without a counter.
    pub bridge_forwarding: Option<bool>,
    pub alias: Option<String>,
    pub mac: Option<Mac>,
    /// VXLAN id, local address, UDP port and underlay ifindex, for VXLAN devices.
    pub vxlan: Option<VxlanView>,
    /// Id of the attached XDP program, as `ip link` shows it.
    pub xdp_program: Option<u32>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct VxlanView {
    pub vni: Option<u32>,
    pub local: Option<Ipv4Addr>,
    pub port: Option<u16>,
    pub underlay_index: Option<u32>,
    pub learning: Option<bool>,
}

impl From<&LinkMessage> for LinkView {
    fn from(msg: &LinkMessage) -> Self {
        let mut view = LinkView {
            index: msg.header.index,
            name: String::new(),
            kind: None,
            mtu: 0,
            up: msg.header.flags.contains(LinkFlags::Up),
            transmits: false,
            master: None,
            bridge_forwarding: None,
            alias: None,
            mac: None,
            vxlan: None,
            xdp_program: None,
        };
        let mut qdisc = None;
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(name) => view.name = name.clone(),
                LinkAttribute::Qdisc(name) => qdisc = Some(name.as_str()),
                LinkAttribute::Mtu(mtu) => view.mtu = *mtu,
                LinkAttribute::Controller(index) => view.master = Some(*index),
                LinkAttribute::IfAlias(alias) => view.alias = Some(alias.clone()),
                LinkAttribute::Address(mac) => view.mac = Mac::try_from(mac.as_slice()).ok(),
                LinkAttribute::Xdp(xdp) => {
                    view.xdp_program = xdp.iter().find_map(|x| match x {
                        LinkXdp::ProgId(id) if *id != 0 => Some(*id),
                        _ => None,
                    })
                }
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        match info {
                            LinkInfo::Kind(kind) => {
                                view.kind = Some(format!("{kind:?}").to_lowercase())
                            }
                            LinkInfo::PortData(InfoPortData::BridgePort(attrs)) => {
                                view.bridge_forwarding = attrs.iter().find_map(|a| match a {
                                    InfoBridgePort::State(state) => {
                                        Some(*state == BridgePortState::Forwarding)
                                    }
                                    _ => None,
                                })
                            }
                            LinkInfo::Data(InfoData::Vxlan(attrs)) => {
                                let mut v = VxlanView {
                                    vni: None,
                                    local: None,
                                    port: None,
                                    underlay_index: None,
                                    learning: None,
                                };
                                for a in attrs {
                                    match a {
                                        InfoVxlan::Id(id) => v.vni = Some(*id),
                                        InfoVxlan::Local(ip) => v.local = Some(*ip),
                                        InfoVxlan::Port(port) => v.port = Some(*port),
                                        InfoVxlan::Link(index) => v.underlay_index = Some(*index),
                                        InfoVxlan::Learning(on) => v.learning = Some(*on),
                                        _ => {}
                                    }
                                }
                                view.vxlan = Some(v);
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        // The kernel's placeholder queue while a device waits for its carrier is "noop".
        view.transmits = msg.header.flags.contains(LinkFlags::Running) && qdisc != Some("noop");
        view
    }
}

/// A veth pair to create: the end here and its peer, in another namespace.
pub struct VethPair<'a> {
    pub name: &'a str,
    /// The bridge (index) the end here joins.
    pub master: Option<u32>,
    /// Of both ends.
    pub mtu: Option<u32>,
    pub peer: &'a str,
    pub peer_netns: &'a Netns,
    pub peer_mac: Option<Mac>,
}

/// A permanent entry on a VXLAN device (see [`Netlink::vxlan_entries`]).
#[derive(Debug)]
pub enum VxlanEntry {
    /// A next hop's MAC: the peer's VTEP.
    Neighbour {
        ip: IpAddr,
        mac: Mac,
        msg: NeighbourMessage,
    },
    /// Where frames for a VTEP's MAC go: its underlay address.
    Fdb {
        mac: Mac,
        dst: Ipv4Addr,
        msg: NeighbourMessage,
    },
}

/// Settings of a VXLAN device fastpath creates.
pub struct VxlanSpec {
    pub vni: u32,
    pub local: Ipv4Addr,
    pub port: u16,
    pub underlay_index: u32,
}

/// The address an address message carries, with its prefix length. IPv6 link-local addresses
/// are the kernel's own (one per interface, from its MAC), not an address anyone configures: they
/// are left out.
fn address_of(msg: &AddressMessage) -> Option<IpNet> {
    let ip = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    // IPv6 messages carry the address as IFA_ADDRESS only.
    let ip = ip.or_else(|| {
        msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })?;
    if let IpAddr::V6(v6) = ip
        && v6.is_unicast_link_local()
    {
        return None;
    }
    IpNet::new(ip, msg.header.prefix_len).ok()
}

/// Whether a route to `dst` is one the kernel makes for itself on every IPv6 interface
/// (link-local and multicast), not one anyone configures.
fn is_kernel_ipv6_route(dst: &IpNet) -> bool {
    match dst {
        IpNet::V6(net) => net.network().is_unicast_link_local() || net.network().is_multicast(),
        IpNet::V4(_) => false,
    }
}

/// A netlink connection inside one network namespace.
pub struct Netlink {
    handle: Handle,
    netns: Netns,
}

/// The kernel's errno from a netlink NACK, if that is what `e` is.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(msg) => Some(-msg.raw_code()),
        _ => None,
    }
}

impl Netlink {
    /// Opens a connection inside `netns`. Needs a tokio runtime: the connection runs as a task.
    pub fn open(netns: &Netns) -> Result<Self, NetlinkError> {
        let (connection, handle, _) = {
            let _inside = netns.enter()?;
            rtnetlink::new_connection().map_err(|source| NetlinkError::Socket {
                netns: netns.label().to_string(),
                source,
            })?
        };
        tokio::spawn(connection);
        Ok(Self {
            handle,
            netns: netns.clone(),
        })
    }

    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    fn request_error(
        &self,
        op: &'static str,
        target: &str,
    ) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
        let target = target.to_string();
        let netns = self.netns.label().to_string();
        move |source| NetlinkError::Request {
            op,
            target,
            netns,
            source: Box::new(source),
        }
    }

    fn not_found(&self, dev: &str) -> NetlinkError {
        NetlinkError::DeviceNotFound {
            dev: dev.to_string(),
            netns: self.netns.label().to_string(),
        }
    }

    /// The link called `name`, or `None` when there is none.
    pub async fn link(&self, name: &str) -> Result<Option<LinkMessage>, NetlinkError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match links.try_next().await {
            Ok(link) => Ok(link),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(self.request_error("look up", name)(e)),
        }
    }

    /// The interface index of `name`, failing with [`NetlinkError::DeviceNotFound`].
    pub async fn index(&self, name: &str) -> Result<u32, NetlinkError> {
        match self.link(name).await? {
            Some(link) => Ok(link.header.index),
            None => Err(self.not_found(name)),
        }
    }

    /// Creates a veth pair `name` (here) and `peer` (in `peer_netns`), both down.
    pub async fn create_veth(
        &self,
        name: &str,
        peer: &str,
        peer_netns: &Netns,
    ) -> Result<(), NetlinkError> {
        self.create_veth_pair(&VethPair {
            name,
            master: None,
            mtu: None,
            peer,
            peer_netns,
            peer_mac: None,
        })
        .await
    }

    /// Creates the veth pair `pair` describes, both ends down, in one request: neither end ever
    /// exists with another MTU, MAC or bridge. (The kernel takes no alias in a creation.)
    pub async fn create_veth_pair(&self, pair: &VethPair<'_>) -> Result<(), NetlinkError> {
        let peer_fd = pair.peer_netns.open()?;
        let mut peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(pair.peer.to_string())
            .setns_by_fd(peer_fd.as_raw_fd());
        let mut host = LinkVeth::new(pair.name, pair.peer);
        if let Some(mac) = pair.peer_mac {
            peer = peer.address(mac.0.to_vec());
        }
        if let Some(mtu) = pair.mtu {
            peer = peer.mtu(mtu);
            host = host.mtu(mtu);
        }
        if let Some(master) = pair.master {
            host = host.controller(master);
        }
        let msg = host
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
            .build();
        match self.handle.link().add(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::EEXIST) => Err(NetlinkError::DeviceExists {
                dev: format!("{}' or '{}", pair.name, pair.peer),
                netns: self.netns.label().to_string(),
            }),
            Err(e) => Err(self.request_error("create veth", pair.name)(e)),
        }
    }

    /// Creates a macvlan device in bridge mode on `parent` (here), straight into `netns`, down.
    pub async fn create_macvlan(
        &self,
        name: &str,
        parent: &str,
        netns: &Netns,
    ) -> Result<(), NetlinkError> {
        let parent_index = self.index(parent).await?;
        let fd = netns.open()?;
        let msg = LinkMacVlan::new(name, parent_index, MacVlanMode::Bridge)
            .setns_by_fd(fd.as_raw_fd())
            .build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(self.request_error("create macvlan", name))
    }

    /// Brings the link with `index` up.
    pub async fn set_up(&self, name: &str) -> Result<(), NetlinkError> {
        let index = self.index(name).await?;
        let msg = LinkUnspec::new_with_index(index).up().build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(self.request_error("bring up", name))
    }

    pub async fn set_down(&self, name: &str) -> Result<(), NetlinkError> {
        let index = self.index(name).await?;
        let msg = LinkUnspec::new_with_index(index).down().build();
        self.set_link(name, "bring down", msg).await
    }

    /// Adds `addr/prefix` to `name`; an address that is already there is left as it is. An IPv6
    /// address skips duplicate address detection: fastpath's configuration is what makes
    /// addresses unique, and an address would otherwise stay unusable ("tentative") for a second
    /// or more after it is added.
    pub async fn add_address(
        &self,
        name: &str,
        addr: IpAddr,
        prefix: u8,
    ) -> Result<(), NetlinkError> {
        let index = self.index(name).await?;
        let mut request = self.handle.address().add(index, addr, prefix);
        if addr.is_ipv6() {
            request
                .message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match request.execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
            Err(e) => Err(self.request_error("add an address to", name)(e)),
        }
    }

    /// Deletes the link `name`; one that is not there is not an error.
    pub async fn delete_link(&self, name: &str) -> Result<(), NetlinkError> {
        let Some(link) = self.link(name).await? else {
            return Ok(());
        };
        match self.handle.link().del(link.header.index).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
            Err(e) => Err(self.request_error("delete", name)(e)),
        }
    }

    /// Every link in the namespace.
    pub async fn links(&self) -> Result<Vec<LinkView>, NetlinkError> {
        let links: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(self.request_error("list links of", self.netns.label()))?;
        Ok(links.iter().map(LinkView::from).collect())
    }

    /// The link called `name`, read back as a [`LinkView`].
    pub async fn link_view(&self, name: &str) -> Result<Option<LinkView>, NetlinkError> {
        Ok(self.link(name).await?.as_ref().map(LinkView::from))
    }

    async fn add_link(&self, name: &str, msg: LinkMessage) -> Result<(), NetlinkError> {
        match self.handle.link().add(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::EEXIST) => Err(NetlinkError::DeviceExists {
                dev: name.to_string(),
                netns: self.netns.label().to_string(),
            }),
            Err(e) if errno(&e) == Some(libc::EOPNOTSUPP) => Err(NetlinkError::Unsupported {
                what: format!("creating '{name}'"),
                netns: self.netns.label().to_string(),
            }),
            Err(e) => Err(self.request_error("create", name)(e)),
        }
    }

    /// Creates a bridge, down; with `mac`, the bridge has that MAC from its first moment (a
    /// bridge left to itself takes the lowest MAC of its ports, which changes as they come and
    /// go).
    pub async fn create_bridge(&self, name: &str, mac: Option<Mac>) -> Result<(), NetlinkError> {
        let mut builder = LinkBridge::new(name);
        if let Some(mac) = mac {
            builder = builder.address(mac.0.to_vec());
        }
        self.add_link(name, builder.build()).await
    }

    /// Creates a VXLAN device without learning (peers come from static FDB entries), down.
    pub async fn create_vxlan(&self, name: &str, spec: &VxlanSpec) -> Result<(), NetlinkError> {
        let msg = LinkVxlan::new(name, spec.vni)
            .local(spec.local)
            .port(spec.port)
            .dev(spec.underlay_index)
            .learning(false)
            .build();
        self.add_link(name, msg).await
    }

    async fn set_link(
        &self,
        name: &str,
        op: &'static str,
        msg: LinkMessage,
    ) -> Result<(), NetlinkError> {
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(self.request_error(op, name))
    }

    pub async fn set_mtu(&self, name: &str, mtu: u32) -> Result<(), NetlinkError> {
        let index = self.index(name).await?;
        self.set_link(
            name,
            "set the MTU of",
            LinkUnspec::new_with_index(index).mtu(mtu).build(),
        )
        .await
    }

    pub async fn set_mac(&self, name: &str, mac: Mac) -> Result<(), NetlinkError> {
        let index = self.index(name).await?;
        self.set_link(
            name,
            "set the MAC of",
            LinkUnspec::new_with_index(index)
                .address(mac.0.to_vec())
                .build(),
        )
        .await
    }

    pub async fn set_alias(&self, name: &str, alias: &str) -> Result<(), NetlinkError> {
        let index = self.index(name).await?;
        self.set_link(
            name,
            "set the alias of",
            LinkUnspec::new_with_index(index).alias(alias).build(),
        )
        .await
    }

    /// Makes `name` a port of the bridge with index `bridge`.
    pub async fn set_master(&self, name: &str, bridge: u32) -> Result<(), NetlinkError> {
        let index = self.index(name).await?;
        self.set_link(
            name,
            "attach to its bridge",
            LinkUnspec::new_with_index(index).controller(bridge).build(),
        )
        .await
    }

    /// The IPv4 addresses on link `index`, with their prefix lengths.
    pub async fn ipv4_addresses(&self, index: u32) -> Result<Vec<Ipv4Net>, NetlinkError> {
        let addresses = self.addresses(index).await?;
        Ok(addresses
            .into_iter()
            .filter_map(|a| match a {
                IpNet::V4(v4) => Some(v4),
                IpNet::V6(_) => None,
            })
            .collect())
    }

    /// The addresses of link `index`, both families, without IPv6 link-local ones.
    pub async fn addresses(&self, index: u32) -> Result<Vec<IpNet>, NetlinkError> {
        let msgs = self.address_messages(index).await?;
        Ok(msgs.iter().filter_map(address_of).collect())
    }

    /// The address messages of link `index` (the kernel's filter is advisory: check it here).
    async fn address_messages(&self, index: u32) -> Result<Vec<AddressMessage>, NetlinkError> {
        let msgs: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(self.request_error("list addresses of", &format!("ifindex {index}")))?;
        Ok(msgs
            .into_iter()
            .filter(|m| m.header.index == index)
            .collect())
    }

    pub async fn del_address(&self, name: &str, addr: IpNet) -> Result<(), NetlinkError> {
        let index = self.index(name).await?;
        let msgs = self.address_messages(index).await?;
        for msg in msgs {
            if address_of(&msg) == Some(addr) {
                self.handle
                    .address()
                    .del(msg)
                    .execute()
                    .await
                    .map_err(self.request_error("remove an address from", name))?;
            }
        }
        Ok(())
    }

    /// Adds or replaces the route to `dst` via `gateway` out of `dev`; `onlink` says the
    /// gateway is reachable on `dev` without a covering subnet route (as across a VXLAN device).
    pub async fn replace_route(
        &self,
        dst: IpNet,
        gateway: Option<IpAddr>,
        dev: &str,
        onlink: bool,
    ) -> Result<(), NetlinkError> {
        let index = self.index(dev).await?;
        let mut builder = route_to(dst, index);
        if let Some(gateway) = gateway {
            builder = builder
                .gateway(gateway)
                .map_err(|_| NetlinkError::MixedFamilies { dst, gateway })?;
        }
        if onlink {
            builder = builder.onlink();
        }
        self.handle
            .route()
            .add(builder.build())
            .replace()
            .execute()
            .await
            .map_err(self.request_error("add a route via", dev))
    }

    /// The IPv4 routes in the main table out of link `index`: destination and gateway.
    pub async fn ipv4_routes(
        &self,
        index: u32,
    ) -> Result<Vec<(Ipv4Net, Option<Ipv4Addr>)>, NetlinkError> {
        let routes = self.routes(index).await?;
        Ok(routes
            .into_iter()
            .filter_map(|route| match route {
                (IpNet::V4(dst), Some(IpAddr::V4(gateway))) => Some((dst, Some(gateway))),
                (IpNet::V4(dst), None) => Some((dst, None)),
                _ => None,
            })
            .collect())
    }

    /// The routes of both families in the main table out of link `index`: destination and
    /// gateway. The kernel's own IPv6 routes (link-local, multicast) are left out.
    pub async fn routes(&self, index: u32) -> Result<Vec<(IpNet, Option<IpAddr>)>, NetlinkError> {
        // One dump of every family (an unspecified family asks for all).
        let routes: Vec<RouteMessage> = self
            .handle
            .route()
            .get(RouteMessageBuilder::<IpAddr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(self.request_error("list routes of", self.netns.label()))?;
        Ok(routes
            .iter()
            .filter(|r| {
                matches!(
                    r.header.address_family,
                    AddressFamily::Inet | AddressFamily::Inet6
                )
            })
            .filter(|r| r.header.scope != RouteScope::Host)
            .filter(|r| r.header.table == RouteHeader::RT_TABLE_MAIN)
            .filter(|r| {
                r.attributes
                    .iter()
                    .any(|a| matches!(a, RouteAttribute::Oif(i) if *i == index))
            })
            .filter_map(|r| {
                let v6 = r.header.address_family == AddressFamily::Inet6;
                let dst = r
                    .attributes
                    .iter()
                    .find_map(|a| match a {
                        RouteAttribute::Destination(address) => ip_of(address),
                        _ => None,
                    })
                    .unwrap_or(if v6 {
                        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
                    } else {
                        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                    });
                let gateway = r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Gateway(address) => ip_of(address),
                    _ => None,
                });
                let dst = IpNet::new(dst, r.header.destination_prefix_length).ok()?;
                (!is_kernel_ipv6_route(&dst)).then_some((dst, gateway))
            })
            .collect())
    }

    /// Removes the route to `dst` out of `dev`.
    pub async fn del_route(&self, dst: IpNet, dev: &str) -> Result<(), NetlinkError> {
        let index = self.index(dev).await?;
        match self
            .handle
            .route()
            .del(route_to(dst, index).build())
            .execute()
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::ESRCH) => Ok(()),
            Err(e) => Err(self.request_error("remove a route from", dev)(e)),
        }
    }

    /// A permanent neighbour entry (ARP or NDP) `ip` → `mac` on `dev`.
    pub async fn replace_neighbour(
        &self,
        dev: &str,
        ip: IpAddr,
        mac: Mac,
    ) -> Result<(), NetlinkError> {
        let index = self.index(dev).await?;
        self.handle
            .neighbours()
            .add(index, ip)
            .link_layer_address(&mac.0)
            .replace()
            .execute()
            .await
            .map_err(self.request_error("add a neighbour entry to", dev))
    }

    /// The permanent entries fastpath puts on VXLAN device `dev`: neighbours (IPv4 or IPv6
    /// address → MAC) and FDB entries (MAC → underlay address). The device's own address-list entries
    /// (FDB entries with no underlay address) are not among them.
    pub async fn vxlan_entries(&self, dev: &str) -> Result<Vec<VxlanEntry>, NetlinkError> {
        let index = self.index(dev).await?;
        let mut entries = Vec::new();
        for family in [
            AddressFamily::Inet,
            AddressFamily::Inet6,
            AddressFamily::Bridge,
        ] {
            let mut dump = self
                .handle
                .neighbours()
                .get()
                .set_address_family(family)
                .execute();
            while let Some(msg) = dump
                .try_next()
                .await
                .map_err(self.request_error("list the neighbours of", dev))?
            {
                if msg.header.ifindex != index || msg.header.state != NeighbourState::Permanent {
                    continue;
                }
                let mut ip = None;
                let mut mac = None;
                for attr in &msg.attributes {
                    match attr {
                        NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                            ip = Some(IpAddr::V4(*a))
                        }
                        NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                            ip = Some(IpAddr::V6(*a))
                        }
                        // An FDB entry's underlay address (the family is the bridge's, so the
                        // address comes as bytes).
                        NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
                            ip = <[u8; 4]>::try_from(b.as_slice()).ok().map(IpAddr::from)
                        }
                        NeighbourAttribute::LinkLayerAddress(l) => {
                            mac = <[u8; 6]>::try_from(l.as_slice()).ok().map(Mac)
                        }
                        _ => {}
                    }
                }
                let (Some(ip), Some(mac)) = (ip, mac) else {
                    continue;
                };
                entries.push(match (family, ip) {
                    (AddressFamily::Bridge, IpAddr::V4(dst)) => VxlanEntry::Fdb { mac, dst, msg },
                    (AddressFamily::Bridge, IpAddr::V6(_)) => continue,
                    _ => VxlanEntry::Neighbour { ip, mac, msg },
                });
            }
        }
        Ok(entries)
    }

    /// Removes an entry [`Self::vxlan_entries`] listed on `dev`; one gone meanwhile is not an
    /// error.
    pub async fn del_vxlan_entry(&self, dev: &str, entry: VxlanEntry) -> Result<(), NetlinkError> {
        let msg = match entry {
            VxlanEntry::Neighbour { msg, .. } | VxlanEntry::Fdb { msg, .. } => msg,
        };
        match self.handle.neighbours().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::ENOENT) => Ok(()),
            Err(e) => Err(self.request_error("remove a neighbour entry from", dev)(e)),
        }
    }

    /// A permanent FDB entry on VXLAN device `dev`: frames for `mac` go to underlay address `dst`.
    pub async fn replace_vxlan_fdb(
        &self,
        dev: &str,
        mac: Mac,
        dst: Ipv4Addr,
    ) -> Result<(), NetlinkError> {
        let index = self.index(dev).await?;
        self.handle
            .neighbours()
            .add_bridge(index, &mac.0)
            .flags(NeighbourFlags::Own)
            .destination(IpAddr::V4(dst))
            .replace()
            .execute()
            .await
            .map_err(self.request_error("add an FDB entry to", dev))
    }

    /// The id of the XDP program attached to `name`, as netlink reports it (what `ip link` shows).
    pub async fn xdp_program_id(&self, name: &str) -> Result<Option<u32>, NetlinkError> {
        let link = self.link(name).await?.ok_or_else(|| self.not_found(name))?;
        Ok(link.attributes.iter().find_map(|attr| match attr {
            LinkAttribute::Xdp(xdp) => xdp.iter().find_map(|x| match x {
                LinkXdp::ProgId(id) if *id != 0 => Some(*id),
                _ => None,
            }),
            _ => None,
        }))
    }
}

/// A route to `dst` out of link `index`, in the main table, of `dst`'s family.
fn route_to(dst: IpNet, index: u32) -> RouteMessageBuilder<IpAddr> {
    RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(dst.network(), dst.prefix_len())
        .expect("an unset family takes the destination's")
        .output_interface(index)
}

/// The IP address a route attribute carries.
fn ip_of(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(ip) => Some(IpAddr::V4(*ip)),
        RouteAddress::Inet6(ip) => Some(IpAddr::V6(*ip)),
        _ => None,
    }
}
