//! Builds the eBPF programs (crate `datapath-ebpf`) with nightly + bpf-linker and leaves the
//! objects in OUT_DIR: `datapath` (embedded by `datapath/object.rs`) and `bench_sink` (embedded by
//! `fastpath-bench` only). `cargo xtask build` installs the toolchain first.
//! AYA_BUILD_SKIP=1 skips it (for clippy or docs on a machine without bpf-linker). It also hashes
//! the datapath object once, here, into FASTPATH_DATAPATH_BUILD: the identity pinned programs
//! carry in their names, which every `up` and CNI call would otherwise compute again.

use anyhow::Context as _;

// The crate's own FNV-1a, the same source (build scripts cannot use their crate).
#[path = "src/fnv.rs"]
#[allow(dead_code)]
mod fnv;

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
    .context("building the eBPF programs (crate datapath-ebpf); `cargo xtask build` installs what that needs")?;
    let object = std::path::Path::new(&std::env::var("OUT_DIR")?).join("datapath");
    // Missing only with AYA_BUILD_SKIP, where nothing runs the object either.
    let id = std::fs::read(&object).map_or(0, |bytes| fnv::fnv1a_bytes(&bytes));
    println!("cargo:rustc-env=FASTPATH_DATAPATH_BUILD={id:016x}");
    Ok(())
}
