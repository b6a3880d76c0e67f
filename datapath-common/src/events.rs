//! What `fastpath monitor` asks the programs for, and the events they write for it.
//!
//! A node's (or CNI network's) programs share one ring buffer. They write into it only while
//! [`MonitorConfig`] asks for events and its lease has not run out: a monitor renews the lease
//! while it reads, so one that was killed stops the events by itself, without anyone clearing
//! the flags.

use bytemuck::{Pod, Zeroable};

/// Most packet bytes an event carries.
pub const SNAP_MAX: u32 = 128;

/// Bytes of the ring buffer (a power of two, a multiple of the page size): about 1200 events.
pub const RING_BYTES: u32 = 256 * 1024;

/// MonitorConfig::flags: every dropped packet.
pub const MONITOR_DROPS: u32 = 1;
/// MonitorConfig::flags: every decision (drops, passes, redirects), one in `sample`.
pub const MONITOR_TRACE: u32 = 2;

/// The one entry of the monitor map: what events the programs write, and until when.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct MonitorConfig {
    /// `MONITOR_*` flags; 0 (no monitor) costs the programs this one read.
    pub flags: u32,
    /// With MONITOR_TRACE: one decision in this many is written (0 and 1: every one).
    pub sample: u32,
    /// Packet bytes copied into each event, 0..=SNAP_MAX.
    pub snap_len: u32,
    /// The monitor's process id, for `fastpath monitor` to name a reader it finds.
    pub reader_pid: u32,
    /// CLOCK_MONOTONIC nanoseconds (what bpf_ktime_get_ns reads) after which the programs write
    /// nothing, whatever `flags` says.
    pub lease_until_ns: u64,
}

/// Event::family of a frame that carries neither IPv4 nor IPv6.
pub const FAMILY_NONE: u8 = 0;
pub const FAMILY_IPV4: u8 = 4;
pub const FAMILY_IPV6: u8 = 6;

/// One packet's decision, as a program wrote it into the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct Event {
    /// CLOCK_MONOTONIC nanoseconds.
    pub time_ns: u64,
    /// FAMILY_*: which of the address fields below are set.
    pub family: u8,
    /// IP protocol (IPv6: the first next header).
    pub protocol: u8,
    /// TCP or UDP ports, host byte order; 0 for other protocols and for fragments.
    pub src_port: u16,
    pub dst_port: u16,
    pub _pad: [u8; 2],
    /// The program's slot (`reasons::program`).
    pub program: u32,
    /// `reasons::Reason` number.
    pub reason: u32,
    /// `reasons::Verdict` number.
    pub verdict: u32,
    /// The device the packet arrived on.
    pub ifindex: u32,
    /// The device it was redirected to; 0 when it was not, or when the program left the choice
    /// to the kernel (encapsulated frames leave by the underlay).
    pub target_ifindex: u32,
    /// The frame's length when the event was written (after encapsulation or decapsulation).
    pub len: u32,
    /// How many bytes of `data` hold the frame's first bytes.
    pub cap_len: u32,
    pub _pad2: u32,
    /// Addresses as in the packet: IPv4 in the first four bytes.
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
    /// The frame's first `cap_len` bytes. For an encapsulated frame the addresses above are
    /// those of the pod's packet inside it.
    pub data: [u8; SNAP_MAX as usize],
}

/// The lost-event map's value, per program slot and CPU: events a program could not write
/// because the ring buffer was full (a monitor reading too slowly).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Lost {
    pub events: u64,
}

#[cfg(feature = "user")]
mod user {
    unsafe impl aya::Pod for super::MonitorConfig {}
    unsafe impl aya::Pod for super::Lost {}
}

const _: () = assert!(core::mem::size_of::<MonitorConfig>() == 24);
const _: () = assert!(core::mem::size_of::<Event>() == 208);
const _: () = assert!(core::mem::align_of::<Event>() == 8);
