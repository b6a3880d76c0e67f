//! `fastpath-agent` (run as `fastpath agent`): one per node. Brings the node up, publishes it in
//! etcd, and keeps its peers converged to every other node's record.

use std::{path::PathBuf, time::Duration};

use agent::{
    access::{EtcdAccess, Tls},
    run::{self, Options},
    subnets::ClusterNetwork,
};
use clap::Parser;
use ipnet::Ipv4Net;

#[derive(Parser)]
#[command(
    name = "fastpath agent",
    bin_name = "fastpath agent",
    about = "Bring this node up, publish it in etcd under a lease, and keep its VXLAN peers \
             converged to every other node's record. SIGTERM stops the agent and leaves the \
             datapath running (a restart); --leave removes the node's record and subnet."
)]
struct Cli {
    /// This node's description: a fastpath config file with exactly one [[node]]. Without
    /// node.pod_cidr the node leases a subnet of the cluster network, and pods without an
    /// address get its addresses from .2 on. Static [[peer]]s win over etcd's records.
    #[arg(long)]
    config: PathBuf,
    /// etcd client URLs, comma-separated (http://127.0.0.1:2379,...; https:// with
    /// --etcd-cacert).
    #[arg(long, value_delimiter = ',', required = true)]
    etcd: Vec<String>,
    /// PEM file of the CA that signed the etcd members' certificates: TLS to etcd.
    #[arg(long)]
    etcd_cacert: Option<PathBuf>,
    /// PEM file of this agent's client certificate (etcd with --client-cert-auth), with
    /// --etcd-key and --etcd-cacert.
    #[arg(long, requires_all = ["etcd_key", "etcd_cacert"])]
    etcd_cert: Option<PathBuf>,
    /// PEM file of the client certificate's key.
    #[arg(long, requires = "etcd_cert")]
    etcd_key: Option<PathBuf>,
    /// Where the cluster's keys live in etcd (nodes/, subnets/, network).
    #[arg(long, default_value = "/fastpath/")]
    key_prefix: String,
    /// Prefix of this machine's fastpath namespaces and pins; agents of simulated nodes on one
    /// machine share it, each owning only its node.
    #[arg(long, default_value = control::cluster::DEFAULT_PREFIX, value_parser = control::cluster::check_prefix)]
    prefix: String,
    /// The cluster network pod CIDRs are leased from, stored in etcd by the first agent that is
    /// given it; an agent given another one is refused.
    #[arg(long)]
    network: Option<Ipv4Net>,
    /// Prefix length of one node's pod CIDR, with --network.
    #[arg(long, default_value_t = 24)]
    subnet_len: u8,
    /// Seconds the node's record outlives its agent (the lease TTL).
    #[arg(long, default_value_t = 10)]
    ttl: u64,
    /// Peers' underlay addresses must be in this network (default: any unicast address).
    #[arg(long)]
    underlay_range: Option<Ipv4Net>,
    /// Serve /metrics (Prometheus text) and /healthz on this address (e.g. 127.0.0.1:9464).
    #[arg(long)]
    metrics: Option<std::net::SocketAddr>,
    /// Remove this node's record and give its pod CIDR back, then exit.
    #[arg(long)]
    leave: bool,
}

fn main() {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,agent=info,control=info"),
    )
    .init();
    let cli = Cli::parse();
    if let Err(e) = start(cli) {
        eprintln!("fastpath agent: error: {e:#}");
        std::process::exit(1);
    }
}

fn start(cli: Cli) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!("fastpath agent needs root (it creates devices and loads eBPF programs)");
    }
    let network = cli
        .network
        .map(|n| ClusterNetwork::new(n, cli.subnet_len))
        .transpose()
        .map_err(|e| anyhow::anyhow!("--network/--subnet-len: {e}"))?;
    let opts = Options {
        node_file: cli.config,
        etcd: EtcdAccess {
            endpoints: cli.etcd,
            tls: cli.etcd_cacert.map(|ca| Tls {
                ca,
                client: cli.etcd_cert.zip(cli.etcd_key),
            }),
        },
        key_prefix: cli.key_prefix,
        prefix: cli.prefix,
        network,
        ttl: Duration::from_secs(cli.ttl.max(1)),
        underlay_range: cli.underlay_range,
        metrics: cli.metrics,
    };
    // One thread: network namespaces are per thread, and every netlink socket is opened on it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        if cli.leave {
            run::leave(&opts).await
        } else {
            run::run(opts).await
        }
    })
}
