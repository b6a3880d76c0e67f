//! The kernel's run-time statistics of loaded programs: how long they ran and how often (the
//! benchmark's per-packet cost rows).

use std::os::fd::OwnedFd;

use crate::error::DatapathError;

/// How long a loaded program has run and how often, as the kernel counts while its run-time
/// statistics are on.
#[derive(Clone, Debug)]
pub struct ProgramRuns {
    pub id: u32,
    pub name: String,
    pub run_time_ns: u64,
    pub run_count: u64,
}

/// Turns the kernel's BPF run-time statistics on for as long as the returned descriptor is open.
/// BPF_ENABLE_STATS rather than the kernel.bpf_stats_enabled sysctl, so that a killed process
/// cannot leave them on (they cost two clock reads per program run, machine-wide).
pub fn enable_run_time_stats() -> Result<OwnedFd, DatapathError> {
    aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .map_err(|source| DatapathError::Stats(Box::new(source)))
}

/// The run-time statistics of the loaded programs with these ids, in the order of `ids`.
pub fn program_runs(ids: &[u32]) -> Result<Vec<ProgramRuns>, DatapathError> {
    // A program that is unloaded while the list is read is an error only if it is one of ours,
    // and then it is missing below.
    let mut found: Vec<ProgramRuns> = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|info| ids.contains(&info.id()))
        .map(|info| ProgramRuns {
            id: info.id(),
            name: info.name_as_str().unwrap_or("?").to_string(),
            run_time_ns: u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX),
            run_count: info.run_count(),
        })
        .collect();
    ids.iter()
        .map(|&id| {
            let at = found
                .iter()
                .position(|r| r.id == id)
                .ok_or(DatapathError::ProgramGone { id })?;
            Ok(found.swap_remove(at))
        })
        .collect()
}
