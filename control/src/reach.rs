//! `fastpath check`: one ICMP echo from every pod to every other, from inside the pods'
//! namespaces, so a user sees at a glance that the cluster forwards (and the counters move).

use std::{
    io,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use serde::Serialize;

use crate::{cluster::Cluster, netns::Netns};

#[derive(Debug, Serialize)]
pub struct Probe {
    pub from: String,
    pub to: String,
    pub to_address: Ipv4Addr,
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

/// Sends one echo request from `netns` to `dst` and waits up to `timeout` for its reply.
pub fn echo(
    netns: &Netns,
    dst: Ipv4Addr,
    id: u16,
    timeout: Duration,
) -> io::Result<Option<Duration>> {
    // SAFETY: socket() has no preconditions; the result is checked.
    let fd = netns
        .run(|| unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) })
        .map_err(io::Error::other)?;
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let socket = IcmpSocket(fd);
    let mut request = [0u8; 24];
    request[0] = 8; // echo request
    request[4..6].copy_from_slice(&id.to_be_bytes());
    request[6..8].copy_from_slice(&1u16.to_be_bytes());
    request[8..].copy_from_slice(b"fastpath check!!");
    let sum = checksum(&request);
    request[2..4].copy_from_slice(&sum.to_be_bytes());
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(dst.octets()),
        },
        sin_zero: [0; 8],
    };
    let started = Instant::now();
    // SAFETY: buffer and address are valid for the call.
    let sent = unsafe {
        libc::sendto(
            socket.0,
            request.as_ptr().cast(),
            request.len(),
            0,
            (&raw const addr).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
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
        // SAFETY: tv is a valid timeval for SO_RCVTIMEO; buf is valid for recv.
        let n = unsafe {
            libc::setsockopt(
                socket.0,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
            libc::recv(socket.0, buf.as_mut_ptr().cast(), buf.len(), 0)
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
        // A raw socket hands over the IP header too.
        let n = n as usize;
        let ihl = usize::from(buf[0] & 0x0f) * 4;
        let from = Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]);
        if n >= ihl + 8 && from == dst && buf[ihl] == 0 && buf[ihl + 4..ihl + 6] == id.to_be_bytes()
        {
            return Ok(Some(started.elapsed()));
        }
    }
}

/// Probes every ordered pair of pods once.
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
        for (to, _) in &pods {
            if from.name == to.name {
                continue;
            }
            id = id.wrapping_add(1);
            let (rtt_us, error) = match echo(from_ns, to.address, id, timeout) {
                Ok(rtt) => (rtt.map(|d| d.as_micros() as u64), None),
                Err(e) => (None, Some(crate::error::chain(&e))),
            };
            probes.push(Probe {
                from: from.name.clone(),
                to: to.name.clone(),
                to_address: to.address,
                rtt_us,
                error,
            });
        }
    }
    probes
}
