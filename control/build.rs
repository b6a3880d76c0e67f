//! Builds the eBPF programs (crate `datapath-ebpf`) with nightly + bpf-linker and leaves the
//! objects in OUT_DIR: `datapath` (embedded by `datapath/object.rs`) and `bench_sink` (embedded by
//! `fastpath-bench` only). `cargo xtask build` installs the toolchain first.
//! AYA_BUILD_SKIP=1 skips it (for clippy or docs on a machine without bpf-linker).

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let ebpf_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../datapath-ebpf");
    let common_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../datapath-common");
    println!("cargo:rerun-if-changed={common_dir}");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "datapath-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
    .context("building the eBPF programs (crate datapath-ebpf); `cargo xtask build` installs what that needs")
}
