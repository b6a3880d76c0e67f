//! Named network namespaces (the `ip netns` convention: a bind mount under /run/netns) and an RAII
//! guard that moves the current thread into one and back.
//!
//! A network namespace belongs to a thread, not a process, so the guard is `!Send`: it must be
//! dropped on the thread that made it. Sockets (netlink included) stay bound to the namespace they
//! were opened in, so open them inside a guard and use them anywhere.

use std::{
    fs::File,
    io,
    marker::PhantomData,
    os::fd::AsFd,
    path::{Path, PathBuf},
    sync::OnceLock,
};

use nix::{
    mount::{MntFlags, MsFlags, mount, umount2},
    sched::{CloneFlags, setns, unshare},
};

use crate::error::NetnsError;

/// Where `ip netns` keeps its namespaces; using the same place lets users inspect ours with it.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// A named network namespace, one a container runtime made (known by its path), or the
/// namespace this process started in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netns {
    name: Option<String>,
    /// Set for a namespace known only by its file (a runtime's `CNI_NETNS`): it is not ours to
    /// create or delete.
    foreign: Option<PathBuf>,
}

impl Netns {
    /// The namespace the process was started in (where eth0 lives on a real node).
    pub fn host() -> Self {
        Self {
            name: None,
            foreign: None,
        }
    }

    /// The namespace whose file is `path` (e.g. /proc/PID/ns/net or /run/netns/cni-…), made by
    /// someone else: `create` and `delete` refuse it.
    pub fn at_path(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        Self {
            name: Some(path.display().to_string()),
            foreign: Some(path),
        }
    }

    /// A named namespace, which may or may not exist yet.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: Some(name.into()),
            foreign: None,
        }
    }

    /// The name under /run/netns, or `None` for the host namespace and a foreign one.
    pub fn name(&self) -> Option<&str> {
        match self.foreign {
            Some(_) => None,
            None => self.name.as_deref(),
        }
    }

    /// A printable label: the name, or "host".
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or("host")
    }

    fn path(&self) -> Option<PathBuf> {
        if let Some(path) = &self.foreign {
            return Some(path.clone());
        }
        self.name
            .as_ref()
            .map(|name| Path::new(NETNS_RUN_DIR).join(name))
    }

    /// Opens the namespace file (for setns, or to hand a namespace to the kernel by fd).
    pub fn open(&self) -> Result<File, NetnsError> {
        let Some(path) = self.path() else {
            return host_netns().try_clone().map_err(|source| NetnsError::Io {
                op: "open",
                name: "host".into(),
                source,
            });
        };
        File::open(path).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                NetnsError::NotFound {
                    name: self.label().to_string(),
                }
            } else {
                NetnsError::Io {
                    op: "open",
                    name: self.label().to_string(),
                    source,
                }
            }
        })
    }

    /// True when the named namespace's file is a mounted namespace (nsfs), not a bare mount point
    /// left by a creation that was interrupted.
    pub fn is_mounted(&self) -> bool {
        const NSFS_MAGIC: i64 = 0x6e73_6673;
        self.path().is_none_or(|p| {
            nix::sys::statfs::statfs(&p).is_ok_and(|st| st.filesystem_type().0 == NSFS_MAGIC)
        })
    }

    pub fn exists(&self) -> bool {
        self.path().is_none_or(|p| p.exists())
    }

    /// Creates the named namespace. Fails with [`NetnsError::Exists`] when it is already there.
    pub fn create(&self) -> Result<(), NetnsError> {
        let (Some(name), Some(path), None) = (&self.name, self.path(), &self.foreign) else {
            return Err(NetnsError::Exists {
                name: "host".into(),
            });
        };
        let io_err = |op: &'static str| {
            let name = name.clone();
            move |source: io::Error| NetnsError::Io { op, name, source }
        };
        std::fs::create_dir_all(NETNS_RUN_DIR).map_err(io_err("create /run/netns for"))?;
        share_run_dir().map_err(|e| io_err("make /run/netns a shared mount for")(e.into()))?;
        match File::options().write(true).create_new(true).open(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(NetnsError::Exists { name: name.clone() });
            }
            Err(e) => return Err(io_err("create the mount point of")(e)),
        }
        // A short-lived thread unshares, so no thread of ours is left in the new namespace.
        let target = path.clone();
        let made = std::thread::spawn(move || -> nix::Result<()> {
            unshare(CloneFlags::CLONE_NEWNET)?;
            mount(
                Some("/proc/thread-self/ns/net"),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
        })
        .join()
        .expect("namespace creation thread panicked");
        if let Err(errno) = made {
            let _ = std::fs::remove_file(&path);
            return Err(io_err("bind-mount")(errno.into()));
        }
        Ok(())
    }

    /// Removes the named namespace. Processes still inside keep it alive until they exit.
    /// Removing one that is not there succeeds.
    pub fn delete(&self) -> Result<(), NetnsError> {
        if self.foreign.is_some() {
            return Err(NetnsError::Foreign {
                name: self.label().to_string(),
            });
        }
        let (Some(name), Some(path)) = (&self.name, self.path()) else {
            return Ok(());
        };
        if !path.exists() {
            return Ok(());
        }
        let io_err = |op: &'static str| {
            let name = name.clone();
            move |source: io::Error| NetnsError::Io { op, name, source }
        };
        // Until it is no mount point: a namespace mounted before /run/netns became a mount of its
        // own (see share_run_dir) is there twice after the first recursive bind.
        loop {
            match umount2(&path, MntFlags::MNT_DETACH) {
                Ok(()) => {}
                Err(nix::errno::Errno::EINVAL) => break,
                Err(e) => return Err(io_err("unmount")(e.into())),
            }
        }
        std::fs::remove_file(&path).map_err(io_err("remove"))
    }

    /// Moves the current thread into this namespace until the guard is dropped.
    pub fn enter(&self) -> Result<NetnsGuard, NetnsError> {
        let io_err = |op: &'static str| {
            let name = self.label().to_string();
            move |source: io::Error| NetnsError::Io { op, name, source }
        };
        // Before the first setns of the process: remember where "host" is.
        host_netns();
        let old = File::open("/proc/thread-self/ns/net")
            .map_err(io_err("remember the namespace before entering"))?;
        let target = self.open()?;
        setns(target.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| io_err("enter")(e.into()))?;
        Ok(NetnsGuard {
            old,
            _not_send: PhantomData,
        })
    }

    /// Runs `f` with the current thread inside this namespace.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> Result<T, NetnsError> {
        let _guard = self.enter()?;
        Ok(f())
    }

    /// Sets sysctls of this namespace (paths under /proc/sys, like `net/ipv4/ip_forward`) to the
    /// values given, writing only those that differ; returns `net.ipv4.ip_forward=1` and the like
    /// for each it changed. IPv6 ones are skipped on a kernel without IPv6.
    pub fn ensure_sysctls(&self, wanted: &[(String, &str)]) -> io::Result<Vec<String>> {
        let with_path = |e: io::Error, path: &Path| {
            io::Error::new(e.kind(), format!("{}: {e}", path.display()))
        };
        self.run(|| {
            let mut changed = Vec::new();
            for (path, value) in wanted {
                // /proc/sys/net belongs to the namespace of the thread that opens it.
                let file = Path::new("/proc/sys").join(path);
                let current = match std::fs::read_to_string(&file) {
                    Ok(current) => current,
                    Err(e) if e.kind() == io::ErrorKind::NotFound && path.contains("ipv6") => {
                        continue;
                    }
                    Err(e) => return Err(with_path(e, &file)),
                };
                if current.trim() != *value {
                    std::fs::write(&file, value).map_err(|e| with_path(e, &file))?;
                    changed.push(format!("{}={value}", path.replace('/', ".")));
                }
            }
            Ok(changed)
        })
        .map_err(io::Error::other)?
    }
}

/// The namespace the process started in. Captured before any thread of ours first leaves it
/// ([`Netns::enter`] calls this first); /proc/1 is not always readable, even for root.
fn host_netns() -> &'static File {
    static HOST: OnceLock<File> = OnceLock::new();
    HOST.get_or_init(|| {
        File::open("/proc/thread-self/ns/net").expect("/proc/thread-self/ns/net is readable")
    })
}

/// Puts the thread back into the namespace it was in when dropped.
pub struct NetnsGuard {
    old: File,
    _not_send: PhantomData<*const ()>,
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        // Failing to return would leave this thread operating on the wrong namespace: every later
        // device operation would hit the wrong node. Nothing sane can continue after that.
        if let Err(e) = setns(self.old.as_fd(), CloneFlags::CLONE_NEWNET) {
            panic!("cannot return to the previous network namespace: {e}");
        }
    }
}

/// Names of the namespaces under /run/netns that start with `prefix`.
pub fn list_with_prefix(prefix: &str) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    let entries = match std::fs::read_dir(NETNS_RUN_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(names),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with(prefix) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// A namespace this process created, deleted again when dropped (also on panic or early return).
pub struct OwnedNetns(Netns);

/// Makes /run/netns a shared mount point of its own, as `ip netns add` and podman do, before a
/// namespace is mounted in it. Left a plain directory, the first of them to run afterwards binds
/// /run/netns over itself, and namespaces mounted under it before can end up hidden beneath: not
/// enterable, not removable.
fn share_run_dir() -> nix::Result<()> {
    static DONE: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if *done {
        return Ok(());
    }
    let shared = || {
        mount(
            None::<&str>,
            NETNS_RUN_DIR,
            Some("none"),
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared() {
        // Not a mount point yet.
        Err(nix::errno::Errno::EINVAL) => {
            mount(
                Some(NETNS_RUN_DIR),
                NETNS_RUN_DIR,
                Some("none"),
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )?;
            shared()?;
        }
        other => other?,
    }
    *done = true;
    Ok(())
}

impl OwnedNetns {
    /// Creates `name`; fails when it exists already (it is not ours then).
    pub fn create(name: impl Into<String>) -> Result<Self, NetnsError> {
        let netns = Netns::named(name);
        netns.create()?;
        Ok(Self(netns))
    }

    pub fn netns(&self) -> &Netns {
        &self.0
    }
}

impl Drop for OwnedNetns {
    fn drop(&mut self) {
        if let Err(e) = self.0.delete() {
            log::warn!("{}", crate::error::chain(&e));
        }
    }
}
