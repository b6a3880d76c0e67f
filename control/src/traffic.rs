//! A bounded UDP load between two namespaces, for demos and tests: it only ever targets the
//! benchmarking ranges (198.18.0.0/15, 2001:db8::/32), and stops after a count and a deadline.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::netns::Netns;

/// True for addresses fastpath's own demos, tests and benchmarks may send to.
pub fn is_test_address(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            a == 198 && (b & 0xfe) == 18
        }
        IpAddr::V6(v6) => v6.segments()[0] == 0x2001 && v6.segments()[1] == 0x0db8,
    }
}

/// A UDP receiver bound inside a namespace that counts what arrives on a thread of its own, so
/// a burst is drained while it is being sent (a socket buffer holds only a few hundred datagrams).
pub struct UdpSink {
    addr: SocketAddrV4,
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl UdpSink {
    pub fn bind(netns: &Netns, addr: SocketAddrV4) -> anyhow::Result<Self> {
        let socket = netns
            .run(|| UdpSocket::bind(addr))?
            .with_context(|| format!("binding a UDP receiver to {addr} in {}", netns.label()))?;
        let addr = match socket.local_addr()? {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => unreachable!("bound to an IPv4 address"),
        };
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let received = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (received, stop) = (received.clone(), stop.clone());
            move || {
                let mut buf = [0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    if socket.recv(&mut buf).is_ok() {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        Ok(Self {
            addr,
            received,
            stop,
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddrV4 {
        self.addr
    }

    /// Datagrams received so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Waits until at least `expected` datagrams have arrived or `within` has passed; returns the
    /// count then.
    pub fn wait_for(&self, expected: u64, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        while self.received() < expected && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.received()
    }
}

impl Drop for UdpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Sends `count` datagrams of `payload_len` bytes from `src` in `netns` to `dst`, giving up after
/// `within`, at an even pace across that time. Returns how many were sent.
pub fn send_udp(
    netns: &Netns,
    src: Ipv4Addr,
    dst: SocketAddrV4,
    count: u64,
    payload_len: usize,
    within: Duration,
) -> anyhow::Result<u64> {
    if !is_test_address(IpAddr::V4(*dst.ip())) {
        bail!(
            "refusing to send test traffic to {dst}: only 198.18.0.0/15 and 2001:db8::/32 are allowed"
        );
    }
    let socket = netns
        .run(|| UdpSocket::bind(SocketAddrV4::new(src, 0)))?
        .with_context(|| format!("binding a UDP sender to {src} in {}", netns.label()))?;
    let payload = vec![0x5a; payload_len];
    let start = Instant::now();
    let deadline = start + within;
    // Spread over 3/4 of the time allowed: a burst overflows the veth's queue and the receiver.
    let spacing = within.mul_f64(0.75).div_f64(count.max(1) as f64);
    let mut sent = 0;
    while sent < count && Instant::now() < deadline {
        if let Some(ahead) =
            (start + spacing.mul_f64(sent as f64)).checked_duration_since(Instant::now())
        {
            std::thread::sleep(ahead);
        }
        match socket.send_to(&payload, dst) {
            Ok(_) => sent += 1,
            // The socket buffer is full or the neighbour is still being resolved: try again.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::EAGAIN)) => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("sending UDP to {dst} from {}", netns.label()));
            }
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_benchmarking_ranges_are_test_addresses() {
        for ok in [
            "198.18.0.1",
            "198.19.255.254",
            "2001:db8::1",
            "2001:db8:ffff::1",
        ] {
            assert!(is_test_address(ok.parse().unwrap()), "{ok}");
        }
        for bad in [
            "198.20.0.1",
            "198.17.255.255",
            "10.0.0.1",
            "127.0.0.1",
            "2001:db9::1",
            "::1",
        ] {
            assert!(!is_test_address(bad.parse().unwrap()), "{bad}");
        }
    }

    #[test]
    fn sending_outside_the_test_ranges_is_refused() {
        let err = send_udp(
            &Netns::host(),
            Ipv4Addr::UNSPECIFIED,
            "10.1.2.3:9".parse().unwrap(),
            1,
            10,
            Duration::from_millis(10),
        )
        .unwrap_err();
        assert!(err.to_string().contains("10.1.2.3:9"), "{err}");
    }
}
