//! fastpath's eBPF programs: entry points only, the logic lives in the modules.
#![no_std]
#![no_main]

mod classify;
mod counters;
mod forward;
mod maps;
mod packet;

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, xdp_action},
    helpers::bpf_redirect_peer,
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use aya_log_ebpf::debug;
use datapath_common::reasons::{self, program};

use crate::{
    forward::{Action, Decision},
    maps::DEVMAP,
    packet::Packet,
};

/// Ethernet + IPv4 header: what the decision reads.
const HEADERS: u32 = 34;

/// On a pod's host-side veth, native XDP: redirects to local pods through the devmap.
#[xdp]
pub fn xdp_pod(ctx: XdpContext) -> u32 {
    let pkt = Packet::new(ctx.data(), ctx.data_end());
    let Decision { mut reason, action } = forward::decide(&pkt, ctx.ingress_ifindex() as u32);
    let verdict = match action {
        Action::Pass => xdp_action::XDP_PASS,
        Action::Drop => xdp_action::XDP_DROP,
        Action::Redirect { ifindex, rewrite } => {
            // Checked first: a rewritten frame must not fall back to the kernel path.
            if DEVMAP.get_ifindex(ifindex).is_none() {
                reason = reasons::PASS_REDIRECT_FAILED;
                xdp_action::XDP_PASS
            } else if rewrite.as_ref().is_some_and(|rw| !forward::apply(&pkt, rw)) {
                reason = reasons::PASS_TRUNCATED;
                xdp_action::XDP_PASS
            } else {
                DEVMAP
                    .redirect(ifindex, u64::from(xdp_action::XDP_PASS))
                    .unwrap_or(xdp_action::XDP_PASS)
            }
        }
    };
    counters::count(program::XDP_POD, reason, pkt.len());
    if is_malformed(reason) {
        debug!(
            &ctx,
            "xdp_pod: malformed frame of {} bytes, reason {}",
            pkt.len(),
            reason
        );
    }
    verdict
}

/// The same decisions through tcx ingress, where the frame is still an skb: GSO and checksum
/// offload state survive, and bpf_redirect_peer hands it straight to the pod's side.
#[classifier]
pub fn tc_pod(ctx: TcContext) -> i32 {
    if ((ctx.data_end() - ctx.data()) as u32) < HEADERS && ctx.len() >= HEADERS {
        // Headers split across fragments: make them linear so they can be read.
        let _ = ctx.pull_data(HEADERS);
    }
    let pkt = Packet::new(ctx.data(), ctx.data_end());
    // SAFETY: the context's skb pointer is valid for the program's run.
    let ingress = unsafe { (*ctx.skb.skb).ingress_ifindex };
    let Decision { mut reason, action } = forward::decide(&pkt, ingress);
    let verdict = match action {
        Action::Pass => TC_ACT_OK,
        Action::Drop => TC_ACT_SHOT,
        Action::Redirect { ifindex, rewrite } => {
            // bpf_redirect_peer cannot tell a vanished device: it drops the packet later. The
            // kernel removes a device's devmap entry when the device goes, so check there.
            if DEVMAP.get_ifindex(ifindex).is_none() {
                reason = reasons::PASS_REDIRECT_FAILED;
                TC_ACT_OK
            } else if rewrite.as_ref().is_some_and(|rw| !forward::apply(&pkt, rw)) {
                reason = reasons::PASS_TRUNCATED;
                TC_ACT_OK
            } else {
                // SAFETY: a helper call with plain integer arguments.
                let ret = unsafe { bpf_redirect_peer(ifindex, 0) } as i32;
                if ret != TC_ACT_REDIRECT {
                    reason = reasons::PASS_REDIRECT_FAILED;
                    TC_ACT_OK
                } else {
                    ret
                }
            }
        }
    };
    // skb->len counts the whole packet, also the part not in the linear area.
    counters::count(program::TC_POD, reason, ctx.len() as usize);
    if is_malformed(reason) {
        debug!(
            &ctx,
            "tc_pod: malformed frame of {} bytes, reason {}",
            ctx.len(),
            reason
        );
    }
    verdict
}

/// Frames worth a debug message: rare in normal traffic, and a sign of a broken sender.
#[inline(always)]
fn is_malformed(reason: u32) -> bool {
    reason == reasons::PASS_TRUNCATED || reason == reasons::PASS_IPV4_MALFORMED
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach this.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
