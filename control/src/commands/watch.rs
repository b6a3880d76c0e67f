//! `fastpath watch`: the counting programs on a device someone else made, their counters printed
//! each second; detached on exit.

use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::{
    datapath::{Datapath, Hook},
    error::chain,
    netns::Netns,
    report,
};

pub async fn run(
    dev: &str,
    netns: Option<String>,
    hooks: &[Hook],
    seconds: Option<u64>,
    json: bool,
    ebpf_log: Option<log::Level>,
) -> Result<()> {
    let netns = netns.map_or_else(Netns::host, Netns::named);
    let mut datapath = Datapath::load(ebpf_log)?;
    for &hook in hooks {
        datapath
            .attach(hook, &netns, dev)
            .with_context(|| format!("watching {dev}"))?;
    }
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.tick().await;
    let mut elapsed = 0;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        elapsed += 1;
        let rows = datapath.maps().counters()?;
        if json {
            println!(
                "{}",
                serde_json::json!({ "second": elapsed, "counters": rows })
            );
        } else {
            println!("after {elapsed} s on {dev} (netns {}):", netns.label());
            print!("{}", report::counters_table(&rows));
        }
        if seconds.is_some_and(|s| elapsed >= s) {
            break;
        }
    }
    for e in datapath.detach_all() {
        eprintln!("fastpath: warning: {}", chain(&e));
    }
    Ok(())
}
