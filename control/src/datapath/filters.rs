//! Programs attached as classic TC filters (cls_bpf, direct action, under a clsact qdisc) rather
//! than through tcx links: what a CNI attachment uses. Adding a tcx program makes the kernel wait
//! for an RCU grace period while it holds the RTNL lock (8–24 ms on the development VM, every CNI
//! ADD), and a device with a tcx program takes about 15 ms longer to delete (every DEL); a
//! filter takes under a millisecond and adds nothing to the deletion. A filter belongs to its
//! device: it goes when the device goes, so nothing is pinned for it. The pinned program is
//! opened with bpf(2) directly and the filter made over netlink: nothing here runs aya's feature
//! probes (see `bpf_sys`).

use std::{os::fd::AsFd as _, path::Path};

use super::{object::Hook, programs::program_pin};
use crate::{
    bpf_sys,
    error::DatapathError,
    netlink::{BpfFilter, Netlink},
};

/// Where fastpath's filter sits among a device's ingress filters: one fixed place, so that it is
/// found and removed without touching another's.
const PRIORITY: u16 = 0x4654; // "FT"
const HANDLE: u32 = 1;

/// Attaches the program for `hook` pinned under `dir` to `dev`'s ingress as a filter, in `nl`'s
/// namespace.
pub async fn attach_filter(
    nl: &Netlink,
    dir: &Path,
    hook: Hook,
    dev: &str,
) -> Result<(), DatapathError> {
    let pin = program_pin(dir, hook);
    let program = bpf_sys::open_pinned(&pin).map_err(|source| DatapathError::Pin {
        path: pin.display().to_string(),
        source,
    })?;
    nl.replace_ingress_bpf_filter(
        dev,
        &BpfFilter {
            program: program.as_fd(),
            name: hook.program(),
            priority: PRIORITY,
            handle: HANDLE,
        },
    )
    .await?;
    Ok(())
}

/// Removes fastpath's filter from `dev`'s ingress in `nl`'s namespace, if the device and the
/// filter are there.
pub async fn detach_filter(nl: &Netlink, dev: &str) -> Result<(), DatapathError> {
    Ok(nl.delete_ingress_filter(dev, PRIORITY, HANDLE).await?)
}
