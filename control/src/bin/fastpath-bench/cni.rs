//! The CNI group: how long a runtime waits for `fastpath-cni` ADD and DEL, standalone and chained
//! after the reference `bridge` plugin, against the reference `bridge` plugin alone; all with
//! host-local IPAM, in pairs (ADD then DEL of one container) interleaved row by row. Each network
//! keeps one resident container throughout, so a pair measures a node that runs pods, not a
//! network's first pod.

use std::{
    os::fd::AsRawFd as _,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;
use serde_json::{Value, json};

use control::netns::{self, Netns, OwnedNetns};

/// Where Debian's containernetworking-plugins puts the reference plugins.
const REFERENCE_PLUGINS: &str = "/usr/lib/cni";
/// The benchmark's namespaces (removed with the others of `fastpath bench`, by prefix).
const NETNS_PREFIX: &str = "fpbench-x-cni-";
/// Its networks' names; their pins live under the CNI pin root by these names.
const NETWORK_PREFIX: &str = "fpbench-cni-";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CniRow {
    /// The reference `bridge` plugin, host-local IPAM: the yardstick.
    BridgePlugin,
    /// `fastpath-cni` in a network of its own (its bridge, its veth, its programs' link).
    Standalone,
    /// `fastpath-cni` chained after `bridge`: its own step only (the bridge step is not timed).
    Chained,
}

impl CniRow {
    pub const ALL: [CniRow; 3] = [CniRow::BridgePlugin, CniRow::Standalone, CniRow::Chained];

    pub fn name(self) -> &'static str {
        match self {
            CniRow::BridgePlugin => "bridge plugin",
            CniRow::Standalone => "fastpath-cni",
            CniRow::Chained => "fastpath-cni chained",
        }
    }

    /// The row in the names of its network and containers.
    fn tag(self) -> &'static str {
        match self {
            CniRow::BridgePlugin => "bridge",
            CniRow::Standalone => "standalone",
            CniRow::Chained => "chained",
        }
    }

    fn network(self) -> String {
        format!("{NETWORK_PREFIX}{}", self.tag())
    }

    fn subnet(self) -> &'static str {
        match self {
            CniRow::BridgePlugin => "198.18.200.0/24",
            CniRow::Standalone => "198.18.201.0/24",
            CniRow::Chained => "198.18.202.0/24",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CniOp {
    Add,
    Del,
}

impl CniOp {
    pub fn name(self) -> &'static str {
        match self {
            CniOp::Add => "ADD",
            CniOp::Del => "DEL",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct CniSample {
    pub pair: u32,
    pub row: CniRow,
    pub op: CniOp,
    pub ms: f64,
}

/// The plugins, a namespace they run in (the "node"), and their state directories.
struct CniHost {
    fastpath_cni: PathBuf,
    node: OwnedNetns,
}

/// Runs `pairs` ADD/DEL pairs per row, interleaved; removes everything it made, also on failure.
pub fn measure(pairs: u32, mut progress: impl FnMut()) -> Result<Vec<CniSample>> {
    clean_leftovers()?;
    let host = CniHost::new()?;
    let result = host.run(pairs, &mut progress);
    let cleaned = clean_leftovers();
    let samples = result?;
    cleaned?;
    Ok(samples)
}

/// Removes what a killed run left: namespaces, pins, state.
pub fn clean_leftovers() -> Result<()> {
    for name in netns::list_with_prefix(NETNS_PREFIX)? {
        Netns::named(name).delete()?;
    }
    for row in CniRow::ALL {
        let pins = Path::new(control::cni::PIN_ROOT).join(row.network());
        match std::fs::remove_dir_all(&pins) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", pins.display())),
        }
    }
    let dir = state_dir();
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
    }
}

fn bridge_plugin() -> PathBuf {
    Path::new(REFERENCE_PLUGINS).join("bridge")
}

fn state_dir() -> PathBuf {
    std::env::temp_dir().join("fpbench-cni")
}

impl CniHost {
    fn new() -> Result<Self> {
        let fastpath_cni = std::env::current_exe()
            .context("finding this binary")?
            .with_file_name("fastpath-cni");
        if !fastpath_cni.is_file() {
            bail!(
                "the CNI rows run {}, which is missing: build both binaries (`cargo xtask build --release`)",
                fastpath_cni.display()
            );
        }
        for plugin in ["bridge", "host-local"] {
            let path = Path::new(REFERENCE_PLUGINS).join(plugin);
            if !path.is_file() {
                bail!(
                    "the CNI rows run the reference plugin {}, which is missing (Debian package containernetworking-plugins)",
                    path.display()
                );
            }
        }
        let node = OwnedNetns::create(format!("{NETNS_PREFIX}node"))?;
        let dir = state_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self { fastpath_cni, node })
    }

    fn run(&self, pairs: u32, progress: &mut impl FnMut()) -> Result<Vec<CniSample>> {
        // A resident container per network, there throughout; removed with the namespaces.
        let mut residents = Vec::new();
        for row in CniRow::ALL {
            let resident = self.container(row, "resident")?;
            self.add(row, "resident", &resident)?;
            residents.push(resident);
        }
        let mut samples = Vec::new();
        for pair in 0..pairs {
            // Each pair starts with another row, so none always follows the same one; and its
            // namespaces go after all of its rows, so no row's command meets the kernel
            // tearing down another's (asynchronous, and under the RTNL lock).
            let mut containers = Vec::new();
            for i in 0..CniRow::ALL.len() {
                let row = CniRow::ALL[(pair as usize + i) % CniRow::ALL.len()];
                let id = format!("pair{pair}");
                let container = self.container(row, &id)?;
                let added = self.add(row, &id, &container)?;
                let deleted = self.del(row, &id, &container, &added.result)?;
                for (op, ms) in [(CniOp::Add, added.ms), (CniOp::Del, deleted)] {
                    samples.push(CniSample { pair, row, op, ms });
                }
                containers.push(container);
                progress();
            }
        }
        Ok(samples)
    }

    fn container(&self, row: CniRow, id: &str) -> Result<OwnedNetns> {
        Ok(OwnedNetns::create(format!(
            "{NETNS_PREFIX}{}-{id}",
            row.tag()
        ))?)
    }

    fn ipam(&self, row: CniRow) -> Value {
        json!({
            "type": "host-local",
            "dataDir": state_dir().join("ipam"),
            "ranges": [[{ "subnet": row.subnet() }]],
            "routes": [{ "dst": "0.0.0.0/0" }],
        })
    }

    fn bridge_conf(&self, row: CniRow) -> Value {
        let bridge = match row {
            CniRow::Chained => "fpbr-chained",
            _ => "fpbr-plugin",
        };
        json!({
            "cniVersion": "1.0.0",
            "name": row.network(),
            "type": "bridge",
            "bridge": bridge,
            "isGateway": true,
            "ipam": self.ipam(row),
        })
    }

    fn fastpath_conf(&self, row: CniRow, prev: Option<&Value>) -> Value {
        let mut conf = json!({
            "cniVersion": "1.0.0",
            "name": row.network(),
            "type": "fastpath-cni",
            "dataDir": state_dir().join("fastpath"),
        });
        match prev {
            Some(prev) => conf["prevResult"] = prev.clone(),
            None => {
                conf["bridge"] = json!("fpbr-fastpath");
                conf["ipam"] = self.ipam(row);
            }
        }
        conf
    }

    /// ADD: the timed plugin's time and the chain's result.
    fn add(&self, row: CniRow, id: &str, container: &OwnedNetns) -> Result<Timed> {
        let bridge = bridge_plugin();
        match row {
            CniRow::BridgePlugin => {
                self.exec(&bridge, "ADD", id, container, &self.bridge_conf(row))
            }
            CniRow::Standalone => {
                let conf = self.fastpath_conf(row, None);
                self.exec(&self.fastpath_cni, "ADD", id, container, &conf)
            }
            CniRow::Chained => {
                let first = self.exec(&bridge, "ADD", id, container, &self.bridge_conf(row))?;
                let conf = self.fastpath_conf(row, Some(&first.result));
                self.exec(&self.fastpath_cni, "ADD", id, container, &conf)
            }
        }
    }

    /// DEL, in the chain's reverse order: the timed plugin's time.
    fn del(&self, row: CniRow, id: &str, container: &OwnedNetns, result: &Value) -> Result<f64> {
        let bridge = bridge_plugin();
        match row {
            CniRow::BridgePlugin => Ok(self
                .exec(&bridge, "DEL", id, container, &self.bridge_conf(row))?
                .ms),
            CniRow::Standalone => {
                let conf = self.fastpath_conf(row, None);
                Ok(self
                    .exec(&self.fastpath_cni, "DEL", id, container, &conf)?
                    .ms)
            }
            CniRow::Chained => {
                let conf = self.fastpath_conf(row, Some(result));
                let timed = self.exec(&self.fastpath_cni, "DEL", id, container, &conf)?;
                let mut bridge_conf = self.bridge_conf(row);
                bridge_conf["prevResult"] = result.clone();
                self.exec(&bridge, "DEL", id, container, &bridge_conf)?;
                Ok(timed.ms)
            }
        }
    }

    /// Runs `plugin` in the node namespace, as a runtime does: CNI variables, the configuration
    /// on stdin. Timed from spawn to exit.
    fn exec(
        &self,
        plugin: &Path,
        command: &str,
        id: &str,
        container: &OwnedNetns,
        conf: &Value,
    ) -> Result<Timed> {
        let node = self.node.netns().open()?;
        let container_path = format!(
            "{}/{}",
            netns::NETNS_RUN_DIR,
            container.netns().name().expect("named")
        );
        let mut cmd = Command::new(plugin);
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", &container_path)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", REFERENCE_PLUGINS)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let fd = node.as_raw_fd();
        // SAFETY: setns is async-signal-safe; the descriptor stays open until after the spawn.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let stdin = serde_json::to_vec(conf)?;
        let start = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", plugin.display()))?;
        {
            use std::io::Write as _;
            child
                .stdin
                .take()
                .expect("piped")
                .write_all(&stdin)
                .with_context(|| format!("writing the configuration to {}", plugin.display()))?;
        }
        let out = child.wait_with_output()?;
        let elapsed = start.elapsed();
        if !out.status.success() {
            bail!(
                "{} {command} of {id} failed: {}{}",
                plugin.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let result = if command == "ADD" {
            serde_json::from_slice(&out.stdout)
                .with_context(|| format!("{} ADD printed no JSON result", plugin.display()))?
        } else {
            Value::Null
        };
        Ok(Timed {
            ms: elapsed.as_secs_f64() * 1e3,
            result,
        })
    }
}

struct Timed {
    ms: f64,
    result: Value,
}
