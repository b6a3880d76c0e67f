//! What the plugin has done for each attachment, on disk, one file per (container, interface)
//! under the network's directory, behind one lock per network.
//!
//! ADD writes the record *before* it changes anything and completes it after, so whatever a
//! killed ADD managed to do, the record names it and a later DEL or GC can undo it. Records are
//! replaced atomically (written to a temporary file, renamed), so a killed invocation never
//! leaves a half-written one. They are not synced to disk: a reboot takes what they describe
//! (namespaces, veths, pins) with it, and GC removes the records that outlive it.

use std::{
    fs::{self, File},
    io::{self, Write as _},
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::spec::{CniError, Code};
use crate::mac::Mac;

/// Where networks keep their records unless the configuration's `dataDir` says otherwise.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/fastpath/cni";

/// How long an invocation waits for another one on the same network before giving up with
/// "try again later", unless the configuration's `lockTimeout` says otherwise.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// One attachment of a container to the network.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    pub container_id: String,
    pub ifname: String,
    /// The container's namespace as ADD was given it.
    pub netns: Option<String>,
    /// The host end of the pod's veth pair.
    pub host_veth: String,
    /// True when this plugin created the veth (standalone) and so deletes it; false when the
    /// previous plugin of a chain did.
    pub owns_veth: bool,
    /// The IPAM plugin may hold an address for the attachment (set before it is asked).
    pub ipam: bool,
    pub address: Option<Ipv4Net>,
    pub gateway: Option<Ipv4Addr>,
    /// The IPv6 address and gateway of a dual-stack attachment (absent from older records).
    #[serde(default)]
    pub address6: Option<Ipv6Net>,
    #[serde(default)]
    pub gateway6: Option<Ipv6Addr>,
    /// The container interface's MAC.
    pub mac: Option<Mac>,
    /// Where the attachment's maps and link are pinned (the network's own directory, or the
    /// joined node's): for `show`, which has no configuration to derive it from.
    #[serde(default)]
    pub pin_dir: Option<PathBuf>,
    /// ADD finished: the endpoint belongs in the fast-path maps.
    pub complete: bool,
}

impl Record {
    /// The attachment's addresses: IPv4, then IPv6 on a dual-stack one (none before ADD has
    /// them).
    pub fn addresses(&self) -> Vec<IpNet> {
        let v4 = self.address.map(IpNet::V4);
        v4.into_iter().chain(self.address6.map(IpNet::V6)).collect()
    }

    /// The record ADD writes before it changes anything: a standalone attachment makes its own
    /// veth (`host_veth`) and asks the IPAM plugin; a chained one does neither.
    pub fn started(
        container_id: &str,
        ifname: &str,
        netns: Option<String>,
        host_veth: String,
        standalone: bool,
    ) -> Self {
        Self {
            container_id: container_id.to_string(),
            ifname: ifname.to_string(),
            netns,
            host_veth,
            owns_veth: standalone,
            ipam: standalone,
            address: None,
            gateway: None,
            address6: None,
            gateway6: None,
            mac: None,
            pin_dir: None,
            complete: false,
        }
    }
}

/// A network's records, locked for the life of the value.
pub struct Store {
    dir: PathBuf,
    _lock: Flock<File>,
}

fn io_error(what: String) -> impl FnOnce(io::Error) -> CniError {
    move |e| CniError::new(Code::Io, format!("{what}: {e}"))
}

impl Store {
    /// Opens (creating) `data_dir/network` and takes its lock, waiting up to `timeout` for other
    /// invocations.
    pub fn open(data_dir: &Path, network: &str, timeout: Duration) -> Result<Self, CniError> {
        let dir = data_dir.join(network);
        if !dir.is_dir() {
            fs::create_dir_all(&dir).map_err(io_error(format!("creating {}", dir.display())))?;
        }
        let lock_path = dir.join("lock");
        let mut file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error(format!("opening {}", lock_path.display())))?;
        let started = Instant::now();
        let lock = loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => break lock,
                Err((f, nix::errno::Errno::EWOULDBLOCK)) if started.elapsed() < timeout => {
                    file = f;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                    return Err(CniError::new(
                        Code::TryAgainLater,
                        format!(
                            "network '{network}' is busy: {} stayed locked for {:.1}s",
                            lock_path.display(),
                            timeout.as_secs_f64()
                        ),
                    ));
                }
                Err((_, e)) => {
                    return Err(io_error(format!("locking {}", lock_path.display()))(
                        e.into(),
                    ));
                }
            }
        };
        let store = Self { dir, _lock: lock };
        // A write killed between create and rename leaves a temporary file; with the lock held,
        // nobody is writing one now. Records of earlier releases were named `ID.IFNAME.json`:
        // they get the name `get` and `remove` look for.
        for path in fs::read_dir(&store.dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
        {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if name.ends_with(".json.tmp") {
                let _ = fs::remove_file(&path);
            } else if name.ends_with(".json")
                && !name.contains(':')
                && let Ok(bytes) = fs::read(&path)
                && let Ok(record) = serde_json::from_slice::<Record>(&bytes)
            {
                let wanted = store.path(&record.container_id, &record.ifname);
                if wanted != path {
                    fs::rename(&path, &wanted)
                        .map_err(io_error(format!("renaming {}", path.display())))?;
                }
            }
        }
        Ok(store)
    }

    /// `ID:IFNAME.json`: neither a container ID nor an interface name can hold a ':', so no two
    /// attachments share a file.
    fn path(&self, container_id: &str, ifname: &str) -> PathBuf {
        self.dir.join(format!("{container_id}:{ifname}.json"))
    }

    pub fn get(&self, container_id: &str, ifname: &str) -> Result<Option<Record>, CniError> {
        let path = self.path(container_id, ifname);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                CniError::new(
                    Code::Io,
                    format!("record {} is unreadable: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(format!("reading {}", path.display()))(e)),
        }
    }

    /// Writes `record` atomically: readers see the old record or the new one, never a mix. Not
    /// synced to disk: a record outlives a killed plugin (the page cache is the kernel's), and
    /// what it describes (namespaces, veths, links) does not outlive a power loss; GC removes
    /// the records of containers the runtime no longer lists.
    pub fn put(&self, record: &Record) -> Result<(), CniError> {
        let path = self.path(&record.container_id, &record.ifname);
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(record).expect("records serialize");
        let write = || -> io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            fs::rename(&tmp, &path)
        };
        write().map_err(io_error(format!("writing {}", path.display())))
    }

    pub fn remove(&self, container_id: &str, ifname: &str) -> Result<(), CniError> {
        let path = self.path(container_id, ifname);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(format!("removing {}", path.display()))(e)),
        }
    }

    /// Every record of the network.
    pub fn all(&self) -> Result<Vec<Record>, CniError> {
        read_records(&self.dir)
    }
}

/// The records in a network's directory, without the lock: each file is replaced atomically, so
/// a reader sees whole records (for `show`, which changes nothing).
pub fn read_records(dir: &Path) -> Result<Vec<Record>, CniError> {
    let mut records = Vec::new();
    let entries = fs::read_dir(dir).map_err(io_error(format!("listing {}", dir.display())))?;
    for entry in entries {
        let path = entry
            .map_err(io_error(format!("listing {}", dir.display())))?
            .path();
        if path.extension().is_some_and(|e| e == "json") {
            let bytes = fs::read(&path).map_err(io_error(format!("reading {}", path.display())))?;
            records.push(serde_json::from_slice(&bytes).map_err(|e| {
                CniError::new(
                    Code::Io,
                    format!("record {} is unreadable: {e}", path.display()),
                )
            })?);
        }
    }
    records.sort_by(|a: &Record, b: &Record| {
        (&a.container_id, &a.ifname).cmp(&(&b.container_id, &b.ifname))
    });
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> Record {
        Record {
            container_id: id.into(),
            ifname: "eth0".into(),
            netns: Some("/run/netns/x".into()),
            host_veth: "fpc0".into(),
            owns_veth: true,
            ipam: true,
            address: Some("198.18.100.2/24".parse().unwrap()),
            gateway: Some(Ipv4Addr::new(198, 18, 100, 1)),
            address6: Some("2001:db8:100::2/64".parse().unwrap()),
            gateway6: Some("2001:db8:100::1".parse().unwrap()),
            mac: None,
            pin_dir: None,
            complete: false,
        }
    }

    #[test]
    fn records_of_earlier_releases_are_renamed_on_open() {
        let dir = std::env::temp_dir().join(format!("fastpath-store-old-{}", std::process::id()));
        fs::create_dir_all(dir.join("net")).unwrap();
        let old = record("a");
        fs::write(
            dir.join("net").join("a.eth0.json"),
            serde_json::to_vec(&old).unwrap(),
        )
        .unwrap();
        let store = Store::open(&dir, "net", DEFAULT_LOCK_TIMEOUT).unwrap();
        assert_eq!(store.get("a", "eth0").unwrap(), Some(old));
        store.remove("a", "eth0").unwrap();
        assert!(store.all().unwrap().is_empty());
        drop(store);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn records_round_trip_and_leave_no_temporary_files() {
        let dir = std::env::temp_dir().join(format!("fastpath-store-{}", std::process::id()));
        let store = Store::open(&dir, "net", DEFAULT_LOCK_TIMEOUT).unwrap();
        store.put(&record("b")).unwrap();
        let mut a = record("a");
        store.put(&a).unwrap();
        a.complete = true;
        store.put(&a).unwrap();
        assert_eq!(store.get("a", "eth0").unwrap(), Some(a.clone()));
        let ids: Vec<_> = store
            .all()
            .unwrap()
            .into_iter()
            .map(|r| r.container_id)
            .collect();
        assert_eq!(ids, ["a", "b"]);
        store.remove("a", "eth0").unwrap();
        store.remove("a", "eth0").unwrap();
        assert_eq!(store.get("a", "eth0").unwrap(), None);
        let names: Vec<_> = fs::read_dir(dir.join("net"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
        drop(store);
        fs::remove_dir_all(dir).unwrap();
    }
}
