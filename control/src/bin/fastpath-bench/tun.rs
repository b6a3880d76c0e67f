//! The userspace tunnel baseline (flannel's old UDP mode): in each node a tun device takes the
//! packets routed to the other node's pod, a process reads them and sends each in a UDP datagram
//! to the peer node, which writes it into its own tun device. Every packet crosses between kernel
//! and user space three times. A benchmark row only: not a datapath fastpath offers.

use std::{
    fs::File,
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    os::fd::{AsRawFd as _, FromRawFd as _},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use ipnet::Ipv4Net;

use control::{netlink::Netlink, netns::Netns};

/// The tun device in each node, and the UDP port the tunnel process listens on (flannel's).
pub const DEVICE: &str = "fpb-tun0";
const PORT: u16 = 8285;
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;

/// One node's end of the tunnel.
pub struct End<'a> {
    pub netns: &'a Netns,
    pub underlay: Ipv4Addr,
    /// The remote pod whose traffic goes through the tunnel (a /32 route to the tun device).
    pub remote_pod: Ipv4Addr,
    pub mtu: u32,
}

/// The running relays; dropping it stops them and removes both tun devices.
pub struct Tunnel {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

fn open_tun(netns: &Netns) -> Result<File> {
    netns
        .run(|| -> Result<File> {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/net/tun")
                .context("opening /dev/net/tun")?;
            // SAFETY: struct ifreq is plain data: the name, then the flags at offset 16.
            let mut ifreq = [0u8; 40];
            ifreq[..DEVICE.len()].copy_from_slice(DEVICE.as_bytes());
            ifreq[16..18].copy_from_slice(&(IFF_TUN | IFF_NO_PI).to_ne_bytes());
            // SAFETY: TUNSETIFF reads and writes the ifreq buffer, which outlives the call.
            if unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, ifreq.as_mut_ptr()) } < 0 {
                bail!("TUNSETIFF {DEVICE}: {}", std::io::Error::last_os_error());
            }
            Ok(file)
        })?
        .with_context(|| format!("tun device in {}", netns.label()))
}

impl Tunnel {
    pub async fn start(a: End<'_>, b: End<'_>) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tunnel = Self {
            stop: stop.clone(),
            threads: Vec::new(),
        };
        for (here, peer) in [(&a, &b), (&b, &a)] {
            let tun = open_tun(here.netns)?;
            let nl = Netlink::open(here.netns)?;
            nl.set_mtu(DEVICE, here.mtu).await?;
            nl.set_up(DEVICE).await?;
            let route = Ipv4Net::new(here.remote_pod, 32).expect("/32");
            nl.replace_route(route.into(), None, DEVICE, false).await?;
            let socket = here
                .netns
                .run(|| UdpSocket::bind(SocketAddrV4::new(here.underlay, PORT)))?
                .with_context(|| format!("tunnel socket in {}", here.netns.label()))?;
            socket.set_read_timeout(Some(Duration::from_millis(100)))?;
            let to_peer = SocketAddrV4::new(peer.underlay, PORT);
            tunnel
                .threads
                .push(relay_out(&tun, &socket, to_peer, &stop)?);
            tunnel.threads.push(relay_in(tun, socket, &stop));
        }
        Ok(tunnel)
    }
}

/// tun → UDP: each packet the kernel routed into the tun device goes to the peer.
fn relay_out(
    tun: &File,
    socket: &UdpSocket,
    peer: SocketAddrV4,
    stop: &Arc<AtomicBool>,
) -> Result<JoinHandle<()>> {
    // SAFETY: dup gives this thread a descriptor of its own for the same tun queue.
    let fd = unsafe { libc::dup(tun.as_raw_fd()) };
    if fd < 0 {
        bail!(
            "dup of the tun descriptor: {}",
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: fd is a fresh descriptor owned by the File from here on.
    let mut tun = unsafe { File::from_raw_fd(fd) };
    let socket = socket.try_clone()?;
    let stop = stop.clone();
    Ok(std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while !stop.load(Ordering::Relaxed) {
            let mut poll = libc::pollfd {
                fd: tun.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one pollfd on the stack.
            if unsafe { libc::poll(&mut poll, 1, 100) } <= 0 {
                continue;
            }
            if let Ok(n) = tun.read(&mut buf) {
                let _ = socket.send_to(&buf[..n], peer);
            }
        }
    }))
}

/// UDP → tun: each datagram from the peer is written into the tun device, where the kernel
/// routes it on to the pod.
fn relay_in(mut tun: File, socket: UdpSocket, stop: &Arc<AtomicBool>) -> JoinHandle<()> {
    let stop = stop.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while !stop.load(Ordering::Relaxed) {
            if let Ok(n) = socket.recv(&mut buf) {
                let _ = tun.write(&buf[..n]);
            }
        }
    })
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // The last descriptor of a tun device closing removes the device and its route.
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
