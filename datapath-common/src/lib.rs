//! Types shared by fastpath's eBPF programs and its control plane.
//!
//! Everything that crosses the user/kernel boundary is `#[repr(C)]`, has explicit padding and is
//! `Pod`: bytes read back from a map are always a valid value (no Rust enums, no `bool`).
#![no_std]

pub mod counters;
pub mod maps;
pub mod reasons;

pub use counters::{COUNTER_SLOTS, Counter, counter_index};
