//! The per-CPU counter map and the one function that writes it.

use aya_ebpf::{btf_maps::PerCpuArray, macros::btf_map};
use datapath_common::{COUNTER_SLOTS, Counter, counter_index, reasons::Reason};

#[btf_map(name = "COUNTERS_V2")]
static COUNTERS: PerCpuArray<Counter, { COUNTER_SLOTS as usize }> = PerCpuArray::new();

/// Counts one packet of `bytes` for `program` under `reason`. Per-CPU cells need no atomics.
#[inline(always)]
pub fn count(program: u32, reason: Reason, bytes: usize) {
    if let Some(cell) = COUNTERS.get_ptr_mut(counter_index(program, reason)) {
        // SAFETY: the map hands out a valid pointer to this CPU's cell.
        unsafe {
            (*cell).packets += 1;
            (*cell).bytes += bytes as u64;
        }
    }
}
