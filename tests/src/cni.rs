//! A host for the CNI plugin tests: a namespace the plugin runs in (its "host": the bridge, the
//! host-side veths), container namespaces, a private data directory, and the plugin run as a
//! runtime runs it — environment variables, configuration on stdin, JSON on stdout.

use std::{
    io::Write as _,
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    str::FromStr,
};

use aya::maps::{HashMap, Map, MapData};
use control::{
    datapath::{self, CounterRow, Hook},
    netlink::Netlink,
    netns::{Netns, OwnedNetns},
};
use datapath_common::reasons::Reason;
use serde_json::{Value, json};

/// Where Debian's containernetworking-plugins puts the reference plugins.
pub const REFERENCE_PLUGINS: &str = "/usr/lib/cni";

/// The `fastpath-cni` binary `cargo xtask test` builds.
pub fn plugin_bin() -> PathBuf {
    crate::workspace_bin("fastpath-cni")
}

/// Fails with a clear message when the reference plugins are not installed.
pub fn require_reference_plugins() {
    assert!(
        Path::new(REFERENCE_PLUGINS).join("host-local").exists(),
        "the reference CNI plugins are missing from {REFERENCE_PLUGINS}: apt-get install containernetworking-plugins (.ci/run does)"
    );
}

/// The JSON block after `<!-- conflist: NAME -->` in the README.
pub fn readme_conflist(name: &str) -> Value {
    let readme = include_str!("../../README.md");
    let marker = format!("<!-- conflist: {name} -->");
    let after = &readme[readme.find(&marker).expect("marker in README") + marker.len()..];
    let start = after.find("```json").expect("a json block") + "```json".len();
    let end = start + after[start..].find("```").expect("the block's end");
    serde_json::from_str(&after[start..end]).expect("the README's conflist is JSON")
}

/// The IPv6 address of a dual-stack result.
pub fn address6_of(result: &Value) -> Ipv6Addr {
    let ips = result["ips"].as_array().expect("ips");
    ips.iter()
        .filter_map(|ip| ip["address"].as_str()?.split('/').next()?.parse().ok())
        .next()
        .unwrap_or_else(|| panic!("no IPv6 address in {result}"))
}

/// The first address of a result.
pub fn address_of(result: &Value) -> Ipv4Addr {
    let cidr = result["ips"][0]["address"].as_str().expect("an address");
    cidr.split('/').next().unwrap().parse().expect("IPv4")
}

/// The cluster file, written where the plugin reads it; removed on drop.
pub struct ClusterFile(pub PathBuf);

impl ClusterFile {
    pub fn write(tc: &crate::TestCluster) -> Self {
        let path = std::env::temp_dir().join(format!("{}cluster.toml", tc.cluster.prefix()));
        std::fs::write(&path, control::config::DEFAULT_CONFIG).expect("cluster file");
        Self(path)
    }
}

impl Drop for ClusterFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What one invocation printed and how it ended.
#[derive(Debug)]
pub struct Reply {
    pub success: bool,
    pub json: Value,
    pub stderr: String,
}

impl Reply {
    /// The error code of a failed invocation.
    pub fn code(&self) -> Option<u64> {
        self.json["code"].as_u64()
    }

    #[track_caller]
    pub fn expect_ok(self) -> Value {
        assert!(self.success, "plugin failed: {} {}", self.json, self.stderr);
        self.json
    }

    #[track_caller]
    pub fn expect_code(&self, code: u64) {
        assert!(
            !self.success,
            "expected error {code}, got success: {}",
            self.json
        );
        assert_eq!(self.code(), Some(code), "{} {}", self.json, self.stderr);
        assert!(
            self.json["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "an error needs a message: {}",
            self.json
        );
    }
}

pub struct CniHost {
    pub prefix: String,
    /// The namespace the plugin runs in.
    pub node: Netns,
    /// Where the network's maps are pinned.
    pins: PathBuf,
    pub network: String,
    pub dir: PathBuf,
    owned: Option<OwnedNetns>,
}

impl CniHost {
    /// A host of its own: a fresh namespace, the network's own pins.
    pub fn new() -> Self {
        let prefix = crate::unique_prefix();
        let node = OwnedNetns::create(format!("{prefix}node")).expect("node namespace");
        let network = prefix.trim_end_matches('-').to_string();
        let pins = Path::new(control::cni::PIN_ROOT).join(&network);
        Self::build(prefix, node.netns().clone(), pins, Some(node))
    }

    /// The plugin run inside a fastpath node's namespace, for a network joined to that node
    /// (whose maps are pinned in `node_pins`).
    pub fn on_node(node: &Netns, node_pins: PathBuf) -> Self {
        Self::build(crate::unique_prefix(), node.clone(), node_pins, None)
    }

    fn build(prefix: String, node: Netns, pins: PathBuf, owned: Option<OwnedNetns>) -> Self {
        crate::require_root();
        require_reference_plugins();
        let dir = std::env::temp_dir().join(format!("{prefix}cni"));
        std::fs::create_dir_all(&dir).expect("test data dir");
        Self {
            network: prefix.trim_end_matches('-').to_string(),
            prefix,
            node,
            pins,
            dir,
            owned,
        }
    }

    /// A container namespace with `lo` down, as a runtime hands it over.
    pub fn container(&self, tag: &str) -> OwnedNetns {
        OwnedNetns::create(format!("{}{tag}", self.prefix)).expect("container namespace")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn ipam_dir(&self) -> PathBuf {
        self.dir.join("ipam")
    }

    /// host-local IPAM on `subnet` with a default route, its state in this host's directory.
    pub fn ipam(&self, subnet: &str) -> Value {
        json!({
            "type": "host-local",
            "dataDir": self.ipam_dir(),
            "ranges": [[{ "subnet": subnet }]],
            "routes": [{ "dst": "0.0.0.0/0" }],
        })
    }

    /// A standalone network configuration.
    pub fn standalone(&self, subnet: &str) -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": self.network,
            "type": "fastpath-cni",
            "dataDir": self.data_dir(),
            "ipam": self.ipam(subnet),
        })
    }

    /// The README's configuration of a network joined to a node, as written but for this host's
    /// directories, the cluster file and the cluster's prefix.
    pub fn node_conf(&self, file: &ClusterFile, prefix: &str) -> Value {
        let mut conf = readme_conflist("node");
        conf["name"] = json!(self.network);
        conf["dataDir"] = json!(self.data_dir());
        conf["node"]["config"] = json!(file.0);
        conf["node"]["prefix"] = json!(prefix);
        conf["ipam"]["dataDir"] = json!(self.ipam_dir());
        conf
    }

    /// The reference `bridge` plugin's configuration: bridge `fpbr0` as the gateway of `subnet`.
    pub fn bridge_plugin(&self, subnet: &str) -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": self.network,
            "type": "bridge",
            "bridge": "fpbr0",
            "isGateway": true,
            "ipam": self.ipam(subnet),
        })
    }

    /// This plugin's configuration in a chain after `bridge`, whose result was `prev`.
    pub fn chained(&self, prev: &Value) -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": self.network,
            "type": "fastpath-cni",
            "dataDir": self.data_dir(),
            "prevResult": prev,
        })
    }

    /// The plugin with exactly `env` (plus PATH), inside the node namespace, not yet started.
    pub fn command(&self, env: &[(&str, String)]) -> Command {
        self.command_of(&plugin_bin(), env)
    }

    /// Any plugin binary, run as [`Self::command`] runs fastpath-cni.
    pub fn command_of(&self, binary: &Path, env: &[(&str, String)]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!(
            "--net=/run/netns/{}",
            self.node.name().expect("named")
        ))
        .arg("--")
        .arg(binary)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// The usual environment of a command on one container's `eth0`.
    pub fn env(
        command: &str,
        container_id: &str,
        netns: Option<&Netns>,
    ) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("CNI_COMMAND", command.to_string()),
            ("CNI_CONTAINERID", container_id.to_string()),
            ("CNI_IFNAME", "eth0".to_string()),
            ("CNI_PATH", REFERENCE_PLUGINS.to_string()),
            ("CNI_ARGS", "IgnoreUnknown=1".to_string()),
        ];
        if let Some(ns) = netns {
            env.push((
                "CNI_NETNS",
                format!("/run/netns/{}", ns.name().expect("named")),
            ));
        }
        env
    }

    /// Runs the plugin with `env` and `stdin` to the end.
    pub fn run(&self, env: &[(&str, String)], stdin: &[u8]) -> Reply {
        finish(spawn(self.command(env), stdin))
    }

    /// Runs a reference plugin (bridge, host-local) the same way.
    pub fn run_reference(&self, plugin: &str, env: &[(&str, String)], conf: &Value) -> Reply {
        let cmd = self.command_of(&Path::new(REFERENCE_PLUGINS).join(plugin), env);
        finish(spawn(cmd, &serde_json::to_vec(conf).expect("json")))
    }

    /// `command` on `container_id`'s eth0 with `conf`.
    pub fn exec(
        &self,
        command: &str,
        container_id: &str,
        netns: Option<&Netns>,
        conf: &Value,
    ) -> Reply {
        self.run(
            &Self::env(command, container_id, netns),
            &serde_json::to_vec(conf).expect("json"),
        )
    }

    /// [`Self::exec`] under strace: the reply, and the bpf(2) commands the plugin and its children
    /// ran, by name (`BPF_OBJ_GET`, `BPF_PROG_LOAD`, ...), in order.
    pub fn exec_tracing_bpf(
        &self,
        command: &str,
        container_id: &str,
        netns: Option<&Netns>,
        conf: &Value,
    ) -> (Reply, Vec<String>) {
        let trace = self.dir.join(format!("{command}-{container_id}.bpf-trace"));
        let mut cmd = self.command_of(
            Path::new("strace"),
            &Self::env(command, container_id, netns),
        );
        cmd.args(["-f", "-qq", "-e", "trace=bpf", "-o"])
            .arg(&trace)
            .arg(plugin_bin());
        let reply = finish(spawn(cmd, &serde_json::to_vec(conf).expect("json")));
        let text = std::fs::read_to_string(&trace).expect("strace wrote its trace");
        let calls = text
            .lines()
            .filter_map(|line| {
                let rest = &line[line.find("bpf(BPF_")? + 4..];
                Some(rest[..rest.find(',')?].to_string())
            })
            .collect();
        (reply, calls)
    }

    /// The network configuration plugin `index` of `list` gets, as libcni builds it: the list's
    /// name and cniVersion, and the previous plugin's result as prevResult.
    fn plugin_conf(list: &Value, index: usize, prev: Option<&Value>) -> Value {
        let mut conf = list["plugins"][index].clone();
        conf["name"] = list["name"].clone();
        conf["cniVersion"] = list["cniVersion"].clone();
        if let Some(prev) = prev {
            conf["prevResult"] = prev.clone();
        }
        conf
    }

    fn run_plugin(&self, plugin_type: &str, env: &[(&str, String)], conf: &Value) -> Reply {
        let binary = if plugin_type == "fastpath-cni" {
            plugin_bin()
        } else {
            Path::new(REFERENCE_PLUGINS).join(plugin_type)
        };
        finish(spawn(
            self.command_of(&binary, env),
            &serde_json::to_vec(conf).expect("json"),
        ))
    }

    /// ADD through every plugin of a conflist, in order; the final result.
    pub fn conflist_add(&self, list: &Value, container_id: &str, netns: &Netns) -> Value {
        let env = Self::env("ADD", container_id, Some(netns));
        let mut prev: Option<Value> = None;
        for (i, plugin) in list["plugins"]
            .as_array()
            .expect("plugins")
            .iter()
            .enumerate()
        {
            let conf = Self::plugin_conf(list, i, prev.as_ref());
            let kind = plugin["type"].as_str().expect("type");
            let out = self.run_plugin(kind, &env, &conf);
            assert!(out.success, "ADD {kind}: {} {}", out.json, out.stderr);
            prev = Some(out.json);
        }
        prev.expect("a conflist has plugins")
    }

    /// DEL through every plugin of a conflist, in reverse order, with the cached result.
    pub fn conflist_del(&self, list: &Value, container_id: &str, result: &Value) {
        let env = Self::env("DEL", container_id, None);
        let plugins = list["plugins"].as_array().expect("plugins");
        for (i, plugin) in plugins.iter().enumerate().rev() {
            let conf = Self::plugin_conf(list, i, Some(result));
            let kind = plugin["type"].as_str().expect("type");
            let out = self.run_plugin(kind, &env, &conf);
            assert!(out.success, "DEL {kind}: {} {}", out.json, out.stderr);
        }
    }

    /// Starts `cmd` (from [`Self::command`]) with `conf` on stdin, without waiting.
    pub fn start(&self, cmd: Command, conf: &Value) -> Child {
        spawn(cmd, &serde_json::to_vec(conf).expect("json"))
    }

    pub fn pin_dir(&self) -> PathBuf {
        self.pins.clone()
    }

    /// Entries of the network's pinned endpoint map (0 when the network has no pins).
    pub fn endpoint_entries(&self) -> Vec<(Ipv4Addr, u32)> {
        self.entries_of(control::datapath::ENDPOINTS)
            .into_iter()
            .map(|(k, ifindex): ([u8; 4], u32)| (Ipv4Addr::from(k), ifindex))
            .collect()
    }

    /// Entries of the network's pinned IPv6 endpoint map.
    pub fn endpoint_entries6(&self) -> Vec<(Ipv6Addr, u32)> {
        self.entries_of(control::datapath::ENDPOINTS6)
            .into_iter()
            .map(|(k, ifindex): ([u8; 16], u32)| (Ipv6Addr::from(k), ifindex))
            .collect()
    }

    /// The keys and ifindexes of the pinned endpoint map `name`.
    fn entries_of<K: aya::Pod>(&self, name: &str) -> Vec<(K, u32)> {
        let path = self.pin_dir().join(name);
        if !path.exists() {
            return Vec::new();
        }
        let map = Map::from_map_data(MapData::from_pin(&path).expect("pinned endpoint map"))
            .expect("a map");
        let map: HashMap<_, K, datapath_common::maps::Endpoint> =
            HashMap::try_from(map).expect("the endpoint map is a hash map");
        map.iter()
            .map(|e| e.expect("entry"))
            .map(|(k, v)| (k, v.ifindex))
            .collect()
    }

    /// The network's counters (empty when it has no pins).
    pub fn counters(&self) -> Vec<CounterRow> {
        if !self.pin_dir().exists() {
            return Vec::new();
        }
        datapath::pinned_counters(&self.pin_dir()).expect("pinned counters")
    }

    pub fn packets(&self, hook: Hook, reason: Reason) -> u64 {
        datapath::packets(&self.counters(), hook, reason)
    }

    /// Links in the node namespace whose name starts with `prefix`.
    pub fn links_named(&self, prefix: &str) -> Vec<String> {
        let rt = crate::runtime();
        rt.block_on(async {
            Netlink::open(&self.node)
                .expect("netlink")
                .links()
                .await
                .expect("links")
                .into_iter()
                .map(|l| l.name)
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
    }

    /// IPv4 addresses host-local holds for the network (its files named by address).
    pub fn allocations(&self) -> Vec<Ipv4Addr> {
        self.allocated()
    }

    /// IPv6 addresses host-local holds for the network.
    pub fn allocations6(&self) -> Vec<Ipv6Addr> {
        self.allocated()
    }

    fn allocated<T: FromStr + Ord>(&self) -> Vec<T> {
        let dir = self.ipam_dir().join(&self.network);
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut ips: Vec<T> = entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        ips.sort();
        ips
    }

    /// The plugin's attachment records.
    pub fn records(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.data_dir().join(&self.network)) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".json"))
            .collect()
    }

    /// Asserts nothing of the network is left: no host veth, address, record, map entry or pin.
    /// (For a network of its own; a joined node's maps and pins are the node's.)
    #[track_caller]
    pub fn assert_clean(&self) {
        assert_eq!(
            self.links_named("fpc"),
            Vec::<String>::new(),
            "host veths left"
        );
        assert_eq!(self.allocations(), Vec::<Ipv4Addr>::new(), "addresses left");
        assert_eq!(
            self.allocations6(),
            Vec::<Ipv6Addr>::new(),
            "IPv6 addresses left"
        );
        assert_eq!(self.records(), Vec::<String>::new(), "records left");
        assert_eq!(self.endpoint_entries(), Vec::new(), "map entries left");
        assert!(
            !self.pin_dir().exists(),
            "pins left in {}",
            self.pin_dir().display()
        );
    }
}

impl Default for CniHost {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for CniHost {
    fn drop(&mut self) {
        // The namespace (with the bridge and veths) goes with `node`; pins and files are here. A
        // joined node's pins are its cluster's to remove.
        if self.owned.is_some() {
            let _ = std::fs::remove_dir_all(self.pin_dir());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn spawn(mut cmd: Command, stdin: &[u8]) -> Child {
    let mut child = cmd.spawn().expect("nsenter and the plugin run");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    child
}

fn finish(child: Child) -> Reply {
    let out = child.wait_with_output().expect("plugin finishes");
    let text = String::from_utf8_lossy(&out.stdout);
    Reply {
        success: out.status.success(),
        json: if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {text:?}"))
        },
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
