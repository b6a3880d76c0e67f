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
mod report;
mod rows;
mod sink;
mod system;
mod tun;

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, Result};
use clap::Parser;
use serde::Serialize;

use cost::ProgramCost;
use report::Report;
use rows::Row;
use sink::BenchSink;

/// Measure every datapath under the same load, side by side: same node (loopback and a bare veth
/// pair as limits, the kernel bridge, macvlan, fastpath xdp and tc) and across nodes (kernel VXLAN,
/// fastpath xdp and tc, a userspace tun tunnel as the old baseline). Workloads: 60-byte UDP rate
/// (counted in the receiving pod, and read by a socket), TCP throughput with 1 and 4 streams, TCP
/// request/response latency. Rows run in interleaved rounds; the table shows medians (min–max) and
/// ratios against the kernel row, then what each fast-path program costs a packet (kernel BPF
/// run-time statistics, in a UDP pass of its own), then how long fastpath-cni ADD and DEL take
/// against the reference bridge plugin (CNI group: needs fastpath-cni beside this binary and
/// containernetworking-plugins), then the speed targets. Builds its own namespaces (fpbench-*) and
/// removes them, also on failure; the full run (five rounds) takes about fifteen minutes on two
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
    match runtime.block_on(run(&options)) {
        Ok(report) => print!("{}", report.render()),
        Err(e) => {
            eprintln!("fastpath bench: error: {e:#}");
            std::process::exit(1);
        }
    }
}

/// What is measured, one value per row and round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    /// 60-byte UDP frames per second reaching the receiving pod (counted by bench_sink).
    UdpRate,
    /// Busy CPU nanoseconds (whole machine) per packet of UdpRate.
    UdpCpu,
    /// UDP datagrams per second read by a socket in the receiving pod.
    UdpSocket,
    /// TCP Gbit/s, one stream.
    Tcp1,
    /// Busy CPU seconds per GB of Tcp1.
    Tcp1Cpu,
    /// TCP Gbit/s, four streams.
    Tcp4,
    /// TCP request/response (64 bytes each way) round trips per second.
    RrRate,
    RrP50,
    RrP99,
    RrP999,
}

impl Metric {
    pub const ALL: [Metric; 10] = [
        Metric::UdpRate,
        Metric::UdpCpu,
        Metric::UdpSocket,
        Metric::Tcp1,
        Metric::Tcp1Cpu,
        Metric::Tcp4,
        Metric::RrRate,
        Metric::RrP50,
        Metric::RrP99,
        Metric::RrP999,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Metric::UdpRate => "UDP Mpps",
            Metric::UdpCpu => "ns CPU/pkt",
            Metric::UdpSocket => "UDP sock Mpps",
            Metric::Tcp1 => "TCP×1 Gb/s",
            Metric::Tcp1Cpu => "s CPU/GB",
            Metric::Tcp4 => "TCP×4 Gb/s",
            Metric::RrRate => "RR k/s",
            Metric::RrP50 => "RR p50 µs",
            Metric::RrP99 => "p99 µs",
            Metric::RrP999 => "p99.9 µs",
        }
    }

    /// The value as the table shows it (Mpps, k/s; the JSON keeps raw units).
    pub fn display(self, value: f64) -> f64 {
        match self {
            Metric::UdpRate | Metric::UdpSocket => value / 1e6,
            Metric::RrRate => value / 1e3,
            _ => value,
        }
    }

    /// The unit of the raw value.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::UdpRate | Metric::UdpSocket => "packets/s",
            Metric::UdpCpu => "ns/packet",
            Metric::Tcp1 | Metric::Tcp4 => "Gbit/s",
            Metric::Tcp1Cpu => "s/GB",
            Metric::RrRate => "transactions/s",
            Metric::RrP50 | Metric::RrP99 | Metric::RrP999 => "µs",
        }
    }

    pub fn higher_is_better(self) -> bool {
        matches!(
            self,
            Metric::UdpRate | Metric::UdpSocket | Metric::Tcp1 | Metric::Tcp4 | Metric::RrRate
        )
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub round: u32,
    pub row: Row,
    pub metric: Metric,
    pub value: f64,
}

/// How long each workload runs per row and round.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Durations {
    pub warmup_ms: u64,
    pub udp_ms: u64,
    pub tcp_ms: u64,
    pub rr_ms: u64,
}

impl Durations {
    fn for_options(quick: bool) -> Self {
        if quick {
            Self {
                warmup_ms: 100,
                udp_ms: 400,
                tcp_ms: 500,
                rr_ms: 400,
            }
        } else {
            Self {
                warmup_ms: 300,
                udp_ms: 2000,
                tcp_ms: 3000,
                rr_ms: 2000,
            }
        }
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Runs every workload on `path`, appending the samples.
fn measure(
    sink: &mut BenchSink,
    path: &load::Path,
    d: &Durations,
    round: u32,
    row: Row,
    samples: &mut Vec<Sample>,
) -> Result<()> {
    let mut push = |metric, value| {
        samples.push(Sample {
            round,
            row,
            metric,
            value,
        })
    };
    // Warm-up: neighbour entries, NAPI, caches; not recorded.
    load::udp_rate(sink, path, ms(d.warmup_ms))?;
    let udp = load::udp_rate(sink, path, ms(d.udp_ms))?;
    push(Metric::UdpRate, udp.value);
    push(Metric::UdpCpu, udp.cpu);
    push(
        Metric::UdpSocket,
        load::udp_socket(path, ms(d.udp_ms))?.value,
    );
    let tcp1 = load::tcp_bulk(path, 1, ms(d.tcp_ms))?;
    push(Metric::Tcp1, tcp1.value);
    push(Metric::Tcp1Cpu, tcp1.cpu);
    push(Metric::Tcp4, load::tcp_bulk(path, 4, ms(d.tcp_ms))?.value);
    let rr = load::request_response(path, ms(d.rr_ms))?;
    push(Metric::RrRate, rr.per_second);
    push(Metric::RrP50, rr.p50_us);
    push(Metric::RrP99, rr.p99_us);
    push(Metric::RrP999, rr.p999_us);
    Ok(())
}

/// Builds the topologies, runs every row in interleaved rounds, tears everything down (also on
/// failure) and returns the report; writes `--json`/`--svg` when asked.
async fn run(options: &Options) -> Result<Report> {
    let rounds = options.rounds.unwrap_or(if options.quick { 1 } else { 5 });
    let cni_pairs = options
        .cni_pairs
        .unwrap_or(if options.quick { 5 } else { 20 });
    let durations = Durations::for_options(options.quick);
    let host = system::Host::read();
    let mut topology = rows::Topology::build()
        .await
        .context("building the benchmark's namespaces")?;
    let progress = options.progress.then(|| {
        let steps = u64::from(rounds) * Row::ALL.len() as u64
            + cost::rows().count() as u64
            + u64::from(cni_pairs) * cni::CniRow::ALL.len() as u64;
        let bar = indicatif::ProgressBar::new(steps);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg} [{elapsed}]")
                .expect("template"),
        );
        bar
    });
    let mut samples = Vec::new();
    let mut costs = Err("not reached".to_string());
    let result: Result<()> = async {
        let mut sink = BenchSink::load()?;
        for round in 0..rounds {
            for row in Row::ALL {
                if let Some(bar) = &progress {
                    bar.set_message(format!("round {} · {}", round + 1, row.name()));
                }
                let path = topology.prepare(row).await?;
                measure(&mut sink, &path, &durations, round, row, &mut samples)
                    .with_context(|| format!("benchmark row '{}'", row.name()))?;
                if let Some(bar) = &progress {
                    bar.inc(1);
                }
            }
        }
        if let Some(bar) = &progress {
            bar.set_message("program run time");
        }
        // A failure here costs the report its run-time table, not the rounds measured before it.
        costs = cost::measure(
            &mut sink,
            &mut topology,
            ms(durations.warmup_ms),
            ms(durations.udp_ms),
            || {
                if let Some(bar) = &progress {
                    bar.inc(1);
                }
            },
        )
        .await
        .map_err(|e| format!("{e:#}"));
        Ok(())
    }
    .await;
    let closed = topology.close().await;
    result?;
    closed.context("removing the benchmark's namespaces")?;
    // After the datapath rows, on a quiet machine: a CNI command is mostly process start-up and
    // netlink round trips, which the traffic rows' load would blur.
    if let Some(bar) = &progress {
        bar.set_message("CNI ADD/DEL");
    }
    let cni = cni::measure(cni_pairs, || {
        if let Some(bar) = &progress {
            bar.inc(1);
        }
    })
    .map_err(|e| format!("{e:#}"));
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let cni = cni_report::CniReport::new(cni_pairs, cni);
    let report = Report::new(host, options.quick, rounds, durations, samples, costs, cni);
    if let Some(path) = &options.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &options.svg {
        std::fs::write(path, report.svg())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report)
}
