//! A network joined to a fastpath node: `"node": {"config": FILE, "name": NODE, "prefix": P}`.
//!
//! `fastpath up FILE` builds the node (bridge, VXLAN device, peers' routes, programs, pinned
//! maps); the network's pods then join that node the way its own pods are: a port of its bridge,
//! its pod MTU (the overlay MTU when VXLAN is on), addresses from its pod CIDR, and entries in
//! its pinned maps, so they reach pods on other nodes through the node's in-program VXLAN
//! encapsulation and are reached through its decapsulation. The node keeps the map entries and
//! links of its own pods and underlay, the network those of its attachments; neither touches the
//! other's (see `Datapath::sync_endpoints`, and the node's mode sync in `cluster`). The network's
//! pods ride tc_pod whatever the node's mode: it is the mode that keeps GSO and checksum offload.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use ipnet::{Ipv4Net, Ipv6Net};
use serde_json::Value;

use super::spec::{CniError, Code};
use crate::{
    cluster,
    config::{self, ClusterConfig},
};

/// What the network takes from the node it joined.
#[derive(Clone, Debug)]
pub struct JoinedNode {
    pub name: String,
    /// The node's pinned maps and links (`fastpath up` makes them; the network only adds to them).
    pub pin_dir: PathBuf,
    pub bridge: String,
    /// The node's pod CIDR and gateway, when its pods have IPv4 (a CNI pod needs it).
    pub pod_cidr: Option<Ipv4Net>,
    pub gateway: Option<Ipv4Addr>,
    pub mtu: u32,
    /// The addresses the cluster file gives the node's own pods.
    pub node_pods: Vec<Ipv4Addr>,
    /// The node's IPv6 pod prefix and gateway, when its pods are dual-stack.
    pub pod_cidr6: Option<Ipv6Net>,
    pub gateway6: Option<Ipv6Addr>,
    pub node_pods6: Vec<Ipv6Addr>,
}

fn invalid(msg: String) -> CniError {
    CniError::new(Code::InvalidConfig, msg)
}

impl JoinedNode {
    /// Reads the configuration's `"node"` object and the cluster file it names.
    pub fn from_conf(node: &Value) -> Result<Self, CniError> {
        let field = |key: &str| node.get(key).and_then(Value::as_str);
        let Some(obj) = node.as_object() else {
            return Err(invalid(format!(
                "\"node\": {node} must be an object with \"config\" and \"name\""
            )));
        };
        if let Some(key) = obj
            .keys()
            .find(|k| !["config", "name", "prefix"].contains(&k.as_str()))
        {
            return Err(invalid(format!(
                "\"node\": unknown key \"{key}\" (known: config, name, prefix)"
            )));
        }
        let file = field("config")
            .filter(|p| p.starts_with('/'))
            .map(PathBuf::from)
            .ok_or_else(|| {
                invalid("\"node\": \"config\" must be the absolute path of the cluster file `fastpath up` was given".into())
            })?;
        let name = field("name").ok_or_else(|| {
            invalid("\"node\": \"name\" must name a node of the cluster file".into())
        })?;
        let prefix = match obj.get("prefix") {
            None => cluster::DEFAULT_PREFIX.to_string(),
            Some(Value::String(p)) => cluster::check_prefix(p)
                .map_err(|e| invalid(format!("\"node\": \"prefix\" {e}")))?,
            Some(other) => {
                return Err(invalid(format!(
                    "\"node\": \"prefix\" {other} must be a string"
                )));
            }
        };
        Self::load(&file, name, &prefix)
    }

    fn load(file: &Path, name: &str, prefix: &str) -> Result<Self, CniError> {
        let cluster =
            ClusterConfig::load(Some(file)).map_err(|e| invalid(format!("\"node\": {e:#}")))?;
        let node = cluster.node(name).ok_or_else(|| {
            let names: Vec<&str> = cluster.nodes.iter().map(|n| n.name.as_str()).collect();
            invalid(format!(
                "\"node\": {} has no node '{name}' (it has {})",
                file.display(),
                names.join(", ")
            ))
        })?;
        Ok(Self {
            name: node.name.clone(),
            pin_dir: cluster::prefix_pin_dir(prefix).join(&node.name),
            bridge: node.bridge.clone(),
            pod_cidr: node.pod_cidr,
            gateway: config::node_gateway(node),
            mtu: config::node_pod_mtu(node),
            node_pods: node.pods.iter().filter_map(|p| p.address).collect(),
            pod_cidr6: node.pod_cidr6,
            gateway6: config::node_gateway6(node),
            node_pods6: node.pods.iter().filter_map(|p| p.address6).collect(),
        })
    }

    /// An address from IPAM must be one the node routes to this bridge, with the node's bridge
    /// as gateway: otherwise the kernel path (and the peers' routes) would not reach the pod.
    pub fn check_address(&self, address: Ipv4Net, gateway: Ipv4Addr) -> Result<(), CniError> {
        let Some((cidr, node_gateway)) = self.pod_cidr.zip(self.gateway) else {
            return Err(invalid(format!(
                "node '{}' has no IPv4 pod CIDR (it is IPv6-only): fastpath-cni pods need an IPv4 address",
                self.name
            )));
        };
        if !cidr.contains(&address.addr()) || address.prefix_len() != cidr.prefix_len() {
            return Err(invalid(format!(
                "IPAM gave {address}, which is not an address of node '{}''s pod CIDR {cidr}; set the IPAM range to that subnet",
                self.name
            )));
        }
        if address.addr() == node_gateway || self.node_pods.contains(&address.addr()) {
            return Err(invalid(format!(
                "IPAM gave {address}, which is node '{}''s gateway or one of its own pods' (cluster file); keep the IPAM range clear of them",
                self.name
            )));
        }
        if gateway != node_gateway {
            return Err(invalid(format!(
                "IPAM gave gateway {gateway}, but node '{}''s pods route through its bridge at {node_gateway}; set the IPAM range's gateway to it",
                self.name
            )));
        }
        Ok(())
    }

    /// The same for an IPv6 address from IPAM: inside the node's IPv6 pod prefix, no address of
    /// its own pods, the node's bridge as gateway.
    pub fn check_address6(&self, address: Ipv6Net, gateway: Ipv6Addr) -> Result<(), CniError> {
        let Some((cidr, node_gateway)) = self.pod_cidr6.zip(self.gateway6) else {
            return Err(invalid(format!(
                "IPAM gave {address}, but node '{}' has no IPv6 pod prefix (pod_cidr6): give the node one, or drop the IPv6 range",
                self.name
            )));
        };
        if !cidr.contains(&address.addr()) || address.prefix_len() != cidr.prefix_len() {
            return Err(invalid(format!(
                "IPAM gave {address}, which is not an address of node '{}''s IPv6 pod prefix {cidr}; set the IPAM range to that prefix",
                self.name
            )));
        }
        if address.addr() == cidr.network()
            || address.addr() == node_gateway
            || self.node_pods6.contains(&address.addr())
        {
            return Err(invalid(format!(
                "IPAM gave {address}, which is the node's VXLAN or gateway address or one of node '{}''s own pods' (cluster file); keep the IPAM range clear of them",
                self.name
            )));
        }
        if gateway != node_gateway {
            return Err(invalid(format!(
                "IPAM gave gateway {gateway}, but node '{}''s pods route IPv6 through its bridge at {node_gateway}; set the IPAM range's gateway to it",
                self.name
            )));
        }
        Ok(())
    }
}
