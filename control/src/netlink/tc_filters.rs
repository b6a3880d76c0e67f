//! Classic TC filters (cls_bpf, under a clsact qdisc) on a device's ingress: put a BPF program
//! there, list the programs there, take one away. The requests are built here: aya's
//! `SchedClassifier` would first open the pinned program through its feature probes (see
//! `bpf_sys`).

use std::os::fd::{AsRawFd as _, BorrowedFd};

use futures::{StreamExt as _, TryStreamExt as _};
use netlink_packet_route::{
    RouteNetlinkMessage,
    tc::{TcAttribute, TcBpfFlags, TcFilterBpf, TcFilterBpfOption, TcHandle, TcMessage, TcOption},
};
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkMessage,
    NetlinkPayload,
};

use super::{Netlink, errno};
use crate::error::NetlinkError;

/// A BPF program as a direct-action filter at one place among a device's ingress filters.
pub struct BpfFilter<'a> {
    pub program: BorrowedFd<'a>,
    /// What the filter reports as its program's name (`tc filter show`,
    /// [`Netlink::ingress_bpf_filters`]).
    pub name: &'a str,
    pub priority: u16,
    pub handle: u32,
}

/// The clsact qdisc's own handle (ffff:0).
const CLSACT_HANDLE: TcHandle = TcHandle {
    major: 0xffff,
    minor: 0,
};

/// The clsact qdisc's ingress hook, as a filter's parent (ffff:fff2).
const INGRESS: TcHandle = TcHandle {
    major: 0xffff,
    minor: TcHandle::MIN_INGRESS,
};

/// A filter's `tcm_info`: its priority, and the protocol it sees (every one, in network order).
fn filter_info(priority: u16) -> u32 {
    const ETH_P_ALL: u16 = 0x0003;
    (u32::from(priority) << 16) | u32::from(ETH_P_ALL.to_be())
}

impl Netlink {
    /// Puts `filter` on `dev`'s ingress, adding the clsact qdisc when the device has none. A
    /// filter at the same place is replaced (`tc filter replace`), so attaching again is
    /// harmless.
    pub async fn replace_ingress_bpf_filter(
        &self,
        dev: &str,
        filter: &BpfFilter<'_>,
    ) -> Result<(), NetlinkError> {
        let index = self.index(dev).await? as i32;
        let mut clsact = TcMessage::with_index(index);
        clsact.header.parent = TcHandle::CLSACT;
        clsact.header.handle = CLSACT_HANDLE;
        clsact.attributes.push(TcAttribute::Kind("clsact".into()));
        match self
            .acked(
                RouteNetlinkMessage::NewQueueDiscipline(clsact),
                NLM_F_CREATE | NLM_F_EXCL,
            )
            .await
        {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(libc::EEXIST) => {}
            Err(e) => return Err(self.request_error("add a clsact qdisc to", dev)(e)),
        }
        let mut message = TcMessage::with_index(index);
        message.header.parent = INGRESS;
        message.header.handle = TcHandle::from(filter.handle);
        message.header.info = filter_info(filter.priority);
        message
            .attributes
            .push(TcAttribute::Kind(TcFilterBpf::KIND.into()));
        message.attributes.push(TcAttribute::Options(vec![
            TcOption::Bpf(TcFilterBpfOption::ProgFd(filter.program.as_raw_fd() as u32)),
            TcOption::Bpf(TcFilterBpfOption::ProgName(filter.name.into())),
            TcOption::Bpf(TcFilterBpfOption::Flags(TcBpfFlags::DirectAction)),
        ]));
        self.acked(
            RouteNetlinkMessage::NewTrafficFilter(message),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
        .await
        .map_err(self.request_error("add a BPF filter to", dev))
    }

    /// Removes the ingress filter at `priority`/`handle` from `dev`; no such device, qdisc or
    /// filter is not an error.
    pub async fn delete_ingress_filter(
        &self,
        dev: &str,
        priority: u16,
        handle: u32,
    ) -> Result<(), NetlinkError> {
        let Some(link) = self.link(dev).await? else {
            return Ok(());
        };
        let mut message = TcMessage::with_index(link.header.index as i32);
        message.header.parent = INGRESS;
        message.header.handle = TcHandle::from(handle);
        message.header.info = filter_info(priority);
        match self
            .acked(RouteNetlinkMessage::DelTrafficFilter(message), 0)
            .await
        {
            Ok(()) => Ok(()),
            // No filter there (ENOENT), no clsact qdisc (EINVAL), the device went meanwhile.
            Err(e) if matches!(errno(&e), Some(libc::ENOENT | libc::EINVAL | libc::ENODEV)) => {
                Ok(())
            }
            Err(e) => Err(self.request_error("remove a filter from", dev)(e)),
        }
    }

    /// The BPF programs (name, id) of `dev`'s ingress filters.
    pub async fn ingress_bpf_filters(&self, dev: &str) -> Result<Vec<(String, u32)>, NetlinkError> {
        let index = self.index(dev).await?;
        let mut filters = self
            .handle
            .traffic_filter(index as i32)
            .get()
            .ingress()
            .execute();
        let mut programs = Vec::new();
        while let Some(msg) = filters
            .try_next()
            .await
            .map_err(self.request_error("list the ingress filters of", dev))?
        {
            let (mut name, mut id) = (None, None);
            for attr in &msg.attributes {
                if let TcAttribute::Options(options) = attr {
                    for option in options {
                        match option {
                            TcOption::Bpf(TcFilterBpfOption::ProgName(n)) => name = Some(n.clone()),
                            TcOption::Bpf(TcFilterBpfOption::ProgId(i)) => id = Some(*i),
                            _ => {}
                        }
                    }
                }
            }
            if let (Some(name), Some(id)) = (name, id) {
                programs.push((name, id));
            }
        }
        Ok(programs)
    }

    /// Sends `message` with `flags` and waits for the kernel's answer.
    async fn acked(
        &self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<(), rtnetlink::Error> {
        let mut request = NetlinkMessage::from(message);
        request.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        let mut responses = self.handle.clone().request(request)?;
        while let Some(response) = responses.next().await {
            if let NetlinkPayload::Error(e) = response.payload {
                return Err(rtnetlink::Error::NetlinkError(e));
            }
        }
        Ok(())
    }
}
