//! The programs' counters, one cell per program and reason, as rows a person or a script reads.

use std::borrow::Borrow;

use aya::maps::{MapData, PerCpuArray};
use datapath_common::{
    COUNTER_SLOTS, Counter, counter_index,
    reasons::{self, MAX_REASONS, Reason, program},
};
use serde::{Serialize, Serializer};

use super::object::{COUNTERS, Hook};
use crate::error::DatapathError;

/// One counter cell summed over all CPUs.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CounterRow {
    pub program: &'static str,
    #[serde(serialize_with = "reason_name")]
    pub reason: Reason,
    pub verdict: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

fn reason_name<S: Serializer>(reason: &Reason, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(reason.name())
}

/// Every counter cell that has counted something, summed over CPUs.
pub(super) fn counter_rows<T: Borrow<MapData>>(
    counters: &PerCpuArray<T, Counter>,
) -> Result<Vec<CounterRow>, DatapathError> {
    let mut rows = Vec::new();
    for slot in 0..program::SLOTS {
        for reason in 0..MAX_REASONS {
            let reason = Reason(reason);
            let index = counter_index(slot, reason);
            debug_assert!(index < COUNTER_SLOTS);
            let per_cpu = counters
                .get(&index, 0)
                .map_err(|source| DatapathError::Map {
                    map: COUNTERS,
                    source,
                })?;
            let (packets, bytes) = per_cpu
                .iter()
                .fold((0, 0), |(p, b), c| (p + c.packets, b + c.bytes));
            if packets == 0 {
                continue;
            }
            rows.push(CounterRow {
                program: reasons::program_name(slot).unwrap_or("unknown-program"),
                reason,
                verdict: reason.info().map_or("unknown", |i| i.verdict.name()),
                packets,
                bytes,
            });
        }
    }
    Ok(rows)
}

/// The sum over `rows` of the packets `hook`'s program counted under `reason`.
pub fn packets(rows: &[CounterRow], hook: Hook, reason: Reason) -> u64 {
    rows.iter()
        .filter(|r| r.program == hook.program() && r.reason == reason)
        .map(|r| r.packets)
        .sum()
}
