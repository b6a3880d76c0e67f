//! Typed errors for the places where callers branch on what went wrong.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("network namespace '{name}' does not exist")]
    NotFound { name: String },
    #[error("network namespace '{name}' already exists")]
    Exists { name: String },
    #[error("network namespace '{name}' belongs to someone else: fastpath does not delete it")]
    Foreign { name: String },
    #[error("cannot {op} network namespace '{name}': {source}")]
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
    #[error("netlink: cannot {op} '{target}' in network namespace '{netns}': {source}")]
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
    #[error("cannot open a netlink socket in network namespace '{netns}': {source}")]
    Socket {
        netns: String,
        #[source]
        source: io::Error,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("device '{dev}' not found in network namespace '{netns}'")]
    DeviceNotFound { dev: String, netns: String },
    #[error("the embedded eBPF object does not load: {0}")]
    Object(#[source] Box<aya::EbpfError>),
    #[error("program '{program}' is missing from the eBPF object or has the wrong type")]
    MissingProgram { program: &'static str },
    #[error("map '{map}' is missing from the eBPF object or has the wrong type")]
    MissingMap { map: &'static str },
    #[error("the kernel rejected program '{program}': {source}")]
    Load {
        program: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("cannot attach '{program}' to '{dev}' in network namespace '{netns}': {source}")]
    Attach {
        program: &'static str,
        dev: String,
        netns: String,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("cannot detach '{program}' from '{dev}' in network namespace '{netns}': {source}")]
    Detach {
        program: &'static str,
        dev: String,
        netns: String,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("cannot test-run '{program}': {source}")]
    TestRun {
        program: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("cannot list the tcx programs of '{dev}' in network namespace '{netns}': {source}")]
    Query {
        dev: String,
        netns: String,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("map '{map}': {source}")]
    Map {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("cannot add ifindex {ifindex} to the XDP redirect map: {source}")]
    DevMap {
        ifindex: u32,
        #[source]
        source: Box<aya::maps::xdp::XdpMapError>,
    },
    #[error(
        "{ip} is already in the fast-path maps for ifindex {ifindex}, a device of another owner \
         of these maps (a node's pod, or a CNI network's): two pods cannot share an address"
    )]
    AddressHeld {
        ip: std::net::Ipv4Addr,
        ifindex: u32,
    },
    #[error("cannot lock {path}: {source}")]
    Lock {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("pinned link {path}: {source}")]
    Pin {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("bpffs at {path}: {source}")]
    Bpffs {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot turn on the kernel's BPF run-time statistics: {0}")]
    Stats(#[source] Box<aya::sys::SyscallError>),
    #[error("cannot read the kernel's information about program '{program}': {source}")]
    ProgramInfo {
        program: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("program id {id} is not among the loaded programs")]
    ProgramGone { id: u32 },
    #[error(transparent)]
    Netns(#[from] NetnsError),
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
