//! The two offload switches the XDP fast path depends on, through the SIOCETHTOOL ioctl.
//!
//! XDP_REDIRECT into a veth delivers only when the receiving end runs NAPI; on a veth that means
//! GRO on (or an XDP program) at that end. fastpath keeps GRO on at both ends of every pod veth in
//! every mode: switching it (or attaching the first XDP program to a veth without it) starts or
//! stops NAPI, and stopping NAPI frees the frames queued in the veth's ring, which loses packets
//! during a mode switch.
//!
//! A frame turned into an XDP frame also loses CHECKSUM_PARTIAL: a pod that leaves its TCP/UDP
//! checksums to offload would deliver them unfinished. So in xdp mode the pod's end has TX
//! checksum offload off (its stack computes checksums itself); the other modes turn it back on.

use std::{io, os::fd::AsRawFd as _};

use crate::netns::Netns;

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_STXCSUM: u32 = 0x17;
const ETHTOOL_GGRO: u32 = 0x2b;
const ETHTOOL_SGRO: u32 = 0x2c;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

#[repr(C)]
struct Ifreq {
    name: [u8; libc::IFNAMSIZ],
    data: *mut EthtoolValue,
    _pad: [u8; 16],
}

fn ethtool(socket: &std::net::UdpSocket, dev: &str, cmd: u32, data: u32) -> io::Result<u32> {
    let mut value = EthtoolValue { cmd, data };
    let mut req = Ifreq {
        name: [0; libc::IFNAMSIZ],
        data: &mut value,
        _pad: [0; 16],
    };
    if dev.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("device name '{dev}' too long"),
        ));
    }
    req.name[..dev.len()].copy_from_slice(dev.as_bytes());
    // SAFETY: req and value outlive the call; SIOCETHTOOL reads and writes only them.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), SIOCETHTOOL, &mut req) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value.data)
}

fn socket_in(netns: &Netns) -> io::Result<std::net::UdpSocket> {
    netns
        .run(|| std::net::UdpSocket::bind("0.0.0.0:0"))
        .map_err(io::Error::other)?
}

fn set(netns: &Netns, dev: &str, get: u32, set: u32, on: bool) -> io::Result<bool> {
    let socket = socket_in(netns)?;
    if (ethtool(&socket, dev, get, 0)? != 0) == on {
        return Ok(false);
    }
    ethtool(&socket, dev, set, u32::from(on))?;
    Ok(true)
}

/// Turns GRO on or off; returns whether it changed.
pub fn set_gro(netns: &Netns, dev: &str, on: bool) -> io::Result<bool> {
    set(netns, dev, ETHTOOL_GGRO, ETHTOOL_SGRO, on)
}

/// Turns TX checksum offload on or off; returns whether it changed.
pub fn set_tx_checksum(netns: &Netns, dev: &str, on: bool) -> io::Result<bool> {
    set(netns, dev, ETHTOOL_GTXCSUM, ETHTOOL_STXCSUM, on)
}
