//! The node directory in etcd: this node's record, held by a lease the agent keeps alive (a node
//! that stops renewing it is withdrawn by everyone when the lease expires), and every node's
//! record, listed once and then followed through a watch from the listed revision, so that no
//! change between the two is missed.

use std::{collections::BTreeMap, time::Duration};

use etcd_client::{Client, EventType, GetOptions, PutOptions, WatchOptions, WatchResponse};

use crate::{
    error::{EtcdError, etcd},
    keys::Keys,
    record::{Ignored, Local, NodeRecord, Stored, peers},
};

/// This node's record as published: the lease it is held by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Registration {
    pub lease: i64,
}

/// Publishes `record` under its node key, held by a lease of `ttl`. A lease that already holds
/// the key and is still alive (an agent restarted within the TTL) is taken over rather than
/// replaced, so that the record never disappears meanwhile.
pub async fn register(
    client: &mut Client,
    keys: &Keys,
    record: &NodeRecord,
    ttl: Duration,
) -> Result<Registration, EtcdError> {
    let key = keys.node(&record.name);
    let existing = client
        .get(key.as_str(), None)
        .await
        .map_err(etcd(format!("read {key}")))?;
    let mut lease = None;
    if let Some(kv) = existing.kvs().first().filter(|kv| kv.lease() != 0) {
        let alive = client
            .lease_time_to_live(kv.lease(), None)
            .await
            .map_err(etcd(format!("ask about the lease of {key}")))?;
        if alive.ttl() > 0 {
            lease = Some(kv.lease());
        }
    }
    let lease = match lease {
        Some(lease) => lease,
        None => client
            .lease_grant(ttl.as_secs().max(1) as i64, None)
            .await
            .map_err(etcd(format!("take a lease for {key}")))?
            .id(),
    };
    client
        .put(
            key.as_str(),
            record.to_json(),
            Some(PutOptions::new().with_lease(lease)),
        )
        .await
        .map_err(etcd(format!("publish {key}")))?;
    Ok(Registration { lease })
}

/// Renews `registration`'s lease every third of `ttl` until a renewal fails (etcd out of reach,
/// or the lease expired meanwhile): the caller then registers again.
pub async fn keep_alive(
    client: &mut Client,
    registration: Registration,
    ttl: Duration,
) -> EtcdError {
    let op = format!("renew lease {:x}", registration.lease);
    let (mut keeper, mut answers) = match client.lease_keep_alive(registration.lease).await {
        Ok(pair) => pair,
        Err(source) => return EtcdError { op, source },
    };
    loop {
        if let Err(source) = keeper.keep_alive().await {
            return EtcdError { op, source };
        }
        match answers.message().await {
            Ok(Some(answer)) if answer.ttl() > 0 => {}
            Ok(_) => {
                return EtcdError {
                    op,
                    source: etcd_client::Error::LeaseKeepAliveError("the lease expired".into()),
                };
            }
            Err(source) => return EtcdError { op, source },
        }
        tokio::time::sleep(ttl / 3).await;
    }
}

/// Removes this node's record and ends its lease: the node leaves.
pub async fn deregister(
    client: &mut Client,
    keys: &Keys,
    name: &str,
    registration: Option<Registration>,
) -> Result<(), EtcdError> {
    let key = keys.node(name);
    client
        .delete(key.as_str(), None)
        .await
        .map_err(etcd(format!("remove {key}")))?;
    if let Some(r) = registration {
        // Revoking a lease that already expired is not worth failing a leave for.
        let _ = client.lease_revoke(r.lease).await;
    }
    Ok(())
}

/// Every node record under the prefix as last seen, and the revision it was seen at.
pub struct Directory {
    keys: Keys,
    /// Key → (value, create revision).
    records: BTreeMap<String, (Vec<u8>, i64)>,
    revision: i64,
}

impl Directory {
    pub fn new(keys: Keys) -> Self {
        Self {
            keys,
            records: BTreeMap::new(),
            revision: 0,
        }
    }

    /// Replaces what is known with a fresh listing.
    pub async fn list(&mut self, client: &mut Client) -> Result<(), EtcdError> {
        let nodes = self.keys.nodes();
        let listed = client
            .get(nodes.as_str(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(etcd(format!("list {nodes}")))?;
        self.records = listed
            .kvs()
            .iter()
            .filter_map(|kv| {
                let key = kv.key_str().ok()?.to_string();
                Some((key, (kv.value().to_vec(), kv.create_revision())))
            })
            .collect();
        self.revision = listed.header().map_or(0, |h| h.revision());
        Ok(())
    }

    /// A watch on every node record from just after the listed revision.
    pub async fn watch(&self, client: &mut Client) -> Result<etcd_client::WatchStream, EtcdError> {
        let nodes = self.keys.nodes();
        client
            .watch(
                nodes.as_str(),
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(self.revision + 1),
                ),
            )
            .await
            .map_err(etcd(format!("watch {nodes}")))
    }

    /// Applies one watch response; returns whether any record changed. A response that says the
    /// watch was cancelled (its revision compacted away) is an error: list again.
    pub fn apply(&mut self, response: &WatchResponse) -> Result<bool, String> {
        if response.canceled() {
            return Err(format!(
                "the watch was cancelled ({}; compacted to revision {})",
                response.cancel_reason(),
                response.compact_revision()
            ));
        }
        let mut changed = false;
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            let Ok(key) = kv.key_str() else { continue };
            match event.event_type() {
                EventType::Put => {
                    let value = (kv.value().to_vec(), kv.create_revision());
                    changed |= self.records.get(key) != Some(&value);
                    self.records.insert(key.to_string(), value);
                }
                EventType::Delete => changed |= self.records.remove(key).is_some(),
            }
            self.revision = self.revision.max(kv.mod_revision());
        }
        if let Some(header) = response.header() {
            self.revision = self.revision.max(header.revision());
        }
        Ok(changed)
    }

    /// The key of node `name`'s record.
    pub fn key_of(&self, name: &str) -> String {
        self.keys.node(name)
    }

    /// The peers the records describe for `local`, and the records ignored with why.
    pub fn peers(&self, local: &Local) -> (Vec<NodeRecord>, Vec<Ignored>) {
        let stored: Vec<Stored<'_>> = self
            .records
            .iter()
            .map(|(key, (value, created))| Stored {
                key_name: self.keys.node_name(key),
                key,
                value,
                create_revision: *created,
            })
            .collect();
        peers(local, &stored)
    }
}
