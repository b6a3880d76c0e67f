//! Program links pinned per device, so that programs stay attached when the process that attached
//! them exits: attaching a node's or network's pinned program, giving a link another program,
//! listing and removing them.

use std::{
    io,
    os::fd::{AsFd as _, BorrowedFd},
    path::{Path, PathBuf},
};

use aya::programs::{
    LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode, links::FdLink, tc::TcAttachOptions,
};

use aya_obj::programs::XdpAttachType;

use super::{
    object::Hook,
    programs::{attach_err, ifindex, program_pin},
};
use crate::{bpf_sys, error::DatapathError, netns::Netns};

impl Hook {
    /// The bpffs file that holds this hook's link on `dev` with `ifindex`. The ifindex is in the
    /// name because a device recreated under the same name is a new device: the old link is
    /// defunct and the new one needs a link of its own.
    pub fn link_pin(self, pin_dir: &Path, dev: &str, ifindex: u32) -> PathBuf {
        pin_dir.join(format!("link-{}-{dev}-{ifindex}", self.name()))
    }
}

/// What [`attach_pinned`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinnedAttach {
    /// A link running this very program was there.
    Kept,
    /// A new link, pinned.
    Attached,
    /// The pinned link ran another build of the program; it runs this one now.
    Replaced,
}

fn pin_err(path: &Path) -> impl Fn(io::Error) -> DatapathError {
    let path = path.display().to_string();
    move |source| DatapathError::Pin {
        path: path.clone(),
        source,
    }
}

/// Attaches the program for `hook` pinned under `dir` (see [`super::ensure_pinned`]) to `dev` in
/// `netns`, through a link pinned in `dir` too, so it stays attached when this process exits. A
/// link pinned there already keeps its place; if it runs another build of the program (an older
/// fastpath's), this one takes over in the same link, atomically: a fixed program reaches a
/// running node with its next `up`, and no packet goes without one.
pub fn attach_pinned(
    dir: &Path,
    hook: Hook,
    netns: &Netns,
    dev: &str,
) -> Result<PinnedAttach, DatapathError> {
    let _inside = netns.enter()?;
    let index = ifindex(dev, netns)?;
    let pin = hook.link_pin(dir, dev, index);
    let program_pin = program_pin(dir, hook);
    if pin.exists() {
        let program = bpf_sys::open_pinned(&program_pin).map_err(pin_err(&program_pin))?;
        return if run_in_link(&pin, program.as_fd())? {
            Ok(PinnedAttach::Replaced)
        } else {
            Ok(PinnedAttach::Kept)
        };
    }
    let attach_err = attach_err(hook, netns, dev);
    let to_fd_link = |e: aya::programs::links::LinkError| pin_err(&pin)(io::Error::other(e));
    let link: FdLink = match hook {
        Hook::Xdp => {
            let mut xdp =
                Xdp::from_pin(&program_pin, XdpAttachType::Interface).map_err(&attach_err)?;
            let id = xdp
                .attach_to_if_index(index, XdpMode::Driver)
                .map_err(&attach_err)?;
            xdp.take_link(id)
                .map_err(&attach_err)?
                .try_into()
                .map_err(to_fd_link)?
        }
        Hook::Tc | Hook::TcUnderlay => {
            let mut tc = SchedClassifier::from_pin(&program_pin).map_err(&attach_err)?;
            let id = tc
                .attach_with_options(
                    dev,
                    TcAttachType::Ingress,
                    TcAttachOptions::TcxOrder(LinkOrder::default()),
                )
                .map_err(&attach_err)?;
            tc.take_link(id)
                .map_err(&attach_err)?
                .try_into()
                .map_err(to_fd_link)?
        }
    };
    link.pin(&pin)
        .map_err(|e| pin_err(&pin)(io::Error::other(e)))?;
    Ok(PinnedAttach::Attached)
}

/// Makes the link pinned at `pin` run `program` unless it runs that program already. Returns
/// whether it changed the link.
pub fn run_in_link(pin: &Path, program: BorrowedFd<'_>) -> Result<bool, DatapathError> {
    let link = bpf_sys::PinnedLink::open(pin).map_err(pin_err(pin))?;
    let running = link.program_id().map_err(pin_err(pin))?;
    if running == bpf_sys::program_id(program).map_err(pin_err(pin))? {
        return Ok(false);
    }
    link.update(program).map_err(pin_err(pin))?;
    Ok(true)
}

/// Detaches `link`'s program from its device, now, and removes the link's pin. Returns false
/// when there was none.
pub fn detach_pinned(pin_dir: &Path, link: &PinnedLinkName) -> Result<bool, DatapathError> {
    let pin = link.hook.link_pin(pin_dir, &link.dev, link.ifindex);
    // Removing the pin alone would leave the program running until the kernel's work queue
    // releases the link: whoever detaches expects it gone on return.
    match bpf_sys::PinnedLink::open(&pin) {
        Ok(opened) => opened.detach().map_err(pin_err(&pin))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(source) => return Err(pin_err(&pin)(source)),
    }
    match std::fs::remove_file(&pin) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(pin_err(&pin)(source)),
    }
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
        Err(source) => return Err(pin_err(pin_dir)(source)),
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

/// The kernel's loaded programs by id and name, read once: which of fastpath's programs (by
/// name, whichever build) runs on a device.
pub struct LoadedPrograms(Vec<(u32, String)>);

impl LoadedPrograms {
    pub fn read() -> Self {
        Self(
            aya::programs::loaded_programs()
                .filter_map(Result::ok)
                .map(|info| {
                    (
                        info.id(),
                        info.name_as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect(),
        )
    }

    fn runs(&self, id: u32, hook: Hook) -> bool {
        self.0.iter().any(|(i, n)| *i == id && n == hook.program())
    }

    /// The pod hook whose program runs on a device with this XDP program and these tcx programs.
    pub fn pod_hook(&self, xdp_program: Option<u32>, tcx_programs: &[u32]) -> Option<Hook> {
        if xdp_program.is_some_and(|id| self.runs(id, Hook::Xdp)) {
            Some(Hook::Xdp)
        } else if tcx_programs.iter().any(|&id| self.runs(id, Hook::Tc)) {
            Some(Hook::Tc)
        } else {
            None
        }
    }
}
