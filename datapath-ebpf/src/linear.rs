//! Making a TC packet's headers readable directly: they can be split across an skb's fragments.

use aya_ebpf::programs::TcContext;

/// Linearises the first `want` bytes (or the whole packet, if shorter) so they can be read
/// directly.
#[inline(always)]
pub fn pull(ctx: &TcContext, want: u32) {
    let want = if ctx.len() < want { ctx.len() } else { want };
    if linear_len(ctx) < want {
        let _ = ctx.pull_data(want);
    }
}

/// How many bytes of the packet are in its linear area.
#[inline(always)]
pub fn linear_len(ctx: &TcContext) -> u32 {
    (ctx.data_end() - ctx.data()) as u32
}
