//! The workloads: UDP packet rate (counted where packets enter the receiving pod, and delivered
//! to a socket), TCP bulk throughput over 1 and 4 streams, and TCP request/response latency. Each
//! runs for a fixed time between two addresses in the benchmarking ranges (IPv4 or IPv6); the
//! sender is pinned to one CPU and the receiver to the other, as far as the machine has two.

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd as _,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use datapath_common::bench::SINK_PORT;

use super::{sink::BenchSink, system};
use control::{netns::Netns, traffic::is_test_address};

const SENDER_CPU: usize = 0;
const RECEIVER_CPU: usize = 1;
/// UDP payload that makes a 60-byte Ethernet frame over IPv4 (14 + 20 + 8 + 18), Ethernet's
/// smallest; over IPv6 the same datagram makes an 80-byte frame, so both families carry the same
/// application load.
const SMALL_PAYLOAD: usize = 18;
/// Datagrams per sendmmsg/recvmmsg call.
const BATCH: usize = 64;
const TCP_CHUNK: usize = 128 * 1024;
/// Bytes per request and per response.
const RR_MESSAGE: usize = 64;

/// Where a workload runs: from one namespace and address to another, and the receiving
/// interface (where `bench_sink` counts).
#[derive(Clone, Debug)]
pub struct Path {
    pub from: Netns,
    pub from_addr: IpAddr,
    pub to: Netns,
    pub to_addr: IpAddr,
    pub to_dev: String,
}

/// A rate and the CPU time the whole machine spent per unit of it.
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    pub value: f64,
    /// Nanoseconds of busy CPU per packet (UDP) or seconds per GB (TCP).
    pub cpu: f64,
}

pub struct Latency {
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub per_second: f64,
}

fn check(path: &Path) -> Result<()> {
    if !is_test_address(path.to_addr) {
        bail!(
            "benchmark traffic only goes to 198.18.0.0/15 and 2001:db8::/32, not {}",
            path.to_addr
        );
    }
    Ok(())
}

/// Sends small UDP datagrams as fast as one pinned thread can for `duration`; returns how many.
fn blast(path: &Path, duration: Duration, stop_early: &AtomicBool) -> Result<u64> {
    let socket = path
        .from
        .run(|| UdpSocket::bind(SocketAddr::new(path.from_addr, 0)))?
        .with_context(|| format!("UDP sender in {}", path.from.label()))?;
    socket.connect(SocketAddr::new(path.to_addr, SINK_PORT))?;
    let fd = socket.as_raw_fd();
    let payload = [0x5au8; SMALL_PAYLOAD];
    let mut iov: Vec<libc::iovec> = (0..BATCH)
        .map(|_| libc::iovec {
            iov_base: payload.as_ptr() as *mut _,
            iov_len: payload.len(),
        })
        .collect();
    // SAFETY: mmsghdr is plain data; the pointers set below stay valid while it is used.
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
        m.msg_hdr.msg_iov = v;
        m.msg_hdr.msg_iovlen = 1;
    }
    system::pin_to(SENDER_CPU);
    let deadline = Instant::now() + duration;
    let mut sent = 0u64;
    while Instant::now() < deadline && !stop_early.load(Ordering::Relaxed) {
        // SAFETY: msgs holds BATCH valid headers for a connected socket this function owns.
        let n = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), BATCH as u32, 0) };
        if n > 0 {
            sent += n as u64;
        }
    }
    Ok(sent)
}

/// UDP packets per second that reach the receiving pod, counted by `bench_sink` on its interface
/// (and dropped there).
pub fn udp_rate(sink: &mut BenchSink, path: &Path, duration: Duration) -> Result<Measured> {
    check(path)?;
    sink.attach(&path.to, &path.to_dev)?;
    let result = (|| {
        let before = sink.count()?;
        let cpu_before = system::busy();
        let start = Instant::now();
        let sender = {
            let path = path.clone();
            std::thread::spawn(move || blast(&path, duration, &AtomicBool::new(false)))
        };
        let sent = sender.join().expect("sender thread")?;
        // Let the last packets in flight arrive.
        std::thread::sleep(Duration::from_millis(20));
        let elapsed = start.elapsed().as_secs_f64();
        let counted = sink.count()? - before;
        let cpu = (system::busy() - cpu_before).as_nanos() as f64;
        if counted == 0 {
            bail!("none of {sent} UDP packets reached {}", path.to_dev);
        }
        Ok(Measured {
            value: counted as f64 / elapsed,
            cpu: cpu / counted as f64,
        })
    })();
    sink.detach()?;
    result
}

/// UDP datagrams per second a socket in the receiving pod reads (recvmmsg on a pinned thread).
pub fn udp_socket(path: &Path, duration: Duration) -> Result<Measured> {
    check(path)?;
    let socket = path
        .to
        .run(|| UdpSocket::bind(SocketAddr::new(path.to_addr, SINK_PORT)))?
        .with_context(|| format!("UDP receiver in {}", path.to.label()))?;
    socket.set_read_timeout(Some(Duration::from_millis(50)))?;
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let receiver = {
        let (received, stop) = (received.clone(), stop.clone());
        std::thread::spawn(move || {
            system::pin_to(RECEIVER_CPU);
            let mut bufs = vec![[0u8; 64]; BATCH];
            let mut iov: Vec<libc::iovec> = bufs
                .iter_mut()
                .map(|b| libc::iovec {
                    iov_base: b.as_mut_ptr().cast(),
                    iov_len: b.len(),
                })
                .collect();
            // SAFETY: as in blast: plain data pointing at buffers that outlive the calls.
            let mut msgs: Vec<libc::mmsghdr> =
                (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
            for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
            }
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: BATCH valid headers; the socket is open for the thread's life.
                let n = unsafe {
                    libc::recvmmsg(
                        socket.as_raw_fd(),
                        msgs.as_mut_ptr(),
                        BATCH as u32,
                        0,
                        std::ptr::null_mut(),
                    )
                };
                if n > 0 {
                    received.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
        })
    };
    let cpu_before = system::busy();
    let start = received.load(Ordering::Relaxed);
    let t0 = Instant::now();
    blast(path, duration, &AtomicBool::new(false))?;
    std::thread::sleep(Duration::from_millis(20));
    let elapsed = t0.elapsed().as_secs_f64();
    let got = received.load(Ordering::Relaxed) - start;
    let cpu = (system::busy() - cpu_before).as_nanos() as f64;
    stop.store(true, Ordering::Relaxed);
    receiver.join().expect("receiver thread");
    if got == 0 {
        bail!("no UDP datagram reached the socket in {}", path.to.label());
    }
    Ok(Measured {
        value: got as f64 / elapsed,
        cpu: cpu / got as f64,
    })
}

/// TCP throughput in Gbit/s over `streams` connections, each written by a thread on the sender's
/// CPU and read by one on the receiver's.
pub fn tcp_bulk(path: &Path, streams: usize, duration: Duration) -> Result<Measured> {
    check(path)?;
    let listener = path
        .to
        .run(|| TcpListener::bind(SocketAddr::new(path.to_addr, 0)))?
        .with_context(|| format!("TCP listener in {}", path.to.label()))?;
    let addr = listener.local_addr()?;
    let received = Arc::new(AtomicU64::new(0));
    let acceptor = {
        let received = received.clone();
        std::thread::spawn(move || -> Result<()> {
            let mut readers = Vec::new();
            for _ in 0..streams {
                let (mut conn, _) = listener.accept()?;
                conn.set_read_timeout(Some(duration + Duration::from_secs(5)))?;
                let received = received.clone();
                readers.push(std::thread::spawn(move || {
                    system::pin_to(RECEIVER_CPU);
                    let mut buf = vec![0u8; 256 * 1024];
                    while let Ok(n) = conn.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        received.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }));
            }
            for r in readers {
                r.join().expect("reader thread");
            }
            Ok(())
        })
    };
    let mut conns = Vec::new();
    for _ in 0..streams {
        let conn = path
            .from
            .run(|| TcpStream::connect_timeout(&addr, Duration::from_secs(5)))?
            .with_context(|| format!("connecting to {addr} from {}", path.from.label()))?;
        conns.push(conn);
    }
    let cpu_before = system::busy();
    let start = Instant::now();
    let deadline = start + duration;
    let writers: Vec<_> = conns
        .into_iter()
        .map(|mut conn| {
            std::thread::spawn(move || {
                system::pin_to(SENDER_CPU);
                let chunk = vec![0xa5u8; TCP_CHUNK];
                while Instant::now() < deadline {
                    if conn.write_all(&chunk).is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer thread");
    }
    acceptor.join().expect("acceptor thread")?;
    let elapsed = start.elapsed().as_secs_f64();
    let bytes = received.load(Ordering::Relaxed) as f64;
    let cpu = (system::busy() - cpu_before).as_secs_f64();
    if bytes == 0.0 {
        bail!("no TCP byte reached {}", path.to.label());
    }
    Ok(Measured {
        value: bytes * 8.0 / elapsed / 1e9,
        cpu: cpu / (bytes / 1e9),
    })
}

/// TCP request/response: one connection, 64-byte request, 64-byte response, back to back.
pub fn request_response(path: &Path, duration: Duration) -> Result<Latency> {
    check(path)?;
    let listener = path
        .to
        .run(|| TcpListener::bind(SocketAddr::new(path.to_addr, 0)))?
        .with_context(|| format!("TCP listener in {}", path.to.label()))?;
    let addr = listener.local_addr()?;
    let server = std::thread::spawn(move || -> Result<()> {
        system::pin_to(RECEIVER_CPU);
        let (mut conn, _) = listener.accept()?;
        conn.set_nodelay(true)?;
        let mut buf = [0u8; RR_MESSAGE];
        while conn.read_exact(&mut buf).is_ok() {
            conn.write_all(&buf)?;
        }
        Ok(())
    });
    let mut conn = path
        .from
        .run(|| TcpStream::connect_timeout(&addr, Duration::from_secs(5)))?
        .with_context(|| format!("connecting to {addr} from {}", path.from.label()))?;
    conn.set_nodelay(true)?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    system::pin_to(SENDER_CPU);
    let mut samples = Vec::with_capacity(200_000);
    let request = [0x42u8; RR_MESSAGE];
    let mut response = [0u8; RR_MESSAGE];
    let start = Instant::now();
    while start.elapsed() < duration {
        let t = Instant::now();
        conn.write_all(&request)?;
        conn.read_exact(&mut response)?;
        samples.push(t.elapsed().as_nanos() as u64);
    }
    let elapsed = start.elapsed().as_secs_f64();
    drop(conn);
    server.join().expect("server thread")?;
    // The main thread goes back to any CPU.
    unpin();
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    Ok(Latency {
        p50_us: at(0.5),
        p99_us: at(0.99),
        p999_us: at(0.999),
        per_second: samples.len() as f64 / elapsed,
    })
}

fn unpin() {
    // SAFETY: as in pin_to, with every CPU set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for cpu in 0..system::cpus() {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}
