//! fastpath's control plane as a library: the `fastpath` binary, the CNI plugin and the
//! integration tests all drive the datapath through it.

mod bpf_sys;
pub mod bpffs;
pub mod cluster;
pub mod cni;
pub mod commands;
pub mod config;
pub mod datapath;
pub mod error;
pub mod ethtool;
pub mod fnv;
pub mod guard;
pub mod ifname;
pub mod link_state;
pub mod mac;
pub mod monitor;
pub mod netlink;
pub mod netns;
pub mod ownership;
pub mod pod_bridge;
pub mod pod_link;
pub mod pod_veth;
pub mod reach;
pub mod report;
pub mod topology;
pub mod traffic;
