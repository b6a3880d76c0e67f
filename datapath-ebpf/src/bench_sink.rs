//! `bench_sink`: the benchmark's receiver, an object of its own (`fastpath-bench` embeds it, the
//! product does not). It counts the benchmark's UDP packets, over IPv4 or IPv6, where they enter
//! the receiving pod and drops them, so the rate measured is the datapath's, not that of a socket
//! reader on a two-core machine.
#![no_std]
#![no_main]

// The datapath's licence, linearising and bounds-checked frame access: the same sources.
#[path = "license.rs"]
mod license;
#[path = "linear.rs"]
#[allow(dead_code)]
mod linear;
#[path = "packet.rs"]
#[allow(dead_code)]
mod packet;

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    macros::{classifier, map},
    maps::PerCpuArray,
    programs::TcContext,
};
use datapath_common::bench::SINK_PORT;
use network_types::{
    eth::{EthHdr, EtherType},
    ip::{IpProto, Ipv4Hdr, Ipv6Hdr},
    udp::UdpHdr,
};

use crate::packet::Packet;

/// Packets counted, per CPU.
#[map]
static BENCH_SINK: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// On a receiving pod's interface (tcx ingress): counts and drops the benchmark's UDP packets,
/// passes everything else.
#[classifier]
pub fn bench_sink(ctx: TcContext) -> i32 {
    // Enough for the longer of the two families' headers (`pull` stops at a shorter frame).
    linear::pull(&ctx, (EthHdr::LEN + Ipv6Hdr::LEN + UdpHdr::LEN) as u32);
    sink(&Packet::new(ctx.data(), ctx.data_end()))
}

#[inline(always)]
fn sink(pkt: &Packet) -> i32 {
    let Some(eth) = pkt.ptr_at::<EthHdr>(0) else {
        return TC_ACT_OK;
    };
    // SAFETY: ptr_at checked the header lies inside the frame.
    let ether_type = unsafe { (*eth).ether_type };
    let ours = if ether_type == EtherType::Ipv4 as u16 {
        udp_over_ipv4(pkt)
    } else if ether_type == EtherType::Ipv6 as u16 {
        udp_over_ipv6(pkt)
    } else {
        false
    };
    if !ours {
        return TC_ACT_OK;
    }
    if let Some(cell) = BENCH_SINK.get_ptr_mut(0) {
        // SAFETY: this CPU's own cell.
        unsafe { *cell += 1 };
    }
    TC_ACT_SHOT
}

/// An IPv4 header without options, then UDP to the sink's port.
#[inline(always)]
fn udp_over_ipv4(pkt: &Packet) -> bool {
    let (Some(ip), Some(udp)) = (
        pkt.ptr_at::<Ipv4Hdr>(EthHdr::LEN),
        pkt.ptr_at::<UdpHdr>(EthHdr::LEN + Ipv4Hdr::LEN),
    ) else {
        return false;
    };
    // SAFETY: ptr_at checked both headers lie inside the frame.
    let (ip, udp) = unsafe { (&*ip, &*udp) };
    ip.vihl == 0x45 && ip.proto == IpProto::Udp as u8 && udp.dst == SINK_PORT.to_be_bytes()
}

/// An IPv6 header whose next header is UDP (the benchmark's senders add no extension headers),
/// then UDP to the sink's port.
#[inline(always)]
fn udp_over_ipv6(pkt: &Packet) -> bool {
    let (Some(ip), Some(udp)) = (
        pkt.ptr_at::<Ipv6Hdr>(EthHdr::LEN),
        pkt.ptr_at::<UdpHdr>(EthHdr::LEN + Ipv6Hdr::LEN),
    ) else {
        return false;
    };
    // SAFETY: ptr_at checked both headers lie inside the frame.
    let (ip, udp) = unsafe { (&*ip, &*udp) };
    ip.vcf[0] >> 4 == 6 && ip.next_hdr == IpProto::Udp as u8 && udp.dst == SINK_PORT.to_be_bytes()
}
