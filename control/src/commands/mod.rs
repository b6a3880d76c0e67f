//! The `fastpath` commands, one module each: what a command does and what it prints. The binary
//! parses the arguments and calls one of them.

pub mod check;
pub mod cleanup;
pub mod demo;
pub mod down;
pub mod exec;
pub mod monitor;
pub mod sibling;
pub mod stats;
pub mod status;
pub mod up;
pub mod watch;

use std::path::Path;

use crate::{cluster::Cluster, config::ClusterConfig};

/// The cluster `config` describes (the demo cluster without one), named under `prefix`.
fn load_cluster(config: Option<&Path>, prefix: &str) -> anyhow::Result<Cluster> {
    Ok(Cluster::new(ClusterConfig::load(config)?, prefix))
}
