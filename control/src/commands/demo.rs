//! `fastpath demo`: two namespaces joined by a veth pair, the counting programs attached to one
//! end, a bounded UDP load across, and the counters printed as they move.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    time::Duration,
};

use anyhow::Context as _;

use crate::{
    datapath::{Datapath, Hook},
    netns::{self, OwnedNetns},
    report,
    topology::{self, Endpoint},
    traffic::{self, UdpSink},
};

/// Every namespace fastpath's demo makes starts with this, so `fastpath cleanup` can find them.
pub const DEMO_PREFIX: &str = "fp-demo-";

pub struct DemoOptions {
    pub hooks: Vec<Hook>,
    pub seconds: u64,
    pub packets_per_second: u64,
    pub json: bool,
    pub ebpf_log_level: Option<log::Level>,
}

/// Removes namespaces an earlier demo left behind (a SIGKILL, a power cut). Returns their names.
pub fn cleanup() -> anyhow::Result<Vec<String>> {
    let names = netns::list_with_prefix(DEMO_PREFIX).context("listing /run/netns")?;
    for name in &names {
        netns::Netns::named(name.clone()).delete()?;
    }
    Ok(names)
}

pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    let leftovers = cleanup()?;
    if !leftovers.is_empty() {
        eprintln!(
            "removed leftovers of an earlier demo: {}",
            leftovers.join(", ")
        );
    }
    let ns_a = OwnedNetns::create(format!("{DEMO_PREFIX}a"))?;
    let ns_b = OwnedNetns::create(format!("{DEMO_PREFIX}b"))?;
    let a = Endpoint {
        netns: ns_a.netns().clone(),
        dev: "fp-demo-a".into(),
        addr: Ipv4Addr::new(198, 18, 0, 1),
    };
    let b = Endpoint {
        netns: ns_b.netns().clone(),
        dev: "fp-demo-b".into(),
        addr: Ipv4Addr::new(198, 18, 0, 2),
    };
    for ns in [&a.netns, &b.netns] {
        topology::create_namespace(ns).await?;
    }
    topology::connect(&a, &b, 30).await?;

    let mut datapath = Datapath::load(opts.ebpf_log_level)?;
    for &hook in &opts.hooks {
        datapath.attach(hook, &b.netns, &b.dev)?;
    }
    if !opts.json {
        println!(
            "demo: netns {} ({} {}) <-veth-> netns {} ({} {})",
            a.netns.label(),
            a.dev,
            a.addr,
            b.netns.label(),
            b.dev,
            b.addr
        );
        for hook in &opts.hooks {
            let how = match hook {
                Hook::Xdp => "native XDP",
                Hook::Tc | Hook::TcUnderlay => "tcx ingress",
            };
            println!(
                "attached {} ({how}) to {} in netns {}",
                hook.program(),
                b.dev,
                b.netns.label()
            );
        }
        println!(
            "sending {} UDP datagrams a second from {} to {} for {} s (Ctrl-C stops)\n",
            opts.packets_per_second, a.addr, b.addr, opts.seconds
        );
    }

    let sink = UdpSink::bind(&b.netns, SocketAddrV4::new(b.addr, 0))?;
    let mut sent = 0;
    for second in 1..=opts.seconds {
        let tick = tokio::time::sleep(Duration::from_secs(1));
        sent += traffic::send_udp(
            &a.netns,
            a.addr,
            sink.local_addr(),
            opts.packets_per_second,
            64,
            Duration::from_millis(500),
        )?;
        let delivered = sink.wait_for(sent, Duration::from_millis(200));
        let rows = datapath.maps().counters()?;
        if opts.json {
            let line = serde_json::json!({ "second": second, "sent": sent, "delivered": delivered, "counters": rows });
            println!("{line}");
        } else {
            println!("after {second} s: {sent} sent, {delivered} delivered");
            print!("{}", report::counters_table(&rows));
            println!();
        }
        tokio::select! {
            _ = tick => {}
            _ = tokio::signal::ctrl_c() => break,
        }
    }

    let errors = datapath.detach_all();
    if let Some(e) = errors.into_iter().next() {
        return Err(e.into());
    }
    if !opts.json {
        println!(
            "detached; removing netns {} and {}",
            a.netns.label(),
            b.netns.label()
        );
    }
    Ok(())
}
