//! `fastpath check`: one ICMP echo from every pod to every other, over IPv4 and (between
//! dual-stack pods) over IPv6, from inside the pods' namespaces, so a user sees at a glance that
//! the cluster forwards both families (and the counters move).

use std::{
    io,
    net::{IpAddr, SocketAddr},
    os::fd::AsRawFd as _,
    time::{Duration, Instant},
};

use nix::{
    errno::Errno,
    sys::{
        socket::{
            AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrStorage, recvfrom,
            sendto, setsockopt, socket, sockopt,
        },
        time::TimeVal,
    },
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

/// Sends one echo request (ICMP or ICMPv6, by `dst`'s family) from `netns` to `dst` and waits up
/// to `timeout` for its reply.
pub fn echo(
    netns: &Netns,
    dst: IpAddr,
    id: u16,
    timeout: Duration,
) -> io::Result<Option<Duration>> {
    let (family, protocol, request_type, reply_type) = match dst {
        IpAddr::V4(_) => (AddressFamily::Inet, SockProtocol::Icmp, 8, 0),
        IpAddr::V6(_) => (AddressFamily::Inet6, SockProtocol::IcmpV6, 128, 129),
    };
    let socket = netns
        .run(|| socket(family, SockType::Raw, SockFlag::empty(), protocol))
        .map_err(io::Error::other)??;
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
    let started = Instant::now();
    let to = SockaddrStorage::from(SocketAddr::new(dst, 0));
    sendto(socket.as_raw_fd(), &request, &to, MsgFlags::empty())?;
    let mut buf = [0u8; 1500];
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Ok(None);
        }
        let wait = TimeVal::new(
            left.as_secs() as libc::time_t,
            left.subsec_micros().max(1) as libc::suseconds_t,
        );
        setsockopt(&socket, sockopt::ReceiveTimeout, &wait)?;
        let (n, from) = match recvfrom::<SockaddrStorage>(socket.as_raw_fd(), &mut buf) {
            Ok(got) => got,
            Err(Errno::EAGAIN) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let from = from.and_then(|from| match dst {
            IpAddr::V4(_) => from.as_sockaddr_in().map(|a| IpAddr::V4(a.ip())),
            IpAddr::V6(_) => from.as_sockaddr_in6().map(|a| IpAddr::V6(a.ip())),
        });
        // A raw IPv4 socket hands over the IP header too; a raw IPv6 socket does not.
        let at = match dst {
            IpAddr::V4(_) => usize::from(buf[0] & 0x0f) * 4,
            IpAddr::V6(_) => 0,
        };
        let reply = n >= at + 8
            && buf[at] == reply_type
            && buf[at + 4..at + 6] == id.to_be_bytes()
            && from == Some(dst);
        if reply {
            return Ok(Some(started.elapsed()));
        }
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
