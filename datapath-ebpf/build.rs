//! Rebuild the programs when bpf-linker changes: it is the linker, so a new one can change the
//! object even when no source did.
fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
