//! The agent's node description: a `fastpath up` config file with exactly one `[[node]]`, this
//! node. Its `pod_cidr` may be left out: the agent leases one from the cluster network and gives
//! the pods without an `address` the CIDR's addresses from .2 on, in order. Static `[[peer]]`s
//! stay; etcd's peers are added to them, and a static peer wins over an etcd record of its name.

use std::{net::Ipv4Addr, path::Path};

use anyhow::{Context as _, Result, bail};
use control::config::ClusterConfig;
use ipnet::Ipv4Net;

use crate::record::NodeRecord;

/// The node file, read but not yet completed.
pub struct NodeFile {
    table: toml::Table,
    origin: String,
}

impl NodeFile {
    pub fn read(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| anyhow::anyhow!("{origin}: {}", e.message().trim()))?;
        let nodes = table.get("node").and_then(toml::Value::as_array);
        if nodes.is_none_or(|n| n.len() != 1) {
            bail!("{origin}: an agent's node file describes exactly one [[node]], its own");
        }
        let file = Self {
            table,
            origin: origin.to_string(),
        };
        file.node_name()?;
        Ok(file)
    }

    fn node(&self) -> &toml::Table {
        self.table["node"].as_array().expect("checked")[0]
            .as_table()
            .expect("a [[node]] is a table")
    }

    pub fn node_name(&self) -> Result<String> {
        self.node()
            .get("name")
            .and_then(toml::Value::as_str)
            .map(str::to_string)
            .with_context(|| format!("{}: node.name is missing", self.origin))
    }

    /// The node's `pod_cidr`, when the file gives one.
    pub fn pod_cidr(&self) -> Result<Option<Ipv4Net>> {
        let Some(value) = self.node().get("pod_cidr") else {
            return Ok(None);
        };
        let text = value
            .as_str()
            .with_context(|| format!("{}: node.pod_cidr is not a string", self.origin))?;
        text.parse()
            .map(Some)
            .with_context(|| format!("{}: node.pod_cidr = '{text}'", self.origin))
    }

    /// The config `fastpath up` runs: this node with `pod_cidr` (the file's, or leased), its pods
    /// addressed, and `peers` added to the static ones. A peer that a static one overrides (by
    /// name) or clashes with (its pod CIDR or underlay address), or that breaks a rule of the node
    /// description (a peer's name, a CIDR with host bits, ...), is left out: returned with why.
    /// One bad record never keeps the node from its other peers.
    pub fn config(
        &self,
        pod_cidr: Ipv4Net,
        peers: &[NodeRecord],
    ) -> Result<(ClusterConfig, Vec<(String, String)>)> {
        let mut table = self.table.clone();
        let node = table["node"].as_array_mut().expect("checked")[0]
            .as_table_mut()
            .expect("a table");
        node.insert("pod_cidr".into(), pod_cidr.to_string().into());
        if let Some(pods) = node.get_mut("pods").and_then(toml::Value::as_array_mut) {
            for (i, pod) in pods.iter_mut().enumerate() {
                let Some(pod) = pod.as_table_mut() else {
                    continue;
                };
                if !pod.contains_key("address") {
                    pod.insert(
                        "address".into(),
                        pod_address(pod_cidr, i).to_string().into(),
                    );
                }
            }
        }
        let text = toml::to_string(&table).expect("a table serializes");
        let mut config = ClusterConfig::parse(&text, &self.origin)?;
        let statics = config.peers.clone();
        let mut left_out = Vec::new();
        for record in peers {
            let clash = statics.iter().find_map(|p| {
                if p.name == record.name {
                    Some(format!("the static [[peer]] '{}' wins", p.name))
                } else if p
                    .pod_cidr
                    .is_some_and(|cidr| crate::record::overlaps(cidr, record.pod_cidr))
                {
                    Some(format!("its pod CIDR overlaps static peer '{}'", p.name))
                } else if p.underlay_ip == record.underlay_ip {
                    Some(format!(
                        "its underlay address is static peer '{}''s",
                        p.name
                    ))
                } else {
                    None
                }
            });
            if let Some(why) = clash {
                left_out.push((record.name.clone(), why));
                continue;
            }
            // The same rules as a file's peers (names, overlaps, addresses used twice).
            config.peers.push(record.peer());
            if let Err(e) = config.validate() {
                config.peers.pop();
                left_out.push((record.name.clone(), format!("{e:#}")));
            }
        }
        config.peers.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((config, left_out))
    }
}

/// The `i`th pod's address in `cidr`: .2 on (.1 is the gateway).
fn pod_address(cidr: Ipv4Net, i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(cidr.network()) + 2 + i as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::FORMAT_VERSION;
    use control::{config::Mode, mac::Mac};

    const FILE: &str = r#"
mode = "tc"
[[node]]
name = "a"
simulated = true
underlay = { device = "fp-ul0", address = "198.18.0.1/24" }
pods = [{ name = "a1" }, { name = "a2", address = "198.18.64.9" }]

[[peer]]
name = "b"
underlay_ip = "198.18.0.2"
pod_cidr = "198.18.65.0/24"
"#;

    fn record(name: &str, i: u8) -> NodeRecord {
        let ip = Ipv4Addr::new(198, 18, 0, i);
        NodeRecord {
            version: FORMAT_VERSION,
            name: name.into(),
            underlay_ip: ip,
            pod_cidr: Ipv4Net::new(Ipv4Addr::new(198, 18, 64 + i, 0), 24).unwrap(),
            vtep_mac: Mac::vtep(ip),
            vni: 42,
            port: 4789,
            mode: Mode::Tc,
        }
    }

    #[test]
    fn a_leased_cidr_addresses_the_pods_and_static_peers_win() {
        let file = NodeFile::parse(FILE, "node.toml").unwrap();
        assert_eq!(file.node_name().unwrap(), "a");
        assert_eq!(file.pod_cidr().unwrap(), None);
        let cidr: Ipv4Net = "198.18.64.0/24".parse().unwrap();
        let mut b_moved = record("b", 2);
        b_moved.pod_cidr = "198.18.99.0/24".parse().unwrap();
        let (config, left_out) = file.config(cidr, &[b_moved, record("c", 3)]).unwrap();
        assert_eq!(
            left_out,
            [("b".to_string(), "the static [[peer]] 'b' wins".to_string())]
        );
        let node = &config.nodes[0];
        assert_eq!(node.pod_cidr, Some(cidr));
        let addresses: Vec<String> = node
            .pods
            .iter()
            .map(|p| p.address.unwrap().to_string())
            .collect();
        assert_eq!(addresses, ["198.18.64.2", "198.18.64.9"]);
        let peers: Vec<(String, String)> = config
            .peers
            .iter()
            .map(|p| (p.name.clone(), p.pod_cidr.unwrap().to_string()))
            .collect();
        assert_eq!(
            peers,
            [
                ("b".to_string(), "198.18.65.0/24".to_string()),
                ("c".to_string(), "198.18.67.0/24".to_string())
            ]
        );
    }

    #[test]
    fn records_breaking_the_descriptions_rules_are_left_out_and_the_others_installed() {
        let file = NodeFile::parse(FILE, "node.toml").unwrap();
        let cidr: Ipv4Net = "198.18.64.0/24".parse().unwrap();
        let mut upper = record("Upper", 4);
        upper.name = "Upper".into();
        let long = record("a-name-too-long", 5);
        let mut host_bits = record("hb", 6);
        host_bits.pod_cidr = "198.18.70.5/24".parse().unwrap();
        let (config, left_out) = file
            .config(cidr, &[upper, long, host_bits, record("c", 3)])
            .unwrap();
        let installed: Vec<&str> = config.peers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(installed, ["b", "c"]);
        let names: Vec<&str> = left_out.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["Upper", "a-name-too-long", "hb"], "{left_out:?}");
        assert!(
            left_out[0].1.contains("peer.name = 'Upper'"),
            "{left_out:?}"
        );
        assert!(
            left_out[2].1.contains("must be a network address"),
            "{left_out:?}"
        );
    }

    #[test]
    fn a_file_with_other_than_one_node_is_refused() {
        let two = format!("{FILE}\n[[node]]\nname = \"x\"\n");
        let err = NodeFile::parse(&two, "node.toml").err().unwrap();
        assert!(
            format!("{err:#}").contains("exactly one [[node]]"),
            "{err:#}"
        );
    }
}
