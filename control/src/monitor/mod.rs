//! `fastpath monitor`'s engine: asks the programs of one or more nodes (or CNI networks) for
//! events, reads them from each ring buffer, and prints them as lines, JSON objects or a pcap file.
//!
//! - `source`: what is read (pin directory, namespace, pods), one reader per source (`Claim`),
//!   and device names;
//! - `lease`: the request the programs read, renewed while the monitor lives;
//! - `render`: an event as a line and as JSON;
//! - `pcap`: the captured bytes as a pcap file.
//!
//! Printing runs on a thread of its own, behind a bounded channel: a reader of the output that
//! stops makes the monitor stop taking events, the ring buffer fills, and the programs count what
//! they could not write (shown each second it moves and at exit), while the datapath goes on.

mod lease;
mod pcap;
mod render;
mod source;

use std::{
    io::Write as _,
    net::IpAddr,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use aya::maps::{MapData, RingBuf};
use datapath_common::{
    events::{MONITOR_DROPS, MONITOR_TRACE, MonitorConfig, SNAP_MAX},
    reasons::{Reason, program, program_name},
};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
    sync::{Notify, mpsc},
    task::JoinSet,
};

use render::Shown;
pub use source::{PodName, Source};

use crate::datapath::{self, MonitorMaps};
use lease::Lease;
use pcap::PcapWriter;
use source::{Claim, Names};

/// Which events the programs write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Every dropped packet.
    Drop,
    /// Every decision (one in --sample).
    Trace,
    /// Every drop, and every decision (one in --sample).
    All,
}

impl Kind {
    fn flags(self) -> u32 {
        match self {
            Kind::Drop => MONITOR_DROPS,
            Kind::Trace => MONITOR_TRACE,
            Kind::All => MONITOR_DROPS | MONITOR_TRACE,
        }
    }
}

pub struct Options {
    pub kind: Kind,
    /// Trace one decision in this many.
    pub sample: u32,
    /// Packet bytes in each event, at most SNAP_MAX.
    pub snap_len: u32,
    /// Only events from or to this pod (its veth or its addresses).
    pub pod: Option<String>,
    pub reason: Option<Reason>,
    pub json: bool,
    pub pcap: Option<PathBuf>,
    /// Stop after this many events shown.
    pub count: Option<u64>,
    /// Stop after this long.
    pub seconds: Option<u64>,
}

/// What a monitor saw, for its last line.
#[derive(Debug, Default)]
pub struct Summary {
    pub shown: u64,
    /// Events the programs could not write while this monitor ran (the ring buffer was full).
    pub lost: u64,
}

/// Lines waiting for the printing thread; beyond this the readers wait, and the ring fills.
const OUTPUT_BACKLOG: usize = 1024;

/// What the reader tasks share.
struct Shared {
    options: Options,
    pod_addresses: Vec<IpAddr>,
    clock_offset_ns: u64,
    started_ns: u64,
    shown: AtomicU64,
    enough: Notify,
    /// Set once the programs were told to stop: readers take what is left and return.
    stopping: AtomicBool,
    pcap: Mutex<Option<PcapWriter>>,
}

/// One source being read.
struct Reading {
    source: Source,
    maps: MonitorMaps,
    baseline: [u64; program::SLOTS as usize],
    reported: u64,
    _claim: Claim,
}

/// Monitors `sources` until interrupted or a limit in `options` is reached.
pub async fn run(sources: Vec<Source>, options: Options) -> Result<Summary> {
    if options.snap_len > SNAP_MAX {
        bail!("--snap-len {} is over {SNAP_MAX}", options.snap_len);
    }
    let pod_addresses = match &options.pod {
        Some(pod) => {
            let found: Vec<&PodName> = sources
                .iter()
                .flat_map(|s| &s.pods)
                .filter(|p| &p.name == pod)
                .collect();
            if found.is_empty() {
                let known: Vec<&str> = sources
                    .iter()
                    .flat_map(|s| &s.pods)
                    .map(|p| p.name.as_str())
                    .collect();
                bail!("no pod '{pod}' here; pods: {}", known.join(", "));
            }
            found.iter().flat_map(|p| p.addresses.clone()).collect()
        }
        None => Vec::new(),
    };

    let mut readings = Vec::new();
    let mut rings = Vec::new();
    for source in sources {
        let claim = Claim::take(&source)?;
        let mut maps = MonitorMaps::open(&source.dir)
            .with_context(|| format!("opening the monitor maps of {}", source.label))?;
        // Off while what an earlier reader left in the ring is read away.
        maps.set_config(&MonitorConfig::default())?;
        let mut ring = datapath::open_events(&source.dir)?;
        while ring.next().is_some() {}
        let baseline = maps.lost()?;
        let names = Names::read(&source).await?;
        rings.push((source.clone(), names, ring));
        readings.push(Reading {
            source,
            maps,
            baseline,
            reported: 0,
            _claim: claim,
        });
    }
    let started_ns = datapath::monotonic_ns();
    let pcap = options
        .pcap
        .as_deref()
        .map(PcapWriter::create)
        .transpose()?;
    let request = MonitorConfig {
        flags: options.kind.flags(),
        sample: options.sample.max(1),
        snap_len: options.snap_len,
        reader_pid: std::process::id(),
        lease_until_ns: 0,
    };
    let (seconds, kind) = (options.seconds, options.kind);
    let shared = Arc::new(Shared {
        options,
        pod_addresses,
        clock_offset_ns: datapath::realtime_ns().saturating_sub(started_ns),
        started_ns,
        shown: AtomicU64::new(0),
        enough: Notify::new(),
        stopping: AtomicBool::new(false),
        pcap: Mutex::new(pcap),
    });

    let (lines, printed) = printer();
    let mut readers = JoinSet::new();
    for (source, names, ring) in rings {
        readers.spawn(read_events(
            source,
            names,
            ring,
            shared.clone(),
            lines.clone(),
        ));
    }
    drop(lines);
    // Before the request is written: a signal from here on ends the monitor through its exit
    // path, which clears the request.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let lease = Lease::start(
        readings.iter().map(|r| r.source.dir.clone()).collect(),
        request,
    )?;

    let labels: Vec<&str> = readings.iter().map(|r| r.source.label.as_str()).collect();
    let decisions = match request.sample {
        1 => "every decision".to_string(),
        n => format!("one decision in {n}"),
    };
    let what = match kind {
        Kind::Drop => "every drop".to_string(),
        Kind::Trace => decisions,
        Kind::All => format!("every drop, and {decisions}"),
    };
    // Said once everything is in place: what follows is what the programs write from now.
    eprintln!("monitor: reading {} ({what})", labels.join(", "));

    let deadline = tokio::time::sleep(Duration::from_secs(seconds.unwrap_or(u64::MAX / 4)));
    tokio::pin!(deadline);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut failure = None;
    loop {
        tokio::select! {
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
            _ = &mut deadline, if seconds.is_some() => break,
            _ = shared.enough.notified() => break,
            _ = tick.tick() => {
                report_lost(&mut readings, false);
            }
            Some(done) = readers.join_next() => {
                match done {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => failure = Some(e),
                    Err(e) => failure = Some(anyhow::Error::new(e)),
                }
                if failure.is_some() || readers.is_empty() {
                    break;
                }
            }
        }
    }
    // The programs stop writing before the readers take the last events and the last count is
    // read. Readers whose output no longer moves are left behind.
    drop(lease);
    shared.stopping.store(true, Ordering::Relaxed);
    let finished = tokio::time::timeout(Duration::from_secs(1), async {
        while readers.join_next().await.is_some() {}
    });
    if finished.await.is_err() {
        readers.abort_all();
        // Aborted tasks let go of their senders once joined: then the printer sees the end.
        while readers.join_next().await.is_some() {}
    }
    let lost = report_lost(&mut readings, true);
    let flushed = match shared.pcap.lock().expect("pcap lock").as_mut() {
        Some(pcap) => pcap.flush(),
        None => Ok(()),
    };
    // Lines already taken are printed, unless whoever reads them has stopped.
    let _ = printed.recv_timeout(Duration::from_secs(1));
    // A reader's failure first: a failed pcap write also fails the flush after it.
    if let Some(e) = failure {
        return Err(e);
    }
    flushed?;
    Ok(Summary {
        shown: shared.shown.load(Ordering::Relaxed),
        lost,
    })
}

/// How often a reader looks at its ring buffer besides when woken: the programs wake it only
/// when a quarter of the ring is unread.
const POLL_EVERY: Duration = Duration::from_millis(10);
/// How often the names of devices are read again.
const NAMES_EVERY: Duration = Duration::from_secs(2);

/// Reads `source`'s ring buffer until the monitor stops it or the output is closed.
async fn read_events(
    source: Source,
    mut names: Names,
    ring: RingBuf<MapData>,
    shared: Arc<Shared>,
    lines: mpsc::Sender<String>,
) -> Result<()> {
    // SAFETY: the RingBuf owns the map's descriptor, so it stays open as long as the AsyncFd
    // that owns the RingBuf.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .with_context(|| format!("polling the event ring buffer of {}", source.label))?;
    let mut names_read = tokio::time::Instant::now();
    loop {
        if let Ok(ready) = tokio::time::timeout(POLL_EVERY, ring.readable_mut()).await {
            ready?.clear_ready();
        }
        // Devices come and go with pods: their names are read again now and then.
        if names_read.elapsed() >= NAMES_EVERY
            && let Ok(fresh) = Names::read(&source).await
        {
            names = fresh;
            names_read = tokio::time::Instant::now();
        }
        let last = shared.stopping.load(Ordering::Relaxed);
        if !drain(ring.get_mut(), &source, &names, &shared, &lines).await? || last {
            return Ok(());
        }
    }
}

/// Shows every event in `events`; false when the monitor has shown enough or its output is
/// closed.
async fn drain(
    events: &mut RingBuf<MapData>,
    source: &Source,
    names: &Names,
    shared: &Shared,
    lines: &mpsc::Sender<String>,
) -> Result<bool> {
    let options = &shared.options;
    while let Some(record) = events.next() {
        let event = datapath::decode_event(&record);
        drop(record);
        let Some(event) = event else { continue };
        if event.time_ns < shared.started_ns || options.reason.is_some_and(|r| r.0 != event.reason)
        {
            continue;
        }
        let shown = Shown::new(&event, source, names, shared.clock_offset_ns);
        if let Some(pod) = &options.pod
            && !shown.concerns(pod, &shared.pod_addresses, |name| {
                source.pods.iter().any(|p| p.name == name)
            })
        {
            continue;
        }
        // Counted before it is written anywhere, so that readers of several sources together
        // stop at --count.
        let n = shared.shown.fetch_add(1, Ordering::Relaxed) + 1;
        if options.count.is_some_and(|count| n > count) {
            shared.shown.fetch_sub(1, Ordering::Relaxed);
            shared.enough.notify_one();
            return Ok(false);
        }
        if let Some(pcap) = shared.pcap.lock().expect("pcap lock").as_mut() {
            let data = &event.data[..(event.cap_len as usize).min(event.data.len())];
            pcap.packet(shown.time_unix_ns, event.len, data)?;
        }
        let line = if options.json {
            serde_json::to_string(&shown)?
        } else {
            shown.line()
        };
        if lines.send(line).await.is_err() {
            return Ok(false);
        }
        if options.count == Some(n) {
            shared.enough.notify_one();
            return Ok(false);
        }
    }
    Ok(true)
}

/// The printing thread: takes lines from the returned sender and writes them to stdout; the
/// receiver hears once it has written everything and the senders are gone.
fn printer() -> (mpsc::Sender<String>, std::sync::mpsc::Receiver<()>) {
    let (lines, mut pending) = mpsc::channel::<String>(OUTPUT_BACKLOG);
    let (done, printed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        while let Some(line) = pending.blocking_recv() {
            if writeln!(out, "{line}").is_err() {
                return;
            }
            if pending.is_empty() && out.flush().is_err() {
                return;
            }
        }
        let _ = out.flush();
        let _ = done.send(());
    });
    (lines, printed)
}

/// Prints each source's lost events when their number moved (or, `at_exit`, always); returns
/// the total since the monitor started.
fn report_lost(readings: &mut [Reading], at_exit: bool) -> u64 {
    let mut total = 0;
    for r in readings.iter_mut() {
        let now = match r.maps.lost() {
            Ok(now) => now,
            Err(e) => {
                eprintln!(
                    "monitor: {}: cannot read the lost-event count: {}",
                    r.source.label,
                    crate::error::chain(&e)
                );
                continue;
            }
        };
        let by_program: Vec<(u32, u64)> = (0..program::SLOTS)
            .map(|slot| {
                let i = slot as usize;
                (slot, now[i].saturating_sub(r.baseline[i]))
            })
            .filter(|&(_, n)| n > 0)
            .collect();
        let lost: u64 = by_program.iter().map(|&(_, n)| n).sum();
        total += lost;
        if lost != r.reported || (at_exit && lost > 0) {
            let parts: Vec<String> = by_program
                .iter()
                .map(|&(slot, n)| format!("{} {n}", program_name(slot).unwrap_or("other")))
                .collect();
            eprintln!(
                "monitor: {}: {lost} events lost since the start ({}): the ring buffer was full",
                r.source.label,
                parts.join(", ")
            );
            r.reported = lost;
        }
    }
    total
}
