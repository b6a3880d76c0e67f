//! `fastpath monitor`: which nodes' (or which CNI network's) events to read, then the monitor
//! engine (`crate::monitor`) and its last line.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use crate::{
    cluster::Cluster,
    cni, datapath,
    monitor::{self, Options, PodName, Source},
    netns::Netns,
};

/// Where to read events from: a cluster's nodes, or one CNI network.
pub enum Target<'a> {
    Nodes {
        config: Option<&'a Path>,
        prefix: &'a str,
        nodes: &'a [String],
    },
    Cni {
        network: &'a str,
        data_dir: &'a Path,
    },
}

pub async fn run(target: Target<'_>, options: Options) -> Result<()> {
    let sources = match target {
        Target::Nodes {
            config,
            prefix,
            nodes,
        } => node_sources(&super::load_cluster(config, prefix)?, nodes)?,
        Target::Cni { network, data_dir } => vec![cni_source(network, data_dir).await?],
    };
    let summary = monitor::run(sources, options).await?;
    eprintln!(
        "monitor: {} events shown, {} lost",
        summary.shown, summary.lost
    );
    Ok(())
}

fn node_sources(cluster: &Cluster, wanted: &[String]) -> Result<Vec<Source>> {
    for name in wanted {
        if !cluster.config.nodes.iter().any(|n| &n.name == name) {
            let known: Vec<&str> = cluster
                .config
                .nodes
                .iter()
                .map(|n| n.name.as_str())
                .collect();
            bail!(
                "no node '{name}' in the description; nodes: {}",
                known.join(", ")
            );
        }
    }
    let mut sources = Vec::new();
    for node in &cluster.config.nodes {
        if !wanted.is_empty() && !wanted.contains(&node.name) {
            continue;
        }
        let dir = cluster.pin_dir(node);
        if !datapath::maps_pinned(&dir) {
            if wanted.contains(&node.name) {
                bail!(
                    "node '{}' has no fast path loaded ({} has no maps): its events come from the programs of mode xdp or tc",
                    node.name,
                    dir.display()
                );
            }
            continue;
        }
        sources.push(Source {
            label: node.name.clone(),
            dir,
            netns: cluster.node_netns(node),
            pods: node
                .pods
                .iter()
                .map(|p| PodName {
                    name: p.name.clone(),
                    veth: Cluster::pod_veth(p),
                    addresses: p.addresses(),
                })
                .collect(),
            vxlan_port: Some(cluster.config.vxlan.port),
        });
    }
    if sources.is_empty() {
        bail!(
            "no node has a fast path loaded (under {}): bring the cluster up in mode xdp or tc",
            crate::cluster::prefix_pin_dir(cluster.prefix()).display()
        );
    }
    Ok(sources)
}

/// A CNI network's maps: its own, or those of the node it joined. Its pods are named by the
/// first 12 characters of their container ids.
async fn cni_source(network: &str, data_dir: &Path) -> Result<Source> {
    let networks = cni::show(data_dir).await?;
    let Some(view) = networks.into_iter().find(|n| n.network == network) else {
        bail!(
            "no CNI network '{network}' has attachments under {} (see --cni-data-dir)",
            data_dir.display()
        );
    };
    let dir = PathBuf::from(&view.pin_dir);
    if !datapath::maps_pinned(&dir) {
        bail!(
            "CNI network '{network}' has no fast path loaded ({} has no maps): it runs in mode kernel, or has no pod",
            dir.display()
        );
    }
    let vxlan_port = datapath::pinned_vxlan_port(&dir)
        .with_context(|| format!("reading the node settings in {}", dir.display()))?;
    Ok(Source {
        label: format!("cni:{network}"),
        pods: view
            .attachments
            .iter()
            .map(|a| PodName {
                name: a.container_id.chars().take(12).collect(),
                veth: a.host_veth.clone(),
                addresses: a
                    .address
                    .iter()
                    .filter_map(|cidr| cidr.split('/').next()?.parse().ok())
                    .collect(),
            })
            .collect(),
        dir,
        netns: Netns::host(),
        vxlan_port,
    })
}
