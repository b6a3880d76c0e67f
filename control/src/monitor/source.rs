//! What a monitor reads: a node's or a CNI network's pinned maps, claimed by one reader at a time,
//! and the names of the devices its events point at.

use std::{
    collections::HashMap,
    fs::File,
    io::Write as _,
    net::IpAddr,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};
use nix::fcntl::{Flock, FlockArg};

use crate::{netlink::Netlink, netns::Netns};

/// Where monitors hold their per-source locks.
const LOCK_DIR: &str = "/run/fastpath/monitor";

/// A pod the events may name: by its host-side veth, or by its address.
#[derive(Clone, Debug)]
pub struct PodName {
    pub name: String,
    pub veth: String,
    pub addresses: Vec<IpAddr>,
}

/// One node's or network's maps, and what is needed to show their events.
#[derive(Clone, Debug)]
pub struct Source {
    /// How events from here are labelled: the node's name, or `cni:<network>`.
    pub label: String,
    /// The pin directory of the maps.
    pub dir: PathBuf,
    /// Where the devices of the events' ifindexes are.
    pub netns: Netns,
    pub pods: Vec<PodName>,
    /// The overlay's UDP port, when the source encapsulates: its frames are shown with the
    /// packet inside.
    pub vxlan_port: Option<u16>,
}

/// Device names by ifindex, with pods' names in place of their veths'.
#[derive(Debug, Default)]
pub struct Names {
    by_ifindex: HashMap<u32, String>,
}

impl Names {
    /// The devices of `source`'s namespace now.
    pub async fn read(source: &Source) -> Result<Self> {
        let nl = Netlink::open(&source.netns)?;
        let links = nl
            .links()
            .await
            .with_context(|| format!("listing the devices of {}", source.netns.label()))?;
        let by_ifindex = links
            .into_iter()
            .map(|l| {
                let name = source
                    .pods
                    .iter()
                    .find(|p| p.veth == l.name)
                    .map_or(l.name, |p| p.name.clone());
                (l.index, name)
            })
            .collect();
        Ok(Self { by_ifindex })
    }

    /// The pod's or device's name, `if<N>` for a device that is gone, nothing for 0.
    pub fn of(&self, ifindex: u32) -> Option<String> {
        if ifindex == 0 {
            return None;
        }
        Some(
            self.by_ifindex
                .get(&ifindex)
                .cloned()
                .unwrap_or_else(|| format!("if{ifindex}")),
        )
    }
}

/// The right to read a source's ring buffer: an flock on a file of its own, held for the
/// monitor's life and released by the kernel whatever ends the process. The ring buffer has one
/// consumer position, so two readers would take each other's events.
pub struct Claim {
    _lock: Flock<File>,
}

impl Claim {
    pub fn take(source: &Source) -> Result<Self> {
        std::fs::create_dir_all(LOCK_DIR).with_context(|| format!("creating {LOCK_DIR}"))?;
        let path = lock_path(&source.dir);
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((file, nix::errno::Errno::EWOULDBLOCK)) => {
                let holder = std::io::read_to_string(&file).unwrap_or_default();
                bail!(
                    "another monitor (pid {}) is reading {}: a ring buffer has one reader",
                    holder.trim(),
                    source.label
                );
            }
            Err((_, errno)) => {
                return Err(errno).with_context(|| format!("locking {}", path.display()));
            }
        };
        lock.set_len(0)?;
        write!(lock, "{}", std::process::id())?;
        Ok(Self { _lock: lock })
    }
}

fn lock_path(dir: &Path) -> PathBuf {
    let name = dir.to_string_lossy().trim_matches('/').replace('/', "_");
    Path::new(LOCK_DIR).join(format!("{name}.lock"))
}
