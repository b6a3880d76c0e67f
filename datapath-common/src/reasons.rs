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
    /// TC (tcx ingress) on the node's underlay device: VXLAN decapsulation. Slot 2 is kept for an
    /// XDP program on the underlay.
    pub const TC_UNDERLAY: u32 = 3;
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

impl Verdict {
    /// The verdict's printable name.
    pub const fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Redirect => "redirect",
            Verdict::Drop => "drop",
        }
    }

    /// The verdict with this number (as events carry it).
    pub const fn from_number(n: u32) -> Option<Self> {
        match n {
            0 => Some(Verdict::Pass),
            1 => Some(Verdict::Redirect),
            2 => Some(Verdict::Drop),
            _ => None,
        }
    }
}

/// Room for reasons per program slot (the second half of a counter's index).
pub const MAX_REASONS: u32 = 64;

/// Why a program did what it did with a packet: one of the numbers below, as a type of its own, so
/// that nothing else (a program slot, an ifindex, a verdict) can be passed or compared as one.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reason(pub u32);

impl Reason {
    /// The reason's entry in [`REASONS`] (none for a number no reason was given).
    pub fn info(self) -> Option<&'static ReasonInfo> {
        REASONS.iter().find(|r| r.id == self)
    }

    /// The reason's printable name.
    pub fn name(self) -> &'static str {
        self.info().map_or("unknown-reason", |i| i.name)
    }
}

impl core::fmt::Display for Reason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

pub const PASS_ARP: Reason = Reason(1);
/// Retired: IPv6 is forwarded now, and what is left to the kernel has reasons of its own
/// ([`PASS_NEIGHBOUR_DISCOVERY`], [`PASS_IPV6_EXTENSION`], …). The number stays reserved.
pub const PASS_IPV6: Reason = Reason(2);
pub const PASS_OTHER_ETHERTYPE: Reason = Reason(3);
pub const PASS_L2_MULTICAST: Reason = Reason(4);
pub const PASS_TRUNCATED: Reason = Reason(5);
pub const PASS_IPV4_OPTIONS: Reason = Reason(6);
pub const PASS_IPV4_FRAGMENT: Reason = Reason(7);
pub const PASS_NO_ENDPOINT: Reason = Reason(8);
pub const PASS_IPV4_MALFORMED: Reason = Reason(9);
pub const PASS_TTL_EXPIRED: Reason = Reason(10);
pub const PASS_NOT_ADDRESSED_TO_ENDPOINT: Reason = Reason(11);
pub const PASS_FAST_PATH_OFF: Reason = Reason(12);
pub const PASS_NOT_FROM_POD: Reason = Reason(13);
pub const PASS_TOO_BIG: Reason = Reason(14);
pub const PASS_UNDERLAY_NO_NEIGH: Reason = Reason(15);
pub const REDIRECT_SWITCHED: Reason = Reason(16);
pub const REDIRECT_ROUTED: Reason = Reason(17);
pub const REDIRECT_ENCAPSULATED: Reason = Reason(18);
pub const REDIRECT_DECAPSULATED: Reason = Reason(19);
pub const PASS_NOT_OVERLAY: Reason = Reason(20);
pub const PASS_OTHER_VNI: Reason = Reason(21);
pub const PASS_OVERLAY_FRAGMENT: Reason = Reason(22);
/// Retired: an inner frame not for this node's VTEP is dropped now ([`DROP_VXLAN_NOT_FOR_VTEP`]),
/// not left to the kernel's VXLAN device. The number stays reserved.
pub const PASS_NOT_FOR_VTEP: Reason = Reason(23);
pub const PASS_NO_UNDERLAY_ROUTE: Reason = Reason(24);
pub const PASS_ADJUST_FAILED: Reason = Reason(25);
pub const PASS_IPV6_EXTENSION: Reason = Reason(26);
pub const PASS_IPV6_FRAGMENT: Reason = Reason(27);
pub const PASS_IPV6_MALFORMED: Reason = Reason(28);
pub const PASS_NEIGHBOUR_DISCOVERY: Reason = Reason(29);
pub const PASS_IPV6_LINK_LOCAL: Reason = Reason(30);
pub const DROP_SPOOFED_MAC: Reason = Reason(32);
pub const DROP_SPOOFED_IP: Reason = Reason(33);
pub const PASS_REDIRECT_FAILED: Reason = Reason(34);
pub const DROP_UNKNOWN_PEER: Reason = Reason(35);
pub const DROP_VXLAN_BAD_FLAGS: Reason = Reason(36);
pub const DROP_VXLAN_TRUNCATED: Reason = Reason(37);
pub const DROP_INNER_SPOOFED: Reason = Reason(38);
pub const DROP_ENCAP_FAILED: Reason = Reason(39);
pub const DROP_POD_VLAN: Reason = Reason(40);
pub const DROP_POD_OTHER_ETHERTYPE: Reason = Reason(41);
pub const DROP_POD_IPV4_MALFORMED: Reason = Reason(42);
pub const DROP_ARP_SPOOFED: Reason = Reason(43);
pub const DROP_ARP_MALFORMED: Reason = Reason(44);
pub const DROP_POD_VXLAN: Reason = Reason(45);
pub const DROP_SPOOFED_IPV6: Reason = Reason(46);
pub const DROP_POD_IPV6_MALFORMED: Reason = Reason(47);
pub const DROP_ND_ROUTER_ADVERT: Reason = Reason(48);
pub const DROP_ND_REDIRECT: Reason = Reason(49);
pub const DROP_ND_SPOOFED: Reason = Reason(50);
pub const DROP_UNDERLAY_POD_SOURCE: Reason = Reason(51);
pub const DROP_VXLAN_VLAN: Reason = Reason(52);
pub const DROP_VXLAN_NOT_FOR_NODE: Reason = Reason(53);
pub const DROP_VXLAN_OUTER_OPTIONS: Reason = Reason(54);
pub const DROP_VXLAN_NOT_FOR_VTEP: Reason = Reason(55);
pub const DROP_VXLAN_INNER_NOT_IP: Reason = Reason(56);
pub const DROP_VXLAN_INNER_MALFORMED: Reason = Reason(57);
pub const DROP_VXLAN_NESTED: Reason = Reason(58);
pub const DROP_UNDERLAY_VLAN_DEPTH: Reason = Reason(59);

/// A reason's printable name and meaning.
#[derive(Clone, Copy, Debug)]
pub struct ReasonInfo {
    pub id: Reason,
    pub name: &'static str,
    pub verdict: Verdict,
    pub help: &'static str,
}

const fn reason(
    id: Reason,
    name: &'static str,
    verdict: Verdict,
    help: &'static str,
) -> ReasonInfo {
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
        "retired (IPv6 is forwarded; what is not has reasons of its own); no program counts it",
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
        "destination is not a fast-path endpoint (a pod on this node, or behind a peer)",
    ),
    reason(
        PASS_IPV4_MALFORMED,
        "ipv4-malformed",
        Verdict::Pass,
        "IPv4 header with a bad version or header length; the kernel drops it with its own reason",
    ),
    reason(
        PASS_TTL_EXPIRED,
        "ttl-expired",
        Verdict::Pass,
        "routed packet whose TTL or hop limit would reach zero; the kernel answers with ICMP (or \
         ICMPv6) time exceeded",
    ),
    reason(
        PASS_NOT_ADDRESSED_TO_ENDPOINT,
        "not-addressed-to-endpoint",
        Verdict::Pass,
        "IPv4 for a local pod in a frame addressed to neither that pod nor the gateway",
    ),
    reason(
        PASS_FAST_PATH_OFF,
        "fast-path-off",
        Verdict::Pass,
        "the node's fast path is switched off (or not configured yet)",
    ),
    reason(
        PASS_NOT_FROM_POD,
        "not-from-pod",
        Verdict::Pass,
        "arrived on a device that is not a registered pod veth",
    ),
    reason(
        PASS_TOO_BIG,
        "too-big-for-overlay",
        Verdict::Pass,
        "encapsulated it would exceed the underlay MTU; the kernel path fragments it or answers \
         ICMP fragmentation-needed",
    ),
    reason(
        PASS_UNDERLAY_NO_NEIGH,
        "underlay-no-neigh",
        Verdict::Pass,
        "the underlay next hop's MAC is not known yet; the kernel path resolves it (XDP only)",
    ),
    reason(
        REDIRECT_SWITCHED,
        "switched",
        Verdict::Redirect,
        "sent straight to a local pod, frame unchanged (same subnet, as the bridge would)",
    ),
    reason(
        REDIRECT_ROUTED,
        "routed",
        Verdict::Redirect,
        "sent straight to a local pod with MACs rewritten and TTL decremented, as routing would",
    ),
    reason(
        REDIRECT_ENCAPSULATED,
        "encapsulated",
        Verdict::Redirect,
        "for a remote pod: wrapped in VXLAN and sent out of the underlay device",
    ),
    reason(
        REDIRECT_DECAPSULATED,
        "decapsulated",
        Verdict::Redirect,
        "VXLAN from a known peer for a local pod: headers stripped, sent straight to the pod",
    ),
    reason(
        PASS_NOT_OVERLAY,
        "not-overlay",
        Verdict::Pass,
        "underlay traffic that is not UDP to the VXLAN port (non-first fragments included)",
    ),
    reason(
        PASS_OTHER_VNI,
        "other-vni",
        Verdict::Pass,
        "VXLAN for another VNI: not fastpath's; left to whatever device the kernel has for it",
    ),
    reason(
        PASS_OVERLAY_FRAGMENT,
        "overlay-fragment",
        Verdict::Pass,
        "first fragment of a VXLAN packet from a known peer; the kernel reassembles it",
    ),
    reason(
        PASS_NOT_FOR_VTEP,
        "not-for-vtep",
        Verdict::Pass,
        "retired (now vxlan-not-for-vtep, a drop); no program counts it",
    ),
    reason(
        PASS_NO_UNDERLAY_ROUTE,
        "no-underlay-route",
        Verdict::Pass,
        "the route lookup for the peer's underlay address failed; the kernel path reports it",
    ),
    reason(
        PASS_ADJUST_FAILED,
        "adjust-failed",
        Verdict::Pass,
        "the kernel refused to make room for the VXLAN headers (or to remove them); frame unchanged",
    ),
    reason(
        PASS_IPV6_EXTENSION,
        "ipv6-extension-headers",
        Verdict::Pass,
        "IPv6 with extension headers, or with an upper protocol other than TCP, UDP and ICMPv6",
    ),
    reason(
        PASS_IPV6_FRAGMENT,
        "ipv6-fragment",
        Verdict::Pass,
        "IPv6 fragment",
    ),
    reason(
        PASS_IPV6_MALFORMED,
        "ipv6-malformed",
        Verdict::Pass,
        "IPv6 header of another version; the kernel drops it with its own reason",
    ),
    reason(
        PASS_NEIGHBOUR_DISCOVERY,
        "neighbour-discovery",
        Verdict::Pass,
        "IPv6 neighbour discovery (solicitations, advertisements, router messages) is the \
         kernel's",
    ),
    reason(
        PASS_IPV6_LINK_LOCAL,
        "ipv6-link-local-source",
        Verdict::Pass,
        "IPv6 from a link-local (or the unspecified) address to be routed or encapsulated; the \
         kernel forwards it only back onto the link it came from",
    ),
    reason(
        DROP_SPOOFED_MAC,
        "spoofed-mac",
        Verdict::Drop,
        "a pod sent with a source MAC that is not its own",
    ),
    reason(
        DROP_SPOOFED_IP,
        "spoofed-ip",
        Verdict::Drop,
        "a pod sent IPv4 with a source address that is not its own",
    ),
    reason(
        PASS_REDIRECT_FAILED,
        "redirect-failed",
        Verdict::Pass,
        "the destination pod's device is not in the redirect map; handed to the kernel path",
    ),
    reason(
        DROP_UNKNOWN_PEER,
        "vxlan-unknown-peer",
        Verdict::Drop,
        "VXLAN for this node's VNI (or too short to show a VNI) from an underlay address that is \
         not a peer; the kernel's VXLAN device would have delivered it",
    ),
    reason(
        DROP_VXLAN_BAD_FLAGS,
        "vxlan-bad-flags",
        Verdict::Drop,
        "VXLAN header without the I flag, or with reserved bits set (RFC 7348)",
    ),
    reason(
        DROP_VXLAN_TRUNCATED,
        "vxlan-truncated",
        Verdict::Drop,
        "VXLAN from a peer that ends inside the outer UDP header (a first fragment), the VXLAN \
         header or the inner Ethernet/IPv4 header",
    ),
    reason(
        DROP_INNER_SPOOFED,
        "vxlan-inner-spoofed",
        Verdict::Drop,
        "VXLAN from a peer whose inner source is not in that peer's pod CIDR",
    ),
    reason(
        DROP_ENCAP_FAILED,
        "encap-failed",
        Verdict::Drop,
        "VXLAN headers were added or removed but the frame could not be finished or handed on; \
         it is no longer what arrived, so it cannot go to the kernel path",
    ),
    reason(
        DROP_POD_VLAN,
        "pod-vlan",
        Verdict::Drop,
        "a pod sent a VLAN-tagged frame (tag in the frame, or already taken into the packet's \
         metadata by the kernel): pods have no VLANs, and a tag would hide the frame's contents",
    ),
    reason(
        DROP_POD_OTHER_ETHERTYPE,
        "pod-other-ethertype",
        Verdict::Drop,
        "a pod sent neither IPv4, IPv6 nor ARP (802.3 length-field frames included)",
    ),
    reason(
        DROP_POD_IPV4_MALFORMED,
        "pod-ipv4-malformed",
        Verdict::Drop,
        "a pod sent IPv4 cut short, with a bad version or header length, or UDP without its header",
    ),
    reason(
        DROP_ARP_SPOOFED,
        "arp-spoofed",
        Verdict::Drop,
        "a pod sent ARP whose sender MAC or sender address is not its own (0.0.0.0 is allowed in \
         a request: an address probe)",
    ),
    reason(
        DROP_ARP_MALFORMED,
        "arp-malformed",
        Verdict::Drop,
        "a pod sent ARP that is not an Ethernet/IPv4 request or reply, or is cut short",
    ),
    reason(
        DROP_POD_VXLAN,
        "pod-vxlan",
        Verdict::Drop,
        "a pod sent UDP to the overlay's VXLAN port at an address that is no pod (a node's own \
         address): the node's VXLAN socket would decapsulate it and deliver whatever it carries",
    ),
    reason(
        DROP_SPOOFED_IPV6,
        "spoofed-ipv6",
        Verdict::Drop,
        "a pod sent IPv6 from an address that is not its own link-local (the unspecified address \
         is allowed for duplicate address detection, router solicitation and MLD reports only)",
    ),
    reason(
        DROP_POD_IPV6_MALFORMED,
        "pod-ipv6-malformed",
        Verdict::Drop,
        "a pod sent IPv6 cut short, with a bad version, with extension headers the program cannot \
         follow to the upper-layer header, or neighbour discovery in a fragment (RFC 6980)",
    ),
    reason(
        DROP_ND_ROUTER_ADVERT,
        "nd-router-advert",
        Verdict::Drop,
        "a pod sent an ICMPv6 router advertisement: pods are no routers (CVE-2020-10749)",
    ),
    reason(
        DROP_ND_REDIRECT,
        "nd-redirect",
        Verdict::Drop,
        "a pod sent an ICMPv6 redirect: pods are no routers",
    ),
    reason(
        DROP_ND_SPOOFED,
        "nd-spoofed",
        Verdict::Drop,
        "a pod sent neighbour discovery for an address that is not its own, with a link-layer \
         address option that is not its MAC, or with options the program cannot all read",
    ),
    reason(
        DROP_UNDERLAY_POD_SOURCE,
        "underlay-pod-source",
        Verdict::Drop,
        "arrived on the underlay outside VXLAN claiming the address of a pod or of the gateway: \
         other nodes' pods come only in VXLAN from their node",
    ),
    reason(
        DROP_VXLAN_VLAN,
        "vxlan-vlan-tagged",
        Verdict::Drop,
        "VXLAN to the overlay's port in a VLAN-tagged frame (this VNI, or too short to show one): \
         the overlay is untagged, and the kernel would strip priority tags after this program \
         has run",
    ),
    reason(
        DROP_VXLAN_NOT_FOR_NODE,
        "vxlan-not-for-node",
        Verdict::Drop,
        "VXLAN to the overlay's port not addressed to this node: the outer destination is not its \
         underlay address, or the frame went to a broadcast, multicast or another host's MAC",
    ),
    reason(
        DROP_VXLAN_OUTER_OPTIONS,
        "vxlan-outer-options",
        Verdict::Drop,
        "VXLAN from a peer whose outer IPv4 header has options: no VXLAN endpoint sends them",
    ),
    reason(
        DROP_VXLAN_NOT_FOR_VTEP,
        "vxlan-not-for-vtep",
        Verdict::Drop,
        "VXLAN from a peer whose inner frame is not unicast to this node's VXLAN MAC: peers route \
         to this node, they do not bridge to it",
    ),
    reason(
        DROP_VXLAN_INNER_NOT_IP,
        "vxlan-inner-not-ip",
        Verdict::Drop,
        "VXLAN from a peer whose inner frame is neither IPv4 nor IPv6 (ARP, VLAN, others)",
    ),
    reason(
        DROP_VXLAN_INNER_MALFORMED,
        "vxlan-inner-malformed",
        Verdict::Drop,
        "VXLAN from a peer whose inner IPv4 header has a bad version or header length, or whose \
         inner UDP header is cut short",
    ),
    reason(
        DROP_VXLAN_NESTED,
        "vxlan-nested",
        Verdict::Drop,
        "VXLAN from a peer carrying UDP to the overlay's port for an address that is no local pod: \
         VXLAN in VXLAN, which the node would decapsulate a second time",
    ),
    reason(
        DROP_UNDERLAY_VLAN_DEPTH,
        "underlay-vlan-depth",
        Verdict::Drop,
        "a frame on the underlay with more VLAN tags than the program looks through (three, with \
         one the kernel already took off): what it carries cannot be checked, and the kernel \
         would take off priority tags and deliver it",
    ),
];

/// The printable name of program slot `slot`.
pub fn program_name(slot: u32) -> Option<&'static str> {
    match slot {
        program::XDP_POD => Some("xdp_pod"),
        program::TC_POD => Some("tc_pod"),
        program::TC_UNDERLAY => Some("tc_underlay"),
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
                pair[0].id.0,
                pair[1].id.0
            );
        }
        for r in REASONS {
            assert!(
                r.id.0 != 0 && r.id.0 < MAX_REASONS,
                "reason {} out of range",
                r.id.0
            );
            assert!(!r.name.is_empty() && !r.help.is_empty());
        }
    }

    #[test]
    fn every_named_program_fits_the_counter_map() {
        for slot in [program::XDP_POD, program::TC_POD, program::TC_UNDERLAY] {
            assert!(slot < program::SLOTS);
            assert!(program_name(slot).is_some());
        }
    }
}
