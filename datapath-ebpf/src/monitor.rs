//! Events for `fastpath monitor`: one per dropped packet, or per decision, written into the ring
//! buffer only while a monitor asks (see `datapath_common::events`). With no monitor the cost is
//! one read of the monitor map's flags.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    btf_maps::{Array, PerCpuArray, RingBuf},
    helpers::{
        bpf_get_prandom_u32, bpf_ktime_get_ns, bpf_ringbuf_query, bpf_skb_load_bytes,
        bpf_xdp_load_bytes,
    },
    macros::btf_map,
    programs::{TcContext, XdpContext},
};
use datapath_common::{
    events::{
        Event, FAMILY_IPV4, FAMILY_IPV6, Lost, MONITOR_DROPS, MONITOR_TRACE, MonitorConfig,
        RING_BYTES, SNAP_MAX,
    },
    reasons::{Reason, Verdict, program},
};
use network_types::{
    eth::{EthHdr, EtherType},
    ip::{IpProto, Ipv4Hdr, Ipv6Hdr},
};

use crate::{classify, packet::Packet};

/// One entry: what the monitor asks for, and until when.
#[btf_map(name = "MONITOR_V1")]
static MONITOR: Array<MonitorConfig, 1> = Array::new();

/// The events, shared by the node's programs.
#[btf_map(name = "EVENTS_V1")]
static EVENTS: RingBuf<Event, { RING_BYTES as usize }> = RingBuf::new();

/// Unread event bytes at which the reader is woken. Below it, events are written without a
/// wakeup (the reader also looks every few milliseconds): a wakeup per event costs microseconds,
/// and the kernel's default wakes a reader that keeps up on every single one.
const WAKEUP_BYTES: u64 = RING_BYTES as u64 / 4;
/// What one event takes in the ring: the record and the kernel's 8-byte header.
const EVENT_BYTES: u64 = size_of::<Event>() as u64 + 8;

/// Events that found the ring buffer full, per program slot and CPU.
#[btf_map(name = "EVENTS_LOST_V1")]
static EVENTS_LOST: PerCpuArray<Lost, { program::SLOTS as usize }> = PerCpuArray::new();

/// What a program decided about one packet, for its event.
pub struct Decided {
    pub program: u32,
    pub reason: Reason,
    pub verdict: Verdict,
    pub ifindex: u32,
    /// The device the program chose to redirect to; an event names it only when the redirect
    /// was the verdict.
    pub target_ifindex: u32,
    /// Where the pod's packet starts in the frame as it is now: behind the outer headers of a
    /// frame the program encapsulated, else at 0.
    pub inner_offset: usize,
}

/// The snap length when `decided` is wanted by a monitor, none otherwise.
#[inline(always)]
fn wanted(decided: &Decided) -> Option<u32> {
    let config = MONITOR.get(0)?;
    if config.flags == 0 {
        return None;
    }
    // A lapsed request (its monitor was killed) costs this clock read until `up` or the next
    // monitor clears it.
    // SAFETY: helper calls without arguments.
    if unsafe { bpf_ktime_get_ns() } >= config.lease_until_ns {
        return None;
    }
    let drop_wanted = config.flags & MONITOR_DROPS != 0 && decided.verdict == Verdict::Drop;
    let trace_wanted = config.flags & MONITOR_TRACE != 0
        // SAFETY: as above.
        && (config.sample <= 1 || unsafe { bpf_get_prandom_u32() } % config.sample == 0);
    (drop_wanted || trace_wanted).then_some(config.snap_len)
}

/// Writes `decided`'s event for a TC program, the frame as the program leaves it.
#[inline(always)]
pub fn report_tc(ctx: &TcContext, decided: &Decided) {
    let Some(snap) = wanted(decided) else {
        return;
    };
    let len = ctx.len();
    let skb = ctx.skb.skb;
    write(
        decided,
        &Packet::new(ctx.data(), ctx.data_end()),
        len,
        snap,
        |dst, n| {
            // SAFETY: dst has room for SNAP_MAX bytes and n is at most that.
            unsafe { bpf_skb_load_bytes(skb.cast(), 0, dst.cast(), n) == 0 }
        },
    );
}

/// Writes `decided`'s event for an XDP program, the frame as the program leaves it.
#[inline(always)]
pub fn report_xdp(ctx: &XdpContext, decided: &Decided) {
    let Some(snap) = wanted(decided) else {
        return;
    };
    let pkt = Packet::new(ctx.data(), ctx.data_end());
    let len = pkt.len() as u32;
    let xdp = ctx.ctx;
    write(decided, &pkt, len, snap, |dst, n| {
        // SAFETY: dst has room for SNAP_MAX bytes and n is at most that.
        unsafe { bpf_xdp_load_bytes(xdp, 0, dst.cast(), n) == 0 }
    });
}

#[inline(always)]
fn write(
    decided: &Decided,
    pkt: &Packet,
    len: u32,
    snap: u32,
    load: impl FnOnce(*mut u8, u32) -> bool,
) {
    let Some(mut entry) = EVENTS.reserve(0) else {
        if let Some(lost) = EVENTS_LOST.get_ptr_mut(decided.program) {
            // SAFETY: this CPU's cell.
            unsafe { (*lost).events += 1 };
        }
        return;
    };
    let event = entry.as_mut_ptr();
    // The copy length must be provably 1..=SNAP_MAX to the verifier: masked, then capped.
    let want = if len < snap { len } else { snap };
    let n = if want == 0 {
        0
    } else {
        ((want - 1) & (SNAP_MAX - 1)) + 1
    };
    // SAFETY: `event` points to a reserved record of size_of::<Event>() bytes. Every field is
    // written before it is submitted; of `data`, the first `cap_len` bytes (the rest keeps what
    // an earlier record left, which readers do not look at).
    unsafe {
        (*event).time_ns = bpf_ktime_get_ns();
        (*event).program = decided.program;
        (*event).reason = decided.reason.0;
        (*event).verdict = decided.verdict as u32;
        (*event).ifindex = decided.ifindex;
        (*event).target_ifindex = if decided.verdict == Verdict::Redirect {
            decided.target_ifindex
        } else {
            0
        };
        (*event).len = len;
        let copied = n > 0 && load((&raw mut (*event).data).cast(), n);
        (*event).cap_len = if copied { n } else { 0 };
        (*event)._pad2 = 0;
        // Whole words: a byte array assignment would become a call to a byte-at-a-time memset.
        (&raw mut (*event).family).cast::<u64>().write(0);
        let addrs = (&raw mut (*event).src_addr).cast::<u64>();
        for i in 0..4 {
            addrs.add(i).write(0);
        }
        five_tuple(pkt, decided.inner_offset, event);
    }
    // Woken once, by the event that crosses the mark; a reader that does not keep up is not
    // woken again for every event after it.
    // SAFETY: the map's address, as the map helpers take it.
    let unread = unsafe {
        bpf_ringbuf_query(
            core::ptr::from_ref(&EVENTS).cast_mut().cast(),
            u64::from(BPF_RB_AVAIL_DATA),
        )
    };
    let crossing = (WAKEUP_BYTES..WAKEUP_BYTES + EVENT_BYTES).contains(&unread);
    entry.submit(u64::from(if crossing {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }));
}

/// Fills the event's addresses, protocol and ports from the headers at `offset`, as far as the
/// frame's linear part holds them; leaves them zero for anything else.
///
/// # Safety
/// `event` points to a reserved record whose address fields are zero.
#[inline(always)]
unsafe fn five_tuple(pkt: &Packet, offset: usize, event: *mut Event) {
    let Some(eth) = pkt.ptr_at::<EthHdr>(offset) else {
        return;
    };
    let l3 = offset + EthHdr::LEN;
    // SAFETY: ptr_at checked each header lies inside the frame; `event` is the caller's.
    unsafe {
        let (family, protocol, l4) = match (*eth).ether_type {
            t if t == EtherType::Ipv4 as u16 => {
                let Some(ip) = pkt.ptr_at::<Ipv4Hdr>(l3) else {
                    return;
                };
                let ip = &*ip;
                (&raw mut (*event).src_addr)
                    .cast::<[u8; 4]>()
                    .write(ip.src_addr);
                (&raw mut (*event).dst_addr)
                    .cast::<[u8; 4]>()
                    .write(ip.dst_addr);
                let fragment = u16::from_be_bytes(ip.frags) & classify::IPV4_OFFSET != 0;
                match classify::ipv4_header_len(ip) {
                    Some(header) if !fragment => (FAMILY_IPV4, ip.proto, Some(l3 + header)),
                    _ => (FAMILY_IPV4, ip.proto, None),
                }
            }
            t if t == EtherType::Ipv6 as u16 => {
                let Some(ip) = pkt.ptr_at::<Ipv6Hdr>(l3) else {
                    return;
                };
                copy_address(&raw mut (*event).src_addr, &raw const (*ip).src_addr);
                copy_address(&raw mut (*event).dst_addr, &raw const (*ip).dst_addr);
                (FAMILY_IPV6, (*ip).next_hdr, Some(l3 + Ipv6Hdr::LEN))
            }
            _ => return,
        };
        (*event).family = family;
        (*event).protocol = protocol;
        let ported = protocol == IpProto::Tcp as u8 || protocol == IpProto::Udp as u8;
        if let (true, Some(l4)) = (ported, l4)
            && let Some(ports) = pkt.ptr_at::<[u8; 4]>(l4)
        {
            let ports = &*ports;
            (*event).src_port = u16::from_be_bytes([ports[0], ports[1]]);
            (*event).dst_port = u16::from_be_bytes([ports[2], ports[3]]);
        }
    }
}

/// Copies an IPv6 address in two words.
///
/// # Safety
/// Both point to 16 valid bytes; `dst` is 8-byte aligned.
#[inline(always)]
unsafe fn copy_address(dst: *mut [u8; 16], src: *const [u8; 16]) {
    let (dst, src) = (dst.cast::<u64>(), src.cast::<u64>());
    // SAFETY: the caller's guarantee.
    unsafe {
        dst.write(src.read_unaligned());
        dst.add(1).write(src.add(1).read_unaligned());
    }
}
