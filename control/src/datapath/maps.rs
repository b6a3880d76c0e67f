//! The datapath's maps, and writing a node's or network's entries into them. Opened from their
//! pins by any process, with no program loaded (a CNI ADD, a converged `up`, `stats`), or taken
//! from a datapath just loaded (tests, the demo, `watch`).

use std::{
    borrow::Borrow,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsFd as _,
    path::Path,
};

use aya::{
    Ebpf,
    maps::{
        Array, HashMap, Map, MapData, PerCpuArray,
        lpm_trie::{Key, LpmTrie},
    },
};
use datapath_common::{
    Counter,
    maps::{Endpoint, NODE_FAST_PATH, NODE_OVERLAY, NodeConfig, PEER_KNOWN, Peer, Remote, Source},
};

use super::{
    counters::{CounterRow, counter_rows},
    entries::{EndpointEntry, OverlaySettings, Owner, PeerEntry},
    object::{
        COUNTERS, DEVMAP, ENDPOINTS, ENDPOINTS6, MAPS, NODE, PEERS, REMOTES, REMOTES6, SOURCES,
    },
};
use nix::fcntl::{Flock, FlockArg};

use crate::{bpf_sys::U32Map, error::DatapathError, mac::Mac, netns::Netns};

/// The maps of one node or network.
pub struct Maps {
    counters: Map,
    endpoints: Map,
    endpoints6: Map,
    sources: Map,
    node: Map,
    remotes: Map,
    remotes6: Map,
    peers: Map,
    devmap: Map,
}

pub(super) fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> DatapathError {
    move |source| DatapathError::Map { map, source }
}

fn redirect_err(op: impl Into<String>) -> impl FnOnce(io::Error) -> DatapathError {
    move |source| DatapathError::RedirectMap {
        op: op.into(),
        source,
    }
}

impl Maps {
    /// The maps pinned under `dir`.
    pub fn open(dir: &Path) -> Result<Self, DatapathError> {
        Self::build(|name| open_pinned(dir, name))
    }

    /// The maps of a loaded object, taken out of it (its programs hold them too).
    pub(super) fn take(ebpf: &mut Ebpf) -> Result<Self, DatapathError> {
        Self::build(|name| {
            ebpf.take_map(name)
                .ok_or(DatapathError::MissingMap { map: name })
        })
    }

    /// Each map by name, from `get`.
    fn build(
        mut get: impl FnMut(&'static str) -> Result<Map, DatapathError>,
    ) -> Result<Self, DatapathError> {
        Ok(Self {
            counters: get(COUNTERS)?,
            endpoints: get(ENDPOINTS)?,
            endpoints6: get(ENDPOINTS6)?,
            sources: get(SOURCES)?,
            node: get(NODE)?,
            remotes: get(REMOTES)?,
            remotes6: get(REMOTES6)?,
            peers: get(PEERS)?,
            devmap: get(DEVMAP)?,
        })
    }

    /// Writes the node's settings and switches the fast path on; with `overlay`, also
    /// encapsulation and decapsulation.
    pub fn set_node(
        &mut self,
        gateway_mac: Mac,
        gateway_ip: Option<Ipv4Addr>,
        gateway6: Option<Ipv6Addr>,
        overlay: Option<&OverlaySettings>,
    ) -> Result<(), DatapathError> {
        let mut node: Array<_, NodeConfig> =
            Array::try_from(&mut self.node).map_err(map_err(NODE))?;
        let mut value = NodeConfig {
            gateway_mac: gateway_mac.0,
            // An IPv6-only node's gateway has no IPv4 address: no underlay packet claims 0.0.0.0.
            gateway_ip: gateway_ip.unwrap_or(Ipv4Addr::UNSPECIFIED).octets(),
            gateway6: gateway6.unwrap_or(Ipv6Addr::UNSPECIFIED).octets(),
            flags: NODE_FAST_PATH,
            ..NodeConfig::default()
        };
        if let Some(o) = overlay {
            value.flags |= NODE_OVERLAY;
            value.vtep_mac = o.vtep_mac.0;
            value.vxlan_port = o.port;
            value.vni = o.vni;
            value.underlay_ifindex = o.underlay_ifindex;
            value.underlay_ip = o.underlay_ip.octets();
            value.underlay_mtu = o.underlay_mtu;
        }
        node.set(0, value, 0).map_err(map_err(NODE))
    }

    /// Makes the remote pod CIDR and peer maps hold exactly `peers`; returns how many entries
    /// were added, changed or removed.
    pub fn sync_peers(&mut self, peers: &[PeerEntry]) -> Result<usize, DatapathError> {
        let want: Vec<_> = peers.iter().filter_map(PeerEntry::remote).collect();
        let mut changed = sync_prefixes(&mut self.remotes, REMOTES, &want)?;
        let want6: Vec<_> = peers.iter().filter_map(PeerEntry::remote6).collect();
        changed += sync_prefixes(&mut self.remotes6, REMOTES6, &want6)?;

        let mut known: HashMap<_, [u8; 4], Peer> =
            HashMap::try_from(&mut self.peers).map_err(map_err(PEERS))?;
        let known_peer = Peer { flags: PEER_KNOWN };
        let want: Vec<([u8; 4], Peer)> = peers
            .iter()
            .map(|p| (p.underlay_ip.octets(), known_peer))
            .collect();
        changed += sync_hash(&mut known, &want, |_, _| false).map_err(map_err(PEERS))?;
        Ok(changed)
    }

    /// Every endpoint entry: a pod's address, and the entry (device, MAC, owner id).
    pub fn endpoints(&self) -> Result<Vec<(Ipv4Addr, Endpoint)>, DatapathError> {
        let endpoints: HashMap<_, [u8; 4], Endpoint> =
            HashMap::try_from(&self.endpoints).map_err(map_err(ENDPOINTS))?;
        let entries = all_entries(&endpoints).map_err(map_err(ENDPOINTS))?;
        Ok(entries
            .into_iter()
            .map(|(k, v)| (Ipv4Addr::from(k), v))
            .collect())
    }

    /// Every source entry: a pod's host-side veth (ifindex), and the address and MAC it may send
    /// from.
    pub fn sources(&self) -> Result<Vec<(u32, Source)>, DatapathError> {
        let sources: HashMap<_, u32, Source> =
            HashMap::try_from(&self.sources).map_err(map_err(SOURCES))?;
        all_entries(&sources).map_err(map_err(SOURCES))
    }

    /// The devices (ifindexes) the redirect map holds.
    pub fn redirect_targets(&self) -> Result<Vec<u32>, DatapathError> {
        self.redirect_map()?.keys().map_err(redirect_err("read"))
    }

    /// The redirect map, written through bpf(2) directly rather than aya's `DevMapHash` (whose
    /// first use runs aya's kernel feature probes: see `bpf_sys`).
    fn redirect_map(&self) -> Result<U32Map<'_>, DatapathError> {
        let Map::DevMapHash(data) = &self.devmap else {
            return Err(DatapathError::MissingMap { map: DEVMAP });
        };
        U32Map::new(data.fd().as_fd()).map_err(redirect_err("open"))
    }

    /// Makes `owner`'s entries in the endpoint, source and redirect maps exactly `entries`
    /// (see [`Owner`] for the rule); returns how many entries were added or removed. Another
    /// owner's entry for one of these addresses is an error while its device exists, and is
    /// replaced once it is gone. A node (the owner that passes `underlay_ifindex`) also keeps
    /// the redirect map to what some endpoint or its underlay needs. Redirect targets are
    /// ifindexes of `netns`, so the maps are written from inside it.
    pub fn sync_endpoints(
        &mut self,
        netns: &Netns,
        owner: Owner,
        entries: &[EndpointEntry],
        underlay_ifindex: Option<u32>,
    ) -> Result<usize, DatapathError> {
        let _inside = netns.enter()?;
        let own_devices: Vec<u32> = entries.iter().map(|e| e.ifindex).collect();
        // This owner's entries; and those from before owners were recorded (owner 0) on one of
        // its own devices, or on a device that is gone.
        let mine = |e: &Endpoint| {
            e.owner == owner.id()
                || (e.owner == Owner::BEFORE_OWNERS.id()
                    && (own_devices.contains(&e.ifindex) || device_name(e.ifindex).is_none()))
        };
        // Both families are checked before either is written: an address held elsewhere leaves
        // the maps as they were.
        let want: Vec<([u8; 4], Endpoint)> =
            entries.iter().filter_map(|e| e.endpoint(owner)).collect();
        let want6: Vec<([u8; 16], Endpoint)> =
            entries.iter().filter_map(|e| e.endpoint6(owner)).collect();
        let mut v4 = OwnedEndpoints::read(&mut self.endpoints, ENDPOINTS)?;
        let mut v6 = OwnedEndpoints::read(&mut self.endpoints6, ENDPOINTS6)?;
        let mut released = v4.released(&want, &mine, |k| Ipv4Addr::from(k).into())?;
        released.extend(v6.released(&want6, &mine, |k| Ipv6Addr::from(k).into())?);
        let mut changed = v4.sync(&want, &mine)? + v6.sync(&want6, &mine)?;
        // The devices some entry (anyone's) names now.
        let mut named = v4.named()?;
        named.extend(v6.named()?);

        // A source entry lets its device send as a pod: it lives exactly as long as an endpoint
        // entry names the device (one left by a write that died half-way goes here too).
        let mut sources: HashMap<_, u32, Source> =
            HashMap::try_from(&mut self.sources).map_err(map_err(SOURCES))?;
        let want: Vec<(u32, Source)> = entries.iter().map(EndpointEntry::source).collect();
        changed += sync_hash(&mut sources, &want, |ifindex, _| named.contains(ifindex))
            .map_err(map_err(SOURCES))?;

        // Pods' veths, and the underlay device encapsulated frames leave by.
        let targets: Vec<u32> = entries
            .iter()
            .map(|e| e.ifindex)
            .chain(underlay_ifindex)
            .collect();
        let devmap = self.redirect_map()?;
        let present = devmap.keys().map_err(redirect_err("read"))?;
        // The node's sync also clears targets no entry needs any more.
        let stale = |k: &u32| match underlay_ifindex {
            Some(_) => !named.contains(k) && !targets.contains(k),
            None => released.contains(k) && !named.contains(k) && !targets.contains(k),
        };
        for &key in present.iter().filter(|k| stale(k)) {
            devmap
                .remove(key)
                .map_err(redirect_err(format!("remove ifindex {key} from")))?;
            changed += 1;
        }
        for &ifindex in targets.iter().filter(|i| !present.contains(i)) {
            // The value is the device frames are redirected to: the key's own.
            devmap
                .insert(ifindex, &ifindex.to_ne_bytes())
                .map_err(redirect_err(format!("add ifindex {ifindex} to")))?;
            changed += 1;
        }
        Ok(changed)
    }

    /// Adds endpoint and remote CIDR entries to what the maps hold, without redirect targets:
    /// for the benchmark's map-size rows, whose extra entries name no device and receive no
    /// traffic. The next `sync_endpoints`/`sync_peers` removes them.
    pub fn insert_unrouted(
        &mut self,
        owner: Owner,
        endpoints: &[EndpointEntry],
        remotes: &[PeerEntry],
    ) -> Result<(), DatapathError> {
        let mut map: HashMap<_, [u8; 4], Endpoint> =
            HashMap::try_from(&mut self.endpoints).map_err(map_err(ENDPOINTS))?;
        for (key, value) in endpoints.iter().filter_map(|e| e.endpoint(owner)) {
            map.insert(key, value, 0).map_err(map_err(ENDPOINTS))?;
        }
        let mut map: HashMap<_, u32, Source> =
            HashMap::try_from(&mut self.sources).map_err(map_err(SOURCES))?;
        for (key, value) in endpoints.iter().map(EndpointEntry::source) {
            map.insert(key, value, 0).map_err(map_err(SOURCES))?;
        }
        let mut map: LpmTrie<_, [u8; 4], Remote> =
            LpmTrie::try_from(&mut self.remotes).map_err(map_err(REMOTES))?;
        for (len, addr, value) in remotes.iter().filter_map(PeerEntry::remote) {
            map.insert(&Key::new(len, addr), value, 0)
                .map_err(map_err(REMOTES))?;
        }
        Ok(())
    }

    /// Every counter cell that has counted something, summed over CPUs.
    pub fn counters(&self) -> Result<Vec<CounterRow>, DatapathError> {
        counters_in(&self.counters)
    }
}

/// One endpoint map (ENDPOINTS or ENDPOINTS6) as a sync finds it.
struct OwnedEndpoints<'m, K: aya::Pod> {
    map: HashMap<&'m mut MapData, K, Endpoint>,
    name: &'static str,
    present: Vec<(K, Endpoint)>,
}

impl<'m, K: aya::Pod + PartialEq> OwnedEndpoints<'m, K> {
    fn read(map: &'m mut Map, name: &'static str) -> Result<Self, DatapathError> {
        let map: HashMap<_, K, Endpoint> = HashMap::try_from(map).map_err(map_err(name))?;
        let present = all_entries(&map).map_err(map_err(name))?;
        Ok(Self { map, name, present })
    }

    /// The devices of the entries a sync to `want` replaces or removes (their redirect targets
    /// go with them); an error when another owner holds one of the addresses for a device that
    /// exists.
    fn released(
        &self,
        want: &[(K, Endpoint)],
        mine: &impl Fn(&Endpoint) -> bool,
        address: impl Fn(K) -> IpAddr,
    ) -> Result<Vec<u32>, DatapathError> {
        let mut released = Vec::new();
        for (key, _) in want {
            let Some((_, held)) = self.present.iter().find(|(k, _)| k == key) else {
                continue;
            };
            if mine(held) {
                continue;
            }
            if let Some(device) = device_name(held.ifindex) {
                return Err(DatapathError::AddressHeld {
                    ip: address(*key),
                    device,
                });
            }
            // Another owner's, for a device that is gone: taken over.
            released.push(held.ifindex);
        }
        released.extend(
            self.present
                .iter()
                .filter(|(_, e)| mine(e))
                .map(|(_, e)| e.ifindex),
        );
        Ok(released)
    }

    /// Makes the owner's entries exactly `want`; returns how many changed.
    fn sync(
        &mut self,
        want: &[(K, Endpoint)],
        mine: &impl Fn(&Endpoint) -> bool,
    ) -> Result<usize, DatapathError> {
        sync_hash(&mut self.map, want, |_, e| !mine(e)).map_err(map_err(self.name))
    }

    /// The devices the map's entries name.
    fn named(&self) -> Result<Vec<u32>, DatapathError> {
        let entries = all_entries(&self.map).map_err(map_err(self.name))?;
        Ok(entries.iter().map(|(_, e)| e.ifindex).collect())
    }
}

/// The map pinned under `dir` by `name`.
/// Makes the prefix map `map` (REMOTES or REMOTES6) hold exactly `want`: (prefix length,
/// network, value). Returns how many entries were added, changed or removed.
fn sync_prefixes<K: aya::Pod + PartialEq>(
    map: &mut Map,
    name: &'static str,
    want: &[(u32, K, Remote)],
) -> Result<usize, DatapathError> {
    let mut changed = 0;
    let mut trie: LpmTrie<_, K, Remote> = LpmTrie::try_from(map).map_err(map_err(name))?;
    let present: Vec<Key<K>> = trie
        .keys()
        .collect::<Result<_, _>>()
        .map_err(map_err(name))?;
    for key in present.iter().filter(|k| {
        !want
            .iter()
            .any(|(len, addr, _)| k.prefix_len() == *len && k.data() == *addr)
    }) {
        trie.remove(key).map_err(map_err(name))?;
        changed += 1;
    }
    for (len, addr, value) in want {
        let key = Key::new(*len, *addr);
        if trie.get(&key, 0).ok().as_ref() != Some(value) {
            trie.insert(&key, value, 0).map_err(map_err(name))?;
            changed += 1;
        }
    }
    Ok(changed)
}

pub(super) fn open_pinned(dir: &Path, name: &'static str) -> Result<Map, DatapathError> {
    MapData::from_pin(dir.join(name))
        .and_then(Map::from_map_data)
        .map_err(map_err(name))
}

fn counters_in(map: &Map) -> Result<Vec<CounterRow>, DatapathError> {
    let counters: PerCpuArray<_, Counter> =
        PerCpuArray::try_from(map).map_err(map_err(COUNTERS))?;
    counter_rows(&counters)
}

/// Whether this build's maps are pinned under `dir`: every one of them, by its layout's name.
pub fn maps_pinned(dir: &Path) -> bool {
    MAPS.iter().all(|name| dir.join(name).exists())
}

/// The counters pinned under `dir` (only that map is opened: `stats --watch` reads it every
/// second).
pub fn pinned_counters(dir: &Path) -> Result<Vec<CounterRow>, DatapathError> {
    counters_in(&open_pinned(dir, COUNTERS)?)
}

/// The overlay's UDP port in the node settings pinned under `dir`; none when the maps do not
/// encapsulate (a network of its own, a node without peers).
pub fn pinned_vxlan_port(dir: &Path) -> Result<Option<u16>, DatapathError> {
    let map = open_pinned(dir, NODE)?;
    let node: Array<_, NodeConfig> = Array::try_from(&map).map_err(map_err(NODE))?;
    let value = node.get(&0, 0).map_err(map_err(NODE))?;
    Ok((value.flags & NODE_OVERLAY != 0).then_some(value.vxlan_port))
}

/// The ENDPOINTS entry of `ip` in the maps pinned under `dir` (only that map is opened).
pub fn pinned_endpoint(dir: &Path, ip: IpAddr) -> Result<Option<Endpoint>, DatapathError> {
    match ip {
        IpAddr::V4(ip) => pinned_entry(dir, ENDPOINTS, ip.octets()),
        IpAddr::V6(ip) => pinned_entry(dir, ENDPOINTS6, ip.octets()),
    }
}

/// The entry for `key` in the hash map `name` pinned under `dir`.
fn pinned_entry<K: aya::Pod>(
    dir: &Path,
    name: &'static str,
    key: K,
) -> Result<Option<Endpoint>, DatapathError> {
    let map = open_pinned(dir, name)?;
    let endpoints: HashMap<_, K, Endpoint> = HashMap::try_from(&map).map_err(map_err(name))?;
    match endpoints.get(&key, 0) {
        Ok(e) => Ok(Some(e)),
        Err(aya::maps::MapError::KeyNotFound) => Ok(None),
        Err(source) => Err(map_err(name)(source)),
    }
}

/// Makes a hash map hold exactly `want` and the present entries `keep` says are not ours to
/// touch; returns how many entries changed.
fn sync_hash<T, K, V>(
    map: &mut HashMap<T, K, V>,
    want: &[(K, V)],
    keep: impl Fn(&K, &V) -> bool,
) -> Result<usize, aya::maps::MapError>
where
    T: Borrow<MapData> + std::borrow::BorrowMut<MapData>,
    K: aya::Pod + PartialEq,
    V: aya::Pod + PartialEq,
{
    let mut changed = 0;
    let present: Vec<(K, V)> = map.iter().collect::<Result<_, _>>()?;
    for (key, _) in present
        .iter()
        .filter(|(k, v)| !keep(k, v) && !want.iter().any(|(w, _)| w == k))
    {
        map.remove(key)?;
        changed += 1;
    }
    for (key, value) in want {
        if map.get(key, 0).ok().as_ref() != Some(value) {
            map.insert(key, value, 0)?;
            changed += 1;
        }
    }
    Ok(changed)
}

/// Serializes the owners of the maps pinned in `dir` (a node's `up` and the CNI networks joined
/// to it): each checks that no other holds its addresses, then writes its entries, and two must
/// not claim one address at once. The lock is an flock on the directory itself, released when
/// the value is dropped.
pub fn lock_pins(dir: &Path) -> Result<Flock<std::fs::File>, DatapathError> {
    let err = |source| DatapathError::Lock {
        path: dir.display().to_string(),
        source,
    };
    let file = std::fs::File::open(dir).map_err(err)?;
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| err(errno.into()))
}

/// The name of the device with `ifindex` in this thread's namespace; `None` when there is none.
fn device_name(ifindex: u32) -> Option<String> {
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: the buffer has the IF_NAMESIZE bytes if_indextoname writes at most, and holds a
    // NUL-terminated name when it returns non-null.
    unsafe {
        if libc::if_indextoname(ifindex, name.as_mut_ptr()).is_null() {
            return None;
        }
        Some(
            std::ffi::CStr::from_ptr(name.as_ptr())
                .to_string_lossy()
                .into_owned(),
        )
    }
}

/// Every entry of a hash map.
fn all_entries<T: Borrow<MapData>, K: aya::Pod, V: aya::Pod>(
    map: &HashMap<T, K, V>,
) -> Result<Vec<(K, V)>, aya::maps::MapError> {
    map.iter().collect()
}
