//! Fixtures for fastpath's integration tests: namespaces that clean up after themselves, small
//! topologies built from them, and crafted frames.
//!
//! Every test builds its own namespaces with unique names (`fpt-<pid>-<seq>-<tag>`), so tests run
//! in parallel. Guards delete them on drop, also when a test panics; namespaces left by a killed
//! run (whose pid is gone) are removed the next time a fixture is made.

pub mod agents;
pub mod capture;
pub mod cni;
pub mod etcd;
pub mod frames;
pub mod hostile;
pub mod probe;
pub mod vxlan;
pub mod witness;

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    sync::{
        Once,
        atomic::{AtomicU32, Ordering},
    },
};

use control::{
    cluster::{self, Cluster},
    config::{ClusterConfig, Mode},
    datapath::{self, Hook},
    guard,
    netns::{self, Netns, OwnedNetns},
    ownership::Ownership,
    topology::{self, Endpoint},
};

use datapath_common::reasons::Reason;

const TEST_PREFIX: &str = "fpt-";

/// The pod program of a mode (the one that redirects and encapsulates), if any.
pub fn pod_program(mode: Mode) -> Option<Hook> {
    match mode {
        Mode::Kernel => None,
        Mode::Xdp => Some(Hook::Xdp),
        Mode::Tc => Some(Hook::Tc),
    }
}

/// Panics with a clear message unless running as root: the tests create devices and load programs.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "fastpath's integration tests need root: run them with `cargo xtask test` as root"
    );
}

/// A current-thread runtime: namespaces are per thread, so everything stays on the test's thread.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A name prefix no other test (in this or a parallel run) uses: `fpt-<pid>-<seq>-`.
pub fn unique_prefix() -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    remove_leftovers_of_dead_runs();
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{TEST_PREFIX}{}-{seq}-", std::process::id())
}

/// A namespace name no other test (in this or a parallel run) uses.
pub fn unique_netns_name(tag: &str) -> String {
    format!("{}{tag}", unique_prefix())
}

/// The pid in a `fpt-<pid>-…` name, if the process is gone.
fn dead_run(name: &str) -> bool {
    let pid = name[TEST_PREFIX.len()..].split('-').next().unwrap_or("");
    pid.is_empty() || !std::path::Path::new("/proc").join(pid).exists()
}

/// Deletes `fpt-<pid>-…` namespaces (and fastpath ownership records) of test runs that died
/// without cleaning up (SIGKILL, a timeout).
fn remove_leftovers_of_dead_runs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for name in netns::list_with_prefix(TEST_PREFIX).unwrap_or_default() {
            if dead_run(&name) {
                let _ = Netns::named(name).delete();
            }
        }
        // Pins of dead runs (clusters, CNI networks): removing them detaches their programs.
        for root in [control::datapath::PIN_ROOT, control::cni::PIN_ROOT] {
            let Ok(dirs) = std::fs::read_dir(root) else {
                continue;
            };
            for dir in dirs.flatten() {
                let name = dir.file_name().to_string_lossy().into_owned();
                if name.starts_with(TEST_PREFIX) && dead_run(&name) {
                    let _ = std::fs::remove_dir_all(dir.path());
                }
            }
        }
        let records = Ownership::new(TEST_PREFIX)
            .claimed_netns()
            .unwrap_or_default();
        for name in records.into_iter().filter(|n| dead_run(n)) {
            let _ = Ownership::new(TEST_PREFIX).release_netns(&name);
        }
    });
}

/// A fresh prefix whose leftovers (namespaces, pins, devices in this namespace) are removed with
/// `down` when it is dropped, also when the test panics.
pub struct PrefixGuard(pub String);

impl PrefixGuard {
    pub fn new() -> Self {
        Self(unique_prefix())
    }
}

impl Default for PrefixGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PrefixGuard {
    fn drop(&mut self) {
        if let Err(e) = runtime().block_on(cluster::down(&Ownership::new(&self.0))) {
            eprintln!("cleanup of {}: {e:#}", self.0);
        }
    }
}

/// A cluster under a prefix of its own; `fastpath down` runs when it is dropped, also on panic.
pub struct TestCluster {
    pub cluster: Cluster,
    pub rt: tokio::runtime::Runtime,
}

impl TestCluster {
    /// The embedded demo cluster (two nodes, two pods each, mode tc), not brought up yet.
    pub fn demo() -> Self {
        Self::with_config(ClusterConfig::load(None).expect("demo config"))
    }

    /// The demo cluster brought up with every node in `mode`.
    pub fn demo_in(mode: control::config::Mode) -> Self {
        let mut tc = Self::demo();
        tc.cluster.mode_override = Some(mode);
        tc.up();
        tc
    }

    pub fn with_config(config: ClusterConfig) -> Self {
        Self::with_prefix(config, &unique_prefix())
    }

    pub fn with_prefix(config: ClusterConfig, prefix: &str) -> Self {
        require_root();
        Self {
            cluster: Cluster::new(config, prefix),
            rt: runtime(),
        }
    }

    /// Runs `fastpath up`; returns the changes it reports.
    pub fn up(&self) -> Vec<String> {
        self.rt
            .block_on(cluster::up(&self.cluster))
            .expect("fastpath up")
    }

    pub fn status(&self) -> cluster::ClusterStatus {
        self.rt
            .block_on(cluster::status(&self.cluster))
            .expect("fastpath status")
    }

    /// Every pod with an IPv4 address: its name, address and namespace.
    pub fn pods(&self) -> Vec<(String, Ipv4Addr, Netns)> {
        self.cluster
            .config
            .nodes
            .iter()
            .flat_map(|n| n.pods.iter().map(move |p| (n, p)))
            .filter_map(|(n, p)| Some((p.name.clone(), p.address?, self.cluster.pod_netns(n, p))))
            .collect()
    }

    pub fn node_netns(&self, node: &str) -> Netns {
        self.cluster
            .node_netns(self.cluster.config.node(node).expect("node"))
    }

    /// Puts node a in `a` and node b in `b` and converges: the node that keeps its mode is not
    /// touched, its peer switches under it.
    pub fn set_modes(&mut self, a: Mode, b: Mode) {
        self.cluster.mode_override = None;
        for node in &mut self.cluster.config.nodes {
            node.mode = Some(if node.name == "a" { a } else { b });
        }
        self.up();
    }

    /// Packets `hook`'s program on `node` counted under `reason` (0 with no pins).
    pub fn counted(&self, node: &str, hook: Hook, reason: Reason) -> u64 {
        let dir = self
            .cluster
            .pin_dir(self.cluster.config.node(node).expect("node"));
        datapath::pinned_counters(&dir).map_or(0, |rows| datapath::packets(&rows, hook, reason))
    }

    /// What `node`'s kernel-path guard dropped, by rule.
    pub fn guarded(&self, node: &str) -> BTreeMap<&'static str, u64> {
        let table = guard::table_name(self.cluster.prefix());
        guard::counters(&self.node_netns(node), &table)
            .expect("the guard's counters")
            .unwrap_or_else(|| panic!("node {node} has no guard table {table}"))
            .into_iter()
            .map(|c| (c.reason, c.packets))
            .collect()
    }

    /// The namespace of pod `name`.
    pub fn pod_netns(&self, name: &str) -> Netns {
        let config = &self.cluster.config;
        config
            .nodes
            .iter()
            .find_map(|n| n.pods.iter().find(|p| p.name == name).map(|p| (n, p)))
            .map(|(n, p)| self.cluster.pod_netns(n, p))
            .unwrap_or_else(|| panic!("no pod {name}"))
    }

    /// The MAC of `dev` in `netns`.
    pub fn mac_of(&self, netns: &Netns, dev: &str) -> [u8; 6] {
        mac_of(&self.rt, netns, dev)
    }

    /// Namespaces under this cluster's prefix that exist now.
    pub fn namespaces_left(&self) -> Vec<String> {
        netns::list_with_prefix(self.cluster.prefix()).expect("list /run/netns")
    }
}

/// The MAC of `dev` in `netns`.
pub fn mac_of(rt: &tokio::runtime::Runtime, netns: &Netns, dev: &str) -> [u8; 6] {
    let nl = rt
        .block_on(async { control::netlink::Netlink::open(netns) })
        .unwrap();
    let view = rt.block_on(nl.link_view(dev)).unwrap();
    view.and_then(|v| v.mac)
        .unwrap_or_else(|| panic!("{dev} in {} has no MAC", netns.label()))
        .0
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if let Err(e) = self.rt.block_on(cluster::down(&self.cluster.ownership)) {
            eprintln!("cleanup of {}: {e:#}", self.cluster.prefix());
        }
    }
}

/// A namespace of a test's own for BPF_PROG_TEST_RUN, with a veth (`rx0`) to stand for a
/// redirect target: a devmap only takes devices that exist.
pub struct TestRunNetns {
    pub ns: OwnedNetns,
    /// The ifindex of `rx0`.
    pub rx_index: u32,
}

impl TestRunNetns {
    pub fn new(rt: &tokio::runtime::Runtime, tag: &str) -> Self {
        require_root();
        let ns = OwnedNetns::create(unique_netns_name(tag)).unwrap();
        let nl = rt
            .block_on(async { control::netlink::Netlink::open(ns.netns()) })
            .unwrap();
        rt.block_on(nl.create_veth("rx0", "rx1", ns.netns()))
            .unwrap();
        let rx_index = rt.block_on(nl.index("rx0")).unwrap();
        Self { ns, rx_index }
    }
}

/// Two namespaces, `a` and `b`, joined by a veth pair in 198.18.0.0/30 (a = .1, b = .2).
pub struct VethPair {
    pub a: Endpoint,
    pub b: Endpoint,
    _namespaces: [OwnedNetns; 2],
}

impl VethPair {
    pub fn new(rt: &tokio::runtime::Runtime, tag: &str) -> Self {
        require_root();
        let ns_a =
            OwnedNetns::create(unique_netns_name(&format!("{tag}-a"))).expect("create netns a");
        let ns_b =
            OwnedNetns::create(unique_netns_name(&format!("{tag}-b"))).expect("create netns b");
        let a = Endpoint {
            netns: ns_a.netns().clone(),
            dev: "veth-a".into(),
            addr: Ipv4Addr::new(198, 18, 0, 1),
        };
        let b = Endpoint {
            netns: ns_b.netns().clone(),
            dev: "veth-b".into(),
            addr: Ipv4Addr::new(198, 18, 0, 2),
        };
        rt.block_on(async {
            topology::create_namespace(&a.netns)
                .await
                .expect("lo up in a");
            topology::create_namespace(&b.netns)
                .await
                .expect("lo up in b");
            topology::connect(&a, &b, 30)
                .await
                .expect("veth pair a<->b");
        });
        Self {
            a,
            b,
            _namespaces: [ns_a, ns_b],
        }
    }
}

/// The `fastpath` binary `cargo xtask test` builds before running the tests.
pub fn fastpath_bin() -> std::path::PathBuf {
    workspace_bin("fastpath")
}

/// A binary of the workspace, next to the test executable (`cargo xtask test` builds them all).
pub fn workspace_bin(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps")
        .join(name);
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo xtask test`, which builds it",
        bin.display()
    );
    bin
}

/// A `fastpath` command under `prefix`, run inside `netns` (through nsenter, which keeps the
/// mount namespace, so the namespaces it creates stay visible) or here.
pub fn fastpath(prefix: &str, netns: Option<&Netns>) -> std::process::Command {
    let mut cmd = match netns {
        Some(ns) => {
            let mut cmd = std::process::Command::new("nsenter");
            cmd.arg(format!(
                "--net={}/{}",
                netns::NETNS_RUN_DIR,
                ns.name().expect("named")
            ))
            .arg("--")
            .arg(fastpath_bin());
            cmd
        }
        None => std::process::Command::new(fastpath_bin()),
    };
    cmd.args(["--prefix", prefix]);
    cmd
}
