//! `fastpath-bench` (run as `fastpath bench`): every datapath under the same load, in one run, on
//! one machine. Rows (the datapaths) are visited in interleaved rounds — every row once, then every
//! row again — so each ratio comes from the same run sequence; the report gives medians with
//! min–max over the rounds and ratios against the kernel row of each group. A pass measures what
//! fastpath's own programs cost a packet (`cost`), a last one how long fastpath-cni's commands
//! take against the reference bridge plugin (`cni`). A binary of its own, so that `fastpath` and
//! its eBPF object carry no benchmark code (`sink`: the receiver's own object).

mod cni;
mod cni_report;
mod cost;
mod load;
mod metric;
mod monitor_load;
mod report;
mod rows;
mod run;
mod sink;
mod system;
mod tun;

use std::path::PathBuf;

use clap::Parser;

/// Measure every datapath under the same load, side by side: same node (loopback and a bare veth
/// pair as limits, the kernel bridge, macvlan, fastpath xdp and tc) and across nodes (kernel VXLAN,
/// fastpath xdp and tc, a userspace tun tunnel as the old baseline); the kernel and fastpath rows
/// run again over IPv6 between the same pods. Workloads: 60-byte UDP rate (80-byte frames over
/// IPv6; counted in the receiving pod, and read by a socket), TCP throughput with 1 and 4
/// streams, TCP request/response latency. Rows run in interleaved rounds; the table shows medians
/// (min–max) and ratios against the kernel row of the same family, each IPv6 row against the same
/// datapath over IPv4, then what each fast-path program costs a packet (kernel BPF run-time
/// statistics, in a UDP pass of its own), then how long fastpath-cni ADD and DEL take against the
/// reference bridge plugin (CNI group: needs fastpath-cni beside this binary and
/// containernetworking-plugins), then the speed targets. Builds its own namespaces (fpbench-*) and
/// removes them, also on failure; the full run (five rounds) takes over twenty minutes on two
/// CPUs, --quick about one. Needs root.
#[derive(Clone, Debug, Parser)]
#[command(name = "fastpath bench", version)]
struct Options {
    /// One short round: checks that every row and workload runs; not for comparisons.
    #[arg(long)]
    quick: bool,
    /// Rounds over all rows (default 5, or 1 with --quick).
    // Five: on a two-CPU VM a row's UDP rate spreads up to 30% between rounds and its TCP rate up
    // to 60%, and a median of five moves less than a median of three.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=20))]
    rounds: Option<u32>,
    /// ADD/DEL pairs per row of the CNI group (default 20, or 5 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=200))]
    cni_pairs: Option<u32>,
    /// Write every sample, the medians, ratios and targets as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write a chart of the ratios against the kernel rows, and of fastpath-cni's command times
    /// against the bridge plugin's (SVG).
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Show a progress bar on stderr (when it is a terminal).
    #[arg(skip)]
    progress: bool,
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let options = Options {
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        ..Options::parse()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run::run(&options)) {
        Ok(report) => print!("{}", report.render()),
        Err(e) => {
            eprintln!("fastpath bench: error: {e:#}");
            std::process::exit(1);
        }
    }
}
