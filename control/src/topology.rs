//! Building blocks for topologies made of namespaces joined by veth pairs.

use std::net::{IpAddr, Ipv4Addr};

use crate::{error::NetlinkError, netlink::Netlink, netns::Netns};

/// One end of a veth pair: the namespace it lives in, its name, its address.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub netns: Netns,
    pub dev: String,
    pub addr: Ipv4Addr,
}

/// Creates `netns` (when missing) with its loopback up.
pub async fn create_namespace(netns: &Netns) -> Result<(), NetlinkError> {
    if !netns.exists() {
        netns.create()?;
    }
    Netlink::open(netns)?.set_up("lo").await
}

/// Joins `a` and `b` with a veth pair, both ends up and addressed in one `/prefix_len` subnet.
/// On failure, what was created is removed again.
pub async fn connect(a: &Endpoint, b: &Endpoint, prefix_len: u8) -> Result<(), NetlinkError> {
    let nl_a = Netlink::open(&a.netns)?;
    let nl_b = Netlink::open(&b.netns)?;
    nl_a.create_veth(&a.dev, &b.dev, &b.netns).await?;
    let configured = async {
        nl_a.add_address(&a.dev, IpAddr::V4(a.addr), prefix_len)
            .await?;
        nl_b.add_address(&b.dev, IpAddr::V4(b.addr), prefix_len)
            .await?;
        nl_a.set_up(&a.dev).await?;
        nl_b.set_up(&b.dev).await
    }
    .await;
    if configured.is_err() {
        // Deleting one end of a veth pair deletes both.
        let _ = nl_a.delete_link(&a.dev).await;
    }
    configured
}
