//! Programs attached as classic TC filters (cls_bpf, direct action, under a clsact qdisc) rather
//! than through tcx links: what a CNI attachment uses. Adding a tcx program makes the kernel wait
//! for an RCU grace period while it holds the RTNL lock (8–24 ms on the development VM, every CNI
//! ADD), and a device with a tcx program takes about 15 ms longer to delete (every DEL); a
//! filter takes under a millisecond and adds nothing to the deletion. A filter belongs to its
//! device: it goes when the device goes, so nothing is pinned for it.

use aya::programs::{
    SchedClassifier, TcAttachType,
    links::Link as _,
    tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions, TcError, TcHandle},
};

use super::{
    object::Hook,
    programs::{attach_err, ifindex, program_pin},
};
use crate::{error::DatapathError, netns::Netns};

/// Where fastpath's filter sits among a device's ingress filters: one fixed place, so that it is
/// found and removed without touching another's.
const PRIORITY: u16 = 0x4654; // "FT"
const HANDLE: u32 = 1;

/// Attaches the program for `hook` pinned under `dir` to `dev`'s ingress in `netns` as a filter.
pub fn attach_filter(
    dir: &std::path::Path,
    hook: Hook,
    netns: &Netns,
    dev: &str,
) -> Result<(), DatapathError> {
    let _inside = netns.enter()?;
    ifindex(dev, netns)?;
    let attach_err = attach_err(hook, netns, dev);
    let mut program = SchedClassifier::from_pin(program_pin(dir, hook)).map_err(&attach_err)?;
    match tc::qdisc_add_clsact(dev) {
        Ok(()) => {}
        Err(TcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(e) => return Err(attach_err(e.into())),
    }
    let id = program
        .attach_with_options(
            dev,
            TcAttachType::Ingress,
            TcAttachOptions::Netlink(NlOptions {
                priority: PRIORITY,
                handle: TcHandle::from(HANDLE),
                ..NlOptions::default()
            }),
        )
        .map_err(&attach_err)?;
    let link = program.take_link(id).map_err(&attach_err)?;
    // Dropping the handle would remove the filter: it stays, with its device.
    std::mem::forget(link);
    Ok(())
}

/// Removes fastpath's filter from `dev`'s ingress in `netns`, if the device and the filter are
/// there.
pub fn detach_filter(netns: &Netns, dev: &str) -> Result<(), DatapathError> {
    let _inside = netns.enter()?;
    let link = match SchedClassifierLink::attached(
        dev,
        TcAttachType::Ingress,
        PRIORITY,
        TcHandle::from(HANDLE),
        None,
    ) {
        Ok(link) => link,
        // No such device: nothing is attached to it.
        Err(_) => return Ok(()),
    };
    match link.detach() {
        Ok(()) => Ok(()),
        Err(aya::programs::ProgramError::TcError(TcError::NetlinkError(e)))
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOENT | libc::ENODEV | libc::EINVAL)
            ) =>
        {
            Ok(())
        }
        Err(source) => Err(DatapathError::Detach {
            program: Hook::Tc.program(),
            dev: dev.to_string(),
            netns: netns.label().to_string(),
            source: Box::new(source),
        }),
    }
}
