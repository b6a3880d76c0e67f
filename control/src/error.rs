//! Typed errors for the places where callers branch on what went wrong. A message describes
//! only its own layer and keeps the cause as its `source`: `{e:#}` (anyhow) or [`chain`] prints
//! each cause once.

use std::{error::Error, io};

/// `e` and every cause under it, joined with ": ", as anyhow's `{e:#}` prints them: for a typed
/// error printed on its own, whose `{e}` names only its own layer.
pub fn chain(e: &dyn Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("network namespace '{name}' does not exist")]
    NotFound { name: String },
    #[error("network namespace '{name}' already exists")]
    Exists { name: String },
    #[error("network namespace '{name}' belongs to someone else: fastpath does not delete it")]
    Foreign { name: String },
    #[error("cannot {op} network namespace '{name}'")]
    Io {
        op: &'static str,
        name: String,
        #[source]
        source: io::Error,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("device '{dev}' not found in network namespace '{netns}'")]
    DeviceNotFound { dev: String, netns: String },
    #[error("device '{dev}' already exists in network namespace '{netns}'")]
    DeviceExists { dev: String, netns: String },
    #[error("netlink: cannot {op} '{target}' in network namespace '{netns}'")]
    Request {
        op: &'static str,
        target: String,
        netns: String,
        #[source]
        source: Box<rtnetlink::Error>,
    },
    #[error(
        "the kernel does not support {what} in network namespace '{netns}' (a module missing?)"
    )]
    Unsupported { what: String, netns: String },
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("cannot open a netlink socket in network namespace '{netns}'")]
    Socket {
        netns: String,
        #[source]
        source: io::Error,
    },
    #[error("route to {dst} via {gateway}: the gateway is of another address family")]
    MixedFamilies {
        dst: ipnet::IpNet,
        gateway: std::net::IpAddr,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("device '{dev}' not found in network namespace '{netns}'")]
    DeviceNotFound { dev: String, netns: String },
    #[error("the embedded eBPF object does not load")]
    Object(#[source] Box<aya::EbpfError>),
    #[error("program '{program}' is missing from the eBPF object or has the wrong type")]
    MissingProgram { program: &'static str },
    #[error("map '{map}' is missing from the eBPF object or has the wrong type")]
    MissingMap { map: &'static str },
    #[error("the kernel rejected program '{program}'")]
    Load {
        program: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("cannot attach '{program}' to '{dev}' in network namespace '{netns}'")]
    Attach {
        program: &'static str,
        dev: String,
        netns: String,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("cannot detach '{program}' from '{dev}' in network namespace '{netns}'")]
    Detach {
        program: &'static str,
        dev: String,
        netns: String,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("cannot test-run '{program}'")]
    TestRun {
        program: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("cannot list the tcx programs of '{dev}' in network namespace '{netns}'")]
    Query {
        dev: String,
        netns: String,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("map '{map}'")]
    Map {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("cannot {op} the XDP redirect map")]
    RedirectMap {
        op: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the producer position of the event ring buffer {path}")]
    EventRing {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "{ip} is already in the fast-path maps for {device}, a device of another owner of these \
         maps (a node's pod, or a CNI network's): two pods cannot share an address"
    )]
    AddressHeld {
        ip: std::net::IpAddr,
        device: String,
    },
    #[error("cannot lock {path}")]
    Lock {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("bpffs pin {path}")]
    Pin {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("bpffs at {path}")]
    Bpffs {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot turn on the kernel's BPF run-time statistics")]
    Stats(#[source] Box<aya::sys::SyscallError>),
    #[error("cannot read the kernel's information about program '{program}'")]
    ProgramInfo {
        program: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("program id {id} is not among the loaded programs")]
    ProgramGone { id: u32 },
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
}

/// The node's nftables guard (see `guard`).
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error(
        "nft is not installed (Debian/Ubuntu package nftables): fastpath needs it for the node's \
         kernel-path guard"
    )]
    NftMissing,
    #[error("cannot run nft in network namespace '{netns}'")]
    Run {
        netns: String,
        #[source]
        source: io::Error,
    },
    #[error("nft {args} failed in network namespace '{netns}': {stderr}")]
    Refused {
        args: String,
        netns: String,
        stderr: String,
    },
    #[error("nft printed a listing fastpath cannot read: {0}")]
    Listing(String),
    #[error(transparent)]
    Netns(#[from] NetnsError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bpffs_missing() -> DatapathError {
        DatapathError::Bpffs {
            path: "/x".into(),
            source: io::Error::from(io::ErrorKind::NotFound),
        }
    }

    #[test]
    fn each_cause_is_printed_once() {
        let io_text = io::Error::from(io::ErrorKind::NotFound).to_string();
        let e = anyhow::Error::new(bpffs_missing()).context("pinning the programs");
        let text = format!("{e:#}");
        assert_eq!(text.matches(&io_text).count(), 1, "{text}");
        assert_eq!(
            text,
            format!("pinning the programs: bpffs at /x: {io_text}")
        );
    }

    #[test]
    fn chain_prints_what_anyhow_prints() {
        let e = bpffs_missing();
        let typed = chain(&e);
        assert_eq!(typed, format!("{:#}", anyhow::Error::new(bpffs_missing())));
        // Wrapped in an io::Error (as `Netns::run`'s callers do), the chain is the same.
        assert_eq!(chain(&io::Error::other(e)), typed);
    }
}
