//! A packet capture on one device in a namespace, for tests that parse what went on the wire.
//! AF_PACKET with a virtio-net header per frame: a GSO packet (one skb that the device or the
//! kernel cuts into segments later) shows the segment size it will be cut to, and a frame whose
//! checksum is left to offload says so.

use std::{
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
};

use control::netns::Netns;

const PACKET_VNET_HDR: libc::c_int = 15;
const VNET_HDR_LEN: usize = 10;
const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
/// Bytes kept of each frame: enough for every header and for a whole MTU-sized frame.
const KEEP: usize = 2048;
/// Frames kept at most, so a long transfer cannot fill memory.
const MAX_FRAMES: usize = 50_000;

/// One captured frame.
#[derive(Clone, Debug)]
pub struct Frame {
    /// Sent by this device (PACKET_OUTGOING), not received.
    pub outgoing: bool,
    /// Length of the whole frame (of the whole GSO packet, for one).
    pub len: usize,
    /// Payload bytes per segment for a GSO packet; 0 for a single frame.
    pub gso_size: u16,
    /// The last checksum is left to offload: `csum_start`/`csum_offset` say where it goes.
    pub needs_csum: bool,
    pub csum_start: u16,
    pub csum_offset: u16,
    /// The first `KEEP` bytes, from the Ethernet header on.
    pub data: Vec<u8>,
}

pub struct Capture {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<Frame>>>,
}

impl Capture {
    /// Starts capturing every frame `dev` in `netns` sends or receives.
    pub fn start(netns: &Netns, dev: &str) -> Self {
        let fd = netns
            .run(|| open(dev))
            .expect("enter the capture's namespace");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || receive(&fd, &flag));
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the capture and returns what it saw.
    pub fn finish(mut self) -> Vec<Frame> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().expect("capture thread")
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn open(dev: &str) -> OwnedFd {
    // SAFETY: plain socket calls; the descriptor is owned by the OwnedFd from here on.
    unsafe {
        let raw = libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW,
            i32::from((libc::ETH_P_ALL as u16).to_be()),
        );
        assert!(
            raw >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        let fd = OwnedFd::from_raw_fd(raw);
        let set = |level, name, value: libc::c_int| {
            let r = libc::setsockopt(
                raw,
                level,
                name,
                (&raw const value).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            );
            assert_eq!(
                r,
                0,
                "setsockopt {name}: {}",
                std::io::Error::last_os_error()
            );
        };
        set(libc::SOL_PACKET, PACKET_VNET_HDR, 1);
        set(libc::SOL_SOCKET, libc::SO_RCVBUF, 16 << 20);
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        let r = libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const timeout).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        );
        assert_eq!(r, 0, "SO_RCVTIMEO");
        let name = std::ffi::CString::new(dev).unwrap();
        let mut addr: libc::sockaddr_ll = std::mem::zeroed();
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        addr.sll_ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
        assert!(addr.sll_ifindex > 0, "no device {dev} to capture on");
        let r = libc::bind(
            raw,
            (&raw const addr).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        assert_eq!(r, 0, "bind to {dev}: {}", std::io::Error::last_os_error());
        fd
    }
}

fn receive(fd: &OwnedFd, stop: &AtomicBool) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut buf = vec![0u8; 70_000];
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: recvfrom into a buffer and an address this function owns.
        let (n, addr) = unsafe {
            let mut addr: libc::sockaddr_ll = std::mem::zeroed();
            let mut alen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            let n = libc::recvfrom(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&raw mut addr).cast(),
                &mut alen,
            );
            (n, addr)
        };
        if n < VNET_HDR_LEN as isize {
            continue; // timeout (checks the stop flag) or a runt
        }
        let n = n as usize;
        let word = |at: usize| u16::from_le_bytes([buf[at], buf[at + 1]]);
        if frames.len() < MAX_FRAMES {
            frames.push(Frame {
                outgoing: addr.sll_pkttype == libc::PACKET_OUTGOING,
                len: n - VNET_HDR_LEN,
                gso_size: word(4),
                needs_csum: buf[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0,
                csum_start: word(6),
                csum_offset: word(8),
                data: buf[VNET_HDR_LEN..n.min(VNET_HDR_LEN + KEEP)].to_vec(),
            });
        }
    }
    frames
}
