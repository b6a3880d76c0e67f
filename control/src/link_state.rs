//! One link brought to its wanted MTU, exact addresses and up state, each change described:
//! the one way `up` (bridges, underlays, VXLAN devices) and the pod plumbing (`pod_veth`) correct
//! a link that exists.

use anyhow::{Context as _, Result};
use ipnet::IpNet;

use crate::netlink::{LinkView, Netlink};

/// Sets the MTU of `view`'s link, its exact `addresses` of both families (when given; others go,
/// except IPv6 link-local ones, which are the kernel's) and, with
/// `bring_up`, its up state, where they differ; pushes a line per change.
pub async fn converge(
    nl: &Netlink,
    view: &LinkView,
    mtu: u32,
    addresses: Option<&[IpNet]>,
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
        let present = nl.addresses(view.index).await?;
        for addr in present.iter().filter(|a| !wanted.contains(a)) {
            nl.del_address(name, *addr).await?;
            changes.push(format!("removed address {addr} from {name} in netns {ns}"));
        }
        for addr in wanted.iter().filter(|a| !present.contains(a)) {
            nl.add_address(name, addr.addr(), addr.prefix_len()).await?;
            changes.push(format!("added address {addr} to {name} in netns {ns}"));
        }
    }
    if bring_up && !view.up {
        nl.set_up(name).await?;
        changes.push(format!("brought {name} in netns {ns} up"));
    }
    Ok(())
}

/// Has the kernel skip duplicate address detection on `name`, a device its maker just created
/// and has not brought up. Its link-local address comes from a MAC fastpath chose unique, so the
/// check finds nothing; meanwhile (a second) the device has no usable link-local address, and a
/// node routing IPv6 out of it waits that long for neighbour discovery.
pub fn skip_dad(nl: &Netlink, name: &str) -> Result<()> {
    let sysctl = format!("net/ipv6/conf/{name}/accept_dad");
    nl.netns()
        .ensure_sysctls(&[(sysctl, "0")])
        .with_context(|| format!("{name} in netns {}", nl.netns().label()))?;
    Ok(())
}
