//! The plugin run by a person (no CNI_COMMAND): `--help`, and `show`, which lists every network's
//! attachments with whether each is on the fast path (program linked, map entry pointing at its
//! veth), and the network's packet counters.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context as _, Result};
use ipnet::IpNet;
use serde::Serialize;

use super::{fastpath, store};
use crate::{
    datapath::{self, CounterRow},
    netlink::Netlink,
    netns::Netns,
    report,
};

const HELP: &str = "\
fastpath-cni: a CNI plugin (spec 1.0.0, 1.1.0) that puts containers on fastpath's eBPF fast path.

Container runtimes run it with CNI_COMMAND set (ADD, DEL, CHECK, VERSION, STATUS, GC) and the
network configuration on stdin. Configuration keys besides the specification's:
  bridge   standalone: the bridge host-side veths join (default fp-cni0; created when missing,
           with the IPAM gateway as its address)
  mtu      standalone: the pod interface MTU (default 1500)
  node     standalone: {\"config\": FILE, \"name\": NODE, \"prefix\": \"fp-\"} joins the pods to a
           node `fastpath up FILE` built: its bridge, pod MTU (overlay MTU), pod CIDR and pinned
           maps, so their traffic to other nodes takes its in-program VXLAN (instead of
           bridge and mtu)
  mode     \"tc\" (default): tc_pod on every host veth; \"kernel\": no program, to compare
  ipam     standalone: an IPAM plugin found in CNI_PATH (e.g. host-local)
  dataDir  where attachment records live (default /var/lib/fastpath/cni)
  lockTimeout  seconds to wait for another invocation on the network (default 60), then
           fail with code 11 (try again later)
As the only plugin it makes the pod's veth pair itself; after the bridge plugin in a conflist
it accelerates the veth that plugin made (found in prevResult).

People run it as:
  fastpath-cni show [--json] [--data-dir DIR]   attachments, fast-path state, counters
  fastpath-cni --help
";

pub fn cli(args: Vec<String>) -> ExitCode {
    let mut json = false;
    let mut data_dir = PathBuf::from(store::DEFAULT_DATA_DIR);
    let mut it = args.iter();
    let mut command = None;
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--json" => json = true,
            "--data-dir" => match it.next() {
                Some(d) => data_dir = PathBuf::from(d),
                None => return usage("--data-dir needs a directory"),
            },
            "-h" | "--help" | "help" => {
                print!("{HELP}");
                return ExitCode::SUCCESS;
            }
            "show" if command.is_none() => command = Some("show"),
            other => return usage(&format!("unknown argument '{other}'")),
        }
    }
    if command.is_none() {
        return usage("CNI_COMMAND is not set and no command was given");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    match runtime.block_on(show(&data_dir)) {
        Ok(networks) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&networks).expect("serializes")
                );
            } else {
                print!("{}", render(&networks));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fastpath-cni show: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("fastpath-cni: {msg}\n\n{HELP}");
    ExitCode::from(2)
}

#[derive(Clone, Debug, Serialize)]
pub struct NetworkView {
    pub network: String,
    /// Where its maps are pinned: its own directory, or the fastpath node's it joined.
    pub pin_dir: String,
    pub attachments: Vec<AttachmentView>,
    pub counters: Vec<CounterRow>,
}

#[derive(Clone, Debug, Serialize)]
pub struct AttachmentView {
    pub container_id: String,
    pub ifname: String,
    pub address: Option<String>,
    /// A dual-stack attachment's IPv6 address.
    pub address6: Option<String>,
    pub host_veth: String,
    pub complete: bool,
    /// tc_pod is linked to the host veth and the map sends the address to it.
    pub fast_path: bool,
}

/// Every network under `data_dir`, as the records, pins and maps say now.
pub async fn show(data_dir: &std::path::Path) -> Result<Vec<NetworkView>> {
    let mut networks = Vec::new();
    let entries = match std::fs::read_dir(data_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(networks),
        Err(e) => return Err(e).with_context(|| format!("listing {}", data_dir.display())),
    };
    let host = Netlink::open(&Netns::host())?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for network in names {
        let records = store::read_records(&data_dir.join(&network))?;
        // A network joined to a fastpath node uses the node's pins; its records say which.
        let dir = records
            .iter()
            .find_map(|r| r.pin_dir.clone())
            .unwrap_or_else(|| fastpath::pin_dir(&network));
        let mut attachments = Vec::new();
        for r in records {
            let ifindex = host.link_view(&r.host_veth).await?.map(|l| l.index);
            let linked = match ifindex {
                Some(i) => fastpath::runs_on(&host, &dir, &r.host_veth, i).await?,
                None => false,
            };
            let mut mapped = r.address.is_some() && ifindex.is_some();
            for ip in r.addresses().iter().map(IpNet::addr) {
                mapped = mapped && fastpath::endpoint_ifindex(&dir, ip)? == ifindex;
            }
            attachments.push(AttachmentView {
                container_id: r.container_id,
                ifname: r.ifname,
                address: r.address.map(|a| a.to_string()),
                address6: r.address6.map(|a| a.to_string()),
                host_veth: r.host_veth,
                complete: r.complete,
                fast_path: linked && mapped,
            });
        }
        let counters = if datapath::maps_pinned(&dir) {
            datapath::pinned_counters(&dir)?
        } else {
            Vec::new()
        };
        networks.push(NetworkView {
            network,
            pin_dir: dir.display().to_string(),
            attachments,
            counters,
        });
    }
    Ok(networks)
}

fn render(networks: &[NetworkView]) -> String {
    if networks.is_empty() {
        return "no fastpath-cni networks\n".into();
    }
    let mut out = String::new();
    for n in networks {
        out.push_str(&format!("network {} (maps in {})\n", n.network, n.pin_dir));
        let rows: Vec<Vec<String>> = n
            .attachments
            .iter()
            .map(|a| {
                vec![
                    a.container_id.chars().take(16).collect(),
                    a.ifname.clone(),
                    match (&a.address, &a.address6) {
                        (Some(v4), Some(v6)) => format!("{v4}, {v6}"),
                        (Some(v4), None) => v4.clone(),
                        _ => "-".into(),
                    },
                    a.host_veth.clone(),
                    match (a.complete, a.fast_path) {
                        (false, _) => "adding (or interrupted)".into(),
                        (true, true) => "fast path".into(),
                        (true, false) => "kernel path".into(),
                    },
                ]
            })
            .collect();
        if rows.is_empty() {
            out.push_str("no attachments\n");
        } else {
            out.push_str(&report::table(
                &["CONTAINER", "IFNAME", "ADDRESS", "HOST VETH", "PATH"],
                &rows,
                5,
            ));
        }
        out.push_str(&report::counters_table(&n.counters));
        out.push('\n');
    }
    out
}
