//! The first programs, loaded for real: they count what crosses a veth, by reason, and leave no
//! trace on the device once detached.

use std::{net::SocketAddrV4, time::Duration};

use control::{
    datapath::{self, Datapath, Hook},
    error::DatapathError,
    netlink::Netlink,
    traffic::{self, UdpSink},
};
use datapath_common::reasons::*;
use tests::{VethPair, runtime};

const SENT: u64 = 300;

/// Sends SENT datagrams a → b with `hook`'s program on b's veth; returns what it counted.
fn count_udp_through(hook: Hook) {
    let rt = runtime();
    let net = VethPair::new(&rt, &format!("count-{hook:?}").to_lowercase());
    let mut dp = Datapath::load(None).expect("load");
    dp.attach(hook, &net.b.netns, &net.b.dev).expect("attach");

    let sink = UdpSink::bind(&net.b.netns, SocketAddrV4::new(net.b.addr, 0)).expect("sink");
    let sent = traffic::send_udp(
        &net.a.netns,
        net.a.addr,
        sink.local_addr(),
        SENT,
        100,
        Duration::from_secs(5),
    )
    .expect("send");
    assert_eq!(sent, SENT);
    // The datagrams really crossed the veth: the receiver got them.
    assert_eq!(
        sink.wait_for(SENT, Duration::from_secs(5)),
        SENT,
        "datagrams delivered to b"
    );

    let rows = dp.maps().counters().expect("counters");
    let counted = datapath::packets(&rows, hook, PASS_FAST_PATH_OFF);
    assert!(
        counted >= SENT,
        "{} counted {counted} of {SENT} IPv4 packets: {rows:?}",
        hook.program()
    );
    let other = match hook {
        Hook::Xdp => Hook::Tc,
        Hook::Tc => Hook::Xdp,
        Hook::TcUnderlay => unreachable!("only pod programs are counted here"),
    };
    assert_eq!(
        rows.iter().filter(|r| r.program == other.program()).count(),
        0,
        "the program that was not attached counted nothing"
    );
    let bytes: u64 = rows
        .iter()
        .filter(|r| r.program == hook.program() && r.reason == PASS_FAST_PATH_OFF)
        .map(|r| r.bytes)
        .sum();
    // 100 bytes of payload + UDP 8 + IPv4 20 + Ethernet 14.
    assert!(bytes >= SENT * 142, "bytes {bytes}");
}

#[test]
fn xdp_program_counts_every_packet_sent_through_the_veth() {
    count_udp_through(Hook::Xdp);
}

#[test]
fn tc_program_counts_every_packet_sent_through_the_veth() {
    count_udp_through(Hook::Tc);
}

#[test]
fn detach_leaves_the_device_without_programs() {
    let rt = runtime();
    let net = VethPair::new(&rt, "detach");
    let nl = rt
        .block_on(async { Netlink::open(&net.b.netns) })
        .expect("netlink");
    let xdp_id =
        |rt: &tokio::runtime::Runtime| rt.block_on(nl.xdp_program_id(&net.b.dev)).expect("xdp id");
    let tcx_ids =
        || datapath::tcx_ingress_program_ids(&net.b.netns, &net.b.dev).expect("tcx query");

    let mut dp = Datapath::load(None).expect("load");
    dp.attach(Hook::Xdp, &net.b.netns, &net.b.dev)
        .expect("attach xdp");
    dp.attach(Hook::Tc, &net.b.netns, &net.b.dev)
        .expect("attach tc");
    assert!(
        xdp_id(&rt).is_some(),
        "netlink shows the XDP program while attached"
    );
    assert_eq!(
        tcx_ids().len(),
        1,
        "tcx ingress holds our program while attached"
    );

    dp.detach(Hook::Xdp, &net.b.netns, &net.b.dev)
        .expect("detach xdp");
    dp.detach(Hook::Tc, &net.b.netns, &net.b.dev)
        .expect("detach tc");
    assert_eq!(xdp_id(&rt), None, "no XDP program after detach");
    assert!(tcx_ids().is_empty(), "no tcx program after detach");
    // Detaching again is a no-op, not an error.
    dp.detach(Hook::Xdp, &net.b.netns, &net.b.dev)
        .expect("second detach");
}

#[test]
fn dropping_the_datapath_detaches_everything() {
    let rt = runtime();
    let net = VethPair::new(&rt, "drop");
    let nl = rt
        .block_on(async { Netlink::open(&net.b.netns) })
        .expect("netlink");
    {
        let mut dp = Datapath::load(None).expect("load");
        dp.attach(Hook::Xdp, &net.b.netns, &net.b.dev)
            .expect("attach xdp");
        dp.attach(Hook::Tc, &net.b.netns, &net.b.dev)
            .expect("attach tc");
        assert!(
            rt.block_on(nl.xdp_program_id(&net.b.dev))
                .unwrap()
                .is_some()
        );
    }
    assert_eq!(rt.block_on(nl.xdp_program_id(&net.b.dev)).unwrap(), None);
    assert!(
        datapath::tcx_ingress_program_ids(&net.b.netns, &net.b.dev)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn attaching_to_a_missing_device_fails_naming_it() {
    let rt = runtime();
    let net = VethPair::new(&rt, "missing");
    let mut dp = Datapath::load(None).expect("load");
    for hook in [Hook::Xdp, Hook::Tc] {
        let err = dp.attach(hook, &net.b.netns, "no-such-dev").unwrap_err();
        assert!(
            matches!(&err, DatapathError::DeviceNotFound { dev, .. } if dev == "no-such-dev"),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains("'no-such-dev'") && message.contains(net.b.netns.label()),
            "{message}"
        );
    }
}
