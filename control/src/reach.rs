//! `fastpath check`: one ICMP echo from every pod to every other, over IPv4 and (between
//! dual-stack pods) over IPv6, from inside the pods' namespaces, so a user sees at a glance that
//! the cluster forwards both families (and the counters move).

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant},
};

use serde::Serialize;

use crate::{cluster::Cluster, netns::Netns};

#[derive(Debug, Serialize)]
pub struct Probe {
    pub from: String,
    pub to: String,
    pub to_address: IpAddr,
    /// Round-trip time in microseconds; None when no reply came in time.
    pub rtt_us: Option<u64>,
    pub error: Option<String>,
}

/// The Internet checksum (RFC 1071) of `bytes`.
pub fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A raw ICMP socket opened inside `netns`, closed on drop.
struct IcmpSocket(libc::c_int);

impl Drop for IcmpSocket {
    fn drop(&mut self) {
        // SAFETY: the descriptor is ours and closed once.
        unsafe { libc::close(self.0) };
    }
}

/// Sends one echo request (ICMP or ICMPv6, by `dst`'s family) from `netns` to `dst` and waits up
/// to `timeout` for its reply.
pub fn echo(
    netns: &Netns,
    dst: IpAddr,
    id: u16,
    timeout: Duration,
) -> io::Result<Option<Duration>> {
    let (family, protocol, request_type, reply_type) = match dst {
        IpAddr::V4(_) => (libc::AF_INET, libc::IPPROTO_ICMP, 8, 0),
        IpAddr::V6(_) => (libc::AF_INET6, libc::IPPROTO_ICMPV6, 128, 129),
    };
    // SAFETY: socket() has no preconditions; the result is checked.
    let fd = netns
        .run(|| unsafe { libc::socket(family, libc::SOCK_RAW, protocol) })
        .map_err(io::Error::other)?;
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let socket = IcmpSocket(fd);
    let mut request = [0u8; 24];
    request[0] = request_type;
    request[4..6].copy_from_slice(&id.to_be_bytes());
    request[6..8].copy_from_slice(&1u16.to_be_bytes());
    request[8..].copy_from_slice(b"fastpath check!!");
    if dst.is_ipv4() {
        // The kernel fills in an ICMPv6 checksum itself (it covers the IPv6 pseudo-header).
        let sum = checksum(&request);
        request[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    let (addr, addr_len) = socket_address(dst);
    let started = Instant::now();
    // SAFETY: buffer and address are valid for the call.
    let sent = unsafe {
        libc::sendto(
            socket.0,
            request.as_ptr().cast(),
            request.len(),
            0,
            (&raw const addr).cast(),
            addr_len,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = [0u8; 1500];
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Ok(None);
        }
        let tv = libc::timeval {
            tv_sec: left.as_secs() as libc::time_t,
            tv_usec: left.subsec_micros().max(1) as libc::suseconds_t,
        };
        // SAFETY: an all-zero sockaddr_storage is valid.
        let mut from: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut from_len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: tv is a valid timeval for SO_RCVTIMEO; buf and from are valid for recvfrom.
        let n = unsafe {
            libc::setsockopt(
                socket.0,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
            libc::recvfrom(
                socket.0,
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&raw mut from).cast(),
                &mut from_len,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) {
                return Ok(None);
            }
            return Err(e);
        }
        // A raw IPv4 socket hands over the IP header too; a raw IPv6 socket does not.
        let n = n as usize;
        let at = match dst {
            IpAddr::V4(_) => usize::from(buf[0] & 0x0f) * 4,
            IpAddr::V6(_) => 0,
        };
        let reply = n >= at + 8
            && buf[at] == reply_type
            && buf[at + 4..at + 6] == id.to_be_bytes()
            && source_of(&from) == Some(dst);
        if reply {
            return Ok(Some(started.elapsed()));
        }
    }
}

/// `dst` as a socket address for sendto, with its length.
fn socket_address(dst: IpAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is valid, and large enough for either family.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match dst {
        IpAddr::V4(v4) => {
            let addr = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage holds any socket address.
            unsafe { (&raw mut storage).cast::<libc::sockaddr_in>().write(addr) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        IpAddr::V6(v6) => {
            let addr = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: as above.
            unsafe { (&raw mut storage).cast::<libc::sockaddr_in6>().write(addr) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// The address recvfrom filled in.
fn source_of(from: &libc::sockaddr_storage) -> Option<IpAddr> {
    match i32::from(from.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says it is a sockaddr_in.
            let v4 =
                unsafe { &*(from as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(IpAddr::V4(Ipv4Addr::from(v4.sin_addr.s_addr.to_ne_bytes())))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says it is a sockaddr_in6.
            let v6 =
                unsafe { &*(from as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

/// Probes every ordered pair of pods once per family both have.
pub fn check_all(cluster: &Cluster, timeout: Duration) -> Vec<Probe> {
    let pods: Vec<_> = cluster
        .config
        .nodes
        .iter()
        .flat_map(|n| n.pods.iter().map(move |p| (p, cluster.pod_netns(n, p))))
        .collect();
    let mut probes = Vec::new();
    let mut id: u16 = (std::process::id() & 0xff) as u16 * 256;
    for (from, from_ns) in &pods {
        let from_families: Vec<bool> = from.addresses().iter().map(IpAddr::is_ipv4).collect();
        for (to, _) in &pods {
            if from.name == to.name {
                continue;
            }
            let shared = to
                .addresses()
                .into_iter()
                .filter(|a| from_families.contains(&a.is_ipv4()));
            for to_address in shared {
                id = id.wrapping_add(1);
                let (rtt_us, error) = match echo(from_ns, to_address, id, timeout) {
                    Ok(rtt) => (rtt.map(|d| d.as_micros() as u64), None),
                    Err(e) => (None, Some(crate::error::chain(&e))),
                };
                probes.push(Probe {
                    from: from.name.clone(),
                    to: to.name.clone(),
                    to_address,
                    rtt_us,
                    error,
                });
            }
        }
    }
    probes
}
