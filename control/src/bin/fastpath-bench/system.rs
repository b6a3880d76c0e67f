//! What the report header says about the machine, and the CPU time a workload took.

use std::time::Duration;

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Host {
    pub kernel: String,
    pub cpus: usize,
    pub cpu_model: String,
    /// net.bridge.bridge-nf-call-iptables: "1", "0", or "off (br_netfilter not loaded)".
    pub bridge_netfilter: String,
}

impl Host {
    pub fn read() -> Self {
        let kernel = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown".into());
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".into(), |(_, m)| m.trim().to_string());
        let bridge_netfilter =
            match std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables") {
                Ok(v) => v.trim().to_string(),
                Err(_) => "off (br_netfilter not loaded)".into(),
            };
        Self {
            kernel,
            cpus: cpus(),
            cpu_model,
            bridge_netfilter,
        }
    }
}

/// CPUs this process may run on.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Pins the calling thread to `cpu` (modulo the CPUs there are).
pub fn pin_to(cpu: usize) {
    let cpu = cpu % cpus();
    // SAFETY: a cpu_set_t on the stack, handed to the kernel for the calling thread (pid 0).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Busy CPU time of the whole machine so far (all CPUs, everything but idle and iowait).
pub fn busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().next() else {
        return Duration::ZERO;
    };
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos((total - idle) * 1_000_000_000 / hz)
}
