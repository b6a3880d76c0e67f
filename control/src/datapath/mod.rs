//! The eBPF datapath as the control plane drives it; the only module of the library that touches
//! aya's program and map handles (the benchmark's receiver, in `fastpath-bench`, has its own). One job per file:
//!
//! - `object`: the embedded object — its programs and the hooks they run at, its maps' names,
//!   this build's identity;
//! - `programs`: loading programs (the verifier's work): for this process alone ([`Datapath`]), or
//!   once per node or network, pinned beside its maps ([`ensure_pinned`]);
//! - `links`: pinned links per device — attach a pinned program, give a link another, list,
//!   detach;
//! - `filters`: a pinned program as a classic TC filter (what a CNI attachment uses: no RCU
//!   grace period to wait for, no link to pin);
//! - `maps`: a node's or network's maps opened from their pins with no program loaded
//!   ([`Maps::open`]), and the entries written into them (`entries`);
//! - `counters`: the per-reason counters as rows;
//! - `events`: the monitor's maps: its request, the event ring buffer, the lost-event count;
//! - `run_stats`: the kernel's run-time statistics of programs.
//!
//! A node's or network's directory under bpffs holds its maps, its programs (`prog-<hook>-<build>`)
//! and its links (`link-<hook>-<dev>-<ifindex>`): the first `up` or CNI ADD loads and pins, every
//! later one opens pins.

mod counters;
mod entries;
mod events;
mod filters;
mod links;
mod maps;
mod object;
mod programs;
mod run_stats;

pub use counters::{CounterRow, packets};
pub use entries::{EndpointEntry, OverlaySettings, Owner, PeerEntry};
pub use events::{
    MonitorMaps, clear_lapsed_request, decode_event, events_produced, monotonic_ns, open_events,
    pinned_events_lost, realtime_ns,
};
pub use filters::{attach_filter, detach_filter};
pub use links::{
    LoadedPrograms, PinnedAttach, PinnedLinkName, attach_pinned, detach_pinned, pinned_links,
    run_in_link, tcx_ingress_program_ids,
};
pub use maps::{Maps, lock_pins, maps_pinned, pinned_counters, pinned_endpoint, pinned_vxlan_port};
pub use object::{ENDPOINTS, ENDPOINTS6, Hook, PIN_ROOT, TC_POD, TC_UNDERLAY, XDP_POD};
pub use programs::{
    Datapath, Pinned, ensure_pinned, pinned_program_id, program_pin, programs_pinned,
};
pub use run_stats::{ProgramRuns, enable_run_time_stats, program_runs};
