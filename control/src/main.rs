//! `fastpath`: the command-line face of the control plane.

use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use control::{
    datapath::{Datapath, Hook},
    demo::{self, DemoOptions},
    netns::Netns,
    report,
};

/// fastpath: an eBPF datapath for container networking.
///
/// It keeps the usual container topology (namespaces, veth pairs, bridge, VXLAN) and moves the
/// hot path into XDP and TC programs. Needs root (CAP_NET_ADMIN and CAP_BPF).
#[derive(Parser)]
#[command(name = "fastpath", version)]
struct Cli {
    /// Show the eBPF programs' own log messages at this level and above (error, warn, info,
    /// debug, trace). Off by default: each enabled message costs a ring-buffer write.
    #[arg(long, global = true, value_name = "LEVEL")]
    ebpf_log: Option<log::Level>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build a throwaway pair of namespaces joined by a veth, attach the counting programs to one
    /// end, send a bounded UDP load across, print the counters each second, then remove it all.
    Demo {
        /// Which programs to attach (repeat for both).
        #[arg(long = "hook", value_enum, default_values_t = [Hook::Xdp, Hook::Tc])]
        hooks: Vec<Hook>,
        /// How long to send traffic.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
        seconds: u64,
        /// Datagrams sent each second.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        rate: u64,
        /// One JSON object per second instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Attach the counting programs to an existing device and print what they count until
    /// interrupted (or for --seconds); detaches on exit. Touches only the device you name.
    Watch {
        /// The device to attach to.
        #[arg(long)]
        dev: String,
        /// The network namespace the device is in (a name under /run/netns); default: this one.
        #[arg(long)]
        netns: Option<String>,
        /// Which programs to attach (repeat for both).
        #[arg(long = "hook", value_enum, default_values_t = [Hook::Xdp, Hook::Tc])]
        hooks: Vec<Hook>,
        /// Stop after this many seconds.
        #[arg(long)]
        seconds: Option<u64>,
        /// JSON lines instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Remove namespaces that an interrupted demo left behind (names starting with fp-demo-).
    Cleanup,
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    // One thread: network namespaces are per thread, and every netlink socket is opened on it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("fastpath: error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("fastpath needs root (it creates devices and loads eBPF programs)");
    }
    match cli.command {
        Command::Demo {
            hooks,
            seconds,
            rate,
            json,
        } => {
            demo::run(DemoOptions {
                hooks,
                seconds,
                packets_per_second: rate,
                json,
                ebpf_log_level: cli.ebpf_log,
            })
            .await
        }
        Command::Watch {
            dev,
            netns,
            hooks,
            seconds,
            json,
        } => watch(&dev, netns, &hooks, seconds, json, cli.ebpf_log).await,
        Command::Cleanup => {
            let removed = demo::cleanup()?;
            if removed.is_empty() {
                println!("nothing to clean up");
            } else {
                println!("removed: {}", removed.join(", "));
            }
            Ok(())
        }
    }
}

async fn watch(
    dev: &str,
    netns: Option<String>,
    hooks: &[Hook],
    seconds: Option<u64>,
    json: bool,
    ebpf_log: Option<log::Level>,
) -> anyhow::Result<()> {
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
        let rows = datapath.counters()?;
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
        eprintln!("fastpath: warning: {e}");
    }
    Ok(())
}
