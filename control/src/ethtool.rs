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
//! The same goes for VLAN tags: a veth takes a pod's tag as metadata beside the frame, which XDP
//! does not see, so in xdp mode the pod's stack writes tags into its frames (where `xdp_pod` finds
//! and drops them).

use std::{io, os::fd::AsRawFd as _};

use crate::netns::Netns;

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_STXCSUM: u32 = 0x17;
const ETHTOOL_GGRO: u32 = 0x2b;
const ETHTOOL_SGRO: u32 = 0x2c;
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETHTOOL_GFEATURES: u32 = 0x3a;
const ETHTOOL_SFEATURES: u32 = 0x3b;
/// The string set naming the device features (`ethtool -k`).
const ETH_SS_FEATURES: u32 = 4;
const ETH_GSTRING_LEN: usize = 32;

/// The features that put VLAN tags beside a frame rather than into it (802.1Q and 802.1ad).
const VLAN_TAG_INSERTION: [&str; 2] = ["tx-vlan-hw-insert", "tx-vlan-stag-hw-insert"];

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

#[repr(C)]
struct Ifreq {
    name: [u8; libc::IFNAMSIZ],
    data: *mut u8,
    _pad: [u8; 16],
}

/// SIOCETHTOOL on `dev` with the command in the first four bytes of `buf`, which the kernel reads
/// and writes as that command's structure.
fn ioctl(socket: &std::net::UdpSocket, dev: &str, buf: &mut [u8]) -> io::Result<()> {
    let mut req = Ifreq {
        name: [0; libc::IFNAMSIZ],
        data: buf.as_mut_ptr(),
        _pad: [0; 16],
    };
    if dev.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("device name '{dev}' too long"),
        ));
    }
    req.name[..dev.len()].copy_from_slice(dev.as_bytes());
    // SAFETY: req and buf outlive the call; the kernel reads and writes only the command's
    // structure, which the callers size `buf` for.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), SIOCETHTOOL, &mut req) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn ethtool(socket: &std::net::UdpSocket, dev: &str, cmd: u32, data: u32) -> io::Result<u32> {
    let mut value = EthtoolValue { cmd, data };
    // SAFETY: EthtoolValue is two plain u32s; the slice covers exactly it while `value` lives.
    let buf = unsafe {
        std::slice::from_raw_parts_mut(
            (&raw mut value).cast::<u8>(),
            std::mem::size_of::<EthtoolValue>(),
        )
    };
    ioctl(socket, dev, buf)?;
    Ok(value.data)
}

fn word(buf: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(buf[at..at + 4].try_into().expect("four bytes"))
}

/// The device's feature names, in the kernel's order (a feature's bit is its position).
fn feature_names(socket: &std::net::UdpSocket, dev: &str) -> io::Result<Vec<String>> {
    // struct ethtool_sset_info: cmd, reserved, sset_mask (u64), then one u32 per set asked for.
    let mut info = [0u8; 24];
    info[..4].copy_from_slice(&ETHTOOL_GSSET_INFO.to_ne_bytes());
    info[8..16].copy_from_slice(&(1u64 << ETH_SS_FEATURES).to_ne_bytes());
    ioctl(socket, dev, &mut info)?;
    let count = word(&info, 16) as usize;
    // struct ethtool_gstrings: cmd, string_set, len, then len names of 32 bytes.
    let mut strings = vec![0u8; 12 + count * ETH_GSTRING_LEN];
    strings[..4].copy_from_slice(&ETHTOOL_GSTRINGS.to_ne_bytes());
    strings[4..8].copy_from_slice(&ETH_SS_FEATURES.to_ne_bytes());
    strings[8..12].copy_from_slice(&(count as u32).to_ne_bytes());
    ioctl(socket, dev, &mut strings)?;
    Ok(strings[12..]
        .chunks(ETH_GSTRING_LEN)
        .map(|name| {
            let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
            String::from_utf8_lossy(&name[..end]).into_owned()
        })
        .collect())
}

/// The feature bits of `names` among the device's features, and the number of 32-bit blocks
/// they come in.
fn feature_bits(
    socket: &std::net::UdpSocket,
    dev: &str,
    names: &[&str],
) -> io::Result<(Vec<usize>, usize)> {
    let all = feature_names(socket, dev)?;
    let bits: Vec<usize> = names
        .iter()
        .map(|name| {
            all.iter().position(|n| n == name).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("{dev} has no feature {name}"),
                )
            })
        })
        .collect::<io::Result<_>>()?;
    Ok((bits, all.len().div_ceil(32)))
}

/// Whether each feature of `bits` is active.
fn active(
    socket: &std::net::UdpSocket,
    dev: &str,
    bits: &[usize],
    blocks: usize,
) -> io::Result<Vec<bool>> {
    // struct ethtool_gfeatures: cmd, size, then per 32 features: available, requested, active,
    // never_changed.
    let mut get = vec![0u8; 8 + blocks * 16];
    get[..4].copy_from_slice(&ETHTOOL_GFEATURES.to_ne_bytes());
    get[4..8].copy_from_slice(&(blocks as u32).to_ne_bytes());
    ioctl(socket, dev, &mut get)?;
    Ok(bits
        .iter()
        .map(|bit| word(&get, 8 + bit / 32 * 16 + 8) & (1 << (bit % 32)) != 0)
        .collect())
}

/// Turns the features `names` on or off; returns whether any changed.
fn set_features(netns: &Netns, dev: &str, names: &[&str], on: bool) -> io::Result<bool> {
    let socket = socket_in(netns)?;
    let (bits, blocks) = feature_bits(&socket, dev, names)?;
    if active(&socket, dev, &bits, blocks)?
        .iter()
        .all(|a| *a == on)
    {
        return Ok(false);
    }
    // struct ethtool_sfeatures: cmd, size, then per 32 features: valid, requested.
    let mut set = vec![0u8; 8 + blocks * 8];
    set[..4].copy_from_slice(&ETHTOOL_SFEATURES.to_ne_bytes());
    set[4..8].copy_from_slice(&(blocks as u32).to_ne_bytes());
    for bit in bits {
        let at = 8 + bit / 32 * 8;
        let mask = 1u32 << (bit % 32);
        let valid = word(&set, at) | mask;
        set[at..at + 4].copy_from_slice(&valid.to_ne_bytes());
        if on {
            let requested = word(&set, at + 4) | mask;
            set[at + 4..at + 8].copy_from_slice(&requested.to_ne_bytes());
        }
    }
    ioctl(&socket, dev, &mut set)?;
    Ok(true)
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

/// Turns VLAN tag insertion (802.1Q and 802.1ad) on or off; returns whether it changed. Off, the
/// device's stack writes a VLAN device's tags into the frames it sends.
pub fn set_vlan_tag_insertion(netns: &Netns, dev: &str, on: bool) -> io::Result<bool> {
    set_features(netns, dev, &VLAN_TAG_INSERTION, on)
}

/// Whether VLAN tag insertion is on, for 802.1Q and for 802.1ad.
pub fn vlan_tag_insertion(netns: &Netns, dev: &str) -> io::Result<[bool; 2]> {
    let socket = socket_in(netns)?;
    let (bits, blocks) = feature_bits(&socket, dev, &VLAN_TAG_INSERTION)?;
    let on = active(&socket, dev, &bits, blocks)?;
    Ok([on[0], on[1]])
}
