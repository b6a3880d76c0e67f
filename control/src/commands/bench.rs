//! `fastpath bench`: hands over to `fastpath-bench`, a binary of its own, so that this one
//! carries none of the benchmark's code.

use std::os::unix::process::CommandExt as _;

use anyhow::{Context as _, Result, bail};

/// Replaces this process with `fastpath-bench` (beside this binary) run with `args`. Returns only
/// on error.
pub fn run(args: &[String]) -> Result<()> {
    let bench = std::env::current_exe()
        .context("finding this binary")?
        .with_file_name("fastpath-bench");
    let err = std::process::Command::new(&bench).args(args).exec();
    bail!(
        "running {}: {err} (it is built beside fastpath: `cargo xtask build`)",
        bench.display()
    )
}
