//! The network's fast path: programs and maps pinned under one directory per network (or the
//! directory of the fastpath node it joined), so every invocation of the plugin (a short-lived
//! process) works on the same maps; `tc_pod` runs on each host veth as a filter, which goes with
//! its veth. The maps' endpoint entries are always rebuilt
//! from the complete records, which makes them exactly as true as the records are, whatever an
//! earlier invocation was killed in the middle of.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

use super::{network, node::JoinedNode, store::Record};
use crate::{
    datapath::{self, EndpointEntry, Hook, Maps, Owner, PinnedLinkName},
    mac::Mac,
    netlink::Netlink,
    netns::Netns,
};

/// Where networks pin their maps and links.
pub const PIN_ROOT: &str = "/sys/fs/bpf/fastpath-cni";

pub fn pin_dir(network: &str) -> PathBuf {
    Path::new(PIN_ROOT).join(network)
}

/// A network's pinned maps and links, and whose they are.
#[derive(Clone)]
pub enum Pins {
    /// The network's own, under [`PIN_ROOT`]: made by its first attachment, removed with its
    /// last.
    Own(PathBuf),
    /// The fastpath node's the network joined: made and removed by `fastpath up`/`down`, shared
    /// with the node's own pods.
    Node(JoinedNode),
}

impl Pins {
    pub fn dir(&self) -> &Path {
        match self {
            Pins::Own(dir) => dir,
            Pins::Node(node) => &node.pin_dir,
        }
    }

    /// Attaches tc_pod to `host_veth` (in `host`'s namespace) as a filter (see
    /// `datapath::attach_filter`: a CNI ADD does not wait for a grace period), loading and
    /// pinning the programs first for a network's first pod (or a node brought up by another
    /// build).
    pub async fn attach(&self, host: &Netlink, host_veth: &str) -> Result<()> {
        let dir = self.dir();
        if let Pins::Node(node) = self
            && !dir.exists()
        {
            bail!(
                "node '{}' has no fast path: {} is missing; bring the node up in mode tc or xdp (`fastpath up`), or give the network \"mode\": \"kernel\"",
                node.name,
                dir.display()
            );
        }
        let pinned = datapath::ensure_pinned(dir)?;
        if !pinned.replaced_maps.is_empty() {
            log::warn!(
                "maps in {} pinned with another layout ({}) replaced by this build's",
                dir.display(),
                pinned.replaced_maps.join(", ")
            );
        }
        datapath::attach_filter(host, dir, Hook::Tc, host_veth).await?;
        Ok(())
    }

    /// Gives the network's own maps its gateway (the bridge); a node's maps have it from
    /// `fastpath up`.
    pub fn set_gateway(
        &self,
        gateway_mac: Mac,
        gateway: Ipv4Addr,
        gateway6: Option<Ipv6Addr>,
    ) -> Result<()> {
        if let Pins::Own(dir) = self {
            Maps::open(dir)?.set_node(gateway_mac, Some(gateway), gateway6, None)?;
        }
        Ok(())
    }

    /// Makes `owner`'s (the network's) endpoint entries exactly the complete records whose host
    /// veth exists (none without `fast_path`: a network in kernel mode). In a joined node's maps,
    /// the other owners' entries stay: the node's pods, other networks' pods. With no record
    /// left, the network's own pins go: the maps are freed with their last program.
    pub async fn sync(&self, owner: Owner, records: &[Record], fast_path: bool) -> Result<()> {
        let dir = self.dir();
        if records.is_empty()
            && let Pins::Own(dir) = self
        {
            return remove_pins(dir);
        }
        if !dir.exists() {
            // Nothing was ever attached (kernel mode, or every ADD failed before attaching).
            return Ok(());
        }
        // A joined node's maps have other owners: the check that no other owner holds one of
        // these addresses and the write must not interleave with another owner's.
        let _lock = match self {
            Pins::Own(_) => None,
            Pins::Node(_) => Some(datapath::lock_pins(dir)?),
        };
        let nl = Netlink::open(&Netns::host())?;
        let links = nl.links().await?;
        let mut entries = Vec::new();
        for r in records.iter().filter(|r| fast_path && r.complete) {
            let (Some(address), Some(mac)) = (r.address, &r.mac) else {
                continue;
            };
            let Some(link) = links.iter().find(|l| l.name == r.host_veth) else {
                continue;
            };
            entries.push(EndpointEntry {
                ip: Some(address.addr()),
                ip6: r.address6.map(|a| a.addr()),
                ifindex: link.index,
                mac: *mac,
            });
        }
        // After an upgrade the pins may be another build's, with maps of another layout: this
        // build's take their place first (filters on existing veths keep the old programs and
        // maps until their pods are added again). Otherwise this only looks at the pins.
        datapath::ensure_pinned(dir)?;
        Maps::open(dir)?.sync_endpoints(&Netns::host(), owner, &entries, None)?;
        Ok(())
    }

    /// Pinned links of the network that no record names: left by an attachment undone half-way,
    /// or defunct (their device is gone). In a joined node's directory only tc_pod links on
    /// devices that are gone or carry this network's alias are the network's; the others are
    /// the node's or another network's.
    pub async fn stray_links(
        &self,
        network: &str,
        records: &[Record],
    ) -> Result<Vec<PinnedLinkName>> {
        let links = Netlink::open(&Netns::host())?.links().await?;
        let alias = format!("{} ", network::network_alias(network));
        let mut stray = Vec::new();
        for link in datapath::pinned_links(self.dir())? {
            if records.iter().any(|r| r.host_veth == link.dev) {
                continue;
            }
            let device = links.iter().find(|l| l.name == link.dev);
            let ours = match self {
                Pins::Own(_) => true,
                Pins::Node(_) => {
                    link.hook == Hook::Tc
                        && device.is_none_or(|d| {
                            d.index != link.ifindex
                                || d.alias.as_ref().is_some_and(|a| a.starts_with(&alias))
                        })
                }
            };
            if ours {
                stray.push(link);
            }
        }
        Ok(stray)
    }

    /// The endpoint entry of `ip`: the ifindex it redirects to, if there is one.
    pub fn endpoint_ifindex(&self, ip: IpAddr) -> Result<Option<u32>> {
        endpoint_ifindex(self.dir(), ip)
    }
}

/// Takes tc_pod off `host_veth` (in `host`'s namespace): its filter (a chained attachment's veth
/// outlives the DEL; a standalone one took its filter with it), and any link pinned under `dir`
/// for it (attachments made by releases that attached through tcx links), whatever its ifindex
/// was.
pub async fn detach(host: &Netlink, dir: &Path, host_veth: &str) -> Result<()> {
    datapath::detach_filter(host, host_veth).await?;
    for link in datapath::pinned_links(dir)? {
        if link.dev == host_veth {
            datapath::detach_pinned(dir, &link)?;
        }
    }
    Ok(())
}

/// Whether tc_pod runs on `veth` (with `ifindex`): as a filter, or through a link pinned under
/// `dir` (a release that attached through tcx links).
pub async fn runs_on(host: &Netlink, dir: &Path, veth: &str, ifindex: u32) -> Result<bool> {
    let filtered = host
        .ingress_bpf_filters(veth)
        .await?
        .iter()
        .any(|(name, _)| name == Hook::Tc.program());
    let linked = datapath::pinned_links(dir)?
        .iter()
        .any(|l| l.dev == veth && l.ifindex == ifindex);
    Ok(filtered || linked)
}

/// The endpoint entry of `ip` in the maps pinned under `dir`.
pub fn endpoint_ifindex(dir: &Path, ip: IpAddr) -> Result<Option<u32>> {
    // Also pins of an older layout (before an upgrade's first ADD or DEL replaces them): this
    // build has no map to look in yet.
    if !datapath::maps_pinned(dir) {
        return Ok(None);
    }
    Ok(datapath::pinned_endpoint(dir, ip)?.map(|e| e.ifindex))
}

fn remove_pins(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {
            // The shared root goes with the last network's pins (remove_dir only removes it
            // empty).
            let _ = std::fs::remove_dir(PIN_ROOT);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
    }
}
