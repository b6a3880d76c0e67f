//! Two bpf(2) commands on pinned links that aya keeps to itself: open a link from its pin, and make
//! it run another program (BPF_LINK_UPDATE, atomic: the device is never without one).

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::Path,
};

/// Command numbers in the kernel's `enum bpf_cmd`.
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_LINK_UPDATE: libc::c_long = 29;

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

/// `union bpf_attr` as BPF_LINK_UPDATE reads it.
#[repr(C)]
struct LinkUpdate {
    link_fd: u32,
    new_prog_fd: u32,
    flags: u32,
    old_prog_fd: u32,
}

const _: () = assert!(size_of::<ObjGet>() == 24 && size_of::<LinkUpdate>() == 16);

/// bpf(2) with `attr`; the kernel reads `attr` during the call only.
fn bpf<T>(cmd: libc::c_long, attr: &T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid `union bpf_attr` prefix of the size passed, alive for the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *const T, size_of::<T>()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

/// Makes the link pinned at `pin` run `program` from now on.
pub fn update_pinned(pin: &Path, program: BorrowedFd<'_>) -> io::Result<()> {
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
    let link = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    bpf(
        BPF_LINK_UPDATE,
        &LinkUpdate {
            link_fd: link.as_raw_fd() as u32,
            new_prog_fd: program.as_raw_fd() as u32,
            flags: 0,
            old_prog_fd: 0,
        },
    )
    .map(|_| ())
}
