//! Loading the programs into the kernel (where the verifier checks them: the costly step), either
//! for this process alone — tests, the demo, `watch`, the benchmark — or once per node or network,
//! pinned beside its maps so that every later attach reuses them and verifies nothing.

use std::{
    io,
    os::fd::{AsFd as _, BorrowedFd},
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    programs::{
        LinkOrder, SchedClassifier, TcAttachType, TestRun, TestRunOptions, Xdp, XdpMode,
        tc::{SchedClassifierLinkId, TcAttachOptions},
        xdp::XdpLinkId,
    },
};

use super::{
    maps::Maps,
    object::{BUILD_ID, DATAPATH_OBJECT, Hook, MAPS, TC_POD, TC_UNDERLAY, XDP_POD},
};
use crate::{bpffs, error::DatapathError, netns::Netns};

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

/// The programs loaded by this process, its maps and the devices it attached them to. Dropping
/// it detaches everything.
pub struct Datapath {
    ebpf: Ebpf,
    maps: Maps,
    attachments: Vec<Attachment>,
    _logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
}

/// The kernel's ifindex of `dev` in the calling thread's namespace.
pub(super) fn ifindex(dev: &str, netns: &Netns) -> Result<u32, DatapathError> {
    nix::net::if_::if_nametoindex(dev).map_err(|_| DatapathError::DeviceNotFound {
        dev: dev.to_string(),
        netns: netns.label().to_string(),
    })
}

impl Datapath {
    /// Loads the programs into the kernel, with maps of their own (nothing is attached yet).
    /// With `ebpf_log_level` set, the programs' aya-log messages at that level and above go to
    /// this process's logger.
    pub fn load(ebpf_log_level: Option<log::Level>) -> Result<Self, DatapathError> {
        Self::load_inner(None, ebpf_log_level)
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
                    log::warn!(
                        "eBPF log messages will not be shown: {}",
                        crate::error::chain(&e)
                    );
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
        for name in [TC_POD, TC_UNDERLAY] {
            let tc: &mut SchedClassifier = program_mut(&mut ebpf, name)?;
            tc.load().map_err(|source| DatapathError::Load {
                program: name,
                source: Box::new(source),
            })?;
        }
        let maps = Maps::take(&mut ebpf)?;
        Ok(Self {
            ebpf,
            maps,
            attachments: Vec::new(),
            _logger: logger,
        })
    }

    pub fn maps(&self) -> &Maps {
        &self.maps
    }

    pub fn maps_mut(&mut self) -> &mut Maps {
        &mut self.maps
    }

    /// Attaches the program for `hook` to `dev` in `netns`, for as long as this datapath lives.
    pub fn attach(&mut self, hook: Hook, netns: &Netns, dev: &str) -> Result<(), DatapathError> {
        let _inside = netns.enter()?;
        let index = ifindex(dev, netns)?;
        let attach_err = attach_err(hook, netns, dev);
        let link = match hook {
            Hook::Xdp => {
                let xdp: &mut Xdp = program_mut(&mut self.ebpf, XDP_POD)?;
                LinkId::Xdp(
                    xdp.attach_to_if_index(index, XdpMode::Driver)
                        .map_err(&attach_err)?,
                )
            }
            Hook::Tc | Hook::TcUnderlay => {
                let tc: &mut SchedClassifier = program_mut(&mut self.ebpf, hook.program())?;
                LinkId::Tc(
                    tc.attach_with_options(
                        dev,
                        TcAttachType::Ingress,
                        TcAttachOptions::TcxOrder(LinkOrder::default()),
                    )
                    .map_err(&attach_err)?,
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
            Hook::Tc | Hook::TcUnderlay => {
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

    /// A descriptor of one of this datapath's programs.
    pub fn program_fd(&self, program: &'static str) -> Result<BorrowedFd<'_>, DatapathError> {
        let fd = self
            .ebpf
            .program(program)
            .ok_or(DatapathError::MissingProgram { program })?
            .fd()
            .map_err(|source| DatapathError::ProgramInfo {
                program,
                source: Box::new(source),
            })?;
        Ok(fd.as_fd())
    }
}

impl Drop for Datapath {
    fn drop(&mut self) {
        for e in self.detach_all() {
            log::warn!("{}", crate::error::chain(&e));
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

/// Where this build's program for `hook` is pinned under a node's or network's `dir`.
pub fn program_pin(dir: &Path, hook: Hook) -> PathBuf {
    dir.join(format!("prog-{}-{BUILD_ID}", hook.name()))
}

/// Whether this build's programs are pinned under `dir`.
pub fn programs_pinned(dir: &Path) -> bool {
    Hook::ALL
        .iter()
        .all(|&hook| program_pin(dir, hook).exists())
}

/// What [`ensure_pinned`] did.
#[derive(Debug, Default)]
pub struct Pinned {
    /// The programs were loaded and verified (they were not pinned yet).
    pub loaded: bool,
    /// Pinned maps of another layout (by name: an older build's, or a newer one's after a downgrade) that this build's maps replaced.
    pub replaced_maps: Vec<String>,
}

/// Pins this build's programs under `dir`, beside the maps pinned there (made when missing),
/// unless they are there already. Only then are the programs loaded and verified. Programs of
/// other builds pinned there are unpinned, and so are maps of other layouts: links running the
/// old programs keep them (and their maps) until they are given this build's.
pub fn ensure_pinned(dir: &Path) -> Result<Pinned, DatapathError> {
    bpffs::ensure_mounted()?;
    if programs_pinned(dir) {
        return Ok(Pinned::default());
    }
    std::fs::create_dir_all(dir).map_err(|source| DatapathError::Bpffs {
        path: dir.display().to_string(),
        source,
    })?;
    let mut datapath = Datapath::load_inner(Some(dir), None)?;
    for hook in Hook::ALL {
        let pin = program_pin(dir, hook);
        let program =
            datapath
                .ebpf
                .program_mut(hook.program())
                .ok_or(DatapathError::MissingProgram {
                    program: hook.program(),
                })?;
        match program.pin(&pin) {
            Ok(()) => {}
            // Another process pinned the same build in the meantime: that one is as good.
            Err(_) if pin.exists() => {}
            Err(e) => {
                return Err(DatapathError::Pin {
                    path: pin.display().to_string(),
                    source: io::Error::other(e),
                });
            }
        }
    }
    let replaced_maps = unpin_others(dir)?;
    Ok(Pinned {
        loaded: true,
        replaced_maps,
    })
}

/// Unpins programs of other builds and maps of other layouts from `dir`; returns the maps'
/// names.
fn unpin_others(dir: &Path) -> Result<Vec<String>, DatapathError> {
    let entries = std::fs::read_dir(dir).map_err(|source| DatapathError::Bpffs {
        path: dir.display().to_string(),
        source,
    })?;
    let ours: Vec<PathBuf> = Hook::ALL.iter().map(|&h| program_pin(dir, h)).collect();
    let mut replaced_maps = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let old_program = name.starts_with("prog-") && !ours.contains(&path);
        let old_map = is_map_name(&name) && !MAPS.contains(&name.as_str());
        if !old_program && !old_map {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(DatapathError::Pin {
                    path: path.display().to_string(),
                    source,
                });
            }
        }
        if old_map {
            replaced_maps.push(name);
        }
    }
    replaced_maps.sort();
    Ok(replaced_maps)
}

/// Map pins are named as the maps are, in capitals (`ENDPOINTS_V2`, and `ENDPOINTS` before
/// layouts had versions); programs and links are `prog-…` and `link-…`.
fn is_map_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// The kernel's id of this build's program for `hook` pinned under `dir`.
pub fn pinned_program_id(dir: &Path, hook: Hook) -> Result<u32, DatapathError> {
    let info = aya::programs::ProgramInfo::from_pin(program_pin(dir, hook)).map_err(|source| {
        DatapathError::ProgramInfo {
            program: hook.program(),
            source: Box::new(source),
        }
    })?;
    Ok(info.id())
}

/// The error of attaching `hook`'s program to `dev` in `netns`, whatever the attach said.
pub(super) fn attach_err(
    hook: Hook,
    netns: &Netns,
    dev: &str,
) -> impl Fn(aya::programs::ProgramError) -> DatapathError {
    let (dev, netns) = (dev.to_string(), netns.label().to_string());
    move |source| DatapathError::Attach {
        program: hook.program(),
        dev: dev.clone(),
        netns: netns.clone(),
        source: Box::new(source),
    }
}
