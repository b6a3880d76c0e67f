//! Errors the agent branches on: etcd out of reach (retry, stay degraded, keep the datapath as
//! it is) against a cluster the agent cannot join as told (stop and say why).

/// A request etcd did not answer or refused.
#[derive(Debug, thiserror::Error)]
#[error("etcd: cannot {op}")]
pub struct EtcdError {
    pub op: String,
    #[source]
    pub source: etcd_client::Error,
}

/// `EtcdError` for `op`, as a `map_err` argument.
pub fn etcd(op: impl Into<String>) -> impl FnOnce(etcd_client::Error) -> EtcdError {
    move |source| EtcdError {
        op: op.into(),
        source,
    }
}

/// Why a node cannot have a pod CIDR.
#[derive(Debug, thiserror::Error)]
pub enum SubnetError {
    #[error(
        "the cluster network in etcd ({key}) is {stored}, this agent was told {given}: one of them is wrong"
    )]
    NetworkMismatch {
        key: String,
        stored: String,
        given: String,
    },
    #[error("{key} does not hold a cluster network: {reason}")]
    BadNetwork { key: String, reason: String },
    #[error(
        "there is no cluster network in etcd ({key}): give one agent --network (and --subnet-len)"
    )]
    NoNetwork { key: String },
    #[error("every /{len} of {network} is leased to a node: no pod CIDR left for '{node}'")]
    Exhausted {
        network: String,
        len: u8,
        node: String,
    },
    #[error(transparent)]
    Etcd(#[from] EtcdError),
}
