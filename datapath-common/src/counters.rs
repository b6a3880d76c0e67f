//! Per-CPU packet counters, indexed by (program slot, reason).

use bytemuck::{Pod, Zeroable};

use crate::reasons::{MAX_REASONS, Reason, program};

/// One counter cell: what one program counted under one reason on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for Counter {}

/// Entries in the counter array.
pub const COUNTER_SLOTS: u32 = program::SLOTS * MAX_REASONS;

/// The counter array index of (`program`, `reason`).
#[inline(always)]
pub const fn counter_index(program: u32, reason: Reason) -> u32 {
    program * MAX_REASONS + reason.0
}

const _: () = assert!(core::mem::size_of::<Counter>() == 16);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_of_different_cells_never_collide() {
        let mut seen = [false; COUNTER_SLOTS as usize];
        for p in 0..program::SLOTS {
            for r in 0..MAX_REASONS {
                let i = counter_index(p, Reason(r)) as usize;
                assert!(!seen[i], "({p}, {r}) collides");
                seen[i] = true;
            }
        }
    }
}
