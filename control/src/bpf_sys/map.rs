//! Element operations on a map keyed by u32, by descriptor: what the redirect map (a
//! DEVMAP_HASH) needs without aya's `DevMapHash`, which runs every kernel feature probe first
//! (see the parent module).

use std::{
    io,
    os::fd::{AsRawFd as _, BorrowedFd},
};

use super::{BPF_MAP_DELETE_ELEM, BPF_MAP_GET_NEXT_KEY, BPF_MAP_UPDATE_ELEM, bpf, info, info_u32};

/// `union bpf_attr` as the BPF_MAP_*_ELEM commands read it (`value` is `next_key` for
/// BPF_MAP_GET_NEXT_KEY).
#[repr(C)]
struct MapElem {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

const _: () = assert!(size_of::<MapElem>() == 32);

/// BPF_ANY: create the element or replace it.
const ANY: u64 = 0;

/// A map with u32 keys, and values of the size the kernel reports for it.
pub struct U32Map<'a> {
    fd: BorrowedFd<'a>,
    value_size: usize,
}

impl<'a> U32Map<'a> {
    /// The map behind `fd`; its key size must be 4.
    pub fn new(fd: BorrowedFd<'a>) -> io::Result<Self> {
        // struct bpf_map_info: type, id, key_size, value_size.
        let info = info::<16>(fd)?;
        if info_u32(&info, 2) != 4 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the map's keys are {} bytes, not 4", info_u32(&info, 2)),
            ));
        }
        Ok(Self {
            fd,
            value_size: info_u32(&info, 3) as usize,
        })
    }

    fn elem(&self, key: &u32, value: u64) -> MapElem {
        MapElem {
            map_fd: self.fd.as_raw_fd() as u32,
            _pad: 0,
            key: key as *const u32 as u64,
            value,
            flags: ANY,
        }
    }

    /// Every key, in the kernel's order.
    pub fn keys(&self) -> io::Result<Vec<u32>> {
        let mut keys: Vec<u32> = Vec::new();
        loop {
            let mut next = 0u32;
            let elem = MapElem {
                map_fd: self.fd.as_raw_fd() as u32,
                _pad: 0,
                // The first key is asked for with none.
                key: keys.last().map_or(0, |last| last as *const u32 as u64),
                value: &mut next as *mut u32 as u64,
                flags: 0,
            };
            match bpf(BPF_MAP_GET_NEXT_KEY, &elem) {
                Ok(_) => keys.push(next),
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(keys),
                Err(e) => return Err(e),
            }
        }
    }

    /// Sets `key` to `value`, zero-extended to the map's value size (a DEVMAP_HASH's value is an
    /// ifindex, followed by a program fd on kernels that take one: zero, none).
    pub fn insert(&self, key: u32, value: &[u8]) -> io::Result<()> {
        if value.len() > self.value_size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a {}-byte value for a map of {}-byte values",
                    value.len(),
                    self.value_size
                ),
            ));
        }
        let mut full = vec![0u8; self.value_size];
        full[..value.len()].copy_from_slice(value);
        bpf(BPF_MAP_UPDATE_ELEM, &self.elem(&key, full.as_ptr() as u64)).map(|_| ())
    }

    /// Removes `key`; one that is not there is not an error.
    pub fn remove(&self, key: u32) -> io::Result<()> {
        match bpf(BPF_MAP_DELETE_ELEM, &self.elem(&key, 0)) {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
