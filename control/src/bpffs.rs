//! bpffs, where pinned maps and links live. Not mounted at boot on every machine.

use std::{io, path::Path};

use nix::mount::{MsFlags, mount};

use crate::error::DatapathError;

pub const BPFFS: &str = "/sys/fs/bpf";

/// BPF_FS_MAGIC from linux/magic.h.
const BPF_FS_MAGIC: i64 = 0xcafe4a11;

fn is_bpffs(path: &Path) -> io::Result<bool> {
    let stat = nix::sys::statfs::statfs(path).map_err(io::Error::from)?;
    Ok(stat.filesystem_type().0 as i64 == BPF_FS_MAGIC)
}

/// Mounts bpffs at /sys/fs/bpf when something else (or nothing) is there.
pub fn ensure_mounted() -> Result<(), DatapathError> {
    let path = Path::new(BPFFS);
    let err = |source: io::Error| DatapathError::Bpffs {
        path: BPFFS.to_string(),
        source,
    };
    if is_bpffs(path).map_err(err)? {
        return Ok(());
    }
    log::info!("mounting bpffs at {BPFFS}");
    mount(
        Some("bpf"),
        path,
        Some("bpf"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=0700"),
    )
    .map_err(|e| err(e.into()))
}
