//! Simulated nodes, each driven by its own `fastpath-agent` process (in the root namespace, as
//! on a real node), finding each other through a real etcd cluster: every node on one underlay
//! segment, under one namespace prefix, each agent owning its node. Agents are stopped by the
//! PIDs started here and the prefix is brought down when the value is dropped, also on a panic.

use std::{
    net::Ipv4Addr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use control::{
    cluster,
    datapath::{self, Hook},
    netns::Netns,
    ownership::Ownership,
};
use datapath_common::reasons::Reason;
use ipnet::Ipv4Net;

use crate::etcd::EtcdCluster;

/// The cluster network the agents lease pod CIDRs from.
pub const NETWORK: &str = "198.18.64.0/20";

pub struct Agents {
    pub etcd: EtcdCluster,
    pub prefix: String,
    pub key_prefix: String,
    dir: PathBuf,
    agents: Vec<(String, Option<Child>)>,
    /// Each node's /metrics port on 127.0.0.1.
    metrics_ports: Vec<(String, u16)>,
    rt: tokio::runtime::Runtime,
}

impl Agents {
    pub fn new(etcd: EtcdCluster) -> Self {
        crate::require_root();
        let prefix = crate::unique_prefix();
        let dir = std::env::temp_dir().join(format!("{prefix}agents"));
        std::fs::create_dir_all(&dir).expect("agents' directory");
        Self {
            etcd,
            key_prefix: format!("/fastpath-test/{prefix}"),
            prefix,
            dir,
            agents: Vec::new(),
            metrics_ports: Vec::new(),
            rt: crate::runtime(),
        }
    }

    /// Node `name` (the `i`th: underlay 198.18.0.<i>), pods `<name>1` and `<name>2`, no pod CIDR
    /// (leased).
    fn node_file(&self, name: &str, i: u8) -> PathBuf {
        let text = format!(
            r#"mode = "tc"
[[node]]
name = "{name}"
simulated = true
underlay = {{ device = "fp-ul0", address = "198.18.0.{i}/24", mtu = 1500 }}
pods = [{{ name = "{name}1" }}, {{ name = "{name}2" }}]

[[underlay_segment]]
name = "lan"
nodes = ["{name}"]
"#
        );
        let path = self.dir.join(format!("{name}.toml"));
        std::fs::write(&path, text).expect("node file");
        path
    }

    /// Starts the agent of node `name` (the `i`th), logging to `<dir>/<name>.log`; under TLS
    /// with the test CA and its client certificate.
    pub fn start(&mut self, name: &str, i: u8) {
        let args = self.tls_args(true);
        self.start_with(name, i, &args);
    }

    /// The agent's TLS arguments for this etcd (none without TLS); `client_cert`: with the
    /// client certificate.
    pub fn tls_args(&self, client_cert: bool) -> Vec<String> {
        let Some(pki) = &self.etcd.pki else {
            return Vec::new();
        };
        let mut args = vec!["--etcd-cacert".to_string(), pki.ca.display().to_string()];
        if client_cert {
            args.extend([
                "--etcd-cert".to_string(),
                pki.client.0.display().to_string(),
                "--etcd-key".to_string(),
                pki.client.1.display().to_string(),
            ]);
        }
        args
    }

    /// Starts the agent of node `name` with `extra` arguments.
    pub fn start_with(&mut self, name: &str, i: u8, extra: &[String]) {
        let file = self.node_file(name, i);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{name}.log")))
            .expect("agent log");
        let port = match self.metrics_ports.iter().find(|(n, _)| n == name) {
            Some((_, port)) => *port,
            None => {
                let port = crate::etcd::free_ports(1)[0];
                self.metrics_ports.push((name.to_string(), port));
                port
            }
        };
        let child = Command::new(crate::workspace_bin("fastpath-agent"))
            .arg("--config")
            .arg(&file)
            .args(["--metrics", &format!("127.0.0.1:{port}")])
            .args(["--etcd", &self.etcd.endpoints().join(",")])
            .args(["--key-prefix", &self.key_prefix])
            .args(["--prefix", &self.prefix])
            .args(["--network", NETWORK, "--ttl", "3"])
            .args(extra)
            .env("RUST_LOG", "warn,agent=info,control=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("fastpath-agent starts");
        match self.agents.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = Some(child),
            None => self.agents.push((name.to_string(), Some(child))),
        }
        // The endpoint is up before the agent reaches for etcd: tests may ask it at once.
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{name}'s agent serves nothing on {port}; its log:\n{}",
                self.log(name)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` to node `name`'s agent and reaps it.
    pub fn stop(&mut self, name: &str, signal: nix::sys::signal::Signal) {
        let slot = self.agents.iter_mut().find(|(n, _)| n == name);
        let Some(mut child) = slot.and_then(|(_, c)| c.take()) else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, signal);
        let _ = child.wait();
    }

    /// Runs `fastpath-agent --leave` for node `name` (its agent stopped first).
    pub fn leave(&mut self, name: &str, i: u8) {
        self.stop(name, nix::sys::signal::Signal::SIGTERM);
        let file = self.node_file(name, i);
        let out = Command::new(crate::workspace_bin("fastpath-agent"))
            .arg("--config")
            .arg(&file)
            .args(["--etcd", &self.etcd.endpoints().join(",")])
            .args(["--key-prefix", &self.key_prefix])
            .args(self.tls_args(true))
            .arg("--leave")
            .output()
            .expect("fastpath-agent --leave runs");
        assert!(
            out.status.success(),
            "--leave: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The resident memory of node `name`'s agent, in KiB.
    pub fn resident_kib(&self, name: &str) -> u64 {
        let pid = self
            .agents
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, c)| c.as_ref())
            .expect("a running agent")
            .id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("its status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS")
    }

    /// Writes `value` under node key `name`, as anyone with write access to the prefix could.
    pub fn put_record(&self, name: &str, value: &str) {
        let key = agent::keys::Keys::new(&self.key_prefix).node(name);
        self.rt.block_on(async {
            let mut client = self.etcd.client().await.expect("etcd client");
            client.put(key, value, None).await.expect("put");
        });
    }

    /// The pod CIDRs node `name` routes through its VXLAN device.
    pub fn routed(&self, name: &str) -> Vec<Ipv4Net> {
        let netns = Netns::named(format!("{}{name}", self.prefix));
        self.rt.block_on(async {
            let nl = control::netlink::Netlink::open(&netns).expect("netlink");
            let index = nl.index("fp-vxlan").await.expect("fp-vxlan");
            let routes = nl.ipv4_routes(index).await.expect("routes");
            routes.into_iter().map(|(dst, _)| dst).collect()
        })
    }

    /// GET `path` from node `name`'s agent: the status line and the body.
    pub fn http_get(&self, name: &str, path: &str) -> (String, String) {
        use std::io::{Read as _, Write as _};
        let port = self
            .metrics_ports
            .iter()
            .find(|(n, _)| n == name)
            .expect("an agent started here")
            .1;
        let mut stream =
            std::net::TcpStream::connect(("127.0.0.1", port)).expect("the agent's endpoint");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("a response");
        let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
        let status = head.lines().next().unwrap_or_default().to_string();
        (status, body.to_string())
    }

    /// Writes node `name`'s file for `fastpath stats`: as the agent runs it, with its leased
    /// CIDR and its pod's address.
    pub fn stats_config(&self, name: &str, i: u8) -> PathBuf {
        let cidr = self.pod_cidr(name, Duration::from_secs(1));
        let pod = self.pod_address(name);
        let text = std::fs::read_to_string(self.node_file(name, i))
            .unwrap()
            .replace(
                "simulated = true",
                &format!("simulated = true\npod_cidr = \"{cidr}\""),
            )
            .replace(
                &format!("{{ name = \"{name}1\" }}"),
                &format!("{{ name = \"{name}1\", address = \"{pod}\" }}"),
            )
            .replace(
                &format!("{{ name = \"{name}2\" }}"),
                &format!(
                    "{{ name = \"{name}2\", address = \"{}\" }}",
                    self.pod_address_of(name, 2)
                ),
            );
        let path = self.dir.join(format!("{name}-stats.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// What node `name`'s agent logged so far.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// The pod CIDR leased to `name`, once it is.
    pub fn pod_cidr(&self, name: &str, within: Duration) -> Ipv4Net {
        let start = Instant::now();
        let keys = agent::keys::Keys::new(&self.key_prefix);
        loop {
            let leased = self.rt.block_on(async {
                let mut client = self.etcd.client().await.ok()?;
                agent::subnets::leases(&mut client, &keys).await.ok()
            });
            if let Some((cidr, _)) = leased
                .unwrap_or_default()
                .into_iter()
                .find(|(_, owner)| owner == name)
            {
                return cidr;
            }
            assert!(
                start.elapsed() < within,
                "no subnet leased to '{name}' within {within:?}; its log:\n{}",
                self.log(name)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The address of pod `<name>1`: its node's CIDR, .2.
    pub fn pod_address(&self, name: &str) -> Ipv4Addr {
        self.pod_address_of(name, 1)
    }

    /// The address of pod `<name><n>`: its node's CIDR, .<n + 1>.
    pub fn pod_address_of(&self, name: &str, n: u32) -> Ipv4Addr {
        let cidr = self.pod_cidr(name, Duration::from_secs(20));
        Ipv4Addr::from(u32::from(cidr.network()) + 1 + n)
    }

    /// The namespace of pod `<name>1`.
    pub fn pod_netns(&self, name: &str) -> Netns {
        self.pod_netns_of(name, 1)
    }

    /// The namespace of pod `<name><n>`.
    pub fn pod_netns_of(&self, name: &str, n: u32) -> Netns {
        Netns::named(format!("{}{name}-{name}{n}", self.prefix))
    }

    /// Pings from `from`'s first pod to `to`'s, once a second at most, until one answers.
    pub fn wait_reachable(&self, from: &str, to: &str, within: Duration) -> Duration {
        self.wait_pods_reachable((from, 1), (to, 1), within)
    }

    /// Pings from pod (node, n) `from` to pod `to`, once a second at most, until one answers.
    pub fn wait_pods_reachable(
        &self,
        (from, from_pod): (&str, u32),
        (to, to_pod): (&str, u32),
        within: Duration,
    ) -> Duration {
        let start = Instant::now();
        let dst = self.pod_address_of(to, to_pod);
        loop {
            let src = self.pod_netns_of(from, from_pod);
            if src.exists() && crate::probe::ping(&src, dst, 1, &["-W", "1"]) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < within,
                "{from} never reached {to} ({dst}) within {within:?}; logs:\n{from}: {}\n{to}: {}",
                self.log(from),
                self.log(to)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A watch on node `name`'s record, opened now.
    pub fn watch_node_record(&self, name: &str) -> RecordWatch {
        let rt = crate::runtime();
        let key = agent::keys::Keys::new(&self.key_prefix).node(name);
        let (client, stream) = rt.block_on(async {
            let mut client = self.etcd.client().await.expect("etcd client");
            let stream = client.watch(key, None).await.expect("watch");
            (client, stream)
        });
        RecordWatch {
            rt,
            _client: client,
            stream,
        }
    }

    /// Waits until node `name` no longer routes to `cidr` (a peer's pod CIDR).
    pub fn wait_withdrawn(&self, name: &str, cidr: Ipv4Net, within: Duration) -> Duration {
        let start = Instant::now();
        loop {
            if !self.routed(name).contains(&cidr) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < within,
                "{name} still routes to {cidr} after {within:?}; its log:\n{}",
                self.log(name)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Packets node `name`'s `hook` program counted under `reason`.
    pub fn counted(&self, name: &str, hook: Hook, reason: Reason) -> u64 {
        let dir = cluster::prefix_pin_dir(&self.prefix).join(name);
        datapath::packets(
            &datapath::pinned_counters(&dir).unwrap_or_default(),
            hook,
            reason,
        )
    }
}

impl Drop for Agents {
    fn drop(&mut self) {
        for (_, child) in &mut self.agents {
            if let Some(mut child) = child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // The agents leave their nodes running: everything under the prefix goes now.
        if let Err(e) = self
            .rt
            .block_on(cluster::down(&Ownership::new(&self.prefix)))
        {
            eprintln!("cleanup of {}: {e:#}", self.prefix);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A watch on one node's record.
pub struct RecordWatch {
    rt: tokio::runtime::Runtime,
    _client: etcd_client::Client,
    stream: etcd_client::WatchStream,
}

impl RecordWatch {
    /// Waits for the record to be written; returns when that was seen.
    pub fn wait(&mut self, within: Duration) -> Instant {
        let stream = &mut self.stream;
        self.rt.block_on(async {
            loop {
                let message = tokio::time::timeout(within, stream.message())
                    .await
                    .expect("the record within the time")
                    .expect("the watch")
                    .expect("the watch goes on");
                if message
                    .events()
                    .iter()
                    .any(|e| e.event_type() == etcd_client::EventType::Put)
                {
                    return Instant::now();
                }
            }
        })
    }
}
