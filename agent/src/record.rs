//! A node's record in etcd: what every other node needs to reach its pods (underlay address, pod
//! CIDR, VTEP MAC, VXLAN settings), and the rules a record read from etcd must pass before this
//! node installs anything from it. etcd is shared: a record another agent wrote, or anyone with
//! write access to the prefix, is input to check, never an instruction.

use std::{fmt, net::Ipv4Addr};

use control::{config::Mode, config::PeerConfig, mac::Mac};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// The record format this agent writes and reads. A record of another format is ignored (and
/// logged) rather than guessed at.
pub const FORMAT_VERSION: u32 = 1;

/// One node, as it publishes itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRecord {
    pub version: u32,
    pub name: String,
    pub underlay_ip: Ipv4Addr,
    pub pod_cidr: Ipv4Net,
    pub vtep_mac: Mac,
    pub vni: u32,
    pub port: u16,
    pub mode: Mode,
}

impl NodeRecord {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a record serializes")
    }

    /// What `fastpath up` installs for a peer.
    pub fn peer(&self) -> PeerConfig {
        PeerConfig {
            name: self.name.clone(),
            underlay_ip: self.underlay_ip,
            pod_cidr: Some(self.pod_cidr),
            // Records carry IPv4 pod CIDRs only: the agent leases no IPv6 prefixes yet.
            pod_cidr6: None,
            vtep_mac: Some(self.vtep_mac),
        }
    }
}

/// What the checks compare a record with: this node, and the cluster's rules.
#[derive(Clone, Debug)]
pub struct Local {
    pub name: String,
    pub underlay_ip: Ipv4Addr,
    pub pod_cidr: Ipv4Net,
    pub vni: u32,
    pub port: u16,
    /// Pod CIDRs must lie inside it (the cluster network).
    pub network: Ipv4Net,
    /// Underlay addresses must lie inside it, when set.
    pub underlay_range: Option<Ipv4Net>,
}

/// Why a record was not installed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    Unreadable(String),
    /// A key under the node prefix that is not `<prefix>nodes/<name>`.
    BadKey,
    Version(u32),
    /// The key names another node than the record.
    NameMismatch {
        key_name: String,
    },
    /// Its pod CIDR overlaps this node's.
    ClaimsOwnCidr,
    /// Its underlay address is this node's.
    ClaimsOwnUnderlay,
    /// Its pod CIDR overlaps that of a node whose record is older.
    CidrTaken {
        by: String,
    },
    /// Its underlay address is that of a node whose record is older.
    UnderlayTaken {
        by: String,
    },
    OutsideNetwork,
    BadUnderlay,
    BadMac,
    /// VXLAN settings this node cannot talk to.
    VxlanMismatch,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Unreadable(e) => write!(f, "not a node record: {e}"),
            Rejection::BadKey => f.write_str("the key names no node"),
            Rejection::Version(v) => {
                write!(f, "format version {v}, this agent reads {FORMAT_VERSION}")
            }
            Rejection::NameMismatch { key_name } => {
                write!(
                    f,
                    "the record names another node than its key ('{key_name}')"
                )
            }
            Rejection::ClaimsOwnCidr => f.write_str("its pod CIDR overlaps this node's"),
            Rejection::ClaimsOwnUnderlay => f.write_str("its underlay address is this node's"),
            Rejection::CidrTaken { by } => {
                write!(
                    f,
                    "its pod CIDR overlaps that of node '{by}' (registered first)"
                )
            }
            Rejection::UnderlayTaken { by } => write!(
                f,
                "its underlay address is that of node '{by}' (registered first)"
            ),
            Rejection::OutsideNetwork => f.write_str("its pod CIDR is outside the cluster network"),
            Rejection::BadUnderlay => f.write_str(
                "its underlay address is not a unicast address of the allowed underlay range",
            ),
            Rejection::BadMac => f.write_str("its VTEP MAC is multicast or zero"),
            Rejection::VxlanMismatch => {
                f.write_str("its VXLAN VNI or port differs from this node's")
            }
        }
    }
}

/// A record that was not installed: its key, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ignored {
    pub key: String,
    pub reason: Rejection,
}

/// One node record as read from etcd.
pub struct Stored<'a> {
    /// The node name its key ends with (none: a key under the prefix that names no node).
    pub key_name: Option<&'a str>,
    pub key: &'a str,
    pub value: &'a [u8],
    /// etcd's create revision: of two records claiming one CIDR or address, the older wins, and
    /// every node decides the same.
    pub create_revision: i64,
}

/// The peers `stored` describes for `local`: every record that passes the checks, and every
/// other one with its reason. This node's own record is neither.
pub fn peers(local: &Local, stored: &[Stored<'_>]) -> (Vec<NodeRecord>, Vec<Ignored>) {
    let mut by_age: Vec<&Stored<'_>> = stored.iter().collect();
    by_age.sort_by_key(|s| (s.create_revision, s.key));
    let (mut accepted, mut ignored) = (Vec::<NodeRecord>::new(), Vec::new());
    for s in by_age {
        if s.key_name == Some(local.name.as_str()) {
            continue;
        }
        match check(local, s, &accepted) {
            Ok(record) => accepted.push(record),
            Err(reason) => ignored.push(Ignored {
                key: s.key.to_string(),
                reason,
            }),
        }
    }
    accepted.sort_by(|a, b| a.name.cmp(&b.name));
    (accepted, ignored)
}

fn check(local: &Local, s: &Stored<'_>, older: &[NodeRecord]) -> Result<NodeRecord, Rejection> {
    let key_name = s.key_name.ok_or(Rejection::BadKey)?;
    let version = serde_json::from_slice::<serde_json::Value>(s.value)
        .map_err(|e| Rejection::Unreadable(e.to_string()))?
        .get("version")
        .and_then(serde_json::Value::as_u64);
    if let Some(v) = version.filter(|v| *v != u64::from(FORMAT_VERSION)) {
        return Err(Rejection::Version(u32::try_from(v).unwrap_or(u32::MAX)));
    }
    let r: NodeRecord =
        serde_json::from_slice(s.value).map_err(|e| Rejection::Unreadable(e.to_string()))?;
    if r.name != key_name {
        return Err(Rejection::NameMismatch {
            key_name: key_name.to_string(),
        });
    }
    if r.vni != local.vni || r.port != local.port {
        return Err(Rejection::VxlanMismatch);
    }
    if !local.network.contains(&r.pod_cidr) {
        return Err(Rejection::OutsideNetwork);
    }
    if overlaps(r.pod_cidr, local.pod_cidr) {
        return Err(Rejection::ClaimsOwnCidr);
    }
    if r.underlay_ip == local.underlay_ip {
        return Err(Rejection::ClaimsOwnUnderlay);
    }
    let ip = r.underlay_ip;
    if ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_link_local()
        || local
            .underlay_range
            .is_some_and(|range| !range.contains(&ip))
    {
        return Err(Rejection::BadUnderlay);
    }
    if r.vtep_mac.0 == [0; 6] || r.vtep_mac.0[0] & 1 == 1 {
        return Err(Rejection::BadMac);
    }
    if let Some(other) = older.iter().find(|o| overlaps(o.pod_cidr, r.pod_cidr)) {
        return Err(Rejection::CidrTaken {
            by: other.name.clone(),
        });
    }
    if let Some(other) = older.iter().find(|o| o.underlay_ip == r.underlay_ip) {
        return Err(Rejection::UnderlayTaken {
            by: other.name.clone(),
        });
    }
    Ok(r)
}

pub fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> Local {
        Local {
            name: "a".into(),
            underlay_ip: "198.18.0.1".parse().unwrap(),
            pod_cidr: "198.18.1.0/24".parse().unwrap(),
            vni: 42,
            port: 4789,
            network: "198.18.0.0/16".parse().unwrap(),
            underlay_range: None,
        }
    }

    fn record(name: &str, underlay: &str, cidr: &str) -> NodeRecord {
        let underlay_ip: Ipv4Addr = underlay.parse().unwrap();
        NodeRecord {
            version: FORMAT_VERSION,
            name: name.into(),
            underlay_ip,
            pod_cidr: cidr.parse().unwrap(),
            vtep_mac: Mac::vtep(underlay_ip),
            vni: 42,
            port: 4789,
            mode: Mode::Tc,
        }
    }

    /// Checks `values` (key name, JSON) as if created in this order.
    fn run(local: &Local, values: &[(&str, String)]) -> (Vec<String>, Vec<(String, Rejection)>) {
        let keys: Vec<String> = values
            .iter()
            .map(|(n, _)| format!("/fp/nodes/{n}"))
            .collect();
        let stored: Vec<Stored<'_>> = values
            .iter()
            .zip(&keys)
            .enumerate()
            .map(|(i, ((name, value), key))| Stored {
                key_name: Some(name),
                key,
                value: value.as_bytes(),
                create_revision: i as i64 + 10,
            })
            .collect();
        let (ok, ignored) = peers(local, &stored);
        (
            ok.into_iter().map(|r| r.name).collect(),
            ignored.into_iter().map(|i| (i.key, i.reason)).collect(),
        )
    }

    #[test]
    fn good_records_become_peers_and_the_own_one_is_skipped() {
        let values = [
            ("a", record("a", "198.18.0.1", "198.18.1.0/24").to_json()),
            ("c", record("c", "198.18.0.3", "198.18.3.0/24").to_json()),
            ("b", record("b", "198.18.0.2", "198.18.2.0/24").to_json()),
        ];
        let (ok, ignored) = run(&local(), &values);
        assert_eq!(ok, ["b", "c"]);
        assert_eq!(ignored, []);
    }

    #[test]
    fn each_bad_record_is_ignored_with_its_reason() {
        let mut mac_multicast = record("m", "198.18.0.13", "198.18.13.0/24");
        mac_multicast.vtep_mac = Mac([0x01, 0, 0x5e, 0, 0, 1]);
        let mut other_vni = record("v", "198.18.0.14", "198.18.14.0/24");
        other_vni.vni = 7;
        let mut wrong_version = record("w", "198.18.0.15", "198.18.15.0/24");
        wrong_version.version = 2;
        let mut ranged = local();
        ranged.underlay_range = Some("198.18.0.0/24".parse().unwrap());
        let values = [
            ("b", record("b", "198.18.0.2", "198.18.2.0/24").to_json()),
            ("junk", "{not json".to_string()),
            ("x", record("y", "198.18.0.4", "198.18.4.0/24").to_json()),
            (
                "own-cidr",
                record("own-cidr", "198.18.0.5", "198.18.1.128/25").to_json(),
            ),
            (
                "own-ip",
                record("own-ip", "198.18.0.1", "198.18.6.0/24").to_json(),
            ),
            (
                "late",
                record("late", "198.18.0.7", "198.18.2.0/23").to_json(),
            ),
            (
                "twin",
                record("twin", "198.18.0.2", "198.18.8.0/24").to_json(),
            ),
            (
                "outside",
                record("outside", "198.18.0.9", "198.19.5.0/24").to_json(),
            ),
            (
                "loop",
                record("loop", "127.0.0.1", "198.18.10.0/24").to_json(),
            ),
            (
                "far",
                record("far", "198.18.77.1", "198.18.11.0/24").to_json(),
            ),
            ("m", mac_multicast.to_json()),
            ("v", other_vni.to_json()),
            ("w", wrong_version.to_json()),
        ];
        let (ok, ignored) = run(&ranged, &values);
        assert_eq!(ok, ["b"]);
        let reasons: Vec<(&str, Rejection)> = ignored
            .iter()
            .map(|(k, r)| (k.trim_start_matches("/fp/nodes/"), r.clone()))
            .collect();
        let expected = [
            (
                "x",
                Rejection::NameMismatch {
                    key_name: "x".into(),
                },
            ),
            ("own-cidr", Rejection::ClaimsOwnCidr),
            ("own-ip", Rejection::ClaimsOwnUnderlay),
            ("late", Rejection::CidrTaken { by: "b".into() }),
            ("twin", Rejection::UnderlayTaken { by: "b".into() }),
            ("outside", Rejection::OutsideNetwork),
            ("loop", Rejection::BadUnderlay),
            ("far", Rejection::BadUnderlay),
            ("m", Rejection::BadMac),
            ("v", Rejection::VxlanMismatch),
            ("w", Rejection::Version(2)),
        ];
        assert!(
            matches!(reasons[0], ("junk", Rejection::Unreadable(_))),
            "{reasons:?}"
        );
        assert_eq!(reasons[1..], expected);
    }

    #[test]
    fn of_two_records_claiming_one_cidr_the_older_wins_whatever_the_names() {
        let values = [
            ("z", record("z", "198.18.0.26", "198.18.5.0/24").to_json()),
            ("b", record("b", "198.18.0.2", "198.18.5.0/24").to_json()),
        ];
        let (ok, ignored) = run(&local(), &values);
        assert_eq!(ok, ["z"]);
        assert_eq!(
            ignored,
            [(
                "/fp/nodes/b".to_string(),
                Rejection::CidrTaken { by: "z".into() }
            )]
        );
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let r = record("b", "198.18.0.2", "198.18.2.0/24");
        let back: NodeRecord = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(back, r);
        assert_eq!(
            r.to_json(),
            r#"{"version":1,"name":"b","underlay_ip":"198.18.0.2","pod_cidr":"198.18.2.0/24","vtep_mac":"02:fa:c6:12:00:02","vni":42,"port":4789,"mode":"tc"}"#
        );
    }
}
