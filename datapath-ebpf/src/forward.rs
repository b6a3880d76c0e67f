//! The same-node forwarding decision, shared by the XDP and TC programs: who sent the frame, is
//! it allowed to, and is its destination a pod on this node.

use datapath_common::{maps::NODE_FAST_PATH, reasons::*};
use network_types::{eth::EthHdr, ip::Ipv4Hdr};

use crate::{
    classify::{self, Frame},
    maps::{ENDPOINTS, NODE, SOURCES},
    packet::Packet,
};

/// MACs to write into a routed frame.
pub struct Rewrite {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
}

pub enum Action {
    Pass,
    Drop,
    Redirect {
        ifindex: u32,
        rewrite: Option<Rewrite>,
    },
}

pub struct Decision {
    pub reason: u32,
    pub action: Action,
}

#[inline(always)]
fn pass(reason: u32) -> Decision {
    Decision {
        reason,
        action: Action::Pass,
    }
}

#[inline(always)]
fn drop(reason: u32) -> Decision {
    Decision {
        reason,
        action: Action::Drop,
    }
}

/// Decides what to do with a frame that arrived on `ingress_ifindex` (a pod's host-side veth).
#[inline(always)]
pub fn decide(pkt: &Packet, ingress_ifindex: u32) -> Decision {
    let Some(eth) = pkt.ptr_at::<EthHdr>(0) else {
        return pass(PASS_TRUNCATED);
    };
    // SAFETY: ptr_at checked that a whole EthHdr lies inside the frame.
    let eth = unsafe { &*eth };
    // SAFETY: the map returns a valid pointer or none; entries are plain data.
    let source = unsafe { SOURCES.get(ingress_ifindex) };
    if let Some(source) = source
        && eth.src_addr != source.mac
    {
        return drop(DROP_SPOOFED_MAC);
    }
    let ip = match classify::frame(pkt, eth) {
        Frame::Ipv4(ip) => ip,
        Frame::Other(reason) => return pass(reason),
    };
    let Some(node) = NODE.get(0) else {
        return pass(PASS_FAST_PATH_OFF);
    };
    if node.flags & NODE_FAST_PATH == 0 {
        return pass(PASS_FAST_PATH_OFF);
    }
    let Some(source) = source else {
        return pass(PASS_NOT_FROM_POD);
    };
    if u32::from_ne_bytes(ip.src_addr) != source.ip {
        return drop(DROP_SPOOFED_IP);
    }
    // SAFETY: as above.
    let Some(endpoint) = (unsafe { ENDPOINTS.get(u32::from_ne_bytes(ip.dst_addr)) }) else {
        return pass(PASS_NO_ENDPOINT);
    };
    if eth.dst_addr == endpoint.mac {
        return Decision {
            reason: REDIRECT_SWITCHED,
            action: Action::Redirect {
                ifindex: endpoint.ifindex,
                rewrite: None,
            },
        };
    }
    if eth.dst_addr != node.gateway_mac {
        return pass(PASS_NOT_ADDRESSED_TO_ENDPOINT);
    }
    if ip.ttl <= 1 {
        return pass(PASS_TTL_EXPIRED);
    }
    Decision {
        reason: REDIRECT_ROUTED,
        action: Action::Redirect {
            ifindex: endpoint.ifindex,
            rewrite: Some(Rewrite {
                src_mac: node.gateway_mac,
                dst_mac: endpoint.mac,
            }),
        },
    }
}

/// Does to a routed frame what the kernel's forwarding would: new MACs, TTL one less, IPv4 header
/// checksum updated incrementally (RFC 1624).
#[inline(always)]
pub fn apply(pkt: &Packet, rewrite: &Rewrite) -> bool {
    let (Some(eth), Some(ip)) = (
        pkt.ptr_at_mut::<EthHdr>(0),
        pkt.ptr_at_mut::<Ipv4Hdr>(EthHdr::LEN),
    ) else {
        return false;
    };
    // SAFETY: ptr_at_mut checked both headers lie inside the frame; nothing else aliases them.
    unsafe {
        (*eth).src_addr = rewrite.src_mac;
        (*eth).dst_addr = rewrite.dst_mac;
        let old = u16::from_be_bytes([(*ip).ttl, (*ip).proto]);
        (*ip).ttl -= 1;
        let new = u16::from_be_bytes([(*ip).ttl, (*ip).proto]);
        let mut sum =
            u32::from(!u16::from_be_bytes((*ip).check)) + u32::from(!old) + u32::from(new);
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        (*ip).check = (!(sum as u16)).to_be_bytes();
    }
    true
}
