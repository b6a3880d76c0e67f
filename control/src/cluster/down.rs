//! `fastpath down`: removes everything this instance created and nothing else, carrying on past
//! failures and reporting all of them at the end. Safe when nothing is up.

use anyhow::{Result, bail};

use crate::{
    datapath::PIN_ROOT, error::chain, guard, netlink::Netlink, netns::Netns, ownership::Ownership,
};

/// Removes the namespaces this instance claimed and the devices it marked in this namespace;
/// returns what was removed.
pub async fn down(ownership: &Ownership) -> Result<Vec<String>> {
    let _lock = ownership
        .lock()
        .map_err(|e| anyhow::anyhow!("locking this prefix's ownership records: {e}"))?;
    let mut removed = Vec::new();
    let mut errors = Vec::new();
    match ownership.claimed_netns() {
        Ok(names) => {
            for name in names {
                let netns = Netns::named(name.clone());
                let existed = netns.exists();
                match netns.delete().map_err(anyhow::Error::from).and_then(|()| {
                    ownership.release_netns(&name)?;
                    Ok(())
                }) {
                    Ok(()) if existed => removed.push(format!("netns {name}")),
                    Ok(()) => {}
                    Err(e) => errors.push(format!("{e:#}")),
                }
            }
        }
        Err(e) => errors.push(format!("reading fastpath's ownership records: {e}")),
    }
    // Pinned maps and links: removing a link's pin detaches its program.
    let pins = super::prefix_pin_dir(ownership.prefix());
    if pins.exists() {
        match std::fs::remove_dir_all(&pins) {
            Ok(()) => removed.push(format!("pins {}", pins.display())),
            Err(e) => errors.push(format!("removing {}: {e}", pins.display())),
        }
    }
    // The shared root goes with the last instance's pins (remove_dir only removes it empty).
    let _ = std::fs::remove_dir(PIN_ROOT);
    // A real node's guard table lives in this namespace (a simulated node's goes with its
    // namespace).
    let table = guard::table_name(ownership.prefix());
    match guard::remove(&Netns::host(), &table) {
        Ok(true) => removed.push(format!("nftables tables {table}")),
        Ok(false) => {}
        Err(e) => errors.push(chain(&e)),
    }
    // A real node's bridge, VXLAN device and pod veths live in this namespace, marked by alias.
    // Their routes, neighbour and FDB entries go with them.
    match Netlink::open(&Netns::host()) {
        Ok(nl) => match nl.links().await {
            Ok(links) => {
                let alias = ownership.device_alias();
                for link in links
                    .into_iter()
                    .filter(|l| l.alias.as_deref() == Some(alias.as_str()))
                {
                    match nl.delete_link(&link.name).await {
                        Ok(()) => removed.push(format!("device {}", link.name)),
                        Err(e) => errors.push(chain(&e)),
                    }
                }
            }
            Err(e) => errors.push(chain(&e)),
        },
        Err(e) => errors.push(chain(&e)),
    }
    if !errors.is_empty() {
        bail!(
            "down removed {} things but failed on {}: {}",
            removed.len(),
            errors.len(),
            errors.join("; ")
        );
    }
    Ok(removed)
}
