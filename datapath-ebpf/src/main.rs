//! fastpath's eBPF programs: entry points only, the logic lives in the modules.
#![no_std]
#![no_main]

mod classify;
mod counters;
mod csum;
mod decap;
mod encap;
mod forward;
mod license;
mod linear;
mod maps;
mod monitor;
mod nd;
mod packet;
mod pod_source;

use aya_ebpf::{
    bindings::{
        BPF_F_ADJ_ROOM_DECAP_L3_IPV6, BPF_F_ADJ_ROOM_FIXED_GSO, TC_ACT_OK, TC_ACT_REDIRECT,
        TC_ACT_SHOT, bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, xdp_action,
    },
    helpers::bpf_redirect_peer,
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use aya_log_ebpf::debug;
use datapath_common::reasons::{self, Reason, Verdict, program};
use network_types::{
    eth::{EthHdr, EtherType},
    ip::{IpProto, Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
};

use crate::{
    encap::OVERHEAD,
    forward::{Action, Decision},
    linear::{linear_len, pull},
    maps::DEVMAP,
    monitor::Decided,
    packet::Packet,
};

/// Up to the end of a TCP header without options behind an IPv6 header (or an IPv4 one): what
/// encapsulation reads in TC (the flow's ports, and a GSO packet's TCP header length).
const ENCAP_HEADERS: u32 = (EthHdr::LEN + Ipv6Hdr::LEN + TcpHdr::LEN) as u32;

/// On a pod's host-side veth, native XDP: redirects to local pods through the devmap.
#[xdp]
pub fn xdp_pod(ctx: XdpContext) -> u32 {
    let pkt = Packet::new(ctx.data(), ctx.data_end());
    // Tags are still in the frame here: XDP runs before the kernel takes them off.
    let ingress = ctx.ingress_ifindex() as u32;
    let Decision { mut reason, action } = forward::decide(&pkt, ingress, false);
    let mut target_ifindex = 0;
    let verdict = match action {
        Action::Pass => xdp_action::XDP_PASS,
        Action::Drop => xdp_action::XDP_DROP,
        Action::Redirect { ifindex } => {
            target_ifindex = ifindex;
            match DEVMAP.redirect(ifindex, u64::from(xdp_action::XDP_PASS)) {
                Ok(verdict) if verdict == xdp_action::XDP_REDIRECT => verdict,
                _ => {
                    reason = reasons::PASS_REDIRECT_FAILED;
                    xdp_action::XDP_PASS
                }
            }
        }
        Action::Encap { peer, ipv6 } => {
            let (why, verdict) = encap::xdp(&ctx, &pkt, &peer, ipv6);
            if let Some(why) = why {
                reason = why;
            }
            verdict
        }
    };
    counters::count(program::XDP_POD, reason, pkt.len());
    monitor::report_xdp(
        &ctx,
        &Decided {
            program: program::XDP_POD,
            reason,
            verdict: xdp_verdict(verdict),
            ifindex: ingress,
            target_ifindex,
            inner_offset: inner_offset(reason),
        },
    );
    if is_malformed(reason) {
        debug!(
            &ctx,
            "xdp_pod: malformed frame of {} bytes, reason {}",
            pkt.len(),
            reason.0
        );
    }
    verdict
}

/// The same decisions through tcx ingress, where the frame is still an skb: GSO and checksum
/// offload state survive, and bpf_redirect_peer hands it straight to the pod's side.
#[classifier]
pub fn tc_pod(ctx: TcContext) -> i32 {
    // skb->len counts the whole packet, also the part not in the linear area; taken before
    // encapsulation changes it, so bytes are counted as the pod sent them.
    let len = ctx.len();
    pull(&ctx, ENCAP_HEADERS);
    // Parsed for a deeper look only when the linear area is short of one.
    if linear_len(&ctx) < len.min(nd::HEADERS)
        && needs_deeper_look(&Packet::new(ctx.data(), ctx.data_end()))
    {
        pull(&ctx, nd::HEADERS);
    }
    let pkt = Packet::new(ctx.data(), ctx.data_end());
    // SAFETY: the context's skb pointer is valid for the program's run.
    let (ingress, vlan_present) = unsafe {
        let skb = &*ctx.skb.skb;
        (skb.ingress_ifindex, skb.vlan_present != 0)
    };
    let Decision { mut reason, action } = forward::decide(&pkt, ingress, vlan_present);
    let mut target_ifindex = 0;
    let verdict = match action {
        Action::Pass => TC_ACT_OK,
        Action::Drop => TC_ACT_SHOT,
        Action::Redirect { ifindex } => {
            target_ifindex = ifindex;
            // SAFETY: a helper call with plain integer arguments.
            let ret = unsafe { bpf_redirect_peer(ifindex, 0) } as i32;
            if ret != TC_ACT_REDIRECT {
                reason = reasons::PASS_REDIRECT_FAILED;
                TC_ACT_OK
            } else {
                ret
            }
        }
        Action::Encap { peer, ipv6 } => {
            let (why, verdict) = encap::tc(&ctx, &pkt, &peer, ipv6);
            if let Some(why) = why {
                reason = why;
            }
            verdict
        }
    };
    counters::count(program::TC_POD, reason, len as usize);
    monitor::report_tc(
        &ctx,
        &Decided {
            program: program::TC_POD,
            reason,
            verdict: tc_verdict(verdict),
            ifindex: ingress,
            target_ifindex,
            inner_offset: inner_offset(reason),
        },
    );
    if is_malformed(reason) {
        debug!(
            &ctx,
            "tc_pod: malformed frame of {} bytes, reason {}", len, reason.0
        );
    }
    verdict
}

/// On the node's underlay device, tcx ingress: VXLAN from peers for local pods is decapsulated and
/// handed straight to the pod. TC rather than XDP in every mode: XDP on a veth underlay would take
/// GSO away from the sending side, and an XDP frame loses the skb's checksum state, so TCP from a
/// kernel- or tc-mode peer (inner checksum left to offload) would reach the pod unverifiable.
#[classifier]
pub fn tc_underlay(ctx: TcContext) -> i32 {
    // Counted as the packet arrived, before decapsulation.
    let len = ctx.len();
    pull(&ctx, decap::HEADERS);
    let pkt = Packet::new(ctx.data(), ctx.data_end());
    // SAFETY: the context's skb pointer is valid for the program's run.
    let (arrival, ingress) = unsafe {
        let skb = &*ctx.skb.skb;
        let arrival = decap::Arrival {
            pkt_type: skb.pkt_type,
            vlan_tagged: skb.vlan_present != 0,
        };
        (arrival, skb.ingress_ifindex)
    };
    let (mut reason, action) = decap::decide(&pkt, &arrival);
    let mut target_ifindex = 0;
    let verdict = match action {
        decap::Action::Decap {
            ifindex,
            rewrite,
            ipv6,
        } => {
            target_ifindex = ifindex;
            // The packet's protocol becomes the inner one's: IPv4 already is.
            let inner = if ipv6 {
                u64::from(BPF_F_ADJ_ROOM_DECAP_L3_IPV6)
            } else {
                0
            };
            if DEVMAP.get_ifindex(ifindex).is_none() {
                reason = reasons::PASS_REDIRECT_FAILED;
                TC_ACT_OK
            } else if ctx
                .adjust_room(
                    -(OVERHEAD as i32),
                    BPF_ADJ_ROOM_MAC,
                    u64::from(BPF_F_ADJ_ROOM_FIXED_GSO) | inner,
                )
                .is_err()
            {
                reason = reasons::PASS_ADJUST_FAILED;
                TC_ACT_OK
            } else if !forward::apply(&Packet::new(ctx.data(), ctx.data_end()), &rewrite, ipv6) {
                reason = reasons::DROP_ENCAP_FAILED;
                TC_ACT_SHOT
            } else {
                // SAFETY: a helper call with plain integer arguments.
                let ret = unsafe { bpf_redirect_peer(ifindex, 0) } as i32;
                if ret == TC_ACT_REDIRECT {
                    ret
                } else {
                    reason = reasons::DROP_ENCAP_FAILED;
                    TC_ACT_SHOT
                }
            }
        }
        decap::Action::Drop => TC_ACT_SHOT,
        decap::Action::Pass => TC_ACT_OK,
    };
    counters::count(program::TC_UNDERLAY, reason, len as usize);
    monitor::report_tc(
        &ctx,
        &Decided {
            program: program::TC_UNDERLAY,
            reason,
            verdict: tc_verdict(verdict),
            ifindex: ingress,
            target_ifindex,
            inner_offset: 0,
        },
    );
    if reason == reasons::DROP_VXLAN_TRUNCATED {
        debug!(&ctx, "tc_underlay: truncated VXLAN of {} bytes", len);
    }
    verdict
}

/// The event's verdict for an XDP program's action.
#[inline(always)]
fn xdp_verdict(action: u32) -> Verdict {
    match action {
        xdp_action::XDP_PASS => Verdict::Pass,
        xdp_action::XDP_DROP => Verdict::Drop,
        _ => Verdict::Redirect,
    }
}

/// The event's verdict for a TC program's return code.
#[inline(always)]
fn tc_verdict(code: i32) -> Verdict {
    match code {
        TC_ACT_OK => Verdict::Pass,
        TC_ACT_SHOT => Verdict::Drop,
        _ => Verdict::Redirect,
    }
}

/// Where the pod's packet starts in the frame a pod program leaves: behind the outer headers
/// once it is encapsulated, so that an event names the pods, not the nodes.
#[inline(always)]
fn inner_offset(reason: Reason) -> usize {
    if reason == reasons::REDIRECT_ENCAPSULATED {
        OVERHEAD
    } else {
        0
    }
}

/// IPv4 with options (the UDP port lies further in) and IPv6 that is neither TCP nor UDP (neighbour
/// discovery behind extension headers): the checks of a pod's frame read beyond the usual headers.
#[inline(always)]
fn needs_deeper_look(pkt: &Packet) -> bool {
    let Some(eth) = pkt.ptr_at::<EthHdr>(0) else {
        return false;
    };
    // SAFETY: ptr_at checked the header lies inside the frame.
    let ether_type = unsafe { (*eth).ether_type };
    if ether_type == EtherType::Ipv4 as u16 {
        // SAFETY: ptr_at checked the header lies inside the frame.
        pkt.ptr_at::<Ipv4Hdr>(EthHdr::LEN)
            .is_some_and(|ip| unsafe { (*ip).vihl } & 0x0f > 5)
    } else if ether_type == EtherType::Ipv6 as u16 {
        // SAFETY: ptr_at checked the header lies inside the frame.
        pkt.ptr_at::<Ipv6Hdr>(EthHdr::LEN).is_some_and(|ip| {
            let next = unsafe { (*ip).next_hdr };
            next != IpProto::Tcp as u8 && next != IpProto::Udp as u8
        })
    } else {
        false
    }
}

/// Frames worth a debug message: rare in normal traffic, and a sign of a broken sender.
#[inline(always)]
fn is_malformed(reason: Reason) -> bool {
    reason == reasons::PASS_TRUNCATED
        || reason == reasons::PASS_IPV4_MALFORMED
        || reason == reasons::DROP_POD_IPV4_MALFORMED
        || reason == reasons::DROP_POD_IPV6_MALFORMED
}
