//! Loads the embedded eBPF object, attaches and detaches its programs, reads its maps. The only
//! module that touches aya's program and map handles.

use aya::{
    Ebpf, EbpfLoader,
    maps::PerCpuArray,
    programs::{
        LinkOrder, SchedClassifier, TcAttachType, TestRun, TestRunOptions, Xdp, XdpMode,
        tc::{SchedClassifierLinkId, TcAttachOptions},
        xdp::XdpLinkId,
    },
};
use datapath_common::{
    COUNTER_SLOTS, Counter, counter_index,
    reasons::{self, MAX_REASONS, Verdict, program},
};
use serde::Serialize;

use crate::{bpffs, error::DatapathError, netns::Netns};

/// The programs and maps, compiled from crate `datapath-ebpf` by build.rs.
static DATAPATH_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/datapath"));

pub const XDP_POD: &str = "xdp_pod";
pub const TC_POD: &str = "tc_pod";
const COUNTERS: &str = "COUNTERS";

/// Where a program hooks into a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    /// XDP in native (driver) mode.
    Xdp,
    /// TC ingress through tcx.
    Tc,
}

impl Hook {
    pub fn program(self) -> &'static str {
        match self {
            Hook::Xdp => XDP_POD,
            Hook::Tc => TC_POD,
        }
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
        bpffs::ensure_mounted()?;
        // aya-log's level numbering: 0 off, 1 error .. 5 trace. Off unless asked, because every
        // enabled log call costs a ring-buffer write per packet.
        let level: u8 = ebpf_log_level.map_or(0, |l| l as u8);
        let mut ebpf = EbpfLoader::new()
            .override_global("AYA_LOG_LEVEL", &level, false)
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
        let tc: &mut SchedClassifier = program_mut(&mut ebpf, TC_POD)?;
        tc.load().map_err(|source| DatapathError::Load {
            program: TC_POD,
            source: Box::new(source),
        })?;
        Ok(Self {
            ebpf,
            attachments: Vec::new(),
            _logger: logger,
        })
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
            Hook::Tc => {
                let tc: &mut SchedClassifier = program_mut(&mut self.ebpf, TC_POD)?;
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
                let tc: &mut SchedClassifier = program_mut(&mut self.ebpf, TC_POD)?;
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

    /// Runs the program for `hook` once on `frame` (BPF_PROG_TEST_RUN, no device involved) and
    /// returns its verdict. Counters move as they would for a real packet.
    pub fn run_on_frame(&mut self, hook: Hook, frame: &[u8]) -> Result<u32, DatapathError> {
        let opts = TestRunOptions {
            data_in: Some(frame),
            ..TestRunOptions::new()
        };
        let result = match hook {
            Hook::Xdp => program_mut::<Xdp>(&mut self.ebpf, XDP_POD)?.test_run(opts),
            Hook::Tc => program_mut::<SchedClassifier>(&mut self.ebpf, TC_POD)?.test_run(opts),
        };
        result
            .map(|r| r.return_value)
            .map_err(|source| DatapathError::TestRun {
                program: hook.program(),
                source: Box::new(source),
            })
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

/// The sum over `rows` of the packets `program` counted under `reason`.
pub fn packets(rows: &[CounterRow], program: &str, reason: &str) -> u64 {
    rows.iter()
        .filter(|r| r.program == program && r.reason == reason)
        .map(|r| r.packets)
        .sum()
}
