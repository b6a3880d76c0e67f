//! The agent's life: bring this node up (the same reconciler as `fastpath up`, owning only this
//! node under the prefix), publish it in etcd under a lease, and converge its peers to the
//! records every other node publishes, within the watch's delay. When etcd is out of reach the
//! datapath stays exactly as it is: the agent retries with backoff, says so once per change of
//! state, and lists and watches again when etcd is back.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use anyhow::{Context as _, Result};
use control::cluster::{self, Cluster, Scope};
use etcd_client::{Client, ConnectOptions};
use ipnet::Ipv4Net;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    access::EtcdAccess,
    directory::{self, Directory},
    error::{EtcdError, SubnetError},
    keys::Keys,
    metrics::Metrics,
    node_file::NodeFile,
    record::{FORMAT_VERSION, Local, NodeRecord},
    subnets::{self, ClusterNetwork},
};

pub struct Options {
    pub node_file: PathBuf,
    pub etcd: EtcdAccess,
    /// Where the cluster's keys live in etcd.
    pub key_prefix: String,
    /// fastpath's namespace and pin prefix on this machine.
    pub prefix: String,
    /// Stored as the cluster network unless one is stored already (then they must agree).
    pub network: Option<ClusterNetwork>,
    pub ttl: Duration,
    pub underlay_range: Option<Ipv4Net>,
    /// Where `/metrics` and `/healthz` are served.
    pub metrics: Option<std::net::SocketAddr>,
}

/// How long the agent waits before trying etcd again, doubling up to the last.
const BACKOFF: [Duration; 5] = [
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// Says once when etcd goes out of reach and once when it is back.
struct Link {
    down_since_attempt: Option<usize>,
    metrics: Metrics,
}

impl Link {
    fn new(metrics: Metrics) -> Self {
        Self {
            down_since_attempt: None,
            metrics,
        }
    }

    fn failed(&mut self, e: &EtcdError) -> Duration {
        let attempt = self.down_since_attempt.map_or(0, |a| a + 1);
        if self.down_since_attempt.is_none() {
            let why = control::error::chain(e);
            log::warn!("degraded: {why}; the datapath stays as it is, retrying");
            self.metrics.set_etcd_problem(Some(why));
        }
        self.down_since_attempt = Some(attempt);
        BACKOFF[attempt.min(BACKOFF.len() - 1)]
    }

    /// Returns whether etcd had been out of reach.
    fn ok(&mut self) -> bool {
        let was_down = self.down_since_attempt.take().is_some();
        if was_down {
            log::warn!("etcd is back: listing the nodes again");
        }
        self.metrics.set_etcd_problem(None);
        was_down
    }
}

/// Runs `op` until it gets an answer from etcd; other errors end the agent.
async fn retry<T, F, Fut>(link: &mut Link, mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SubnetError>>,
{
    loop {
        match op().await {
            Ok(value) => {
                link.ok();
                return Ok(value);
            }
            Err(SubnetError::Etcd(e)) => tokio::time::sleep(link.failed(&e)).await,
            Err(other) => return Err(other.into()),
        }
    }
}

/// The connection (the client reconnects by itself: only the first one is waited for here).
async fn connect(etcd: &EtcdAccess, options: &Option<ConnectOptions>, link: &mut Link) -> Client {
    loop {
        match etcd.connect(options).await {
            Ok(client) => return client,
            Err(source) => {
                let e = EtcdError {
                    op: format!("connect to {}", etcd.describe()),
                    source,
                };
                tokio::time::sleep(link.failed(&e)).await;
            }
        }
    }
}

/// `--leave`: this node's record and subnet go; the datapath stays (`fastpath down` removes it).
pub async fn leave(opts: &Options) -> Result<()> {
    let file = NodeFile::read(&opts.node_file)?;
    let name = file.node_name()?;
    let keys = Keys::new(&opts.key_prefix);
    let options = opts.etcd.options()?;
    let mut client = opts
        .etcd
        .connect(&options)
        .await
        .with_context(|| format!("connecting to etcd at {}", opts.etcd.describe()))?;
    directory::deregister(&mut client, &keys, &name, None).await?;
    subnets::release(&mut client, &keys, &name).await?;
    log::warn!("node '{name}' left: its record and subnet are gone");
    Ok(())
}

/// The agent, until SIGTERM or SIGINT (whatever it is doing then: waiting for etcd included).
/// The node's record stays until its lease expires (a restart finds it), and the datapath stays
/// as it is; an `up` cut short is finished by the next agent's.
pub async fn run(opts: Options) -> Result<()> {
    let mut terminate = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let stopped = tokio::select! {
        result = agent(opts) => return result,
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    };
    log::warn!("{stopped}: stopping; the datapath stays as it is");
    Ok(())
}

async fn agent(opts: Options) -> Result<()> {
    let file = NodeFile::read(&opts.node_file)?;
    let name = file.node_name()?;
    let keys = Keys::new(&opts.key_prefix);
    let metrics = Metrics::new(&name, cluster::prefix_pin_dir(&opts.prefix).join(&name));
    let _endpoint = match opts.metrics {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("serving /metrics on {addr}"))?;
            Some(AbortOnDrop(tokio::spawn(metrics.clone().serve(listener))))
        }
        None => None,
    };
    let options = opts.etcd.options()?;
    let mut link = Link::new(metrics.clone());
    let mut client = connect(&opts.etcd, &options, &mut link).await;

    let network = retry(&mut link, || {
        let mut c = client.clone();
        let (keys, wanted) = (keys.clone(), opts.network);
        async move { subnets::ensure_network(&mut c, &keys, wanted).await }
    })
    .await?;
    let pod_cidr = match file.pod_cidr()? {
        // Every other node would ignore a record with a CIDR outside the cluster network.
        Some(cidr) if !network.network.contains(&cidr) => {
            anyhow::bail!(
                "node.pod_cidr = {cidr} is outside the cluster network {}: the other nodes would ignore this node",
                network.network
            )
        }
        Some(cidr) => cidr,
        None => {
            retry(&mut link, || {
                let mut c = client.clone();
                let (keys, name) = (keys.clone(), name.clone());
                async move { subnets::claim(&mut c, &keys, &network, &name).await }
            })
            .await?
        }
    };
    let (config, _) = file.config(pod_cidr, &[])?;
    let mut cluster = Cluster::new(config, &opts.prefix);
    cluster.scope = Scope::OwnNodes;
    let node = cluster.config.nodes[0].clone();
    let vxlan = &cluster.config.vxlan;
    let local = Local {
        name: name.clone(),
        underlay_ip: node.underlay.address.addr(),
        pod_cidr,
        vni: vxlan.vni,
        port: vxlan.port,
        network: network.network,
        underlay_range: opts.underlay_range,
    };
    let record = NodeRecord {
        version: FORMAT_VERSION,
        name: name.clone(),
        underlay_ip: local.underlay_ip,
        pod_cidr,
        vtep_mac: control::mac::Mac::vtep(local.underlay_ip),
        vni: local.vni,
        port: local.port,
        mode: cluster.mode_of(&node),
    };
    // The node comes up with the peers etcd lists now: an agent restarted on a running node
    // must not withdraw its peers until it hears of them again (their traffic would stop).
    let mut peers = Peers::new(metrics.clone());
    let mut directory = Directory::new(keys.clone());
    while let Err(e) = directory.list(&mut client).await {
        tokio::time::sleep(link.failed(&e)).await;
    }
    link.ok();
    // Each change is logged as it is made (the reconciler's info lines).
    let mut failures = UpFailures::new(metrics.clone());
    while let Err(e) = peers
        .converge(&file, pod_cidr, &local, &directory, &mut cluster)
        .await
    {
        tokio::time::sleep(failures.failed(&e)).await;
    }
    failures.ok();
    loop {
        // One session: registered, listed, watching. It ends with a watch that must be listed
        // again, or with etcd's failure.
        let session = async {
            let registration = directory::register(&mut client, &keys, &record, opts.ttl).await?;
            let mut keeper = client.clone();
            let ttl = opts.ttl;
            let renewals =
                tokio::spawn(
                    async move { directory::keep_alive(&mut keeper, registration, ttl).await },
                );
            let mut renewals = AbortOnDrop(renewals);
            directory.list(&mut client).await?;
            if link.ok() {
                // Every live agent re-registers within a TTL and a backoff step of etcd's return;
                // a record that expired meanwhile (etcd gave its lease no renewal while it was
                // away) must not withdraw a live node until then.
                peers.hold_withdrawals(opts.ttl + BACKOFF[BACKOFF.len() - 1]);
            }
            peers
                .converge(&file, pod_cidr, &local, &directory, &mut cluster)
                .await?;
            failures.ok();
            let mut watch = directory.watch(&mut client).await?;
            loop {
                let hold = peers.hold_until;
                tokio::select! {
                    _ = tokio::time::sleep_until(hold.unwrap_or_else(std::time::Instant::now).into()), if hold.is_some() => {
                        peers.hold_until = None;
                        peers.converge(&file, pod_cidr, &local, &directory, &mut cluster).await?;
                        failures.ok();
                    }
                    message = watch.message() => {
                        let response = message.map_err(crate::error::etcd("follow the watch"))?;
                        let Some(response) = response else {
                            return Ok::<_, anyhow::Error>(());
                        };
                        metrics.watch_events.inc();
                        match directory.apply(&response) {
                            Ok(true) => {
                                peers.converge(&file, pod_cidr, &local, &directory, &mut cluster).await?;
                                failures.ok();
                            }
                            Ok(false) => {}
                            Err(why) => {
                                log::warn!("{why}: listing again");
                                return Ok(());
                            }
                        }
                    }
                    ended = &mut renewals.0 => {
                        let e = ended.context("the lease renewal task")?;
                        return Err(e.into());
                    }
                }
            }
        };
        match session.await {
            Ok(()) => {}
            Err(e) => match e.downcast::<EtcdError>() {
                Ok(e) => tokio::time::sleep(link.failed(&e)).await,
                Err(other) => match other.downcast::<UpFailed>() {
                    // The next session lists again and converges again.
                    Ok(UpFailed(e)) => tokio::time::sleep(failures.failed(&e)).await,
                    Err(other) => return Err(other),
                },
            },
        }
    }
}

/// `fastpath up` of this node failed: the agent tries again after a while, the datapath as that
/// attempt left it.
#[derive(Debug)]
struct UpFailed(anyhow::Error);

impl std::fmt::Display for UpFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bringing the node to its config: {:#}", self.0)
    }
}

impl std::error::Error for UpFailed {}

/// Says once per distinct failure of `up` and once when it succeeds again.
struct UpFailures {
    last: Option<String>,
    attempt: usize,
    metrics: Metrics,
}

impl UpFailures {
    fn new(metrics: Metrics) -> Self {
        Self {
            last: None,
            attempt: 0,
            metrics,
        }
    }

    fn failed(&mut self, e: &anyhow::Error) -> Duration {
        let text = format!("{e:#}");
        if self.last.as_ref() != Some(&text) {
            log::warn!("bringing the node to its config failed, retrying: {text}");
            self.metrics
                .set_node_problem(Some(format!("bringing the node to its config: {text}")));
        }
        self.last = Some(text);
        self.attempt += 1;
        BACKOFF[(self.attempt - 1).min(BACKOFF.len() - 1)]
    }

    fn ok(&mut self) {
        if self.last.take().is_some() {
            log::warn!("the node is at its config again");
        }
        self.metrics.set_node_problem(None);
        self.attempt = 0;
    }
}

/// Aborts the task when the session ends.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `cluster::up`, its duration recorded.
async fn timed_up(cluster: &Cluster, metrics: &Metrics) -> Result<Vec<String>> {
    let start = std::time::Instant::now();
    let changes = cluster::up(cluster).await;
    metrics
        .reconcile_seconds
        .observe(start.elapsed().as_secs_f64());
    changes
}

/// What was last installed and logged.
struct Peers {
    /// None until the node was first brought up.
    installed: Option<Vec<NodeRecord>>,
    /// Key → reason, as last logged: a record is logged once per new reason.
    ignored: BTreeMap<String, String>,
    /// Until then, installed peers whose record is gone stay (new and changed ones go in).
    hold_until: Option<std::time::Instant>,
    metrics: Metrics,
}

impl Peers {
    fn new(metrics: Metrics) -> Self {
        Self {
            installed: None,
            ignored: BTreeMap::new(),
            hold_until: None,
            metrics,
        }
    }

    fn hold_withdrawals(&mut self, for_: Duration) {
        self.hold_until = Some(std::time::Instant::now() + for_);
    }

    /// `accepted`, and while withdrawals are held, every installed peer that is missing from it
    /// and clashes with none of it.
    fn with_held(&self, mut accepted: Vec<NodeRecord>) -> Vec<NodeRecord> {
        if self
            .hold_until
            .is_none_or(|until| std::time::Instant::now() >= until)
        {
            return accepted;
        }
        let held: Vec<NodeRecord> = self
            .installed
            .iter()
            .flatten()
            .filter(|old| {
                !accepted.iter().any(|new| {
                    new.name == old.name
                        || crate::record::overlaps(new.pod_cidr, old.pod_cidr)
                        || new.underlay_ip == old.underlay_ip
                })
            })
            .cloned()
            .collect();
        for old in &held {
            log::info!(
                "keeping peer '{}' whose record is gone while agents re-register after etcd's return",
                old.name
            );
        }
        accepted.extend(held);
        accepted.sort_by(|a, b| a.name.cmp(&b.name));
        accepted
    }

    /// Installs the peers the directory describes, if they changed; logs each newly ignored
    /// record once.
    async fn converge(
        &mut self,
        file: &NodeFile,
        pod_cidr: Ipv4Net,
        local: &Local,
        directory: &Directory,
        cluster: &mut Cluster,
    ) -> Result<()> {
        let (accepted, ignored) = directory.peers(local);
        let accepted = self.with_held(accepted);
        // What the node description takes of them: a record that breaks one of its rules is left
        // out here, and logged like a record the checks refused, by its key, once per reason.
        let (config, left_out) = file.config(pod_cidr, &accepted)?;
        let refused = ignored
            .into_iter()
            .map(|i| (i.key, i.reason.to_string()))
            .chain(
                left_out
                    .iter()
                    .map(|(name, why)| (directory.key_of(name), why.clone())),
            );
        let mut now = BTreeMap::new();
        for (key, reason) in refused {
            if self.ignored.get(&key) != Some(&reason) {
                log::warn!("ignoring {key}: {reason}");
            }
            now.insert(key, reason);
        }
        self.ignored = now;
        self.metrics.ignored_records.set(self.ignored.len() as i64);
        let accepted: Vec<NodeRecord> = accepted
            .into_iter()
            .filter(|r| !left_out.iter().any(|(name, _)| *name == r.name))
            .collect();
        if self.installed.as_ref() == Some(&accepted) {
            return Ok(());
        }
        cluster.config = config;
        timed_up(cluster, &self.metrics)
            .await
            .map_err(|e| anyhow::Error::new(UpFailed(e)))?;
        self.metrics.peers.set(accepted.len() as i64);
        let names: Vec<&str> = accepted.iter().map(|p| p.name.as_str()).collect();
        if names.is_empty() {
            log::info!("peers: none");
        } else {
            log::info!("peers: {}", names.join(", "));
        }
        self.installed = Some(accepted);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Backoff is bounded: the last step repeats; a success starts it over.
    #[test]
    fn backoff_grows_then_stays() {
        let mut link = Link::new(Metrics::new("a", "/nonexistent".into()));
        let e = EtcdError {
            op: "x".into(),
            source: etcd_client::Error::InvalidArgs("test".into()),
        };
        let waits: Vec<Duration> = (0..7).map(|_| link.failed(&e)).collect();
        assert_eq!(waits[0], BACKOFF[0]);
        assert_eq!(waits[6], BACKOFF[4]);
        link.ok();
        assert_eq!(link.failed(&e), BACKOFF[0]);
    }
}
