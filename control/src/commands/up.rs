//! `fastpath up`: brings the cluster to what the node description asks for, then prints what
//! changed and how to reach each pod.

use std::path::Path;

use anyhow::Result;

use crate::{
    cluster::{self, Cluster},
    config::Mode,
};

pub async fn run(prefix: &str, config: Option<&Path>, mode: Option<Mode>) -> Result<()> {
    let mut cluster = super::load_cluster(config, prefix)?;
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
        let addresses: Vec<String> = pod.addresses().iter().map(ToString::to_string).collect();
        println!(
            "  {:<6} {:<30} node {:<4} netns {}",
            pod.name,
            addresses.join(" "),
            node.name,
            cluster.pod_netns(node, pod).label()
        );
    }
    if let [(_, first), .., (_, last)] = all.as_slice()
        && let Some(to) = last.addresses().first()
    {
        println!("\ntry: fastpath exec {} -- ping -c 3 {to}", first.name);
    }
}
