//! Traffic that proves reachability: ping (the real binary, in the pod's namespace) and a TCP
//! transfer checked byte for byte.

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream},
    process::Command,
    time::Duration,
};

use control::netns::Netns;

/// Runs `ping` in `from` towards `to`; returns whether every echo came back.
pub fn ping(from: &Netns, to: Ipv4Addr, count: u32, extra: &[&str]) -> bool {
    assert!(
        control::traffic::is_test_address(to.into()),
        "test traffic only goes to 198.18.0.0/15"
    );
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            from.name().expect("named netns"),
            "ping",
            "-q",
            "-n",
        ])
        .args(["-c", &count.to_string(), "-i", "0.2", "-W", "2"])
        .args(extra)
        .arg(to.to_string())
        .output()
        .expect("ping runs (apt package iputils-ping)");
    out.status.success()
}

/// Deterministic bytes that differ at every offset, so a reordered or dropped segment shows.
pub fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Sends `len` bytes over TCP from `from` to `to` in `to_ns` and returns what arrived.
pub fn tcp_transfer(from: &Netns, to_ns: &Netns, to: Ipv4Addr, len: usize) -> Vec<u8> {
    assert!(control::traffic::is_test_address(to.into()));
    let listener = to_ns
        .run(|| TcpListener::bind(SocketAddrV4::new(to, 0)))
        .unwrap()
        .expect("listen in the receiving pod");
    let addr = listener.local_addr().unwrap();
    let receiver = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        conn.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut got = Vec::new();
        conn.read_to_end(&mut got).expect("read");
        got
    });
    let data = pattern(len);
    let mut conn = from
        .run(|| TcpStream::connect_timeout(&addr, Duration::from_secs(5)))
        .unwrap()
        .unwrap_or_else(|e| panic!("connect from {} to {addr}: {e}", from.label()));
    conn.set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    conn.write_all(&data).expect("send");
    drop(conn);
    receiver.join().expect("receiver thread")
}

/// Sends one raw Ethernet frame out of `dev` in `netns` (an AF_PACKET socket), bypassing the
/// pod's IP stack: the way a misbehaving pod forges a source.
pub fn send_raw_frame(netns: &Netns, dev: &str, frame: &[u8]) {
    netns
        .run(|| {
            // SAFETY: plain socket calls on a descriptor this function owns and closes.
            unsafe {
                let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
                assert!(
                    fd >= 0,
                    "AF_PACKET socket: {}",
                    std::io::Error::last_os_error()
                );
                let name = std::ffi::CString::new(dev).unwrap();
                let mut addr: libc::sockaddr_ll = std::mem::zeroed();
                addr.sll_family = libc::AF_PACKET as u16;
                addr.sll_ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
                assert!(addr.sll_ifindex > 0, "no {dev}");
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
                let err = std::io::Error::last_os_error();
                libc::close(fd);
                assert_eq!(sent, frame.len() as isize, "sendto: {err}");
            }
        })
        .unwrap();
}
