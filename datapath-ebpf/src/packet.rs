//! Bounds-checked access to a frame's bytes: the only place that turns an offset into a pointer.

use core::mem;

/// The linear bytes of a frame, as both XDP and TC contexts expose them.
pub struct Packet {
    start: usize,
    end: usize,
}

impl Packet {
    #[inline(always)]
    pub fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }

    #[inline(always)]
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// A pointer to a `T` at `offset`, or `None` when the frame is too short to hold it.
    #[inline(always)]
    pub fn ptr_at<T>(&self, offset: usize) -> Option<*const T> {
        let at = self.start + offset;
        if at + mem::size_of::<T>() > self.end {
            return None;
        }
        Some(at as *const T)
    }

    /// As [`Packet::ptr_at`], for writing.
    #[inline(always)]
    pub fn ptr_at_mut<T>(&self, offset: usize) -> Option<*mut T> {
        self.ptr_at::<T>(offset).map(|p| p as *mut T)
    }
}

/// Copies `bytes` into the frame at `dst`, one store per byte. An array assignment (or a plain
/// copy) compiles to a call to a byte-at-a-time `memmove` or `memset` subprogram here; volatile
/// stores keep the copy inline.
///
/// # Safety
/// `dst` points to `N` writable bytes of the frame, not overlapping `bytes`.
#[inline(always)]
pub unsafe fn write_bytes<const N: usize>(dst: *mut [u8; N], bytes: &[u8; N]) {
    let dst = dst.cast::<u8>();
    for (i, b) in bytes.iter().enumerate() {
        // SAFETY: the caller's guarantee; i < N.
        unsafe { core::ptr::write_volatile(dst.add(i), *b) };
    }
}
