//! The monitor's maps of one node or network, opened from their pins: the request the programs
//! read (flags, sampling, snap length, lease), the ring buffer they write events into, and the
//! count of events that did not fit. Nothing here runs aya's kernel feature probes.

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _},
    path::Path,
};

use aya::maps::{Array, MapData, PerCpuArray, RingBuf};
use datapath_common::{
    events::{Event, Lost, MonitorConfig},
    reasons::{self, program},
};

use super::{
    maps::{map_err, open_pinned},
    object::{EVENTS, EVENTS_LOST, MONITOR},
};
use crate::error::DatapathError;

/// The monitor request and lost-event count of one node or network.
pub struct MonitorMaps {
    config: Array<MapData, MonitorConfig>,
    lost: PerCpuArray<MapData, Lost>,
}

impl MonitorMaps {
    pub fn open(dir: &Path) -> Result<Self, DatapathError> {
        Ok(Self {
            config: Array::try_from(open_pinned(dir, MONITOR)?).map_err(map_err(MONITOR))?,
            lost: PerCpuArray::try_from(open_pinned(dir, EVENTS_LOST)?)
                .map_err(map_err(EVENTS_LOST))?,
        })
    }

    pub fn config(&self) -> Result<MonitorConfig, DatapathError> {
        self.config.get(&0, 0).map_err(map_err(MONITOR))
    }

    pub fn set_config(&mut self, config: &MonitorConfig) -> Result<(), DatapathError> {
        self.config.set(0, config, 0).map_err(map_err(MONITOR))
    }

    /// Events each program slot could not write since the maps were made, summed over CPUs.
    pub fn lost(&self) -> Result<[u64; program::SLOTS as usize], DatapathError> {
        let mut total = [0; program::SLOTS as usize];
        for (slot, sum) in total.iter_mut().enumerate() {
            let per_cpu = self
                .lost
                .get(&(slot as u32), 0)
                .map_err(map_err(EVENTS_LOST))?;
            *sum = per_cpu.iter().map(|l| l.events).sum();
        }
        Ok(total)
    }
}

/// Events each program could not write because the ring was full, since the maps pinned under
/// `dir` were made: (program name, count) for every program.
pub fn pinned_events_lost(dir: &Path) -> Result<Vec<(&'static str, u64)>, DatapathError> {
    let lost = MonitorMaps::open(dir)?.lost()?;
    Ok((0..program::SLOTS)
        .filter_map(|slot| Some((reasons::program_name(slot)?, lost[slot as usize])))
        .collect())
}

/// Clears a request whose lease has run out (its monitor was killed), so that the programs stop
/// reading the clock for it; returns whether there was one. A live monitor's request is left.
pub fn clear_lapsed_request(dir: &Path) -> Result<bool, DatapathError> {
    let mut maps = MonitorMaps::open(dir)?;
    let request = maps.config()?;
    if request.flags == 0 || request.lease_until_ns > monotonic_ns() {
        return Ok(false);
    }
    maps.set_config(&MonitorConfig::default())?;
    Ok(true)
}

/// The ring buffer pinned under `dir`, for its one reader.
pub fn open_events(dir: &Path) -> Result<RingBuf<MapData>, DatapathError> {
    RingBuf::try_from(open_pinned(dir, EVENTS)?).map_err(map_err(EVENTS))
}

/// An event as the ring buffer holds it; `None` for a record of another size (an object whose
/// event layout this build does not know).
pub fn decode_event(record: &[u8]) -> Option<Event> {
    (record.len() == size_of::<Event>()).then(|| bytemuck::pod_read_unaligned(record))
}

/// How many bytes the programs have ever written into the ring buffer pinned under `dir` (its
/// producer position): it moves with every event, read or not.
pub fn events_produced(dir: &Path) -> Result<u64, DatapathError> {
    let path = dir.join(EVENTS);
    let map = MapData::from_pin(&path).map_err(map_err(EVENTS))?;
    let fd = map.fd().as_fd();
    let err = |source: io::Error| DatapathError::EventRing {
        path: path.display().to_string(),
        source,
    };
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    // The producer position is the first word of the page after the consumer's; that page is
    // read-only for user space, which is all this needs.
    // SAFETY: a fresh shared read-only mapping of one page of the map's descriptor; unmapped
    // below, and only read through while mapped.
    unsafe {
        let ptr = libc::mmap(
            std::ptr::null_mut(),
            page,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            page as libc::off_t,
        );
        if ptr == libc::MAP_FAILED {
            return Err(err(io::Error::last_os_error()));
        }
        let position = std::ptr::read_volatile(ptr.cast::<u64>());
        libc::munmap(ptr, page);
        Ok(position)
    }
}

/// CLOCK_MONOTONIC now, in nanoseconds: the clock of events' times and of the lease.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// CLOCK_REALTIME now, in nanoseconds since the epoch.
pub fn realtime_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
