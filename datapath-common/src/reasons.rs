//! Why a program did what it did with a packet.
//!
//! Numbers are assigned once and never reused: a retired reason keeps its number reserved, so
//! counters read by an older `fastpath` binary still mean what it thinks they mean. Every number
//! here has an entry in [`REASONS`], which user space uses to print names.

/// The program that counted a packet: the first half of a counter's index.
pub mod program {
    /// XDP on a pod's host-side veth.
    pub const XDP_POD: u32 = 0;
    /// TC (tcx ingress) on a pod's host-side veth.
    pub const TC_POD: u32 = 1;
    /// Number of program slots the counter map has room for.
    pub const SLOTS: u32 = 8;
}

/// What became of a packet.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Handed to the kernel's own path unchanged (XDP_PASS / TC_ACT_OK).
    Pass = 0,
    /// Sent on by the fast path.
    Redirect = 1,
    /// Dropped by the fast path.
    Drop = 2,
}

/// Room for reasons per program slot (the second half of a counter's index).
pub const MAX_REASONS: u32 = 64;

pub const PASS_ARP: u32 = 1;
pub const PASS_IPV6: u32 = 2;
pub const PASS_OTHER_ETHERTYPE: u32 = 3;
pub const PASS_L2_MULTICAST: u32 = 4;
pub const PASS_TRUNCATED: u32 = 5;
pub const PASS_IPV4_OPTIONS: u32 = 6;
pub const PASS_IPV4_FRAGMENT: u32 = 7;
pub const PASS_NO_ENDPOINT: u32 = 8;
pub const PASS_IPV4_MALFORMED: u32 = 9;

/// A reason's printable name and meaning.
#[derive(Clone, Copy, Debug)]
pub struct ReasonInfo {
    pub id: u32,
    pub name: &'static str,
    pub verdict: Verdict,
    pub help: &'static str,
}

const fn reason(id: u32, name: &'static str, verdict: Verdict, help: &'static str) -> ReasonInfo {
    ReasonInfo {
        id,
        name,
        verdict,
        help,
    }
}

/// Every reason a program can count, in number order.
pub const REASONS: &[ReasonInfo] = &[
    reason(PASS_ARP, "arp", Verdict::Pass, "ARP is left to the kernel"),
    reason(
        PASS_IPV6,
        "ipv6",
        Verdict::Pass,
        "IPv6 is left to the kernel",
    ),
    reason(
        PASS_OTHER_ETHERTYPE,
        "other-ethertype",
        Verdict::Pass,
        "neither IPv4, IPv6 nor ARP (VLAN tags included)",
    ),
    reason(
        PASS_L2_MULTICAST,
        "l2-multicast",
        Verdict::Pass,
        "broadcast or multicast destination MAC",
    ),
    reason(
        PASS_TRUNCATED,
        "truncated",
        Verdict::Pass,
        "frame shorter than the headers it announces; the kernel drops it with its own reason",
    ),
    reason(
        PASS_IPV4_OPTIONS,
        "ipv4-options",
        Verdict::Pass,
        "IPv4 header with options",
    ),
    reason(
        PASS_IPV4_FRAGMENT,
        "ipv4-fragment",
        Verdict::Pass,
        "IPv4 fragment",
    ),
    reason(
        PASS_NO_ENDPOINT,
        "no-endpoint",
        Verdict::Pass,
        "IPv4 destination is not a fast-path endpoint",
    ),
    reason(
        PASS_IPV4_MALFORMED,
        "ipv4-malformed",
        Verdict::Pass,
        "IPv4 header with a bad version or header length; the kernel drops it with its own reason",
    ),
];

/// The entry for reason `id`, if there is one.
pub fn reason_info(id: u32) -> Option<&'static ReasonInfo> {
    REASONS.iter().find(|r| r.id == id)
}

/// The printable name of program slot `slot`.
pub fn program_name(slot: u32) -> Option<&'static str> {
    match slot {
        program::XDP_POD => Some("xdp_pod"),
        program::TC_POD => Some("tc_pod"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_unique_in_range_and_in_order() {
        for pair in REASONS.windows(2) {
            assert!(
                pair[0].id < pair[1].id,
                "{} then {}",
                pair[0].id,
                pair[1].id
            );
        }
        for r in REASONS {
            assert!(
                r.id != 0 && r.id < MAX_REASONS,
                "reason {} out of range",
                r.id
            );
            assert!(!r.name.is_empty() && !r.help.is_empty());
        }
    }

    #[test]
    fn every_named_program_fits_the_counter_map() {
        for slot in [program::XDP_POD, program::TC_POD] {
            assert!(slot < program::SLOTS);
            assert!(program_name(slot).is_some());
        }
    }
}
