//! The two offload switches the XDP fast path depends on, through the SIOCETHTOOL ioctl.
//!
//! XDP_REDIRECT into a veth delivers only when the receiving end runs NAPI; on a veth that means
//! GRO on (or an XDP program) on the pod's end. And a frame turned into an XDP frame loses
//! CHECKSUM_PARTIAL: a pod that leaves its TCP/UDP checksums to offload would deliver them
//! unfinished. So in xdp mode the pod's end gets GRO on and TX checksum offload off (its stack
//! computes checksums itself); the other modes restore the veth defaults.

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

/// The offload settings fastpath manages on a pod's end of its veth.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Offloads {
    pub tx_checksum: bool,
    pub gro: bool,
}

impl Offloads {
    /// What xdp mode needs on the pod's end.
    pub const XDP: Self = Self {
        tx_checksum: false,
        gro: true,
    };
    /// A veth's defaults, for the other modes.
    pub const DEFAULT: Self = Self {
        tx_checksum: true,
        gro: false,
    };
}

fn ethtool(socket: &std::net::UdpSocket, dev: &str, cmd: u32, data: u32) -> io::Result<u32> {
    let mut value = EthtoolValue { cmd, data };
    let mut req = Ifreq {
        name: [0; libc::IFNAMSIZ],
        data: &mut value,
        _pad: [0; 16],
    };
    if dev.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("device name '{dev}' too long")));
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

/// The current settings of `dev` in `netns`.
pub fn get(netns: &Netns, dev: &str) -> io::Result<Offloads> {
    let socket = socket_in(netns)?;
    Ok(Offloads {
        tx_checksum: ethtool(&socket, dev, ETHTOOL_GTXCSUM, 0)? != 0,
        gro: ethtool(&socket, dev, ETHTOOL_GGRO, 0)? != 0,
    })
}

/// Sets `dev` in `netns` to `wanted`; returns the settings it had when they differed.
pub fn set(netns: &Netns, dev: &str, wanted: Offloads) -> io::Result<Option<Offloads>> {
    let socket = socket_in(netns)?;
    let before = Offloads {
        tx_checksum: ethtool(&socket, dev, ETHTOOL_GTXCSUM, 0)? != 0,
        gro: ethtool(&socket, dev, ETHTOOL_GGRO, 0)? != 0,
    };
    if before == wanted {
        return Ok(None);
    }
    if before.gro != wanted.gro {
        ethtool(&socket, dev, ETHTOOL_SGRO, u32::from(wanted.gro))?;
    }
    if before.tx_checksum != wanted.tx_checksum {
        ethtool(&socket, dev, ETHTOOL_STXCSUM, u32::from(wanted.tx_checksum))?;
    }
    Ok(Some(before))
}
