//! Typed rtnetlink operations, one method per operation, each bound to one network namespace.
//!
//! A netlink socket stays in the namespace it was opened in, so a [`Netlink`] is opened inside its
//! namespace once and then used from anywhere. Errors name the device and the namespace.

use std::{net::IpAddr, os::fd::AsRawFd};

use futures::TryStreamExt as _;
use netlink_packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkMessage, LinkXdp};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth};

use crate::{error::NetlinkError, netns::Netns};

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
        let peer_fd = peer_netns.open()?;
        let peer_msg = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer.to_string())
            .setns_by_fd(peer_fd.as_raw_fd())
            .build();
        let msg = LinkVeth::new(name, peer)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
            .build();
        match self.handle.link().add(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::EEXIST) => Err(NetlinkError::DeviceExists {
                dev: format!("{name}' or '{peer}"),
                netns: self.netns.label().to_string(),
            }),
            Err(e) => Err(self.request_error("create veth", name)(e)),
        }
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

    /// Adds `addr/prefix` to `name`; an address that is already there is left as it is.
    pub async fn add_address(
        &self,
        name: &str,
        addr: IpAddr,
        prefix: u8,
    ) -> Result<(), NetlinkError> {
        let index = self.index(name).await?;
        match self
            .handle
            .address()
            .add(index, addr, prefix)
            .execute()
            .await
        {
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
