//! Each kind of frame lands under its own reason and is passed to the kernel unchanged, in both
//! programs. Runs the loaded programs on crafted frames with BPF_PROG_TEST_RUN.

use control::datapath::{self, Datapath, Hook};
use datapath_common::reasons::*;
use tests::{
    frames::{
        self, BROADCAST, ETH_ARP, ETH_IPV4, ETH_IPV6, ETH_VLAN, IPPROTO_ICMPV6, Ipv4, PEER_MAC,
        POD_MAC,
    },
    require_root,
};

const XDP_PASS: u32 = 2;
const SRC6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const DST6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3];
const TC_ACT_OK: u32 = 0;

fn cases(hook: Hook) -> Vec<(Reason, Vec<u8>)> {
    let mut cases = vec![
        (
            PASS_FAST_PATH_OFF,
            frames::udp_frame(Ipv4::default(), b"hello"),
        ),
        (
            PASS_ARP,
            frames::ethernet(PEER_MAC, POD_MAC, ETH_ARP, &[0; 28]),
        ),
        (
            PASS_IPV6_EXTENSION,
            frames::ethernet(PEER_MAC, POD_MAC, ETH_IPV6, &[0x60; 48]),
        ),
        (
            PASS_IPV6_MALFORMED,
            frames::ethernet(PEER_MAC, POD_MAC, ETH_IPV6, &[0x50; 48]),
        ),
        (
            PASS_IPV6_FRAGMENT,
            frames::ethernet(
                PEER_MAC,
                POD_MAC,
                ETH_IPV6,
                &frames::ipv6(SRC6, DST6, 44, &[17, 0, 0, 1, 0, 0, 0, 1]),
            ),
        ),
        (
            PASS_NEIGHBOUR_DISCOVERY,
            frames::ethernet(
                PEER_MAC,
                POD_MAC,
                ETH_IPV6,
                &frames::ipv6(
                    SRC6,
                    DST6,
                    IPPROTO_ICMPV6,
                    &frames::icmpv6(SRC6, DST6, 136, &[0; 20]),
                ),
            ),
        ),
        (
            PASS_OTHER_ETHERTYPE,
            frames::ethernet(PEER_MAC, POD_MAC, ETH_VLAN, &[0; 46]),
        ),
        (PASS_L2_MULTICAST, broadcast_udp_frame()),
        (
            PASS_IPV4_OPTIONS,
            frames::udp_frame(
                Ipv4 {
                    ihl: 6,
                    ..Ipv4::default()
                },
                b"opt",
            ),
        ),
        (
            PASS_IPV4_FRAGMENT,
            frames::udp_frame(
                Ipv4 {
                    frags: 0x2000,
                    ..Ipv4::default()
                },
                b"mf",
            ),
        ),
        (
            PASS_IPV4_FRAGMENT,
            frames::udp_frame(
                Ipv4 {
                    frags: 0x0010,
                    ..Ipv4::default()
                },
                b"off",
            ),
        ),
        (
            PASS_IPV4_MALFORMED,
            frames::udp_frame(
                Ipv4 {
                    version: 6,
                    ..Ipv4::default()
                },
                b"v6?",
            ),
        ),
        (
            PASS_IPV4_MALFORMED,
            frames::udp_frame(
                Ipv4 {
                    ihl: 4,
                    ..Ipv4::default()
                },
                b"ihl",
            ),
        ),
    ];
    // An IPv4 (IPv6) ethertype with only 10 (39) bytes of header behind it. The kernel refuses to test-run
    // such an skb (EINVAL), and its stack never hands one to tc, so only XDP can see it.
    if hook == Hook::Xdp {
        cases.push((
            PASS_TRUNCATED,
            frames::ethernet(PEER_MAC, POD_MAC, ETH_IPV4, &[0x45; 10]),
        ));
        cases.push((
            PASS_TRUNCATED,
            frames::ethernet(PEER_MAC, POD_MAC, ETH_IPV6, &[0x60; 39]),
        ));
    }
    cases
}

fn broadcast_udp_frame() -> Vec<u8> {
    let mut frame = frames::udp_frame(Ipv4::default(), b"x");
    frame[..6].copy_from_slice(&BROADCAST);
    frame
}

fn every_frame_is_counted_under_its_reason(hook: Hook, pass: u32) {
    require_root();
    let mut dp = Datapath::load(None).expect("load");
    for (reason, frame) in cases(hook) {
        let before = datapath::packets(&dp.maps().counters().unwrap(), hook, reason);
        let (verdict, _) = dp
            .run_on_frame(hook, &frame)
            .unwrap_or_else(|e| panic!("{reason} ({} bytes): {e:?}", frame.len()));
        assert_eq!(
            verdict,
            pass,
            "{reason}: {} must hand the frame to the kernel",
            hook.program()
        );
        let after = datapath::packets(&dp.maps().counters().unwrap(), hook, reason);
        assert_eq!(after, before + 1, "{reason}: counted once under its reason");
    }
    let rows = dp.maps().counters().unwrap();
    let total: u64 = rows.iter().map(|r| r.packets).sum();
    assert_eq!(
        total,
        cases(hook).len() as u64,
        "nothing counted twice or elsewhere: {rows:?}"
    );
}

#[test]
fn xdp_counts_every_frame_under_its_reason_and_passes_it() {
    every_frame_is_counted_under_its_reason(Hook::Xdp, XDP_PASS);
}

#[test]
fn tc_counts_every_frame_under_its_reason_and_passes_it() {
    every_frame_is_counted_under_its_reason(Hook::Tc, TC_ACT_OK);
}
