//! One link brought to its wanted MTU, exact IPv4 addresses and up state, each change described:
//! the one way `up` (bridges, underlays, VXLAN devices) and the pod plumbing (`pod_veth`) correct
//! a link that exists.

use std::net::IpAddr;

use anyhow::Result;
use ipnet::Ipv4Net;

use crate::netlink::{LinkView, Netlink};

/// Sets the MTU of `view`'s link, its exact IPv4 `addresses` (when given; others go) and, with
/// `bring_up`, its up state, where they differ; pushes a line per change.
pub async fn converge(
    nl: &Netlink,
    view: &LinkView,
    mtu: u32,
    addresses: Option<&[Ipv4Net]>,
    bring_up: bool,
    changes: &mut Vec<String>,
) -> Result<()> {
    let (name, ns) = (&view.name, nl.netns().label());
    if view.mtu != mtu {
        nl.set_mtu(name, mtu).await?;
        changes.push(format!(
            "set MTU of {name} in netns {ns} to {mtu} (was {})",
            view.mtu
        ));
    }
    if let Some(wanted) = addresses {
        let present = nl.ipv4_addresses(view.index).await?;
        for addr in present.iter().filter(|a| !wanted.contains(a)) {
            nl.del_ipv4_address(name, *addr).await?;
            changes.push(format!("removed address {addr} from {name} in netns {ns}"));
        }
        for addr in wanted.iter().filter(|a| !present.contains(a)) {
            nl.add_address(name, IpAddr::V4(addr.addr()), addr.prefix_len())
                .await?;
            changes.push(format!("added address {addr} to {name} in netns {ns}"));
        }
    }
    if bring_up && !view.up {
        nl.set_up(name).await?;
        changes.push(format!("brought {name} in netns {ns} up"));
    }
    Ok(())
}
