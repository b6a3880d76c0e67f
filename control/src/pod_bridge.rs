//! The bridge a pod network's host ends are ports of, made one way for a node (`fastpath up`) and
//! a standalone CNI network (`fastpath-cni`): with its fixed MAC and its maker's alias from the
//! moment it exists, and up. What else it holds (a node's exact MTU and gateway address, the
//! gateways of the CNI networks sharing it) is its owner's to add.

use anyhow::{Context as _, Result, bail};

use crate::{
    error::NetlinkError,
    link_state,
    mac::Mac,
    netlink::{LinkView, Netlink},
};

pub struct PodBridge<'a> {
    pub nl: &'a Netlink,
    pub name: &'a str,
    /// Given at creation: the pods' gateway MAC, which the fast path's maps hold, must not move
    /// when a port with a lower MAC joins (a bridge left to itself takes the lowest of its
    /// ports').
    pub mac: Mac,
    pub alias: &'a str,
}

impl PodBridge<'_> {
    /// Makes the bridge when it is missing (another invocation making it meanwhile is fine) and
    /// brings it up; returns it. Each change is described in `changes`. A device of that name
    /// that is not a bridge is an error.
    pub async fn ensure(&self, changes: &mut Vec<String>) -> Result<LinkView> {
        let (nl, name) = (self.nl, self.name);
        let ns = nl.netns().label();
        match nl.link_view(name).await? {
            Some(link) if link.kind.as_deref() != Some("bridge") => bail!(
                "device {name} in {ns} exists and is not a bridge ({})",
                link.kind.as_deref().unwrap_or("no kind")
            ),
            Some(link) if link.up => return Ok(link),
            Some(_) => {}
            None => match nl.create_bridge(name, Some(self.mac)).await {
                Ok(()) => {
                    nl.set_alias(name, self.alias).await?;
                    link_state::skip_dad(nl, name)?;
                    changes.push(format!("created bridge {name} in netns {ns}"));
                }
                Err(NetlinkError::DeviceExists { .. }) => {}
                Err(e) => return Err(e.into()),
            },
        }
        nl.set_up(name).await?;
        changes.push(format!("brought {name} in netns {ns} up"));
        nl.link_view(name)
            .await?
            .with_context(|| format!("bridge {name} vanished from {ns}"))
    }
}
