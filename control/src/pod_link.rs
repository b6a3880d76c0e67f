//! What every pod interface gets, whoever made it (`fastpath up`, `fastpath-cni` standalone or
//! chained after `bridge`): settings that keep a pod's stack from taking another pod's word for
//! its routes, and a gratuitous ARP when it comes up (its MAC, which survives its re-creation, is
//! `Mac::pod`).
//!
//! The programs do not rely on these: they drop router advertisements, redirects and forged
//! neighbour discovery from pods themselves (`datapath-ebpf/src/nd.rs`). These settings also
//! cover kernel mode, where no program runs.

use std::{
    io,
    time::{Duration, Instant},
};

use crate::{netlink::Netlink, netns::Netns};

/// Per-interface sysctls, `{}` standing for the interface: no router advertisements (a pod takes
/// its routes from fastpath, never from a neighbour: CVE-2020-10749), no redirects, and the
/// link-local address derived from the MAC (EUI-64), which with the pod's configured IPv6
/// address (when it has one) is what the programs let a pod send IPv6 from.
/// `arp_notify` has the kernel announce the pod's address whenever the interface comes up or its
/// MAC is set (see [`announce`]). No duplicate address detection: the link-local address comes
/// from a MAC fastpath made unique, and would stay unusable for a second (see
/// [`crate::link_state::skip_dad`]).
const INTERFACE_SYSCTLS: [(&str, &str); 6] = [
    ("net/ipv6/conf/{}/accept_ra", "0"),
    ("net/ipv6/conf/{}/accept_redirects", "0"),
    ("net/ipv6/conf/{}/addr_gen_mode", "0"),
    ("net/ipv6/conf/{}/accept_dad", "0"),
    ("net/ipv4/conf/{}/accept_redirects", "0"),
    ("net/ipv4/conf/{}/arp_notify", "1"),
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

/// Has the kernel send a gratuitous ARP (an announcement, RFC 5227) for the addresses of the
/// pod's interface `ifname` (in the namespace of `pod`) at its MAC, once the veth carries frames
/// both ways: neighbours that still hold another MAC for an address take this one.
/// `host_veth` (in the namespace of `host`) is the other end, a bridge port or not.
///
/// Setting the MAC it already has is how: with `arp_notify` on (see [`harden`]) the kernel
/// announces every address of an interface whose MAC is set, at once. A packet socket would do
/// too, but closing one waits for an RCU grace period, about ten milliseconds of every CNI ADD.
pub async fn announce(
    host: &Netlink,
    host_veth: &str,
    pod: &Netlink,
    ifname: &str,
) -> io::Result<()> {
    let start = Instant::now();
    let mac = loop {
        let host_takes = host
            .link_view(host_veth)
            .await
            .map_err(io::Error::other)?
            .is_some_and(|l| l.transmits && l.bridge_forwarding != Some(false));
        let pod_link = pod.link_view(ifname).await.map_err(io::Error::other)?;
        let pod_sends = pod_link.as_ref().is_some_and(|l| l.transmits);
        if host_takes && pod_sends {
            break pod_link.and_then(|l| l.mac);
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
    };
    let mac = mac.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{ifname} in {} has no MAC", pod.netns().label()),
        )
    })?;
    pod.set_mac(ifname, mac).await.map_err(io::Error::other)
}
