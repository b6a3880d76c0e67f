//! fastpath's node agent: each node publishes itself in etcd, takes its pod CIDR from the
//! cluster network there, and turns every other node's record into its datapath's peers.

pub mod access;
pub mod directory;
pub mod error;
pub mod keys;
pub mod metrics;
pub mod node_file;
pub mod record;
pub mod run;
pub mod subnets;
