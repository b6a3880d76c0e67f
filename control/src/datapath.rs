//! Loads the embedded eBPF object, attaches and detaches its programs, reads its maps. The only
//! module that touches aya's program and map handles.

use std::{
    borrow::Borrow,
    io,
    net::Ipv4Addr,
    os::fd::{AsFd as _, OwnedFd},
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{
        Array, HashMap, Map, MapData, PerCpuArray,
        lpm_trie::{Key, LpmTrie},
        xdp::DevMapHash,
    },
    programs::{
        LinkOrder, SchedClassifier, TcAttachType, TestRun, TestRunOptions, Xdp, XdpMode,
        links::FdLink,
        tc::{SchedClassifierLinkId, TcAttachOptions},
        xdp::XdpLinkId,
    },
};
use datapath_common::{
    COUNTER_SLOTS, Counter, counter_index,
    maps::{Endpoint, NODE_FAST_PATH, NODE_OVERLAY, NodeConfig, PEER_KNOWN, Remote, Source},
    reasons::{self, MAX_REASONS, Verdict, program},
};
use nix::fcntl::{Flock, FlockArg};
use serde::Serialize;

use crate::{bpf_link, bpffs, error::DatapathError, netns::Netns};

/// The programs and maps, compiled from crate `datapath-ebpf` by build.rs.
static DATAPATH_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/datapath"));

pub const XDP_POD: &str = "xdp_pod";
pub const TC_POD: &str = "tc_pod";
pub const TC_UNDERLAY: &str = "tc_underlay";
pub const BENCH_SINK: &str = "bench_sink";
/// The benchmark receiver's counter: not pinned, it lives as long as the benchmark's datapath.
const BENCH_SINK_MAP: &str = "BENCH_SINK";
const COUNTERS: &str = "COUNTERS";
const ENDPOINTS: &str = "ENDPOINTS";
const SOURCES: &str = "SOURCES";
const NODE: &str = "NODE";
const REMOTES: &str = "REMOTES";
const PEERS: &str = "PEERS";
const DEVMAP: &str = "DEVMAP";
/// Every map, pinned under a node's directory by these names.
const MAPS: [&str; 7] = [COUNTERS, ENDPOINTS, SOURCES, NODE, REMOTES, PEERS, DEVMAP];

/// Where fastpath pins each node's maps and program links.
pub const PIN_ROOT: &str = "/sys/fs/bpf/fastpath";

/// Where a program hooks into a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    /// XDP in native (driver) mode.
    Xdp,
    /// TC ingress through tcx.
    Tc,
    /// TC ingress through tcx on the underlay device: VXLAN decapsulation.
    #[value(skip)]
    TcUnderlay,
    /// TC ingress through tcx on a benchmark's receiving interface: counts and drops its packets.
    #[value(skip)]
    BenchSink,
}

impl Hook {
    pub fn program(self) -> &'static str {
        match self {
            Hook::Xdp => XDP_POD,
            Hook::Tc => TC_POD,
            Hook::TcUnderlay => TC_UNDERLAY,
            Hook::BenchSink => BENCH_SINK,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Hook::Xdp => "xdp",
            Hook::Tc => "tc",
            Hook::TcUnderlay => "underlay",
            Hook::BenchSink => "bench",
        }
    }

    const ALL: [Hook; 3] = [Hook::Xdp, Hook::Tc, Hook::TcUnderlay];

    /// The bpffs file that holds this hook's link on `dev` with `ifindex`. The ifindex is in the
    /// name because a device recreated under the same name is a new device: the old link is
    /// defunct and the new one needs a link of its own.
    pub fn link_pin(self, pin_dir: &Path, dev: &str, ifindex: u32) -> PathBuf {
        pin_dir.join(format!("link-{}-{dev}-{ifindex}", self.name()))
    }
}

/// The overlay part of a node's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverlaySettings {
    pub vtep_mac: [u8; 6],
    pub vni: u32,
    pub port: u16,
    pub underlay_ifindex: u32,
    pub underlay_ip: Ipv4Addr,
    pub underlay_mtu: u32,
}

/// A peer node as the overlay maps describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerEntry {
    pub pod_cidr: ipnet::Ipv4Net,
    pub underlay_ip: Ipv4Addr,
    pub vtep_mac: [u8; 6],
}

impl PeerEntry {
    /// The REMOTES entry: (prefix length, network, value).
    fn remote(&self) -> (u32, u32, Remote) {
        let value = Remote {
            underlay_ip: u32::from_ne_bytes(self.underlay_ip.octets()),
            vtep_mac: self.vtep_mac,
            _pad: [0; 2],
        };
        (
            u32::from(self.pod_cidr.prefix_len()),
            u32::from_ne_bytes(self.pod_cidr.network().octets()),
            value,
        )
    }
}

/// A local pod as the maps describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointEntry {
    pub ip: Ipv4Addr,
    /// The pod's host-side veth.
    pub ifindex: u32,
    pub mac: [u8; 6],
}

impl EndpointEntry {
    /// The ENDPOINTS entry: the pod's address → where its frames go.
    fn endpoint(&self) -> (u32, Endpoint) {
        let value = Endpoint {
            ifindex: self.ifindex,
            flags: 0,
            mac: self.mac,
            _pad: [0; 2],
        };
        (u32::from_ne_bytes(self.ip.octets()), value)
    }

    /// The SOURCES entry: the pod's veth → the address and MAC it may send from.
    fn source(&self) -> (u32, Source) {
        let value = Source {
            ip: u32::from_ne_bytes(self.ip.octets()),
            mac: self.mac,
            _pad: [0; 2],
        };
        (self.ifindex, value)
    }
}

enum LinkId {
    Xdp(XdpLinkId),
    Tc(SchedClassifierLinkId),
}

struct Attachment {
    hook: Hook,
    netns: Netns,
    dev: String,
    link: LinkId,
}

/// The loaded programs and the devices they are attached to. Dropping it detaches everything.
pub struct Datapath {
    ebpf: Ebpf,
    attachments: Vec<Attachment>,
    _logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    /// Where maps and links are pinned, for a node's datapath; None for a throwaway one.
    pin_dir: Option<PathBuf>,
}

/// One counter cell summed over all CPUs.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CounterRow {
    pub program: &'static str,
    pub reason: &'static str,
    pub verdict: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Redirect => "redirect",
        Verdict::Drop => "drop",
    }
}

/// The kernel's ifindex of `dev` in the calling thread's namespace.
fn ifindex(dev: &str, netns: &Netns) -> Result<u32, DatapathError> {
    nix::net::if_::if_nametoindex(dev).map_err(|_| DatapathError::DeviceNotFound {
        dev: dev.to_string(),
        netns: netns.label().to_string(),
    })
}

impl Datapath {
    /// Loads the programs into the kernel (nothing is attached yet). With `ebpf_log_level` set,
    /// the programs' aya-log messages at that level and above go to this process's logger.
    pub fn load(ebpf_log_level: Option<log::Level>) -> Result<Self, DatapathError> {
        Self::load_inner(None, ebpf_log_level)
    }

    /// Loads the programs with their maps pinned under `pin_dir`: maps already pinned there are
    /// reused, so endpoints and counters survive a restart of the control plane.
    pub fn load_pinned(
        pin_dir: &Path,
        ebpf_log_level: Option<log::Level>,
    ) -> Result<Self, DatapathError> {
        Self::load_inner(Some(pin_dir), ebpf_log_level)
    }

    fn load_inner(
        pin_dir: Option<&Path>,
        ebpf_log_level: Option<log::Level>,
    ) -> Result<Self, DatapathError> {
        bpffs::ensure_mounted()?;
        // aya-log's level numbering: 0 off, 1 error .. 5 trace. Off unless asked, because every
        // enabled log call costs a ring-buffer write per packet.
        let level: u8 = ebpf_log_level.map_or(0, |l| l as u8);
        let mut loader = EbpfLoader::new();
        loader.override_global("AYA_LOG_LEVEL", &level, false);
        if let Some(dir) = pin_dir {
            std::fs::create_dir_all(dir).map_err(|source| DatapathError::Bpffs {
                path: dir.display().to_string(),
                source,
            })?;
            for name in MAPS {
                loader.map_pin_path(name, dir.join(name));
            }
        }
        let mut ebpf = loader
            .load(DATAPATH_OBJECT)
            .map_err(|e| DatapathError::Object(Box::new(e)))?;
        let logger = match ebpf_log_level {
            Some(_) => match aya_log::EbpfLogger::init(&mut ebpf) {
                Ok(logger) => Some(logger),
                Err(e) => {
                    log::warn!("eBPF log messages will not be shown: {e}");
                    None
                }
            },
            None => None,
        };
        let xdp: &mut Xdp = program_mut(&mut ebpf, XDP_POD)?;
        xdp.load().map_err(|source| DatapathError::Load {
            program: XDP_POD,
            source: Box::new(source),
        })?;
        for name in [TC_POD, TC_UNDERLAY, BENCH_SINK] {
            let tc: &mut SchedClassifier = program_mut(&mut ebpf, name)?;
            tc.load().map_err(|source| DatapathError::Load {
                program: name,
                source: Box::new(source),
            })?;
        }
        Ok(Self {
            ebpf,
            attachments: Vec::new(),
            _logger: logger,
            pin_dir: pin_dir.map(Path::to_path_buf),
        })
    }

    fn map_mut(&mut self, name: &'static str) -> Result<&mut Map, DatapathError> {
        self.ebpf
            .map_mut(name)
            .ok_or(DatapathError::MissingMap { map: name })
    }

    /// Writes the node's settings and switches the fast path on; with `overlay`, also
    /// encapsulation and decapsulation.
    pub fn set_node(
        &mut self,
        gateway_mac: [u8; 6],
        gateway_ip: Ipv4Addr,
        overlay: Option<&OverlaySettings>,
    ) -> Result<(), DatapathError> {
        let mut node: Array<_, NodeConfig> = Array::try_from(self.map_mut(NODE)?)
            .map_err(|source| DatapathError::Map { map: NODE, source })?;
        let mut value = NodeConfig {
            gateway_mac,
            gateway_ip: u32::from_ne_bytes(gateway_ip.octets()),
            flags: NODE_FAST_PATH,
            ..NodeConfig::default()
        };
        if let Some(o) = overlay {
            value.flags |= NODE_OVERLAY;
            value.vtep_mac = o.vtep_mac;
            value.vxlan_port = o.port.to_be();
            value.vni = o.vni;
            value.underlay_ifindex = o.underlay_ifindex;
            value.underlay_ip = u32::from_ne_bytes(o.underlay_ip.octets());
            value.underlay_mtu = o.underlay_mtu;
        }
        node.set(0, value, 0)
            .map_err(|source| DatapathError::Map { map: NODE, source })
    }

    /// Makes the remote pod CIDR and peer maps hold exactly `peers`; returns how many entries
    /// were added, changed or removed.
    pub fn sync_peers(&mut self, peers: &[PeerEntry]) -> Result<usize, DatapathError> {
        let map_err = |map| move |source| DatapathError::Map { map, source };
        let mut changed = 0;

        let mut remotes: LpmTrie<_, u32, Remote> =
            LpmTrie::try_from(self.map_mut(REMOTES)?).map_err(map_err(REMOTES))?;
        let want: Vec<(u32, u32, Remote)> = peers.iter().map(PeerEntry::remote).collect();
        let present: Vec<Key<u32>> = remotes
            .keys()
            .collect::<Result<_, _>>()
            .map_err(map_err(REMOTES))?;
        for key in present.iter().filter(|k| {
            !want
                .iter()
                .any(|(len, addr, _)| k.prefix_len() == *len && k.data() == *addr)
        }) {
            remotes.remove(key).map_err(map_err(REMOTES))?;
            changed += 1;
        }
        for (len, addr, value) in &want {
            let key = Key::new(*len, *addr);
            if remotes.get(&key, 0).ok().as_ref() != Some(value) {
                remotes.insert(&key, value, 0).map_err(map_err(REMOTES))?;
                changed += 1;
            }
        }

        let mut known: HashMap<_, u32, u8> =
            HashMap::try_from(self.map_mut(PEERS)?).map_err(map_err(PEERS))?;
        let want: Vec<(u32, u8)> = peers
            .iter()
            .map(|p| (u32::from_ne_bytes(p.underlay_ip.octets()), PEER_KNOWN))
            .collect();
        changed += sync_hash(&mut known, &want, |_, _| false).map_err(map_err(PEERS))?;
        Ok(changed)
    }

    /// Makes the endpoint, source and redirect maps hold exactly `entries`, apart from the entries
    /// of the devices in `foreign`; returns how many entries were added or removed. `foreign`
    /// names the devices of another owner of the same maps (a node's own pods, or the pods a CNI
    /// network joined to that node): their entries are that owner's to keep true and stay as
    /// they are. Redirect targets are ifindexes of `netns`, so the devmap is written from inside
    /// it.
    pub fn sync_endpoints(
        &mut self,
        netns: &Netns,
        entries: &[EndpointEntry],
        underlay_ifindex: Option<u32>,
        foreign: &[u32],
    ) -> Result<usize, DatapathError> {
        let _inside = netns.enter()?;
        let map_err = |map| move |source| DatapathError::Map { map, source };
        let mut changed = 0;

        let mut endpoints: HashMap<_, u32, Endpoint> =
            HashMap::try_from(self.map_mut(ENDPOINTS)?).map_err(map_err(ENDPOINTS))?;
        let want: Vec<(u32, Endpoint)> = entries.iter().map(EndpointEntry::endpoint).collect();
        for (key, _) in &want {
            if let Ok(held) = endpoints.get(key, 0)
                && foreign.contains(&held.ifindex)
            {
                return Err(DatapathError::AddressHeld {
                    ip: Ipv4Addr::from(key.to_ne_bytes()),
                    ifindex: held.ifindex,
                });
            }
        }
        changed += sync_hash(&mut endpoints, &want, |_, e| foreign.contains(&e.ifindex))
            .map_err(map_err(ENDPOINTS))?;

        let mut sources: HashMap<_, u32, Source> =
            HashMap::try_from(self.map_mut(SOURCES)?).map_err(map_err(SOURCES))?;
        let want: Vec<(u32, Source)> = entries.iter().map(EndpointEntry::source).collect();
        changed += sync_hash(&mut sources, &want, |ifindex, _| foreign.contains(ifindex))
            .map_err(map_err(SOURCES))?;

        // Pods' veths, and the underlay device encapsulated frames leave by.
        let targets: Vec<u32> = entries
            .iter()
            .map(|e| e.ifindex)
            .chain(underlay_ifindex)
            .collect();
        let mut devmap = DevMapHash::try_from(self.map_mut(DEVMAP)?).map_err(map_err(DEVMAP))?;
        let present: Vec<u32> = devmap
            .keys()
            .collect::<Result<_, _>>()
            .map_err(map_err(DEVMAP))?;
        for key in present
            .iter()
            .filter(|k| !targets.contains(k) && !foreign.contains(k))
        {
            devmap.remove(*key).map_err(map_err(DEVMAP))?;
            changed += 1;
        }
        for ifindex in targets.iter().filter(|i| !present.contains(i)) {
            devmap
                .insert(*ifindex, *ifindex, None, 0)
                .map_err(|source| DatapathError::DevMap {
                    ifindex: *ifindex,
                    source: Box::new(source),
                })?;
            changed += 1;
        }
        Ok(changed)
    }

    /// Adds endpoint and remote CIDR entries to what the maps hold, without redirect targets:
    /// for the benchmark's map-size rows, whose extra entries name no device and receive no
    /// traffic. The next `sync_endpoints`/`sync_peers` removes them.
    pub fn insert_unrouted(
        &mut self,
        endpoints: &[EndpointEntry],
        remotes: &[PeerEntry],
    ) -> Result<(), DatapathError> {
        let map_err = |map| move |source| DatapathError::Map { map, source };
        let mut map: HashMap<_, u32, Endpoint> =
            HashMap::try_from(self.map_mut(ENDPOINTS)?).map_err(map_err(ENDPOINTS))?;
        for (key, value) in endpoints.iter().map(EndpointEntry::endpoint) {
            map.insert(key, value, 0).map_err(map_err(ENDPOINTS))?;
        }
        let mut map: HashMap<_, u32, Source> =
            HashMap::try_from(self.map_mut(SOURCES)?).map_err(map_err(SOURCES))?;
        for (key, value) in endpoints.iter().map(EndpointEntry::source) {
            map.insert(key, value, 0).map_err(map_err(SOURCES))?;
        }
        let mut map: LpmTrie<_, u32, Remote> =
            LpmTrie::try_from(self.map_mut(REMOTES)?).map_err(map_err(REMOTES))?;
        for (len, addr, value) in remotes.iter().map(PeerEntry::remote) {
            map.insert(&Key::new(len, addr), value, 0)
                .map_err(map_err(REMOTES))?;
        }
        Ok(())
    }

    /// Attaches `hook`'s program to `dev` in `netns` through a link pinned in this datapath's
    /// directory, so it stays attached when this process exits. A link pinned there already keeps
    /// its place; if it runs another build of the program (an older fastpath's), this one takes
    /// over in the same link, atomically: a fixed program reaches a running node with its next
    /// `up`, and no packet goes without one.
    pub fn attach_pinned(
        &mut self,
        hook: Hook,
        netns: &Netns,
        dev: &str,
    ) -> Result<PinnedAttach, DatapathError> {
        let dir = self
            .pin_dir
            .clone()
            .expect("attach_pinned needs a datapath loaded with load_pinned");
        let index = {
            let _inside = netns.enter()?;
            ifindex(dev, netns)?
        };
        let pin = hook.link_pin(&dir, dev, index);
        if pin.exists() {
            return if self.run_in_link(&pin, hook.program())? {
                Ok(PinnedAttach::Replaced)
            } else {
                Ok(PinnedAttach::Kept)
            };
        }
        self.attach(hook, netns, dev)?;
        let attachment = self.attachments.pop().expect("attach pushed one");
        let take_err = |program: &'static str| {
            move |source| DatapathError::Load {
                program,
                source: Box::new(source),
            }
        };
        let pin_err = |source| DatapathError::Pin {
            path: pin.display().to_string(),
            source: io::Error::other(source),
        };
        let link: FdLink = match attachment.link {
            LinkId::Xdp(id) => program_mut::<Xdp>(&mut self.ebpf, XDP_POD)?
                .take_link(id)
                .map_err(take_err(XDP_POD))?
                .try_into()
                .map_err(pin_err)?,
            LinkId::Tc(id) => program_mut::<SchedClassifier>(&mut self.ebpf, hook.program())?
                .take_link(id)
                .map_err(take_err(hook.program()))?
                .try_into()
                .map_err(pin_err)?,
        };
        link.pin(&pin).map_err(|source| DatapathError::Pin {
            path: pin.display().to_string(),
            source: io::Error::other(source),
        })?;
        Ok(PinnedAttach::Attached)
    }

    /// Makes the link pinned at `pin` run this datapath's `program` unless it runs the same code
    /// already (the kernel's tag of a program is a hash of its instructions). Returns whether it
    /// changed the link.
    pub fn run_in_link(&self, pin: &Path, program: &'static str) -> Result<bool, DatapathError> {
        let loaded = self
            .ebpf
            .program(program)
            .ok_or(DatapathError::MissingProgram { program })?;
        replace_in_link(pin, loaded, program)
    }

    /// Attaches the program for `hook` to `dev` in `netns`.
    pub fn attach(&mut self, hook: Hook, netns: &Netns, dev: &str) -> Result<(), DatapathError> {
        let _inside = netns.enter()?;
        let index = ifindex(dev, netns)?;
        let attach_err = |source: aya::programs::ProgramError| DatapathError::Attach {
            program: hook.program(),
            dev: dev.to_string(),
            netns: netns.label().to_string(),
            source: Box::new(source),
        };
        let link = match hook {
            Hook::Xdp => {
                let xdp: &mut Xdp = program_mut(&mut self.ebpf, XDP_POD)?;
                LinkId::Xdp(
                    xdp.attach_to_if_index(index, XdpMode::Driver)
                        .map_err(attach_err)?,
                )
            }
            Hook::Tc | Hook::TcUnderlay | Hook::BenchSink => {
                let tc: &mut SchedClassifier = program_mut(&mut self.ebpf, hook.program())?;
                LinkId::Tc(
                    tc.attach_with_options(
                        dev,
                        TcAttachType::Ingress,
                        TcAttachOptions::TcxOrder(LinkOrder::default()),
                    )
                    .map_err(attach_err)?,
                )
            }
        };
        self.attachments.push(Attachment {
            hook,
            netns: netns.clone(),
            dev: dev.to_string(),
            link,
        });
        Ok(())
    }

    /// Detaches the program for `hook` from `dev` in `netns`. Detaching what is not attached
    /// succeeds: the end state is the same.
    pub fn detach(&mut self, hook: Hook, netns: &Netns, dev: &str) -> Result<(), DatapathError> {
        let Some(pos) = self
            .attachments
            .iter()
            .position(|a| a.hook == hook && &a.netns == netns && a.dev == dev)
        else {
            return Ok(());
        };
        let attachment = self.attachments.remove(pos);
        let detach_err = |source: aya::programs::ProgramError| DatapathError::Detach {
            program: hook.program(),
            dev: dev.to_string(),
            netns: netns.label().to_string(),
            source: Box::new(source),
        };
        match attachment.link {
            LinkId::Xdp(id) => {
                let xdp: &mut Xdp = program_mut(&mut self.ebpf, XDP_POD)?;
                xdp.detach(id).map_err(detach_err)
            }
            LinkId::Tc(id) => {
                let tc: &mut SchedClassifier = program_mut(&mut self.ebpf, hook.program())?;
                tc.detach(id).map_err(detach_err)
            }
        }
    }

    /// Detaches everything this datapath attached, carrying on past failures and returning them.
    pub fn detach_all(&mut self) -> Vec<DatapathError> {
        let mut errors = Vec::new();
        while let Some(a) = self.attachments.last() {
            let (hook, netns, dev) = (a.hook, a.netns.clone(), a.dev.clone());
            if let Err(e) = self.detach(hook, &netns, &dev) {
                errors.push(e);
            }
        }
        errors
    }

    /// Runs the program for `hook` once on `frame` (BPF_PROG_TEST_RUN, no device involved) as if
    /// it arrived on ifindex 1 (the calling thread's loopback, where XDP test runs place it).
    /// Returns the verdict and the frame as the program left it. Counters move as they would for
    /// a real packet.
    pub fn run_on_frame(
        &mut self,
        hook: Hook,
        frame: &[u8],
    ) -> Result<(u32, Vec<u8>), DatapathError> {
        self.run_on_frame_from(hook, frame, 1)
    }

    /// As [`Datapath::run_on_frame`], the frame arriving on the device with `ifindex` in the
    /// calling thread's namespace (TC programs only): the kernel sets the packet's type (host,
    /// broadcast, other host) from that device's MAC, as it does for a received frame.
    pub fn run_on_frame_from(
        &mut self,
        hook: Hook,
        frame: &[u8],
        ifindex: u32,
    ) -> Result<(u32, Vec<u8>), DatapathError> {
        let mut out = vec![0u8; frame.len() + 256];
        // struct __sk_buff up to and including ifindex (offset 40), after ingress_ifindex (36).
        let mut skb_ctx = [0u8; 44];
        skb_ctx[36..40].copy_from_slice(&ifindex.to_ne_bytes());
        skb_ctx[40..44].copy_from_slice(&ifindex.to_ne_bytes());
        let mut opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..TestRunOptions::new()
        };
        let result = match hook {
            Hook::Xdp => program_mut::<Xdp>(&mut self.ebpf, XDP_POD)?.test_run(opts),
            Hook::Tc | Hook::TcUnderlay | Hook::BenchSink => {
                opts.ctx_in = Some(&skb_ctx);
                program_mut::<SchedClassifier>(&mut self.ebpf, hook.program())?.test_run(opts)
            }
        };
        let result = result.map_err(|source| DatapathError::TestRun {
            program: hook.program(),
            source: Box::new(source),
        })?;
        out.truncate(result.data_size_out as usize);
        Ok((result.return_value, out))
    }

    /// Packets `bench_sink` has counted, summed over CPUs.
    pub fn bench_sink_count(&self) -> Result<u64, DatapathError> {
        let err = |source| DatapathError::Map {
            map: BENCH_SINK_MAP,
            source,
        };
        let map = self
            .ebpf
            .map(BENCH_SINK_MAP)
            .ok_or(DatapathError::MissingMap {
                map: BENCH_SINK_MAP,
            })?;
        let cells: PerCpuArray<_, u64> = PerCpuArray::try_from(map).map_err(err)?;
        Ok(cells.get(&0, 0).map_err(err)?.iter().sum())
    }

    /// The kernel's id of one of this datapath's programs (as `loaded_programs` lists it).
    pub fn program_id(&self, program: &'static str) -> Result<u32, DatapathError> {
        let info = self
            .ebpf
            .program(program)
            .ok_or(DatapathError::MissingProgram { program })?
            .info()
            .map_err(|source| DatapathError::ProgramInfo {
                program,
                source: Box::new(source),
            })?;
        Ok(info.id())
    }

    /// Every counter cell that has counted something, summed over CPUs.
    pub fn counters(&self) -> Result<Vec<CounterRow>, DatapathError> {
        let map = self
            .ebpf
            .map(COUNTERS)
            .ok_or(DatapathError::MissingMap { map: COUNTERS })?;
        let counters: PerCpuArray<_, Counter> =
            PerCpuArray::try_from(map).map_err(|source| DatapathError::Map {
                map: COUNTERS,
                source,
            })?;
        counter_rows(&counters)
    }
}

/// The ENDPOINTS entry of `ip` in the maps pinned under `pin_dir`.
pub fn pinned_endpoint(pin_dir: &Path, ip: Ipv4Addr) -> Result<Option<Endpoint>, DatapathError> {
    let err = |source| DatapathError::Map {
        map: ENDPOINTS,
        source,
    };
    let data = MapData::from_pin(pin_dir.join(ENDPOINTS)).map_err(err)?;
    let map = Map::from_map_data(data).map_err(err)?;
    let endpoints: HashMap<_, u32, Endpoint> = HashMap::try_from(map).map_err(err)?;
    match endpoints.get(&u32::from_ne_bytes(ip.octets()), 0) {
        Ok(e) => Ok(Some(e)),
        Err(aya::maps::MapError::KeyNotFound) => Ok(None),
        Err(source) => Err(err(source)),
    }
}

/// Detaches `hook` from `dev` by removing its pinned link (the kernel drops the link with its last
/// reference). Returns false when there was none.
pub fn detach_pinned(pin_dir: &Path, link: &PinnedLinkName) -> Result<bool, DatapathError> {
    let pin = link.hook.link_pin(pin_dir, &link.dev, link.ifindex);
    match std::fs::remove_file(&pin) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(DatapathError::Pin {
            path: pin.display().to_string(),
            source,
        }),
    }
}

/// What [`Datapath::attach_pinned`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinnedAttach {
    /// A link running this very program was there.
    Kept,
    /// A new link, pinned.
    Attached,
    /// The pinned link ran another build of the program; it runs this one now.
    Replaced,
}

fn replace_in_link(
    pin: &Path,
    program: &aya::programs::Program,
    name: &'static str,
) -> Result<bool, DatapathError> {
    let pin_err = |source: io::Error| DatapathError::Pin {
        path: pin.display().to_string(),
        source,
    };
    let fd = program.fd().map_err(|source| DatapathError::ProgramInfo {
        program: name,
        source: Box::new(source),
    })?;
    let link = bpf_link::PinnedLink::open(pin).map_err(pin_err)?;
    let attached = bpf_link::program_tag_by_id(link.program_id().map_err(pin_err)?);
    if attached.map_err(pin_err)? == bpf_link::program_tag(fd.as_fd()).map_err(pin_err)? {
        return Ok(false);
    }
    link.update(fd.as_fd()).map_err(pin_err)?;
    Ok(true)
}

/// A pinned link, as its file name describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinnedLinkName {
    pub hook: Hook,
    pub dev: String,
    pub ifindex: u32,
}

/// The links pinned under `pin_dir`.
pub fn pinned_links(pin_dir: &Path) -> Result<Vec<PinnedLinkName>, DatapathError> {
    let entries = match std::fs::read_dir(pin_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(DatapathError::Pin {
                path: pin_dir.display().to_string(),
                source,
            });
        }
    };
    let mut links = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((hook, rest)) = Hook::ALL.iter().find_map(|hook| {
            name.strip_prefix(&format!("link-{}-", hook.name()))
                .map(|rest| (*hook, rest))
        }) else {
            continue;
        };
        if let Some((dev, index)) = rest.rsplit_once('-')
            && let Ok(ifindex) = index.parse()
        {
            links.push(PinnedLinkName {
                hook,
                dev: dev.to_string(),
                ifindex,
            });
        }
    }
    links.sort_by(|a, b| {
        (a.dev.as_str(), a.hook.name(), a.ifindex).cmp(&(b.dev.as_str(), b.hook.name(), b.ifindex))
    });
    Ok(links)
}

/// The counters pinned under `pin_dir`, read by any process (no programs loaded).
pub fn pinned_counters(pin_dir: &Path) -> Result<Vec<CounterRow>, DatapathError> {
    let err = |source| DatapathError::Map {
        map: COUNTERS,
        source,
    };
    let data = MapData::from_pin(pin_dir.join(COUNTERS)).map_err(err)?;
    let map = Map::from_map_data(data).map_err(err)?;
    let counters: PerCpuArray<_, Counter> = PerCpuArray::try_from(map).map_err(err)?;
    counter_rows(&counters)
}

/// Serializes the owners of the maps pinned in `dir` (a node's `up` and the CNI networks joined
/// to it): each lists the devices that are not its own, then rewrites the maps around them, and
/// a device made by another owner in between must not be taken for a stale one. The lock is an
/// flock on the directory itself, released when the value is dropped.
pub fn lock_pins(dir: &Path) -> Result<Flock<std::fs::File>, DatapathError> {
    let err = |source| DatapathError::Lock {
        path: dir.display().to_string(),
        source,
    };
    let file = std::fs::File::open(dir).map_err(err)?;
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| err(errno.into()))
}

/// Makes a hash map hold exactly `want` and the present entries `keep` says are not ours to
/// touch; returns how many entries changed.
fn sync_hash<T, V>(
    map: &mut HashMap<T, u32, V>,
    want: &[(u32, V)],
    keep: impl Fn(&u32, &V) -> bool,
) -> Result<usize, aya::maps::MapError>
where
    T: Borrow<MapData> + std::borrow::BorrowMut<MapData>,
    V: aya::Pod + PartialEq,
{
    let mut changed = 0;
    let present: Vec<(u32, V)> = map.iter().collect::<Result<_, _>>()?;
    for (key, _) in present
        .iter()
        .filter(|(k, v)| !keep(k, v) && !want.iter().any(|(w, _)| w == k))
    {
        map.remove(key)?;
        changed += 1;
    }
    for (key, value) in want {
        if map.get(key, 0).ok().as_ref() != Some(value) {
            map.insert(key, value, 0)?;
            changed += 1;
        }
    }
    Ok(changed)
}

/// Every counter cell that has counted something, summed over CPUs.
fn counter_rows<T: Borrow<MapData>>(
    counters: &PerCpuArray<T, Counter>,
) -> Result<Vec<CounterRow>, DatapathError> {
    let mut rows = Vec::new();
    for slot in 0..program::SLOTS {
        for reason in 0..MAX_REASONS {
            let index = counter_index(slot, reason);
            debug_assert!(index < COUNTER_SLOTS);
            let per_cpu = counters
                .get(&index, 0)
                .map_err(|source| DatapathError::Map {
                    map: COUNTERS,
                    source,
                })?;
            let (packets, bytes) = per_cpu
                .iter()
                .fold((0, 0), |(p, b), c| (p + c.packets, b + c.bytes));
            if packets == 0 {
                continue;
            }
            let info = reasons::reason_info(reason);
            rows.push(CounterRow {
                program: reasons::program_name(slot).unwrap_or("unknown-program"),
                reason: info.map_or("unknown-reason", |i| i.name),
                verdict: info.map_or("unknown", |i| verdict_name(i.verdict)),
                packets,
                bytes,
            });
        }
    }
    Ok(rows)
}

impl Drop for Datapath {
    fn drop(&mut self) {
        for e in self.detach_all() {
            log::warn!("{e}");
        }
    }
}

fn program_mut<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, DatapathError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program>,
{
    ebpf.program_mut(name)
        .and_then(|p| p.try_into().ok())
        .ok_or(DatapathError::MissingProgram { program: name })
}

/// Ids of the programs attached to `dev`'s tcx ingress in `netns` (whoever attached them).
pub fn tcx_ingress_program_ids(netns: &Netns, dev: &str) -> Result<Vec<u32>, DatapathError> {
    let _inside = netns.enter()?;
    ifindex(dev, netns)?;
    let (_, programs) =
        SchedClassifier::query_tcx(dev, TcAttachType::Ingress).map_err(|source| {
            DatapathError::Query {
                dev: dev.to_string(),
                netns: netns.label().to_string(),
                source: Box::new(source),
            }
        })?;
    Ok(programs.iter().map(|p| p.id()).collect())
}

/// How long a loaded program has run and how often, as the kernel counts while its run-time
/// statistics are on.
#[derive(Clone, Debug)]
pub struct ProgramRuns {
    pub id: u32,
    pub name: String,
    pub run_time_ns: u64,
    pub run_count: u64,
}

/// Turns the kernel's BPF run-time statistics on for as long as the returned descriptor is open.
/// BPF_ENABLE_STATS rather than the kernel.bpf_stats_enabled sysctl, so that a killed process
/// cannot leave them on (they cost two clock reads per program run, machine-wide).
pub fn enable_run_time_stats() -> Result<OwnedFd, DatapathError> {
    aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .map_err(|source| DatapathError::Stats(Box::new(source)))
}

/// The run-time statistics of the loaded programs with these ids, in the order of `ids`.
pub fn program_runs(ids: &[u32]) -> Result<Vec<ProgramRuns>, DatapathError> {
    // A program that is unloaded while the list is read is an error only if it is one of ours,
    // and then it is missing below.
    let mut found: Vec<ProgramRuns> = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|info| ids.contains(&info.id()))
        .map(|info| ProgramRuns {
            id: info.id(),
            name: info.name_as_str().unwrap_or("?").to_string(),
            run_time_ns: u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX),
            run_count: info.run_count(),
        })
        .collect();
    ids.iter()
        .map(|&id| {
            let at = found
                .iter()
                .position(|r| r.id == id)
                .ok_or(DatapathError::ProgramGone { id })?;
            Ok(found.swap_remove(at))
        })
        .collect()
}

/// The sum over `rows` of the packets `program` counted under `reason`.
pub fn packets(rows: &[CounterRow], program: &str, reason: &str) -> u64 {
    rows.iter()
        .filter(|r| r.program == program && r.reason == reason)
        .map(|r| r.packets)
        .sum()
}
