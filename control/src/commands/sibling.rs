//! `fastpath bench` and `fastpath agent`: each hands over to a binary of its own beside this one
//! (`fastpath-bench`, `fastpath-agent`), so that this one carries none of the benchmark's code
//! and none of the etcd client.

use std::os::unix::process::CommandExt as _;

use anyhow::{Context as _, Result, bail};

/// Replaces this process with `binary` (beside this one) run with `args`. Returns only on error.
pub fn run(binary: &str, args: &[String]) -> Result<()> {
    let path = std::env::current_exe()
        .context("finding this binary")?
        .with_file_name(binary);
    let err = std::process::Command::new(&path).args(args).exec();
    bail!(
        "running {}: {err} (it is built beside fastpath: `cargo xtask build`)",
        path.display()
    )
}
