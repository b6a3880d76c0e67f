//! Pod CIDR leases, as flannel has them: the cluster network (and the size of one node's subnet)
//! is stored once in etcd; a node without a configured pod CIDR takes the first free subnet in a
//! transaction that succeeds only if nobody holds that key yet, so two nodes starting together
//! never get the same one. A node finds its subnet again by its name after a restart, and gives it
//! back when it leaves for good.

use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::{
    error::{SubnetError, etcd},
    keys::Keys,
};

/// The cluster network: where every node's pod CIDR comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterNetwork {
    pub network: Ipv4Net,
    /// The prefix length of one node's pod CIDR.
    pub subnet_len: u8,
}

impl ClusterNetwork {
    /// Checks that `subnet_len` carves `network` into subnets of at least 4 addresses.
    pub fn new(network: Ipv4Net, subnet_len: u8) -> Result<Self, String> {
        if network.network() != network.addr() {
            return Err(format!(
                "{network} has host bits set (the network is {})",
                network.trunc()
            ));
        }
        if subnet_len < network.prefix_len() || subnet_len > 30 {
            return Err(format!(
                "a /{subnet_len} subnet does not fit {network} (use /{}../30)",
                network.prefix_len()
            ));
        }
        Ok(Self {
            network,
            subnet_len,
        })
    }
}

/// Stores `wanted` as the cluster network unless one is stored already; returns the stored one,
/// which must be `wanted` when it is given.
pub async fn ensure_network(
    client: &mut Client,
    keys: &Keys,
    wanted: Option<ClusterNetwork>,
) -> Result<ClusterNetwork, SubnetError> {
    let key = keys.network();
    if let Some(wanted) = wanted {
        let value = serde_json::to_string(&wanted).expect("serializes");
        client
            .txn(
                Txn::new()
                    .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(key.as_str(), value, None)]),
            )
            .await
            .map_err(etcd(format!("store the cluster network at {key}")))?;
    }
    let stored = client
        .get(key.as_str(), None)
        .await
        .map_err(etcd(format!("read the cluster network at {key}")))?;
    let Some(kv) = stored.kvs().first() else {
        return Err(SubnetError::NoNetwork { key });
    };
    let network: ClusterNetwork = serde_json::from_slice(kv.value())
        .map_err(|e| e.to_string())
        .and_then(|n: ClusterNetwork| ClusterNetwork::new(n.network, n.subnet_len))
        .map_err(|reason| SubnetError::BadNetwork {
            key: key.clone(),
            reason,
        })?;
    match wanted {
        Some(w) if w != network => Err(SubnetError::NetworkMismatch {
            key,
            stored: describe(&network),
            given: describe(&w),
        }),
        _ => Ok(network),
    }
}

fn describe(n: &ClusterNetwork) -> String {
    format!("{} in /{}s", n.network, n.subnet_len)
}

/// Every leased subnet and the node it is leased to.
pub async fn leases(
    client: &mut Client,
    keys: &Keys,
) -> Result<Vec<(Ipv4Net, String)>, SubnetError> {
    let listed = client
        .get(keys.subnets(), Some(GetOptions::new().with_prefix()))
        .await
        .map_err(etcd(format!("list the subnets under {}", keys.subnets())))?;
    Ok(listed
        .kvs()
        .iter()
        .filter_map(|kv| {
            let cidr = keys.subnet_of(kv.key_str().ok()?)?;
            Some((cidr, kv.value_str().ok()?.to_string()))
        })
        .collect())
}

/// The subnet leased to `node`: the one it holds already, or the first free one of `network`.
pub async fn claim(
    client: &mut Client,
    keys: &Keys,
    network: &ClusterNetwork,
    node: &str,
) -> Result<Ipv4Net, SubnetError> {
    let exhausted = || SubnetError::Exhausted {
        network: network.network.to_string(),
        len: network.subnet_len,
        node: node.to_string(),
    };
    // Each lost race means another node took a subnet: at most one round per subnet.
    let subnets = network
        .network
        .subnets(network.subnet_len)
        .map_err(|_| exhausted())?;
    loop {
        let held = leases(client, keys).await?;
        if let Some((cidr, _)) = held.iter().find(|(_, owner)| owner == node) {
            return Ok(*cidr);
        }
        let Some(free) = subnets.clone().find(|s| {
            !held
                .iter()
                .any(|(cidr, _)| crate::record::overlaps(*cidr, *s))
        }) else {
            return Err(exhausted());
        };
        let key = keys.subnet(free);
        let taken = client
            .txn(
                Txn::new()
                    .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(key.as_str(), node, None)]),
            )
            .await
            .map_err(etcd(format!("lease {key}")))?;
        if taken.succeeded() {
            return Ok(free);
        }
    }
}

/// Gives back every subnet leased to `node` (only while it is still `node`'s).
pub async fn release(client: &mut Client, keys: &Keys, node: &str) -> Result<(), SubnetError> {
    for (cidr, owner) in leases(client, keys).await? {
        if owner != node {
            continue;
        }
        let key = keys.subnet(cidr);
        client
            .txn(
                Txn::new()
                    .when([Compare::value(key.as_str(), CompareOp::Equal, node)])
                    .and_then([TxnOp::delete(key.as_str(), None)]),
            )
            .await
            .map_err(etcd(format!("release {key}")))?;
    }
    Ok(())
}
