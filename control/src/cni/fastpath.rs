//! The network's fast path: maps and program links pinned under one directory per network, so
//! every invocation of the plugin (a short-lived process) works on the same maps. The maps'
//! endpoint entries are always rebuilt from the complete records, which makes them exactly as
//! true as the records are, whatever an earlier invocation was killed in the middle of.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};

use super::store::Record;
use crate::{
    config,
    datapath::{self, Datapath, EndpointEntry, Hook},
    netlink::Netlink,
    netns::Netns,
};

/// Where networks pin their maps and links.
pub const PIN_ROOT: &str = "/sys/fs/bpf/fastpath-cni";

pub fn pin_dir(network: &str) -> PathBuf {
    Path::new(PIN_ROOT).join(network)
}

/// Attaches tc_pod to `host_veth` (in this process's namespace) with the network's gateway as the
/// node settings say.
pub fn attach(
    network: &str,
    gateway_mac: [u8; 6],
    gateway: Ipv4Addr,
    host_veth: &str,
) -> Result<()> {
    let dir = pin_dir(network);
    let mut dp = Datapath::load_pinned(&dir, None)
        .with_context(|| format!("loading the fast path of network '{network}'"))?;
    dp.set_node(gateway_mac, gateway, None)?;
    dp.attach_pinned(Hook::Tc, &Netns::host(), host_veth)?;
    Ok(())
}

/// Removes every pinned link of `host_veth`, whatever its ifindex was.
pub fn detach(network: &str, host_veth: &str) -> Result<()> {
    let dir = pin_dir(network);
    for link in datapath::pinned_links(&dir)? {
        if link.dev == host_veth {
            datapath::detach_pinned(&dir, &link)?;
        }
    }
    Ok(())
}

/// Makes the endpoint maps hold exactly the complete records whose host veth exists. With no
/// record left, the network's pins go: the maps are freed with their last program.
pub async fn sync(network: &str, records: &[Record]) -> Result<()> {
    let dir = pin_dir(network);
    if records.is_empty() {
        return remove_pins(&dir);
    }
    if !dir.exists() {
        // Nothing was ever attached (kernel mode, or every ADD failed before attaching).
        return Ok(());
    }
    let nl = Netlink::open(&Netns::host())?;
    let mut entries = Vec::new();
    for r in records.iter().filter(|r| r.complete) {
        let (Some(address), Some(mac)) = (r.address, &r.mac) else {
            continue;
        };
        let Some(link) = nl.link_view(&r.host_veth).await? else {
            continue;
        };
        entries.push(EndpointEntry {
            ip: address.addr(),
            ifindex: link.index,
            mac: config::parse_mac(mac)?,
        });
    }
    let mut dp = Datapath::load_pinned(&dir, None)
        .with_context(|| format!("loading the fast path of network '{network}'"))?;
    dp.sync_endpoints(&Netns::host(), &entries, None)?;
    Ok(())
}

/// The endpoint entry of `ip`: the ifindex it redirects to, if there is one.
pub fn endpoint_ifindex(network: &str, ip: Ipv4Addr) -> Result<Option<u32>> {
    let dir = pin_dir(network);
    if !dir.exists() {
        return Ok(None);
    }
    Ok(datapath::pinned_endpoint(&dir, ip)?.map(|e| e.ifindex))
}

fn remove_pins(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
    }
}
