//! `fastpath stats`: the pinned counters of every node, as totals or (with --watch) rates.

use std::{collections::HashMap, path::Path, time::Duration};

use anyhow::Result;
use serde::Serialize;

use crate::{cluster::Cluster, config::NodeConfig, datapath, guard, report};

#[derive(Serialize)]
struct NodeCounters {
    node: String,
    /// False when the node has no pinned datapath (mode kernel, or not up).
    loaded: bool,
    counters: Vec<CounterLine>,
    /// Maps are pinned, but not this build's (another layout): `fastpath up` replaces them.
    other_layout: bool,
    /// Events for `fastpath monitor` each program could not write (a full ring buffer), by
    /// program, since the node's maps were made.
    monitor_events_lost: HashMap<&'static str, u64>,
}

/// A counter as `stats` shows it: a program's, or the guard's (whose reasons are its rules).
#[derive(Serialize)]
struct CounterLine {
    program: &'static str,
    reason: &'static str,
    verdict: &'static str,
    packets: u64,
    bytes: u64,
}

impl From<datapath::CounterRow> for CounterLine {
    fn from(row: datapath::CounterRow) -> Self {
        Self {
            program: row.program,
            reason: row.reason.name(),
            verdict: row.verdict,
            packets: row.packets,
            bytes: row.bytes,
        }
    }
}

fn read(cluster: &Cluster) -> Result<Vec<NodeCounters>> {
    let mut nodes = Vec::new();
    for node in &cluster.config.nodes {
        let dir = cluster.pin_dir(node);
        let loaded = datapath::maps_pinned(&dir);
        let (mut counters, monitor_events_lost): (Vec<CounterLine>, _) = if loaded {
            (
                datapath::pinned_counters(&dir)?
                    .into_iter()
                    .map(CounterLine::from)
                    .collect(),
                datapath::pinned_events_lost(&dir)?.into_iter().collect(),
            )
        } else {
            (Vec::new(), HashMap::new())
        };
        counters.extend(guard_rows(cluster, node)?);
        nodes.push(NodeCounters {
            node: node.name.clone(),
            loaded,
            other_layout: !loaded && dir.exists(),
            counters,
            monitor_events_lost,
        });
    }
    Ok(nodes)
}

/// What the node's kernel-path guard dropped, as counter rows of a program called `nft-guard`.
fn guard_rows(cluster: &Cluster, node: &NodeConfig) -> Result<Vec<CounterLine>> {
    let table = guard::table_name(cluster.prefix());
    let counters = guard::counters(&cluster.node_netns(node), &table)?.unwrap_or_default();
    Ok(counters
        .into_iter()
        .filter(|c| c.packets > 0)
        .map(|c| CounterLine {
            program: guard::PROGRAM,
            reason: c.reason,
            verdict: "drop",
            packets: c.packets,
            bytes: c.bytes,
        })
        .collect())
}

pub async fn run(prefix: &str, config: Option<&Path>, json: bool, watch: bool) -> Result<()> {
    let cluster = super::load_cluster(config, prefix)?;
    let mut previous: HashMap<(String, &'static str, &'static str), u64> = HashMap::new();
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    loop {
        let nodes = read(&cluster)?;
        if json {
            println!("{}", serde_json::to_string(&nodes)?);
        } else {
            let mut rows = Vec::new();
            for n in &nodes {
                if !n.loaded {
                    let why = if n.other_layout {
                        "(maps pinned by a fastpath with another layout: `fastpath up` replaces them)"
                    } else {
                        "(no fast path loaded)"
                    };
                    rows.push(vec![n.node.clone(), "-".into(), "-".into(), why.into()]);
                }
                for c in &n.counters {
                    let key = (n.node.clone(), c.program, c.reason);
                    let mut row = vec![
                        n.node.clone(),
                        c.program.to_string(),
                        c.verdict.to_string(),
                        c.reason.to_string(),
                        c.packets.to_string(),
                        c.bytes.to_string(),
                    ];
                    if watch {
                        let rate = c
                            .packets
                            .saturating_sub(previous.get(&key).copied().unwrap_or(c.packets));
                        row.push(format!("{rate}/s"));
                    }
                    previous.insert(key, c.packets);
                    rows.push(row);
                }
            }
            let mut header = vec!["NODE", "PROGRAM", "VERDICT", "REASON", "PACKETS", "BYTES"];
            if watch {
                header.push("RATE");
            }
            print!("{}", report::table(&header, &rows, 4));
            for n in &nodes {
                let mut lost: Vec<_> = n
                    .monitor_events_lost
                    .iter()
                    .filter(|&(_, &count)| count > 0)
                    .collect();
                lost.sort();
                for (program, count) in lost {
                    println!(
                        "{}: {program} could not write {count} monitor events (the ring buffer was full)",
                        n.node
                    );
                }
            }
        }
        if !watch {
            return Ok(());
        }
        println!();
        tokio::select! {
            _ = ticks.tick() => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
