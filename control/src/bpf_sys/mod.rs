//! bpf(2) commands that aya does not offer on a pinned object's descriptor, or offers only
//! behind its kernel feature probes: those load test programs and create and free a DEVMAP and a
//! CPUMAP in every process that touches a redirect map or opens a pinned program, and freeing a
//! DEVMAP waits for RCU grace periods in a kernel worker that the process's next device deletion
//! then queues behind (a CNI DEL). What is here: opening pins, reading ids, pinned links
//! ([`link`]) and element operations on maps keyed by u32 ([`map`]).

mod link;
mod map;

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::Path,
};

pub use link::PinnedLink;
pub use map::U32Map;

/// Command numbers in the kernel's `enum bpf_cmd`.
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_UPDATE: libc::c_long = 29;
const BPF_LINK_DETACH: libc::c_long = 34;

/// `union bpf_attr` as BPF_OBJ_GET reads it. The kernel refuses non-zero bytes after the last
/// field it knows, so the tail padding is a field too, zeroed.
#[repr(C)]
struct ObjGet {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    path_fd: i32,
    _pad: u32,
}

/// `union bpf_attr` as BPF_OBJ_GET_INFO_BY_FD reads it.
#[repr(C)]
struct InfoByFd {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

const _: () = assert!(size_of::<ObjGet>() == 24 && size_of::<InfoByFd>() == 16);

/// bpf(2) with `attr`; the kernel reads (and for some commands writes through) `attr` during the
/// call only.
fn bpf<T>(cmd: libc::c_long, attr: &T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid `union bpf_attr` prefix of the size passed, alive for the call;
    // the buffers its pointers name are alive for the call too (the callers' borrows).
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *const T, size_of::<T>()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

/// The first bytes of the kernel's info about the object behind `fd` (its `struct bpf_link_info`,
/// `struct bpf_prog_info` or `struct bpf_map_info`); the kernel fills as much as is asked for.
fn info<const N: usize>(fd: BorrowedFd<'_>) -> io::Result<[u8; N]> {
    let mut info = [0u8; N];
    bpf(
        BPF_OBJ_GET_INFO_BY_FD,
        &InfoByFd {
            bpf_fd: fd.as_raw_fd() as u32,
            info_len: N as u32,
            info: info.as_mut_ptr() as u64,
        },
    )?;
    Ok(info)
}

/// The `index`th u32 of an info block.
fn info_u32(info: &[u8], index: usize) -> u32 {
    u32::from_ne_bytes(
        info[index * 4..index * 4 + 4]
            .try_into()
            .expect("four bytes"),
    )
}

/// The object (program, link or map) pinned at `pin`.
pub fn open_pinned(pin: &Path) -> io::Result<OwnedFd> {
    let path = CString::new(pin.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL"))?;
    let fd = bpf(
        BPF_OBJ_GET,
        &ObjGet {
            pathname: path.as_ptr() as u64,
            bpf_fd: 0,
            file_flags: 0,
            path_fd: 0,
            _pad: 0,
        },
    )?;
    // SAFETY: BPF_OBJ_GET returned a new descriptor, owned from here on.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The id of the program behind `program` (`struct bpf_prog_info`: type, id).
pub fn program_id(program: BorrowedFd<'_>) -> io::Result<u32> {
    Ok(info_u32(&info::<8>(program)?, 1))
}
