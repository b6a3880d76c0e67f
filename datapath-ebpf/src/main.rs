//! fastpath's eBPF programs: entry points only, the logic lives in the modules.
#![no_std]
#![no_main]

mod classify;
mod counters;
mod packet;

use aya_ebpf::{
    bindings::{TC_ACT_OK, xdp_action},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use aya_log_ebpf::debug;
use datapath_common::reasons::{self, program};

use crate::packet::Packet;

/// On a pod's host-side veth: sees every frame the pod sends, before the bridge does.
#[xdp]
pub fn xdp_pod(ctx: XdpContext) -> u32 {
    let pkt = Packet::new(ctx.data(), ctx.data_end());
    let reason = classify::classify(&pkt);
    counters::count(program::XDP_POD, reason, pkt.len());
    if is_malformed(reason) {
        debug!(
            &ctx,
            "xdp_pod: malformed frame of {} bytes, reason {}",
            pkt.len(),
            reason
        );
    }
    xdp_action::XDP_PASS
}

/// The same hook point through tcx ingress, where the frame is already an skb (GSO intact).
#[classifier]
pub fn tc_pod(ctx: TcContext) -> i32 {
    let pkt = Packet::new(ctx.data(), ctx.data_end());
    let reason = classify::classify(&pkt);
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
    TC_ACT_OK
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
