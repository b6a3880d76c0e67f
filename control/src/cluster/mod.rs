//! A cluster as fastpath builds it: the names of every namespace and device, derived from the
//! config and a name prefix, and the commands that act on it.

mod down;
mod mode;
mod status;
mod up;

pub use down::down;
pub use status::{ClusterStatus, RunningMode, render as render_status, status};
pub use up::up;

use std::path::PathBuf;

use crate::{
    config::{ClusterConfig, Mode, NodeConfig, POD_VETH_PREFIX, PodConfig, UnderlaySegment},
    datapath::PIN_ROOT,
    netns::Netns,
    ownership::Ownership,
};

/// Namespaces fastpath creates are named `<prefix><node>` and `<prefix><node>-<pod>`.
pub const DEFAULT_PREFIX: &str = "fp-";

pub struct Cluster {
    pub config: ClusterConfig,
    pub ownership: Ownership,
    /// `fastpath up --mode`: every node runs this, whatever the file says.
    pub mode_override: Option<Mode>,
    pub scope: Scope,
}

/// What one `up` owns under its prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Everything: a namespace or pin directory under the prefix that the config does not name
    /// is stale (`fastpath up`).
    Prefix,
    /// Its own nodes, their pods and pins, and nothing of other nodes under the prefix: those
    /// are other `up`s' (each node's agent). Segments are shared.
    OwnNodes,
}

impl Cluster {
    pub fn new(config: ClusterConfig, prefix: &str) -> Self {
        Self {
            config,
            ownership: Ownership::new(prefix),
            mode_override: None,
            scope: Scope::Prefix,
        }
    }

    /// The mode `node` runs in.
    pub fn mode_of(&self, node: &NodeConfig) -> Mode {
        self.mode_override
            .unwrap_or_else(|| self.config.mode_of(node))
    }

    /// Where `node`'s maps and program links are pinned: one directory per prefix, so `down`
    /// removes exactly this instance's pins.
    pub fn pin_dir(&self, node: &NodeConfig) -> PathBuf {
        prefix_pin_dir(self.prefix()).join(&node.name)
    }

    pub fn prefix(&self) -> &str {
        self.ownership.prefix()
    }

    /// The namespace `node` lives in: its own for a simulated node, else this process's.
    pub fn node_netns(&self, node: &NodeConfig) -> Netns {
        if node.simulated {
            Netns::named(format!("{}{}", self.prefix(), node.name))
        } else {
            Netns::host()
        }
    }

    /// True when fastpath owns `node`'s namespace (and so every device in it).
    pub fn owns_node_netns(&self, node: &NodeConfig) -> bool {
        node.simulated
    }

    pub fn pod_netns(&self, node: &NodeConfig, pod: &PodConfig) -> Netns {
        Netns::named(format!("{}{}-{}", self.prefix(), node.name, pod.name))
    }

    /// The namespace of an underlay segment: its bridge, and a veth end per node.
    pub fn segment_netns(&self, segment: &UnderlaySegment) -> Netns {
        Netns::named(format!("{}{}", self.prefix(), segment.name))
    }

    /// The host-side end of a pod's veth pair, in the node's namespace.
    pub fn pod_veth(pod: &PodConfig) -> String {
        format!("{POD_VETH_PREFIX}{}", pod.name)
    }

    /// Every namespace the config asks for.
    pub fn desired_netns(&self) -> Vec<String> {
        let mut names = Vec::new();
        for node in &self.config.nodes {
            if let Some(name) = self.node_netns(node).name() {
                names.push(name.to_string());
            }
            for pod in &node.pods {
                names.push(
                    self.pod_netns(node, pod)
                        .name()
                        .expect("pods are named")
                        .to_string(),
                );
            }
        }
        for segment in &self.config.underlay_segments {
            let netns = self.segment_netns(segment);
            names.push(netns.name().expect("segments are named").to_string());
        }
        names
    }
}

/// Where an instance's pins live.
pub fn prefix_pin_dir(prefix: &str) -> PathBuf {
    PathBuf::from(PIN_ROOT).join(prefix)
}

/// Checks a `--prefix`: 1-24 characters from a-z, 0-9 and '-', ending with '-', so that no
/// namespace name of one instance can be read as belonging to another.
pub fn check_prefix(prefix: &str) -> Result<String, String> {
    let ok = (1..=24).contains(&prefix.len())
        && prefix.ends_with('-')
        && !prefix.starts_with('-')
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(prefix.to_string())
    } else {
        Err(format!(
            "'{prefix}': use 1-24 characters from a-z, 0-9 and '-', ending with '-' (like fp-)"
        ))
    }
}

/// The pod interface name inside every pod namespace.
pub const POD_IFNAME: &str = "eth0";
