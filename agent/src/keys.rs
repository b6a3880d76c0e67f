//! Where the agent's data lives in etcd, under one key prefix (several clusters can share an etcd
//! by prefix):
//!
//! - `<prefix>network`: the cluster network, `{"network": "198.18.64.0/18", "subnet_len": 24}`;
//! - `<prefix>subnets/<a.b.c.d>-<len>`: the node a pod CIDR is leased to (no TTL: a node keeps
//!   its subnet across restarts and gives it back when it leaves for good);
//! - `<prefix>nodes/<name>`: a node's record (see `record`), held by the node's lease, so that it
//!   goes when the node stops renewing it.

use ipnet::Ipv4Net;

#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix`, which is made to end with '/'.
    pub fn new(prefix: &str) -> Self {
        let mut prefix = prefix.to_string();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        Self { prefix }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn network(&self) -> String {
        format!("{}network", self.prefix)
    }

    pub fn nodes(&self) -> String {
        format!("{}nodes/", self.prefix)
    }

    pub fn node(&self, name: &str) -> String {
        format!("{}{name}", self.nodes())
    }

    /// The node name a key under [`Self::nodes`] ends with.
    pub fn node_name<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(&self.nodes())
            .filter(|name| !name.is_empty() && !name.contains('/'))
    }

    pub fn subnets(&self) -> String {
        format!("{}subnets/", self.prefix)
    }

    pub fn subnet(&self, cidr: Ipv4Net) -> String {
        format!("{}{}-{}", self.subnets(), cidr.network(), cidr.prefix_len())
    }

    /// The pod CIDR a key under [`Self::subnets`] names.
    pub fn subnet_of(&self, key: &str) -> Option<Ipv4Net> {
        let (addr, len) = key.strip_prefix(&self.subnets())?.split_once('-')?;
        let net = Ipv4Net::new(addr.parse().ok()?, len.parse().ok()?).ok()?;
        (net.network() == net.addr()).then_some(net)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_their_node_and_subnet_and_nothing_else() {
        let keys = Keys::new("/fastpath");
        assert_eq!(keys.node("a"), "/fastpath/nodes/a");
        assert_eq!(keys.node_name("/fastpath/nodes/a"), Some("a"));
        assert_eq!(keys.node_name("/fastpath/nodes/a/b"), None);
        assert_eq!(keys.node_name("/fastpath/nodes/"), None);
        assert_eq!(keys.node_name("/other/nodes/a"), None);
        let cidr: Ipv4Net = "198.18.7.0/24".parse().unwrap();
        assert_eq!(keys.subnet(cidr), "/fastpath/subnets/198.18.7.0-24");
        assert_eq!(keys.subnet_of(&keys.subnet(cidr)), Some(cidr));
        assert_eq!(keys.subnet_of("/fastpath/subnets/198.18.7.1-24"), None);
        assert_eq!(keys.subnet_of("/fastpath/subnets/junk"), None);
    }
}
