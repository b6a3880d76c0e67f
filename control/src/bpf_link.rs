//! bpf(2) commands on pinned links and programs that aya does not offer on a pinned link's
//! descriptor: make a link run another program (BPF_LINK_UPDATE, atomic: the device is never
//! without one), detach it now (BPF_LINK_DETACH: removing the pin releases the link later, from a
//! kernel work queue), and read which program it runs and a program's id, to compare them first.

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsFd as _, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::Path,
};

/// Command numbers in the kernel's `enum bpf_cmd`.
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

/// `union bpf_attr` as BPF_LINK_UPDATE reads it.
#[repr(C)]
struct LinkUpdate {
    link_fd: u32,
    new_prog_fd: u32,
    flags: u32,
    old_prog_fd: u32,
}

/// `union bpf_attr` as BPF_LINK_DETACH reads it.
#[repr(C)]
struct LinkDetach {
    link_fd: u32,
}

const _: () = assert!(
    size_of::<ObjGet>() == 24
        && size_of::<InfoByFd>() == 16
        && size_of::<LinkUpdate>() == 16
        && size_of::<LinkDetach>() == 4
);

/// bpf(2) with `attr`; the kernel reads `attr` during the call only.
fn bpf<T>(cmd: libc::c_long, attr: &T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid `union bpf_attr` prefix of the size passed, alive for the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *const T, size_of::<T>()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

/// The first bytes of the kernel's info about the object behind `fd` (its `struct bpf_link_info`
/// or `struct bpf_prog_info`); the kernel fills as much as is asked for.
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

/// A link, opened from its pin.
pub struct PinnedLink(OwnedFd);

impl PinnedLink {
    pub fn open(pin: &Path) -> io::Result<Self> {
        open_pinned(pin).map(Self)
    }

    /// The id of the program the link runs (`struct bpf_link_info`: type, id, prog_id).
    pub fn program_id(&self) -> io::Result<u32> {
        let info = info::<12>(self.0.as_fd())?;
        Ok(u32::from_ne_bytes(
            info[8..12].try_into().expect("four bytes"),
        ))
    }

    /// Makes the link run `program` from now on.
    pub fn update(&self, program: BorrowedFd<'_>) -> io::Result<()> {
        bpf(
            BPF_LINK_UPDATE,
            &LinkUpdate {
                link_fd: self.0.as_raw_fd() as u32,
                new_prog_fd: program.as_raw_fd() as u32,
                flags: 0,
                old_prog_fd: 0,
            },
        )
        .map(|_| ())
    }

    /// Takes the link's program off its device now; the link stays (defunct) until its last
    /// reference goes. A link whose device is gone is defunct already, and this does nothing.
    pub fn detach(&self) -> io::Result<()> {
        bpf(
            BPF_LINK_DETACH,
            &LinkDetach {
                link_fd: self.0.as_raw_fd() as u32,
            },
        )
        .map(|_| ())
    }
}

/// The id of the program behind `program` (`struct bpf_prog_info`: type, id).
pub fn program_id(program: BorrowedFd<'_>) -> io::Result<u32> {
    let info = info::<8>(program)?;
    Ok(u32::from_ne_bytes(
        info[4..8].try_into().expect("four bytes"),
    ))
}
