//! One benchmark run: the rows in interleaved rounds, the program cost pass and the CNI group,
//! made into a report.

use std::time::Duration;

use anyhow::{Context as _, Result};
use serde::Serialize;

use super::{
    Options, cni, cni_report, cost, load,
    metric::{Metric, Sample},
    report::Report,
    rows::{self, Row},
    sink::BenchSink,
    system,
};

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
            family: row.family(),
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
pub async fn run(options: &Options) -> Result<Report> {
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
