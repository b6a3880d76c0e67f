//! The benchmark's receiver, `bench_sink`: an eBPF object of its own (crate `datapath-ebpf`, bin
//! `bench_sink`), embedded here and nowhere else, so the product's object and binary carry no
//! benchmark code. Attached to a receiving pod's interface for one measurement at a time.

use anyhow::{Context as _, Result};
use aya::{
    Ebpf,
    maps::PerCpuArray,
    programs::{
        LinkOrder, SchedClassifier, TcAttachType,
        tc::{SchedClassifierLinkId, TcAttachOptions},
    },
};
use control::netns::Netns;

static BENCH_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench_sink"));
const PROGRAM: &str = "bench_sink";
const COUNT: &str = "BENCH_SINK";

/// The loaded receiver and, while attached, where.
pub struct BenchSink {
    ebpf: Ebpf,
    attached: Option<(Netns, String, SchedClassifierLinkId)>,
}

impl BenchSink {
    pub fn load() -> Result<Self> {
        let mut ebpf = Ebpf::load(BENCH_OBJECT).context("loading the bench_sink object")?;
        program(&mut ebpf)?
            .load()
            .context("the kernel rejected bench_sink")?;
        Ok(Self {
            ebpf,
            attached: None,
        })
    }

    /// Attaches to `dev`'s tcx ingress in `netns` (detaching from where it was).
    pub fn attach(&mut self, netns: &Netns, dev: &str) -> Result<()> {
        self.detach()?;
        let _inside = netns.enter()?;
        let id = program(&mut self.ebpf)?
            .attach_with_options(
                dev,
                TcAttachType::Ingress,
                TcAttachOptions::TcxOrder(LinkOrder::default()),
            )
            .with_context(|| format!("attaching bench_sink to {dev} in {}", netns.label()))?;
        self.attached = Some((netns.clone(), dev.to_string(), id));
        Ok(())
    }

    pub fn detach(&mut self) -> Result<()> {
        if let Some((netns, dev, id)) = self.attached.take() {
            program(&mut self.ebpf)?
                .detach(id)
                .with_context(|| format!("detaching bench_sink from {dev} in {}", netns.label()))?;
        }
        Ok(())
    }

    /// Packets counted so far, summed over CPUs.
    pub fn count(&self) -> Result<u64> {
        let map = self
            .ebpf
            .map(COUNT)
            .context("bench_sink's map is missing")?;
        let cells: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
        Ok(cells.get(&0, 0)?.iter().sum())
    }

    /// The kernel's id of the program (as the run-time statistics list it).
    pub fn program_id(&self) -> Result<u32> {
        let program = self
            .ebpf
            .program(PROGRAM)
            .context("bench_sink is missing from its object")?;
        Ok(program.info()?.id())
    }
}

impl Drop for BenchSink {
    fn drop(&mut self) {
        if let Err(e) = self.detach() {
            log::warn!("{e:#}");
        }
    }
}

fn program(ebpf: &mut Ebpf) -> Result<&mut SchedClassifier> {
    Ok(ebpf
        .program_mut(PROGRAM)
        .context("bench_sink is missing from its object")?
        .try_into()?)
}
