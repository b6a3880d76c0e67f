//! `fastpath bench` and `fastpath agent`: each hands over to a binary of its own beside this one
//! (`fastpath-bench`, `fastpath-agent`), so that this one carries none of the benchmark's code
//! and none of the etcd client.

use std::{os::unix::process::CommandExt as _, path::PathBuf};

use anyhow::{Context as _, Result, bail};

/// Where `binary` is: beside the binary running now (the workspace's binaries are built and
/// installed together).
pub fn path(binary: &str) -> Result<PathBuf> {
    Ok(std::env::current_exe()
        .context("finding this binary")?
        .with_file_name(binary))
}

/// Replaces this process with `binary` (beside this one) run with `args`. Returns only on error.
pub fn run(binary: &str, args: &[String]) -> Result<()> {
    let path = path(binary)?;
    let err = std::process::Command::new(&path).args(args).exec();
    bail!(
        "running {}: {err} (it is built beside fastpath: `cargo xtask build`)",
        path.display()
    )
}
