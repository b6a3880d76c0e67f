//! How fastpath knows what it created, so `up` never takes over and `down` never removes anything
//! else. Namespaces: a marker file under /run/fastpath/netns, written *before* the namespace is
//! created (an interrupted `up` leaves a marker, never an unmarked namespace of ours). Devices in a
//! namespace fastpath does not own (a real node's): the link alias `fastpath:<prefix>`.

use std::{fs::File, io, path::PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::netlink::LinkView;

const MARKER_DIR: &str = "/run/fastpath/netns";
const LOCK_DIR: &str = "/run/fastpath/locks";

/// The ownership records of one fastpath instance (one name prefix).
#[derive(Clone, Debug)]
pub struct Ownership {
    prefix: String,
}

impl Ownership {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn marker(&self, netns: &str) -> PathBuf {
        PathBuf::from(MARKER_DIR).join(netns)
    }

    /// Serializes the `up`s and `down`s of this instance: agents of several nodes under one
    /// prefix converge at the same time, and share the underlay segments. Released when the
    /// value is dropped. (The lock file stays: removing it could let two holders in.)
    pub fn lock(&self) -> io::Result<Flock<File>> {
        std::fs::create_dir_all(LOCK_DIR)?;
        let file = File::create(PathBuf::from(LOCK_DIR).join(&self.prefix))?;
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| errno.into())
    }

    /// The alias fastpath gives every device it creates.
    pub fn device_alias(&self) -> String {
        format!("fastpath:{}", self.prefix)
    }

    /// Records that fastpath is about to create `netns`, for `node` (its own namespace or a
    /// pod's) or for the whole instance (none: an underlay segment).
    pub fn claim_netns(&self, netns: &str, node: Option<&str>) -> io::Result<()> {
        std::fs::create_dir_all(MARKER_DIR)?;
        let mut record = format!("{}\n", self.prefix);
        if let Some(node) = node {
            record.push_str(&format!("{node}\n"));
        }
        std::fs::write(self.marker(netns), record)
    }

    /// The node `netns` was claimed for, when it was claimed for one (records written before
    /// nodes were recorded name none).
    pub fn netns_node(&self, netns: &str) -> Option<String> {
        let record = std::fs::read_to_string(self.marker(netns)).ok()?;
        let mut lines = record.lines();
        (lines.next()? == self.prefix).then_some(())?;
        lines.next().map(str::to_string)
    }

    /// True when `netns` was claimed by this instance: the marker names this exact prefix, so
    /// prefixes that start alike (`fp-` and `fp-x-`) never see each other's namespaces.
    pub fn owns_netns(&self, netns: &str) -> bool {
        netns.starts_with(&self.prefix)
            && std::fs::read_to_string(self.marker(netns))
                .is_ok_and(|record| record.lines().next() == Some(self.prefix.as_str()))
    }

    pub fn release_netns(&self, netns: &str) -> io::Result<()> {
        let marker = self.marker(netns);
        match std::fs::remove_file(&marker) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io::Error::new(
                e.kind(),
                format!("removing ownership record {}: {e}", marker.display()),
            )),
            _ => Ok(()),
        }
    }

    /// Names of the namespaces this instance has claimed (created or about to be).
    pub fn claimed_netns(&self) -> io::Result<Vec<String>> {
        let entries = match std::fs::read_dir(MARKER_DIR) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut names = Vec::new();
        for entry in entries {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if self.owns_netns(&name) {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// True when fastpath may change or remove `link`: it lives in a namespace fastpath owns, or
    /// carries this instance's alias.
    pub fn may_modify(&self, netns_owned: bool, link: &LinkView) -> bool {
        netns_owned || link.alias.as_deref() == Some(self.device_alias().as_str())
    }
}
