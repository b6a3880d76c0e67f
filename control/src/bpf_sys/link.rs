//! Links opened from their pins: make one run another program (BPF_LINK_UPDATE, atomic: the
//! device is never without one), detach it now (BPF_LINK_DETACH: removing the pin releases the
//! link later, from a kernel work queue), and read which program it runs, to compare first.

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, OwnedFd},
    path::Path,
};

use super::{BPF_LINK_DETACH, BPF_LINK_UPDATE, bpf, info, info_u32, open_pinned};

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

const _: () = assert!(size_of::<LinkUpdate>() == 16 && size_of::<LinkDetach>() == 4);

/// A link, opened from its pin.
pub struct PinnedLink(OwnedFd);

impl PinnedLink {
    pub fn open(pin: &Path) -> io::Result<Self> {
        open_pinned(pin).map(Self)
    }

    /// The id of the program the link runs (`struct bpf_link_info`: type, id, prog_id).
    pub fn program_id(&self) -> io::Result<u32> {
        Ok(info_u32(&info::<12>(self.0.as_fd())?, 2))
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
