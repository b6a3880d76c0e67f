//! What every eBPF object of this crate carries besides its programs: the licence the kernel
//! checks for GPL-only helpers, and the panic handler `no_std` needs.

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach this.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
