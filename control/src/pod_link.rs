//! What every pod interface gets, whoever made it (`fastpath up`, `fastpath-cni` standalone or
//! chained after `bridge`): settings that keep a pod's stack from taking another pod's word for
//! its routes, and a gratuitous ARP when it comes up (its MAC, which survives its re-creation, is
//! `config::pod_mac`).
//!
//! The programs do not rely on these: they drop router advertisements, redirects and forged
//! neighbour discovery from pods themselves (`datapath-ebpf/src/nd.rs`). These settings also
//! cover kernel mode, where no program runs.

use std::{
    io,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use crate::{netlink::Netlink, netns::Netns};

/// Per-interface sysctls, `{}` standing for the interface: no router advertisements (a pod takes
/// its routes from fastpath, never from a neighbour: CVE-2020-10749), no redirects, and the
/// link-local address derived from the MAC (EUI-64), which is the one IPv6 source address the
/// programs let a pod use until fastpath gives pods IPv6 addresses.
const INTERFACE_SYSCTLS: [(&str, &str); 4] = [
    ("net/ipv6/conf/{}/accept_ra", "0"),
    ("net/ipv6/conf/{}/accept_redirects", "0"),
    ("net/ipv6/conf/{}/addr_gen_mode", "0"),
    ("net/ipv4/conf/{}/accept_redirects", "0"),
];
/// IPv4 takes a redirect when either `all` or the interface says so (on a host that does not
/// forward), so `all` says no too.
const NAMESPACE_SYSCTLS: [(&str, &str); 1] = [("net/ipv4/conf/all/accept_redirects", "0")];

/// Applies the pod settings to `ifname` in `netns`; returns the sysctls it had to change. IPv6
/// settings are skipped on a kernel without IPv6.
pub fn harden(netns: &Netns, ifname: &str) -> io::Result<Vec<String>> {
    let wanted = INTERFACE_SYSCTLS
        .iter()
        .map(|(path, value)| (path.replace("{}", ifname), *value))
        .chain(NAMESPACE_SYSCTLS.iter().map(|(p, v)| (p.to_string(), *v)));
    let wanted: Vec<(String, &str)> = wanted.collect();
    netns.ensure_sysctls(&wanted)
}

/// How long [`announce`] waits for the pod's veth to carry frames.
const READY_WITHIN: Duration = Duration::from_secs(1);

/// Sends a gratuitous ARP (an announcement, RFC 5227) for `ip` at `mac` out of the pod's
/// interface `ifname` (in the namespace of `pod`) once the veth carries frames both ways:
/// neighbours that still hold another MAC for the address take this one. `host_veth` (in the
/// namespace of `host`) is the other end, a bridge port or not.
pub async fn announce(
    host: &Netlink,
    host_veth: &str,
    pod: &Netlink,
    ifname: &str,
    ip: Ipv4Addr,
    mac: [u8; 6],
) -> io::Result<()> {
    let start = Instant::now();
    loop {
        let host_takes = host
            .link_view(host_veth)
            .await
            .map_err(io::Error::other)?
            .is_some_and(|l| l.transmits && l.bridge_forwarding != Some(false));
        let pod_sends = pod
            .link_view(ifname)
            .await
            .map_err(io::Error::other)?
            .is_some_and(|l| l.transmits);
        if host_takes && pod_sends {
            break;
        }
        if start.elapsed() > READY_WITHIN {
            let (dev, netns) = if pod_sends {
                (host_veth, host.netns())
            } else {
                (ifname, pod.netns())
            };
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{dev} in {} did not come up within {READY_WITHIN:?}",
                    netns.label()
                ),
            ));
        }
        // The kernel's link watch enables the port within milliseconds: look again soon.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    send_frame(pod.netns(), ifname, &gratuitous_arp(ip, mac))
}

fn gratuitous_arp(ip: Ipv4Addr, mac: [u8; 6]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(42);
    frame.extend_from_slice(&[0xff; 6]);
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&0x0806u16.to_be_bytes());
    // Ethernet, IPv4, 6-byte and 4-byte addresses, request.
    frame.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&ip.octets());
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&ip.octets());
    frame
}

/// Sends one Ethernet frame, as it is, out of `dev` in `netns` (an AF_PACKET socket).
pub fn send_frame(netns: &Netns, dev: &str, frame: &[u8]) -> io::Result<()> {
    if frame.len() < 14 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a frame of {} bytes has no Ethernet header", frame.len()),
        ));
    }
    let name = std::ffi::CString::new(dev)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "device name with a NUL"))?;
    netns
        .run(|| {
            // SAFETY: plain socket calls on a descriptor this closure owns and closes.
            unsafe {
                let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                let mut addr: libc::sockaddr_ll = std::mem::zeroed();
                addr.sll_family = libc::AF_PACKET as u16;
                addr.sll_ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
                if addr.sll_ifindex == 0 {
                    libc::close(fd);
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("no device {dev} in netns {}", netns.label()),
                    ));
                }
                addr.sll_halen = 6;
                addr.sll_addr[..6].copy_from_slice(&frame[..6]);
                let sent = libc::sendto(
                    fd,
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&raw const addr).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                );
                let err = io::Error::last_os_error();
                libc::close(fd);
                if sent != frame.len() as isize {
                    return Err(err);
                }
                Ok(())
            }
        })
        .map_err(io::Error::other)?
}
