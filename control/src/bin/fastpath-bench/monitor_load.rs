//! The monitor rows' reader: a real `fastpath monitor` (the binary beside this one) on the
//! sending node, its output thrown away, so the rows measure what a person running it costs the
//! datapath: the programs' events and the reader's CPU on the same two cores.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use control::datapath::{self, MonitorMaps};
use datapath_common::events::MonitorConfig;

pub struct MonitorProcess {
    child: Child,
}

impl MonitorProcess {
    /// Starts `fastpath --prefix PREFIX monitor --node NODE ARGS` and waits until its request
    /// is in the node's maps (pinned under `dir`).
    pub fn start(prefix: &str, node: &str, dir: &Path, args: &[&str]) -> Result<Self> {
        let fastpath = control::commands::sibling::path("fastpath")?;
        let child = Command::new(&fastpath)
            .args(["--prefix", prefix, "monitor", "--node", node, "--json"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", fastpath.display()))?;
        let mut monitor = Self { child };
        let maps = MonitorMaps::open(dir)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let pid = monitor.child.id();
        // Its own request, in force: not one a killed monitor left behind.
        let reading = |c: MonitorConfig| {
            c.flags != 0 && c.reader_pid == pid && c.lease_until_ns > datapath::monotonic_ns()
        };
        while !reading(maps.config()?) {
            if let Some(status) = monitor.child.try_wait()? {
                bail!("fastpath monitor exited before it read anything: {status}");
            }
            if Instant::now() > deadline {
                bail!("fastpath monitor did not start reading within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(monitor)
    }
}

impl Drop for MonitorProcess {
    /// SIGTERM, so it clears its request on the way out (the lease would end it within a second
    /// anyway).
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}
