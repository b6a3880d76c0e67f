//! The monitor's request in each source's monitor map, with a lease the programs check: renewed
//! from a thread of its own (whatever the printing or reading is doing) and cleared when the
//! lease is dropped. A monitor that is killed renews nothing, and the programs stop writing
//! events within [`LEASE`].

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context as _, Result};
use datapath_common::events::MonitorConfig;

use crate::datapath::{self, MonitorMaps};

/// How long events are written after the last renewal.
pub const LEASE: Duration = Duration::from_millis(900);
const RENEW_EVERY: Duration = Duration::from_millis(200);

pub struct Lease {
    dirs: Vec<PathBuf>,
    stop: Arc<AtomicBool>,
    renewer: Option<JoinHandle<()>>,
}

impl Lease {
    /// Writes `request` into the monitor map of every directory in `dirs`, and keeps renewing it.
    pub fn start(dirs: Vec<PathBuf>, request: MonitorConfig) -> Result<Self> {
        let mut maps = dirs
            .iter()
            .map(|dir| {
                MonitorMaps::open(dir)
                    .with_context(|| format!("opening the monitor map in {}", dir.display()))
            })
            .collect::<Result<Vec<_>>>()?;
        // Made before the first write: whatever fails from here, dropping it clears them all.
        let mut lease = Self {
            dirs,
            stop: Arc::new(AtomicBool::new(false)),
            renewer: None,
        };
        renew(&mut maps, request)?;
        let stopped = lease.stop.clone();
        lease.renewer = Some(std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                std::thread::sleep(RENEW_EVERY);
                if let Err(e) = renew(&mut maps, request) {
                    eprintln!("monitor: cannot renew the request: {e:#}");
                }
            }
        }));
        Ok(lease)
    }
}

/// Writes `request` with a fresh lease into every map; one that fails does not keep the others
/// from theirs.
fn renew(maps: &mut [MonitorMaps], request: MonitorConfig) -> Result<()> {
    let lease_until_ns = datapath::monotonic_ns() + LEASE.as_nanos() as u64;
    let mut first_error = None;
    for m in maps {
        let written = m.set_config(&MonitorConfig {
            lease_until_ns,
            ..request
        });
        if let Err(e) = written {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), |e| Err(e.into()))
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(renewer) = self.renewer.take() {
            let _ = renewer.join();
        }
        for dir in &self.dirs {
            let cleared =
                MonitorMaps::open(dir).and_then(|mut m| m.set_config(&MonitorConfig::default()));
            if let Err(e) = cleared {
                eprintln!(
                    "monitor: cannot clear the request in {} (it lapses by itself): {}",
                    dir.display(),
                    crate::error::chain(&e)
                );
            }
        }
    }
}
