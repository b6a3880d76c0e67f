//! The CNI specification's types, in one place: the environment, the network configuration on
//! stdin, the result and the error on stdout, the error codes and the supported versions.
//! Everything fastpath-specific lives in the other modules.

use std::{
    collections::BTreeMap,
    fmt,
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The versions whose configuration and result formats this plugin speaks.
pub const SUPPORTED_VERSIONS: [&str; 2] = ["1.0.0", "1.1.0"];
/// What a reply carries when the configuration could not be read.
pub const LATEST_VERSION: &str = "1.1.0";

/// Error codes of the specification ("Error" section); 100 and up are this plugin's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    IncompatibleVersion = 1,
    UnsupportedField = 2,
    UnknownContainer = 3,
    InvalidEnvironment = 4,
    Io = 5,
    Decoding = 6,
    InvalidConfig = 7,
    TryAgainLater = 11,
    /// STATUS: the plugin cannot add containers now.
    Unavailable = 50,
    /// STATUS: cannot add containers, and existing ones may have a degraded network.
    UnavailableExistingLimited = 51,
    /// An operation on the node failed (a device, an address, a program, the IPAM plugin).
    Failed = 100,
    /// CHECK found the container's network not as ADD left it.
    CheckMismatch = 101,
}

/// The error object of the specification, printed on stdout with a non-zero exit.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CniError {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub code: u32,
    pub msg: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    pub fn new(code: Code, msg: impl Into<String>) -> Self {
        Self {
            cni_version: LATEST_VERSION.into(),
            code: code as u32,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// An operation that failed: the message is the outermost context, the details the chain.
    pub fn failed(e: &anyhow::Error) -> Self {
        let causes: Vec<String> = e.chain().skip(1).map(|c| c.to_string()).collect();
        Self::new(Code::Failed, e.to_string()).with_details(causes.join(": "))
    }

    /// The message followed by the details, for an error reported inside another's message: the
    /// causes of a failed operation are in the details.
    pub fn text(&self) -> String {
        if self.details.is_empty() {
            self.msg.clone()
        } else {
            format!("{}: {}", self.msg, self.details)
        }
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CNI error {}: {}", self.code, self.msg)?;
        if !self.details.is_empty() {
            write!(f, " ({})", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl Command {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            _ => return None,
        })
    }
}

/// The CNI_* environment of one invocation, validated for its command.
#[derive(Clone, Debug)]
pub struct Env {
    pub command: Command,
    pub container_id: String,
    pub netns: Option<PathBuf>,
    pub ifname: String,
    pub args: BTreeMap<String, String>,
    pub path: Vec<PathBuf>,
}

fn invalid_env(msg: String) -> CniError {
    CniError::new(Code::InvalidEnvironment, msg)
}

impl Env {
    /// Reads the environment through `var` (std::env::var in the binary, a map in tests).
    pub fn read(var: impl Fn(&str) -> Option<String>) -> Result<Self, CniError> {
        let command =
            var("CNI_COMMAND").ok_or_else(|| invalid_env("CNI_COMMAND is not set".into()))?;
        let command = Command::parse(&command).ok_or_else(|| {
            invalid_env(format!(
                "CNI_COMMAND '{command}' is not one of ADD, DEL, CHECK, VERSION, STATUS, GC"
            ))
        })?;
        let per_container = matches!(command, Command::Add | Command::Del | Command::Check);
        let required = |name: &str| -> Result<String, CniError> {
            match var(name) {
                Some(v) if !v.is_empty() => Ok(v),
                _ => Err(invalid_env(format!("{name} is required for this command"))),
            }
        };
        let (container_id, ifname) = if per_container {
            let id = required("CNI_CONTAINERID")?;
            validate_container_id(&id)?;
            let ifname = required("CNI_IFNAME")?;
            validate_ifname(&ifname)?;
            (id, ifname)
        } else {
            (String::new(), String::new())
        };
        // DEL may come after the namespace is gone: then CNI_NETNS is empty or stale.
        let netns = match command {
            Command::Add | Command::Check => Some(PathBuf::from(required("CNI_NETNS")?)),
            _ => var("CNI_NETNS")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
        };
        let args = parse_args(&var("CNI_ARGS").unwrap_or_default())?;
        let path = var("CNI_PATH")
            .unwrap_or_default()
            .split(':')
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect();
        Ok(Self {
            command,
            container_id,
            netns,
            ifname,
            args,
            path,
        })
    }
}

/// The specification's container ID: non-empty, alphanumerics plus `_`, `.` and `-`.
fn validate_container_id(id: &str) -> Result<(), CniError> {
    let ok = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok && id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(invalid_env(format!(
            "CNI_CONTAINERID '{id}' must start with a letter or digit and hold only letters, digits, '_', '.' and '-'"
        )))
    }
}

fn validate_ifname(name: &str) -> Result<(), CniError> {
    crate::ifname::check(name).map_err(|e| invalid_env(format!("CNI_IFNAME '{name}': {e}")))
}

/// CNI_ARGS: `KEY=VALUE;KEY=VALUE`.
fn parse_args(s: &str) -> Result<BTreeMap<String, String>, CniError> {
    let mut args = BTreeMap::new();
    for pair in s.split(';').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            invalid_env(format!("CNI_ARGS: '{pair}' is not of the form KEY=VALUE"))
        })?;
        args.insert(k.to_string(), v.to_string());
    }
    Ok(args)
}

/// An attachment the runtime still uses, as GC's `cni.dev/valid-attachments` lists them.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct ValidAttachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// The network configuration on stdin: the specification's keys, and fastpath's.
#[derive(Clone, Debug, Deserialize)]
pub struct NetConf {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub name: String,
    /// Required by the specification (decoding fails without it); the runtime already used it
    /// to find this binary.
    #[serde(rename = "type")]
    #[allow(dead_code)]
    pub plugin_type: String,
    /// The bridge pods' host-side veths join (standalone mode; created when missing).
    #[serde(default)]
    pub bridge: Option<String>,
    #[serde(default)]
    pub mtu: Option<u32>,
    /// `tc` (default): the fast path; `kernel`: the same devices with no program, to compare.
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub ipam: Option<Value>,
    #[serde(rename = "prevResult", default)]
    pub prev_result: Option<Value>,
    #[serde(rename = "cni.dev/valid-attachments", default)]
    pub valid_attachments: Option<Vec<ValidAttachment>>,
}

/// Network names become file and directory names: the specification's character set.
pub fn validate_network_name(name: &str) -> Result<(), CniError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(CniError::new(
            Code::InvalidConfig,
            format!(
                "network name '{name}' must start with a letter or digit and hold only letters, digits, '_', '.' and '-' (64 at most)"
            ),
        ))
    }
}

/// Parses stdin: a decoding failure (code 6) when it is not a JSON object with the required keys,
/// an incompatible version (code 1) when its cniVersion is not supported.
pub fn parse_conf(stdin: &[u8]) -> Result<(NetConf, Value), CniError> {
    let raw: Value = serde_json::from_slice(stdin).map_err(|e| {
        CniError::new(
            Code::Decoding,
            format!("the network configuration on stdin is not JSON: {e}"),
        )
    })?;
    let conf: NetConf = serde_json::from_value(raw.clone()).map_err(|e| {
        CniError::new(
            Code::Decoding,
            format!("the network configuration on stdin cannot be decoded: {e}"),
        )
    })?;
    check_version(&conf.cni_version)?;
    Ok((conf, raw))
}

pub fn check_version(version: &str) -> Result<(), CniError> {
    if SUPPORTED_VERSIONS.contains(&version) {
        Ok(())
    } else {
        Err(CniError::new(
            Code::IncompatibleVersion,
            format!(
                "cniVersion '{version}' is not supported; supported: {}",
                SUPPORTED_VERSIONS.join(", ")
            ),
        ))
    }
}

/// VERSION's reply.
#[derive(Clone, Debug, Serialize)]
pub struct VersionInfo {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    #[serde(rename = "supportedVersions")]
    pub supported_versions: Vec<&'static str>,
}

/// An interface of a result.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The namespace path for a container's interface; absent on the host's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

/// An address of a result.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct IpConfig {
    /// CIDR notation: the address and its subnet's prefix length.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

impl IpConfig {
    /// The IPv4 address and its subnet, when the address is IPv4.
    pub fn ipv4(&self) -> Option<Ipv4Net> {
        self.address.parse().ok()
    }

    pub fn ipv4_gateway(&self) -> Option<Ipv4Addr> {
        self.gateway.as_deref().and_then(|g| g.parse().ok())
    }

    /// The IPv6 address and its prefix, when the address is IPv6.
    pub fn ipv6(&self) -> Option<Ipv6Net> {
        self.address.parse().ok()
    }

    pub fn ipv6_gateway(&self) -> Option<Ipv6Addr> {
        self.gateway.as_deref().and_then(|g| g.parse().ok())
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Route {
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
}

/// The result of ADD (and the `prevResult` of a chain).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct CniResult {
    /// Absent in the specification's own `prevResult` examples: the configuration's applies.
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub dns: Value,
}

impl CniResult {
    /// Reads a `prevResult` or an IPAM plugin's output.
    pub fn from_value(value: &Value, what: &str) -> Result<Self, CniError> {
        serde_json::from_value(value.clone())
            .map_err(|e| CniError::new(Code::Decoding, format!("cannot decode {what}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Result<Env, CniError> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::read(|k| map.get(k).cloned())
    }

    #[test]
    fn add_needs_container_netns_and_ifname() {
        let e = env(&[("CNI_COMMAND", "ADD")]).unwrap_err();
        assert_eq!(e.code, Code::InvalidEnvironment as u32);
        assert!(e.msg.contains("CNI_CONTAINERID"), "{e}");
        let e = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap_err();
        assert!(e.msg.contains("CNI_NETNS"), "{e}");
    }

    #[test]
    fn del_without_netns_is_valid() {
        let e = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=p"),
            ("CNI_PATH", "/usr/lib/cni:/opt/cni/bin"),
        ])
        .unwrap();
        assert_eq!(e.netns, None);
        assert_eq!(e.args["K8S_POD_NAME"], "p");
        assert_eq!(e.path.len(), 2);
    }

    #[test]
    fn bad_names_are_invalid_environment() {
        for (id, ifname) in [
            ("a/b", "eth0"),
            ("abc", "eth0:1"),
            ("abc", "a-very-long-ifname"),
        ] {
            let e = env(&[
                ("CNI_COMMAND", "DEL"),
                ("CNI_CONTAINERID", id),
                ("CNI_IFNAME", ifname),
            ])
            .unwrap_err();
            assert_eq!(e.code, Code::InvalidEnvironment as u32, "{id} {ifname}");
        }
    }

    #[test]
    fn versions_and_decoding() {
        let e = parse_conf(br#"{"cniVersion":"0.4.0","name":"n","type":"t"}"#).unwrap_err();
        assert_eq!(e.code, Code::IncompatibleVersion as u32);
        let e = parse_conf(b"{not json").unwrap_err();
        assert_eq!(e.code, Code::Decoding as u32);
        let e = parse_conf(br#"{"cniVersion":"1.0.0","type":"t"}"#).unwrap_err();
        assert_eq!(e.code, Code::Decoding as u32);
        let (conf, _) = parse_conf(br#"{"cniVersion":"1.1.0","name":"n","type":"t"}"#).unwrap();
        assert_eq!(conf.name, "n");
    }

    #[test]
    fn error_json_has_the_spec_keys() {
        let e = CniError::new(Code::TryAgainLater, "busy");
        let v: Value = serde_json::to_value(&e).unwrap();
        assert_eq!(v["code"], 11);
        assert_eq!(v["msg"], "busy");
        assert_eq!(v["cniVersion"], LATEST_VERSION);
        assert!(v.get("details").is_none());
    }
}
