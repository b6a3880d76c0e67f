//! Traffic that proves reachability — ping (the real binary, in the pod's namespace), a TCP
//! transfer checked byte for byte, unprivileged UDP — and what an attacker inside a pod can do:
//! raw frames, sysctls, neighbour entries it holds.

use std::{
    io::{self, Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket},
    process::Command,
    time::{Duration, Instant},
};

use control::netns::Netns;

/// Runs `ping` in `from` towards `to` (IPv4 or IPv6); returns whether every echo came back.
pub fn ping(from: &Netns, to: impl Into<IpAddr>, count: u32, extra: &[&str]) -> bool {
    let to = to.into();
    assert!(
        control::traffic::is_test_address(to),
        "test traffic only goes to 198.18.0.0/15 and 2001:db8::/32"
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

/// Sends `len` bytes over TCP from `from` to `to` (IPv4 or IPv6) in `to_ns` and returns what
/// arrived.
pub fn tcp_transfer(from: &Netns, to_ns: &Netns, to: impl Into<IpAddr>, len: usize) -> Vec<u8> {
    let to = to.into();
    assert!(control::traffic::is_test_address(to));
    let listener = to_ns
        .run(|| TcpListener::bind(SocketAddr::new(to, 0)))
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

/// Sends `count` UDP datagrams of `len` bytes from `from` to `to` (IPv4 or IPv6) in `to_ns`, a
/// millisecond apart at most, and returns how many arrived (waiting up to two seconds for the
/// last).
pub fn udp_delivered(
    from: &Netns,
    to_ns: &Netns,
    to: impl Into<IpAddr>,
    count: u32,
    len: usize,
) -> u32 {
    let to = to.into();
    assert!(control::traffic::is_test_address(to));
    let receiver = to_ns
        .run(|| UdpSocket::bind(SocketAddr::new(to, 0)))
        .unwrap()
        .expect("bind in the receiving pod");
    receiver.set_nonblocking(true).unwrap();
    let addr = receiver.local_addr().unwrap();
    let any = if to.is_ipv4() {
        SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0)
    } else {
        SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), 0)
    };
    let sender = from
        .run(|| UdpSocket::bind(any))
        .unwrap()
        .expect("bind in the sending pod");
    let payload = pattern(len);
    let mut buf = vec![0u8; len + 1];
    let mut got = 0;
    let mut drain = |got: &mut u32| {
        while let Ok(n) = receiver.recv(&mut buf) {
            assert_eq!(&buf[..n], &payload[..], "datagram content");
            *got += 1;
        }
    };
    for _ in 0..count {
        sender.send_to(&payload, addr).expect("send");
        drain(&mut got);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while got < count && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        drain(&mut got);
    }
    got
}

/// Sends one raw Ethernet frame out of `dev` in `netns` (an AF_PACKET socket), bypassing the
/// pod's IP stack: the way a misbehaving pod forges a source.
pub fn send_raw_frame(netns: &Netns, dev: &str, frame: &[u8]) {
    send_raw_frames(netns, dev, frame, 1);
}

/// [`send_raw_frame`] `count` times, through one socket.
pub fn send_raw_frames(netns: &Netns, dev: &str, frame: &[u8], count: usize) {
    send_frames(netns, dev, frame, count)
        .unwrap_or_else(|e| panic!("sending a raw frame out of {dev} in {}: {e}", netns.label()));
}

fn send_frames(netns: &Netns, dev: &str, frame: &[u8], count: usize) -> io::Result<()> {
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
                for _ in 0..count {
                    let sent = libc::sendto(
                        fd,
                        frame.as_ptr().cast(),
                        frame.len(),
                        0,
                        (&raw const addr).cast(),
                        std::mem::size_of::<libc::sockaddr_ll>() as u32,
                    );
                    if sent != frame.len() as isize {
                        let err = io::Error::last_os_error();
                        libc::close(fd);
                        return Err(err);
                    }
                }
                libc::close(fd);
                Ok(())
            }
        })
        .map_err(io::Error::other)?
}

/// Sends `payload` in one UDP datagram to `to` from `netns`, through a plain UDP socket of an
/// unprivileged user (uid and gid 65534): bash's /dev/udp, started by nsenter as that user.
pub fn send_udp_unprivileged(netns: &Netns, to: SocketAddrV4, payload: &[u8]) {
    assert!(control::traffic::is_test_address((*to.ip()).into()));
    // Every byte escaped, so printf prints it as it is (a '%' or a backslash included).
    let escaped: String = payload.iter().map(|b| format!("\\x{b:02x}")).collect();
    let out = Command::new("nsenter")
        .arg(format!(
            "--net={}/{}",
            control::netns::NETNS_RUN_DIR,
            netns.name().expect("named netns")
        ))
        .args(["--setuid", "65534", "--setgid", "65534", "--"])
        .args(["bash", "-c", r#"printf "$1" > "/dev/udp/$2/$3""#, "udp"])
        .arg(escaped)
        .arg(to.ip().to_string())
        .arg(to.port().to_string())
        .output()
        .expect("nsenter and bash run");
    assert!(
        out.status.success(),
        "unprivileged UDP to {to}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// How long after now `from`'s 10 ms ping to `to` gets its first reply.
pub fn time_to_first_reply(from: &Netns, to: Ipv4Addr) -> Duration {
    let out = Command::new("ip")
        .args(["netns", "exec", from.name().unwrap(), "ping", "-n"])
        .args(["-i", "0.01", "-c", "300", "-w", "3"])
        .arg(to.to_string())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text
        .lines()
        // Replies only: "From … icmp_seq=N Destination Host Unreachable" is not one.
        .filter(|l| l.contains(" bytes from "))
        .find_map(|l| l.split("icmp_seq=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|seq| seq.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no reply from {to} within 3 s: {text}"));
    // Sequence numbers start at 1 and go out every 10 ms.
    Duration::from_millis((first - 1) * 10)
}

/// A 10 ms ping from `from` to `to`, `count` echoes, running in the background.
pub fn background_ping(from: &Netns, to: Ipv4Addr, count: u32) -> std::process::Child {
    assert!(control::traffic::is_test_address(to.into()));
    Command::new("ip")
        .args(["netns", "exec", from.name().expect("named netns")])
        .args(["ping", "-q", "-n", "-i", "0.01", "-W", "1"])
        .args(["-c", &count.to_string(), &to.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ping runs (apt package iputils-ping)")
}

/// (transmitted, received) of a finished [`background_ping`].
pub fn ping_result(child: std::process::Child) -> (u32, u32) {
    let out = child.wait_with_output().expect("ping finishes");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("ping printed no summary: {text}"));
    let numbers: Vec<u32> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

/// The sysctl at `path` (under /proc/sys) in `netns`, after writing `value` to it when given.
pub fn sysctl(netns: &Netns, path: &str, value: Option<&str>) -> String {
    netns
        .run(|| {
            let file = format!("/proc/sys/{path}");
            if let Some(value) = value {
                std::fs::write(&file, value).unwrap_or_else(|e| panic!("{file}: {e}"));
            }
            std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("{file}: {e}"))
                .trim()
                .to_string()
        })
        .expect("enter the namespace")
}

/// Makes `netns` hold `mac` for `ip` on eth0, as if it had learnt it; returns when a gratuitous
/// ARP may replace it (the kernel ignores one within a second, `locktime`, of the entry's last
/// update).
pub fn hold_neighbour(netns: &Netns, ip: Ipv4Addr, mac: [u8; 6]) {
    let status = Command::new("ip")
        .args(["-n", netns.name().expect("named netns"), "neigh", "replace"])
        .arg(ip.to_string())
        .args(["lladdr", &control::mac::Mac(mac).to_string()])
        .args(["dev", "eth0", "nud", "reachable"])
        .status()
        .expect("ip runs");
    assert!(
        status.success(),
        "ip neigh replace {ip} in {}",
        netns.label()
    );
    std::thread::sleep(Duration::from_millis(1100));
}
