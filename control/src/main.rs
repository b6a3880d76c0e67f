//! `fastpath`: the command-line face of the control plane.

use std::path::PathBuf;

use anyhow::bail;
use clap::{Parser, Subcommand};
use control::{
    cluster::{self, DEFAULT_PREFIX},
    commands::{self, demo::DemoOptions},
    config::Mode,
    datapath::Hook,
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
    /// Show what the programs do with packets as it happens: every dropped packet (the default),
    /// or every decision (--type trace), one line each with time, node, program, verdict and
    /// reason, pods, addresses and ports, length. The programs write events only while a monitor
    /// runs (with none, checking costs them one map read), and stop by themselves within a second
    /// of one being killed. Events the ring buffer had no room for are counted and printed (to
    /// stderr) when their number moves and at exit. One monitor per node at a time.
    Monitor {
        /// The node description the cluster was brought up with. Default: the demo cluster.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Only this node (repeat for more). Default: every node with a fast path loaded.
        #[arg(long = "node", value_name = "NODE")]
        nodes: Vec<String>,
        /// A fastpath-cni network instead of a cluster's nodes (its own maps, or those of the
        /// node it joined).
        #[arg(long, value_name = "NETWORK", conflicts_with_all = ["config", "nodes"])]
        cni: Option<String>,
        /// Where fastpath-cni keeps its records (its dataDir).
        #[arg(long, value_name = "DIR", default_value = control::cni::DEFAULT_DATA_DIR, requires = "cni")]
        cni_data_dir: PathBuf,
        /// drop: every dropped packet; trace: every decision (pass, redirect, drop), one in
        /// --sample; all: every drop and the sampled decisions.
        #[arg(long = "type", value_enum, default_value = "drop")]
        kind: control::monitor::Kind,
        /// Only events from or to this pod (its veth or its address; for --cni, the first 12
        /// characters of its container id).
        #[arg(long)]
        pod: Option<String>,
        /// Only events with this reason (the names `fastpath stats` shows, e.g. spoofed-ip).
        #[arg(long, value_parser = parse_reason)]
        reason: Option<datapath_common::reasons::Reason>,
        /// Trace one decision in N (random sampling in the programs).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        sample: u32,
        /// Bytes of each packet to capture (up to 128).
        #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(0..=128))]
        snap_len: u32,
        /// One JSON object per event instead of lines.
        #[arg(long)]
        json: bool,
        /// Also write the captured bytes to FILE as a pcap file (tcpdump -r FILE, Wireshark).
        #[arg(long, value_name = "FILE")]
        pcap: Option<PathBuf>,
        /// Stop after N events.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Stop after S seconds.
        #[arg(long, value_name = "S")]
        seconds: Option<u64>,
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
    /// The node agent: bring this node up, publish it in etcd and keep its peers converged to
    /// every other node's record: runs `fastpath-agent` (beside this binary) with these
    /// arguments. `fastpath agent --help` shows them.
    #[command(disable_help_flag = true)]
    Agent {
        /// Arguments for fastpath-agent (--config FILE, --etcd URLS, --network CIDR, --leave,
        /// --help, ...).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// A reason by the name `fastpath stats` prints.
fn parse_reason(name: &str) -> Result<datapath_common::reasons::Reason, String> {
    let reasons = datapath_common::reasons::REASONS;
    reasons
        .iter()
        .find(|r| r.name == name)
        .map(|r| r.id)
        .ok_or_else(|| {
            let names: Vec<&str> = reasons.iter().map(|r| r.name).collect();
            format!("no reason '{name}'; reasons: {}", names.join(", "))
        })
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    // exec replaces this process, so it runs before any runtime thread exists.
    if let Command::Exec { pod, command } = &cli.command {
        let e = commands::exec::run(&cli.prefix, pod, command);
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
    let prefix = &cli.prefix;
    match cli.command {
        Command::Up { config, mode } => commands::up::run(prefix, config.as_deref(), mode).await,
        Command::Down => commands::down::run(prefix).await,
        Command::Status { config, json } => {
            commands::status::run(prefix, config.as_deref(), json).await
        }
        Command::Check { config, json } => commands::check::run(prefix, config.as_deref(), json),
        Command::Stats {
            config,
            json,
            watch,
        } => commands::stats::run(prefix, config.as_deref(), json, watch).await,
        Command::Exec { .. } => unreachable!("handled before the runtime starts"),
        Command::Monitor {
            config,
            nodes,
            cni,
            cni_data_dir,
            kind,
            pod,
            reason,
            sample,
            snap_len,
            json,
            pcap,
            count,
            seconds,
        } => {
            let target = match &cni {
                Some(network) => commands::monitor::Target::Cni {
                    network,
                    data_dir: &cni_data_dir,
                },
                None => commands::monitor::Target::Nodes {
                    config: config.as_deref(),
                    prefix,
                    nodes: &nodes,
                },
            };
            let options = control::monitor::Options {
                kind,
                sample,
                snap_len,
                pod,
                reason,
                json,
                pcap,
                count,
                seconds,
            };
            commands::monitor::run(target, options).await
        }
        Command::Demo {
            hooks,
            seconds,
            rate,
            json,
        } => {
            commands::demo::run(DemoOptions {
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
        } => commands::watch::run(&dev, netns, &hooks, seconds, json, cli.ebpf_log).await,
        Command::Bench { args } => commands::sibling::run("fastpath-bench", &args),
        Command::Agent { args } => commands::sibling::run("fastpath-agent", &args),
        Command::Cleanup => commands::cleanup::run(),
    }
}
