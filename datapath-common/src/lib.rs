//! Types shared by fastpath's eBPF programs and its control plane.
//!
//! Everything that crosses the user/kernel boundary is `#[repr(C)]`, has explicit padding and is
//! `Pod`: bytes read back from a map are always a valid value (no Rust enums, no `bool`).
#![no_std]

pub mod counters;
pub mod events;
pub mod maps;
pub mod reasons;

pub use counters::{COUNTER_SLOTS, Counter, counter_index};

/// The benchmark's receive-side counter (`bench_sink`): what it counts and drops.
pub mod bench {
    /// UDP destination port of benchmark packets; `bench_sink` counts and drops exactly these.
    pub const SINK_PORT: u16 = 9009;
}
