//! What fastpath's own code costs a packet: the run time of every program a fast-path row's UDP
//! packets pass, from the kernel's BPF run-time statistics. Measured in a UDP pass of its own after
//! the rounds, because the statistics add two clock reads to every program run and would slow
//! the rows they compare.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde::Serialize;

use super::{
    load,
    rows::{Family, Kind, Row, Topology},
    sink::BenchSink,
};
use control::datapath::{self, ProgramRuns};

#[derive(Clone, Debug, Serialize)]
pub struct ProgramCost {
    pub row: Row,
    pub family: Family,
    pub program: String,
    /// Mean run time, including part of the statistics' own clock reads (bench_sink, which only
    /// checks three headers and counts, bounds that from above).
    pub ns_per_run: f64,
    /// Runs per packet that reached the receiving pod; 1 when every packet passes once.
    pub runs_per_packet: f64,
}

/// The rows whose packets pass fastpath's programs, over either family.
pub fn rows() -> impl Iterator<Item = Row> {
    Row::ALL.into_iter().filter(|r| r.kind() == Kind::FastPath)
}

/// Runs UDP for `duration` on every fast-path row with run-time statistics on, and returns each
/// program's run time per run and runs per packet; `done` is called after each row.
pub async fn measure(
    sink: &mut BenchSink,
    topology: &mut Topology,
    warmup: Duration,
    duration: Duration,
    mut done: impl FnMut(),
) -> Result<Vec<ProgramCost>> {
    let _stats = datapath::enable_run_time_stats()?;
    let sink_id = sink.program_id()?;
    let mut costs = Vec::new();
    for row in rows() {
        let path = topology.prepare(row).await?;
        let mut ids = topology
            .program_ids(row)
            .await
            .with_context(|| format!("the programs of benchmark row '{}'", row.label()))?;
        if ids.is_empty() {
            bail!(
                "no program is attached on the path of benchmark row '{}'",
                row.label()
            );
        }
        ids.push(sink_id);
        load::udp_rate(sink, &path, warmup)?;
        let before = datapath::program_runs(&ids)?;
        load::udp_rate(sink, &path, duration)?;
        let after = datapath::program_runs(&ids)?;
        costs.extend(per_packet(row, &before, &after)?);
        done();
    }
    Ok(costs)
}

/// The difference of two readings, per run and per packet; packets are bench_sink's runs (the
/// last program).
fn per_packet(row: Row, before: &[ProgramRuns], after: &[ProgramRuns]) -> Result<Vec<ProgramCost>> {
    let delta = |b: &ProgramRuns, a: &ProgramRuns| {
        (
            a.run_count.saturating_sub(b.run_count),
            a.run_time_ns.saturating_sub(b.run_time_ns),
        )
    };
    let (Some(b), Some(a)) = (before.last(), after.last()) else {
        bail!("no bench_sink reading on row '{}'", row.label());
    };
    let (packets, _) = delta(b, a);
    if packets == 0 {
        bail!("bench_sink did not run on row '{}'", row.label());
    }
    before
        .iter()
        .zip(after)
        .map(|(b, a)| {
            let (runs, ns) = delta(b, a);
            if runs == 0 {
                bail!(
                    "program '{}' (id {}) did not run on row '{}': its packets did not take the \
                     fast path",
                    a.name,
                    a.id,
                    row.label()
                );
            }
            Ok(ProgramCost {
                row,
                family: row.family(),
                program: a.name.clone(),
                ns_per_run: ns as f64 / runs as f64,
                runs_per_packet: runs as f64 / packets as f64,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Readings of tc_pod (id 7) and bench_sink (id 9) after `tc_pod_runs` and `packets` more
    /// runs than the first reading, at 200 and 60 ns a run.
    fn reading(tc_pod_runs: u64, packets: u64) -> [ProgramRuns; 2] {
        let runs = |id, name: &str, count, ns| ProgramRuns {
            id,
            name: name.into(),
            run_time_ns: ns,
            run_count: count,
        };
        [
            runs(7, "tc_pod", 100 + tc_pod_runs, 5_000 + 200 * tc_pod_runs),
            runs(9, "bench_sink", 90 + packets, 900 + 60 * packets),
        ]
    }

    #[test]
    fn costs_are_per_run_and_per_sink_packet() {
        let costs = per_packet(Row::TcSame, &reading(0, 0), &reading(2_000, 1_000)).unwrap();
        assert_eq!(costs.len(), 2);
        assert_eq!(costs[0].program, "tc_pod");
        assert_eq!(costs[0].ns_per_run, 200.0);
        assert_eq!(costs[0].runs_per_packet, 2.0);
        assert_eq!(costs[1].ns_per_run, 60.0);
        assert_eq!(costs[1].runs_per_packet, 1.0);
    }

    #[test]
    fn a_program_that_did_not_run_is_an_error() {
        let err = per_packet(Row::TcSame, &reading(0, 0), &reading(0, 100)).unwrap_err();
        assert!(
            err.to_string().contains("'tc_pod' (id 7) did not run"),
            "{err}"
        );
    }
}
