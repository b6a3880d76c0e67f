//! `fastpath`: the command-line face of the control plane.

mod stats;

use std::{os::unix::process::CommandExt as _, path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use control::{
    cluster::{self, Cluster, DEFAULT_PREFIX},
    config::{ClusterConfig, Mode},
    datapath::{Datapath, Hook},
    demo::{self, DemoOptions},
    netns::Netns,
    ownership::Ownership,
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

    /// Prefix of every namespace fastpath creates (`<prefix><node>`, `<prefix><node>-<pod>`).
    /// Separate prefixes keep separate clusters (and test runs) apart.
    #[arg(long, global = true, default_value = DEFAULT_PREFIX, value_name = "PREFIX", value_parser = cluster::check_prefix)]
    prefix: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create or correct everything the node description asks for: namespaces, bridge, VXLAN
    /// device, pods, routes, programs, and each node's nftables guard (pod isolation on the
    /// kernel path; needs nft). Running it again changes only what differs. Without --config it
    /// builds the demo cluster: two simulated nodes with two pods each.
    Up {
        /// The node description (TOML; see the README). Default: the embedded demo cluster.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Run every node in this datapath mode, whatever the file says. On a running cluster
        /// this switches modes in place, without recreating pods or dropping traffic.
        #[arg(long, value_enum)]
        mode: Option<Mode>,
    },
    /// Remove everything fastpath created under --prefix, and nothing else. Safe when nothing is up.
    Down,
    /// Show nodes, pods, devices, addresses, MTUs, mode, attached programs and each node's
    /// nftables guard as they are now.
    Status {
        /// The node description the cluster was brought up with. Default: the demo cluster.
        #[arg(long)]
        config: Option<PathBuf>,
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Send one ICMP echo from every pod to every other and show which answered, with the
    /// round-trip time. Exits 1 when any pair cannot reach the other.
    Check {
        /// The node description the cluster was brought up with. Default: the demo cluster.
        #[arg(long)]
        config: Option<PathBuf>,
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Packet counters of every node's programs, by program and reason, read from the pinned
    /// maps (so any process can read them, while the datapath keeps running), and what each
    /// node's nftables guard dropped (program nft-guard).
    Stats {
        /// The node description the cluster was brought up with. Default: the demo cluster.
        #[arg(long)]
        config: Option<PathBuf>,
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
        /// Print every second with rates, until Ctrl-C.
        #[arg(long)]
        watch: bool,
    },
    /// Run a command inside a pod's network namespace: `fastpath exec a1 -- ping 198.18.2.2`.
    Exec {
        /// The pod's name.
        pod: String,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
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
    /// Measure every datapath under the same load, side by side, and fastpath-cni against the
    /// reference bridge plugin: runs `fastpath-bench` (beside this binary) with these arguments.
    /// `fastpath bench --help` shows them.
    #[command(disable_help_flag = true)]
    Bench {
        /// Arguments for fastpath-bench (--quick, --rounds N, --cni-pairs N, --json FILE,
        /// --svg FILE, --help).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    // exec replaces this process, so it runs before any runtime thread exists.
    if let Command::Exec { pod, command } = &cli.command {
        let e = exec_in_pod(&cli.prefix, pod, command);
        eprintln!("fastpath: error: {e:#}");
        std::process::exit(1);
    }
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
        Command::Up { config, mode } => {
            let mut cluster = Cluster::new(ClusterConfig::load(config.as_deref())?, &cli.prefix);
            cluster.mode_override = mode;
            let changes = cluster::up(&cluster).await?;
            if changes.is_empty() {
                println!("nothing to change: the cluster already matches the config");
            } else {
                println!("{} changes:", changes.len());
                for change in &changes {
                    println!("  {change}");
                }
            }
            print_reachability(&cluster);
            Ok(())
        }
        Command::Down => {
            let removed = cluster::down(&Ownership::new(&cli.prefix)).await?;
            if removed.is_empty() {
                println!("nothing to remove");
            } else {
                println!("removed {}", removed.join(", "));
            }
            Ok(())
        }
        Command::Status { config, json } => {
            let cluster = Cluster::new(ClusterConfig::load(config.as_deref())?, &cli.prefix);
            let status = cluster::status(&cluster).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", cluster::render_status(&status));
            }
            Ok(())
        }
        Command::Check { config, json } => {
            let cluster = Cluster::new(ClusterConfig::load(config.as_deref())?, &cli.prefix);
            check(&cluster, json)
        }
        Command::Stats {
            config,
            json,
            watch,
        } => {
            let cluster = Cluster::new(ClusterConfig::load(config.as_deref())?, &cli.prefix);
            stats::run(&cluster, json, watch).await
        }
        Command::Exec { .. } => unreachable!("handled before the runtime starts"),
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
        Command::Bench { args } => {
            // The benchmark is a binary of its own, so this one carries none of its code.
            let bench = std::env::current_exe()
                .context("finding this binary")?
                .with_file_name("fastpath-bench");
            let err = std::process::Command::new(&bench).args(&args).exec();
            bail!(
                "running {}: {err} (it is built beside fastpath: `cargo xtask build`)",
                bench.display()
            )
        }
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

fn check(cluster: &Cluster, json: bool) -> anyhow::Result<()> {
    let probes = control::reach::check_all(cluster, Duration::from_secs(1));
    let failed = probes.iter().filter(|p| p.rtt_us.is_none()).count();
    if json {
        println!("{}", serde_json::to_string_pretty(&probes)?);
    } else {
        let rows: Vec<Vec<String>> = probes
            .iter()
            .map(|p| {
                let result = match (p.rtt_us, &p.error) {
                    (Some(us), _) => format!("ok {:.3} ms", us as f64 / 1000.0),
                    (None, Some(e)) => format!("FAILED: {e}"),
                    (None, None) => "FAILED: no reply within 1 s".into(),
                };
                vec![
                    p.from.clone(),
                    format!("{} ({})", p.to, p.to_address),
                    result,
                ]
            })
            .collect();
        print!("{}", report::table(&["FROM", "TO", "ICMP ECHO"], &rows, 3));
        println!(
            "{} of {} pod pairs reachable",
            probes.len() - failed,
            probes.len()
        );
    }
    if failed > 0 {
        bail!(
            "{failed} of {} pod pairs cannot reach each other",
            probes.len()
        );
    }
    Ok(())
}

/// How to reach every pod, for the end of `up`.
fn print_reachability(cluster: &Cluster) {
    println!("\npods:");
    let all: Vec<_> = cluster
        .config
        .nodes
        .iter()
        .flat_map(|n| n.pods.iter().map(move |p| (n, p)))
        .collect();
    for (node, pod) in &all {
        println!(
            "  {:<6} {:<15} node {:<4} netns {}",
            pod.name,
            pod.address,
            node.name,
            cluster.pod_netns(node, pod).label()
        );
    }
    if let [(_, first), .., (_, last)] = all.as_slice() {
        println!(
            "\ntry: fastpath exec {} -- ping -c 3 {}",
            first.name, last.address
        );
    }
}

/// Enters the namespace of `pod` and replaces this process with `command`. Returns only on error.
fn exec_in_pod(prefix: &str, pod: &str, command: &[String]) -> anyhow::Error {
    let ownership = Ownership::new(prefix);
    let candidates: Vec<String> = match ownership.claimed_netns() {
        Ok(names) => names
            .into_iter()
            .filter(|n| n.ends_with(&format!("-{pod}")))
            .collect(),
        Err(e) => return anyhow::anyhow!("reading fastpath's ownership records: {e}"),
    };
    let netns = match candidates.as_slice() {
        [one] => Netns::named(one.clone()),
        [] => {
            return anyhow::anyhow!(
                "no pod '{pod}' is up under prefix '{prefix}' (see `fastpath status`)"
            );
        }
        many => return anyhow::anyhow!("pod name '{pod}' is ambiguous: {}", many.join(", ")),
    };
    let guard = match netns.enter() {
        Ok(guard) => guard,
        Err(e) => return e.into(),
    };
    // The guard is never dropped: the process becomes `command` inside the namespace.
    std::mem::forget(guard);
    let err = std::process::Command::new(&command[0])
        .args(&command[1..])
        .exec();
    anyhow::anyhow!("running '{}' in pod {pod}: {err}", command[0])
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
        eprintln!("fastpath: warning: {}", control::error::chain(&e));
    }
    Ok(())
}
