//! `fastpath-cni`: a CNI plugin (specification 1.0.0 and 1.1.0) that puts containers on the fast
//! path, as the only plugin of a network (standalone: it makes the veth pair, asks the IPAM
//! plugin for addresses, joins the host end to the network's bridge) or after the reference
//! `bridge` plugin in a chain (it takes the veth that plugin made from `prevResult`). Either way
//! the host-side veth gets tc_pod and the pod an entry in the network's pinned maps.

mod fastpath;
mod ipam;
mod network;
mod node;
mod show;
mod spec;
mod store;

use std::{io::Read as _, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use ipnet::IpNet;
use serde_json::Value;

pub use fastpath::PIN_ROOT;
pub use show::show;
pub use spec::{CniError, Code, SUPPORTED_VERSIONS};
pub use store::DEFAULT_DATA_DIR;

use self::{
    fastpath::Pins,
    ipam::Ipam,
    network::{Attachment, Standalone},
    node::JoinedNode,
    spec::{CniResult, Command, Env, NetConf, VersionInfo},
    store::{Record, Store},
};
use crate::{
    datapath::{self, Owner},
    error::chain,
    netlink::Netlink,
    netns::Netns,
};

/// The bridge of a standalone network whose configuration names none.
pub const DEFAULT_BRIDGE: &str = "fp-cni0";
const DEFAULT_MTU: u32 = 1500;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// tc_pod on every host veth: the fast path.
    Tc,
    /// The same devices and maps' bookkeeping, no program: the kernel path, to compare with.
    Kernel,
}

/// The configuration's keys that this plugin reads, checked.
struct Settings {
    network: String,
    mode: Mode,
    bridge: String,
    mtu: u32,
    data_dir: PathBuf,
    lock_timeout: Duration,
    /// The fastpath node the network joined: its bridge, MTU and maps are the network's.
    node: Option<JoinedNode>,
}

fn invalid(msg: String) -> CniError {
    CniError::new(Code::InvalidConfig, msg)
}

impl Settings {
    fn new(conf: &NetConf, raw: &Value) -> Result<Self, CniError> {
        spec::validate_network_name(&conf.name)?;
        let mode = match conf.mode.as_deref() {
            None | Some("tc") => Mode::Tc,
            Some("kernel") => Mode::Kernel,
            Some(other) => {
                return Err(invalid(format!(
                    "\"mode\": \"{other}\" is not one of \"tc\" (the fast path) or \"kernel\""
                )));
            }
        };
        let node = raw.get("node").map(JoinedNode::from_conf).transpose()?;
        if let Some(node) = &node
            && let Some(key) = ["bridge", "mtu"].into_iter().find(|k| raw.get(k).is_some())
        {
            return Err(invalid(format!(
                "\"{key}\" comes from node '{}' when \"node\" is given; leave it out",
                node.name
            )));
        }
        let bridge = match &node {
            Some(node) => node.bridge.clone(),
            None => conf.bridge.clone().unwrap_or_else(|| DEFAULT_BRIDGE.into()),
        };
        if let Err(e) = crate::ifname::check(&bridge) {
            return Err(invalid(format!("\"bridge\": \"{bridge}\": {e}")));
        }
        let mtu = match &node {
            Some(node) => node.mtu,
            None => conf.mtu.unwrap_or(DEFAULT_MTU),
        };
        if !(576..=65535).contains(&mtu) {
            return Err(invalid(format!("\"mtu\": {mtu} is outside 576..65535")));
        }
        let data_dir = match raw.get("dataDir") {
            None => PathBuf::from(store::DEFAULT_DATA_DIR),
            Some(Value::String(d)) if d.starts_with('/') => PathBuf::from(d),
            Some(other) => {
                return Err(invalid(format!(
                    "\"dataDir\": {other} must be an absolute path"
                )));
            }
        };
        let lock_timeout = match raw.get("lockTimeout") {
            None => store::DEFAULT_LOCK_TIMEOUT,
            Some(v) => v
                .as_f64()
                .filter(|s| (0.0..=3600.0).contains(s))
                .map(Duration::from_secs_f64)
                .ok_or_else(|| {
                    invalid(format!("\"lockTimeout\": {v} must be seconds, 0 to 3600"))
                })?,
        };
        Ok(Self {
            network: conf.name.clone(),
            mode,
            bridge,
            mtu,
            data_dir,
            lock_timeout,
            node,
        })
    }

    fn pins(&self) -> Pins {
        match &self.node {
            Some(node) => Pins::Node(node.clone()),
            None => Pins::Own(fastpath::pin_dir(&self.network)),
        }
    }
}

/// When the invocation started, for the step times in the debug log.
static STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// A step of ADD or DEL reached. Logged at debug level with the time since the plugin started
/// (`RUST_LOG=debug`: where a command's milliseconds go). Fault injection for the crash tests: with
/// `FASTPATH_CNI_KILL_AT=STEP` in its environment, the plugin kills itself (SIGKILL, nothing
/// cleaned up) at that step, as a runtime's timeout or an OOM kill would. Runtimes pass only the
/// CNI variables, so this never fires in use.
fn step(step: &str) {
    if let Some(started) = STARTED.get() {
        log::debug!(
            "{step} after {:.1} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
    }
    if std::env::var("FASTPATH_CNI_KILL_AT").is_ok_and(|s| s == step) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

/// The steps of ADD where [`step`] can stop it (the crash tests do), in order.
pub const CRASH_POINTS: [&str; 6] = [
    "record-written",
    "ipam-added",
    "veth-created",
    "container-configured",
    "attached",
    "record-complete",
];

/// The plugin's entry point: the CNI protocol when CNI_COMMAND is set, else a small CLI
/// (`--help`, `show`) for people.
pub fn main() -> ExitCode {
    STARTED.get_or_init(std::time::Instant::now);
    if std::env::var_os("CNI_COMMAND").is_none() {
        return show::cli(std::env::args().skip(1).collect());
    }
    let mut stdin = Vec::new();
    let reply = match std::io::stdin().read_to_end(&mut stdin) {
        Ok(_) => run(|k| std::env::var(k).ok(), &stdin),
        Err(e) => Err(CniError::new(Code::Io, format!("cannot read stdin: {e}"))),
    };
    match reply {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(out)) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("{}", serde_json::to_string(&e).expect("errors serialize"));
            eprintln!("fastpath-cni: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One invocation: the environment (through `var`) and stdin in, the JSON to print out.
pub fn run(var: impl Fn(&str) -> Option<String>, stdin: &[u8]) -> Result<Option<Value>, CniError> {
    let env = Env::read(var)?;
    if env.command == Command::Version {
        return Ok(Some(version(stdin)));
    }
    let (conf, raw) = spec::parse_conf(stdin)?;
    let version = conf.cni_version.clone();
    let with_version = |mut e: CniError| {
        e.cni_version = version.clone();
        e
    };
    let settings = Settings::new(&conf, &raw).map_err(with_version)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CniError::new(Code::Io, format!("cannot start a runtime: {e}")))?;
    let plugin = Plugin {
        env: &env,
        conf: &conf,
        raw: &raw,
        settings: &settings,
    };
    runtime
        .block_on(async {
            match env.command {
                Command::Add => plugin.add().await.map(Some),
                Command::Del => plugin.del().await.map(|()| None),
                Command::Check => plugin.check().await.map(|()| None),
                Command::Status => plugin.status().map(|()| None),
                Command::Gc => plugin.gc().await.map(|()| None),
                Command::Version => unreachable!("answered above"),
            }
        })
        .map_err(with_version)
}

/// VERSION: the versions this plugin speaks; stdin holds at most `{"cniVersion": …}`.
fn version(stdin: &[u8]) -> Value {
    let asked = serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| v["cniVersion"].as_str().map(str::to_string))
        .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()));
    serde_json::to_value(VersionInfo {
        cni_version: asked.unwrap_or_else(|| spec::LATEST_VERSION.into()),
        supported_versions: SUPPORTED_VERSIONS.to_vec(),
    })
    .expect("version info serializes")
}

struct Plugin<'a> {
    env: &'a Env,
    conf: &'a NetConf,
    raw: &'a Value,
    settings: &'a Settings,
}

fn failed(e: anyhow::Error) -> CniError {
    CniError::failed(&e)
}

impl Plugin<'_> {
    fn store(&self) -> Result<Store, CniError> {
        Store::open(
            &self.settings.data_dir,
            &self.settings.network,
            self.settings.lock_timeout,
        )
    }

    fn netns_label(&self) -> Option<String> {
        self.env.netns.as_ref().map(|p| p.display().to_string())
    }

    fn container_netns(&self) -> Result<Netns, CniError> {
        let path = self
            .env
            .netns
            .as_ref()
            .expect("ADD and CHECK require CNI_NETNS");
        let netns = Netns::at_path(path);
        netns.open().map_err(|e| {
            CniError::new(
                Code::UnknownContainer,
                format!(
                    "the container's network namespace {}: {}",
                    path.display(),
                    chain(&e)
                ),
            )
        })?;
        Ok(netns)
    }

    async fn add(&self) -> Result<Value, CniError> {
        let store = self.store()?;
        let (id, ifname) = (&self.env.container_id, &self.env.ifname);
        if let Some(old) = store.get(id, ifname)? {
            if old.complete {
                return Err(CniError::new(
                    Code::Failed,
                    format!(
                        "container {id} already has {ifname} on network '{}'; DEL it first",
                        self.settings.network
                    ),
                ));
            }
            // A killed ADD's leftovers: undone before starting again.
            self.undo(&store, &old).await?;
        }
        let netns = self.container_netns()?;
        let mut result = match &self.conf.prev_result {
            Some(prev) => self.add_chained(&store, prev, &netns).await?,
            None => self.add_standalone(&store, &netns).await?,
        };
        result["cniVersion"] = Value::String(self.conf.cni_version.clone());
        Ok(result)
    }

    async fn add_standalone(&self, store: &Store, netns: &Netns) -> Result<Value, CniError> {
        let ipam = Ipam::find(self.env, self.raw)?.ok_or_else(|| {
            invalid("a standalone fastpath-cni network needs an \"ipam\" section".into())
        })?;
        let (net, id, ifname) = (
            &self.settings.network,
            &self.env.container_id,
            &self.env.ifname,
        );
        let mut record = Record::started(
            id,
            ifname,
            self.netns_label(),
            network::host_veth_name(net, id, ifname),
            true,
        );
        // Written before anything changes: whatever happens next, DEL and GC can find it.
        store.put(&record)?;
        step("record-written");
        let host_veth = record.host_veth.clone();
        let standalone = Standalone {
            network: net,
            container_id: id,
            ifname,
            container: netns,
            bridge: &self.settings.bridge,
            mtu: self.settings.mtu,
            host_veth: &host_veth,
            node: self.settings.node.as_ref(),
        };
        let made = async {
            let assigned = ipam.add(self.env)?;
            step("ipam-added");
            let links = standalone.create(&assigned).await.map_err(failed)?;
            step("veth-created");
            let (attachment, result) = standalone
                .configure(&links, &assigned)
                .await
                .map_err(failed)?;
            step("container-configured");
            self.finish(store, &mut record, &attachment).await?;
            standalone.open(&links).await.map_err(failed)?;
            step("opened");
            Ok::<_, CniError>(result)
        }
        .await;
        match made {
            Ok(result) => Ok(serde_json::to_value(result).expect("results serialize")),
            Err(e) => {
                if let Err(undo) = self.undo(store, &record).await {
                    log::warn!("undoing the failed ADD: {undo}");
                }
                Err(e)
            }
        }
    }

    async fn add_chained(
        &self,
        store: &Store,
        prev: &Value,
        netns: &Netns,
    ) -> Result<Value, CniError> {
        if self.settings.node.is_some() {
            return Err(invalid(
                "\"node\" is for a standalone network (fastpath-cni as its only plugin)".into(),
            ));
        }
        let parsed = CniResult::from_value(prev, "prevResult")?;
        let attachment = network::find_chained(&parsed, &self.env.ifname)
            .await
            .map_err(|e| invalid(format!("{e:#}")))?;
        // The previous plugin made the interface; the pod settings are this plugin's to add.
        crate::pod_link::harden(netns, &self.env.ifname)
            .with_context(|| format!("settings of {} in {}", self.env.ifname, netns.label()))
            .map_err(failed)?;
        let mut record = Record::started(
            &self.env.container_id,
            &self.env.ifname,
            self.netns_label(),
            attachment.host_veth.clone(),
            false,
        );
        store.put(&record)?;
        if let Err(e) = self.finish(store, &mut record, &attachment).await {
            if let Err(undo) = self.undo(store, &record).await {
                log::warn!("undoing the failed ADD: {undo}");
            }
            return Err(e);
        }
        // The chain's result is the previous plugin's: this plugin adds no interface or address.
        Ok(prev.clone())
    }

    /// Attaches the program, completes the record and puts the endpoint into the maps.
    async fn finish(
        &self,
        store: &Store,
        record: &mut Record,
        a: &Attachment,
    ) -> Result<(), CniError> {
        if let Some(node) = &self.settings.node {
            node.check_address(a.address, a.gateway)?;
            if let Some((address6, gateway6)) = a.address6.zip(a.gateway6) {
                node.check_address6(address6, gateway6)?;
            }
        }
        if self.settings.mode == Mode::Tc {
            let pins = self.settings.pins();
            let host = Netlink::open(&Netns::host()).map_err(|e| failed(e.into()))?;
            pins.attach(&host, &a.host_veth)
                .await
                .with_context(|| format!("attaching the fast path to {}", a.host_veth))
                .map_err(failed)?;
            pins.set_gateway(a.bridge_mac, a.gateway, a.gateway6)
                .map_err(failed)?;
        }
        step("attached");
        record.address = Some(a.address);
        record.gateway = Some(a.gateway);
        record.address6 = a.address6;
        record.gateway6 = a.gateway6;
        record.mac = Some(a.container_mac);
        record.pin_dir = Some(self.settings.pins().dir().to_path_buf());
        record.complete = true;
        store.put(record)?;
        step("record-complete");
        self.sync(store, None).await
    }

    /// Rebuilds the map entries from the records, without `released` (an attachment being
    /// undone: its record goes only once its entry is gone, so a failed DEL can be retried).
    async fn sync(&self, store: &Store, released: Option<&Record>) -> Result<(), CniError> {
        let records: Vec<Record> = store
            .all()?
            .into_iter()
            .filter(|r| {
                released
                    .is_none_or(|x| (&x.container_id, &x.ifname) != (&r.container_id, &r.ifname))
            })
            .collect();
        self.settings
            .pins()
            .sync(
                Owner::cni_network(&self.settings.network),
                &records,
                self.settings.mode == Mode::Tc,
            )
            .await
            .context("updating the fast-path maps")
            .map_err(failed)
    }

    /// Undoes whatever `record` says may have been done: the program link, the veth (when ours),
    /// the address (when IPAM was asked), the map entry and the record itself. Each step is
    /// idempotent, so an undo that is itself interrupted can be run again.
    async fn undo(&self, store: &Store, record: &Record) -> Result<(), CniError> {
        let net = &self.settings.network;
        // Where ADD pinned the link, should the configuration have moved the network since.
        let pins = self.settings.pins();
        let dir = record.pin_dir.as_deref().unwrap_or(pins.dir());
        let alias = network::veth_alias(net, &record.container_id, &record.ifname);
        // A veth of this name that is not this attachment's stops the undo before anything is
        // released: its address must not go to another container while it may still send.
        let host = Netlink::open(&Netns::host()).map_err(|e| failed(e.into()))?;
        if record.owns_veth {
            network::check_veth(&host, &record.host_veth, &alias)
                .await
                .map_err(failed)?;
        }
        // The address is released while the veth goes: the kernel takes its time removing a
        // device (RCU grace periods), the IPAM plugin runs meanwhile.
        let (ipam, not_found) = match record.ipam.then(|| Ipam::find(self.env, self.raw)) {
            Some(Ok(ipam)) => (ipam, None),
            Some(Err(e)) => (None, Some(e)),
            None => (None, None),
        };
        let releasing = ipam.map(|ipam| {
            let mut env = self.env.clone();
            env.container_id = record.container_id.clone();
            env.ifname = record.ifname.clone();
            env.netns = None;
            std::thread::spawn(move || {
                let released = ipam.del(&env);
                step("ipam-released");
                released
            })
        });
        // The veth stops carrying before its checks go: a running container being removed never
        // sends past an unchecked veth. The previous plugin's veth (chained) is that plugin's to
        // delete; it is only taken down.
        let removed = if record.owns_veth {
            network::delete_veth(&host, &record.host_veth, &alias).await
        } else {
            network::take_down(&host, &record.host_veth).await
        };
        let released = releasing
            .map(|thread| thread.join().expect("the IPAM thread does not panic"))
            .transpose();
        removed.map_err(failed)?;
        step("veth-removed");
        if let Some(e) = not_found {
            return Err(e);
        }
        released?;
        fastpath::detach(&host, dir, &record.host_veth)
            .await
            .map_err(failed)?;
        step("detached");
        self.sync(store, Some(record)).await?;
        step("entries-synced");
        store.remove(&record.container_id, &record.ifname)
    }

    async fn del(&self) -> Result<(), CniError> {
        let store = self.store()?;
        let (id, ifname) = (&self.env.container_id, &self.env.ifname);
        let record = match store.get(id, ifname)? {
            Some(record) => record,
            // Unknown here: with a standalone configuration (the one with "ipam"), what an ADD of
            // this attachment would have made is still released (the veth by its derived name,
            // the address by the IPAM plugin); DEL of something never added succeeds.
            None if self.conf.ipam.is_some() => Record::started(
                id,
                ifname,
                None,
                network::host_veth_name(&self.settings.network, id, ifname),
                true,
            ),
            None => return Ok(()),
        };
        self.undo(&store, &record).await
    }

    async fn check(&self) -> Result<(), CniError> {
        let prev = self
            .conf
            .prev_result
            .as_ref()
            .ok_or_else(|| invalid("CHECK needs the ADD result as \"prevResult\"".into()))?;
        let prev_parsed = CniResult::from_value(prev, "prevResult")?;
        let store = self.store()?;
        let (id, ifname) = (&self.env.container_id, &self.env.ifname);
        let record = store.get(id, ifname)?.ok_or_else(|| {
            CniError::new(
                Code::UnknownContainer,
                format!(
                    "container {id} has no {ifname} on network '{}'",
                    self.settings.network
                ),
            )
        })?;
        if !record.complete {
            return Err(CniError::new(
                Code::CheckMismatch,
                format!(
                    "the ADD of container {id}'s {ifname} on network '{}' did not finish; DEL it",
                    self.settings.network
                ),
            ));
        }
        let netns = self.container_netns()?;
        let mut missing =
            network::check_container(&netns, ifname, &record.addresses(), &prev_parsed.routes)
                .await
                .map_err(failed)?;
        missing.extend(self.check_host(&record).await.map_err(failed)?);
        if !missing.is_empty() {
            return Err(CniError::new(
                Code::CheckMismatch,
                format!(
                    "container {id} on network '{}': missing {}",
                    self.settings.network,
                    missing.join("; ")
                ),
            ));
        }
        if record.ipam
            && let Some(ipam) = Ipam::find(self.env, self.raw)?
        {
            ipam.check(self.env, prev)?;
        }
        Ok(())
    }

    /// CHECK's view of the host side: the veth, its bridge, its program and its map entry.
    async fn check_host(&self, record: &Record) -> anyhow::Result<Vec<String>> {
        let mut missing = Vec::new();
        let host = Netlink::open(&Netns::host())?;
        let Some(veth) = host.link_view(&record.host_veth).await? else {
            return Ok(vec![format!("host veth {}", record.host_veth)]);
        };
        if record.owns_veth {
            let bridge = host.link_view(&self.settings.bridge).await?;
            if bridge.is_none_or(|b| veth.master != Some(b.index)) {
                missing.push(format!(
                    "{} as a port of bridge {}",
                    record.host_veth, self.settings.bridge
                ));
            }
        }
        if self.settings.mode == Mode::Tc {
            let pins = self.settings.pins();
            if !fastpath::runs_on(&host, pins.dir(), &record.host_veth, veth.index).await? {
                missing.push(format!("tc_pod on {}", record.host_veth));
            }
            if !datapath::maps_pinned(pins.dir()) {
                missing.push(format!(
                    "this build's fast-path maps in {} (those pinned there are of another layout; the network's next ADD or DEL replaces them)",
                    pins.dir().display()
                ));
            } else {
                for ip in record.addresses().iter().map(IpNet::addr) {
                    if pins.endpoint_ifindex(ip)? != Some(veth.index) {
                        missing.push(format!(
                            "the fast-path map entry {ip} -> {} (ifindex {})",
                            record.host_veth, veth.index
                        ));
                    }
                }
            }
        }
        Ok(missing)
    }

    /// STATUS: ready when the programs are pinned or load, and the IPAM plugin (standalone) can be
    /// run.
    fn status(&self) -> Result<(), CniError> {
        let unavailable = |msg: String| CniError::new(Code::Unavailable, msg);
        if self.conf.prev_result.is_none() && self.conf.ipam.is_some() {
            let ipam = Ipam::find(self.env, self.raw).map_err(|e| unavailable(e.msg))?;
            if let Some(ipam) = ipam {
                ipam.status(self.env).map_err(|e| {
                    let code = if e.code == Code::UnavailableExistingLimited as u32 {
                        Code::UnavailableExistingLimited
                    } else {
                        Code::Unavailable
                    };
                    CniError::new(code, e.msg)
                })?;
            }
        }
        // Pinned by this build: they loaded, and attaching reuses them. Otherwise the next ADD
        // loads them, and whether it can is known by loading them.
        if self.settings.mode == Mode::Tc
            && !crate::datapath::programs_pinned(self.settings.pins().dir())
            && let Err(e) = crate::datapath::Datapath::load(None)
        {
            // Pods already attached keep what they have, but one restarted would not come back
            // onto the fast path: say so when there are any.
            let dir = self.settings.data_dir.join(&self.settings.network);
            let attached = store::read_records(&dir).is_ok_and(|r| r.iter().any(|r| r.complete));
            let msg = format!("the fast-path programs do not load: {}", chain(&e));
            return Err(if attached {
                CniError::new(Code::UnavailableExistingLimited, msg)
            } else {
                unavailable(msg)
            });
        }
        Ok(())
    }

    /// GC: undoes every attachment of the network that `cni.dev/valid-attachments` does not list,
    /// then passes GC on to the IPAM plugin. One attachment that cannot be undone does not stop
    /// the others; the error lists every one left.
    async fn gc(&self) -> Result<(), CniError> {
        // Without the list every attachment would look stale: refuse rather than remove them all.
        // (`null`, as a runtime with no attachments left may send it, is an empty list.)
        let listed = self.raw.get("cni.dev/valid-attachments").ok_or_else(|| {
            invalid(
                "GC needs \"cni.dev/valid-attachments\": refusing to remove every attachment"
                    .into(),
            )
        })?;
        let valid = self.conf.valid_attachments.clone().unwrap_or_default();
        let store = self.store()?;
        let mut left = Vec::new();
        for record in store.all()? {
            let keep = valid
                .iter()
                .any(|v| v.container_id == record.container_id && v.ifname == record.ifname);
            if !keep && let Err(e) = self.undo(&store, &record).await {
                left.push(format!(
                    "{} {}: {}",
                    record.container_id,
                    record.ifname,
                    e.text()
                ));
            }
        }
        // Links of host veths no record names (defunct, or the record was undone mid-way).
        let pins = self.settings.pins();
        let stray = pins
            .stray_links(&self.settings.network, &store.all()?)
            .await
            .map_err(failed)?;
        for link in stray {
            if let Err(e) = crate::datapath::detach_pinned(pins.dir(), &link) {
                left.push(format!(
                    "{} link on {}: {}",
                    link.hook.program(),
                    link.dev,
                    chain(&e)
                ));
            }
        }
        if let Err(e) = self.sync(&store, None).await {
            left.push(e.text());
        }
        if self.conf.prev_result.is_none()
            && let Some(ipam) = Ipam::find(self.env, self.raw)?
            && let Err(e) = ipam.gc(self.env, listed)
        {
            left.push(e.text());
        }
        if left.is_empty() {
            Ok(())
        } else {
            Err(CniError::new(
                Code::Failed,
                format!("GC could not remove everything: {}", left.join("; ")),
            ))
        }
    }
}
